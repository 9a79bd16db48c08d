//! The app's directories and the plan's steps applied to them: the only code
//! besides staging that touches the trees.

use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};

use mender_module_protocol::signal;
use module_kit::fs::{Dir, Exchanged, Kind};
use nix::errno::Errno;

use crate::error::{Error, Result};
use crate::journal::{self, Journal, Phase};
use crate::plan::{self, Action, Facts, JournalFacts, Refusal, Slot, Step, Tree};
use crate::spec::{AppSpec, RELEASE_MARKER};
use crate::states::Session;

/// One app's directories and journal. The three directories are siblings
/// in one parent, which every operation reaches through a directory held
/// open below the allowed root (module_kit::fs): a directory on the way
/// replaced by a symlink after Download is refused, never followed.
#[derive(Debug, Clone)]
pub(crate) struct Target {
    pub(crate) app: String,
    pub(crate) dest: PathBuf,
    pub(crate) staging: PathBuf,
    pub(crate) previous: PathBuf,
    pub(crate) service: Option<String>,
    pub(crate) community: bool,
    pub(crate) journal_path: PathBuf,
    /// The allowed root the destination lies in, and the parent's path
    /// relative to it.
    pub(crate) root: PathBuf,
    pub(crate) parent: PathBuf,
}

impl Target {
    pub(crate) fn new(
        session: &Session,
        app: &str,
        dest: &Path,
        service: Option<String>,
        community: bool,
    ) -> Result<Target> {
        let root = session.root_of(dest)?;
        let parent = dest
            .parent()
            .and_then(|p| p.strip_prefix(&root).ok())
            .unwrap_or(Path::new(""))
            .to_path_buf();
        Ok(Target {
            app: app.to_owned(),
            dest: dest.to_owned(),
            staging: sibling(dest, ".", ".staging"),
            previous: sibling(dest, ".", ".previous"),
            service,
            community,
            journal_path: session.journals.path(app),
            root,
            parent,
        })
    }

    /// An app of our own format, as its meta-data describes it.
    pub(crate) fn from_spec(session: &Session, spec: &AppSpec) -> Result<Target> {
        Target::new(
            session,
            &spec.name,
            Path::new(&spec.dest),
            spec.service.clone(),
            false,
        )
    }

    pub(crate) fn from_journal(session: &Session, j: &Journal) -> Result<Target> {
        Target::new(session, &j.app, &j.dest, j.service.clone(), j.community)
    }

    pub(crate) fn path(&self, slot: Slot) -> &Path {
        match slot {
            Slot::Dest => &self.dest,
            Slot::Staging => &self.staging,
            Slot::Previous => &self.previous,
        }
    }

    /// The entry name of a slot in the parent directory.
    pub(crate) fn name(&self, slot: Slot) -> &OsStr {
        self.path(slot).file_name().unwrap_or(OsStr::new(""))
    }

    pub(crate) fn parent_path(&self) -> PathBuf {
        self.root.join(&self.parent)
    }

    /// The parent directory, held open; None when it does not exist yet
    /// (nothing of this app is there). A symlink or a file anywhere below
    /// the allowed root on the way is refused.
    pub(crate) fn open_parent(&self) -> Result<Option<Dir>> {
        let root = match Dir::open(&self.root) {
            Ok(root) => root,
            Err(e) if e.source.raw_os_error() == Some(Errno::ENOENT as i32) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        match root.open_dir(&self.parent) {
            Ok(dir) => Ok(Some(dir)),
            Err(e) if e.source.raw_os_error() == Some(Errno::ENOENT as i32) => Ok(None),
            Err(e) => Err(self.refuse_path(e)),
        }
    }

    /// The parent directory, created below the allowed root where missing.
    pub(crate) fn create_parent(&self) -> Result<Dir> {
        let root = Dir::open_or_create(&self.root)?;
        root.create_dirs(&self.parent)
            .map_err(|e| self.refuse_path(e))
    }

    pub(crate) fn refuse_path(&self, e: module_kit::fs::Error) -> Error {
        let code = e.source.raw_os_error();
        let crossing = [Errno::ELOOP, Errno::ENOTDIR, Errno::EXDEV, Errno::EEXIST]
            .iter()
            .any(|c| code == Some(*c as i32));
        if crossing {
            Error::Refused(format!(
                "a symlink or a file is in the way of {} below {}; refusing to go through it \
                 (move it away by hand)",
                self.parent_path().display(),
                self.root.display()
            ))
        } else {
            e.into()
        }
    }
}

impl Session {
    // -- plan and apply -----------------------------------------------------

