//! The device-side configuration, `/etc/mender/docker-module.conf` (JSON;
//! `DOCKER_MODULE_CONF` names another file, for tests). Everything has a
//! default, so a device without the file behaves like the old module's
//! drop-in. Registry credentials live only here: never in an artifact, never
//! in a log line. No value of this file reaches a log line at all: a bad one
//! is reported by its key and the kind of value the key takes.
//!
//! ```json
//! {
//!   "socket": "/var/run/docker.sock",
//!   "state_dir": "/data/mender-composable/docker",
//!   "health_timeout_seconds": 120,
//!   "settle_seconds": 5,
//!   "stop_timeout_seconds": 10,
//!   "download": "stream",
//!   "registries": {
//!     "fleet": {"address": "registry.example.com:5000", "username": "device", "password": "…"}
//!   },
//!   "policy": {"allow_privileged": false, "allowed_bind_prefixes": ["/data/apps"]}
//! }
//! ```
//!
//! `policy` is described in [`crate::policy`].

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{Map, Value};

use crate::engine::Credentials;
use crate::policy::{self, Policy};

pub const DEFAULT_PATH: &str = "/etc/mender/docker-module.conf";

#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// Where the file was read from (or would have been).
    pub path: PathBuf,
    /// The engine's unix socket.
    pub socket: String,
    /// Journals and release records, one file per stack. On /data so they
    /// outlive a rootfs update and a power cut.
    pub state_dir: PathBuf,
    /// How long the health gate waits when the release does not say.
    pub health_timeout: Duration,
    /// How long a container without a healthcheck must keep running before
    /// it counts as up: a process that dies at once must fail the gate.
    pub settle: Duration,
    /// How long a stopping container gets before the engine kills it, unless
    /// it was created with its own (`stop_grace_period_seconds`).
    pub stop_timeout: Duration,
    pub download: DownloadMode,
    pub registries: BTreeMap<String, Credentials>,
    /// What artifacts may ask of the host.
    pub policy: Policy,
    /// For the recovery states: a key they need only to reach the engine
    /// was not valid. Reported if a recovery state has work for the engine.
    pub unusable: Option<String>,
}

/// `"download"`: stream inline archives into the engine while they arrive,
/// or let the client store them for ArtifactInstall.
pub use mender_module_protocol::DownloadMode;

/// The top-level keys, in the order they are documented.
const KEYS: &[&str] = &[
    "socket",
    "state_dir",
    "health_timeout_seconds",
    "settle_seconds",
    "stop_timeout_seconds",
    "download",
    "registries",
    "policy",
];

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read the docker module configuration {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the docker module configuration {} is not valid: {detail}", path.display())]
    Invalid { path: PathBuf, detail: String },
    #[error("the docker module configuration {shown} holds registry credentials but {problem}; run `chown root:root {shown}; chmod 600 {shown}`", shown = path.display())]
    Exposed { path: PathBuf, problem: String },
}

impl Config {
    pub fn defaults(path: PathBuf) -> Config {
        Config {
            path,
            socket: "/var/run/docker.sock".to_owned(),
            state_dir: PathBuf::from("/data/mender-composable/docker"),
            health_timeout: Duration::from_secs(120),
            settle: Duration::from_secs(5),
            stop_timeout: Duration::from_secs(10),
            download: DownloadMode::Stream,
            registries: BTreeMap::new(),
            policy: Policy::default(),
            unusable: None,
        }
    }

    /// The error a recovery state returns when it must reach the engine but
    /// a key for that was not valid.
    pub fn usable(&self) -> Result<(), ConfigError> {
        match &self.unusable {
            Some(detail) => Err(ConfigError::Invalid {
                path: self.path.clone(),
                detail: detail.clone(),
            }),
            None => Ok(()),
        }
    }

