//! Staging a delta (format 2): the new tree is built in the staging
//! directory from the installed tree's files the manifest names plus the
//! files the archive carries, and every file's content is checked against
//! the manifest's SHA-256 before the tree can be swapped in. From the
//! `staged` journal on, a delta's tree is like any other: swap, rollback and
//! recovery do not know how it was built.
//!
//! Files are taken from the installed tree by cloning (FICLONE: btrfs, XFS
//! and other filesystems that share blocks copy-on-write) or else by
//! copying, never by hard links. A hard link would make the staged file and
//! the installed one the same inode: the running app writing its file in
//! place before the swap would change the new release's file after it was
//! verified, and the new app writing in place after the swap would change
//! the file in `.NAME.previous`, so a rollback would bring back a tree that
//! is no longer the old release. The module's swap keeps the old tree
//! intact precisely so that rollback is exact; hard links would give that
//! up for files the apps may write. A clone shares blocks only until one
//! side writes, so both trees stay independent.
//!
//! What is checked, and when (all in Download, before the swap):
//! * before anything is written: the manifest (paths, digests, totals), and
//!   that each file to take is a regular file of the right size in the
//!   installed tree (a file removed or truncated by hand is refused at once);
//! * as each file is placed: the staged copy's digest (a file edited by hand
//!   in the installed tree, or by the running app);
//! * as the archive is extracted: each carried file's digest, that the
//!   archive carries exactly the files the manifest says it does.
//!
//! A refusal leaves the installed tree untouched; the partial staging tree
//! is removed by the client's Cleanup (or the next Download), as for a
//! corrupt full artifact.

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use mender_module_protocol::Payloads;
use module_kit::fs::Dir;
use nix::errno::Errno;
use persistent_app_format::delta::{CheckedManifest, Content, Manifest};
use persistent_app_format::sha256::{self, Sha256};

use crate::apply::Target;
use crate::archive::{ArchiveError, Expect};
use crate::error::{Error, Result};
use crate::journal::Journal;
use crate::plan::Slot;
use crate::spec::{AppSpec, Delta};
use crate::stage::Delivery;
use crate::states::Session;

/// How a file of the installed tree reached the staging tree.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placed {
    /// Blocks shared copy-on-write with the installed file.
    Cloned,
    Copied,
}

/// Whether a failed FICLONE means "this filesystem (or pair of files)
/// cannot share blocks", so a copy is the answer, rather than an error a
/// copy would meet too.
pub fn clone_unsupported(errno: Errno) -> bool {
    matches!(
        errno,
        // No reflink support (ext4, tmpfs), or no such ioctl at all.
        Errno::EOPNOTSUPP | Errno::ENOTTY | Errno::ENOSYS | Errno::EINVAL
        // Different filesystems or mounts.
        | Errno::EXDEV
        // The source is mapped or busy in a way the filesystem refuses to share.
        | Errno::ETXTBSY | Errno::EBUSY
    )
}

/// The first check of a file to take from the installed tree, on what
/// `fstat` shows: a regular file of the manifest's size.
pub fn check_found(is_file: bool, len: u64, want: Content) -> Result<(), String> {
    if !is_file {
        return Err("is not a regular file".to_owned());
    }
    if len != want.size {
        return Err(format!(
            "has {len} bytes, the release installed {}",
            want.size
        ));
    }
    Ok(())
}

/// Why a file to take could not be opened, as the rest of a sentence.
pub fn describe_open_error(e: &io::Error) -> String {
    match e.raw_os_error().map(Errno::from_raw) {
        Some(Errno::ENOENT) => "is missing".to_owned(),
        Some(Errno::ELOOP) => "is a symlink, not the regular file the release installed".to_owned(),
        Some(Errno::ENOTDIR) => "is missing (a directory on its way is not a directory)".to_owned(),
        _ => format!("cannot be opened ({e})"),
    }
}

/// How a content differs from the manifest's, as the rest of a sentence.
pub fn describe_mismatch(got: Content, want: Content) -> String {
    if got.size != want.size {
        format!("has {} bytes, the manifest says {}", got.size, want.size)
    } else {
        format!(
            "has sha256 {}, the manifest says {}",
            &sha256::hex(&got.sha256)[..16],
            &sha256::hex(&want.sha256)[..16]
        )
    }
}

/// The largest manifest read: a few hundred bytes per listed file at most.
pub fn manifest_limit(entries: u64) -> u64 {
    entries.saturating_mul(4500).saturating_add(4096)
}

