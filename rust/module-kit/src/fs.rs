//! Durable file operations relative to a directory held open by its file
//! descriptor ([`Dir`]).
//!
//! A module checks a destination once and then works on it in later states,
//! in fresh processes, while the app it updates keeps running. Paths resolved
//! again in each state can be redirected in between (a parent directory
//! replaced by a symlink), so every operation here is relative to a `Dir`,
//! and opening a `Dir` below another never follows a symlink and never leaves
//! it: `openat2` with `RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS` where the kernel
//! has it (5.6+), else a walk that opens one component at a time with
//! `O_NOFOLLOW`. Names are single components; `..` is refused.
//!
//! Each operation is durable when it returns (data and directory entries
//! synced), so a journal written after it never describes something the disk
//! lost. [`Dir::remove_tree`] holds two descriptors at most, whatever the
//! depth, so a tree deeper than `PATH_MAX` is removed like any other.
//! The exceptions build a whole tree that is made durable once at the end
//! ([`Dir::syncfs`] or a [`Dir::sync`] per directory): [`Dir::create_file`],
//! [`Dir::mkdir_unsynced`], [`Dir::symlink`], [`Dir::hard_link`] and the
//! mode and time setters.

use std::ffi::{OsStr, OsString};
use std::fmt;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{openat, AtFlags, OFlag};
use nix::sys::stat::{fstat, fstatat, mkdirat, FileStat, Mode, SFlag, UtimensatFlags};
use nix::sys::time::TimeSpec;
use nix::unistd::{unlinkat, UnlinkatFlags};

use crate::fault;

/// A failed file operation: what was done, on which path, and why.
#[derive(Debug)]
pub struct Error {
    pub action: &'static str,
    pub path: PathBuf,
    pub source: io::Error,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "cannot {} {}: {}",
            self.action,
            self.path.display(),
            self.source
        )
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.source)
    }
}

pub type Result<T> = std::result::Result<T, Error>;

fn err(action: &'static str, path: PathBuf, source: impl Into<io::Error>) -> Error {
    Error {
        action,
        path,
        source: source.into(),
    }
}

/// What a name holds, without following a symlink at it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Absent,
    Dir,
    /// A regular file.
    File,
    /// A symlink, device, FIFO or socket: never something to write through.
    Other,
}

/// A directory's identity: it stays the same across renames and exchanges,
/// so a journal can tell which tree is where after a crash.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct Identity {
    pub dev: u64,
    pub ino: u64,
}

impl Identity {
    // dev_t and ino_t are narrower than u64 on some 32-bit targets.
    #[allow(clippy::unnecessary_cast)]
    fn of(st: &FileStat) -> Identity {
        Identity {
            dev: st.st_dev as u64,
            ino: st.st_ino as u64,
        }
    }
}

/// Outcome of [`Dir::exchange`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exchanged {
    Yes,
    /// The filesystem or kernel has no `RENAME_EXCHANGE` (EINVAL, ENOSYS);
    /// nothing was changed. The caller falls back to two plain renames,
    /// which are not atomic together: its journal covers the gap.
    Unsupported,
}

/// A directory held open; see the module documentation.
#[derive(Debug)]
pub struct Dir {
    fd: OwnedFd,
    /// For messages only: never resolved again.
    path: PathBuf,
}

const DIR_FLAGS: OFlag = OFlag::O_RDONLY
    .union(OFlag::O_DIRECTORY)
    .union(OFlag::O_CLOEXEC)
    .union(OFlag::O_NOFOLLOW);

impl Dir {
    /// Opens `path` as the anchor of later operations. The path itself is
    /// the device owner's (a configured root, the module's state dir) and is
    /// resolved normally, symlinks included.
    pub fn open(path: &Path) -> Result<Dir> {
        let fd = nix::fcntl::open(
            path,
            OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| err("open directory", path.to_owned(), e))?;
        Ok(Dir {
            fd,
            path: path.to_owned(),
        })
    }

