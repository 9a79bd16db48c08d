//! The states the client calls: each takes the module lock, reads the
//! configuration and the journal, and either stages a release (stage.rs,
//! community.rs) or plans and applies steps on the app's directories
//! (apply.rs). Download is the one state that writes something that is not
//! a plan step.

use std::fs::{self};
use std::io::{self};
use std::path::{Path, PathBuf};

use mender_module_protocol::{Download, FileTree, ModuleResult, Payloads, UpdateModule};
use module_kit::fs::Kind;
use module_kit::lock::ModuleLock;

use crate::apply::{overlaps, Target};
use crate::config::{self, Config, DownloadMode};
use crate::error::{Error, Result};
use crate::journal::{Journals, Phase};
use crate::plan::{Action, Slot};
use crate::service::Systemctl;
use crate::spec::{self, AppSpec, ArtifactFormat};
use crate::stage::{has_stored_files, stored_total, Delivery};

/// The persistent-app Update Module.
pub struct PersistentApp;

impl UpdateModule for PersistentApp {
    fn supports_rollback(&self) -> bool {
        true
    }

    fn provide_payload_file_sizes(&self) -> bool {
        true
    }

    fn download(&mut self, tree: &FileTree, download: Download<'_>) -> ModuleResult {
        let session = Session::open()?;
        match session.config.download {
            DownloadMode::Stream => {
                session.stage(tree, download.stream(), Delivery::Streamed)?;
            }
            // Never touching stream-next makes the client store the
            // payloads under files/ for ArtifactInstall.
            DownloadMode::Store => session.prepare_stored(tree)?,
        }
        Ok(())
    }

    fn artifact_install(&mut self, tree: &FileTree) -> ModuleResult {
        Ok(Session::open()?.install(tree)?)
    }

    fn artifact_commit(&mut self, tree: &FileTree) -> ModuleResult {
        Ok(Session::open()?.act(tree, Action::Commit)?)
    }

    fn artifact_rollback(&mut self, tree: &FileTree) -> ModuleResult {
        Ok(Session::open()?.act(tree, Action::Rollback)?)
    }

    fn artifact_failure(&mut self, tree: &FileTree) -> ModuleResult {
        Ok(Session::open()?.act(tree, Action::Failure)?)
    }

    fn cleanup(&mut self, tree: &FileTree) -> ModuleResult {
        Ok(Session::open()?.act(tree, Action::Cleanup)?)
    }
}

/// A state's run: the configuration, the journals and the module-wide lock.
pub(crate) struct Session {
    pub(crate) config: Config,
    pub(crate) systemctl: Systemctl,
    pub(crate) journals: Journals,
    pub(crate) _lock: ModuleLock,
}

impl Session {
    pub(crate) fn open() -> Result<Session> {
        let config = Config::load()?;
        let lock = module_kit::lock::acquire(&config::lock_path(), || {
            crate::progress!("waiting for another persistent-app process to finish");
        })?;
        Ok(Session {
            journals: Journals::open(&config.state_dir)?,
            config,
            systemctl: Systemctl::new(),
            _lock: lock,
        })
    }

    /// The allowed root a destination lies in (the longest that holds it).
    pub(crate) fn root_of(&self, dest: &Path) -> Result<PathBuf> {
        spec::check_allowed(&dest.to_string_lossy(), &self.config.allowed_roots)?;
        Ok(self
            .config
            .allowed_roots
            .iter()
            .filter(|r| dest.starts_with(r))
            .max_by_key(|r| r.as_os_str().len())
            .expect("check_allowed found a root")
            .clone())
    }

    /// The device's unit policy (allowed_services) for the unit the
    /// artifact would have the module stop and start.
    pub(crate) fn check_service(&self, spec: &AppSpec) -> Result<()> {
        match &spec.service {
            Some(unit) => self.config.check_service(unit).map_err(Error::Refused),
            None => Ok(()),
        }
    }

