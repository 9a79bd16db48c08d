//! What both Update Modules are built from besides the protocol crate, written
//! once: durable, fd-relative file operations ([`fs`]), the module lock
//! ([`lock`]), fault points for crash tests ([`fault`]), unique ids ([`ids`]),
//! log lines ([`log!`]) and versioned state files ([`state_file`]).

pub mod fault;
pub mod fs;
pub mod ids;
pub mod lock;
pub mod log;
pub mod state_file;

pub use state_file::{StateFile, Versioned};
