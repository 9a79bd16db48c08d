//! Streaming extraction of the app tree into a staging directory, confined
//! to that directory.
//!
//! Every member is checked before anything is written for it, and nothing
//! is ever written through a path this extraction did not create itself as a
//! real directory: the extractor keeps its own map of what it made, so a
//! symlink in the archive can never redirect a later member. Every write is
//! relative to the staging directory's descriptor, through directories
//! opened below it without following a symlink ([`module_kit::fs::Dir`]),
//! so a path changed under the extraction (by the running app, say) cannot
//! send a member elsewhere either. Refused:
//! absolute paths, `..`, symlinks whose target leaves the tree (checked
//! lexically per member, then once more at the end by resolving every link
//! through the links it passes, which catches chains such as `a -> ..`,
//! `b -> a/..`), hard links to anything but a regular file extracted before,
//! device nodes, FIFOs, sockets, sparse files, duplicates, and the release
//! marker's name. Modes are kept without setuid/setgid; owners are not kept
//! (everything belongs to the module's user, root). Mtimes are kept for
//! files, directories (set after their content) and symlinks.

use std::cell::Cell;
use std::collections::{HashMap, VecDeque};
use std::ffi::{OsStr, OsString};
use std::fs;
use std::io::{self, Read, Write};
use std::os::fd::AsFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path, PathBuf};
use std::rc::Rc;

use module_kit::fs::Dir;
use nix::sys::time::TimeSpec;

use crate::fault;
use crate::spec::RELEASE_MARKER;
use persistent_app_format::delta::Content;
use persistent_app_format::links;
use persistent_app_format::sha256::Sha256;

/// Every text an archive controls (member names, link targets, the tar
/// crate's messages that quote header fields) reaches the deployment log
/// only through [`printable`] and [`shown`]: short, printable ASCII.
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    #[error("member {} refused: {}", shown(.path), printable(.why, 200))]
    Refused { path: String, why: String },

    #[error("member {}: cannot {action}", shown(.path))]
    Io {
        path: String,
        action: &'static str,
        #[source]
        source: io::Error,
    },

    #[error("archive is truncated: {}", printable(.0, 200))]
    Truncated(String),

    #[error("archive is not a valid tar (truncated or corrupt): {}", printable(.0, 200))]
    Corrupt(String),

    #[error("archive unpacks to more than the {0} bytes announced in meta-data; the artifact is inconsistent, rebuild it")]
    TooBig(u64),

    #[error("archive has more than the {0} members announced in meta-data; the artifact is inconsistent, rebuild it")]
    TooMany(u64),

    #[error("archive holds {entries} members and {bytes} bytes, meta-data announces {want_entries} and {want_bytes}; the artifact is inconsistent, rebuild it")]
    Mismatch {
        entries: u64,
        bytes: u64,
        want_entries: u64,
        want_bytes: u64,
    },

    #[error("stopped by SIGTERM; the state can be run again")]
    Terminated,

    /// A file a delta takes from the installed tree is not what the
    /// manifest says: `path` is in the installed tree.
    #[error("{} {why}", shown(.path))]
    Base { path: String, why: String },
}

type Result<T, E = ArchiveError> = std::result::Result<T, E>;

/// `text` with everything but printable ASCII escaped, cut to at most `max`
/// bytes with `…` where it was cut. Bytes, not characters: one escaped
/// character takes up to 10 (`\u{1f600}`).
pub fn printable(text: &str, max: usize) -> String {
    let mut out = String::new();
    for c in text.chars() {
        let before = out.len();
        if c.is_ascii_graphic() || c == ' ' {
            out.push(c);
        } else {
            out.extend(c.escape_default());
        }
        if out.len() > max {
            out.truncate(before);
            out.push('…');
            break;
        }
    }
    out
}

