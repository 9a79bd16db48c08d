//! `persistent-app`: installed as /usr/share/mender/modules/v3/persistent-app
//! and called by the Mender client once per state.

use std::process::ExitCode;

fn main() -> ExitCode {
    module_kit::fault::init(persistent_app::fault::ENV);
    // Not a client state: the boot-time recovery (a client calls states by
    // their CamelCase names and nothing else).
    if std::env::args_os().nth(1).as_deref() == Some("recover".as_ref()) {
        return mender_module_protocol::run_standalone("persistent-app", || {
            Ok(persistent_app::recover_at_boot()?)
        });
    }
    mender_module_protocol::run("persistent-app", persistent_app::PersistentApp)
}
