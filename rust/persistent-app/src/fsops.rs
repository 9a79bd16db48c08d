//! The filesystem operations every state is built from. Each one is durable
//! when it returns: the data and the directory entry are synced, so the
//! journal written after it never describes something the disk lost.

use std::ffi::OsStr;
use std::fs::{self, File};
use std::io::{self, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use nix::errno::Errno;

use crate::error::{Error, Result};
use crate::fault;

/// What a path holds, without following a symlink at it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Absent,
    Dir,
    /// A file, symlink or anything else that is not a real directory.
    Other,
}

pub fn kind(path: &Path) -> Result<Kind> {
    match fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_dir() => Ok(Kind::Dir),
        Ok(_) => Ok(Kind::Other),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Kind::Absent),
        Err(e) => Err(Error::io("inspect", path, e)),
    }
}

fn parent(path: &Path) -> &Path {
    path.parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("/"))
}

pub fn fsync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| Error::io("sync directory", dir, e))
}

/// Replaces `path` with `bytes` so that a power cut leaves either the old or
/// the new content: temp file in the same directory, write, sync, rename, sync
/// the directory. Never truncates in place.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = parent(path);
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(path.file_name().unwrap_or(OsStr::new("file")));
    tmp_name.push(format!(".tmp-{}", std::process::id()));
    let tmp = dir.join(tmp_name);
    let result = (|| {
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o644)
            .custom_flags(nix::libc::O_NOFOLLOW)
            .open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        fs::rename(&tmp, path)
    })();
    if let Err(e) = result {
        let _ = fs::remove_file(&tmp);
        return Err(Error::io("write", path, e));
    }
    fsync_dir(dir)
}

/// Removes a file and syncs its directory; a missing file is fine.
pub fn remove_file_durable(path: &Path) -> Result<()> {
    match fs::remove_file(path) {
        Ok(()) => fsync_dir(parent(path)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io("remove", path, e)),
    }
}

/// Renames within one directory and syncs it.
pub fn rename(from: &Path, to: &Path) -> Result<()> {
    fs::rename(from, to).map_err(|e| {
        Error::io(
            "rename",
            from,
            io::Error::new(e.kind(), format!("to {}: {e}", to.display())),
        )
    })?;
    fault::point("rename");
    fsync_dir(parent(to))?;
    if parent(from) != parent(to) {
        fsync_dir(parent(from))?;
    }
    Ok(())
}

/// Outcome of [`exchange`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exchanged {
    Yes,
    /// The filesystem or kernel has no `RENAME_EXCHANGE` (EINVAL, ENOSYS);
    /// nothing was changed. The caller falls back to two plain renames,
    /// which are not atomic together: the journal covers the gap.
    Unsupported,
}

/// Swaps two directory entries in one atomic step and syncs their parent.
pub fn exchange(a: &Path, b: &Path) -> Result<Exchanged> {
    match renameat2_exchange(a, b) {
        Ok(()) => {}
        Err(Errno::EINVAL) | Err(Errno::ENOSYS) => return Ok(Exchanged::Unsupported),
        Err(e) => {
            return Err(Error::io(
                "exchange",
                a,
                io::Error::new(
                    io::Error::from(e).kind(),
                    format!("with {}: {e}", b.display()),
                ),
            ))
        }
    }
    fault::point("exchange");
    fsync_dir(parent(a))?;
    if parent(a) != parent(b) {
        fsync_dir(parent(b))?;
    }
    Ok(Exchanged::Yes)
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn renameat2_exchange(a: &Path, b: &Path) -> nix::Result<()> {
    use nix::fcntl::{renameat2, RenameFlags, AT_FDCWD};
    renameat2(AT_FDCWD, a, AT_FDCWD, b, RenameFlags::RENAME_EXCHANGE)
}

// nix wraps renameat2 for glibc only; other C libraries (musl in some Yocto
// distros) get the raw system call, which every kernel since 3.15 has.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn renameat2_exchange(a: &Path, b: &Path) -> nix::Result<()> {
    use nix::libc;
    use nix::NixPath;
    let res = a.with_nix_path(|a| {
        b.with_nix_path(|b| {
            // SAFETY: both pointers are NUL-terminated paths that live for
            // the duration of the call; the call reads nothing else.
            unsafe {
                libc::syscall(
                    libc::SYS_renameat2,
                    libc::AT_FDCWD,
                    a.as_ptr(),
                    libc::AT_FDCWD,
                    b.as_ptr(),
                    libc::RENAME_EXCHANGE,
                )
            }
        })
    })??;
    Errno::result(res).map(drop)
}

