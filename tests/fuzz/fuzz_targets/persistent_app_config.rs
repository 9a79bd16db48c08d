//! persistent-app's device configuration (/etc/mender/persistent-app.conf)
//! and its allowed-services rule applied to a unit name.
#![no_main]

use composable_fuzz::{check_error, check_line, parts, Scratch};
use libfuzzer_sys::fuzz_target;
use persistent_app::config::Config;
use persistent_app_format::spec::check_service;

fuzz_target!(|data: &[u8]| {
    let all = parts(data, 2);
    let scratch = Scratch::new("persistent_app_config");
    let path = scratch.path().join("persistent-app.conf");
    std::fs::write(&path, all[0]).unwrap();
    match Config::load_from(&path) {
        Ok(config) => {
            // As in Download: the unit name passed the format's check first.
            let unit = all.get(1).map(|u| String::from_utf8_lossy(u));
            if let Some(unit) = unit.filter(|u| check_service(u).is_ok()) {
                if let Err(e) = config.check_service(&unit) {
                    check_line("service", &e);
                }
            }
        }
        Err(e) => check_error("config", &e),
    }
});