    pub(crate) fn execute(
        &self,
        action: Action,
        target: &Target,
        journal: &mut Option<Journal>,
        artifact: &str,
    ) -> Result<()> {
        let mut atomic_exchange = true;
        'plan: loop {
            let facts = self.observe(target, journal.as_ref(), artifact, atomic_exchange)?;
            let steps = plan::plan(action, &facts)
                .map_err(|r| self.refusal(r, target, journal.as_ref(), artifact))?;
            for step in steps {
                signal::check()?;
                if self.apply(step, target, journal)? == Exchanged::Unsupported {
                    crate::progress!(
                        "{}: the filesystem cannot exchange directories atomically; \
                         using two renames (the journal covers the gap)",
                        target.app
                    );
                    atomic_exchange = false;
                    continue 'plan;
                }
            }
            return Ok(());
        }
    }

    pub(crate) fn observe(
        &self,
        target: &Target,
        journal: Option<&Journal>,
        artifact: &str,
        atomic_exchange: bool,
    ) -> Result<Facts> {
        let parent = target.open_parent()?;
        if let Some(p) = &parent {
            if matches!(p.kind(target.name(Slot::Dest))?, Kind::File | Kind::Other) {
                return Err(Error::Refused(format!(
                    "{} is a symlink or a file, not a directory; move it away by hand",
                    target.dest.display()
                )));
            }
        }
        let fact = |slot: Slot| match &parent {
            Some(p) => tree_fact(p, target.name(slot), journal),
            None => Ok(Tree::Absent),
        };
        let service = journal
            .and_then(|j| j.service.clone())
            .or_else(|| target.service.clone());
        let service_active = match &service {
            Some(unit) => Some(self.systemctl.is_active(unit)?),
            None => None,
        };
        Ok(Facts {
            journal: journal.map(|j| JournalFacts {
                phase: j.phase,
                fresh_install: j.fresh_install,
                service_was_active: j.service_was_active,
                same_artifact: j.artifact == artifact,
            }),
            dest: fact(Slot::Dest)?,
            staging: fact(Slot::Staging)?,
            previous: fact(Slot::Previous)?,
            service_active,
            atomic_exchange,
        })
    }

    pub(crate) fn apply(
        &self,
        step: Step,
        target: &Target,
        journal: &mut Option<Journal>,
    ) -> Result<Exchanged> {
        let unit = || {
            journal
                .as_ref()
                .and_then(|j| j.service.clone())
                .or_else(|| target.service.clone())
                .expect("the plan only controls a named unit")
        };
        let parent = || -> Result<Dir> {
            target.open_parent()?.ok_or_else(|| {
                Error::Refused(format!(
                    "{} disappeared while the app was being updated",
                    target.parent_path().display()
                ))
            })
        };
        match step {
            Step::Remove(slot) => parent()?.remove_tree(target.name(slot))?,
            Step::Exchange(a, b) => return Ok(parent()?.exchange(target.name(a), target.name(b))?),
            Step::Rename(a, b) => parent()?.rename(target.name(a), target.name(b))?,
            Step::Journal(phase) => {
                let j = journal
                    .as_mut()
                    .expect("the plan writes a phase only with a journal");
                j.phase = phase;
                self.journals.save(j)?;
                if phase == Phase::Committed {
                    self.journals.release(&j.app)?;
                }
            }
            Step::BeginSwap {
                fresh_install,
                service_was_active,
            } => {
                let j = journal
                    .as_mut()
                    .expect("the plan swaps only with a journal");
                j.phase = Phase::Swapping;
                j.fresh_install = fresh_install;
                j.service_was_active = service_was_active;
                self.journals.save(j)?;
            }
            Step::ClearJournal => {
                self.journals.clear(&target.app)?;
                *journal = None;
            }
            Step::StopService => self.systemctl.stop(&unit())?,
            Step::StartService => self
                .systemctl
                .start_and_wait(&unit(), self.config.service_timeout())?,
        }
        Ok(Exchanged::Yes)
    }