    /// Everything Download checks about a destination before a byte is
    /// written: allowed, clear of the module's state and of every other
    /// app's directories, and no symlink or file below the allowed root on
    /// the way or at it.
    pub(crate) fn confine(&self, app: &str, dest: &str) -> Result<()> {
        spec::check_allowed(dest, &self.config.allowed_roots)?;
        let path = Path::new(dest);
        let state = &self.config.state_dir;
        if overlaps(path, state) {
            return Err(Error::Refused(format!(
                "destination {dest} overlaps the module's state directory {} (state_dir in the configuration); \
                 install the app elsewhere",
                state.display()
            )));
        }
        for (jpath, j) in self.journals.scan()? {
            if j.app == app {
                continue;
            }
            let clash = if overlaps(path, &j.dest) {
                Some("the directory of")
            } else if path.starts_with(&j.staging) || path.starts_with(&j.previous) {
                Some("a directory the module keeps for")
            } else {
                None
            };
            if let Some(what) = clash {
                return Err(Error::Refused(format!(
                    "destination {dest} overlaps {what} app {} ({}, journal {}); \
                     give each app a directory of its own, beside the others",
                    j.app,
                    j.dest.display(),
                    jpath.display()
                )));
            }
        }
        let target = Target::new(self, app, path, None, false)?;
        if let Some(parent) = target.open_parent()? {
            if parent.kind(target.name(Slot::Dest))? == Kind::Other {
                return Err(Error::Refused(format!(
                    "{dest} (the destination) is a symlink or a file, not a directory; refusing to install through it"
                )));
            }
        }
        Ok(())
    }

    // -- the other states ---------------------------------------------------

    pub(crate) fn install(&self, tree: &FileTree) -> Result<()> {
        let artifact = tree.artifact_name()?;
        let target = self.resolve(tree, Action::Install, &artifact)?;
        let mut journal = match &target {
            Some(t) => self.journals.load(&t.app)?,
            None => None,
        };
        let ready = journal.as_ref().is_some_and(|j| {
            j.artifact == artifact
                && matches!(j.phase, Phase::Staged | Phase::Swapping | Phase::Swapped)
        });
        let stored = has_stored_files(tree)? || self.config.download == DownloadMode::Store;
        let target = if !ready && stored {
            // The client stored the payloads instead of streaming them.
            let total = stored_total(tree)?;
            let staged = self.stage(tree, Payloads::stored(tree)?, Delivery::Stored { total })?;
            let target = Target::from_journal(self, &staged)?;
            journal = Some(staged);
            target
        } else {
            match target {
                Some(t) => t,
                None => {
                    return Err(Error::Refused(format!(
                        "nothing is staged for artifact {artifact}: Download did not complete"
                    )))
                }
            }
        };
        self.execute(Action::Install, &target, &mut journal, &artifact)?;
        crate::progress!(
            "{}: {} installed in {}",
            target.app,
            artifact,
            target.dest.display()
        );
        Ok(())
    }

    pub(crate) fn act(&self, tree: &FileTree, action: Action) -> Result<()> {
        let artifact = tree.artifact_name()?;
        let Some(target) = self.resolve(tree, action, &artifact)? else {
            if action == Action::Commit {
                return Err(Error::Refused(format!(
                    "artifact {artifact} was not installed by this module (no journal names it); nothing to commit"
                )));
            }
            return Ok(());
        };
        let mut journal = self.journals.load(&target.app)?;
        let target = match &journal {
            Some(j) => Target::from_journal(self, j)?,
            None => target,
        };
        let before = journal.as_ref().map(|j| j.phase);
        self.execute(action, &target, &mut journal, &artifact)?;
        let after = journal.as_ref().map(|j| j.phase);
        if before != after {
            let swapped = !matches!(before, Some(Phase::Staging | Phase::Staged));
            let what = match action {
                Action::Commit => "committed",
                Action::Rollback if swapped => "rolled back to the previous version",
                Action::Rollback => {
                    "dropped the unfinished install; the installed version was not touched"
                }
                Action::Failure | Action::Cleanup => "settled",
                _ => "done",
            };
            crate::progress!("{}: {what} ({})", target.app, target.dest.display());
        }
        Ok(())
    }

