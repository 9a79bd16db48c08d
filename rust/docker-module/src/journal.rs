//! The per-stack state file, `<state_dir>/<stack>.json`: the committed
//! release and the one before it (for image pruning, keep n-1), and the
//! update in progress, if any. It records only what the engine cannot tell a
//! fresh process: which containers ran before the switch and under which
//! names, which images this update pulled, how far it got.
//!
//! A versioned state file (module_kit::state_file): `"format": 1` beside the
//! fields; a module reads every format it ever wrote and refuses, saying so,
//! one written by a newer module. Every write replaces the whole file
//! atomically. From Download on, an update keeps a spare (`.<stack>.json.spare`,
//! blocks set aside while there is room) so that the records ArtifactRollback,
//! ArtifactFailure and Cleanup write succeed on a full data partition; it is
//! given back once the update is over.

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsString;
use std::io;
use std::path::{Path, PathBuf};

use module_kit::fs::Dir;
use module_kit::state_file::StateError;
use module_kit::{StateFile, Versioned};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::fault;

/// The journal format this module writes (1: the only one so far).
pub const FORMAT: u32 = 1;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StackState {
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

impl StackState {
    /// No release and no update: a stack this module knows nothing about.
    pub fn empty(stack: &str) -> StackState {
        StackState {
            stack: stack.to_owned(),
            current: None,
            previous: None,
            update: None,
        }
    }
}

impl Versioned for StackState {
    const FORMAT: u32 = FORMAT;

    fn upgrade(format: u32, _value: Map<String, Value>) -> Result<StackState, String> {
        Err(format!("no module ever wrote format {format}"))
    }
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

impl From<StateError> for JournalError {
    fn from(e: StateError) -> JournalError {
        match e {
            StateError::Io(e) => JournalError::Io {
                action: e.action,
                path: e.path,
                source: e.source,
            },
            StateError::Unreadable { path, detail } => JournalError::Corrupt { path, detail },
        }
    }
}

impl From<module_kit::fs::Error> for JournalError {
    fn from(e: module_kit::fs::Error) -> JournalError {
        StateError::Io(e).into()
    }
}

/// The state file of one stack, loaded.
pub struct Journal {
    path: PathBuf,
    state_dir: PathBuf,
    /// None while the state directory does not exist (nothing was written).
    file: Option<StateFile<StackState>>,
    pub state: StackState,
}

impl std::fmt::Debug for Journal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Journal")
            .field("path", &self.path)
            .field("state", &self.state)
            .finish()
    }
}

fn file_name(stack: &str) -> OsString {
    OsString::from(format!("{stack}.json"))
}

impl Journal {
    pub fn path_for(state_dir: &Path, stack: &str) -> PathBuf {
        state_dir.join(file_name(stack))
    }