/// Clones `source` into the empty `target` (or copies it where the
/// filesystem cannot), then hashes the staged copy: through `dir`/`name`,
/// opened again for reading, so the digest is of what was written, not of
/// the installed file, which the running app may change meanwhile.
pub(crate) fn clone_or_copy(
    source: &File,
    target: &File,
    dir: &Dir,
    name: &std::ffi::OsStr,
    buf: &mut [u8],
) -> io::Result<(Placed, Content)> {
    // SAFETY: FICLONE takes the source descriptor as its argument; both
    // descriptors are open for the duration of the call.
    let rc = unsafe {
        nix::libc::ioctl(
            target.as_raw_fd(),
            nix::libc::FICLONE as _,
            source.as_raw_fd(),
        )
    };
    if rc == 0 {
        let mut staged = dir.open_file(name).map_err(|e| e.source)?;
        let content = hash_all(&mut staged, buf)?;
        return Ok((Placed::Cloned, content));
    }
    let errno = Errno::last();
    if !clone_unsupported(errno) {
        return Err(errno.into());
    }
    let mut hash = Sha256::new();
    let mut size = 0u64;
    let mut reader = source;
    let mut writer = target;
    loop {
        let n = match reader.read(buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) => return Err(e),
        };
        hash.update(&buf[..n]);
        writer.write_all(&buf[..n])?;
        size += n as u64;
    }
    Ok((
        Placed::Copied,
        Content {
            size,
            sha256: hash.finish(),
        },
    ))
}

/// How many files ahead of the copy the installed tree is read. Most of an
/// app's files are small, and read one at a time each costs the storage's
/// latency; asking for the next ones early lets it queue the reads. (On the
/// shared 2-core bench machine the delta installs were 3.2–3.8 s with it and
/// 4.0–5.4 s without, but the full installs of the same runs varied as much,
/// so the gain is not proven there; the hint costs one open per file.)
const READ_AHEAD: usize = 32;

/// Asks the kernel to start reading `from` (below `base`) into the page
/// cache. Only a hint: a file that cannot be opened here is reported by the
/// copy itself.
fn read_ahead(base: &Dir, from: &str) {
    let (dir, name) = match from.rsplit_once('/') {
        Some((dir, name)) => (base.open_dir(Path::new(dir)), name),
        None => (base.try_clone(), from),
    };
    if let Ok(file) = dir.and_then(|d| d.open_file(name)) {
        let _ = nix::fcntl::posix_fadvise(
            &file,
            0,
            0,
            nix::fcntl::PosixFadviseAdvice::POSIX_FADV_WILLNEED,
        );
    }
}

fn hash_all(file: &mut File, buf: &mut [u8]) -> io::Result<Content> {
    let mut hash = Sha256::new();
    let mut size = 0u64;
    loop {
        let n = file.read(buf)?;
        if n == 0 {
            break;
        }
        hash.update(&buf[..n]);
        size += n as u64;
    }
    Ok(Content {
        size,
        sha256: hash.finish(),
    })
}

impl Session {
    /// Download (or ArtifactInstall over stored files) of a delta. The
    /// client streams the payloads in the artifact's order, the manifest
    /// first; stored, they are listed by name, so the manifest is read from
    /// `files/` before the archive.
    pub(crate) fn stage_delta(
        &self,
        artifact: &str,
        spec: &AppSpec,
        delta: &Delta,
        mut payloads: Payloads,
        delivery: Delivery,
        files_dir: &Path,
    ) -> Result<Journal> {
        self.confine(&spec.name, &spec.dest)?;
        self.check_service(spec)?;
        let target = Target::from_spec(self, spec)?;
        self.settle(&target, artifact)?;
        let limit = manifest_limit(spec.entries);
        let mut manifest = match delivery {
            Delivery::Stored { .. } => {
                let path = files_dir.join(&delta.manifest);
                let file = File::open(&path).map_err(|e| Error::io("read", &path, e))?;
                Some(self.read_manifest(spec, delta, file, limit)?)
            }
            Delivery::Streamed => None,
        };
        let mut staged: Option<Journal> = None;
        while let Some(mut payload) = payloads.next_payload()? {
            let result = if payload.name == delta.manifest && manifest.is_none() {
                self.read_manifest(spec, delta, &mut payload, limit)
                    .map(|m| manifest = Some(m))
            } else if payload.name == delta.manifest && delivery != Delivery::Streamed {
                // Read from files/ above; the stored copy is the same file.
                io::copy(&mut payload, &mut io::sink())
                    .map(|_| ())
                    .map_err(|e| Error::io("read", files_dir.join(&delta.manifest), e))
            } else if payload.name == spec.archive && staged.is_none() {
                match &manifest {
                    Some(m) => self
                        .stage_delta_tree(
                            &Job {
                                artifact,
                                spec,
                                delta,
                                target: &target,
                                delivery,
                            },
                            m,
                            &mut payload,
                        )
                        .map(|j| staged = Some(j)),
                    None => Err(Error::Payloads(format!(
                        "payload {:?} came before the manifest {:?}; a delta's manifest comes first: \
                         rebuild the artifact with persistent-app-artifact-gen",
                        spec.archive, delta.manifest
                    ))),
                }
            } else {
                Err(Error::Payloads(format!(
                    "unexpected payload {:?}: the meta-data names only {:?} and {:?}; rebuild the artifact with persistent-app-artifact-gen",
                    payload.name, delta.manifest, spec.archive
                )))
            };
            if let Err(e) = result {
                payload.discard_rest();
                return Err(e);
            }
        }
        let Some(journal) = staged else {
            return Err(Error::Payloads(format!(
                "the artifact has no payload {:?}, which its meta-data names",
                spec.archive
            )));
        };
        Ok(journal)
    }

