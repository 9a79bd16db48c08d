//! Defects a review found by experiment (issue 11): each test failed against the
//! module before the fix.
//! - a parent directory replaced by a symlink between Download and
//!   ArtifactInstall carried the install outside the allowed root;
//! - a tree deeper than PATH_MAX, made by the running app, blocked commit for good;
//! - destinations overlapping another app or the module's state were accepted;
//! - with the data partition full, ArtifactRollback failed and the new,
//!   uncommitted version kept running.

mod common;

use std::fs;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;
use mender_module_driver::{Artifact, Flavor, Installed, PayloadFile};
use nix::fcntl::{openat, OFlag};
use nix::sys::stat::{mkdirat, Mode};

fn artifact_for(name: &str, src: &Path, dest: &Path) -> Artifact {
    let (tar, spec) = pack(src, dest, None);
    Artifact::new(name, "persistent-app")
        .meta_data(&spec.to_meta_data().to_string())
        .payload(PayloadFile::bytes("app.tar", tar))
}

fn snapshot(dir: &Path) -> Vec<String> {
    let out = Command::new("find")
        .arg(dir)
        .arg("-printf")
        .arg("%P %y %s\n")
        .output()
        .unwrap();
    let mut lines: Vec<String> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    lines.sort();
    lines
}

#[test]
fn a_parent_replaced_by_a_symlink_after_download_stops_the_install_and_nothing_lands_outside() {
    let s = Sandbox::new("parent-symlink");
    make_v1(&s.src("v1"));
    let dest = s.root().join("team/demo-app");
    let art = artifact_for("demo-1.0", &s.src("v1"), &dest);
    let mut d = s.driver(Flavor::Go3);
    d.prepare_tree(&art).unwrap();
    d.download(&art.payloads, false).unwrap();
    // While the client waits between states, team/ becomes a symlink to a
    // directory outside the allowed root that looks exactly like it.
    let outside = s.dir.join("outside");
    Command::new("cp")
        .arg("-a")
        .arg(s.root().join("team"))
        .arg(&outside)
        .status()
        .unwrap();
    fs::rename(s.root().join("team"), s.dir.join("team-moved")).unwrap();
    symlink(&outside, s.root().join("team")).unwrap();
    let before = snapshot(&outside);

    let c = d.call("ArtifactInstall");
    assert!(!c.success(), "{c:?}");
    let line = error_line(&d, "ArtifactInstall");
    assert!(line.contains("a symlink or a file is in the way"), "{line}");
    assert_eq!(line.lines().count(), 1);
    assert_eq!(
        snapshot(&outside),
        before,
        "nothing may be written outside the allowed root"
    );
    assert!(!outside.join("demo-app").exists());
    report_bad_input("a directory on the way replaced by a symlink after Download");
}

/// `depth` directories below `dir`, made relative to each other (the path is
/// longer than any system call takes).
fn deep_tree(dir: &Path, depth: usize) {
    let name = "d".repeat(100);
    let mut cur: OwnedFd =
        nix::fcntl::open(dir, OFlag::O_DIRECTORY | OFlag::O_RDONLY, Mode::empty()).unwrap();
    for _ in 0..depth {
        mkdirat(cur.as_fd(), name.as_str(), Mode::from_bits_truncate(0o755)).unwrap();
        cur = openat(
            cur.as_fd(),
            name.as_str(),
            OFlag::O_DIRECTORY | OFlag::O_RDONLY,
            Mode::empty(),
        )
        .unwrap();
    }
    let f = openat(
        cur.as_fd(),
        "f",
        OFlag::O_CREAT | OFlag::O_WRONLY,
        Mode::from_bits_truncate(0o644),
    )
    .unwrap();
    drop(f);
}

