//! The per-app journal, `<state_dir>/<app>.json`: what a fresh process needs
//! to know about an update in progress that the filesystem cannot tell it.
//! A versioned state file (module_kit::state_file): this module reads every
//! format it ever wrote, so an OS update that brings a newer module in the
//! middle of a deployment does not strand it.
//!
//! Which tree is where is decided from the filesystem only while the journal
//! says `swapping` or `rolling-back`, the two phases in which an exchange may
//! or may not have happened: the staged tree is the directory whose inode the
//! journal recorded (`staged_ino`; a rename or exchange keeps it), so nothing
//! of the module's is ever written into the app's tree. Trees staged by
//! format 1 carry a release marker file instead, which is still read. In
//! every other phase the journal alone says which trees are garbage, and a
//! tree is declared garbage in the journal before its removal starts, so a
//! half-removed tree is never mistaken for a whole one.
//!
//! A finished commit does not delete the journal: it leaves it in phase
//! `committed`, a tombstone naming the artifact and its token, so that an
//! ArtifactRollback arriving after the commit completed (the process died
//! before it could report success) fails loudly instead of succeeding
//! without restoring anything. The next Download of the app removes it.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use module_kit::fs::Dir;
use module_kit::{StateFile, Versioned};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::error::Result;
use crate::fault;

/// The journal format this module writes: 1 had a release marker file in
/// each tree; 2 records the staged tree's inode instead.
pub const FORMAT: u32 = 2;

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
    /// The inode of this install's staged tree, once it exists (format 2).
    /// None in a journal of format 1, whose trees carry a release marker.
    #[serde(default)]
    pub staged_ino: Option<u64>,
}

impl Versioned for Journal {
    const FORMAT: u32 = FORMAT;

    fn upgrade(format: u32, value: Map<String, Value>) -> Result<Journal, String> {
        match format {
            // Format 1 had every field of format 2 but staged_ino; its trees
            // carry a release marker with the token instead.
            1 => serde_json::from_value(Value::Object(value))
                .map_err(|e| module_kit::state_file::describe(&e)),
            other => Err(format!("no module ever wrote format {other}")),
        }
    }
}

/// The token of a release marker (format 1), if the file has one.
pub fn marker_token(content: &str) -> Option<&str> {
    content.lines().find_map(|l| l.strip_prefix("install="))
}

/// The journals in the module's state directory, held open.
pub struct Journals {
    dir: Dir,
}

impl Journals {
    /// Opens (creating) the state directory.
    pub fn open(state_dir: &Path) -> Result<Journals> {
        let dir = Dir::open_or_create(state_dir)?;
        // A write cut short by a power cut leaves its temporary file.
        for name in dir.list()? {
            if name.to_string_lossy().starts_with('.')
                && name.to_string_lossy().contains(".json.tmp-")
            {
                dir.remove_file(&name)?;
            }
        }
        Ok(Journals { dir })
    }

    fn file(&self, app: &str) -> Result<StateFile<Journal>> {
        Ok(StateFile::new(self.dir.try_clone()?, file_name(app)))
    }

    /// Where the app's journal is, for messages.
    pub fn path(&self, app: &str) -> PathBuf {
        self.dir.display(file_name(app))
    }

    pub fn load(&self, app: &str) -> Result<Option<Journal>> {
        Ok(self.file(app)?.load()?)
    }

    pub fn save(&self, journal: &Journal) -> Result<()> {
        self.file(&journal.app)?.store(journal)?;
        fault::point("journal");
        Ok(())
    }

    /// Sets space aside for the journal writes a rollback needs, so that it
    /// succeeds on a full data partition.
    pub fn reserve(&self, app: &str) -> Result<()> {
        Ok(self.file(app)?.reserve()?)
    }

    /// Gives the reserved space back: once a commit has completed, no
    /// rollback can follow.
    pub fn release(&self, app: &str) -> Result<()> {
        Ok(self.file(app)?.release()?)
    }

