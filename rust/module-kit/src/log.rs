//! Progress lines for the deployment log: on stderr (stdout belongs to the
//! protocol), each written whole, printable and bounded
//! ([`mender_module_protocol::stderr_line`]), prefixed with the module's name.

/// One line `<module>: <text>` on stderr.
pub fn line(module: &str, args: std::fmt::Arguments<'_>) {
    mender_module_protocol::stderr_line(format_args!("{module}: {args}"));
}

/// `module_kit::log!("docker", "started {}", name)`; each module wraps it in
/// a macro of its own that supplies the name.
#[macro_export]
macro_rules! log {
    ($module:expr, $($arg:tt)*) => {
        $crate::log::line($module, format_args!($($arg)*))
    };
}