    /// Like [`Dir::open`], creating the missing directories (mode 0755,
    /// symlinks followed: the path is the owner's configuration).
    pub fn open_or_create(path: &Path) -> Result<Dir> {
        if !path.is_dir() {
            std::fs::DirBuilder::new()
                .recursive(true)
                .create(path)
                .map_err(|e| err("create directory", path.to_owned(), e))?;
            if let Some(parent) = path.parent() {
                if let Ok(p) = Dir::open(parent) {
                    p.sync()?;
                }
            }
        }
        Dir::open(path)
    }

    /// The path this directory was reached by, for messages.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// `self`'s path joined with `name`, for messages.
    pub fn display(&self, name: impl AsRef<Path>) -> PathBuf {
        self.path.join(name)
    }

    pub fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    pub fn try_clone(&self) -> Result<Dir> {
        Ok(Dir {
            fd: self
                .fd
                .try_clone()
                .map_err(|e| err("duplicate the descriptor of", self.path.clone(), e))?,
            path: self.path.clone(),
        })
    }

    pub fn identity(&self) -> Result<Identity> {
        fstat(&self.fd)
            .map(|st| Identity::of(&st))
            .map_err(|e| err("inspect", self.path.clone(), e))
    }

    /// Opens the directory at `rel` below this one: no symlink anywhere on
    /// the way, no `..`, never outside.
    pub fn open_dir(&self, rel: &Path) -> Result<Dir> {
        let names = components(rel).map_err(|e| err("open directory", self.display(rel), e))?;
        if names.is_empty() {
            return self.try_clone();
        }
        let fd = open_beneath(self.as_fd(), rel, &names)
            .map_err(|e| err("open directory", self.display(rel), e))?;
        Ok(Dir {
            fd,
            path: self.display(rel),
        })
    }

    /// Opens `rel` below this one, creating each missing directory (mode
    /// 0755, its parent synced); an existing symlink or file on the way is
    /// refused, never followed.
    pub fn create_dirs(&self, rel: &Path) -> Result<Dir> {
        let names = components(rel).map_err(|e| err("create directory", self.display(rel), e))?;
        let mut current = self.try_clone()?;
        for name in names {
            match current.kind(&name)? {
                Kind::Dir => {}
                Kind::Absent => current.mkdir(&name, 0o755)?,
                Kind::File | Kind::Other => {
                    return Err(err(
                        "create directory",
                        current.display(&name),
                        io::Error::new(
                            io::ErrorKind::AlreadyExists,
                            "a symlink or file is in the way; refusing to go through it",
                        ),
                    ))
                }
            }
            current = current.open_dir(Path::new(&name))?;
        }
        Ok(current)
    }

    fn stat(&self, name: &OsStr) -> Result<Option<FileStat>> {
        check_name(name).map_err(|e| err("inspect", self.display(name), e))?;
        match fstatat(&self.fd, name, AtFlags::AT_SYMLINK_NOFOLLOW) {
            Ok(st) => Ok(Some(st)),
            Err(Errno::ENOENT) => Ok(None),
            Err(e) => Err(err("inspect", self.display(name), e)),
        }
    }

    /// What `name` is, without following a symlink.
    pub fn kind(&self, name: impl AsRef<OsStr>) -> Result<Kind> {
        let name = name.as_ref();
        Ok(match self.stat(name)? {
            None => Kind::Absent,
            Some(st) => match SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT {
                SFlag::S_IFDIR => Kind::Dir,
                SFlag::S_IFREG => Kind::File,
                _ => Kind::Other,
            },
        })
    }

    /// The identity of the directory `name` (None when absent or not a
    /// directory).
    pub fn dir_identity(&self, name: impl AsRef<OsStr>) -> Result<Option<Identity>> {
        let name = name.as_ref();
        Ok(self.stat(name)?.and_then(|st| {
            (SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == SFlag::S_IFDIR)
                .then(|| Identity::of(&st))
        }))
    }

