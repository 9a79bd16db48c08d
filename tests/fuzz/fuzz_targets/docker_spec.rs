//! docker-spec reading an artifact's meta-data (the legacy format and
//! docker-stack format 1, with every value check behind them), then the
//! docker module's device policy judging what parsed.
#![no_main]

use std::sync::OnceLock;

use composable_fuzz::{check_error, check_line};
use docker_module::policy::{self, Host, Policy};
use libfuzzer_sys::fuzz_target;

fn strict() -> &'static Policy {
    static POLICY: OnceLock<Policy> = OnceLock::new();
    POLICY.get_or_init(|| {
        policy::parse(&serde_json::json!({
            "allow_privileged": false,
            "allowed_capabilities": ["NET_ADMIN"],
            "allowed_devices": ["/dev/ttyUSB0"],
            "allowed_bind_prefixes": ["/data/apps"],
            "allow_engine_socket": false,
            "allow_host_network": false
        }))
        .unwrap()
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match docker_spec::parse_str(text) {
        Ok(release) => {
            for c in &release.containers {
                let _ = c.published_ports().count();
            }
            let host = Host::default();
            for p in [&Policy::default(), strict()] {
                if let Err(refusal) = policy::check(&release, p, "/run/docker.sock", &host) {
                    check_line("policy", &refusal.to_string());
                }
            }
        }
        Err(e) => check_error("meta-data", &e),
    }
});
