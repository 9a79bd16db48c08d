//! Fault injection for the crash-safety tests.
//!
//! Compiled in only with the `fault-injection` feature (test builds).
//! `PERSISTENT_APP_FAULT=POINT` kills the process with SIGKILL the first time
//! it passes POINT, `POINT#N` the N-th time, so a test can stop the module at
//! every step of every state and check what a fresh process makes of it.
//! Without the feature every call compiles to nothing.

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

pub const ENV: &str = "PERSISTENT_APP_FAULT";

#[cfg(feature = "fault-injection")]
pub fn point(name: &str) {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::OnceLock;

    static TARGET: OnceLock<Option<(String, u64)>> = OnceLock::new();
    static HITS: AtomicU64 = AtomicU64::new(0);

    let target = TARGET.get_or_init(|| {
        let spec = std::env::var(ENV).ok()?;
        let (point, n) = match spec.split_once('#') {
            Some((p, n)) => (p.to_owned(), n.parse().ok()?),
            None => (spec, 1),
        };
        Some((point, n))
    });
    if let Some((point, n)) = target {
        if point == name && HITS.fetch_add(1, Ordering::SeqCst) + 1 == *n {
            crate::progress!("persistent-app: fault injected at {name}#{n}");
            let _ = nix::sys::signal::kill(nix::unistd::Pid::this(), nix::sys::signal::SIGKILL);
        }
    }
}

#[cfg(not(feature = "fault-injection"))]
#[inline(always)]
pub fn point(_name: &str) {}
