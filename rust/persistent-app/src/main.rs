//! `persistent-app`: installed as /usr/share/mender/modules/v3/persistent-app
//! and called by the Mender client once per state.

use std::process::ExitCode;

fn main() -> ExitCode {
    module_kit::fault::init(persistent_app::fault::ENV);
    mender_module_protocol::run("persistent-app", persistent_app::PersistentApp)
}