    fn read_manifest(
        &self,
        spec: &AppSpec,
        delta: &Delta,
        reader: impl Read,
        limit: u64,
    ) -> Result<CheckedManifest> {
        let mut bytes = Vec::new();
        reader
            .take(limit + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| {
                Error::Payloads(format!("cannot read payload {:?}: {e}", delta.manifest))
            })?;
        if bytes.len() as u64 > limit {
            return Err(Error::Payloads(format!(
                "payload {:?} is longer than the {limit} bytes a manifest of {} members can take; \
                 the artifact is inconsistent, rebuild it",
                delta.manifest, spec.entries
            )));
        }
        Manifest::parse(&bytes, spec.entries, spec.unpacked_size)
            .map_err(|e| Error::Payloads(format!("payload {:?}: {e}", delta.manifest)))
    }

    /// Checks the installed tree, then stages the new one: the files taken
    /// from it first (so the archive's hard links may point to them), then
    /// the archive.
    fn stage_delta_tree(
        &self,
        job: &Job<'_>,
        manifest: &CheckedManifest,
        archive: &mut dyn Read,
    ) -> Result<Journal> {
        let Job {
            artifact,
            spec,
            delta,
            target,
            delivery,
        } = *job;
        let refuse = |path: &str, why: &str| {
            Error::Refused(base_refusal(spec, delta, target, artifact, path, why))
        };
        let base = match target.open_parent()? {
            Some(parent) => parent
                .open_dir(Path::new(target.name(Slot::Dest)))
                .map_err(|e| refuse("", &describe_open_error(&e.source)))?,
            None => return Err(refuse("", "is missing")),
        };
        // The cheap checks, before anything is written.
        for f in manifest.from_base() {
            let from = f.base.as_deref().expect("from_base");
            let (dir, name) = match from.rsplit_once('/') {
                Some((dir, name)) => (base.open_dir(Path::new(dir)), name),
                None => (base.try_clone(), from),
            };
            let file = dir
                .and_then(|d| d.open_file(name))
                .map_err(|e| refuse(from, &describe_open_error(&e.source)))?;
            let meta = file
                .metadata()
                .map_err(|e| Error::io("inspect", target.dest.join(from), e))?;
            check_found(meta.is_file(), meta.len(), f.content).map_err(|why| refuse(from, &why))?;
        }
        self.check_space(
            target,
            spec.unpacked_size,
            spec.entries,
            &format!("payload {} and the installed files it reuses", spec.archive),
        )?;
        let (mut journal, mut extractor) = self.begin_staging(
            target,
            artifact,
            Expect {
                entries: Some(spec.entries),
                bytes: Some(spec.unpacked_size),
            },
        )?;
        extractor.expect_shipped(manifest.shipped());
        let (mut cloned, mut copied) = (0u64, 0u64);
        let taken: Vec<_> = manifest.from_base().collect();
        for f in taken.iter().take(READ_AHEAD) {
            read_ahead(&base, f.base.as_deref().expect("from_base"));
        }
        for (i, f) in taken.iter().enumerate() {
            if let Some(next) = taken.get(i + READ_AHEAD) {
                read_ahead(&base, next.base.as_deref().expect("from_base"));
            }
            let from = f.base.as_deref().expect("from_base");
            match extractor.add_base_file(&f.path, &base, from, f.content, f.mode, f.mtime) {
                Ok(Placed::Cloned) => cloned += 1,
                Ok(Placed::Copied) => copied += 1,
                Err(ArchiveError::Base { path, why }) => return Err(refuse(&path, &why)),
                Err(source) => {
                    return Err(Error::Archive {
                        payload: delta.manifest.clone(),
                        source,
                    })
                }
            }
        }
        crate::progress!(
            "{}: took {} files from the installed release {} ({cloned} cloned, {copied} copied), each matching the manifest",
            target.app,
            cloned + copied,
            delta.base_version
        );
        extractor
            .extract_tar(archive)
            .map_err(|source| Error::Archive {
                payload: spec.archive.clone(),
                source,
            })?;
        let summary = extractor.finish().map_err(|source| Error::Archive {
            payload: spec.archive.clone(),
            source,
        })?;
        crate::fault::point("before-staged");
        let from = match delivery {
            Delivery::Streamed => "from the client's stream",
            Delivery::Stored { .. } => "from the payloads the client stored under files/",
        };
        crate::progress!(
            "{}: staged {} ({} members, {} bytes) in {} {from} and the installed release {}",
            target.app,
            journal.artifact,
            summary.entries,
            summary.bytes,
            target.staging.display(),
            delta.base_version
        );
        journal.phase = crate::journal::Phase::Staged;
        self.journals.save(&journal)?;
        Ok(journal)
    }
}

