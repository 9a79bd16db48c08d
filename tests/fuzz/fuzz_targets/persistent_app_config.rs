//! persistent-app's device configuration (/etc/mender/persistent-app.conf)
//! and its allowed-services rule applied to a unit name.
#![no_main]

use composable_fuzz::{check_error, check_line, parts, Scratch};
use libfuzzer_sys::fuzz_target;
use persistent_app::config::Config;

fuzz_target!(|data: &[u8]| {
    let all = parts(data, 2);
    let scratch = Scratch::new("persistent_app_config");
    let path = scratch.path().join("persistent-app.conf");
    std::fs::write(&path, all[0]).unwrap();
    match Config::load_from(&path) {
        Ok(config) => {
            if let Some(unit) = all.get(1) {
                if let Err(e) = config.check_service(&String::from_utf8_lossy(unit)) {
                    check_line("service", &e);
                }
            }
        }
        Err(e) => check_error("config", &e),
    }
});