    /// Reads the file named by `DOCKER_MODULE_CONF`, else [`DEFAULT_PATH`].
    pub fn load_from_env() -> Result<Config, ConfigError> {
        let path = std::env::var_os("DOCKER_MODULE_CONF")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(DEFAULT_PATH));
        Config::load(&path)
    }

    /// For the states that only put things back (rollback, failure, cleanup,
    /// commit): they never pull, so credentials are dropped unread and a
    /// file others can read does not stop them from restoring the device.
    /// They read only `state_dir` (to find the journal) strictly; `socket`
    /// and `stop_timeout_seconds` are needed only when there is something to
    /// undo ([`Config::usable`]); other keys are not read. So a mistake in a
    /// key they do not use is reported once, by the state that uses it.
    pub fn load_for_recovery_from_env() -> Result<Config, ConfigError> {
        let path = std::env::var_os("DOCKER_MODULE_CONF")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(DEFAULT_PATH));
        Config::load_for_recovery(&path)
    }

    pub fn load_for_recovery(path: &Path) -> Result<Config, ConfigError> {
        Config::parse(path, false)
    }

    /// A missing file gives the defaults.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        Config::parse(path, true)
    }

    fn parse(path: &Path, with_credentials: bool) -> Result<Config, ConfigError> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(Config::defaults(path.to_owned()))
            }
            Err(source) => {
                return Err(ConfigError::Read {
                    path: path.to_owned(),
                    source,
                })
            }
        };
        let invalid = |detail: String| ConfigError::Invalid {
            path: path.to_owned(),
            detail,
        };
        // serde's messages quote the offending value (a password, say):
        // only the position of a syntax error is kept.
        let doc: Value = serde_json::from_str(&text).map_err(|e| {
            invalid(format!(
                "it is not valid JSON (line {}, column {})",
                e.line(),
                e.column()
            ))
        })?;
        let Value::Object(file) = doc else {
            return Err(invalid(
                "it must be a JSON object such as {\"socket\": \"/var/run/docker.sock\"}".into(),
            ));
        };
        let mut config = Config::defaults(path.to_owned());
        if with_credentials {
            read_all(&mut config, &file).map_err(invalid)?;
            if !config.registries.is_empty() {
                check_private(path)?;
            }
        } else {
            if let Some(v) = file.get("state_dir") {
                config.state_dir = state_dir(v).map_err(invalid)?;
            }
            let engine = file
                .get("socket")
                .map(|v| socket(v).map(|s| config.socket = s))
                .transpose()
                .and_then(|_| {
                    file.get("stop_timeout_seconds")
                        .map(|v| {
                            seconds("stop_timeout_seconds", v, 0).map(|d| config.stop_timeout = d)
                        })
                        .transpose()
                });
            config.unusable = engine.err();
        }
        Ok(config)
    }
}

/// Every key, strictly: what Download and ArtifactInstall run with.
fn read_all(config: &mut Config, file: &Map<String, Value>) -> Result<(), String> {
    for (key, v) in file {
        match key.as_str() {
            "socket" => config.socket = socket(v)?,
            "state_dir" => config.state_dir = state_dir(v)?,
            "health_timeout_seconds" => config.health_timeout = seconds(key, v, 1)?,
            "settle_seconds" => config.settle = seconds(key, v, 0)?,
            "stop_timeout_seconds" => config.stop_timeout = seconds(key, v, 0)?,
            "download" => {
                config.download = match v.as_str() {
                    Some("stream") => DownloadMode::Stream,
                    Some("store") => DownloadMode::Store,
                    _ => return Err("download: must be \"stream\" or \"store\"".into()),
                }
            }
            "registries" => config.registries = registries(v)?,
            "policy" => config.policy = policy::parse(v)?,
            _ => {
                return Err(format!(
                    "{}: unknown key; the keys are {}",
                    crate::archive::printable(key.as_bytes(), 40),
                    KEYS.join(", ")
                ))
            }
        }
    }
    Ok(())
}

fn socket(v: &Value) -> Result<String, String> {
    let s = v.as_str().unwrap_or("");
    let s = s.strip_prefix("unix://").unwrap_or(s);
    if s.starts_with('/') {
        Ok(s.to_owned())
    } else {
        Err(
            "socket: must be the absolute path of the engine's unix socket, /PATH or unix:///PATH"
                .into(),
        )
    }
}

fn state_dir(v: &Value) -> Result<PathBuf, String> {
    match v.as_str() {
        Some(d) if d.starts_with('/') => Ok(PathBuf::from(d)),
        _ => Err("state_dir: must be an absolute path".into()),
    }
}

fn seconds(key: &str, v: &Value, min: u64) -> Result<Duration, String> {
    match v.as_u64() {
        Some(s) if s >= min => Ok(Duration::from_secs(s)),
        _ => Err(format!(
            "{key}: must be a whole number of seconds, at least {min}"
        )),
    }
}

