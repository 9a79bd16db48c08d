//! docker-spec reading an artifact's meta-data: the legacy format and
//! docker-stack format 1, with every value check behind them.
#![no_main]

use composable_fuzz::check_error;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match docker_spec::parse_str(text) {
        Ok(release) => {
            for c in &release.containers {
                let _ = c.published_ports().count();
            }
        }
        Err(e) => check_error("meta-data", &e),
    }
});
