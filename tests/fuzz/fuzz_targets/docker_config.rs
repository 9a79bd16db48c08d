//! The docker module's device configuration (/etc/mender/docker-module.conf):
//! the strict reading Download and ArtifactInstall use and the lenient one of
//! the recovery states.
#![no_main]

use std::os::unix::fs::PermissionsExt;

use composable_fuzz::{check_error, Scratch};
use docker_module::config::Config;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let scratch = Scratch::new("docker_config");
    let path = scratch.path().join("docker-module.conf");
    std::fs::write(&path, data).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    match Config::load(&path) {
        Ok(config) => {
            if let Err(e) = config.usable() {
                check_error("usable", &e);
            }
        }
        Err(e) => check_error("config", &e),
    }
    match Config::load_for_recovery(&path) {
        Ok(config) => {
            if let Err(e) = config.usable() {
                check_error("usable (recovery)", &e);
            }
        }
        Err(e) => check_error("config (recovery)", &e),
    }
});