    /// Reads the stack's file; a missing one (or a missing state directory,
    /// which is not created here) is an empty state.
    pub fn open(state_dir: &Path, stack: &str) -> Result<Journal, JournalError> {
        let path = Journal::path_for(state_dir, stack);
        let dir = match Dir::open(state_dir) {
            Ok(d) => Some(d),
            Err(e) if e.source.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(e.into()),
        };
        let file: Option<StateFile<StackState>> = dir.map(|d| StateFile::new(d, file_name(stack)));
        let state = match &file {
            Some(f) => f.load()?,
            None => None,
        };
        let state = match state {
            Some(state) if state.stack != stack => {
                return Err(JournalError::Corrupt {
                    path,
                    detail: format!(
                        "it is the journal of stack {:?}, expected {stack:?}",
                        state.stack
                    ),
                })
            }
            Some(state) => state,
            None => StackState::empty(stack),
        };
        Ok(Journal {
            path,
            state_dir: state_dir.to_owned(),
            file,
            state,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The stacks with a state file in `state_dir` (none if it does not exist).
    pub fn stacks(state_dir: &Path) -> Result<Vec<String>, JournalError> {
        let dir = match Dir::open(state_dir) {
            Ok(d) => d,
            Err(e) if e.source.kind() == io::ErrorKind::NotFound => return Ok(vec![]),
            Err(e) => return Err(e.into()),
        };
        let mut stacks: Vec<String> = dir
            .list()?
            .iter()
            .filter_map(|n| n.to_str()?.strip_suffix(".json").map(str::to_owned))
            .filter(|s| docker_spec::stack::check_stack_name(s).is_ok())
            .collect();
        stacks.sort();
        Ok(stacks)
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

    fn file(&mut self) -> Result<&StateFile<StackState>, JournalError> {
        if self.file.is_none() {
            let dir = Dir::open_or_create(&self.state_dir)?;
            self.file = Some(StateFile::new(dir, file_name(&self.state.stack)));
        }
        Ok(self.file.as_ref().expect("just set"))
    }

    /// Writes the whole state atomically; `point` names the fault point hit
    /// right after (`journal-<point>`). Without an update the spare is given
    /// back; with nothing at all the file goes too.
    pub fn save(&mut self, point: &str) -> Result<(), JournalError> {
        let state = self.state.clone();
        let file = self.file()?;
        let empty = state.current.is_none() && state.previous.is_none() && state.update.is_none();
        if empty {
            file.remove()?;
        } else {
            file.store(&state)?;
            if state.update.is_none() {
                file.release()?;
            }
        }
        fault::point(&format!("journal-{point}"));
        Ok(())
    }

    /// Sets space aside for the records the recovery states write (see the
    /// module documentation); called once an update has a record.
    pub fn reserve(&mut self) -> Result<(), JournalError> {
        Ok(self.file()?.reserve()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

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
        assert!(
            e.contains("journal of stack \"web\", expected \"api\""),
            "{e}"
        );
        fs::write(d.join("api.json"), r#"{"format":2,"stack":"api"}"#).unwrap();
        let e = Journal::open(&d, "api").unwrap_err().to_string();
        assert!(e.contains("format 2 was written by a newer module"), "{e}");
        fs::remove_dir_all(d).unwrap();
    }
}

#[cfg(test)]
mod format_tests {
    use super::*;

    /// An update half way: what a fresh process must read back exactly.
    pub(super) fn sample() -> StackState {
        let mut load = LoadRecord {
            payload: "images.tar".into(),
            images: BTreeSet::new(),
            tags: BTreeMap::new(),
        };
        load.images.insert(format!("sha256:{}", "a".repeat(64)));
        load.tags
            .insert("demo/app:2".into(), format!("sha256:{}", "b".repeat(64)));
        StackState {
            stack: "web".into(),
            current: Some(ReleaseRecord {
                artifact: "web-1".into(),
                images: vec![format!("reg:5000/web@sha256:{}", "1".repeat(64))],
            }),
            previous: Some(ReleaseRecord {
                artifact: "web-0".into(),
                images: vec![format!("reg:5000/web@sha256:{}", "0".repeat(64))],
            }),
            update: Some(Update {
                artifact: "web-2".into(),
                phase: Phase::Installed,
                pulled: vec![format!("reg:5000/web@sha256:{}", "2".repeat(64))],
                images: vec![format!("reg:5000/web@sha256:{}", "2".repeat(64))],
                install_id: Some("0a1b2c3d4e".into()),
                strategy: Some("stop-first".into()),
                old: vec![OldContainer {
                    id: "c".repeat(64),
                    name: "web".into(),
                    running: true,
                    replaced: false,
                    purge_volumes: vec!["web-cache-9f8e7d6c5b".into()],
                }],
                kept: vec!["d".repeat(64)],
                purge_volumes: vec!["web-cache-0a1b2c3d4e".into()],
                load: Some(load),
            }),
        }
    }

    #[test]
    fn every_format_ever_written_is_read_and_this_build_writes_the_fixture() {
        let d = std::env::temp_dir().join(format!("dm-journal-{}-formats", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        // Format 1 as the module wrote it before module_kit (fields in
        // declaration order) and as it writes it now (keys sorted).
        for fixture in [
            include_str!("../tests/fixtures/journal-format-1-before-kit.json"),
            include_str!("../tests/fixtures/journal-format-1.json"),
        ] {
            std::fs::write(d.join("web.json"), fixture).unwrap();
            assert_eq!(Journal::open(&d, "web").unwrap().state, sample());
        }
        let mut j = Journal::open(&d, "web").unwrap();
        j.save("t").unwrap();
        assert_eq!(
            std::fs::read_to_string(d.join("web.json")).unwrap(),
            include_str!("../tests/fixtures/journal-format-1.json"),
            "what this build writes is the fixture, byte for byte"
        );
        std::fs::write(d.join("web.json"), r#"{"format":2,"stack":"web"}"#).unwrap();
        let e = Journal::open(&d, "web").unwrap_err().to_string();
        assert!(e.contains("format 2 was written by a newer module"), "{e}");
        std::fs::remove_dir_all(d).unwrap();
    }
}
