//! Shared by the integration tests: a sandbox per test (its own allowed
//! root, state directory, lock and configuration), app trees on disk,
//! artifacts built from them, and manifests that compare trees exactly.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{symlink, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use mender_module_driver::{Artifact, Driver, Flavor, PayloadFile};
use nix::sys::stat::{utimensat, UtimensatFlags};
use nix::sys::time::TimeSpec;
use persistent_app::spec::{AppSpec, FORMAT_VERSION, RELEASE_MARKER};
use persistent_app_format::pack::Packer;

pub const MODULE: &str = env!("CARGO_BIN_EXE_persistent-app");

pub struct Sandbox {
    pub dir: PathBuf,
}

impl Sandbox {
    pub fn new(name: &str) -> Sandbox {
        let dir = std::env::temp_dir().join(format!("pa-it-{}-{name}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        Sandbox::at(&dir)
    }

    /// A sandbox in `dir`, which may be a mount point of the test's own.
    pub fn at(dir: &Path) -> Sandbox {
        fs::create_dir_all(dir.join("apps")).unwrap();
        fs::create_dir_all(dir.join("src")).unwrap();
        let s = Sandbox {
            dir: dir.to_owned(),
        };
        s.configure(None);
        s
    }

    /// Writes the device configuration, with `download` set when given.
    pub fn configure(&self, download: Option<&str>) {
        let mut conf = serde_json::json!({
            "allowed_roots": [self.dir.join("apps")],
            "state_dir": self.dir.join("state"),
            "service_start_timeout_seconds": 5,
        });
        if let Some(mode) = download {
            conf["download"] = serde_json::json!(mode);
        }
        fs::write(self.dir.join("persistent-app.conf"), conf.to_string()).unwrap();
    }

    pub fn root(&self) -> PathBuf {
        self.dir.join("apps")
    }

    pub fn dest(&self) -> PathBuf {
        self.root().join("demo-app")
    }

    pub fn state(&self) -> PathBuf {
        self.dir.join("state")
    }

    pub fn src(&self, version: &str) -> PathBuf {
        self.dir.join("src").join(version)
    }

    pub fn driver(&self, flavor: Flavor) -> Driver {
        let mut d = Driver::new(MODULE, self.dir.join("work"), flavor);
        d.env("PERSISTENT_APP_CONF", self.dir.join("persistent-app.conf"));
        d.env("PERSISTENT_APP_LOCK", self.dir.join("lock"));
        d.fifo_timeout = std::time::Duration::from_secs(20);
        d
    }

    /// Our format: the tree at `src` as one tar, built like the generator.
    pub fn artifact(&self, name: &str, src: &Path, service: Option<&str>) -> Artifact {
        let (tar, spec) = pack(src, &self.dest(), service);
        let meta = spec.to_meta_data().to_string();
        Artifact::new(name, "persistent-app")
            .meta_data(&meta)
            .payload(PayloadFile::bytes("app.tar", tar))
    }

    /// The journals of unfinished updates: every journal but a completed
    /// commit's tombstone.
    pub fn unfinished_journals(&self) -> Vec<String> {
        self.journals()
            .into_iter()
            .filter(|name| {
                let text = fs::read_to_string(self.state().join(name)).unwrap();
                let j: serde_json::Value = serde_json::from_str(&text).unwrap();
                j["phase"] != "committed"
            })
            .collect()
    }

    /// The phase in demo-app's journal, if it has one.
    pub fn phase(&self) -> Option<String> {
        let text = fs::read_to_string(self.state().join("demo-app.json")).ok()?;
        let j: serde_json::Value = serde_json::from_str(&text).unwrap();
        Some(j["phase"].as_str().unwrap().to_owned())
    }

    /// Every file in the state directory.
    /// The phase in the journal of `app`, if it has one.
    pub fn journal_phase(&self, app: &str) -> Option<String> {
        let text = fs::read_to_string(self.state().join(format!("{app}.json"))).ok()?;
        let j: serde_json::Value = serde_json::from_str(&text).unwrap();
        j["phase"].as_str().map(str::to_owned)
    }

    pub fn journals(&self) -> Vec<String> {
        // Hidden names are the journals' spares (module_kit::state_file).
        let mut v: Vec<String> = fs::read_dir(self.state())
            .map(|it| {
                it.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                    .filter(|n| !n.starts_with('.'))
                    .collect()
            })
            .unwrap_or_default();
        v.sort();
        v
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            let _ = fs::remove_dir_all(&self.dir);
        }
    }
}

pub fn pack(src: &Path, dest: &Path, service: Option<&str>) -> (Vec<u8>, AppSpec) {
    let mut packer = Packer::new();
    packer.add_source(src).unwrap();
    let (tar, summary) = packer.write(Vec::new(), None, |_| {}).unwrap();
    let spec = AppSpec {
        format: FORMAT_VERSION,
        name: "demo-app".into(),
        dest: dest.to_str().unwrap().into(),
        archive: "app.tar".into(),
        service: service.map(str::to_owned),
        unpacked_size: summary.bytes,
        entries: summary.entries,
        delta: None,
    };
    (tar, spec)
}

/// What a tree holds, exactly: type, mode, mtime (with nanoseconds), size,
/// content or link target, and which paths share an inode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifest(pub BTreeMap<String, String>);

pub fn manifest(dir: &Path) -> Manifest {
    let mut map = BTreeMap::new();
    let mut inodes: BTreeMap<u64, String> = BTreeMap::new();
    walk(dir, dir, &mut map, &mut inodes);
    Manifest(map)
}

fn walk(
    root: &Path,
    path: &Path,
    map: &mut BTreeMap<String, String>,
    inodes: &mut BTreeMap<u64, String>,
) {
    let meta = fs::symlink_metadata(path).unwrap();
    let rel = path
        .strip_prefix(root)
        .unwrap()
        .to_string_lossy()
        .into_owned();
    let rel = if rel.is_empty() { ".".to_owned() } else { rel };
    let ft = meta.file_type();
    let what = if ft.is_dir() {
        "dir".to_owned()
    } else if ft.is_symlink() {
        format!("link -> {}", fs::read_link(path).unwrap().display())
    } else {
        let content = fs::read(path).unwrap();
        let link = if meta.nlink() > 1 {
            match inodes.get(&meta.ino()) {
                Some(first) => format!(" hardlink-of {first}"),
                None => {
                    inodes.insert(meta.ino(), rel.clone());
                    String::new()
                }
            }
        } else {
            String::new()
        };
        format!("file {} {:016x}{link}", content.len(), fnv(&content))
    };
    map.insert(
        rel,
        format!(
            "{what} mode {:o} mtime {}.{:09}",
            meta.mode() & 0o7777,
            meta.mtime(),
            meta.mtime_nsec()
        ),
    );
    if ft.is_dir() {
        let mut children: Vec<_> = fs::read_dir(path)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        children.sort();
        for c in children {
            walk(root, &c, map, inodes);
        }
    }
}

fn fnv(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf29ce484222325;
    for b in bytes {
        h ^= *b as u64;
        h = h.wrapping_mul(0x100000001b3);
    }
    h
}

impl Manifest {
    /// Without the top directory, whose own mtime changes whenever a
    /// sibling tree is created, renamed or removed in it.
    pub fn below_top(&self) -> Manifest {
        Manifest(
            self.0
                .iter()
                .filter(|(k, _)| *k != ".")
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        )
    }

