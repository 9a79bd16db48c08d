//! The device-side configuration, `/etc/mender/docker-module.conf` (JSON;
//! `DOCKER_MODULE_CONF` names another file, for tests). Everything has a
//! default, so a device without the file behaves like the old module's
//! drop-in. Registry credentials live only here: never in an artifact, never
//! in a log line.
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
//!   }
//! }
//! ```

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::engine::Credentials;

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
    /// How long a stopping container gets before the engine kills it.
    pub stop_timeout: Duration,
    pub download: DownloadMode,
    pub registries: BTreeMap<String, Credentials>,
}

/// `"download"`: stream inline archives into the engine while they arrive,
/// or let the client store them for ArtifactInstall.
pub use mender_module_protocol::DownloadMode;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileFormat {
    socket: Option<String>,
    state_dir: Option<PathBuf>,
    health_timeout_seconds: Option<u64>,
    settle_seconds: Option<u64>,
    stop_timeout_seconds: Option<u64>,
    #[serde(default)]
    download: DownloadMode,
    #[serde(default)]
    registries: BTreeMap<String, RegistryFormat>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RegistryFormat {
    address: String,
    username: String,
    password: String,
}

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
    pub fn load_for_recovery_from_env() -> Result<Config, ConfigError> {
        let path = std::env::var_os("DOCKER_MODULE_CONF")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(DEFAULT_PATH));
        Config::parse(&path, false)
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
        let file: FileFormat = serde_json::from_str(&text).map_err(|e| invalid(e.to_string()))?;
        let mut config = Config::defaults(path.to_owned());
        if let Some(s) = file.socket {
            let s = s.strip_prefix("unix://").unwrap_or(&s).to_owned();
            if !s.starts_with('/') {
                return Err(invalid(format!(
                    "\"socket\": {s:?} must be the absolute path of the engine's unix socket"
                )));
            }
            config.socket = s;
        }
        if let Some(d) = file.state_dir {
            if !d.is_absolute() {
                return Err(invalid(format!(
                    "\"state_dir\": {} must be an absolute path",
                    d.display()
                )));
            }
            config.state_dir = d;
        }
        let secs = |key: &str, v: Option<u64>, min: u64, default: Duration| match v {
            Some(s) if s < min => Err(invalid(format!("\"{key}\" must be at least {min}"))),
            Some(s) => Ok(Duration::from_secs(s)),
            None => Ok(default),
        };
        config.health_timeout = secs(
            "health_timeout_seconds",
            file.health_timeout_seconds,
            1,
            config.health_timeout,
        )?;
        config.settle = secs("settle_seconds", file.settle_seconds, 0, config.settle)?;
        config.stop_timeout = secs(
            "stop_timeout_seconds",
            file.stop_timeout_seconds,
            0,
            config.stop_timeout,
        )?;
        config.download = file.download;
        for (name, r) in file.registries {
            if r.address.is_empty() || r.address.contains('/') {
                return Err(invalid(format!(
                    "registries.{name}.address {:?} must be HOST[:PORT] as in image names, e.g. registry.example.com:5000",
                    r.address
                )));
            }
            config.registries.insert(
                name,
                Credentials {
                    address: r.address,
                    username: r.username,
                    password: r.password,
                },
            );
        }
        if !with_credentials {
            config.registries.clear();
        } else if !config.registries.is_empty() {
            check_private(path)?;
        }
        Ok(config)
    }
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
        assert!(e.contains("unknown field `sokcet`"), "{e}");
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
}