/// A member name for a message: quoted, [`printable`], its length when cut.
pub fn shown(name: &str) -> String {
    let text = printable(&name.replace('\\', "\\\\").replace('"', "\\\""), 100);
    if text.ends_with('…') {
        format!("\"{text}\" ({} bytes)", name.len())
    } else {
        format!("\"{text}\"")
    }
}

/// How the extracted tree is made durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// `fsync` each file as it is closed and each directory at the end.
    PerFile,
    /// One `syncfs` of the staging filesystem at the end.
    SyncFs,
}

/// What the meta-data promises; the extraction stops as soon as the
/// archive exceeds it, so a lying payload cannot fill the disk.
#[derive(Debug, Clone, Copy, Default)]
pub struct Expect {
    pub entries: Option<u64>,
    pub bytes: Option<u64>,
}

pub use persistent_app_format::Summary;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Node {
    Dir,
    File,
    Symlink(PathBuf),
}

type Rel = Vec<OsString>;

/// Extracts members into `root`, a fresh empty directory.
pub struct Extractor {
    root: Dir,
    /// The directory the last member went into: members come grouped by
    /// directory, so most need no new open.
    parent: Option<(Rel, Dir)>,
    nodes: HashMap<Rel, Node>,
    /// Mode and mtime of directories, applied after their content.
    dir_meta: HashMap<Rel, (u32, Option<TimeSpec>)>,
    expect: Expect,
    durability: Durability,
    summary: Summary,
    buf: Vec<u8>,
    /// For a delta: the regular files the archive must carry, with their
    /// content; each is checked as it is written and taken off the map.
    shipped: Option<HashMap<Rel, Content>>,
}

impl Extractor {
    pub fn new(root: Dir, expect: Expect, durability: Durability) -> Extractor {
        Extractor {
            root,
            parent: None,
            nodes: HashMap::new(),
            dir_meta: HashMap::new(),
            expect,
            durability,
            summary: Summary::default(),
            buf: vec![0u8; 128 * 1024],
            shipped: None,
        }
    }

