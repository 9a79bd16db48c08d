//! Fault points for the crash-safety tests: the closest a test gets to
//! pulling the plug at a named step of a state.
//!
//! One syntax for every module. A module names its variable once
//! ([`init`], e.g. `PERSISTENT_APP_FAULT`); with the `fault-injection`
//! feature, `<VAR>=<State>:<point>[:<n>]` kills the process with SIGKILL the
//! n-th time (default: the first) this process reaches `point` while running
//! `State` (`*` matches any state). The state is the one the protocol crate
//! dispatched ([`mender_module_protocol::current_state`]).
//!
//! `<VAR>_TRACE=<file>` appends `<State>:<point>:<pid>` to that file at every
//! point reached, so a test run can list the (state, point) pairs it passed
//! and how often each process passed them.
//!
//! `<VAR>_ACTION=stop` stops the process (SIGSTOP) at the point instead of
//! killing it: the machine around it is then cut from outside (a VM's power),
//! so that what the module had not yet made durable is lost as in a real
//! power cut, not only the process.
//!
//! Without the feature every point compiles to nothing: a shipped binary
//! cannot be made to crash by its environment.

#[cfg(feature = "fault-injection")]
mod active {
    use std::collections::HashMap;
    use std::io::Write;
    use std::sync::{Mutex, OnceLock};

    static VAR: OnceLock<&'static str> = OnceLock::new();
    static HITS: Mutex<Option<HashMap<String, u32>>> = Mutex::new(None);

    pub fn init(var: &'static str) {
        let _ = VAR.set(var);
    }

    pub fn var() -> Option<&'static str> {
        VAR.get().copied()
    }

    pub fn point(name: &str) {
        let Some(var) = VAR.get() else {
            return;
        };
        let state = mender_module_protocol::current_state()
            .map(|s| s.name())
            .unwrap_or("");
        if let Some(trace) = std::env::var_os(format!("{var}_TRACE")) {
            if let Ok(mut f) = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(trace)
            {
                let _ = f.write_all(format!("{state}:{name}:{}\n", std::process::id()).as_bytes());
            }
        }
        let Ok(want) = std::env::var(var) else {
            return;
        };
        let Some((want_state, want_point, nth)) = super::parse(&want) else {
            return;
        };
        if (want_state != "*" && want_state != state) || want_point != name {
            return;
        }
        let mut hits = HITS.lock().unwrap_or_else(|e| e.into_inner());
        let count = hits
            .get_or_insert_with(HashMap::new)
            .entry(name.to_owned())
            .or_insert(0);
        *count += 1;
        if *count == nth {
            let stop = std::env::var(format!("{var}_ACTION")).is_ok_and(|a| a == "stop");
            mender_module_protocol::stderr_line(format_args!(
                "fault injected at {state}:{name}:{nth}{}",
                if stop { " (stopped)" } else { "" }
            ));
            let signal = if stop {
                nix::sys::signal::SIGSTOP
            } else {
                nix::sys::signal::SIGKILL
            };
            let _ = nix::sys::signal::kill(nix::unistd::Pid::this(), signal);
        }
    }
}

#[cfg(feature = "fault-injection")]
pub use active::{init, point};

/// Test builds only: `<VAR>_NO_EXCHANGE` set makes [`crate::fs::Dir::exchange`]
/// answer as a filesystem without `RENAME_EXCHANGE` does, so the tests reach
/// the non-atomic fallback on any filesystem.
#[cfg(feature = "fault-injection")]
pub fn exchange_disabled() -> bool {
    active::var().is_some_and(|v| std::env::var_os(format!("{v}_NO_EXCHANGE")).is_some())
}

#[cfg(not(feature = "fault-injection"))]
#[inline(always)]
pub fn exchange_disabled() -> bool {
    false
}

/// Names the variable that holds the fault to inject (nothing without the
/// `fault-injection` feature).
#[cfg(not(feature = "fault-injection"))]
#[inline(always)]
pub fn init(_var: &'static str) {}

/// A step after which a power cut must leave a state that the next state's
/// fresh process can recover from.
#[cfg(not(feature = "fault-injection"))]
#[inline(always)]
pub fn point(_name: &str) {}

/// `State:point[:n]` as (state, point, n).
#[cfg_attr(not(feature = "fault-injection"), allow(dead_code))]
fn parse(spec: &str) -> Option<(&str, &str, u32)> {
    let mut parts = spec.splitn(3, ':');
    let state = parts.next().filter(|s| !s.is_empty())?;
    let point = parts.next().filter(|s| !s.is_empty())?;
    let nth = match parts.next() {
        Some(n) => n.parse().ok().filter(|n| *n > 0)?,
        None => 1,
    };
    Some((state, point, nth))
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_fault_syntax_is_state_point_and_an_optional_count() {
        assert_eq!(
            super::parse("Download:extract-entry"),
            Some(("Download", "extract-entry", 1))
        );
        assert_eq!(super::parse("*:exchange:3"), Some(("*", "exchange", 3)));
        assert_eq!(super::parse("ArtifactInstall:after-stop:0"), None);
        assert_eq!(super::parse("exchange"), None);
        assert_eq!(super::parse(":x"), None);
        assert_eq!(super::parse("A:b:c"), None);
    }
}
