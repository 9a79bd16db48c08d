//! Staging a release: Download (or ArtifactInstall over the payloads the
//! client stored) validates, settles what an earlier deployment left,
//! checks the space and extracts the payload into the staging tree.

use std::fs::{self};
use std::io;
use std::path::Path;

use mender_module_protocol::{FileTree, Payloads};
use module_kit::fs::Dir;

use crate::apply::Target;
use crate::archive::{Durability, Expect, Extractor};
use crate::error::{Error, Result};
use crate::fault;
use crate::journal::{Journal, Phase};
use crate::plan::{Action, Slot};
use crate::spec::{self, AppSpec, ArtifactFormat};
use crate::states::Session;

/// Measured on ext4 with a tree of 5,000 small files: one `syncfs` at the
/// end took a fraction of the time of an `fsync` per file (see FORMAT.md),
/// and the journal is written only after it returns.
pub(crate) const DURABILITY: Durability = Durability::SyncFs;

/// Slack per member on top of the content bytes: a block for small files'
/// tails and directories, so a tree that "fits" by bytes does not run out
/// of blocks.
pub(crate) const BYTES_PER_ENTRY: u64 = 4096;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Delivery {
    Streamed,
    /// From `files/`; the sum of the payload sizes is known up front.
    Stored {
        total: u64,
    },
}

impl Session {
    // -- staging ------------------------------------------------------------

    /// Download in the `store` mode: everything Download checks before a
    /// byte is written (meta-data, confinement, what an earlier deployment
    /// left, free space), without reading the payload. ArtifactInstall
    /// extracts it from `files/`.
    pub(crate) fn prepare_stored(&self, tree: &FileTree) -> Result<()> {
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
    pub(crate) fn stage(
        &self,
        tree: &FileTree,
        payloads: Payloads,
        delivery: Delivery,
    ) -> Result<Journal> {
        let artifact = tree.artifact_name()?;
        match spec::parse_meta_data(&tree.meta_data()?)? {
            ArtifactFormat::Ours(spec) => match &spec.delta {
                Some(delta) => self.stage_delta(
                    &artifact,
                    &spec,
                    delta,
                    payloads,
                    delivery,
                    &tree.files_dir(),
                ),
                None => self.stage_ours(&artifact, &spec, payloads, delivery),
            },
            ArtifactFormat::Community => self.stage_community(tree, &artifact, payloads, delivery),
        }
    }

    pub(crate) fn stage_ours(
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
                payload.discard_rest();
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

    /// Settles what earlier deployments left at this destination (the
    /// `Prepare` plan), the old journal's destination first.
    pub(crate) fn settle(&self, target: &Target, artifact: &str) -> Result<()> {
        let mut journal = self.journals.load(&target.app)?;
        if let Some(j) = &journal {
            let old = Target::from_journal(self, j)?;
            self.execute(Action::Prepare, &old, &mut journal, artifact)?;
        }
        // The new destination's own leftovers, when the old journal named
        // another one (an app that moved) or there was none.
        self.execute(Action::Prepare, target, &mut journal, artifact)
    }

    pub(crate) fn check_space(
        &self,
        target: &Target,
        bytes: u64,
        entries: u64,
        what: &str,
    ) -> Result<()> {
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

    pub(crate) fn begin_staging(
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
        // Through the parent held open since it was checked: the staging
        // path is never resolved again.
        let root = parent.open_dir(Path::new(staging))?;
        Ok((journal, Extractor::new(root, expect, DURABILITY)))
    }

    pub(crate) fn finish_staging(
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
}

/// Whether two paths (or their nearest existing ancestors) are on one
/// filesystem.
pub(crate) fn same_filesystem(a: &Path, b: &Path) -> Result<bool> {
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

pub(crate) fn has_stored_files(tree: &FileTree) -> Result<bool> {
    let dir = tree.files_dir();
    match fs::read_dir(&dir) {
        Ok(mut entries) => Ok(entries.next().is_some()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(Error::io("list", &dir, e)),
    }
}

pub(crate) fn stored_total(tree: &FileTree) -> Result<u64> {
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
