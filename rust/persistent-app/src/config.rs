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
}

impl Default for Config {
    fn default() -> Self {
        Config {
            allowed_roots: vec![PathBuf::from("/data/apps")],
            state_dir: PathBuf::from("/data/mender-composable/persistent-app"),
            service_start_timeout_seconds: 30,
            download: DownloadMode::Stream,
        }
    }
}

impl Config {
    /// Loads the file named by the environment or the default path; a missing
    /// file means the defaults.
    pub fn load() -> Result<Config, Error> {
        let path = std::env::var_os(PATH_ENV)
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(DEFAULT_PATH));
        Config::load_from(&path)
    }

    pub fn load_from(path: &Path) -> Result<Config, Error> {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Config::default()),
            Err(e) => return Err(Error::io("read", path, e)),
        };
        let config: Config = serde_json::from_str(&text).map_err(|e| Error::Config {
            path: path.to_owned(),
            detail: e.to_string(),
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
            spec::check_dest(text).map_err(|e| format!("allowed_roots entry {text:?}: {e}"))?;
        }
        if !self.state_dir.is_absolute() {
            return Err(format!(
                "state_dir {} is not absolute",
                self.state_dir.display()
            ));
        }
        if self.service_start_timeout_seconds == 0 {
            return Err("service_start_timeout_seconds must be at least 1".into());
        }
        Ok(())
    }

    pub fn service_timeout(&self) -> Duration {
        Duration::from_secs(self.service_start_timeout_seconds)
    }
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
                "unknown variant `copy`, expected `stream` or `store`",
            ),
            ("{", "EOF"),
        ] {
            let err = load(text).unwrap_err();
            assert!(
                err.contains("c.json") && err.contains(want),
                "{text}: {err}"
            );
        }
    }
}
