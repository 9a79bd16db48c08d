//! The community format: flat payload files and a `dest_dir` payload naming
//! the destination, in any order (files that arrive before it wait in the
//! client's scratch space).

use std::fs::{self, File};
use std::io::{self, Read};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::Path;

use mender_module_protocol::{signal, FileTree, Payload, Payloads};

use crate::apply::Target;
use crate::archive::{Expect, Extractor};
use crate::error::{Error, Result};
use crate::journal::Journal;
use crate::spec::{self, RELEASE_MARKER};
use crate::stage::Delivery;
use crate::states::Session;

/// What the community format's payload loop carries from one payload to
/// the next.
pub(crate) struct CommunityStep<'a> {
    pub(crate) artifact: &'a str,
    pub(crate) delivery: Delivery,
    pub(crate) pending_dir: &'a Path,
    pub(crate) pending: &'a mut Vec<(String, u64)>,
    pub(crate) staging: &'a mut Option<(Target, Journal, Extractor)>,
}

impl Session {
    pub(crate) fn stage_community(
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
                payload.discard_rest();
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
    pub(crate) fn community_payload(
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
}
