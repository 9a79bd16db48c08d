//! The per-stack state file, `<state_dir>/<stack>.json`: the committed
//! release and the one before it (for image pruning, keep n-1), and the
//! update in progress, if any. It records only what the engine cannot tell a
//! fresh process: which containers ran before the switch and under which
//! names, which images this update pulled, how far it got. Every write
//! replaces the whole file atomically (see [`crate::fsops`]).

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::{fault, fsops};

const FORMAT: u32 = 1;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StackState {
    pub format: u32,
    pub stack: String,
    /// The committed release.
    pub current: Option<ReleaseRecord>,
    /// The release before it, whose images are kept for a fast rollback.
    pub previous: Option<ReleaseRecord>,
    pub update: Option<Update>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReleaseRecord {
    pub artifact: String,
    /// Pinned references (`REPO@sha256:…`).
    pub images: Vec<String>,
}

/// How far an update got. Each state of the client moves it on; every state
/// works from here after a crash.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Phase {
    /// Download validated the release and pulls (or pulled) its images.
    Download,
    /// ArtifactInstall recorded the previous set and is switching.
    Install,
    /// The new set passed the health gate; waiting for commit or rollback.
    Installed,
    /// ArtifactCommit accepted the release. Nothing has been removed yet, so
    /// a rollback (the client's answer to a commit that died) still works;
    /// Cleanup removes the previous set.
    Commit,
    /// The previous set is back; what the update pulled is still to go.
    RolledBack,
}

impl Phase {
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Download => "download",
            Phase::Install => "install",
            Phase::Installed => "installed",
            Phase::Commit => "commit",
            Phase::RolledBack => "rolled-back",
        }
    }

    /// Whether containers of the update may exist or the previous set may be
    /// stopped, i.e. whether a restore is needed to get back.
    pub fn switched(self) -> bool {
        matches!(self, Phase::Install | Phase::Installed | Phase::Commit)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Update {
    pub artifact: String,
    pub phase: Phase,
    /// Images this update pulled (absent before it): removed again if it fails.
    #[serde(default)]
    pub pulled: Vec<String>,
    /// Every image of the release, for the release record on commit.
    #[serde(default)]
    pub images: Vec<String>,
    /// Labels the containers this install created.
    #[serde(default)]
    pub install_id: Option<String>,
    #[serde(default)]
    pub strategy: Option<String>,
    /// The containers before the switch: the stack's own and the replaced ones.
    #[serde(default)]
    pub old: Vec<OldContainer>,
    /// Ids of unchanged containers left running through the update.
    #[serde(default)]
    pub kept: Vec<String>,
    /// Fresh engine volumes made for the new set (purge_on_deploy).
    #[serde(default)]
    pub purge_volumes: Vec<String>,
    /// An inline archive load under way: written before the load starts,
    /// cleared once what it changed has been checked and put back, so that a
    /// process killed in between leaves the next state what to undo.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub load: Option<LoadRecord>,
}

/// What the engine held before a load: the image IDs and every tag.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoadRecord {
    pub payload: String,
    pub images: BTreeSet<String>,
    /// `REPO:TAG` → image ID.
    pub tags: BTreeMap<String, String>,
}

