//! Fault injection for the crash-safety tests, with module_kit::fault:
//! `PERSISTENT_APP_FAULT=<State>:<point>[:<n>]` (`*` for any state) kills the
//! process with SIGKILL the n-th time it passes the point, so a test can stop
//! the module at every step of every state and check what a fresh process
//! makes of it. Compiled in only with the `fault-injection` feature (test
//! builds); without it every call compiles to nothing.

/// Every point the module passes, for tests that walk them all.
pub const POINTS: &[&str] = &[
    // After each archive member (or community payload file) is written.
    "extract-entry",
    // The staged tree is complete and synced; the journal still says `staging`.
    "before-staged",
    // After each journal write.
    "journal",
    // After the journal file is removed.
    "clear-journal",
    // After a directory exchange, before the parent is synced.
    "exchange",
    // After a rename, before the parent is synced.
    "rename",
    // After each entry removed from a tree being deleted.
    "remove-entry",
    // After a tree is gone.
    "remove-tree",
    "stop-service",
    "start-service",
];

/// The variable that names the fault to inject (module_kit::fault's syntax,
/// `<State>:<point>[:<n>]`, `*` for any state).
pub const ENV: &str = "PERSISTENT_APP_FAULT";

pub use module_kit::fault::point;
