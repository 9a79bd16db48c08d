//! `persistent-app`: installed as /usr/share/mender/modules/v3/persistent-app
//! and called by the Mender client once per state.

use std::ffi::OsString;
use std::process::ExitCode;

use persistent_app::progress;

fn main() -> ExitCode {
    // `mender_module_protocol::run`, except that the error line is written
    // in one piece (see `progress`): the C++ client would otherwise log it
    // as several fragments.
    let args: Vec<OsString> = std::env::args_os().skip(1).collect();
    let stdout = std::io::stdout();
    match mender_module_protocol::dispatch(persistent_app::PersistentApp, &args, &mut stdout.lock())
    {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            progress!(
                "persistent-app: error: {}",
                mender_module_protocol::one_line(e.as_ref())
            );
            ExitCode::FAILURE
        }
    }
}
