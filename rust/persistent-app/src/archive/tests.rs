//! Confinement and fidelity of the extractor, with archives built here,
//! including the malicious ones no well-behaved tar writer would produce.

use super::*;
use std::os::unix::fs::MetadataExt;
use tar::{EntryType, Header};

struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Scratch {
        let dir = std::env::temp_dir().join(format!("pa-archive-{}-{name}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(dir.join("outside")).unwrap();
        fs::create_dir_all(dir.join("apps/staging")).unwrap();
        Scratch(dir)
    }
    fn staging(&self) -> PathBuf {
        self.0.join("apps/staging")
    }
    fn outside(&self) -> PathBuf {
        self.0.join("outside")
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// A header with raw name bytes, bypassing the tar crate's own path checks.
fn header(name: &str, kind: EntryType, size: u64, link: &str, mode: u32) -> Header {
    let mut h = Header::new_gnu();
    {
        let old = h.as_old_mut();
        old.name[..name.len()].copy_from_slice(name.as_bytes());
        old.linkname[..link.len()].copy_from_slice(link.as_bytes());
    }
    h.set_entry_type(kind);
    h.set_size(size);
    h.set_mode(mode);
    h.set_mtime(1_600_000_000);
    h.set_uid(0);
    h.set_gid(0);
    h.set_cksum();
    h
}

enum M<'a> {
    File(&'a str, &'a [u8]),
    FileMode(&'a str, &'a [u8], u32),
    Dir(&'a str, u32),
    Sym(&'a str, &'a str),
    Hard(&'a str, &'a str),
    Raw(EntryType, &'a str),
}

fn tar_of(members: &[M]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for m in members {
        match m {
            M::File(n, d) => b.append(
                &header(n, EntryType::Regular, d.len() as u64, "", 0o644),
                *d,
            ),
            M::FileMode(n, d, mode) => b.append(
                &header(n, EntryType::Regular, d.len() as u64, "", *mode),
                *d,
            ),
            M::Dir(n, mode) => b.append(&header(n, EntryType::Directory, 0, "", *mode), &[][..]),
            M::Sym(n, t) => b.append(&header(n, EntryType::Symlink, 0, t, 0o777), &[][..]),
            M::Hard(n, t) => b.append(&header(n, EntryType::Link, 0, t, 0o644), &[][..]),
            M::Raw(k, n) => b.append(&header(n, *k, 0, "", 0o644), &[][..]),
        }
        .unwrap();
    }
    b.into_inner().unwrap()
}

fn extract(s: &Scratch, bytes: &[u8], expect: Expect) -> Result<Summary> {
    let mut x = Extractor::new(Dir::open(&s.staging()).unwrap(), expect, Durability::SyncFs);
    x.extract_tar(bytes)?;
    x.finish()
}

fn refused_because(s: &Scratch, members: &[M], want: &str) {
    let err = extract(s, &tar_of(members), Expect::default()).unwrap_err();
    let text = err.to_string();
    assert!(text.contains(want), "{text:?} lacks {want:?}");
    assert!(!text.contains('\n'));
    assert_eq!(
        fs::read_dir(s.outside()).unwrap().count(),
        0,
        "something was written outside the staging tree"
    );
    assert!(!s.0.join("apps/evil").exists());
}

#[test]
fn a_regular_tree_is_extracted_with_modes_mtimes_and_links() {
    let s = Scratch::new("regular");
    let bytes = tar_of(&[
        M::Dir("bin/", 0o755),
        M::FileMode("bin/run", b"#!/bin/sh\n", 0o755),
        M::FileMode("bin/suid", b"x", 0o6755),
        M::Dir("ro/", 0o555),
        M::File("ro/inside", b"read-only dir content"),
        M::File("etc/conf", b"key=value"),
        M::Sym("etc/link", "../bin/run"),
        M::Sym("dangling", "nowhere/at/all"),
        M::Hard("bin/run2", "bin/run"),
        M::File("empty", b""),
    ]);
    let summary = extract(&s, &bytes, Expect::default()).unwrap();
    assert_eq!(summary.entries, 10);
    assert_eq!(summary.bytes, 10 + 1 + 21 + 9);
    let st = s.staging();
    assert_eq!(fs::read(st.join("bin/run")).unwrap(), b"#!/bin/sh\n");
    let meta = fs::metadata(st.join("bin/run")).unwrap();
    assert_eq!(meta.mode() & 0o7777, 0o755);
    assert_eq!(meta.mtime(), 1_600_000_000);
    assert_eq!(meta.nlink(), 2, "bin/run2 is a hard link to bin/run");
    assert_eq!(
        fs::metadata(st.join("bin/suid")).unwrap().mode() & 0o7777,
        0o755,
        "setuid/setgid are masked off"
    );
    let ro = fs::metadata(st.join("ro")).unwrap();
    assert_eq!(ro.mode() & 0o7777, 0o555);
    assert_eq!(
        ro.mtime(),
        1_600_000_000,
        "directory mtime set after its content"
    );
    assert_eq!(
        fs::read_link(st.join("etc/link")).unwrap(),
        Path::new("../bin/run")
    );
    assert_eq!(
        fs::symlink_metadata(st.join("etc/link")).unwrap().mtime(),
        1_600_000_000,
        "symlink mtime set without following it"
    );
    // Nothing but the payload: no file of the module's in the tree.
    assert!(!st.join(RELEASE_MARKER).exists());
    // `etc/` had no member of its own: created on the way, mode 0755.
    assert_eq!(fs::metadata(st.join("etc")).unwrap().mode() & 0o7777, 0o755);
}

#[test]
fn the_root_member_sets_the_mode_and_mtime_of_the_tree() {
    let s = Scratch::new("root");
    let bytes = tar_of(&[M::Dir("./", 0o750), M::File("./a", b"a")]);
    extract(&s, &bytes, Expect::default()).unwrap();
    let m = fs::metadata(s.staging()).unwrap();
    assert_eq!(m.mode() & 0o7777, 0o750);
    assert_eq!(m.mtime(), 1_600_000_000);
}

#[test]
fn pax_mtimes_keep_their_fraction() {
    let s = Scratch::new("pax");
    let mut b = tar::Builder::new(Vec::new());
    b.append_pax_extensions([("mtime", &b"1600000000.25"[..])])
        .unwrap();
    b.append(&header("f", EntryType::Regular, 1, "", 0o644), &b"x"[..])
        .unwrap();
    extract(&s, &b.into_inner().unwrap(), Expect::default()).unwrap();
    let m = fs::metadata(s.staging().join("f")).unwrap();
    assert_eq!((m.mtime(), m.mtime_nsec()), (1_600_000_000, 250_000_000));
}

#[test]
fn parent_traversal_is_refused() {
    let s = Scratch::new("dotdot");
    refused_because(&s, &[M::File("../evil", b"x")], "'..' is not allowed");
    let s = Scratch::new("dotdot2");
    refused_because(&s, &[M::File("a/../../evil", b"x")], "'..' is not allowed");
}

#[test]
fn absolute_paths_are_refused() {
    let s = Scratch::new("abs");
    let target = format!("{}/evil", s.outside().display());
    refused_because(&s, &[M::File(&target, b"x")], "absolute paths");
}

#[test]
fn symlinks_that_leave_the_tree_are_refused() {
    let s = Scratch::new("symout");
    refused_because(&s, &[M::Sym("l", "../outside")], "points outside the tree");
    let s = Scratch::new("symout2");
    refused_because(
        &s,
        &[M::Sym("a/b/l", "../../../x")],
        "points outside the tree",
    );
    let s = Scratch::new("symabs");
    refused_because(
        &s,
        &[M::Sym("l", "/etc/passwd")],
        "absolute path /etc/passwd",
    );
}

#[test]
fn symlink_chains_that_leave_the_tree_are_refused() {
    // Each link alone stays inside; followed through x/l1, x/l2 lands above.
    let s = Scratch::new("chain");
    refused_because(
        &s,
        &[M::Sym("x/l1", ".."), M::Sym("x/l2", "l1/..")],
        "leaves the tree through the links it passes",
    );
}

#[test]
fn writing_through_an_extracted_symlink_is_refused() {
    let s = Scratch::new("through");
    refused_because(
        &s,
        &[M::Dir("d/", 0o755), M::Sym("l", "d"), M::File("l/x", b"x")],
        "written through the symlink l",
    );
    // The symlink would have been harmless as a target, but the archive
    // could also point it outside through a chain: never write through it.
    let s = Scratch::new("through2");
    refused_because(
        &s,
        &[M::Sym("l", "."), M::Dir("l/sub/", 0o755)],
        "written through the symlink l",
    );
}

#[test]
fn a_member_replacing_an_extracted_one_is_refused() {
    let s = Scratch::new("dup");
    refused_because(&s, &[M::File("a", b"1"), M::Sym("a", "b")], "appears twice");
    let s = Scratch::new("dup2");
    refused_because(&s, &[M::File("a", b"1"), M::File("a/b", b"2")], "is a file");
}

#[test]
fn hard_links_outside_or_forward_are_refused() {
    let s = Scratch::new("hardout");
    refused_because(&s, &[M::Hard("h", "../outside/x")], "leaves the tree");
    let s = Scratch::new("hardabs");
    refused_because(&s, &[M::Hard("h", "/etc/passwd")], "leaves the tree");
    let s = Scratch::new("hardfwd");
    refused_because(
        &s,
        &[M::Hard("h", "later"), M::File("later", b"x")],
        "not a regular file extracted before",
    );
    let s = Scratch::new("harddir");
    refused_because(
        &s,
        &[M::Dir("d/", 0o755), M::Hard("h", "d")],
        "not a regular file extracted before",
    );
}

#[test]
fn device_nodes_and_fifos_are_refused() {
    for (kind, want) in [
        (EntryType::Char, "device nodes"),
        (EntryType::Block, "device nodes"),
        (EntryType::Fifo, "FIFOs"),
    ] {
        let s = Scratch::new(&format!("dev-{kind:?}"));
        refused_because(&s, &[M::Raw(kind, "node")], want);
    }
}

#[test]
fn sparse_members_are_refused() {
    let s = Scratch::new("sparse");
    // Refused either as unsupported or, for this minimal header, as corrupt.
    let err = extract(
        &s,
        &tar_of(&[M::Raw(EntryType::GNUSparse, "s")]),
        Expect::default(),
    )
    .unwrap_err();
    assert!(
        matches!(err, ArchiveError::Refused { .. } | ArchiveError::Corrupt(_)),
        "{err}"
    );
}

#[test]
fn the_release_marker_name_is_reserved() {
    let s = Scratch::new("marker");
    refused_because(&s, &[M::File(RELEASE_MARKER, b"forged")], "reserved");
}

#[test]
fn truncated_archives_are_errors() {
    let full = tar_of(&[M::File("a", &[7u8; 3000]), M::File("b", b"bbb")]);
    // Cut inside a's data, inside b's header, exactly after b's data, and
    // after the members but before the end-of-archive blocks.
    for cut in [1000, 512 * 7 + 100, 512 * 9, 512 * 9 + 100] {
        let s = Scratch::new(&format!("trunc-{cut}"));
        let err = extract(&s, &full[..cut], Expect::default()).unwrap_err();
        assert!(err.to_string().contains("truncated"), "cut at {cut}: {err}");
    }
    let s = Scratch::new("trunc-empty");
    let err = extract(&s, &[], Expect::default()).unwrap_err();
    assert!(err.to_string().contains("truncated"), "{err}");
}

#[test]
fn archives_larger_than_announced_stop_early() {
    let bytes = tar_of(&[M::File("a", &[1u8; 5000]), M::File("b", b"x")]);
    let s = Scratch::new("toobig");
    let err = extract(
        &s,
        &bytes,
        Expect {
            entries: None,
            bytes: Some(4000),
        },
    )
    .unwrap_err();
    assert!(matches!(err, ArchiveError::TooBig(4000)), "{err}");
    let s = Scratch::new("toomany");
    let err = extract(
        &s,
        &bytes,
        Expect {
            entries: Some(1),
            bytes: None,
        },
    )
    .unwrap_err();
    assert!(matches!(err, ArchiveError::TooMany(1)), "{err}");
    let s = Scratch::new("mismatch");
    let err = extract(
        &s,
        &bytes,
        Expect {
            entries: Some(2),
            bytes: Some(6000),
        },
    )
    .unwrap_err();
    assert!(
        err.to_string().contains("holds 2 members and 5001 bytes"),
        "{err}"
    );
    let s = Scratch::new("exact");
    extract(
        &s,
        &bytes,
        Expect {
            entries: Some(2),
            bytes: Some(5001),
        },
    )
    .unwrap();
}

#[test]
fn flat_files_of_the_community_format_land_at_the_root() {
    let s = Scratch::new("flat");
    let mut x = Extractor::new(
        Dir::open(&s.staging()).unwrap(),
        Expect::default(),
        Durability::PerFile,
    );
    x.add_file("a.conf", &mut &b"hello"[..], Some(5)).unwrap();
    let err = x.add_file("b", &mut &b"hel"[..], Some(5)).unwrap_err();
    assert!(err.to_string().contains("truncated"), "{err}");
    let err = x.add_file("a.conf", &mut &b""[..], None).unwrap_err();
    assert!(err.to_string().contains("appears twice"), "{err}");
    let err = x.add_file("..", &mut &b""[..], None).unwrap_err();
    assert!(err.to_string().contains("'..'"), "{err}");
}

/// The measurement behind `deploy::DURABILITY`:
/// `cargo test --release -p persistent-app --lib durability -- --ignored --nocapture`.
#[test]
#[ignore]
fn measure_per_file_fsync_against_one_syncfs() {
    let mut members = Vec::new();
    let names: Vec<String> = (0..5000).map(|i| format!("d{}/f{i}", i % 50)).collect();
    let data = vec![b'x'; 2000];
    for n in &names {
        members.push(M::File(n, &data));
    }
    let bytes = tar_of(&members);
    for d in [
        Durability::PerFile,
        Durability::SyncFs,
        Durability::PerFile,
        Durability::SyncFs,
    ] {
        let s = Scratch::new(&format!("bench-{d:?}"));
        nix::unistd::sync();
        let t = std::time::Instant::now();
        let mut x = Extractor::new(Dir::open(&s.staging()).unwrap(), Expect::default(), d);
        x.extract_tar(&bytes[..]).unwrap();
        x.finish().unwrap();
        eprintln!("{d:?}: {:?}", t.elapsed());
    }
}

// ---- bounded headers ----------------------------------------------------

/// A header announcing `size` bytes of a GNU long name ('L') or PAX ('x')
/// record after a small regular member, then those bytes, made as they are
/// read: nothing of the gigabyte is ever in memory.
struct Huge {
    head: Vec<u8>,
    at: usize,
    left: u64,
    read: u64,
}

impl Huge {
    fn new(kind: EntryType, size: u64) -> Huge {
        let mut head = tar_of(&[M::File("before", b"data")]);
        head.truncate(head.len() - 1024);
        let mut h = Header::new_gnu();
        h.as_old_mut().name[..13].copy_from_slice(b"././@LongLink");
        h.set_entry_type(kind);
        h.set_size(size);
        h.set_cksum();
        head.extend_from_slice(h.as_bytes());
        Huge {
            head,
            at: 0,
            left: size,
            read: 0,
        }
    }
}

impl Read for Huge {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = if self.at < self.head.len() {
            let n = buf.len().min(self.head.len() - self.at);
            buf[..n].copy_from_slice(&self.head[self.at..self.at + n]);
            self.at += n;
            n
        } else {
            let n = buf
                .len()
                .min(usize::try_from(self.left).unwrap_or(usize::MAX));
            buf[..n].fill(b'a');
            self.left -= n as u64;
            n
        };
        self.read += n as u64;
        Ok(n)
    }
}

fn short_and_printable(text: &str) {
    assert!(text.len() <= 300, "{} bytes: {text}", text.len());
    assert!(
        text.chars()
            .all(|c| c == ' ' || c == '…' || c.is_ascii_graphic()),
        "{text:?}"
    );
}

#[test]
fn a_gigabyte_long_name_or_pax_header_is_refused_at_its_header() {
    for kind in [
        EntryType::GNULongName,
        EntryType::GNULongLink,
        EntryType::XHeader,
        EntryType::XGlobalHeader,
    ] {
        let s = Scratch::new(&format!("huge-{kind:?}"));
        let mut huge = Huge::new(kind, 1 << 30);
        let started = std::time::Instant::now();
        let mut x = Extractor::new(
            Dir::open(&s.staging()).unwrap(),
            Expect::default(),
            Durability::SyncFs,
        );
        let err = x.extract_tar(&mut huge).unwrap_err();
        assert!(started.elapsed() < std::time::Duration::from_secs(1));
        assert!(huge.read < 1 << 20, "{kind:?}: read {} bytes", huge.read);
        let text = err.to_string();
        assert!(text.contains("of 1073741824 bytes"), "{text}");
        short_and_printable(&text);
        assert_eq!(fs::read(s.staging().join("before")).unwrap(), b"data");
    }
}

#[test]
fn peak_memory_stays_flat_for_a_gigabyte_record() {
    // Measured in a child process (this test binary again), so that other
    // tests running beside do not count.
    if std::env::var_os("PA_ARCHIVE_RSS_CHILD").is_some() {
        for kind in [EntryType::GNULongName, EntryType::XHeader] {
            let s = Scratch::new(&format!("rss-{kind:?}"));
            let mut x = Extractor::new(
                Dir::open(&s.staging()).unwrap(),
                Expect::default(),
                Durability::SyncFs,
            );
            let _ = x.extract_tar(Huge::new(kind, 1 << 30));
        }
        let status = fs::read_to_string("/proc/self/status").unwrap();
        let hwm = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
        println!("CHILD {hwm}");
        return;
    }
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "archive::tests::peak_memory_stays_flat_for_a_gigabyte_record",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("PA_ARCHIVE_RSS_CHILD", "1")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let kib: u64 = text
        .lines()
        .find_map(|l| l.split("CHILD VmHWM:").nth(1))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no measurement: {text}"));
    eprintln!("peak RSS of the child: {kib} KiB");
    assert!(kib < 64 * 1024, "peak RSS {kib} KiB");
}

#[test]
fn names_are_shown_short_and_escaped() {
    let s = Scratch::new("names");
    let long = format!("\u{1b}[31m{}/../x", "n".repeat(3000));
    let mut bytes = tar_of(&[M::File("placeholder", b"x")]);
    bytes.truncate(bytes.len() - 1024);
    let mut name = long.clone().into_bytes();
    name.push(0);
    let mut l = Header::new_gnu();
    l.as_old_mut().name[..13].copy_from_slice(b"././@LongLink");
    l.set_entry_type(EntryType::GNULongName);
    l.set_size(name.len() as u64);
    l.set_cksum();
    bytes.extend_from_slice(l.as_bytes());
    name.resize(name.len().div_ceil(512) * 512, 0);
    bytes.extend_from_slice(&name);
    bytes.extend_from_slice(header("y", EntryType::Regular, 0, "", 0o644).as_bytes());
    bytes.extend_from_slice(&[0u8; 1024]);
    let text = extract(&s, &bytes, Expect::default())
        .unwrap_err()
        .to_string();
    assert!(text.contains("'..' is not allowed"), "{text}");
    assert!(text.contains("\"\\u{1b}[31mnnn"), "{text}");
    assert!(text.contains("(3010 bytes)"), "{text}");
    short_and_printable(&text);
}

#[test]
fn a_pax_size_record_is_followed_as_the_tar_crate_follows_it() {
    // A PAX `size` replaces the header's: the guard must find the next
    // header where the tar crate does, or a huge record behind it would
    // pass unseen.
    let s = Scratch::new("pax-size");
    let mut b = tar::Builder::new(Vec::new());
    b.append_pax_extensions([("size", &b"5"[..])]).unwrap();
    let mut bytes = b.into_inner().unwrap();
    bytes.truncate(bytes.len() - 1024);
    bytes.extend_from_slice(header("f", EntryType::Regular, 0, "", 0o644).as_bytes());
    let mut data = b"hello".to_vec();
    data.resize(512, 0);
    bytes.extend_from_slice(&data);
    let ok = [bytes.clone(), vec![0u8; 1024]].concat();
    extract(&s, &ok, Expect::default()).unwrap();
    assert_eq!(fs::read(s.staging().join("f")).unwrap(), b"hello");
    let s = Scratch::new("pax-size-huge");
    let mut huge = Huge::new(EntryType::GNULongName, 1 << 30);
    let mut head = bytes;
    head.extend_from_slice(&huge.head[512 * 2..]);
    huge.head = head;
    let mut x = Extractor::new(
        Dir::open(&s.staging()).unwrap(),
        Expect::default(),
        Durability::SyncFs,
    );
    let text = x.extract_tar(&mut huge).unwrap_err().to_string();
    assert!(text.contains("of 1073741824 bytes"), "{text}");
}

#[test]
fn names_within_the_bounds_still_extract() {
    let s = Scratch::new("long-ok");
    let deep = format!("{}/f", "d".repeat(250));
    let mut b = tar::Builder::new(Vec::new());
    let mut h = Header::new_gnu();
    h.set_size(2);
    h.set_mode(0o644);
    h.set_entry_type(EntryType::Regular);
    b.append_data(&mut h, &deep, &b"ok"[..]).unwrap();
    b.append_pax_extensions([("path", "p/".repeat(1000).as_bytes())])
        .unwrap();
    b.append(
        &header("short", EntryType::Regular, 1, "", 0o644),
        &b"x"[..],
    )
    .unwrap();
    extract(&s, &b.into_inner().unwrap(), Expect::default()).unwrap();
    assert_eq!(fs::read(s.staging().join(&deep)).unwrap(), b"ok");
}

#[test]
fn what_the_generator_packs_is_extracted_as_packed() {
    use persistent_app_format::pack::Packer;
    let s = Scratch::new("round-trip");
    let src = s.0.join("src");
    fs::create_dir_all(src.join("etc")).unwrap();
    fs::write(src.join("etc/y"), "yy").unwrap();
    fs::write(src.join("z"), "zzz").unwrap();
    fs::hard_link(src.join("z"), src.join("z2")).unwrap();
    std::os::unix::fs::symlink("etc/y", src.join("l")).unwrap();
    let mut p = Packer::new();
    p.add_source(&src).unwrap();
    let (tar, packed) = p.write(Vec::new(), Some(1000), |_| {}).unwrap();
    let extracted = extract(
        &s,
        &tar,
        Expect {
            entries: Some(packed.entries),
            bytes: Some(packed.bytes),
        },
    )
    .unwrap();
    assert_eq!(extracted, packed);
    let st = s.staging();
    assert_eq!(fs::read_to_string(st.join("l")).unwrap(), "yy");
    assert_eq!(fs::metadata(st.join("z2")).unwrap().nlink(), 2);
    assert_eq!(fs::metadata(st.join("z")).unwrap().mtime(), 1000);
}

/// The extractor works from the staging directory's descriptor: renaming
/// the staging path away and putting a symlink to elsewhere in its place,
/// or doing the same to a directory it made, sends nothing elsewhere.
#[test]
fn paths_swapped_under_the_extraction_redirect_nothing() {
    let s = Scratch::new("swapped");
    let st = s.staging();
    let mut x = Extractor::new(
        Dir::open(&st).unwrap(),
        Expect::default(),
        Durability::SyncFs,
    );
    x.extract_tar(&tar_of(&[M::Dir("d", 0o755), M::File("d/a", b"1")])[..])
        .unwrap();

    // The staging directory itself, then a directory below it.
    fs::rename(&st, s.0.join("apps/moved")).unwrap();
    std::os::unix::fs::symlink(s.outside(), &st).unwrap();
    x.extract_tar(&tar_of(&[M::File("top", b"2")])[..]).unwrap();
    let moved = s.0.join("apps/moved");
    fs::rename(moved.join("d"), moved.join("d-real")).unwrap();
    std::os::unix::fs::symlink(s.outside(), moved.join("d")).unwrap();
    let second = x.extract_tar(&tar_of(&[M::File("e/b", b"3"), M::File("d/c", b"4")])[..]);
    let _ = x.finish();

    assert_eq!(
        fs::read_dir(s.outside()).unwrap().count(),
        0,
        "nothing outside"
    );
    assert_eq!(fs::read_to_string(moved.join("top")).unwrap(), "2");
    assert_eq!(fs::read_to_string(moved.join("e/b")).unwrap(), "3");
    // d/c is refused at the symlink (or lands in the directory the
    // extraction made), never behind the symlink.
    match second {
        Err(e) => assert!(e.to_string().contains("d/c"), "{e}"),
        Ok(()) => assert_eq!(fs::read_to_string(moved.join("d-real/c")).unwrap(), "4"),
    }
}

#[test]
fn names_of_escaped_characters_are_bounded_in_bytes_not_characters() {
    // 100 characters of "\u{1f600}" are 900 bytes: a refusal quoting a
    // member name and its link target passed 2 KiB (found by fuzzing).
    let face = "\u{1f600}".repeat(300);
    let text = ArchiveError::Refused {
        path: face.clone(),
        why: format!("symlink target {face} leaves the tree"),
    }
    .to_string();
    assert!(text.len() <= 400, "{} bytes: {text}", text.len());
    assert!(
        text.chars()
            .all(|c| c == ' ' || c == '…' || c.is_ascii_graphic()),
        "{text:?}"
    );
    assert!(shown(&face).len() <= 100 + 20, "{}", shown(&face));
    assert_eq!(printable("plain", 5), "plain");
    assert_eq!(printable("plain!", 5), "plain…");
}