fn registries(v: &Value) -> Result<BTreeMap<String, Credentials>, String> {
    let Value::Object(map) = v else {
        return Err(
            "registries: must be an object: name → {\"address\", \"username\", \"password\"}"
                .into(),
        );
    };
    let mut out = BTreeMap::new();
    for (name, entry) in map {
        let at = format!(
            "registries.{}",
            crate::archive::printable(name.as_bytes(), 40)
        );
        let Value::Object(fields) = entry else {
            return Err(format!(
                "{at}: must be an object {{\"address\", \"username\", \"password\"}}"
            ));
        };
        if let Some(k) = fields
            .keys()
            .find(|k| !["address", "username", "password"].contains(&k.as_str()))
        {
            return Err(format!(
                "{at}.{}: unknown key; the keys are address, username, password",
                crate::archive::printable(k.as_bytes(), 40)
            ));
        }
        let field = |k: &str| -> Result<String, String> {
            match fields.get(k) {
                Some(Value::String(s)) => Ok(s.clone()),
                Some(_) => Err(format!("{at}.{k}: must be a string")),
                None => Err(format!("{at}.{k}: is missing")),
            }
        };
        let address = field("address")?;
        if address.is_empty() || address.contains('/') {
            return Err(format!(
                "{at}.address: must be HOST[:PORT] as in image names, e.g. registry.example.com:5000"
            ));
        }
        out.insert(
            name.clone(),
            Credentials {
                address,
                username: field("username")?,
                password: field("password")?,
            },
        );
    }
    Ok(out)
}

