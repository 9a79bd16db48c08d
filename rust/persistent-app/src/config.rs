//! The device's configuration, `/etc/mender/persistent-app.conf` (JSON,
//! optional). It decides where artifacts may install, which an artifact
//! cannot: the confinement rule belongs to the device owner.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::error::Error;
use crate::spec;

pub const DEFAULT_PATH: &str = "/etc/mender/persistent-app.conf";
/// Overrides [`DEFAULT_PATH`]; tests point it at their sandbox.
pub const PATH_ENV: &str = "PERSISTENT_APP_CONF";
pub const DEFAULT_LOCK: &str = "/run/lock/persistent-app.lock";
/// Overrides [`DEFAULT_LOCK`].
pub const LOCK_ENV: &str = "PERSISTENT_APP_LOCK";

/// `"download"`: stream the payload into the staging tree while it arrives, or
/// let the client store it for ArtifactInstall.
pub use mender_module_protocol::DownloadMode;

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Destinations must lie strictly below one of these.
    pub allowed_roots: Vec<PathBuf>,
    /// Where the journals live; must survive power cuts (so: on /data).
    pub state_dir: PathBuf,
    pub service_start_timeout_seconds: u64,
    /// `"stream"` (default) or `"store"`.
    pub download: DownloadMode,
    /// The systemd units an artifact may have the module stop and start:
    /// names, or prefixes ending in `*` (`"app-*"`). Empty (the default):
    /// any unit but the Mender client's own.
    pub allowed_services: Vec<String>,
}

/// The Mender client's own units (Go 3.x, C++ 4.x/5.x): stopping one would
/// end the deployment that stops it. Refused whatever `allowed_services`.
pub const CLIENT_UNITS: &[&str] = &[
    "mender-client.service",
    "mender-updated.service",
    "mender-authd.service",
    "mender-connect.service",
];

impl Default for Config {
    fn default() -> Self {
        Config {
            allowed_roots: vec![PathBuf::from("/data/apps")],
            state_dir: PathBuf::from("/data/mender-composable/persistent-app"),
            service_start_timeout_seconds: 30,
            download: DownloadMode::Stream,
            allowed_services: Vec::new(),
        }
    }
}

impl Config {
    /// Loads the file named by the environment or the default path; a missing
    /// file means the defaults.
    pub fn load() -> Result<Config, Error> {
        Config::load_from(&path())
    }

    pub fn load_from(path: &Path) -> Result<Config, Error> {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Config::default()),
            Err(e) => return Err(Error::io("read", path, e)),
        };
        // No value of the file in the message: configurations may hold secrets.
        let config: Config = serde_json::from_str(&text).map_err(|e| Error::Config {
            path: path.to_owned(),
            detail: module_kit::state_file::describe(&e),
        })?;
        config.validate().map_err(|detail| Error::Config {
            path: path.to_owned(),
            detail,
        })?;
        Ok(config)
    }

    fn validate(&self) -> Result<(), String> {
        if self.allowed_roots.is_empty() {
            return Err(
                "allowed_roots is empty; list at least one directory such as /data/apps".into(),
            );
        }
        for root in &self.allowed_roots {
            let text = root
                .to_str()
                .ok_or("allowed_roots holds a non-UTF-8 path")?;
            // A root is held to the same shape as a destination so that the
            // prefix test in spec::check_allowed is purely lexical and sound.
            spec::check_dest(text).map_err(|e| {
                format!(
                    "allowed_roots entry \"{}\": {e}",
                    mender_module_protocol::printable(text, 100)
                )
            })?;
        }
        if !self.state_dir.is_absolute() {
            return Err(format!(
                "state_dir {} is not absolute",
                mender_module_protocol::printable(&self.state_dir.to_string_lossy(), 100)
            ));
        }
        if self.service_start_timeout_seconds == 0 {
            return Err("service_start_timeout_seconds must be at least 1".into());
        }
        for (i, entry) in self.allowed_services.iter().enumerate() {
            let stem = entry.strip_suffix('*').unwrap_or(entry);
            let ok = !stem.is_empty()
                && !stem.contains('*')
                && stem
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.@:\\".contains(&b));
            if !ok {
                return Err(format!(
                    "allowed_services entry {i} is neither a unit name nor a prefix ending in '*' \
                     (letters, digits and - _ . @ : \\ only), e.g. \"app-*\""
                ));
            }
        }
        Ok(())
    }

    /// Whether an artifact may name `unit` (see `allowed_services`); the
    /// reason when not, naming the rule.
    pub fn check_service(&self, unit: &str) -> Result<(), String> {
        if CLIENT_UNITS.contains(&unit) {
            return Err(format!(
                "service {unit} is the Mender client's own unit: stopping it would end the deployment \
                 that stops it; name the app's own unit"
            ));
        }
        let allowed = self.allowed_services.is_empty()
            || self
                .allowed_services
                .iter()
                .any(|entry| match entry.strip_suffix('*') {
                    Some(prefix) => unit.starts_with(prefix),
                    None => unit == entry,
                });
        if allowed {
            Ok(())
        } else {
            Err(format!(
                "service {unit} is not allowed on this device: allowed_services in {} permits only {}",
                path().display(),
                self.allowed_services.join(", ")
            ))
        }
    }

    pub fn service_timeout(&self) -> Duration {
        Duration::from_secs(self.service_start_timeout_seconds)
    }
}

