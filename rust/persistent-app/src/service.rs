//! The optional systemd unit named in the meta-data, driven through
//! `systemctl`. Its output is captured: stdout belongs to the protocol.

use std::ffi::OsString;
use std::process::{Command, Output};
use std::thread;
use std::time::{Duration, Instant};

use mender_module_protocol::signal;

use crate::error::{Error, Result};
use crate::fault;

pub struct Systemctl {
    program: OsString,
}

/// Replaces `systemctl` in test builds, where no systemd runs.
#[cfg(feature = "fault-injection")]
pub const PROGRAM_ENV: &str = "PERSISTENT_APP_SYSTEMCTL";

impl Systemctl {
    pub fn new() -> Systemctl {
        #[cfg(feature = "fault-injection")]
        if let Some(program) = std::env::var_os(PROGRAM_ENV) {
            return Systemctl { program };
        }
        Systemctl {
            program: OsString::from("systemctl"),
        }
    }

    fn run(&self, unit: &str, args: &[&str]) -> Result<Output> {
        Command::new(&self.program)
            .args(args)
            .arg("--")
            .arg(unit)
            .output()
            .map_err(|e| Error::Service {
                unit: unit.to_owned(),
                detail: format!(
                    "cannot run {}: {e}; the unit needs systemd on the device",
                    self.program.to_string_lossy()
                ),
            })
    }

    /// The unit's `ActiveState` as `systemctl is-active` prints it.
    pub fn state(&self, unit: &str) -> Result<String> {
        let out = self.run(unit, &["is-active"])?;
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    }

    /// Whether the unit runs (or is on its way up or down) and must be
    /// stopped before its files are swapped.
    pub fn is_active(&self, unit: &str) -> Result<bool> {
        let state = self.state(unit)?;
        Ok(!matches!(
            state.as_str(),
            "inactive" | "failed" | "unknown" | ""
        ))
    }

    pub fn stop(&self, unit: &str) -> Result<()> {
        crate::progress!("stopping {unit}");
        let out = self.run(unit, &["stop"])?;
        if !out.status.success() {
            return Err(Error::Service {
                unit: unit.to_owned(),
                detail: format!("systemctl stop failed: {}", last_line(&out)),
            });
        }
        fault::point("stop-service");
        Ok(())
    }

    /// Starts the unit and waits until it is active: a unit that fails or
    /// stays down past the timeout fails the state, and the client rolls back.
    pub fn start_and_wait(&self, unit: &str, timeout: Duration) -> Result<()> {
        crate::progress!("starting {unit}");
        // --no-block: a unit whose start hangs must not hang the module past
        // our own timeout.
        let out = self.run(unit, &["start", "--no-block"])?;
        if !out.status.success() {
            return Err(Error::Service {
                unit: unit.to_owned(),
                detail: format!("systemctl start failed: {}", last_line(&out)),
            });
        }
        fault::point("start-service");
        let deadline = Instant::now() + timeout;
        loop {
            let state = self.state(unit)?;
            match state.as_str() {
                "active" => return Ok(()),
                "failed" => {
                    return Err(Error::Service {
                        unit: unit.to_owned(),
                        detail: format!("failed to start; see journalctl -u {unit}"),
                    })
                }
                _ => {}
            }
            if Instant::now() >= deadline {
                return Err(Error::Service {
                    unit: unit.to_owned(),
                    detail: format!(
                        "not active {} s after start (state {state:?}); see journalctl -u {unit} \
                         or raise service_start_timeout_seconds",
                        timeout.as_secs()
                    ),
                });
            }
            signal::check()?;
            thread::sleep(Duration::from_millis(200));
        }
    }
}

impl Default for Systemctl {
    fn default() -> Self {
        Systemctl::new()
    }
}

fn last_line(out: &Output) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr);
    let line = stderr
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("");
    match out.status.code() {
        Some(code) => format!("exit status {code}: {}", line.trim()),
        None => format!("killed by a signal: {}", line.trim()),
    }
}