    pub fn clear(&self, app: &str) -> Result<()> {
        self.file(app)?.remove()?;
        fault::point("clear-journal");
        Ok(())
    }

    /// Every journal, sorted by path. The states after Download find a
    /// community-format install by its artifact (they cannot read the
    /// destination from the payload), and Download checks that no other
    /// app's update uses an overlapping destination.
    pub fn scan(&self) -> Result<Vec<(PathBuf, Journal)>> {
        let mut found = Vec::new();
        for name in self.dir.list()? {
            let text = name.to_string_lossy();
            if text.starts_with('.') || !text.ends_with(".json") {
                continue;
            }
            let file: StateFile<Journal> = StateFile::new(self.dir.try_clone()?, name.clone());
            if let Some(j) = file.load()? {
                found.push((self.dir.display(&name), j));
            }
        }
        Ok(found)
    }
}

fn file_name(app: &str) -> OsString {
    OsString::from(format!("{app}.json"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Journal {
        Journal {
            app: "demo".into(),
            artifact: "demo-2.0".into(),
            token: "5f0c6a3e9d2b41c7a8e0f1d2c3b4a596".into(),
            dest: "/data/apps/demo".into(),
            staging: "/data/apps/.demo.staging".into(),
            previous: "/data/apps/.demo.previous".into(),
            phase: Phase::Swapping,
            fresh_install: false,
            service: Some("demo.service".into()),
            service_was_active: true,
            community: false,
            staged_ino: Some(1048583),
        }
    }

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("pa-journal-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn round_trips_through_disk_clears_and_scans() {
        let dir = scratch("round");
        let journals = Journals::open(&dir.join("state")).unwrap();
        assert_eq!(journals.load("demo").unwrap(), None);
        journals.save(&sample()).unwrap();
        assert_eq!(journals.load("demo").unwrap(), Some(sample()));
        let text = std::fs::read_to_string(journals.path("demo")).unwrap();
        assert!(text.contains("\"phase\": \"swapping\""), "{text}");
        assert!(text.contains("\"format\": 2"), "{text}");
        journals.reserve("demo").unwrap();
        assert_eq!(
            journals.scan().unwrap(),
            vec![(journals.path("demo"), sample())]
        );
        journals.clear("demo").unwrap();
        journals.clear("demo").unwrap();
        assert_eq!(journals.load("demo").unwrap(), None);
        assert_eq!(std::fs::read_dir(dir.join("state")).unwrap().count(), 0);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn every_format_ever_written_is_read() {
        let dir = scratch("formats");
        let journals = Journals::open(&dir).unwrap();
        std::fs::write(
            journals.path("demo"),
            include_str!("../tests/fixtures/journal-format-1.json"),
        )
        .unwrap();
        let v1 = journals.load("demo").unwrap().unwrap();
        assert_eq!(
            v1,
            Journal {
                staged_ino: None,
                ..sample()
            }
        );
        std::fs::write(
            journals.path("demo"),
            include_str!("../tests/fixtures/journal-format-2.json"),
        )
        .unwrap();
        assert_eq!(journals.load("demo").unwrap(), Some(sample()));
        // What this build writes is format 2, byte for byte the fixture.
        journals.save(&sample()).unwrap();
        assert_eq!(
            std::fs::read_to_string(journals.path("demo")).unwrap(),
            include_str!("../tests/fixtures/journal-format-2.json")
        );
        std::fs::write(journals.path("demo"), r#"{"format":3,"app":"demo"}"#).unwrap();
        let e = journals.load("demo").unwrap_err().to_string();
        assert!(e.contains("format 3 was written by a newer module"), "{e}");
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn markers_of_format_1_carry_the_install_token() {
        assert_eq!(
            marker_token("artifact=demo-1.0\ninstall=abc\n"),
            Some("abc")
        );
        assert_eq!(marker_token("artifact=x\n"), None);
    }
}