    /// Creates the directory `name` and syncs this one.
    pub fn mkdir(&self, name: impl AsRef<OsStr>, mode: u32) -> Result<()> {
        let name = name.as_ref();
        check_name(name).map_err(|e| err("create directory", self.display(name), e))?;
        mkdirat(&self.fd, name, Mode::from_bits_truncate(mode))
            .map_err(|e| err("create directory", self.display(name), e))?;
        self.sync()
    }

    /// Creates the directory `name` without syncing this one; for a tree
    /// that is synced as a whole when it is complete.
    pub fn mkdir_unsynced(&self, name: impl AsRef<OsStr>, mode: u32) -> Result<()> {
        let name = name.as_ref();
        check_name(name).map_err(|e| err("create directory", self.display(name), e))?;
        mkdirat(&self.fd, name, Mode::from_bits_truncate(mode))
            .map_err(|e| err("create directory", self.display(name), e))
    }

    /// Creates the symlink `name` pointing to `target` (stored as given,
    /// never resolved here). Not synced.
    pub fn symlink(&self, target: &Path, name: impl AsRef<OsStr>) -> Result<()> {
        let name = name.as_ref();
        check_name(name).map_err(|e| err("create symlink", self.display(name), e))?;
        nix::unistd::symlinkat(target, &self.fd, name)
            .map_err(|e| err("create symlink", self.display(name), e))
    }

    /// Creates `name` as a hard link to the entry `target` of `target_dir`
    /// (a symlink there is linked, not followed). Not synced.
    pub fn hard_link(
        &self,
        target_dir: &Dir,
        target: &OsStr,
        name: impl AsRef<OsStr>,
    ) -> Result<()> {
        let name = name.as_ref();
        check_name(name).map_err(|e| err("create hard link", self.display(name), e))?;
        check_name(target).map_err(|e| err("create hard link", target_dir.display(target), e))?;
        nix::unistd::linkat(&target_dir.fd, target, &self.fd, name, AtFlags::empty())
            .map_err(|e| err("create hard link", self.display(name), e))
    }

    /// Sets this directory's own mode (permission bits and sticky bit).
    pub fn set_mode(&self, mode: u32) -> Result<()> {
        nix::sys::stat::fchmod(&self.fd, Mode::from_bits_truncate(mode))
            .map_err(|e| err("set mode of", self.path.clone(), e))
    }

    /// Sets this directory's own access and modification times.
    pub fn set_times(&self, time: &TimeSpec) -> Result<()> {
        nix::sys::stat::futimens(&self.fd, time, time)
            .map_err(|e| err("set mtime of", self.path.clone(), e))
    }

    /// Sets the times of the entry `name` itself: a symlink's own, never its
    /// target's.
    pub fn set_entry_times(&self, name: impl AsRef<OsStr>, time: &TimeSpec) -> Result<()> {
        let name = name.as_ref();
        check_name(name).map_err(|e| err("set mtime of", self.display(name), e))?;
        nix::sys::stat::utimensat(&self.fd, name, time, time, UtimensatFlags::NoFollowSymlink)
            .map_err(|e| err("set mtime of", self.display(name), e))
    }

    /// Opens the regular file `name` for reading (a symlink is refused).
    pub fn open_file(&self, name: impl AsRef<OsStr>) -> Result<File> {
        let name = name.as_ref();
        check_name(name).map_err(|e| err("open", self.display(name), e))?;
        let fd = openat(
            &self.fd,
            name,
            OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| err("open", self.display(name), e))?;
        Ok(File::from(fd))
    }

    /// Creates the new regular file `name` (it must not exist; a symlink
    /// there is not followed) for writing.
    pub fn create_file(&self, name: impl AsRef<OsStr>, mode: u32) -> Result<File> {
        let name = name.as_ref();
        check_name(name).map_err(|e| err("create", self.display(name), e))?;
        let fd = openat(
            &self.fd,
            name,
            OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::from_bits_truncate(mode),
        )
        .map_err(|e| err("create", self.display(name), e))?;
        Ok(File::from(fd))
    }