    /// A delta's extraction: every regular member of the archive must be
    /// one of `shipped` (paths as the manifest writes them) with that
    /// content, and every one of them must come.
    pub fn expect_shipped<'a>(&mut self, shipped: impl IntoIterator<Item = (&'a str, Content)>) {
        self.shipped = Some(
            shipped
                .into_iter()
                .map(|(path, content)| (path.split('/').map(OsString::from).collect(), content))
                .collect(),
        );
    }

    /// Places a file of a delta's tree taken from the installed tree:
    /// `path` (as the manifest writes it) gets the content of `from` below
    /// `base`, cloned where the filesystem shares blocks copy-on-write,
    /// copied otherwise, never hard-linked (see [`crate::delta`]); then its
    /// staged copy is hashed and must have `want`.
    pub fn add_base_file(
        &mut self,
        path: &str,
        base: &Dir,
        from: &str,
        want: Content,
        mode: u32,
        mtime: u64,
    ) -> Result<crate::delta::Placed> {
        let rel: Rel = path.split('/').map(OsString::from).collect();
        self.count()?;
        self.summary.bytes += want.size;
        if let Some(max) = self.expect.bytes {
            if self.summary.bytes > max {
                return Err(ArchiveError::TooBig(max));
            }
        }
        self.check_new(&rel, path, false)?;
        let (from_dir, from_name) = match from.rsplit_once('/') {
            Some((dir, name)) => (base.open_dir(Path::new(dir)), name),
            None => (base.try_clone(), from),
        };
        let base_err = |why: String| ArchiveError::Base {
            path: from.to_owned(),
            why,
        };
        let source = from_dir
            .and_then(|d| d.open_file(from_name))
            .map_err(|e| base_err(crate::delta::describe_open_error(&e.source)))?;
        let meta = source
            .metadata()
            .map_err(|e| base_err(format!("cannot be inspected ({e})")))?;
        crate::delta::check_found(meta.is_file(), meta.len(), want).map_err(base_err)?;
        let (dir, name) = self.parent_of(&rel, path)?;
        let target = dir.create_file(name, 0o600).map_err(|e| kit_err(path, e))?;
        let reopen = dir.try_clone().map_err(|e| kit_err(path, e))?;
        self.nodes.insert(rel.clone(), Node::File);
        let (placed, got) =
            crate::delta::clone_or_copy(&source, &target, &reopen, name, &mut self.buf)
                .map_err(|e| io_err(path, "copy the installed file into", e))?;
        if got != want {
            return Err(base_err(crate::delta::describe_mismatch(got, want)));
        }
        target
            .set_permissions(fs::Permissions::from_mode(mode & 0o777))
            .map_err(|e| io_err(path, "set mode of", e))?;
        let t = TimeSpec::new(mtime.min(i64::MAX as u64) as i64, 0);
        nix::sys::stat::futimens(target.as_fd(), &t, &t)
            .map_err(|e| io_err(path, "set mtime of", e.into()))?;
        if self.durability == Durability::PerFile {
            target.sync_all().map_err(|e| io_err(path, "sync", e))?;
        }
        fault::point("extract-entry");
        Ok(placed)
    }

    /// Reads one tar stream to its end, extracting every member.
    pub fn extract_tar<R: Read>(&mut self, reader: R) -> Result<()> {
        let consumed = Rc::new(Cell::new(0u64));
        let counting = Counting {
            inner: tar_bounds::Bounded::new(reader),
            count: consumed.clone(),
        };
        let mut archive = tar::Archive::new(io::BufReader::with_capacity(64 * 1024, counting));
        // Where the last member's data (with padding) ends; the end-of-archive
        // block must follow it, or the stream was cut at a member boundary,
        // which the tar crate reports as a normal end.
        let mut end_of_members = 0u64;
        {
            let entries = archive.entries().map_err(corrupt)?;
            for entry in entries {
                let mut entry = entry.map_err(corrupt)?;
                let padded = entry.size().div_ceil(512) * 512;
                end_of_members = entry.raw_file_position() + padded;
                self.member(&mut entry)?;
            }
        }
        let mut rest = archive.into_inner();
        // Bytes buffered but not yet handed to tar count as not consumed.
        let tar_pos = consumed.get() - rest.buffer().len() as u64;
        if tar_pos < end_of_members + 512 {
            return Err(ArchiveError::Truncated(
                "it ends without the end-of-archive block".into(),
            ));
        }
        // The client blocks until the stream is read to its end.
        io::copy(&mut rest, &mut io::sink()).map_err(corrupt)?;
        Ok(())
    }

    /// Adds one flat file (the community format) named `name` at the root.
    pub fn add_file(&mut self, name: &str, reader: &mut dyn Read, size: Option<u64>) -> Result<()> {
        let rel = relative(Path::new(name), name)?;
        if rel.len() != 1 {
            return Err(refused(name, "a payload file name must be a plain name"));
        }
        self.count()?;
        self.check_new(&rel, name, false)?;
        let mtime = TimeSpec::from(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default(),
        );
        self.write_file(&rel, name, reader, size, 0o644, Some(mtime))?;
        fault::point("extract-entry");
        Ok(())
    }

    fn count(&mut self) -> Result<()> {
        self.summary.entries += 1;
        if let Some(max) = self.expect.entries {
            if self.summary.entries > max {
                return Err(ArchiveError::TooMany(max));
            }
        }
        Ok(())
    }

    fn member<R: Read>(&mut self, entry: &mut tar::Entry<R>) -> Result<()> {
        let raw_path = entry.path().map_err(corrupt)?.into_owned();
        let display = raw_path.display().to_string();
        let etype = entry.header().entry_type();
        if etype.is_pax_global_extensions() {
            return Ok(());
        }
        self.count()?;
        let rel = relative(&raw_path, &display)?;
        let mode = entry.header().mode().map_err(corrupt)?;
        let mtime = mtime_of(entry)?;
        if rel.is_empty() {
            if !etype.is_dir() {
                return Err(refused(
                    &display,
                    "the archive root can only be a directory",
                ));
            }
            self.dir_meta.insert(rel, (mode & 0o1777, mtime));
            return Ok(());
        }
        if rel.len() == 1 && rel[0] == RELEASE_MARKER {
            return Err(refused(
                &display,
                "this name is reserved for the module's release marker",
            ));
        }
        match etype {
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                self.check_new(&rel, &display, false)?;
                let size = entry.size();
                self.write_file(&rel, &display, entry, Some(size), mode & 0o777, mtime)?;
            }
            tar::EntryType::Directory => {
                if !self.check_new(&rel, &display, true)? {
                    let (dir, name) = self.parent_of(&rel, &display)?;
                    dir.mkdir_unsynced(name, 0o700)
                        .map_err(|e| kit_err(&display, e))?;
                    self.nodes.insert(rel.clone(), Node::Dir);
                }
                // Setuid/setgid are dropped, the sticky bit is kept.
                self.dir_meta.insert(rel, (mode & 0o1777, mtime));
            }
            tar::EntryType::Symlink => {
                let target = link_target(entry, &display)?;
                check_symlink_target(&rel, &target, &display)?;
                self.check_new(&rel, &display, false)?;
                let (dir, name) = self.parent_of(&rel, &display)?;
                dir.symlink(&target, name)
                    .map_err(|e| kit_err(&display, e))?;
                if let Some(t) = mtime {
                    dir.set_entry_times(name, &t)
                        .map_err(|e| kit_err(&display, e))?;
                }
                self.nodes.insert(rel, Node::Symlink(target));
            }
            tar::EntryType::Link => {
                let target = link_target(entry, &display)?;
                let target_rel = relative(&target, &display).map_err(|_| {
                    refused(
                        &display,
                        format!("hard link target {} leaves the tree", target.display()),
                    )
                })?;
                if self.nodes.get(&target_rel) != Some(&Node::File) {
                    return Err(refused(
                        &display,
                        format!(
                            "hard link target {} is not a regular file extracted before it",
                            target.display()
                        ),
                    ));
                }
                self.check_new(&rel, &display, false)?;
                let target_dir = self.open_rel(&target_rel[..target_rel.len() - 1], &display)?;
                let target_name = &target_rel[target_rel.len() - 1];
                let (dir, name) = self.parent_of(&rel, &display)?;
                dir.hard_link(&target_dir, target_name, name)
                    .map_err(|e| kit_err(&display, e))?;
                self.nodes.insert(rel, Node::File);
            }
            tar::EntryType::Char | tar::EntryType::Block => {
                return Err(refused(&display, "device nodes are not allowed"))
            }
            tar::EntryType::Fifo => return Err(refused(&display, "FIFOs are not allowed")),
            tar::EntryType::GNUSparse => {
                return Err(refused(&display, "sparse files are not supported"))
            }
            other => {
                return Err(refused(
                    &display,
                    format!("member type {:?} is not supported; only files, directories, symlinks and hard links are", other),
                ))
            }
        }
        fault::point("extract-entry");
        Ok(())
    }

    /// The directory at `rel` below the root, opened without following a
    /// symlink.
    fn open_rel(&self, rel: &[OsString], display: &str) -> Result<Dir> {
        self.root
            .open_dir(&join(rel))
            .map_err(|e| kit_err(display, e))
    }

    /// The directory that holds `rel` (opened once per run of members in
    /// it) and `rel`'s own name.
    fn parent_of<'a>(&mut self, rel: &'a Rel, display: &str) -> Result<(&Dir, &'a OsStr)> {
        let (name, parent) = rel.split_last().expect("a member below the root");
        let cached = matches!(&self.parent, Some((p, _)) if p.as_slice() == parent);
        if !cached {
            let dir = self.open_rel(parent, display)?;
            self.parent = Some((parent.to_vec(), dir));
        }
        let (_, dir) = self.parent.as_ref().expect("set above");
        Ok((dir, name.as_os_str()))
    }

    /// Creates missing parents as real directories and refuses a path that
    /// passes through anything else. Returns whether `rel` itself already is
    /// a directory made here (only allowed when `dir_ok`).
    fn check_new(&mut self, rel: &Rel, display: &str, dir_ok: bool) -> Result<bool> {
        for i in 1..rel.len() {
            let prefix = &rel[..i];
            match self.nodes.get(prefix) {
                Some(Node::Dir) => {}
                Some(Node::Symlink(_)) => {
                    return Err(refused(
                        display,
                        format!(
                            "it would be written through the symlink {}",
                            join(prefix).display()
                        ),
                    ))
                }
                Some(Node::File) => {
                    return Err(refused(
                        display,
                        format!("its parent {} is a file", join(prefix).display()),
                    ))
                }
                None => {
                    let prefix = prefix.to_vec();
                    let (dir, name) = self.parent_of(&prefix, display)?;
                    dir.mkdir_unsynced(name, 0o755)
                        .map_err(|e| kit_err(display, e))?;
                    self.nodes.insert(prefix, Node::Dir);
                }
            }
        }
        match self.nodes.get(rel) {
            None => Ok(false),
            Some(Node::Dir) if dir_ok => Ok(true),
            Some(_) => Err(refused(display, "it appears twice in the archive")),
        }
    }

    fn write_file(
        &mut self,
        rel: &Rel,
        display: &str,
        reader: &mut dyn Read,
        size: Option<u64>,
        mode: u32,
        mtime: Option<TimeSpec>,
    ) -> Result<()> {
        let want = match &mut self.shipped {
            Some(shipped) => Some(shipped.remove(rel).ok_or_else(|| {
                refused(
                    display,
                    "the delta's manifest does not list it as carried in the archive; the artifact is inconsistent, rebuild it",
                )
            })?),
            None => None,
        };
        let mut hash = want.map(|_| Sha256::new());
        let (dir, name) = self.parent_of(rel, display)?;
        let mut file = dir
            .create_file(name, 0o600)
            .map_err(|e| kit_err(display, e))?;
        self.nodes.insert(rel.clone(), Node::File);
        let mut copied = 0u64;
        loop {
            let n = match reader.read(&mut self.buf) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {
                    return Err(ArchiveError::Terminated)
                }
                Err(e) => return Err(io_err(display, "read", e)),
            };
            if n == 0 {
                break;
            }
            copied += n as u64;
            self.summary.bytes += n as u64;
            if let Some(max) = self.expect.bytes {
                if self.summary.bytes > max {
                    return Err(ArchiveError::TooBig(max));
                }
            }
            if let Some(h) = &mut hash {
                h.update(&self.buf[..n]);
            }
            file.write_all(&self.buf[..n])
                .map_err(|e| io_err(display, "write", e))?;
        }
        if let (Some(want), Some(hash)) = (want, hash) {
            let got = Content {
                size: copied,
                sha256: hash.finish(),
            };
            if got != want {
                return Err(refused(
                    display,
                    format!(
                        "its content does not match the delta's manifest ({}); the artifact was altered or built wrong: rebuild it",
                        crate::delta::describe_mismatch(got, want)
                    ),
                ));
            }
        }
        if let Some(size) = size {
            if copied != size {
                return Err(ArchiveError::Truncated(format!(
                    "member {display:?} ends after {copied} of its {size} bytes"
                )));
            }
        }
        file.set_permissions(fs::Permissions::from_mode(mode))
            .map_err(|e| io_err(display, "set mode of", e))?;
        if let Some(t) = mtime {
            nix::sys::stat::futimens(file.as_fd(), &t, &t)
                .map_err(|e| io_err(display, "set mtime of", e.into()))?;
        }
        if self.durability == Durability::PerFile {
            file.sync_all().map_err(|e| io_err(display, "sync", e))?;
        }
        Ok(())
    }

    /// Checks the whole tree's links, applies directory modes and mtimes
    /// deepest first, and makes it all durable. Nothing but the payload is
    /// written into the tree: the journal knows the tree by its inode.
    pub fn finish(self) -> Result<Summary> {
        if let Some(missing) = self.shipped.as_ref().and_then(|s| s.keys().min()) {
            return Err(refused(
                &join(missing).display().to_string(),
                "the delta's manifest lists it as carried in the archive, which lacks it; the artifact is inconsistent, rebuild it",
            ));
        }
        self.check_symlink_chains()?;
        if let Expect {
            entries: Some(want_entries),
            bytes: Some(want_bytes),
        } = self.expect
        {
            if (self.summary.entries, self.summary.bytes) != (want_entries, want_bytes) {
                return Err(ArchiveError::Mismatch {
                    entries: self.summary.entries,
                    bytes: self.summary.bytes,
                    want_entries,
                    want_bytes,
                });
            }
        }
        let mut dirs: Vec<Rel> = self
            .nodes
            .iter()
            .filter(|(_, n)| **n == Node::Dir)
            .map(|(r, _)| r.clone())
            .collect();
        dirs.push(Vec::new());
        dirs.sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
        for rel in &dirs {
            let display = join(rel).display().to_string();
            let dir = self.open_rel(rel, &display)?;
            let (mode, mtime) = self.dir_meta.get(rel).copied().unwrap_or((0o755, None));
            dir.set_mode(mode).map_err(|e| kit_err(&display, e))?;
            if let Some(t) = mtime {
                dir.set_times(&t).map_err(|e| kit_err(&display, e))?;
            }
            if self.durability == Durability::PerFile {
                dir.sync().map_err(|e| kit_err(&display, e))?;
            }
        }
        if self.durability == Durability::SyncFs {
            self.root.syncfs().map_err(|e| kit_err(".", e))?;
        }
        Ok(self.summary)
    }

    /// Resolves every symlink through the links it passes, as the kernel
    /// will, with the staging root as the top: `..` above it is an escape.
    fn check_symlink_chains(&self) -> Result<()> {
        for (rel, node) in &self.nodes {
            let Node::Symlink(target) = node else {
                continue;
            };
            let mut dir: Rel = rel[..rel.len() - 1].to_vec();
            let mut queue: VecDeque<OsString> = components(target);
            let mut hops = 0;
            while let Some(c) = queue.pop_front() {
                if c == "." || c.is_empty() {
                    continue;
                }
                if c == ".." {
                    if dir.pop().is_none() {
                        return Err(refused(
                            &join(rel).display().to_string(),
                            format!(
                                "symlink to {} leaves the tree through the links it passes",
                                target.display()
                            ),
                        ));
                    }
                    continue;
                }
                dir.push(c);
                if let Some(Node::Symlink(next)) = self.nodes.get(&dir) {
                    hops += 1;
                    if hops > 40 || next.is_absolute() {
                        return Err(refused(
                            &join(rel).display().to_string(),
                            format!(
                                "symlink to {} forms a loop or a chain deeper than 40",
                                target.display()
                            ),
                        ));
                    }
                    dir.pop();
                    for c in components(next).into_iter().rev() {
                        queue.push_front(c);
                    }
                }
            }
        }
        Ok(())
    }
}

