//! The health gate: an install succeeds only when every new container runs
//! (and is healthy, where it has a healthcheck) within the timeout. A
//! container that exits or restarts meanwhile fails it at once. Containers
//! without a healthcheck must also keep running for the settle time, or a
//! process that dies a moment after its start would pass.

use std::time::{Duration, Instant};

use mender_module_protocol::signal;

use docker_spec::Condition;

use crate::engine::{Container, Engine, EngineError, Health};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Pass,
    /// Still waiting, and for what.
    Wait(String),
    /// Failed for good, and why.
    Fail(String),
}

/// Judges one round of observations (`None`: the container is gone), taken
/// `elapsed` after the gate opened.
pub fn assess(
    observed: &[(String, Option<Container>)],
    elapsed: Duration,
    settle: Duration,
) -> Verdict {
    let mut waiting = Vec::new();
    for (name, c) in observed {
        let Some(c) = c else {
            return Verdict::Fail(format!("container {name} disappeared"));
        };
        if c.restart_count > 0 || c.restarting {
            return Verdict::Fail(format!(
                "container {name} restarted (restart count {}, last exit code {})",
                c.restart_count, c.exit_code
            ));
        }
        if !c.running {
            return Verdict::Fail(format!("container {name} exited with code {}", c.exit_code));
        }
        match &c.health {
            Health::Unhealthy(output) => {
                let output = if output.is_empty() {
                    String::new()
                } else {
                    let mut o: String = output.chars().take(200).collect();
                    if o.len() < output.len() {
                        o.push('…');
                    }
                    format!(" (last check: {o})")
                };
                return Verdict::Fail(format!("container {name} is unhealthy{output}"));
            }
            Health::Starting => waiting.push(format!("{name} to become healthy")),
            Health::Healthy => {}
            Health::None if elapsed < settle => {
                waiting.push(format!("{name} to keep running for {}s", settle.as_secs()))
            }
            Health::None => {}
        }
    }
    if waiting.is_empty() {
        Verdict::Pass
    } else {
        Verdict::Wait(waiting.join(", "))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum GateError {
    #[error("health gate: {0}; the previous set will be restored")]
    Failed(String),
    #[error("health gate: still waiting for {waiting} after {}s (the release's health timeout); the previous set will be restored", timeout.as_secs())]
    TimedOut { waiting: String, timeout: Duration },
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error(transparent)]
    Terminated(#[from] mender_module_protocol::Error),
}

/// Polls until the verdict is final or the timeout passes: each round
/// checks for SIGTERM, `observe`s the engine, and `judge`s what it saw at the
/// time since the first round began; a wait sleeps `poll` before the next.
fn poll_until<O>(
    timeout: Duration,
    poll: Duration,
    mut observe: impl FnMut() -> Result<O, EngineError>,
    judge: impl Fn(&O, Duration) -> Verdict,
) -> Result<(), GateError> {
    let started = Instant::now();
    loop {
        signal::check()?;
        let observed = observe()?;
        let elapsed = started.elapsed();
        match judge(&observed, elapsed) {
            Verdict::Pass => return Ok(()),
            Verdict::Fail(why) => return Err(GateError::Failed(why)),
            Verdict::Wait(waiting) if elapsed >= timeout => {
                return Err(GateError::TimedOut { waiting, timeout })
            }
            Verdict::Wait(_) => std::thread::sleep(poll),
        }
    }
}

/// Polls the engine until the verdict is final or the timeout passes.
pub fn wait(
    engine: &mut dyn Engine,
    names: &[String],
    timeout: Duration,
    settle: Duration,
    poll: Duration,
) -> Result<(), GateError> {
    poll_until(
        timeout,
        poll,
        || {
            let mut observed = Vec::with_capacity(names.len());
            for n in names {
                observed.push((n.clone(), engine.container(n)?));
            }
            Ok(observed)
        },
        |observed, elapsed| assess(observed, elapsed, settle),
    )
}

/// Judges what the containers others depend on have reached; `None`: gone.
pub fn assess_dependencies(observed: &[(String, Condition, Option<Container>)]) -> Verdict {
    let mut waiting = Vec::new();
    for (name, condition, c) in observed {
        let Some(c) = c else {
            return Verdict::Fail(format!("container {name} disappeared"));
        };
        match condition {
            Condition::Started => {}
            Condition::Healthy => {
                if c.restart_count > 0 || c.restarting {
                    return Verdict::Fail(format!(
                        "container {name} restarted (restart count {}, last exit code {}) before it was healthy",
                        c.restart_count, c.exit_code
                    ));
                }
                if !c.running {
                    return Verdict::Fail(format!(
                        "container {name} exited with code {} before it was healthy",
                        c.exit_code
                    ));
                }
                match &c.health {
                    Health::Healthy => {}
                    Health::Starting => waiting.push(format!("{name} to become healthy")),
                    Health::Unhealthy(_) => {
                        return Verdict::Fail(format!("container {name} is unhealthy"))
                    }
                    Health::None => {
                        return Verdict::Fail(format!(
                            "container {name} has no healthcheck, which service_healthy waits for; give it one or depend on it with service_started"
                        ))
                    }
                }
            }
            Condition::CompletedSuccessfully => {
                if c.running || c.restarting {
                    waiting.push(format!("{name} to complete"));
                } else if c.exit_code != 0 {
                    return Verdict::Fail(format!(
                        "container {name} exited with code {}; what depends on it with service_completed_successfully needs 0",
                        c.exit_code
                    ));
                }
            }
        }
    }
    if waiting.is_empty() {
        Verdict::Pass
    } else {
        Verdict::Wait(waiting.join(", "))
    }
}

/// Polls the engine until every dependency is where `waits` asks, one of
/// them fails for good, or the timeout passes.
pub fn wait_for_dependencies(
    engine: &mut dyn Engine,
    waits: &[(String, Condition)],
    timeout: Duration,
    poll: Duration,
) -> Result<(), GateError> {
    poll_until(
        timeout,
        poll,
        || {
            let mut observed = Vec::with_capacity(waits.len());
            for (n, condition) in waits {
                observed.push((n.clone(), *condition, engine.container(n)?));
            }
            Ok(observed)
        },
        |observed, _| assess_dependencies(observed),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn running(health: Health) -> Container {
        let mut c = Container::new("id", "web");
        c.running = true;
        c.health = health;
        c
    }

    fn one(c: Option<Container>, elapsed: u64) -> Verdict {
        assess(
            &[("web".to_owned(), c)],
            Duration::from_secs(elapsed),
            Duration::from_secs(3),
        )
    }

    #[test]
    fn verdicts_for_every_container_state() {
        let exited = {
            let mut c = running(Health::None);
            c.running = false;
            c.exit_code = 3;
            c
        };
        let restarted = {
            let mut c = running(Health::None);
            c.restart_count = 1;
            c
        };
        let restarting = {
            let mut c = running(Health::None);
            c.restarting = true;
            c
        };
        let cases: Vec<(Option<Container>, u64, &str)> = vec![
            (
                Some(running(Health::None)),
                0,
                "wait: web to keep running for 3s",
            ),
            (Some(running(Health::None)), 3, "pass"),
            (
                Some(running(Health::Starting)),
                10,
                "wait: web to become healthy",
            ),
            (Some(running(Health::Healthy)), 0, "pass"),
            (
                Some(running(Health::Unhealthy("curl: refused".into()))),
                0,
                "fail: container web is unhealthy (last check: curl: refused)",
            ),
            (Some(exited), 0, "fail: container web exited with code 3"),
            (
                Some(restarted),
                0,
                "fail: container web restarted (restart count 1",
            ),
            (Some(restarting), 0, "fail: container web restarted"),
            (None, 0, "fail: container web disappeared"),
        ];
        for (c, elapsed, want) in cases {
            let got = match one(c, elapsed) {
                Verdict::Pass => "pass".to_owned(),
                Verdict::Wait(w) => format!("wait: {w}"),
                Verdict::Fail(f) => format!("fail: {f}"),
            };
            assert!(got.starts_with(want), "got {got:?}, want {want:?}");
        }
    }

    #[test]
    fn one_failure_fails_the_whole_set_and_waits_are_listed_together() {
        let mut dead = running(Health::None);
        dead.running = false;
        let v = assess(
            &[
                ("a".into(), Some(running(Health::Healthy))),
                ("b".into(), Some(dead)),
            ],
            Duration::ZERO,
            Duration::ZERO,
        );
        assert_eq!(v, Verdict::Fail("container b exited with code 0".into()));
        let v = assess(
            &[
                ("a".into(), Some(running(Health::Starting))),
                ("b".into(), Some(running(Health::Starting))),
            ],
            Duration::ZERO,
            Duration::ZERO,
        );
        assert_eq!(
            v,
            Verdict::Wait("a to become healthy, b to become healthy".into())
        );
    }

    #[test]
    fn dependency_verdicts_for_every_condition_and_state() {
        let exited = |code| {
            let mut c = running(Health::None);
            c.running = false;
            c.exit_code = code;
            c
        };
        let cases: Vec<(Condition, Option<Container>, &str)> = vec![
            (Condition::Started, Some(exited(1)), "pass"),
            (Condition::Healthy, Some(running(Health::Healthy)), "pass"),
            (
                Condition::Healthy,
                Some(running(Health::Starting)),
                "wait: web to become healthy",
            ),
            (
                Condition::Healthy,
                Some(running(Health::Unhealthy("x".into()))),
                "fail: container web is unhealthy",
            ),
            (
                Condition::Healthy,
                Some(running(Health::None)),
                "fail: container web has no healthcheck, which service_healthy waits for",
            ),
            (
                Condition::Healthy,
                Some(exited(2)),
                "fail: container web exited with code 2 before it was healthy",
            ),
            (
                Condition::CompletedSuccessfully,
                Some(running(Health::None)),
                "wait: web to complete",
            ),
            (Condition::CompletedSuccessfully, Some(exited(0)), "pass"),
            (
                Condition::CompletedSuccessfully,
                Some(exited(3)),
                "fail: container web exited with code 3; what depends on it",
            ),
            (
                Condition::CompletedSuccessfully,
                None,
                "fail: container web disappeared",
            ),
        ];
        for (condition, c, want) in cases {
            let got = match assess_dependencies(&[("web".into(), condition, c)]) {
                Verdict::Pass => "pass".to_owned(),
                Verdict::Wait(w) => format!("wait: {w}"),
                Verdict::Fail(f) => format!("fail: {f}"),
            };
            assert!(
                got.starts_with(want),
                "{condition:?}: got {got:?}, want {want:?}"
            );
        }
    }
}