/// Deletes a tree without following any symlink in it. A missing path is
/// fine, so an interrupted removal can simply be run again.
pub fn remove_tree(path: &Path) -> Result<()> {
    match kind(path)? {
        Kind::Absent => return Ok(()),
        Kind::Other => {
            fs::remove_file(path).map_err(|e| Error::io("remove", path, e))?;
        }
        Kind::Dir => {
            remove_dir_contents(path)?;
            match fs::remove_dir(path) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => {
                    return Err(Error::io("remove", path, e))
                }
                _ => {}
            }
        }
    }
    fault::point("remove-tree");
    Ok(())
}

fn remove_dir_contents(dir: &Path) -> Result<()> {
    let entries = fs::read_dir(dir).map_err(|e| Error::io("list", dir, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| Error::io("list", dir, e))?;
        let path = entry.path();
        let is_dir = entry
            .file_type()
            .map_err(|e| Error::io("inspect", &path, e))?
            .is_dir();
        if is_dir {
            remove_dir_contents(&path)?;
            fs::remove_dir(&path).map_err(|e| Error::io("remove", &path, e))?;
        } else {
            fs::remove_file(&path).map_err(|e| Error::io("remove", &path, e))?;
        }
        fault::point("remove-entry");
    }
    Ok(())
}

/// Creates the directories from `root` down to `dir`, refusing any symlink or
/// non-directory below `root`: a symlink planted there must not carry an
/// install outside the allowed root. `root` itself belongs to the device owner
/// and may be anything that resolves to a directory.
pub fn ensure_dirs_below(root: &Path, dir: &Path) -> Result<()> {
    let rest = dir.strip_prefix(root).map_err(|_| {
        Error::Refused(format!("{} is not below {}", dir.display(), root.display()))
    })?;
    if !root.is_dir() {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(root)
            .map_err(|e| Error::io("create directory", root, e))?;
    }
    let mut current = root.to_path_buf();
    for component in rest.components() {
        current.push(component);
        match kind(&current)? {
            Kind::Dir => {}
            Kind::Other => {
                return Err(Error::Refused(format!(
                    "{} is a symlink or a file, not a directory; refusing to install through it",
                    current.display()
                )))
            }
            Kind::Absent => {
                fs::DirBuilder::new()
                    .mode(0o755)
                    .create(&current)
                    .map_err(|e| Error::io("create directory", &current, e))?;
                fsync_dir(parent(&current))?;
            }
        }
    }
    Ok(())
}

/// Checks that the existing part of the path from `root` to `path` holds no
/// symlink or file, without creating anything.
pub fn check_no_symlinks_below(root: &Path, path: &Path) -> Result<()> {
    let Ok(rest) = path.strip_prefix(root) else {
        return Ok(());
    };
    let mut current = root.to_path_buf();
    let components: Vec<_> = rest.components().collect();
    for (i, component) in components.iter().enumerate() {
        current.push(component);
        match kind(&current)? {
            Kind::Dir => {}
            Kind::Absent => return Ok(()),
            Kind::Other => {
                let what = if i + 1 == components.len() {
                    "the destination"
                } else {
                    "a directory on the way to the destination"
                };
                return Err(Error::Refused(format!(
                    "{} ({what}) is a symlink or a file, not a directory; refusing to install through it",
                    current.display()
                )));
            }
        }
    }
    Ok(())
}