    /// Without the tree root and the release marker: what a source tree
    /// and its installed copy have in common.
    pub fn content(&self) -> Manifest {
        Manifest(
            self.0
                .iter()
                .filter(|(k, _)| *k != "." && *k != RELEASE_MARKER)
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        )
    }
}

/// Sets deterministic whole-second mtimes on a tree, children before their
/// directory, symlinks themselves.
pub fn settle_mtimes(dir: &Path, base: i64) {
    let mut paths = Vec::new();
    collect(dir, &mut paths);
    paths.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    for (i, p) in paths.iter().enumerate() {
        let t = TimeSpec::new(base + i as i64 * 60, 0);
        utimensat(
            nix::fcntl::AT_FDCWD,
            p,
            &t,
            &t,
            UtimensatFlags::NoFollowSymlink,
        )
        .unwrap();
    }
}

fn collect(path: &Path, out: &mut Vec<PathBuf>) {
    let meta = fs::symlink_metadata(path).unwrap();
    if meta.is_dir() {
        for e in fs::read_dir(path).unwrap() {
            collect(&e.unwrap().path(), out);
        }
    }
    out.push(path.to_owned());
}

fn write(path: &Path, content: &[u8], mode: u32) {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, content).unwrap();
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
}

/// Version 1 of the demo app: files of several modes, a large file, a
/// symlink, a hard link, a read-only directory and an empty one.
pub fn make_v1(dir: &Path) {
    write(&dir.join("bin/app"), b"#!/bin/sh\necho v1\n", 0o755);
    write(&dir.join("bin/helper"), b"helper v1", 0o700);
    write(&dir.join("etc/app.conf"), b"version=1\n", 0o644);
    write(&dir.join("etc/old-only.conf"), b"dropped by v2\n", 0o640);
    let big: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    write(&dir.join("data/big.bin"), &big, 0o644);
    write(&dir.join("lib/libfoo.so.1"), b"libfoo one", 0o755);
    symlink("libfoo.so.1", dir.join("lib/libfoo.so")).unwrap();
    write(&dir.join("share/a"), b"shared", 0o644);
    fs::hard_link(dir.join("share/a"), dir.join("share/b")).unwrap();
    write(&dir.join("ro/readme"), b"read only", 0o444);
    fs::create_dir_all(dir.join("empty")).unwrap();
    fs::set_permissions(dir.join("empty"), fs::Permissions::from_mode(0o750)).unwrap();
    fs::set_permissions(dir.join("ro"), fs::Permissions::from_mode(0o555)).unwrap();
    settle_mtimes(dir, 1_600_000_000);
}