/// Credentials must be readable by root alone.
fn check_private(path: &Path) -> Result<(), ConfigError> {
    let meta = std::fs::metadata(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })?;
    let problem = if meta.uid() != 0 {
        Some(format!("it is owned by uid {}, not root", meta.uid()))
    } else if meta.mode() & 0o077 != 0 {
        Some(format!(
            "its mode {:04o} lets group or others read it",
            meta.mode() & 0o7777
        ))
    } else {
        None
    };
    match problem {
        Some(problem) => Err(ConfigError::Exposed {
            path: path.to_owned(),
            problem,
        }),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn file(name: &str, text: &str, mode: u32) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("dm-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
        p
    }

    #[test]
    fn a_missing_file_gives_the_defaults() {
        let c = Config::load(Path::new("/nonexistent/docker-module.conf")).unwrap();
        assert_eq!(c.socket, "/var/run/docker.sock");
        assert_eq!(c.state_dir, Path::new("/data/mender-composable/docker"));
        assert!(c.registries.is_empty());
    }

    #[test]
    fn values_override_and_unknown_keys_are_refused() {
        let p = file(
            "a.conf",
            r#"{"socket": "unix:///run/d.sock", "state_dir": "/data/x", "health_timeout_seconds": 7, "settle_seconds": 0}"#,
            0o644,
        );
        let c = Config::load(&p).unwrap();
        assert_eq!(c.socket, "/run/d.sock");
        assert_eq!(c.health_timeout, Duration::from_secs(7));
        assert_eq!(c.settle, Duration::ZERO);
        let p = file("b.conf", r#"{"sokcet": "/x"}"#, 0o644);
        let e = Config::load(&p).unwrap_err().to_string();
        assert!(
            e.contains("sokcet: unknown key; the keys are socket,"),
            "{e}"
        );
        let p = file("c.conf", r#"{"socket": "relative"}"#, 0o644);
        assert!(Config::load(&p)
            .unwrap_err()
            .to_string()
            .contains("absolute"));
    }

    #[test]
    fn credentials_need_a_private_file_and_are_never_printed() {
        let text = r#"{"registries": {"fleet": {"address": "reg.example.com:5000", "username": "dev", "password": "hunter2"}}}"#;
        let open = file("d.conf", text, 0o644);
        let e = Config::load(&open).unwrap_err().to_string();
        let root = std::fs::metadata(&open).unwrap().uid() == 0;
        if root {
            assert!(e.contains("mode 0644 lets group or others read it"), "{e}");
        } else {
            assert!(e.contains("not root"), "{e}");
        }
        assert!(e.contains("chmod 600"), "{e}");
        assert!(!e.contains("hunter2"));
        let recovery = Config::parse(&open, false).unwrap();
        assert!(
            recovery.registries.is_empty(),
            "recovery states never see credentials"
        );
        if root {
            let private = file("e.conf", text, 0o600);
            let c = Config::load(&private).unwrap();
            let creds = &c.registries["fleet"];
            assert_eq!(creds.username, "dev");
            assert!(!format!("{c:?}").contains("hunter2"));
        }
        let bad = file(
            "f.conf",
            r#"{"registries": {"x": {"address": "http://reg", "username": "u", "password": "p"}}}"#,
            0o600,
        );
        assert!(Config::load(&bad)
            .unwrap_err()
            .to_string()
            .contains("HOST[:PORT]"));
    }

    const SECRET: &str = "Sup3r-S3cret-pa55";

    /// Mistakes a careless parser answers by quoting the value: each with
    /// the key path the message must name instead.
    fn malformed() -> Vec<(String, &'static str)> {
        let reg = |password: &str| {
            format!(
                r#"{{"registries": {{"fleet": {{"address": "reg:5000", "username": "u", "password": {password}}}}}}}"#
            )
        };
        vec![
            (
                reg("31415926535897"),
                "registries.fleet.password: must be a string",
            ),
            (
                reg(&format!(r#"["{SECRET}"]"#)),
                "registries.fleet.password: must be a string",
            ),
            (
                reg(&format!(r#"{{"value": "{SECRET}"}}"#)),
                "registries.fleet.password: must be a string",
            ),
            (
                format!(r#"{{"registries": {{"fleet": "u:{SECRET}@reg"}}}}"#),
                "registries.fleet: must be an object",
            ),
            (
                format!(
                    r#"{{"registries": {{"fleet": {{"address": "http://{SECRET}@reg", "username": "u", "password": "p"}}}}}}"#
                ),
                "registries.fleet.address: must be HOST[:PORT]",
            ),
            (
                format!(r#"{{"settle_seconds": "{SECRET}"}}"#),
                "settle_seconds: must be a whole number",
            ),
            (
                r#"{"health_timeout_seconds": 0}"#.to_owned(),
                "health_timeout_seconds: must be a whole number of seconds, at least 1",
            ),
            (
                format!(r#"{{"download": "{SECRET}"}}"#),
                "download: must be \"stream\" or \"store\"",
            ),
            (
                format!(r#"{{"socket": "{SECRET}"}}"#),
                "socket: must be the absolute path",
            ),
            (
                format!(r#"{{"state_dir": "{SECRET}"}}"#),
                "state_dir: must be an absolute path",
            ),
            (
                format!(r#"{{"policy": {{"allow_privileged": "{SECRET}"}}}}"#),
                "policy.allow_privileged: must be true or false",
            ),
            (format!(r#"["{SECRET}"]"#), "it must be a JSON object"),
            (
                reg(&format!(r#""{SECRET}" "oops": 1"#)),
                "it is not valid JSON (line 1, column",
            ),
            (
                format!("{{\"password\": \"{SECRET}\n\"}}"),
                "it is not valid JSON",
            ),
        ]
    }

    #[test]
    fn a_bad_value_is_reported_by_its_key_and_never_shown() {
        for (i, (text, want)) in malformed().into_iter().enumerate() {
            let p = file(&format!("secret-{i}.conf"), &text, 0o600);
            let e = Config::load(&p).unwrap_err().to_string();
            assert!(e.contains(want), "{text}: {e}");
            assert!(!e.contains(SECRET) && !e.contains("31415926535897"), "{e}");
            assert!(e.starts_with("the docker module configuration "), "{e}");
        }
    }

    #[test]
    fn recovery_reads_only_what_it_needs() {
        // Mistakes in keys the recovery states do not use stop only the
        // states that use them (reported there, once).
        for text in [
            r#"{"state_dir": "/data/x", "registries": {"fleet": "broken"}}"#,
            r#"{"state_dir": "/data/x", "download": "sometimes", "settle_seconds": "x", "policy": 7, "unknown": 1}"#,
        ] {
            let p = file("recovery-a.conf", text, 0o644);
            let c = Config::load_for_recovery(&p).unwrap();
            assert_eq!(c.state_dir, Path::new("/data/x"));
            assert!(c.usable().is_ok());
            assert!(Config::load(&p).is_err());
        }
        // What it needs to reach the engine counts only when it must.
        let p = file(
            "recovery-b.conf",
            r#"{"state_dir": "/data/x", "socket": "relative"}"#,
            0o644,
        );
        let c = Config::load_for_recovery(&p).unwrap();
        assert_eq!(c.state_dir, Path::new("/data/x"));
        let e = c.usable().unwrap_err().to_string();
        assert!(e.contains("socket: must be the absolute path"), "{e}");
        // Without the journal's place it cannot start at all.
        for text in [r#"{"state_dir": 5}"#, "{not json"] {
            let p = file("recovery-c.conf", text, 0o644);
            assert!(Config::load_for_recovery(&p).is_err(), "{text}");
        }
    }
}