    /// The content of the regular file `name`, None when it does not exist.
    /// Refuses files larger than `max` bytes.
    pub fn read(&self, name: impl AsRef<OsStr>, max: u64) -> Result<Option<Vec<u8>>> {
        let name = name.as_ref();
        let file = match self.open_file(name) {
            Ok(f) => f,
            Err(e) if e.source.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        let mut data = Vec::new();
        file.take(max + 1)
            .read_to_end(&mut data)
            .map_err(|e| err("read", self.display(name), e))?;
        if data.len() as u64 > max {
            return Err(err(
                "read",
                self.display(name),
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("larger than {max} bytes"),
                ),
            ));
        }
        Ok(Some(data))
    }

    /// Replaces `name` with `bytes` so that a power cut leaves the old or the
    /// new content: a temporary file beside it, written and synced, renamed
    /// over it, this directory synced. Never truncates in place, never
    /// follows a symlink, removes the temporary file when anything fails.
    pub fn write_atomic(&self, name: impl AsRef<OsStr>, bytes: &[u8], mode: u32) -> Result<()> {
        let name = name.as_ref();
        check_name(name).map_err(|e| err("write", self.display(name), e))?;
        let tmp = temp_name(name);
        let _ = unlinkat(&self.fd, tmp.as_os_str(), UnlinkatFlags::NoRemoveDir);
        let result = (|| -> Result<()> {
            let mut f = self.create_file(&tmp, mode)?;
            f.write_all(bytes)
                .and_then(|()| f.sync_all())
                .map_err(|e| err("write", self.display(&tmp), e))?;
            self.rename(&tmp, name)
        })();
        if let Err(e) = result {
            let _ = unlinkat(&self.fd, tmp.as_os_str(), UnlinkatFlags::NoRemoveDir);
            return Err(Error {
                action: "write",
                path: self.display(name),
                source: e.source,
            });
        }
        Ok(())
    }

    /// Writes `bytes` into the existing regular file `spare` (no new blocks
    /// needed while it is at least as large), then renames it over `name`:
    /// how a journal is updated on a full disk. See [`crate::state_file`].
    pub fn write_over_spare(&self, spare: &OsStr, name: &OsStr, bytes: &[u8]) -> Result<()> {
        check_name(spare).map_err(|e| err("write", self.display(spare), e))?;
        let fd = openat(
            &self.fd,
            spare,
            OFlag::O_WRONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| err("open", self.display(spare), e))?;
        let mut f = File::from(fd);
        f.write_all(bytes)
            .and_then(|()| f.set_len(bytes.len() as u64))
            .and_then(|()| f.sync_all())
            .map_err(|e| err("write", self.display(spare), e))?;
        self.rename(spare, name)
    }

    /// Creates (or grows) the regular file `name` to `len` bytes of real
    /// blocks, written and synced: space set aside for later writes.
    pub fn reserve(&self, name: impl AsRef<OsStr>, len: u64) -> Result<()> {
        let name = name.as_ref();
        check_name(name).map_err(|e| err("reserve", self.display(name), e))?;
        let fd = openat(
            &self.fd,
            name,
            OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::from_bits_truncate(0o600),
        )
        .map_err(|e| err("reserve", self.display(name), e))?;
        let mut f = File::from(fd);
        // Zeros written, not a sparse length: the blocks must really be ours.
        let zeros = vec![0u8; len as usize];
        f.write_all(&zeros)
            .and_then(|()| f.sync_all())
            .map_err(|e| err("reserve", self.display(name), e))?;
        self.sync()
    }

    /// Removes the file or symlink `name` and syncs; a missing one is fine.
    pub fn remove_file(&self, name: impl AsRef<OsStr>) -> Result<()> {
        let name = name.as_ref();
        check_name(name).map_err(|e| err("remove", self.display(name), e))?;
        match unlinkat(&self.fd, name, UnlinkatFlags::NoRemoveDir) {
            Ok(()) => self.sync(),
            Err(Errno::ENOENT) => Ok(()),
            Err(e) => Err(err("remove", self.display(name), e)),
        }
    }

