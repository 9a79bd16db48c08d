//! The executor: the only code that touches the app's directories. Each
//! state takes the lock, reads the journal and the directories, asks `plan`
//! for the steps and applies them one by one; staging (Download, or
//! ArtifactInstall when the client stored the payloads) is the one
//! operation that is not a plan step.

use std::ffi::{OsStr, OsString};
use std::fs::{self, File};
use std::io::{self, Read};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use mender_module_protocol::{
    signal, Download, FileTree, ModuleResult, Payload, Payloads, UpdateModule,
};
use module_kit::fs::{Dir, Exchanged, Kind};
use module_kit::lock::ModuleLock;
use nix::errno::Errno;

use crate::archive::{Durability, Expect, Extractor};
use crate::config::{self, Config, DownloadMode};
use crate::error::{Error, Result};
use crate::fault;
use crate::journal::{self, Journal, Journals, Phase};
use crate::plan::{self, Action, Facts, JournalFacts, Refusal, Slot, Step, Tree};
use crate::service::Systemctl;
use crate::spec::{self, AppSpec, ArtifactFormat, RELEASE_MARKER};

/// Measured on ext4 with a tree of 5,000 small files: one `syncfs` at the
/// end took a fraction of the time of an `fsync` per file (see FORMAT.md),
/// and the journal is written only after it returns.
const DURABILITY: Durability = Durability::SyncFs;

/// Slack per member on top of the content bytes: a block for small files'
/// tails and directories, so a tree that "fits" by bytes does not run out
/// of blocks.
const BYTES_PER_ENTRY: u64 = 4096;

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

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Delivery {
    Streamed,
    /// From `files/`; the sum of the payload sizes is known up front.
    Stored {
        total: u64,
    },
}

/// What the community format's payload loop carries from one payload to
/// the next.
struct CommunityStep<'a> {
    artifact: &'a str,
    delivery: Delivery,
    pending_dir: &'a Path,
    pending: &'a mut Vec<(String, u64)>,
    staging: &'a mut Option<(Target, Journal, Extractor)>,
}

/// One app's directories and journal. The three directories are siblings
/// in one parent, which every operation reaches through a directory held
/// open below the allowed root (module_kit::fs): a directory on the way
/// replaced by a symlink after Download is refused, never followed.
#[derive(Debug, Clone)]
struct Target {
    app: String,
    dest: PathBuf,
    staging: PathBuf,
    previous: PathBuf,
    service: Option<String>,
    community: bool,
    journal_path: PathBuf,
    /// The allowed root the destination lies in, and the parent's path
    /// relative to it.
    root: PathBuf,
    parent: PathBuf,
}