/// What one delta's staging is about.
#[derive(Clone, Copy)]
struct Job<'a> {
    artifact: &'a str,
    spec: &'a AppSpec,
    delta: &'a Delta,
    target: &'a Target,
    delivery: Delivery,
}

/// The one line for a base file that is not what the delta expects.
fn base_refusal(
    spec: &AppSpec,
    delta: &Delta,
    target: &Target,
    artifact: &str,
    path: &str,
    why: &str,
) -> String {
    let shown: PathBuf = if path.is_empty() {
        target.dest.clone()
    } else {
        target.dest.join(path)
    };
    format!(
        "delta {artifact} refused: \"{}\" {why}, so the installed tree is not release {} of {} as its artifact \
         installed it (changed on the device?); nothing was changed: deploy the full artifact of this release instead",
        crate::archive::printable(&shown.to_string_lossy(), 300),
        delta.base_version,
        spec.name
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(size: u64, tag: u8) -> Content {
        Content {
            size,
            sha256: [tag; 32],
        }
    }

    #[test]
    fn only_a_regular_file_of_the_right_size_is_taken() {
        assert_eq!(check_found(true, 5, c(5, 1)), Ok(()));
        assert_eq!(
            check_found(false, 5, c(5, 1)).unwrap_err(),
            "is not a regular file"
        );
        assert_eq!(
            check_found(true, 4, c(5, 1)).unwrap_err(),
            "has 4 bytes, the release installed 5"
        );
    }

    #[test]
    fn filesystems_without_reflinks_fall_back_to_a_copy_and_real_errors_do_not() {
        for errno in [
            Errno::EOPNOTSUPP,
            Errno::ENOTTY,
            Errno::EXDEV,
            Errno::EINVAL,
            Errno::ENOSYS,
        ] {
            assert!(clone_unsupported(errno), "{errno}");
        }
        for errno in [Errno::EIO, Errno::ENOSPC, Errno::EBADF, Errno::EDQUOT] {
            assert!(!clone_unsupported(errno), "{errno}");
        }
    }

    #[test]
    fn mismatches_say_what_differs() {
        assert_eq!(
            describe_mismatch(c(4, 1), c(5, 1)),
            "has 4 bytes, the manifest says 5"
        );
        assert_eq!(
            describe_mismatch(c(5, 1), c(5, 2)),
            "has sha256 0101010101010101, the manifest says 0202020202020202"
        );
        let gone = io::Error::from_raw_os_error(Errno::ENOENT as i32);
        assert_eq!(describe_open_error(&gone), "is missing");
        let link = io::Error::from_raw_os_error(Errno::ELOOP as i32);
        assert!(describe_open_error(&link).starts_with("is a symlink"));
    }

    #[test]
    fn a_manifest_may_take_a_few_kilobytes_per_member_and_no_more() {
        assert_eq!(manifest_limit(0), 4096);
        assert_eq!(manifest_limit(10), 49_096);
        assert_eq!(manifest_limit(u64::MAX), u64::MAX);
    }
}