    /// Renames `from` to `to` within this directory and syncs it.
    pub fn rename(&self, from: impl AsRef<OsStr>, to: impl AsRef<OsStr>) -> Result<()> {
        let (from, to) = (from.as_ref(), to.as_ref());
        check_name(from).map_err(|e| err("rename", self.display(from), e))?;
        check_name(to).map_err(|e| err("rename", self.display(to), e))?;
        nix::fcntl::renameat(&self.fd, from, &self.fd, to).map_err(|e| {
            err(
                "rename",
                self.display(from),
                io::Error::new(
                    io::Error::from(e).kind(),
                    format!("to {}: {e}", self.display(to).display()),
                ),
            )
        })?;
        fault::point("rename");
        self.sync()
    }

    /// Swaps the entries `a` and `b` of this directory in one atomic step
    /// and syncs it.
    pub fn exchange(&self, a: impl AsRef<OsStr>, b: impl AsRef<OsStr>) -> Result<Exchanged> {
        let (a, b) = (a.as_ref(), b.as_ref());
        check_name(a).map_err(|e| err("exchange", self.display(a), e))?;
        check_name(b).map_err(|e| err("exchange", self.display(b), e))?;
        if fault::exchange_disabled() {
            return Ok(Exchanged::Unsupported);
        }
        match renameat2_exchange(self.as_fd(), a, b) {
            Ok(()) => {}
            Err(Errno::EINVAL) | Err(Errno::ENOSYS) => return Ok(Exchanged::Unsupported),
            Err(e) => {
                return Err(err(
                    "exchange",
                    self.display(a),
                    io::Error::new(
                        io::Error::from(e).kind(),
                        format!("with {}: {e}", self.display(b).display()),
                    ),
                ))
            }
        }
        fault::point("exchange");
        self.sync()?;
        Ok(Exchanged::Yes)
    }

    /// Deletes `name` and everything below it without following a symlink;
    /// a missing name is fine, so an interrupted removal can simply run
    /// again. At most two descriptors are open at any depth; a directory
    /// moved away while it is being emptied stops the removal with an error.
    pub fn remove_tree(&self, name: impl AsRef<OsStr>) -> Result<()> {
        let name = name.as_ref();
        match self.kind(name)? {
            Kind::Absent => return Ok(()),
            Kind::File | Kind::Other => {
                unlinkat(&self.fd, name, UnlinkatFlags::NoRemoveDir)
                    .or_else(|e| if e == Errno::ENOENT { Ok(()) } else { Err(e) })
                    .map_err(|e| err("remove", self.display(name), e))?;
            }
            Kind::Dir => self.remove_dir_tree(name)?,
        }
        self.sync()?;
        fault::point("remove-tree");
        Ok(())
    }

    fn remove_dir_tree(&self, top: &OsStr) -> Result<()> {
        let shown = || self.display(top);
        // The names from `top` down to the directory `cur`, and the identity
        // of each directory above `cur`, to check every step back up.
        let mut names: Vec<OsString> = vec![top.to_owned()];
        let mut parents: Vec<Identity> = vec![self.identity()?];
        let mut cur =
            open_child_dir(self.as_fd(), top).map_err(|e| err("open directory", shown(), e))?;
        loop {
            match first_entry(&cur).map_err(|e| err("list", shown(), e))? {
                Some((entry, true)) => {
                    let child = match open_child_dir(cur.as_fd(), &entry) {
                        Ok(fd) => fd,
                        // Removed or replaced since it was listed: look again.
                        Err(Errno::ENOENT) | Err(Errno::ENOTDIR) | Err(Errno::ELOOP) => continue,
                        Err(e) => return Err(err("open directory", shown(), e)),
                    };
                    parents.push(Identity::of(
                        &fstat(&cur).map_err(|e| err("inspect", shown(), e))?,
                    ));
                    names.push(entry);
                    cur = child;
                }
                Some((entry, false)) => {
                    match unlinkat(&cur, entry.as_os_str(), UnlinkatFlags::NoRemoveDir) {
                        Ok(()) | Err(Errno::ENOENT) => {}
                        Err(e) => return Err(err("remove an entry below", shown(), e)),
                    }
                    fault::point("remove-entry");
                }
                None => {
                    let own = names.pop().expect("a name per level");
                    let expected = parents.pop().expect("a parent per level");
                    let parent = if names.is_empty() {
                        self.fd
                            .try_clone()
                            .map_err(|e| err("open directory", shown(), e))?
                    } else {
                        open_child_dir(cur.as_fd(), OsStr::new(".."))
                            .map_err(|e| err("open directory", shown(), e))?
                    };
                    let got =
                        Identity::of(&fstat(&parent).map_err(|e| err("inspect", shown(), e))?);
                    if got != expected {
                        return Err(err(
                            "remove",
                            shown(),
                            io::Error::other(
                                "a directory in it was moved elsewhere while it was being removed; run the state again",
                            ),
                        ));
                    }
                    match unlinkat(&parent, own.as_os_str(), UnlinkatFlags::RemoveDir) {
                        Ok(()) | Err(Errno::ENOENT) => {}
                        Err(e) => return Err(err("remove", shown(), e)),
                    }
                    fault::point("remove-entry");
                    if names.is_empty() {
                        return Ok(());
                    }
                    cur = parent;
                }
            }
        }
    }

