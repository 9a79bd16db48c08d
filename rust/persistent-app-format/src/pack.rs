//! Writing the app archive: the generator's side of the format (the device
//! only extracts, and never links this module).
//!
//! Deterministic: members sorted by path, parents before children, owner
//! 0:0 without names, mtimes clamped to `SOURCE_DATE_EPOCH` when given.
//! Hard links inside the sources stay hard links. The sources are streamed
//! into the archive, never held in memory.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::links;
use crate::spec::RELEASE_MARKER;
use crate::Summary;

#[derive(Debug, thiserror::Error)]
pub enum PackError {
    #[error("cannot {action} {}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{} would be installed as {} twice (also from {}); give each path once", second.display(), rel.display(), first.display())]
    Twice {
        rel: PathBuf,
        first: PathBuf,
        second: PathBuf,
    },
    #[error("{} is {kind}; only regular files, directories and symlinks can be packaged", path.display())]
    Unsupported { path: PathBuf, kind: &'static str },
    #[error("symlink {} points to {}, outside the app tree; only relative links inside the tree are allowed", path.display(), target.display())]
    SymlinkEscapes { path: PathBuf, target: PathBuf },
    #[error("{} would be installed as {RELEASE_MARKER}, a name reserved for the module", path.display())]
    Reserved { path: PathBuf },
    #[error("{} has no file name to install it under", path.display())]
    NoName { path: PathBuf },
}

type Result<T, E = PackError> = std::result::Result<T, E>;

fn io_err<'a>(action: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> PackError + 'a {
    move |source| PackError::Io {
        action,
        path: path.to_owned(),
        source,
    }
}

/// The members of an app tree: path below the destination → source path.
#[derive(Debug, Default)]
pub struct Packer {
    members: BTreeMap<PathBuf, Member>,
}

#[derive(Debug)]
struct Member {
    source: PathBuf,
    /// A path the user named is followed if it is a symlink; members found
    /// by walking a directory are packaged as what they are.
    follow: bool,
}

impl Packer {
    pub fn new() -> Packer {
        Packer::default()
    }

    /// A directory's contents land below the destination keeping their
    /// relative paths; a file (or a symlink to one) lands as its basename.
    pub fn add_source(&mut self, source: &Path) -> Result<()> {
        let meta = fs::metadata(source).map_err(io_err("read", source))?;
        if meta.is_dir() {
            self.walk(source, Path::new(""))
        } else {
            let name = source.file_name().ok_or_else(|| PackError::NoName {
                path: source.to_owned(),
            })?;
            self.insert(PathBuf::from(name), source.to_owned(), true)
        }
    }

    fn walk(&mut self, dir: &Path, rel: &Path) -> Result<()> {
        let mut entries = Vec::new();
        for entry in fs::read_dir(dir).map_err(io_err("list", dir))? {
            let entry = entry.map_err(io_err("list", dir))?;
            entries.push(entry);
        }
        entries.sort_by_key(|e| e.file_name());
        for entry in entries {
            let path = entry.path();
            let child = rel.join(entry.file_name());
            self.insert(child.clone(), path.clone(), false)?;
            // The walk does not follow symlinks: a linked directory is
            // packaged as the link.
            if entry
                .file_type()
                .map_err(io_err("inspect", &path))?
                .is_dir()
            {
                self.walk(&path, &child)?;
            }
        }
        Ok(())
    }

    fn insert(&mut self, rel: PathBuf, source: PathBuf, follow: bool) -> Result<()> {
        if rel.as_os_str() == RELEASE_MARKER {
            return Err(PackError::Reserved { path: source });
        }
        if let Some(Member { source: first, .. }) = self.members.get(&rel) {
            // The same directory from two sources merges; anything else clashes.
            let both_dirs = fs::metadata(first).map(|m| m.is_dir()).unwrap_or(false)
                && fs::symlink_metadata(&source)
                    .map(|m| m.is_dir())
                    .unwrap_or(false);
            if !both_dirs {
                return Err(PackError::Twice {
                    rel,
                    first: first.clone(),
                    second: source,
                });
            }
            return Ok(());
        }
        self.members.insert(rel, Member { source, follow });
        Ok(())
    }

    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// Writes the tar to `out`; `clamp` caps every mtime (SOURCE_DATE_EPOCH).
    /// `progress` is called after each member with the bytes written so far.
    pub fn write<W: Write>(
        &self,
        out: W,
        clamp: Option<u64>,
        progress: impl FnMut(u64),
    ) -> Result<(W, Summary)> {
        self.write_except(out, clamp, &HashSet::new(), progress)
    }