impl Target {
    fn new(
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
    fn from_spec(session: &Session, spec: &AppSpec) -> Result<Target> {
        Target::new(
            session,
            &spec.name,
            Path::new(&spec.dest),
            spec.service.clone(),
            false,
        )
    }

    fn from_journal(session: &Session, j: &Journal) -> Result<Target> {
        Target::new(session, &j.app, &j.dest, j.service.clone(), j.community)
    }

    fn path(&self, slot: Slot) -> &Path {
        match slot {
            Slot::Dest => &self.dest,
            Slot::Staging => &self.staging,
            Slot::Previous => &self.previous,
        }
    }

    /// The entry name of a slot in the parent directory.
    fn name(&self, slot: Slot) -> &OsStr {
        self.path(slot).file_name().unwrap_or(OsStr::new(""))
    }

    fn parent_path(&self) -> PathBuf {
        self.root.join(&self.parent)
    }

    /// The parent directory, held open; None when it does not exist yet
    /// (nothing of this app is there). A symlink or a file anywhere below
    /// the allowed root on the way is refused.
    fn open_parent(&self) -> Result<Option<Dir>> {
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
    fn create_parent(&self) -> Result<Dir> {
        let root = Dir::open_or_create(&self.root)?;
        root.create_dirs(&self.parent)
            .map_err(|e| self.refuse_path(e))
    }

    fn refuse_path(&self, e: module_kit::fs::Error) -> Error {
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

/// A state's run: the configuration, the journals and the module-wide lock.
struct Session {
    config: Config,
    systemctl: Systemctl,
    journals: Journals,
    _lock: ModuleLock,
}

impl Session {
    fn open() -> Result<Session> {
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
    fn root_of(&self, dest: &Path) -> Result<PathBuf> {
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
    fn check_service(&self, spec: &AppSpec) -> Result<()> {
        match &spec.service {
            Some(unit) => self.config.check_service(unit).map_err(Error::Refused),
            None => Ok(()),
        }
    }

    /// Everything Download checks about a destination before a byte is
    /// written: allowed, clear of the module's state and of every other
    /// app's directories, and no symlink or file below the allowed root on
    /// the way or at it.
    fn confine(&self, app: &str, dest: &str) -> Result<()> {
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

    // -- staging ------------------------------------------------------------

    /// Download in the `store` mode: everything Download checks before a
    /// byte is written (meta-data, confinement, what an earlier deployment
    /// left, free space), without reading the payload. ArtifactInstall
    /// extracts it from `files/`.
    fn prepare_stored(&self, tree: &FileTree) -> Result<()> {
        let artifact = tree.artifact_name()?;
        match spec::parse_meta_data(&tree.meta_data()?)? {
            ArtifactFormat::Ours(spec) => {
                self.confine(&spec.name, &spec.dest)?;
                self.check_service(&spec)?;
                let target = Target::from_spec(self, &spec)?;
                self.settle(&target, &artifact)?;
                // The client's copy of the archive (content, a header per
                // member, the end blocks) also lands on this filesystem
                // when its datastore shares it, as /data/mender does.
                let archive = spec
                    .unpacked_size
                    .saturating_add(spec.entries.saturating_mul(1024))
                    .saturating_add(10240);
                let stored_here = same_filesystem(&tree.files_dir(), &target.staging)?;
                let bytes = if stored_here {
                    spec.unpacked_size.saturating_add(archive)
                } else {
                    spec.unpacked_size
                };
                let what = if stored_here {
                    format!("payload {} (stored by the client, then extracted)", spec.archive)
                } else {
                    format!("payload {}", spec.archive)
                };
                self.check_space(&target, bytes, spec.entries, &what)?;
                crate::progress!(
                    "{}: download mode \"store\": the client stores {} under files/; ArtifactInstall extracts it",
                    spec.name, spec.archive
                );
            }
            ArtifactFormat::Community => crate::progress!(
                "download mode \"store\": the client stores the payload files under files/; ArtifactInstall installs them"
            ),
        }
        Ok(())
    }

    /// Download (or ArtifactInstall over stored files): validate, settle what
    /// an earlier deployment left, check the space, extract into staging,
    /// mark, sync, journal `staged`.
    fn stage(&self, tree: &FileTree, payloads: Payloads, delivery: Delivery) -> Result<Journal> {
        let artifact = tree.artifact_name()?;
        match spec::parse_meta_data(&tree.meta_data()?)? {
            ArtifactFormat::Ours(spec) => self.stage_ours(&artifact, &spec, payloads, delivery),
            ArtifactFormat::Community => self.stage_community(tree, &artifact, payloads, delivery),
        }
    }

    fn stage_ours(
        &self,
        artifact: &str,
        spec: &AppSpec,
        mut payloads: Payloads,
        delivery: Delivery,
    ) -> Result<Journal> {
        self.confine(&spec.name, &spec.dest)?;
        self.check_service(spec)?;
        let target = Target::from_spec(self, spec)?;
        self.settle(&target, artifact)?;
        self.check_space(
            &target,
            spec.unpacked_size,
            spec.entries,
            &format!("payload {}", spec.archive),
        )?;
        let (mut journal, mut extractor) = self.begin_staging(
            &target,
            artifact,
            Expect {
                entries: Some(spec.entries),
                bytes: Some(spec.unpacked_size),
            },
        )?;
        let mut seen = false;
        while let Some(mut payload) = payloads.next_payload()? {
            let result = if payload.name != spec.archive || seen {
                Err(Error::Payloads(format!(
                    "unexpected payload {:?}: the meta-data names only {:?}; rebuild the artifact with persistent-app-artifact-gen",
                    payload.name, spec.archive
                )))
            } else {
                seen = true;
                let name = payload.name.clone();
                extractor
                    .extract_tar(&mut payload)
                    .map_err(|source| Error::Archive {
                        payload: name,
                        source,
                    })
            };
            if let Err(e) = result {
                hold_open(payload);
                return Err(e);
            }
        }
        if !seen {
            return Err(Error::Payloads(format!(
                "the artifact has no payload {:?}, which its meta-data names",
                spec.archive
            )));
        }
        self.finish_staging(&target, &mut journal, extractor, &spec.archive, delivery)?;
        Ok(journal)
    }

    fn stage_community(
        &self,
        tree: &FileTree,
        artifact: &str,
        mut payloads: Payloads,
        delivery: Delivery,
    ) -> Result<Journal> {
        // Files that arrive before dest_dir wait in the client's scratch
        // space: until then the staging directory's place is unknown.
        let pending_dir = tree.tmp_dir().join("persistent-app-pending");
        let mut pending: Vec<(String, u64)> = Vec::new();
        let mut staging: Option<(Target, Journal, Extractor)> = None;
        while let Some(mut payload) = payloads.next_payload()? {
            let mut step = CommunityStep {
                artifact,
                delivery,
                pending_dir: &pending_dir,
                pending: &mut pending,
                staging: &mut staging,
            };
            if let Err(e) = self.community_payload(&mut payload, &mut step) {
                hold_open(payload);
                return Err(e);
            }
        }
        let Some((target, mut journal, extractor)) = staging else {
            return Err(Error::Payloads(
                "the artifact has neither \"persistent-app\" meta-data nor a dest_dir payload naming the destination; \
                 build it with persistent-app-artifact-gen"
                    .into(),
            ));
        };
        self.finish_staging(&target, &mut journal, extractor, "files", delivery)?;
        Ok(journal)
    }

    /// One payload of a community-format artifact.
    fn community_payload(
        &self,
        payload: &mut Payload<'_>,
        step: &mut CommunityStep<'_>,
    ) -> Result<()> {
        signal::check()?;
        let (artifact, delivery, pending_dir) = (step.artifact, step.delivery, step.pending_dir);
        let name = payload.name.clone();
        if name == spec::COMMUNITY_DEST_PAYLOAD {
            if step.staging.is_some() {
                return Err(Error::Payloads(
                    "the artifact has two dest_dir payloads".into(),
                ));
            }
            let mut content = Vec::new();
            (&mut *payload)
                .take(4097)
                .read_to_end(&mut content)
                .map_err(|e| Error::io("read payload", &name, e))?;
            if content.len() > 4096 {
                return Err(Error::Payloads(
                    "payload dest_dir is longer than 4096 bytes; it must hold only the destination directory".into(),
                ));
            }
            io::copy(payload, &mut io::sink()).map_err(|e| Error::io("read payload", &name, e))?;
            let dest = spec::parse_community_dest(&content)?;
            let app = spec::community_name(&dest);
            self.confine(&app, &dest)?;
            let target = Target::new(self, &app, Path::new(&dest), None, true)?;
            self.settle(&target, artifact)?;
            let known = match delivery {
                Delivery::Stored { total } => total,
                Delivery::Streamed => step.pending.iter().map(|p| p.1).sum(),
            };
            self.check_space(
                &target,
                known,
                step.pending.len() as u64 + 1,
                "the payload files",
            )?;
            let (journal, mut extractor) =
                self.begin_staging(&target, artifact, Expect::default())?;
            for (name, size) in step.pending.drain(..) {
                let path = pending_dir.join(&name);
                let mut file = File::open(&path).map_err(|e| Error::io("open", &path, e))?;
                extractor
                    .add_file(&name, &mut file, Some(size))
                    .map_err(|source| Error::Archive {
                        payload: name.clone(),
                        source,
                    })?;
                let _ = fs::remove_file(&path);
            }
            *step.staging = Some((target, journal, extractor));
            return Ok(());
        }
        if name == RELEASE_MARKER {
            return Err(Error::Payloads(format!(
                "payload name {RELEASE_MARKER} is reserved for the module's release marker"
            )));
        }
        match step.staging.as_mut() {
            Some((target, _, extractor)) => {
                if let (Some(size), Delivery::Streamed) = (payload.size, delivery) {
                    self.check_space(target, size, 1, &format!("payload {name}"))?;
                }
                let size = payload.size;
                extractor
                    .add_file(&name, payload, size)
                    .map_err(|source| Error::Archive {
                        payload: name.clone(),
                        source,
                    })?;
            }
            None => {
                fs::DirBuilder::new()
                    .recursive(true)
                    .mode(0o700)
                    .create(pending_dir)
                    .map_err(|e| Error::io("create directory", pending_dir, e))?;
                let path = pending_dir.join(&name);
                let mut file = fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .custom_flags(nix::libc::O_NOFOLLOW)
                    .open(&path)
                    .map_err(|e| Error::io("create", &path, e))?;
                let size =
                    io::copy(payload, &mut file).map_err(|e| Error::io("write", &path, e))?;
                step.pending.push((name, size));
            }
        }
        Ok(())
    }

    /// Settles what earlier deployments left at this destination (the
    /// `Prepare` plan), refusing when another update there is unfinished.
    fn settle(&self, target: &Target, artifact: &str) -> Result<()> {
        let mut journal = self.journals.load(&target.app)?;
        if let Some(j) = &journal {
            let old = Target::from_journal(self, j)?;
            self.execute(Action::Prepare, &old, &mut journal, artifact)?;
        }
        // The new destination's own leftovers, when the old journal named
        // another one (an app that moved) or there was none.
        self.execute(Action::Prepare, target, &mut journal, artifact)
    }

    fn check_space(&self, target: &Target, bytes: u64, entries: u64, what: &str) -> Result<()> {
        let need = bytes.saturating_add(entries.saturating_mul(BYTES_PER_ENTRY));
        let need_inodes = entries + 1;
        // The parent's filesystem, or the allowed root's where the parent
        // does not exist yet.
        let (probe, dir) = match target.open_parent()? {
            Some(parent) => (target.parent_path(), parent),
            None => (target.root.clone(), Dir::open_or_create(&target.root)?),
        };
        let (available, available_inodes) = dir.free_space()?;
        // A filesystem that reports no inode accounting (some report 0 of 0).
        let inodes_ok = available_inodes >= need_inodes || available_inodes == 0;
        if need > available || !inodes_ok {
            return Err(Error::NoSpace {
                what: what.to_owned(),
                path: probe,
                need,
                available,
                need_inodes,
                available_inodes,
            });
        }
        Ok(())
    }

    fn begin_staging(
        &self,
        target: &Target,
        artifact: &str,
        expect: Expect,
    ) -> Result<(Journal, Extractor)> {
        let parent = target.create_parent()?;
        let mut journal = Journal {
            app: target.app.clone(),
            artifact: artifact.to_owned(),
            token: module_kit::ids::new_id(16),
            dest: target.dest.clone(),
            staging: target.staging.clone(),
            previous: target.previous.clone(),
            phase: Phase::Staging,
            fresh_install: false,
            service: target.service.clone(),
            service_was_active: false,
            community: target.community,
            staged_ino: None,
        };
        self.journals.save(&journal)?;
        // Room for the journal writes of a later rollback, taken while there
        // is room: on a full data partition they must still succeed.
        self.journals.reserve(&target.app)?;
        let staging = target.name(Slot::Staging);
        parent.mkdir(staging, 0o755)?;
        journal.staged_ino = parent.dir_identity(staging)?.map(|id| id.ino);
        Ok((journal, Extractor::new(&target.staging, expect, DURABILITY)))
    }

    fn finish_staging(
        &self,
        target: &Target,
        journal: &mut Journal,
        extractor: Extractor,
        payload: &str,
        delivery: Delivery,
    ) -> Result<()> {
        let summary = extractor.finish().map_err(|source| Error::Archive {
            payload: payload.to_owned(),
            source,
        })?;
        fault::point("before-staged");
        journal.phase = Phase::Staged;
        self.journals.save(journal)?;
        let from = match delivery {
            Delivery::Streamed => "from the client's stream",
            Delivery::Stored { .. } => "from the payloads the client stored under files/",
        };
        crate::progress!(
            "{}: staged {} ({} members, {} bytes) in {} {from}",
            target.app,
            journal.artifact,
            summary.entries,
            summary.bytes,
            target.staging.display()
        );
        Ok(())
    }

    // -- the other states ---------------------------------------------------

    fn install(&self, tree: &FileTree) -> Result<()> {
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

    fn act(&self, tree: &FileTree, action: Action) -> Result<()> {
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
    fn resolve(&self, tree: &FileTree, action: Action, artifact: &str) -> Result<Option<Target>> {
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
                match fs::read(&stored) {
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

    // -- plan and apply -----------------------------------------------------

    fn execute(
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

    fn observe(
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

    fn apply(
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

    fn refusal(
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

/// Keeps a payload stream open until the process exits, so that the client
/// sees the module's exit (and the error line before it) rather than a
/// broken pipe it may act on first, for instance by killing the module
/// while the line is being written.
fn hold_open(payload: Payload<'_>) {
    std::mem::forget(payload);
}

/// What `name` in the parent holds: this install's tree when it is the
/// directory the journal recorded as staged (its inode), or, for a journal of
/// format 1, when its release marker carries the journal's token.
fn tree_fact(parent: &Dir, name: &OsStr, journal: Option<&Journal>) -> Result<Tree> {
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
fn overlaps(a: &Path, b: &Path) -> bool {
    a.starts_with(b) || b.starts_with(a)
}

/// A sibling name: `/a/b` + (".", ".staging") → `/a/.b.staging`.
fn sibling(path: &Path, prefix: &str, suffix: &str) -> PathBuf {
    let name = path.file_name().unwrap_or(OsStr::new(""));
    let mut s = OsString::from(prefix);
    s.push(name);
    s.push(suffix);
    path.parent().unwrap_or(Path::new("/")).join(s)
}

/// Whether two paths (or their nearest existing ancestors) are on one
/// filesystem.
fn same_filesystem(a: &Path, b: &Path) -> Result<bool> {
    use std::os::unix::fs::MetadataExt;
    let dev = |path: &Path| -> Result<u64> {
        let mut probe = path;
        loop {
            match fs::metadata(probe) {
                Ok(m) => return Ok(m.dev()),
                Err(e) if e.kind() == io::ErrorKind::NotFound => match probe.parent() {
                    Some(p) => probe = p,
                    None => return Err(Error::io("inspect", path, e)),
                },
                Err(e) => return Err(Error::io("inspect", probe, e)),
            }
        }
    };
    Ok(dev(a)? == dev(b)?)
}

fn has_stored_files(tree: &FileTree) -> Result<bool> {
    let dir = tree.files_dir();
    match fs::read_dir(&dir) {
        Ok(mut entries) => Ok(entries.next().is_some()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(Error::io("list", &dir, e)),
    }
}

fn stored_total(tree: &FileTree) -> Result<u64> {
    let dir = tree.files_dir();
    let mut total = 0u64;
    for entry in fs::read_dir(&dir).map_err(|e| Error::io("list", &dir, e))? {
        let entry = entry.map_err(|e| Error::io("list", &dir, e))?;
        if entry.file_name() == spec::COMMUNITY_DEST_PAYLOAD {
            continue;
        }
        total += entry
            .metadata()
            .map_err(|e| Error::io("inspect", entry.path(), e))?
            .len();
    }
    Ok(total)
}