    /// Syncs this directory (its entries).
    pub fn sync(&self) -> Result<()> {
        nix::unistd::fsync(&self.fd).map_err(|e| err("sync directory", self.path.clone(), e))
    }

    /// Syncs the whole filesystem this directory is on (one call instead of
    /// an fsync per file after writing a tree).
    pub fn syncfs(&self) -> Result<()> {
        nix::unistd::syncfs(&self.fd)
            .map_err(|e| err("sync the filesystem of", self.path.clone(), e))
    }

    /// Bytes and inodes an unprivileged user may still take on this
    /// directory's filesystem (the root reserve is not counted: an update
    /// that eats it leaves the device unable to log).
    pub fn free_space(&self) -> Result<(u64, u64)> {
        let st = nix::sys::statvfs::fstatvfs(&self.fd)
            .map_err(|e| err("query free space of", self.path.clone(), e))?;
        Ok((
            (st.blocks_available() as u64).saturating_mul(st.fragment_size() as u64),
            st.files_available() as u64,
        ))
    }

    /// Names in this directory (without `.` and `..`), sorted.
    pub fn list(&self) -> Result<Vec<OsString>> {
        let mut d = nix::dir::Dir::from_fd(
            self.fd
                .try_clone()
                .map_err(|e| err("list", self.path.clone(), e))?,
        )
        .map_err(|e| err("list", self.path.clone(), e))?;
        let mut names = Vec::new();
        for entry in d.iter() {
            let entry = entry.map_err(|e| err("list", self.path.clone(), e))?;
            let name = OsStr::from_bytes(entry.file_name().to_bytes());
            if name != "." && name != ".." {
                names.push(name.to_owned());
            }
        }
        names.sort();
        Ok(names)
    }
}

impl AsFd for Dir {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// `.NAME.tmp-PID`: hidden, and not taken by another process writing the
/// same file at the same time.
fn temp_name(name: &OsStr) -> OsString {
    let mut tmp = OsString::from(".");
    tmp.push(name);
    tmp.push(format!(".tmp-{}", std::process::id()));
    tmp
}

/// A single path component: not empty, no `/`, not `.` or `..`.
fn check_name(name: &OsStr) -> io::Result<()> {
    let b = name.as_bytes();
    if b.is_empty() || b.contains(&b'/') || b == b"." || b == b".." || b.contains(&0) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "not a single file name",
        ));
    }
    Ok(())
}

/// The normal components of a relative path; `..`, absolute paths and
/// prefixes are refused (`.` is skipped).
fn components(rel: &Path) -> io::Result<Vec<OsString>> {
    let mut out = Vec::new();
    for c in rel.components() {
        match c {
            Component::Normal(n) => out.push(n.to_owned()),
            Component::CurDir => {}
            _ => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "only a relative path without `..` stays below the directory",
                ))
            }
        }
    }
    Ok(out)
}