/// Version 2: changed, added, removed files, a changed mode, a retargeted
/// symlink and a directory replaced by a file.
pub fn make_v2(dir: &Path) {
    write(&dir.join("bin/app"), b"#!/bin/sh\necho v2\n", 0o755);
    write(&dir.join("bin/helper"), b"helper v1", 0o750);
    write(&dir.join("etc/app.conf"), b"version=2\n", 0o600);
    let big: Vec<u8> = (0..200_000u32).map(|i| (i % 13) as u8).collect();
    write(&dir.join("data/big.bin"), &big, 0o644);
    write(&dir.join("lib/libfoo.so.2"), b"libfoo two", 0o755);
    symlink("libfoo.so.2", dir.join("lib/libfoo.so")).unwrap();
    write(&dir.join("share/new.txt"), b"added by v2", 0o644);
    write(&dir.join("empty"), b"now a file", 0o644);
    settle_mtimes(dir, 1_700_000_000);
}

pub fn make_v3(dir: &Path) {
    write(&dir.join("bin/app"), b"#!/bin/sh\necho v3\n", 0o755);
    settle_mtimes(dir, 1_750_000_000);
}

/// The one error line a failed state printed.
pub fn error_line(d: &Driver, state_prefix: &str) -> String {
    let call = d
        .calls()
        .iter()
        .rev()
        .find(|c| c.arg.starts_with(state_prefix) && !c.success())
        .unwrap_or_else(|| panic!("no failed {state_prefix} call in {:?}", d.sequence()));
    // Progress lines may precede it; the error itself is one line, the last.
    let errors: Vec<&str> = call
        .stderr
        .lines()
        .filter(|l| l.contains("error"))
        .collect();
    assert_eq!(errors.len(), 1, "one error line: {:?}", call.stderr);
    assert_eq!(
        call.stderr.lines().last(),
        Some(errors[0]),
        "{:?}",
        call.stderr
    );
    assert!(
        errors[0].starts_with("persistent-app: error: "),
        "{}",
        errors[0]
    );
    // Short and printable: it quotes names from the artifact, which must
    // neither flood nor split or colour the deployment log.
    assert!(
        errors[0].len() <= 1100,
        "{} bytes: {}",
        errors[0].len(),
        &errors[0][..200]
    );
    assert!(!errors[0].chars().any(char::is_control), "{:?}", errors[0]);
    errors[0].to_owned()
}

/// Records a category of bad input that a test has shown refused with one
/// short line and nothing modified (`$BAD_INPUTS_REPORT`, for
/// scripts/reliability-report).
pub fn report_bad_input(category: &str) {
    if let Some(path) = std::env::var_os("BAD_INPUTS_REPORT") {
        use std::io::Write;
        let mut f = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .unwrap();
        writeln!(f, "persistent-app: {category}").unwrap();
    }
}

/// A tar header with raw name bytes, for archives no sane writer produces.
pub fn raw_member(
    b: &mut tar::Builder<Vec<u8>>,
    name: &str,
    kind: tar::EntryType,
    link: &str,
    data: &[u8],
) {
    let mut h = tar::Header::new_gnu();
    {
        let old = h.as_old_mut();
        old.name[..name.len()].copy_from_slice(name.as_bytes());
        old.linkname[..link.len()].copy_from_slice(link.as_bytes());
    }
    h.set_entry_type(kind);
    h.set_size(data.len() as u64);
    h.set_mode(0o644);
    h.set_mtime(1_600_000_000);
    h.set_cksum();
    b.append(&h, data).unwrap();
}