    pub(crate) fn refusal(
        &self,
        r: Refusal,
        target: &Target,
        journal: Option<&Journal>,
        artifact: &str,
    ) -> Error {
        let app = &target.app;
        let (jpath, jartifact, phase) = match journal {
            Some(j) => (
                target.journal_path.display().to_string(),
                j.artifact.as_str(),
                j.phase.name(),
            ),
            None => (target.journal_path.display().to_string(), "", "absent"),
        };
        Error::Refused(match r {
            Refusal::Pending(_) => format!(
                "app {app}: artifact {jartifact} is installed but neither committed nor rolled back \
                 (journal {jpath}, phase {phase}); commit or roll back that deployment first"
            ),
            Refusal::NothingStaged => format!(
                "app {app}: nothing is staged for artifact {artifact}: Download did not complete (journal {jpath}, phase {phase})"
            ),
            Refusal::NotInstalled => format!(
                "app {app}: artifact {artifact} was not installed (journal phase {phase}); nothing to commit"
            ),
            Refusal::InstallIncomplete => format!(
                "app {app}: the install of {artifact} was interrupted during the swap (journal phase {phase}); roll it back"
            ),
            Refusal::CommitStarted => format!(
                "app {app}: cannot roll back {jartifact}: its commit has begun deleting the previous version, \
                 so it stays installed; ArtifactFailure or Cleanup finish the commit"
            ),
            Refusal::AlreadyCommitted => format!(
                "app {app}: cannot roll back {jartifact}: its commit already completed and removed the previous version \
                 (journal {jpath}, phase {phase}); {jartifact} stays installed in {}",
                target.dest.display()
            ),
            Refusal::RollbackInProgress => format!(
                "app {app}: a rollback of {jartifact} is unfinished (journal phase {phase}); the client's ArtifactFailure \
                 or Cleanup, or the next deployment's Download, finishes it"
            ),
            Refusal::Inconsistent(what) => format!(
                "app {app}: {what}; journal {jpath} (phase {phase}); nothing was changed: inspect {}, {} and {} by hand",
                target.dest.display(),
                target.staging.display(),
                target.previous.display()
            ),
        })
    }
}

/// What `name` in the parent holds: this install's tree when it is the
/// directory the journal recorded as staged (its inode), or, for a journal of
/// format 1, when its release marker carries the journal's token.
pub(crate) fn tree_fact(parent: &Dir, name: &OsStr, journal: Option<&Journal>) -> Result<Tree> {
    let Some(identity) = parent.dir_identity(name)? else {
        return Ok(match parent.kind(name)? {
            Kind::Absent => Tree::Absent,
            _ => Tree::Other,
        });
    };
    let Some(j) = journal else {
        return Ok(Tree::Other);
    };
    if let Some(ino) = j.staged_ino {
        return Ok(if identity.ino == ino {
            Tree::New
        } else {
            Tree::Other
        });
    }
    let marker = parent
        .open_dir(Path::new(name))
        .and_then(|dir| dir.read(RELEASE_MARKER, 4096));
    match marker {
        Ok(Some(content))
            if journal::marker_token(&String::from_utf8_lossy(&content))
                == Some(j.token.as_str()) =>
        {
            Ok(Tree::New)
        }
        _ => Ok(Tree::Other),
    }
}

/// Whether one path is the other or lies below it (component-wise).
pub(crate) fn overlaps(a: &Path, b: &Path) -> bool {
    a.starts_with(b) || b.starts_with(a)
}

/// A sibling name: `/a/b` + (".", ".staging") → `/a/.b.staging`.
pub(crate) fn sibling(path: &Path, prefix: &str, suffix: &str) -> PathBuf {
    let name = path.file_name().unwrap_or(OsStr::new(""));
    let mut s = OsString::from(prefix);
    s.push(name);
    s.push(suffix);
    path.parent().unwrap_or(Path::new("/")).join(s)
}