#[test]
fn a_tree_deeper_than_path_max_made_by_the_app_does_not_block_commit_rollback_or_the_next_deployment(
) {
    for flavor in [Flavor::Go3, Flavor::Cpp5] {
        let s = Sandbox::new(&format!("deep-{flavor:?}"));
        make_v1(&s.src("v1"));
        make_v2(&s.src("v2"));
        make_v3(&s.src("v3"));
        let mut d = s.driver(flavor);
        d.install(&s.artifact("demo-1.0", &s.src("v1"), None))
            .unwrap();
        d.commit().unwrap();
        // The running app writes 100 levels of 100-byte names: 10 KB of path.
        deep_tree(&s.dest().join("data"), 100);
        // 2.0 rolled back: the rejected tree is deleted, the deep one comes back.
        d.install(&s.artifact("demo-2.0", &s.src("v2"), None))
            .unwrap();
        deep_tree(&s.dest().join("data"), 100);
        d.rollback().unwrap();
        assert!(s.dest().join("data/big.bin").exists());
        // 3.0 committed: the previous tree, deep one included, is deleted.
        d.install(&s.artifact("demo-3.0", &s.src("v3"), None))
            .unwrap();
        d.commit().unwrap();
        assert_eq!(
            manifest(&s.dest()).content(),
            manifest(&s.src("v3")).content(),
            "{flavor:?}"
        );
        assert_eq!(s.unfinished_journals(), Vec::<String>::new());
        let leftovers: Vec<_> = fs::read_dir(s.root())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(leftovers, vec!["demo-app"], "{flavor:?}");
    }
}

fn refused_in_download(s: &Sandbox, category: &str, art: &Artifact, want: &str) {
    let before = snapshot(&s.dir.join("apps"));
    let mut d = s.driver(Flavor::Go3);
    assert_eq!(d.install(art).unwrap(), Installed::NotModified);
    let line = error_line(&d, "Download");
    assert!(line.contains(want), "want {want:?} in {line}");
    assert_eq!(snapshot(&s.dir.join("apps")), before, "{want}");
    report_bad_input(category);
}

#[test]
fn destinations_overlapping_another_app_or_the_state_are_refused_in_download() {
    let s = Sandbox::new("overlap");
    make_v1(&s.src("v1"));
    // Another app, "team", installed and committed at apps/team.
    let team = s.root().join("team");
    let mut d = s.driver(Flavor::Go3);
    let (tar, mut spec) = pack(&s.src("v1"), &team, None);
    spec.name = "team".into();
    let art = Artifact::new("team-1.0", "persistent-app")
        .meta_data(&spec.to_meta_data().to_string())
        .payload(PayloadFile::bytes("app.tar", tar));
    d.install(&art).unwrap();
    d.commit().unwrap();

    let inside = artifact_for("demo-1.0", &s.src("v1"), &team.join("plugins"));
    refused_in_download(
        &s,
        "destination inside another app",
        &inside,
        "overlaps the directory of app team",
    );
    let hidden = artifact_for("demo-1.0", &s.src("v1"), &s.root().join(".team.previous/x"));
    refused_in_download(
        &s,
        "destination inside another app's previous version",
        &hidden,
        "overlaps a directory the module keeps for app team",
    );

    // The state directory below an allowed root.
    let conf = serde_json::json!({
        "allowed_roots": [s.dir.join("apps"), s.dir.clone()],
        "state_dir": s.state(),
    });
    fs::write(s.dir.join("persistent-app.conf"), conf.to_string()).unwrap();
    let state = artifact_for("demo-1.0", &s.src("v1"), &s.state().join("evil"));
    refused_in_download(
        &s,
        "destination inside the module's state",
        &state,
        "overlaps the module's state directory",
    );
    let parent_of_state = artifact_for("demo-1.0", &s.src("v1"), &s.dir.join("state"));
    refused_in_download(
        &s,
        "destination around the module's state",
        &parent_of_state,
        "overlaps the module's state directory",
    );
}

#[test]
fn a_destination_with_a_control_character_is_refused_in_download() {
    let s = Sandbox::new("control");
    make_v1(&s.src("v1"));
    let (tar, mut spec) = pack(&s.src("v1"), &s.dest(), None);
    spec.dest = format!("{}/demo\x1b[31mred", s.root().display());
    let meta = spec.to_meta_data().to_string();
    let art = Artifact::new("demo-1.0", "persistent-app")
        .meta_data(&meta)
        .payload(PayloadFile::bytes("app.tar", tar));
    refused_in_download(
        &s,
        "destination with a control character",
        &art,
        "it contains a control character",
    );
    let mut d = s.driver(Flavor::Go3);
    d.install(&art).unwrap();
    let line = error_line(&d, "Download");
    assert!(!line.contains('\x1b'), "{line:?}");
}