fn open_child_dir(dir: BorrowedFd<'_>, name: &OsStr) -> nix::Result<OwnedFd> {
    openat(dir, name, DIR_FLAGS, Mode::empty())
}

/// `openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS)`, or one `O_NOFOLLOW`
/// component at a time where the kernel lacks openat2.
fn open_beneath(dir: BorrowedFd<'_>, rel: &Path, names: &[OsString]) -> nix::Result<OwnedFd> {
    #[cfg(target_os = "linux")]
    {
        use nix::fcntl::{openat2, OpenHow, ResolveFlag};
        let how = OpenHow::new().flags(DIR_FLAGS).resolve(
            ResolveFlag::RESOLVE_BENEATH
                | ResolveFlag::RESOLVE_NO_SYMLINKS
                | ResolveFlag::RESOLVE_NO_MAGICLINKS,
        );
        let _ = rel;
        match openat2(dir, names_path(names).as_path(), how) {
            Err(Errno::ENOSYS) | Err(Errno::EPERM) => {}
            other => return other,
        }
    }
    walk_nofollow(dir, names)
}

fn names_path(names: &[OsString]) -> PathBuf {
    names.iter().collect()
}

/// Opens each component with `O_NOFOLLOW | O_DIRECTORY` below the last.
fn walk_nofollow(dir: BorrowedFd<'_>, names: &[OsString]) -> nix::Result<OwnedFd> {
    let mut cur: Option<OwnedFd> = None;
    for name in names {
        let next = match &cur {
            None => open_child_dir(dir, name)?,
            Some(fd) => open_child_dir(fd.as_fd(), name)?,
        };
        cur = Some(next);
    }
    match cur {
        Some(fd) => Ok(fd),
        None => openat(dir, ".", DIR_FLAGS, Mode::empty()),
    }
}

/// One entry of the directory (not `.`/`..`) and whether it is a directory,
/// None when it is empty. Listing again after each removal keeps the memory
/// per level constant.
fn first_entry(dir: &OwnedFd) -> nix::Result<Option<(OsString, bool)>> {
    let mut d = nix::dir::Dir::from_fd(dir.try_clone().map_err(|_| Errno::EMFILE)?)?;
    for entry in d.iter() {
        let entry = entry?;
        let name = OsStr::from_bytes(entry.file_name().to_bytes());
        if name == "." || name == ".." {
            continue;
        }
        let is_dir = match entry.file_type() {
            Some(nix::dir::Type::Directory) => true,
            Some(_) => false,
            None => match fstatat(dir, name, AtFlags::AT_SYMLINK_NOFOLLOW) {
                Ok(st) => SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == SFlag::S_IFDIR,
                Err(Errno::ENOENT) => continue,
                Err(e) => return Err(e),
            },
        };
        return Ok(Some((name.to_owned(), is_dir)));
    }
    Ok(None)
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn renameat2_exchange(dir: BorrowedFd<'_>, a: &OsStr, b: &OsStr) -> nix::Result<()> {
    use nix::fcntl::{renameat2, RenameFlags};
    renameat2(dir, a, dir, b, RenameFlags::RENAME_EXCHANGE)
}

// nix wraps renameat2 for glibc only; other C libraries (musl in some Yocto
// distros) get the raw system call, which every kernel since 3.15 has.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn renameat2_exchange(dir: BorrowedFd<'_>, a: &OsStr, b: &OsStr) -> nix::Result<()> {
    use nix::libc;
    use nix::NixPath;
    let fd = dir.as_raw_fd();
    let res = a.with_nix_path(|a| {
        b.with_nix_path(|b| {
            // SAFETY: both pointers are NUL-terminated names that live for
            // the duration of the call; the call reads nothing else.
            unsafe {
                libc::syscall(
                    libc::SYS_renameat2,
                    fd,
                    a.as_ptr(),
                    fd,
                    b.as_ptr(),
                    libc::RENAME_EXCHANGE,
                )
            }
        })
    })??;
    Errno::result(res).map(drop)
}

#[cfg(test)]
mod tests;
