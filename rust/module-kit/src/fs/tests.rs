use super::*;
use std::os::unix::fs::symlink;

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("kit-fs-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn write_atomic_replaces_content_and_leaves_no_temporary_file() {
    let p = scratch("atomic");
    let d = Dir::open(&p).unwrap();
    d.write_atomic("j.json", b"one", 0o644).unwrap();
    d.write_atomic("j.json", b"two", 0o644).unwrap();
    assert_eq!(std::fs::read(p.join("j.json")).unwrap(), b"two");
    assert_eq!(d.list().unwrap(), vec![OsString::from("j.json")]);
    assert_eq!(d.read("j.json", 10).unwrap().unwrap(), b"two");
    assert!(d
        .read("j.json", 2)
        .unwrap_err()
        .to_string()
        .contains("larger than 2 bytes"));
    assert_eq!(d.read("missing", 10).unwrap(), None);
    std::fs::remove_dir_all(p).unwrap();
}

#[test]
fn write_atomic_does_not_follow_a_symlink_at_the_name_or_its_temporary_name() {
    let p = scratch("atomic-link");
    let d = Dir::open(&p).unwrap();
    std::fs::write(p.join("victim"), b"keep").unwrap();
    symlink(p.join("victim"), p.join("j.json")).unwrap();
    d.write_atomic("j.json", b"new", 0o644).unwrap();
    // The link was replaced by the file; its target is untouched.
    assert_eq!(std::fs::read(p.join("victim")).unwrap(), b"keep");
    assert_eq!(std::fs::read(p.join("j.json")).unwrap(), b"new");
    assert!(!std::fs::symlink_metadata(p.join("j.json"))
        .unwrap()
        .file_type()
        .is_symlink());
    std::fs::remove_dir_all(p).unwrap();
}

#[test]
fn names_must_be_single_components() {
    let p = scratch("names");
    let d = Dir::open(&p).unwrap();
    for bad in ["", ".", "..", "a/b", "/etc"] {
        assert!(d.write_atomic(bad, b"x", 0o644).is_err(), "{bad:?}");
        assert!(d.kind(bad).is_err(), "{bad:?}");
    }
    assert!(d.open_dir(Path::new("../x")).is_err());
    assert!(d.open_dir(Path::new("/etc")).is_err());
    std::fs::remove_dir_all(p).unwrap();
}

#[test]
fn open_dir_never_passes_a_symlink_anywhere_on_the_way() {
    let p = scratch("beneath");
    std::fs::create_dir_all(p.join("apps/team/x")).unwrap();
    std::fs::create_dir_all(p.join("elsewhere/x")).unwrap();
    let root = Dir::open(&p.join("apps")).unwrap();
    assert_eq!(
        root.open_dir(Path::new("team/x")).unwrap().path(),
        p.join("apps/team/x")
    );
    // The parent turned into a symlink after it was checked.
    std::fs::rename(p.join("apps/team"), p.join("apps/team.old")).unwrap();
    symlink(p.join("elsewhere"), p.join("apps/team")).unwrap();
    let e = root.open_dir(Path::new("team/x")).unwrap_err();
    assert!(e.to_string().contains("cannot open directory"), "{e}");
    // Also the last component, and through the fallback walk.
    assert!(walk_nofollow(root.as_fd(), &[OsString::from("team"), OsString::from("x")]).is_err());
    assert!(walk_nofollow(
        root.as_fd(),
        &[OsString::from("team.old"), OsString::from("x")]
    )
    .is_ok());
    let e = root.create_dirs(Path::new("team/y")).unwrap_err();
    assert!(
        e.to_string().contains("a symlink or file is in the way"),
        "{e}"
    );
    assert!(!p.join("elsewhere/y").exists());
    std::fs::remove_dir_all(p).unwrap();
}