struct Counting<R> {
    inner: R,
    count: Rc<Cell<u64>>,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count.set(self.count.get() + n as u64);
        Ok(n)
    }
}

fn corrupt(e: io::Error) -> ArchiveError {
    if e.kind() == io::ErrorKind::Interrupted {
        return ArchiveError::Terminated;
    }
    let text = e.to_string();
    if text.contains("failed to read entire block") || e.kind() == io::ErrorKind::UnexpectedEof {
        ArchiveError::Truncated(text)
    } else {
        ArchiveError::Corrupt(text)
    }
}

fn refused(path: &str, why: impl Into<String>) -> ArchiveError {
    ArchiveError::Refused {
        path: path.to_owned(),
        why: why.into(),
    }
}

fn io_err(path: &str, action: &'static str, source: io::Error) -> ArchiveError {
    if source.kind() == io::ErrorKind::Interrupted {
        return ArchiveError::Terminated;
    }
    ArchiveError::Io {
        path: path.to_owned(),
        action,
        source,
    }
}

fn join(rel: &[OsString]) -> PathBuf {
    rel.iter().collect()
}

fn components(path: &Path) -> VecDeque<OsString> {
    path.as_os_str()
        .as_bytes()
        .split(|b| *b == b'/')
        .map(|c| OsStr::from_bytes(c).to_owned())
        .collect()
}