    /// The regular files the archive holds with content (a hard link's
    /// first path only), in archive order, with the mode and mtime their
    /// members get: what a delta's manifest lists.
    pub fn regular_files(&self, clamp: Option<u64>) -> Result<Vec<RegularFile>> {
        let mut out = Vec::new();
        let mut seen_inodes = HashSet::new();
        for (rel, member) in &self.members {
            let meta = member.metadata()?;
            if !meta.file_type().is_file() {
                continue;
            }
            if meta.nlink() > 1 && !seen_inodes.insert((meta.dev(), meta.ino())) {
                continue;
            }
            let mtime = meta.mtime().max(0) as u64;
            out.push(RegularFile {
                rel: rel.clone(),
                source: member.source.clone(),
                size: meta.len(),
                mode: meta.mode() & 0o7777,
                mtime: clamp.map_or(mtime, |c| mtime.min(c)),
            });
        }
        Ok(out)
    }

    /// [`Packer::write`] without the content of the regular files in
    /// `omit` (a delta's files taken from the device's tree): no member for
    /// them, but a hard link to one still refers to it, and the summary
    /// counts them, so it describes the whole tree as in a full archive.
    pub fn write_except<W: Write>(
        &self,
        out: W,
        clamp: Option<u64>,
        omit: &HashSet<PathBuf>,
        mut progress: impl FnMut(u64),
    ) -> Result<(W, Summary)> {
        let mut builder = tar::Builder::new(out);
        let mut summary = Summary::default();
        let mut first_of_inode: HashMap<(u64, u64), PathBuf> = HashMap::new();
        for (rel, member) in &self.members {
            let source = &member.source;
            let meta = member.metadata()?;
            let mut header = tar::Header::new_gnu();
            header.set_uid(0);
            header.set_gid(0);
            header.set_mode(meta.mode() & 0o7777);
            let mtime = meta.mtime().max(0) as u64;
            header.set_mtime(clamp.map_or(mtime, |c| mtime.min(c)));
            let ft = meta.file_type();
            let write_err = io_err("write the archive member for", source);
            if ft.is_dir() {
                header.set_entry_type(tar::EntryType::Directory);
                header.set_size(0);
                builder
                    .append_data(&mut header, rel, io::empty())
                    .map_err(write_err)?;
            } else if ft.is_file() {
                let key = (meta.dev(), meta.ino());
                if meta.nlink() > 1 {
                    if let Some(first) = first_of_inode.get(&key) {
                        header.set_entry_type(tar::EntryType::Link);
                        header.set_size(0);
                        builder
                            .append_link(&mut header, rel, first)
                            .map_err(write_err)?;
                        summary.entries += 1;
                        continue;
                    }
                    first_of_inode.insert(key, rel.clone());
                }
                if omit.contains(rel) {
                    summary.entries += 1;
                    summary.bytes += meta.len();
                    progress(summary.bytes);
                    continue;
                }
                header.set_entry_type(tar::EntryType::Regular);
                header.set_size(meta.len());
                let file = File::open(source).map_err(io_err("read", source))?;
                // A file that changes size while being packed would corrupt
                // the archive: read exactly the announced length.
                let mut reader = ExactLen {
                    inner: file.take(meta.len()),
                    left: meta.len(),
                    path: source,
                };
                builder
                    .append_data(&mut header, rel, &mut reader)
                    .map_err(write_err)?;
                summary.bytes += meta.len();
            } else if ft.is_symlink() {
                let target = fs::read_link(source).map_err(io_err("read the symlink", source))?;
                if !links::stays_inside(rel, &target) {
                    return Err(PackError::SymlinkEscapes {
                        path: source.clone(),
                        target,
                    });
                }
                header.set_entry_type(tar::EntryType::Symlink);
                header.set_size(0);
                builder
                    .append_link(&mut header, rel, &target)
                    .map_err(write_err)?;
            } else {
                use std::os::unix::fs::FileTypeExt;
                let kind = if ft.is_fifo() {
                    "a FIFO"
                } else if ft.is_socket() {
                    "a socket"
                } else {
                    "a device node"
                };
                return Err(PackError::Unsupported {
                    path: source.clone(),
                    kind,
                });
            }
            summary.entries += 1;
            progress(summary.bytes);
        }
        let out = builder
            .into_inner()
            .map_err(io_err("finish the archive", Path::new("(archive)")))?;
        Ok((out, summary))
    }
}

impl Member {
    fn metadata(&self) -> Result<fs::Metadata> {
        if self.follow {
            fs::metadata(&self.source)
        } else {
            fs::symlink_metadata(&self.source)
        }
        .map_err(io_err("inspect", &self.source))
    }
}

/// A regular file of the tree, as [`Packer::regular_files`] lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegularFile {
    /// The path below the destination.
    pub rel: PathBuf,
    /// Where the generator reads it.
    pub source: PathBuf,
    pub size: u64,
    pub mode: u32,
    /// Clamped as in the archive.
    pub mtime: u64,
}