impl Update {
    pub fn new(artifact: &str) -> Update {
        Update {
            artifact: artifact.to_owned(),
            phase: Phase::Download,
            pulled: Vec::new(),
            images: Vec::new(),
            install_id: None,
            strategy: None,
            old: Vec::new(),
            kept: Vec::new(),
            purge_volumes: Vec::new(),
            load: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OldContainer {
    pub id: String,
    /// Its name before the switch.
    pub name: String,
    /// Whether it was running (and so must run again after a rollback).
    pub running: bool,
    /// Listed in `replaces` rather than created by the module.
    pub replaced: bool,
    /// Its purge_on_deploy volumes, removed with it on commit.
    #[serde(default)]
    pub purge_volumes: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    #[error("cannot {action} the docker module journal {}: {source}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("the docker module journal {} is not valid ({detail}); it describes an update in progress, so look at it before moving it away", path.display())]
    Corrupt { path: PathBuf, detail: String },
}

/// The state file of one stack, loaded.
#[derive(Debug)]
pub struct Journal {
    path: PathBuf,
    pub state: StackState,
}

impl Journal {
    pub fn path_for(state_dir: &Path, stack: &str) -> PathBuf {
        state_dir.join(format!("{stack}.json"))
    }

    /// Reads the stack's file; a missing one is an empty state.
    pub fn open(state_dir: &Path, stack: &str) -> Result<Journal, JournalError> {
        let path = Journal::path_for(state_dir, stack);
        let state = match fs::read(&path) {
            Ok(bytes) => {
                let state: StackState =
                    serde_json::from_slice(&bytes).map_err(|e| JournalError::Corrupt {
                        path: path.clone(),
                        detail: e.to_string(),
                    })?;
                if state.format != FORMAT || state.stack != stack {
                    return Err(JournalError::Corrupt {
                        path,
                        detail: format!(
                            "format {} for stack {:?}, expected format {FORMAT} for {stack:?}",
                            state.format, state.stack
                        ),
                    });
                }
                state
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => StackState {
                format: FORMAT,
                stack: stack.to_owned(),
                current: None,
                previous: None,
                update: None,
            },
            Err(source) => {
                return Err(JournalError::Io {
                    action: "read",
                    path,
                    source,
                })
            }
        };
        Ok(Journal { path, state })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The update in progress for `artifact`, if that is what is in progress.
    pub fn update_for(&self, artifact: &str) -> Option<&Update> {
        self.state
            .update
            .as_ref()
            .filter(|u| u.artifact == artifact)
    }

    pub fn update_mut(&mut self) -> Option<&mut Update> {
        self.state.update.as_mut()
    }

    /// Writes the whole state atomically; `point` names the fault point hit
    /// right after (`journal-<point>`).
    pub fn save(&self, point: &str) -> Result<(), JournalError> {
        let io_err = |action, source| JournalError::Io {
            action,
            path: self.path.clone(),
            source,
        };
        if let Some(dir) = self.path.parent() {
            fs::create_dir_all(dir).map_err(|e| io_err("create the directory of", e))?;
        }
        let empty = self.state.current.is_none()
            && self.state.previous.is_none()
            && self.state.update.is_none();
        if empty {
            fsops::remove_durably(&self.path).map_err(|e| io_err("remove", e))?;
        } else {
            let mut bytes =
                serde_json::to_vec_pretty(&self.state).expect("the state always serialises");
            bytes.push(b'\n');
            fsops::write_atomic(&self.path, &bytes).map_err(|e| io_err("write", e))?;
        }
        fault::point(&format!("journal-{point}"));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("dm-journal-{}-{name}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        d
    }

    #[test]
    fn round_trips_and_an_empty_state_leaves_no_file() {
        let d = dir("rt");
        let mut j = Journal::open(&d, "web").unwrap();
        assert!(j.state.update.is_none());
        let mut u = Update::new("web-2");
        u.phase = Phase::Installed;
        u.old.push(OldContainer {
            id: "abc".into(),
            name: "web".into(),
            running: true,
            replaced: false,
            purge_volumes: vec![],
        });
        j.state.update = Some(u.clone());
        j.save("t").unwrap();
        let again = Journal::open(&d, "web").unwrap();
        assert_eq!(again.state.update.as_ref(), Some(&u));
        assert!(again.update_for("web-2").is_some());
        assert!(again.update_for("web-3").is_none());
        let text = fs::read_to_string(again.path()).unwrap();
        assert!(text.contains("\"phase\": \"installed\""), "{text}");
        let mut j = again;
        j.state.update = None;
        j.save("t").unwrap();
        assert!(!j.path().exists());
        fs::remove_dir_all(d).unwrap();
    }

    #[test]
    fn a_corrupt_or_foreign_file_is_an_error_naming_it() {
        let d = dir("bad");
        fs::create_dir_all(&d).unwrap();
        fs::write(d.join("web.json"), "{not json").unwrap();
        let e = Journal::open(&d, "web").unwrap_err().to_string();
        assert!(e.contains("web.json is not valid"), "{e}");
        fs::write(
            d.join("api.json"),
            r#"{"format":1,"stack":"web","current":null,"previous":null,"update":null}"#,
        )
        .unwrap();
        let e = Journal::open(&d, "api").unwrap_err().to_string();
        assert!(e.contains("expected format 1 for \"api\""), "{e}");
        fs::remove_dir_all(d).unwrap();
    }
}