/// A member path as components below the root: `./a//b` is `[a, b]`, the
/// root itself is `[]`; absolute paths and `..` are refused.
fn relative(path: &Path, display: &str) -> Result<Rel> {
    let mut rel = Vec::new();
    for c in path.components() {
        match c {
            Component::Normal(name) => rel.push(name.to_owned()),
            Component::CurDir => {}
            Component::RootDir | Component::Prefix(_) => {
                return Err(refused(display, "absolute paths are not allowed"))
            }
            Component::ParentDir => return Err(refused(display, "'..' is not allowed")),
        }
    }
    Ok(rel)
}

fn link_target<R: Read>(entry: &tar::Entry<R>, display: &str) -> Result<PathBuf> {
    match entry.link_name().map_err(corrupt)? {
        Some(t) if !t.as_os_str().is_empty() => Ok(t.into_owned()),
        _ => Err(refused(display, "link without a target")),
    }
}

/// The lexical check of the format's rule ([`links::check`]), as a refusal.
fn check_symlink_target(rel: &Rel, target: &Path, display: &str) -> Result<()> {
    match links::check(rel.len() - 1, target) {
        Ok(()) => Ok(()),
        Err(links::Escape::Absolute) => Err(refused(
            display,
            format!(
                "symlink to the absolute path {}; only relative links inside the tree are allowed",
                target.display()
            ),
        )),
        Err(links::Escape::Outside) => Err(refused(
            display,
            format!("symlink to {} points outside the tree", target.display()),
        )),
    }
}

