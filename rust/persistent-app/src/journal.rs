//! The per-app journal, `<state_dir>/<app>.json`: what a fresh process needs
//! to know about an update in progress that the filesystem cannot tell it.
//!
//! Which tree is where is decided from the filesystem (the release marker in
//! each directory) only while the journal says `swapping` or `rolling-back`,
//! the two phases in which an exchange may or may not have happened. In every
//! other phase the journal alone says which trees are garbage, and a tree is
//! declared garbage in the journal before its removal starts, so a half-removed
//! tree is never mistaken for a whole one.
//!
//! A finished commit does not delete the journal: it leaves it in phase
//! `committed`, a tombstone naming the artifact and its token, so that an
//! ArtifactRollback arriving after the commit completed (the process died
//! before it could report success) fails loudly instead of succeeding
//! without restoring anything. The next Download of the app removes it.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::fault;
use crate::fsops;

pub const FORMAT: u32 = 1;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Phase {
    /// Download is extracting into the staging tree; it is incomplete.
    Staging,
    /// The staging tree is complete and synced; the destination is untouched.
    Staged,
    /// ArtifactInstall is stopping the unit and exchanging the trees.
    Swapping,
    /// The new tree is in place, the old one at the previous path.
    Swapped,
    /// The trees are being swapped back; afterwards the new one is garbage.
    RollingBack,
    /// The previous tree is garbage and being removed.
    Committing,
    /// The commit is complete: the new tree is the only one. Kept as a
    /// tombstone until the next Download of the app.
    Committed,
}

impl Phase {
    pub const ALL: [Phase; 7] = [
        Phase::Staging,
        Phase::Staged,
        Phase::Swapping,
        Phase::Swapped,
        Phase::RollingBack,
        Phase::Committing,
        Phase::Committed,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Phase::Staging => "staging",
            Phase::Staged => "staged",
            Phase::Swapping => "swapping",
            Phase::Swapped => "swapped",
            Phase::RollingBack => "rolling-back",
            Phase::Committing => "committing",
            Phase::Committed => "committed",
        }
    }

    /// Whether an update is still in progress (every phase but the
    /// committed tombstone).
    pub fn unfinished(self) -> bool {
        self != Phase::Committed
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Journal {
    pub format: u32,
    pub app: String,
    pub artifact: String,
    /// Unique per Download; also written into the staged tree's release
    /// marker, so a tree can be recognised as this install's even when an
    /// artifact of the same name is installed over itself.
    pub token: String,
    pub dest: PathBuf,
    pub staging: PathBuf,
    pub previous: PathBuf,
    pub phase: Phase,
    /// The destination did not exist when the swap began.
    pub fresh_install: bool,
    #[serde(default)]
    pub service: Option<String>,
    /// The unit was running when the swap began, so a rollback restarts it.
    pub service_was_active: bool,
    /// Installed from the community format (flat files + dest_dir).
    pub community: bool,
}

impl Journal {
    /// The release marker's content for this install.
    pub fn marker(&self) -> Vec<u8> {
        format!("artifact={}\ninstall={}\n", self.artifact, self.token).into_bytes()
    }
}

/// The token of a release marker, if the file has one.
pub fn marker_token(content: &str) -> Option<&str> {
    content.lines().find_map(|l| l.strip_prefix("install="))
}

pub fn path_for(state_dir: &Path, app: &str) -> PathBuf {
    state_dir.join(format!("{app}.json"))
}

pub fn load(path: &Path) -> Result<Option<Journal>> {
    let text = match fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::io("read", path, e)),
    };
    let journal: Journal = serde_json::from_str(&text).map_err(|e| Error::Journal {
        path: path.to_owned(),
        detail: format!("unreadable ({e}); inspect it and the trees it names before removing it"),
    })?;
    if journal.format != FORMAT {
        return Err(Error::Journal {
            path: path.to_owned(),
            detail: format!(
                "format {} is not {FORMAT}; it was written by another version of the module",
                journal.format
            ),
        });
    }
    Ok(Some(journal))
}

pub fn save(path: &Path, journal: &Journal) -> Result<()> {
    if let Some(dir) = path.parent() {
        if !dir.is_dir() {
            fs::create_dir_all(dir).map_err(|e| Error::io("create directory", dir, e))?;
            if let Some(up) = dir.parent() {
                fsops::fsync_dir(up)?;
            }
        }
    }
    let mut text = serde_json::to_string_pretty(journal).expect("a journal always serialises");
    text.push('\n');
    fsops::write_atomic(path, text.as_bytes())?;
    fault::point("journal");
    Ok(())
}

pub fn clear(path: &Path) -> Result<()> {
    fsops::remove_file_durable(path)?;
    fault::point("clear-journal");
    Ok(())
}

/// Every journal in `state_dir`, sorted by path. The states after Download
/// find a community-format install by its artifact (they cannot read the
/// destination from the payload), and Download checks that no other app's
/// unfinished update uses the same destination.
pub fn scan(state_dir: &Path) -> Result<Vec<(PathBuf, Journal)>> {
    let entries = match fs::read_dir(state_dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io("list", state_dir, e)),
    };
    let mut found = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| Error::io("list", state_dir, e))?;
        let path = entry.path();
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with('.') || !name.ends_with(".json") {
            continue;
        }
        if let Some(j) = load(&path)? {
            found.push((path, j));
        }
    }
    found.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Journal {
        Journal {
            format: FORMAT,
            app: "demo".into(),
            artifact: "demo-1.0".into(),
            token: "abc".into(),
            dest: "/data/apps/demo".into(),
            staging: "/data/apps/.demo.staging".into(),
            previous: "/data/apps/.demo.previous".into(),
            phase: Phase::RollingBack,
            fresh_install: false,
            service: Some("demo.service".into()),
            service_was_active: true,
            community: false,
        }
    }

    #[test]
    fn round_trips_through_disk_and_clears() {
        let dir = std::env::temp_dir().join(format!("pa-journal-{}", std::process::id()));
        let path = path_for(&dir.join("state"), "demo");
        assert_eq!(load(&path).unwrap(), None);
        save(&path, &sample()).unwrap();
        assert_eq!(load(&path).unwrap(), Some(sample()));
        let text = fs::read_to_string(&path).unwrap();
        assert!(text.contains("\"phase\": \"rolling-back\""), "{text}");
        clear(&path).unwrap();
        clear(&path).unwrap();
        assert_eq!(load(&path).unwrap(), None);
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn markers_carry_the_install_token() {
        let m = String::from_utf8(sample().marker()).unwrap();
        assert_eq!(marker_token(&m), Some("abc"));
        assert_eq!(marker_token("artifact=x\n"), None);
    }
}