    /// Which app the current artifact concerns. `None` when there is
    /// nothing this module could have written for it (meta-data that
    /// Download refused, a community artifact never staged), which the
    /// error states accept as "nothing to do".
    pub(crate) fn resolve(
        &self,
        tree: &FileTree,
        action: Action,
        artifact: &str,
    ) -> Result<Option<Target>> {
        let lenient = matches!(action, Action::Rollback | Action::Failure | Action::Cleanup);
        let format = match spec::parse_meta_data(&tree.meta_data()?) {
            Ok(f) => f,
            Err(_) if lenient => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        match format {
            ArtifactFormat::Ours(spec) => {
                if let Some(j) = self.journals.load(&spec.name)? {
                    return Ok(Some(Target::from_journal(self, &j)?));
                }
                match self.confine(&spec.name, &spec.dest) {
                    Ok(_) => {}
                    Err(_) if lenient => return Ok(None),
                    Err(e) => return Err(e),
                }
                Ok(Some(Target::from_spec(self, &spec)?))
            }
            ArtifactFormat::Community => {
                let scanned = self.journals.scan()?;
                if let Some((_, j)) = scanned
                    .iter()
                    .find(|(_, j)| j.community && j.artifact == artifact)
                {
                    return Ok(Some(Target::from_journal(self, j)?));
                }
                let stored = tree.files_dir().join(spec::COMMUNITY_DEST_PAYLOAD);
                match fs::File::open(&stored).and_then(|f| {
                    let mut content = Vec::new();
                    std::io::Read::read_to_end(&mut std::io::Read::take(f, 4097), &mut content)
                        .map(|_| content)
                }) {
                    Ok(content) if content.len() > 4096 => {
                        if lenient {
                            return Ok(None);
                        }
                        Err(Error::Payloads(
                            "payload dest_dir is longer than 4096 bytes; it must hold only the destination directory"
                                .into(),
                        ))
                    }
                    Ok(content) => {
                        let dest = match spec::parse_community_dest(&content) {
                            Ok(d) => d,
                            Err(_) if lenient => return Ok(None),
                            Err(e) => return Err(e.into()),
                        };
                        let app = spec::community_name(&dest);
                        match Target::new(self, &app, Path::new(&dest), None, true) {
                            Ok(t) => Ok(Some(t)),
                            Err(_) if lenient => Ok(None),
                            Err(e) => Err(e),
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
                    Err(e) => Err(Error::io("read", &stored, e)),
                }
            }
        }
    }
}

/// `persistent-app recover`, run once at boot before the Mender client
/// (persistent-app-recover.service): an app whose swap never returned
/// (journal `swapping`) or whose rollback was cut short (`rolling-back`)
/// gets its old tree and unit back, as the client's ArtifactRollback and
/// Cleanup would do. A client that recorded the install runs them itself
/// after the boot and finds nothing left to do; one that did not (mender 3.x
/// standalone records an install only once ArtifactInstall returns) would
/// otherwise leave the journal for the next Download, and the unit, started
/// by the boot, on whichever tree the cut left in place. Every other phase
/// is left to the client: from `swapped` on, it may still commit.
pub fn recover_at_boot() -> Result<()> {
    let session = Session::open()?;
    let mut failed = Vec::new();
    for (_, journal) in session.journals.scan()? {
        if !matches!(journal.phase, Phase::Swapping | Phase::RollingBack) {
            continue;
        }
        crate::progress!(
            "{}: the {} of {} was cut short by a restart; rolling it back",
            journal.app,
            if journal.phase == Phase::Swapping {
                "install"
            } else {
                "rollback"
            },
            journal.artifact
        );
        let artifact = journal.artifact.clone();
        let app = journal.app.clone();
        let result = Target::from_journal(&session, &journal).and_then(|target| {
            let mut journal = Some(journal);
            session.execute(Action::Rollback, &target, &mut journal, &artifact)?;
            session.execute(Action::Cleanup, &target, &mut journal, &artifact)
        });
        match result {
            Ok(()) => crate::progress!("{app}: rolled back to the previous version"),
            Err(e) => failed.push(format!("app {app}: {e}")),
        }
    }
    if failed.is_empty() {
        Ok(())
    } else {
        Err(Error::Refused(failed.join("; ")))
    }
}