#[test]
fn a_dir_held_open_keeps_working_on_the_real_directory_after_a_rename() {
    let p = scratch("held");
    std::fs::create_dir_all(p.join("apps/team")).unwrap();
    let team = Dir::open(&p.join("apps"))
        .unwrap()
        .open_dir(Path::new("team"))
        .unwrap();
    std::fs::rename(p.join("apps/team"), p.join("apps/moved")).unwrap();
    symlink("/tmp", p.join("apps/team")).unwrap();
    team.write_atomic("f", b"x", 0o644).unwrap();
    assert!(p.join("apps/moved/f").exists());
    std::fs::remove_dir_all(p).unwrap();
}

#[test]
fn exchange_swaps_two_directories() {
    let p = scratch("exchange");
    let d = Dir::open(&p).unwrap();
    d.mkdir("a", 0o755).unwrap();
    d.mkdir("b", 0o755).unwrap();
    let a = d.dir_identity("a").unwrap().unwrap();
    std::fs::write(p.join("a/x"), "a").unwrap();
    match d.exchange("a", "b").unwrap() {
        Exchanged::Yes => {
            assert_eq!(d.dir_identity("b").unwrap(), Some(a));
            assert_eq!(std::fs::read_to_string(p.join("b/x")).unwrap(), "a");
        }
        Exchanged::Unsupported => assert_eq!(d.dir_identity("a").unwrap(), Some(a)),
    }
    assert_eq!(d.dir_identity("missing").unwrap(), None);
    std::fs::remove_dir_all(p).unwrap();
}

#[test]
fn remove_tree_never_follows_symlinks_and_is_repeatable() {
    let p = scratch("remove");
    std::fs::create_dir_all(p.join("keep")).unwrap();
    std::fs::write(p.join("keep/precious"), "x").unwrap();
    std::fs::create_dir_all(p.join("t/sub/deeper")).unwrap();
    std::fs::write(p.join("t/sub/f"), "x").unwrap();
    symlink(p.join("keep"), p.join("t/link")).unwrap();
    symlink(p.join("keep"), p.join("t/sub/link2")).unwrap();
    let d = Dir::open(&p).unwrap();
    d.remove_tree("t").unwrap();
    d.remove_tree("t").unwrap();
    assert!(!p.join("t").exists());
    assert!(p.join("keep/precious").exists());
    std::fs::write(p.join("file"), "x").unwrap();
    d.remove_tree("file").unwrap();
    assert!(!p.join("file").exists());
    std::fs::remove_dir_all(p).unwrap();
}

#[test]
fn remove_tree_removes_a_tree_deeper_than_path_max() {
    let p = scratch("deep");
    let d = Dir::open(&p).unwrap();
    d.mkdir("t", 0o755).unwrap();
    // 3000 levels of 20-byte names: about 63 KB of path, far over PATH_MAX,
    // with a file every 500 levels.
    let name = OsString::from("d".repeat(20));
    let mut cur = d.open_dir(Path::new("t")).unwrap();
    for i in 0..3000 {
        mkdirat(
            cur.as_fd(),
            name.as_os_str(),
            Mode::from_bits_truncate(0o755),
        )
        .unwrap();
        if i % 500 == 0 {
            drop(cur.create_file("f", 0o644).unwrap());
        }
        cur = Dir {
            fd: open_child_dir(cur.as_fd(), &name).unwrap(),
            path: PathBuf::from("deep"),
        };
    }
    drop(cur);
    d.remove_tree("t").unwrap();
    assert_eq!(d.kind("t").unwrap(), Kind::Absent);
    std::fs::remove_dir_all(p).unwrap();
}

#[test]
fn free_space_and_identity_answer_for_the_directory_held() {
    let p = scratch("space");
    let d = Dir::open(&p).unwrap();
    let (bytes, inodes) = d.free_space().unwrap();
    assert!(bytes > 0 && inodes > 0);
    assert_eq!(
        d.identity().unwrap(),
        Dir::open(&p).unwrap().identity().unwrap()
    );
    std::fs::remove_dir_all(p).unwrap();
}
