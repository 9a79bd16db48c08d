//! SIGTERM handling.
//!
//! The client sends SIGTERM to the module's process group when a state runs
//! past its timeout, and SIGKILL a minute later. A module must use that minute
//! to stop at a consistent point instead of dying wherever it happens to be.
//! The handler only records the request; blocking reads and opens of this
//! crate return [`crate::Error::Terminated`] when interrupted, and long-running
//! module code polls [`terminated`] between steps.

use std::sync::atomic::{AtomicBool, Ordering};

use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};

static TERMINATED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_terminate(_: nix::libc::c_int) {
    // Only async-signal-safe work here: an atomic store.
    TERMINATED.store(true, Ordering::SeqCst);
}

/// Installs the handler for SIGTERM and SIGINT. Without `SA_RESTART`, so that
/// blocking system calls return EINTR and the module gets to react.
pub fn install() -> std::io::Result<()> {
    let action = SigAction::new(
        SigHandler::Handler(on_terminate),
        SaFlags::empty(),
        SigSet::empty(),
    );
    for sig in [Signal::SIGTERM, Signal::SIGINT] {
        // SAFETY: the handler performs a single atomic store, which is
        // async-signal-safe, and replaces no handler anything else relies on.
        unsafe { sigaction(sig, &action) }.map_err(std::io::Error::from)?;
    }
    Ok(())
}

/// True once SIGTERM or SIGINT has arrived.
pub fn terminated() -> bool {
    TERMINATED.load(Ordering::SeqCst)
}

/// `Err(Terminated)` once a termination was requested; call between steps.
pub fn check() -> crate::Result<()> {
    if terminated() {
        Err(crate::Error::Terminated)
    } else {
        Ok(())
    }
}