struct ExactLen<'a, R> {
    inner: R,
    left: u64,
    path: &'a Path,
}

impl<R: Read> Read for ExactLen<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n == 0 && self.left > 0 && !buf.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("{} shrank while being packed", self.path.display()),
            ));
        }
        self.left -= n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    struct Scratch(PathBuf);

    impl Scratch {
        fn new(name: &str) -> Scratch {
            let dir = std::env::temp_dir().join(format!("pa-pack-{}-{name}", std::process::id()));
            let _ = fs::remove_dir_all(&dir);
            fs::create_dir_all(&dir).unwrap();
            Scratch(dir)
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    fn names(tar: &[u8]) -> Vec<(String, tar::EntryType, u64)> {
        tar::Archive::new(tar)
            .entries()
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                let h = e.header();
                (
                    e.path().unwrap().display().to_string(),
                    h.entry_type(),
                    h.mtime().unwrap(),
                )
            })
            .collect()
    }

    #[test]
    fn directories_merge_files_land_by_name_and_members_come_sorted() {
        let s = Scratch::new("merge");
        fs::create_dir_all(s.0.join("a/etc")).unwrap();
        fs::write(s.0.join("a/etc/x"), "x").unwrap();
        fs::write(s.0.join("a/z"), "z").unwrap();
        fs::create_dir_all(s.0.join("b/etc")).unwrap();
        fs::write(s.0.join("b/etc/y"), "yy").unwrap();
        fs::write(s.0.join("loose.bin"), "l").unwrap();
        fs::hard_link(s.0.join("a/z"), s.0.join("a/z2")).unwrap();
        let mut p = Packer::new();
        for src in ["b", "loose.bin", "a"] {
            p.add_source(&s.0.join(src)).unwrap();
        }
        let (tar, summary) = p.write(Vec::new(), Some(1000), |_| {}).unwrap();
        let got: Vec<String> = names(&tar).iter().map(|n| n.0.clone()).collect();
        assert_eq!(got, ["etc", "etc/x", "etc/y", "loose.bin", "z", "z2"]);
        assert!(names(&tar).iter().all(|n| n.2 == 1000), "mtimes clamped");
        assert_eq!(names(&tar)[5].1, tar::EntryType::Link);
        assert_eq!(
            summary,
            Summary {
                entries: 6,
                bytes: 5
            }
        );
    }

    #[test]
    fn clashes_escaping_links_special_files_and_the_marker_are_refused() {
        let s = Scratch::new("refuse");
        fs::create_dir_all(s.0.join("a")).unwrap();
        fs::write(s.0.join("a/f"), "1").unwrap();
        fs::create_dir_all(s.0.join("b")).unwrap();
        fs::write(s.0.join("b/f"), "2").unwrap();
        let mut p = Packer::new();
        p.add_source(&s.0.join("a")).unwrap();
        let err = p.add_source(&s.0.join("b")).unwrap_err().to_string();
        assert!(err.contains("would be installed as f twice"), "{err}");

        fs::create_dir_all(s.0.join("c")).unwrap();
        symlink("../../x", s.0.join("c/l")).unwrap();
        let mut p = Packer::new();
        p.add_source(&s.0.join("c")).unwrap();
        let err = p.write(Vec::new(), None, |_| {}).unwrap_err().to_string();
        assert!(err.contains("outside the app tree"), "{err}");

        fs::create_dir_all(s.0.join("d")).unwrap();
        nix::unistd::mkfifo(
            &s.0.join("d/fifo"),
            nix::sys::stat::Mode::from_bits_truncate(0o600),
        )
        .unwrap();
        let mut p = Packer::new();
        p.add_source(&s.0.join("d")).unwrap();
        let err = p.write(Vec::new(), None, |_| {}).unwrap_err().to_string();
        assert!(err.contains("is a FIFO"), "{err}");

        fs::write(s.0.join(RELEASE_MARKER), "").unwrap();
        let err = Packer::new()
            .add_source(&s.0.join(RELEASE_MARKER))
            .unwrap_err()
            .to_string();
        assert!(err.contains("reserved"), "{err}");
    }
}
