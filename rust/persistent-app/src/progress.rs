//! Progress and error lines on stderr, each written with one `write(2)`.
//!
//! The C++ client (mender-update 5.1.0) logs every chunk it reads from a
//! module's stderr as a record of its own; `eprintln!` writes its pieces
//! one by one, so a line reached the deployment log cut into fragments
//! ("persistent-app: {...}", "demo-app{...}", …). One buffer per line keeps
//! each line whole under both clients (a pipe write below 4 KiB is atomic).

use std::fmt;

/// Writes `persistent-app: <line>` and a newline to stderr in one piece,
/// printable and bounded (module_kit::log); errors writing to stderr are
/// ignored, as `eprintln!` would panic on them instead.
pub fn line(args: fmt::Arguments<'_>) {
    module_kit::log::line("persistent-app", args);
}

/// `progress!("{app}: ...")`: one line `persistent-app: {app}: ...` on stderr, whole.
#[macro_export]
macro_rules! progress {
    ($($arg:tt)*) => {
        $crate::progress::line(format_args!($($arg)*))
    };
}