/// The configuration file: the environment's, else [`DEFAULT_PATH`].
pub fn path() -> PathBuf {
    std::env::var_os(PATH_ENV)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(DEFAULT_PATH))
}

pub fn lock_path() -> PathBuf {
    std::env::var_os(LOCK_ENV)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(DEFAULT_LOCK))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str) -> Result<Config, String> {
        // Tests run in parallel: one directory per call.
        static CALLS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = CALLS.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let dir = std::env::temp_dir().join(format!("pa-config-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("c.json");
        std::fs::write(&path, text).unwrap();
        let r = Config::load_from(&path).map_err(|e| e.to_string());
        std::fs::remove_dir_all(&dir).unwrap();
        r
    }

    #[test]
    fn a_missing_file_means_the_defaults() {
        let c = Config::load_from(Path::new("/nonexistent/persistent-app.conf")).unwrap();
        assert_eq!(c, Config::default());
        assert_eq!(c.allowed_roots, [PathBuf::from("/data/apps")]);
    }

    #[test]
    fn partial_files_keep_the_other_defaults() {
        let c = load(r#"{"allowed_roots": ["/data/apps", "/data/models"]}"#).unwrap();
        assert_eq!(c.allowed_roots.len(), 2);
        assert_eq!(c.service_start_timeout_seconds, 30);
        assert_eq!(c.download, DownloadMode::Stream);
    }

    #[test]
    fn the_download_mode_is_stream_or_store() {
        let c = load(r#"{"download": "store"}"#).unwrap();
        assert_eq!(c.download, DownloadMode::Store);
        assert_eq!(c.allowed_roots, [PathBuf::from("/data/apps")]);
        let c = load(r#"{"download": "stream"}"#).unwrap();
        assert_eq!(c.download, DownloadMode::Stream);
    }

    #[test]
    fn the_unit_policy_allows_names_and_prefixes_and_never_the_clients_own_units() {
        let any = Config::default();
        assert_eq!(any.check_service("demo.service"), Ok(()));
        assert_eq!(any.check_service("sshd.service"), Ok(()));
        for unit in CLIENT_UNITS {
            let e = any.check_service(unit).unwrap_err();
            assert!(e.contains("the Mender client's own unit"), "{e}");
        }
        let tight = load(r#"{"allowed_services": ["app-*", "demo.service"]}"#).unwrap();
        assert_eq!(tight.check_service("app-web.service"), Ok(()));
        assert_eq!(tight.check_service("demo.service"), Ok(()));
        let e = tight.check_service("sshd.service").unwrap_err();
        assert!(
            e.contains("service sshd.service is not allowed on this device: allowed_services in"),
            "{e}"
        );
        assert!(e.ends_with("permits only app-*, demo.service"), "{e}");
        assert!(tight.check_service("mender-updated.service").is_err());
        for bad in [r#"["*"]"#, r#"["a*b*"]"#, r#"[""]"#, r#"["x y"]"#] {
            let e = load(&format!(r#"{{"allowed_services": {bad}}}"#)).unwrap_err();
            assert!(e.contains("allowed_services entry 0"), "{bad}: {e}");
        }
    }

    #[test]
    fn no_value_of_the_file_reaches_the_message() {
        let err = load(r#"{"state_dir": "/x", "service_start_timeout_seconds": "s3cr3t-value"}"#)
            .unwrap_err();
        assert!(!err.contains("s3cr3t"), "{err}");
        assert!(err.contains("expected u64"), "{err}");
    }

    #[test]
    fn bad_files_are_refused_with_the_path_and_the_reason() {
        for (text, want) in [
            (r#"{"allowed_root": []}"#, "unknown field"),
            (r#"{"allowed_roots": []}"#, "allowed_roots is empty"),
            (r#"{"allowed_roots": ["data"]}"#, "not absolute"),
            (r#"{"allowed_roots": ["/data/apps/"]}"#, "ends with '/'"),
            (r#"{"state_dir": "x"}"#, "state_dir x is not absolute"),
            (r#"{"service_start_timeout_seconds": 0}"#, "at least 1"),
            (
                r#"{"download": "copy"}"#,
                "a value of the wrong type or range, expected `stream` or `store` (line 1, column 19)",
            ),
            ("{", "not valid JSON (line 1, column 1)"),
        ] {
            let err = load(text).unwrap_err();
            assert!(
                err.contains("c.json") && err.contains(want),
                "{text}: {err}"
            );
        }
    }

    #[test]
    fn unknown_keys_and_bad_paths_are_named_escaped_and_short() {
        let long = "r".repeat(3000);
        for text in [
            format!("{{\"allowed_ro\\u007fts\": [], \"{long}\": 1}}"),
            format!("{{\"state_dir\": \"data\\u001b[2J{long}\"}}"),
            format!("{{\"allowed_roots\": [\"/data/\\n{long}/..\"]}}"),
        ] {
            let e = load(&text).unwrap_err();
            assert!(!e.chars().any(char::is_control), "{e:?}");
            assert!(e.len() <= 600, "{} bytes: {e}", e.len());
        }
    }
}