/// A tmpfs of `size` mounted on `dir` for the test's lifetime (tests run as
/// root, as the test command does; the mount is private to that directory).
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(dir: &Path, size: &str) -> Tmpfs {
        fs::create_dir_all(dir).unwrap();
        let status = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0755"),
                "tmpfs",
            ])
            .arg(dir)
            .status()
            .unwrap();
        assert!(
            status.success(),
            "mounting a tmpfs on {} needs root (scripts/test runs as root)",
            dir.display()
        );
        Tmpfs(dir.to_owned())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// Fills the filesystem of `dir` to the last byte.
fn fill(dir: &Path) {
    use std::io::Write;
    let mut f = fs::File::create(dir.join("filler")).unwrap();
    let block = vec![0u8; 4096];
    while f.write_all(&block).is_ok() {}
    while f.write_all(&[0u8]).is_ok() {}
    let _ = f.sync_all();
    let st = nix::sys::statvfs::statvfs(dir).unwrap();
    assert_eq!(st.blocks_available(), 0, "the filesystem is full");
}

#[test]
fn rollback_and_failure_succeed_on_a_data_partition_with_zero_free_bytes() {
    for flavor in [Flavor::Go3, Flavor::Cpp5] {
        let base =
            std::env::temp_dir().join(format!("pa-it-{}-full-{flavor:?}", std::process::id()));
        let _ = fs::remove_dir_all(&base);
        let _mount = Tmpfs::mount(&base, "8m");
        let s = Sandbox::at(&base);
        make_v1(&s.src("v1"));
        make_v2(&s.src("v2"));
        let mut d = s.driver(flavor);
        d.install(&s.artifact("demo-1.0", &s.src("v1"), None))
            .unwrap();
        d.commit().unwrap();
        let old = manifest(&s.dest()).content();
        d.install(&s.artifact("demo-2.0", &s.src("v2"), None))
            .unwrap();
        fill(&s.root());
        d.rollback().unwrap_or_else(|e| {
            panic!(
                "{flavor:?}: rollback on a full disk: {e:?}\n{:?}",
                d.calls()
            )
        });
        assert_eq!(
            manifest(&s.dest()).content(),
            old,
            "{flavor:?}: the previous version is back"
        );
        assert_eq!(s.unfinished_journals(), Vec::<String>::new(), "{flavor:?}");
    }
}

#[test]
fn the_device_policy_refuses_a_unit_it_does_not_allow_and_the_clients_own_unit_in_download() {
    let s = Sandbox::new("policy");
    make_v1(&s.src("v1"));
    let conf = serde_json::json!({
        "allowed_roots": [s.root()],
        "state_dir": s.state(),
        "allowed_services": ["demo-*"],
    });
    fs::write(s.dir.join("persistent-app.conf"), conf.to_string()).unwrap();
    refused_in_download(
        &s,
        "a unit the device policy does not allow",
        &s.artifact("demo-1.0", &s.src("v1"), Some("sshd.service")),
        "service sshd.service is not allowed on this device: allowed_services in",
    );
    refused_in_download(
        &s,
        "the Mender client's own unit",
        &s.artifact("demo-1.0", &s.src("v1"), Some("mender-updated.service")),
        "service mender-updated.service is the Mender client's own unit",
    );
    // What the policy allows installs as before.
    let systemctl = s.dir.join("systemctl");
    fs::write(
        &systemctl,
        "#!/bin/sh\n[ \"$1\" = is-active ] && echo active\nexit 0\n",
    )
    .unwrap();
    Command::new("chmod")
        .arg("755")
        .arg(&systemctl)
        .status()
        .unwrap();
    let mut d = s.driver(Flavor::Go3);
    d.env("PERSISTENT_APP_SYSTEMCTL", &systemctl);
    let r = d.install(&s.artifact("demo-1.0", &s.src("v1"), Some("demo-app.service")));
    assert!(matches!(r, Ok(Installed::AwaitingCommit { .. })), "{r:?}");
}
