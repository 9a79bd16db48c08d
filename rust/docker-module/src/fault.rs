//! Fault injection for crash-safety tests: with the `fault-injection` feature,
//! `DOCKER_MODULE_FAULT=<State>:<point>[:<n>]` kills the process with SIGKILL
//! the n-th time (default: first) the named point is reached in that state,
//! the closest a test can get to pulling the plug. Without the feature every
//! point compiles to nothing, so a shipped binary cannot be made to crash.
//!
//! Points: `mid-pull` (inside a pull, after the first progress report),
//! `after-pull`, `after-create`, `after-start`, `after-stop`, `after-rename`,
//! `after-remove`, `after-remove-image`, `after-remove-volume` (after each
//! engine call of that kind); around an inline archive load `mid-load` (after
//! each chunk handed to the engine), `load-sent` (the whole archive sent, the
//! engine's answer not yet read), `after-load`, `after-retag` (a tag put
//! back), `after-remove-loaded` (an image the load added removed); and
//! `journal-<phase>` after each journal write (`journal-download`,
//! `journal-load`, `journal-loaded`, `journal-install`, `journal-installed`,
//! `journal-commit`, `journal-rolled-back`, `journal-dropped-pulled`,
//! `journal-cleared`).

#[cfg(feature = "fault-injection")]
mod active {
    use std::collections::HashMap;
    use std::sync::{Mutex, OnceLock};

    static STATE: OnceLock<String> = OnceLock::new();
    static COUNTS: Mutex<Option<HashMap<String, u32>>> = Mutex::new(None);

    pub fn set_state(state: &str) {
        let _ = STATE.set(state.to_owned());
    }

    pub fn point(name: &str) {
        let Ok(want) = std::env::var("DOCKER_MODULE_FAULT") else {
            return;
        };
        let state = STATE.get().map(String::as_str).unwrap_or("");
        let mut parts = want.splitn(3, ':');
        let (Some(s), Some(p)) = (parts.next(), parts.next()) else {
            return;
        };
        if s != state || p != name {
            return;
        }
        let nth: u32 = parts.next().and_then(|n| n.parse().ok()).unwrap_or(1);
        let mut guard = COUNTS.lock().unwrap_or_else(|e| e.into_inner());
        let counts = guard.get_or_insert_with(HashMap::new);
        let seen = counts.entry(name.to_owned()).or_insert(0);
        *seen += 1;
        if *seen == nth {
            eprintln!("docker: fault injection: SIGKILL at {state}:{name}:{nth}");
            let _ = nix::sys::signal::raise(nix::sys::signal::Signal::SIGKILL);
        }
    }
}

#[cfg(feature = "fault-injection")]
pub use active::{point, set_state};

#[cfg(not(feature = "fault-injection"))]
#[inline(always)]
pub fn point(_name: &str) {}

#[cfg(not(feature = "fault-injection"))]
#[inline(always)]
pub fn set_state(_state: &str) {}