/// Free bytes and inodes on the filesystem of the nearest existing ancestor
/// of `path`, not counting the blocks reserved for root.
pub fn free_space(path: &Path) -> Result<(PathBuf, u64, u64)> {
    let mut probe = path.to_path_buf();
    while kind(&probe)? == Kind::Absent {
        match probe.parent() {
            Some(p) => probe = p.to_path_buf(),
            None => break,
        }
    }
    let st = nix::sys::statvfs::statvfs(&probe)
        .map_err(|e| Error::io("query free space of", &probe, io::Error::from(e)))?;
    // Root may use the reserved blocks, but an app update that eats the
    // reserve leaves the device unable to log; count what users may use.
    let bytes = (st.blocks_available() as u64).saturating_mul(st.fragment_size() as u64);
    Ok((probe, bytes, st.files_available() as u64))
}

/// A sibling name: `/a/b` + (".", ".staging") → `/a/.b.staging`.
pub fn sibling(path: &Path, prefix: &str, suffix: &str) -> PathBuf {
    let name = path.file_name().unwrap_or(OsStr::new(""));
    let mut s = Vec::with_capacity(name.len() + prefix.len() + suffix.len());
    s.extend_from_slice(prefix.as_bytes());
    s.extend_from_slice(name.as_bytes());
    s.extend_from_slice(suffix.as_bytes());
    parent(path).join(OsStr::from_bytes(&s))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("pa-fsops-{}-{name}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn write_atomic_replaces_content_and_leaves_no_temp_file() {
        let d = scratch("atomic");
        let p = d.join("j.json");
        write_atomic(&p, b"one").unwrap();
        write_atomic(&p, b"two").unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"two");
        assert_eq!(fs::read_dir(&d).unwrap().count(), 1);
        fs::remove_dir_all(d).unwrap();
    }

    #[test]
    fn exchange_swaps_two_directories() {
        let d = scratch("exchange");
        fs::create_dir(d.join("a")).unwrap();
        fs::write(d.join("a/x"), "a").unwrap();
        fs::create_dir(d.join("b")).unwrap();
        fs::write(d.join("b/x"), "b").unwrap();
        match exchange(&d.join("a"), &d.join("b")).unwrap() {
            Exchanged::Yes => {
                assert_eq!(fs::read_to_string(d.join("a/x")).unwrap(), "b");
                assert_eq!(fs::read_to_string(d.join("b/x")).unwrap(), "a");
            }
            Exchanged::Unsupported => {
                assert_eq!(fs::read_to_string(d.join("a/x")).unwrap(), "a");
            }
        }
        fs::remove_dir_all(d).unwrap();
    }

    #[test]
    fn remove_tree_never_follows_symlinks_and_is_repeatable() {
        let d = scratch("remove");
        fs::create_dir_all(d.join("keep")).unwrap();
        fs::write(d.join("keep/precious"), "x").unwrap();
        fs::create_dir_all(d.join("t/sub")).unwrap();
        fs::write(d.join("t/sub/f"), "x").unwrap();
        symlink(d.join("keep"), d.join("t/link")).unwrap();
        symlink(d.join("keep"), d.join("t/sub/link2")).unwrap();
        remove_tree(&d.join("t")).unwrap();
        remove_tree(&d.join("t")).unwrap();
        assert!(!d.join("t").exists());
        assert!(d.join("keep/precious").exists());
        fs::remove_dir_all(d).unwrap();
    }

    #[test]
    fn ensure_dirs_refuses_symlinks_below_the_root() {
        let d = scratch("ensure");
        let root = d.join("apps");
        ensure_dirs_below(&root, &root.join("team/x")).unwrap();
        assert!(root.join("team/x").is_dir());
        fs::create_dir(d.join("elsewhere")).unwrap();
        symlink(d.join("elsewhere"), root.join("evil")).unwrap();
        let err = ensure_dirs_below(&root, &root.join("evil/x")).unwrap_err();
        assert!(err.to_string().contains("symlink or a file"), "{err}");
        let err = check_no_symlinks_below(&root, &root.join("evil")).unwrap_err();
        assert!(err.to_string().contains("(the destination)"), "{err}");
        check_no_symlinks_below(&root, &root.join("team/x/y/z")).unwrap();
        fs::remove_dir_all(d).unwrap();
    }

    #[test]
    fn siblings_are_hidden_names_in_the_same_directory() {
        assert_eq!(
            sibling(Path::new("/data/apps/demo"), ".", ".staging"),
            Path::new("/data/apps/.demo.staging")
        );
    }
}