/// The member's mtime, with the fraction from a PAX `mtime` record if any.
fn mtime_of<R: Read>(entry: &mut tar::Entry<R>) -> Result<Option<TimeSpec>> {
    let secs = entry.header().mtime().map_err(corrupt)?;
    let mut spec = TimeSpec::new(secs.min(i64::MAX as u64) as i64, 0);
    if let Some(exts) = entry.pax_extensions().map_err(corrupt)? {
        for ext in exts {
            let ext = ext.map_err(corrupt)?;
            if ext.key() == Ok("mtime") {
                if let Some(t) = ext.value().ok().and_then(parse_pax_time) {
                    spec = t;
                }
            }
        }
    }
    Ok(Some(spec))
}

fn parse_pax_time(text: &str) -> Option<TimeSpec> {
    let (secs, frac) = text.split_once('.').unwrap_or((text, ""));
    let secs: i64 = secs.parse().ok()?;
    if secs < 0 || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let mut digits: String = frac.chars().take(9).collect();
    while digits.len() < 9 {
        digits.push('0');
    }
    Some(TimeSpec::new(secs, digits.parse().ok()?))
}

/// A failed operation on the member `path`, as the archive's error (the
/// kit's message names the staging path, the member's name is shorter).
fn kit_err(path: &str, e: module_kit::fs::Error) -> ArchiveError {
    io_err(path, e.action, e.source)
}

#[cfg(test)]
mod tests;
