//! Install, upgrade, commit and rollback through real FIFOs, in both
//! client orders, compared file by file with the source trees.

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use common::*;
use mender_module_driver::{Artifact, Delivery, Driver, Flavor, Installed, PayloadFile};
use persistent_app::spec::RELEASE_MARKER;

const FLAVORS: [Flavor; 2] = [Flavor::Go3, Flavor::Cpp5];

fn awaiting(r: Installed) {
    assert!(
        matches!(
            r,
            Installed::AwaitingCommit {
                delivery: Delivery::Streamed,
                supports_rollback: true
            }
        ),
        "{r:?}"
    );
}

#[test]
fn a_first_install_puts_exactly_the_source_tree_in_place() {
    for flavor in FLAVORS {
        let s = Sandbox::new(&format!("first-{flavor:?}"));
        make_v1(&s.src("v1"));
        let mut d = s.driver(flavor);
        awaiting(
            d.install(&s.artifact("demo-1.0", &s.src("v1"), None))
                .unwrap(),
        );
        d.commit().unwrap();
        assert_eq!(
            manifest(&s.dest()).content(),
            manifest(&s.src("v1")).content(),
            "{flavor:?}"
        );
        // Exactly the payload: nothing of the module's in the app's tree.
        assert!(!s.dest().join(RELEASE_MARKER).exists());
        let names: Vec<_> = fs::read_dir(s.root())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["demo-app"], "no staging or previous tree is left");
        assert!(
            s.unfinished_journals().is_empty(),
            "{:?}",
            s.unfinished_journals()
        );
        assert_eq!(
            s.phase().as_deref(),
            Some("committed"),
            "the commit's tombstone"
        );
    }
}

#[test]
fn rollback_restores_the_old_tree_byte_for_byte() {
    for flavor in FLAVORS {
        let s = Sandbox::new(&format!("rollback-{flavor:?}"));
        make_v1(&s.src("v1"));
        make_v2(&s.src("v2"));
        let mut d = s.driver(flavor);
        d.install(&s.artifact("demo-1.0", &s.src("v1"), None))
            .unwrap();
        d.commit().unwrap();
        let before = manifest(&s.root()).below_top();

        awaiting(
            d.install(&s.artifact("demo-2.0", &s.src("v2"), None))
                .unwrap(),
        );
        assert_eq!(
            manifest(&s.dest()).content(),
            manifest(&s.src("v2")).content()
        );
        assert!(s.root().join(".demo-app.previous").is_dir());

        d.rollback().unwrap();
        // Same paths, types, modes, mtimes (to the nanosecond), contents,
        // links and hard links, including the tree root and its marker.
        assert_eq!(manifest(&s.root()).below_top(), before, "{flavor:?}");
        assert!(
            !s.dest().join("share/new.txt").exists(),
            "v2's new file is gone"
        );
        assert!(
            s.dest().join("etc/old-only.conf").exists(),
            "v1's file is back"
        );
        assert!(s.unfinished_journals().is_empty());
    }
}

#[test]
fn commit_keeps_the_new_tree_and_drops_the_previous_one() {
    for flavor in FLAVORS {
        let s = Sandbox::new(&format!("commit-{flavor:?}"));
        make_v1(&s.src("v1"));
        make_v2(&s.src("v2"));
        let mut d = s.driver(flavor);
        d.install(&s.artifact("demo-1.0", &s.src("v1"), None))
            .unwrap();
        d.commit().unwrap();
        d.install(&s.artifact("demo-2.0", &s.src("v2"), None))
            .unwrap();
        let installed = manifest(&s.root().join("demo-app"));
        d.commit().unwrap();
        assert_eq!(manifest(&s.dest()), installed);
        assert_eq!(
            manifest(&s.dest()).content(),
            manifest(&s.src("v2")).content()
        );
        assert!(!s.root().join(".demo-app.previous").exists());
        assert!(!s.root().join(".demo-app.staging").exists());
        assert!(s.unfinished_journals().is_empty());
    }
}

#[test]
fn reinstalling_the_same_artifact_name_still_rolls_back_to_the_old_tree() {
    let s = Sandbox::new("same-name");
    make_v1(&s.src("v1"));
    make_v2(&s.src("v2"));
    let mut d = s.driver(Flavor::Cpp5);
    d.install(&s.artifact("demo", &s.src("v1"), None)).unwrap();
    d.commit().unwrap();
    let before = manifest(&s.root()).below_top();
    d.install(&s.artifact("demo", &s.src("v2"), None)).unwrap();
    d.rollback().unwrap();
    assert_eq!(manifest(&s.root()).below_top(), before);
}

#[test]
fn a_new_download_is_refused_while_an_install_awaits_commit() {
    let s = Sandbox::new("pending");
    make_v1(&s.src("v1"));
    make_v2(&s.src("v2"));
    make_v3(&s.src("v3"));
    let mut d = s.driver(Flavor::Go3);
    d.install(&s.artifact("demo-1.0", &s.src("v1"), None))
        .unwrap();
    d.commit().unwrap();
    d.install(&s.artifact("demo-2.0", &s.src("v2"), None))
        .unwrap();
    let next = s.artifact("demo-3.0", &s.src("v3"), None);
    assert_pending_refuses(&s, &mut d, &next, "demo-2.0");
}

/// A second install while `pending` waits for commit or rollback is refused
/// in Download, naming it, and the tree under the app root stays as it was.
fn assert_pending_refuses(s: &Sandbox, d: &mut Driver, next: &Artifact, pending: &str) {
    let before = manifest(&s.root()).below_top();
    assert_eq!(d.install(next).unwrap(), Installed::NotModified);
    let line = error_line(d, "Download");
    assert!(
        line.contains(&format!(
            "{pending} is installed but neither committed nor rolled back"
        )),
        "{line}"
    );
    assert_eq!(manifest(&s.root()).below_top(), before);
}

fn community(name: &str, dest: &Path, files: &[(&str, &[u8])], dest_position: usize) -> Artifact {
    let mut a = Artifact::new(name, "persistent-app");
    let mut payloads: Vec<PayloadFile> = files
        .iter()
        .map(|(n, c)| PayloadFile::bytes(n, c.to_vec()))
        .collect();
    payloads.insert(
        dest_position,
        PayloadFile::bytes("dest_dir", format!("{}\n", dest.display())),
    );
    a.payloads = payloads;
    a
}

#[test]
fn community_artifacts_install_flat_files_wherever_dest_dir_comes() {
    for flavor in FLAVORS {
        for position in [0, 1, 2] {
            let s = Sandbox::new(&format!("community-{flavor:?}-{position}"));
            let mut d = s.driver(flavor);
            let files: &[(&str, &[u8])] = &[("a.conf", b"alpha"), ("b.bin", &[9u8; 100_000])];
            awaiting(
                d.install(&community("c-1.0", &s.dest(), files, position))
                    .unwrap(),
            );
            d.commit().unwrap();
            assert_eq!(fs::read(s.dest().join("a.conf")).unwrap(), b"alpha");
            assert_eq!(fs::read(s.dest().join("b.bin")).unwrap().len(), 100_000);
            assert!(!s.dest().join("dest_dir").exists());
            let mode = fs::metadata(s.dest().join("a.conf"))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o644);

            // And a second community version rolls back like ours.
            let before = manifest(&s.root()).below_top();
            let files: &[(&str, &[u8])] = &[("a.conf", b"beta")];
            awaiting(
                d.install(&community("c-2.0", &s.dest(), files, position.min(1)))
                    .unwrap(),
            );
            assert_eq!(fs::read(s.dest().join("a.conf")).unwrap(), b"beta");
            assert!(!s.dest().join("b.bin").exists());
            d.rollback().unwrap();
            assert_eq!(
                manifest(&s.root()).below_top(),
                before,
                "{flavor:?} {position}"
            );
            assert!(s.unfinished_journals().is_empty());
        }
    }
}

#[test]
fn payloads_the_client_stored_are_installed_in_artifact_install() {
    for flavor in FLAVORS {
        let s = Sandbox::new(&format!("stored-{flavor:?}"));
        make_v1(&s.src("v1"));
        let mut d = s.driver(flavor);
        // Our format: a client that stored app.tar under files/.
        let art = s.artifact("demo-1.0", &s.src("v1"), None);
        d.prepare_tree(&art).unwrap();
        let files = d.tree().join("files");
        fs::create_dir_all(&files).unwrap();
        let mender_module_driver::PayloadSource::Bytes(tar) = &art.payloads[0].source else {
            unreachable!()
        };
        fs::write(files.join("app.tar"), tar).unwrap();
        let c = d.call("ArtifactInstall");
        assert!(c.success(), "{c:?}");
        assert!(d.call("ArtifactCommit").success());
        assert!(d.call("Cleanup").success());
        assert_eq!(
            manifest(&s.dest()).content(),
            manifest(&s.src("v1")).content()
        );

        // The community format: dest_dir sorts after some files.
        let other = s.root().join("other");
        let art = community(
            "c-1.0",
            &other,
            &[("a.conf", b"alpha"), ("z.conf", b"zulu")],
            0,
        );
        d.prepare_tree(&art).unwrap();
        let files = d.tree().join("files");
        fs::create_dir_all(&files).unwrap();
        for p in &art.payloads {
            let mender_module_driver::PayloadSource::Bytes(b) = &p.source else {
                unreachable!()
            };
            fs::write(files.join(&p.name), b).unwrap();
        }
        let c = d.call("ArtifactInstall");
        assert!(c.success(), "{c:?}");
        assert!(d.call("ArtifactRollback").success());
        assert!(d.call("Cleanup").success());
        assert!(
            !other.exists(),
            "a rolled-back fresh install leaves nothing"
        );
        assert!(
            s.unfinished_journals().is_empty(),
            "{:?}",
            s.unfinished_journals()
        );
    }
}

/// A stand-in for systemctl (no systemd runs here): unit states in files,
/// every call logged with the artifact that is in the destination then.
fn fake_systemctl(s: &Sandbox) -> std::path::PathBuf {
    let dir = s.dir.join("systemd");
    fs::create_dir_all(&dir).unwrap();
    let script = format!(
        r#"#!/bin/sh
dir={dir}
cmd=$1; shift
[ "$1" = "--no-block" ] && shift
[ "$1" = "--" ] && shift
unit=$1
# The version the tree in place says it is (etc/app.conf of make_v1/make_v2).
here=demo-$(sed -n 's/^version=//p' {dest}/etc/app.conf 2>/dev/null).0
echo "$cmd $unit $here" >> $dir/log
case $cmd in
  is-active) s=$(cat $dir/$unit 2>/dev/null || echo inactive); echo $s; [ "$s" = active ] ;;
  stop) echo inactive > $dir/$unit ;;
  start) if [ -e "$dir/fail-$here" ]; then echo failed > $dir/$unit; else echo active > $dir/$unit; fi ;;
  *) exit 1 ;;
esac
"#,
        dir = dir.display(),
        dest = s.dest().display(),
    );
    let path = dir.join("systemctl");
    fs::write(&path, script).unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).unwrap();
    path
}

fn log(s: &Sandbox) -> Vec<String> {
    fs::read_to_string(s.dir.join("systemd/log"))
        .unwrap_or_default()
        .lines()
        .filter(|l| !l.starts_with("is-active"))
        .map(str::to_owned)
        .collect()
}

#[test]
fn the_unit_is_stopped_before_the_swap_and_started_after_it() {
    for flavor in FLAVORS {
        let s = Sandbox::new(&format!("service-{flavor:?}"));
        make_v1(&s.src("v1"));
        make_v2(&s.src("v2"));
        let systemctl = fake_systemctl(&s);
        let mut d = s.driver(flavor);
        d.env("PERSISTENT_APP_SYSTEMCTL", &systemctl);
        d.install(&s.artifact("demo-1.0", &s.src("v1"), Some("demo.service")))
            .unwrap();
        d.commit().unwrap();
        assert_eq!(log(&s), ["start demo.service demo-1.0"]);
        d.install(&s.artifact("demo-2.0", &s.src("v2"), Some("demo.service")))
            .unwrap();
        d.commit().unwrap();
        assert_eq!(
            log(&s)[1..],
            ["stop demo.service demo-1.0", "start demo.service demo-2.0"],
            "{flavor:?}"
        );
    }
}

#[test]
fn a_unit_that_fails_to_start_rolls_back_and_the_old_one_runs_again() {
    for flavor in FLAVORS {
        let s = Sandbox::new(&format!("service-fail-{flavor:?}"));
        make_v1(&s.src("v1"));
        make_v2(&s.src("v2"));
        let systemctl = fake_systemctl(&s);
        fs::write(s.dir.join("systemd/fail-demo-2.0"), "").unwrap();
        let mut d = s.driver(flavor);
        d.env("PERSISTENT_APP_SYSTEMCTL", &systemctl);
        d.install(&s.artifact("demo-1.0", &s.src("v1"), Some("demo.service")))
            .unwrap();
        d.commit().unwrap();
        let before = manifest(&s.root()).below_top();
        let r = d
            .install(&s.artifact("demo-2.0", &s.src("v2"), Some("demo.service")))
            .unwrap();
        assert_eq!(r, Installed::RolledBack);
        let line = error_line(&d, "ArtifactInstall");
        assert!(
            line.contains("service demo.service: failed to start"),
            "{line}"
        );
        assert_eq!(manifest(&s.root()).below_top(), before, "{flavor:?}");
        assert_eq!(
            log(&s)[1..],
            [
                "stop demo.service demo-1.0",
                "start demo.service demo-2.0",
                "start demo.service demo-1.0"
            ],
            "{flavor:?}"
        );
        assert_eq!(
            fs::read_to_string(s.dir.join("systemd/demo.service"))
                .unwrap()
                .trim(),
            "active"
        );
        assert!(s.unfinished_journals().is_empty());
    }
}

#[test]
fn a_state_waits_for_the_lock_held_by_another() {
    use nix::fcntl::{Flock, FlockArg};
    let s = Sandbox::new("lock");
    make_v1(&s.src("v1"));
    let d = s.driver(Flavor::Go3);
    d.prepare_tree(&s.artifact("demo-1.0", &s.src("v1"), None))
        .unwrap();
    let file = fs::File::create(s.dir.join("lock")).unwrap();
    let held = Flock::lock(file, FlockArg::LockExclusive).unwrap();
    let mut child = std::process::Command::new(MODULE)
        .arg("Cleanup")
        .arg(d.tree())
        .env("PERSISTENT_APP_CONF", s.dir.join("persistent-app.conf"))
        .env("PERSISTENT_APP_LOCK", s.dir.join("lock"))
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(400));
    assert!(
        child.try_wait().unwrap().is_none(),
        "Cleanup ran while the lock was held"
    );
    drop(held);
    assert!(child.wait().unwrap().success());
}

/// `"download": "store"` in the device configuration: Download checks
/// everything it can without reading the payload and leaves stream-next
/// alone, the client stores app.tar under files/, ArtifactInstall extracts
/// it. Under both clients' orders (the C++ one with DownloadWithFileSizes).
#[test]
fn store_mode_installs_commits_and_rolls_back_from_the_files_the_client_stored() {
    for flavor in FLAVORS {
        let s = Sandbox::new(&format!("store-{flavor:?}"));
        s.configure(Some("store"));
        make_v1(&s.src("v1"));
        make_v2(&s.src("v2"));
        let stored = |r: Installed| {
            assert_eq!(
                r,
                Installed::AwaitingCommit {
                    delivery: Delivery::Stored,
                    supports_rollback: true
                },
                "{flavor:?}"
            )
        };
        let mut d = s.driver(flavor);
        stored(
            d.install(&s.artifact("demo-1.0", &s.src("v1"), None))
                .unwrap(),
        );
        let download = &d
            .calls()
            .iter()
            .find(|c| c.arg.starts_with("Download"))
            .unwrap();
        assert!(
            download.stderr.contains("download mode \"store\""),
            "{download:?}"
        );
        let install = &d
            .calls()
            .iter()
            .find(|c| c.arg == "ArtifactInstall")
            .unwrap();
        assert!(
            install
                .stderr
                .contains("from the payloads the client stored under files/"),
            "{install:?}"
        );
        d.commit().unwrap();
        assert_eq!(
            manifest(&s.dest()).content(),
            manifest(&s.src("v1")).content(),
            "{flavor:?}"
        );
        let before = manifest(&s.root()).below_top();

        stored(
            d.install(&s.artifact("demo-2.0", &s.src("v2"), None))
                .unwrap(),
        );
        assert_eq!(
            manifest(&s.dest()).content(),
            manifest(&s.src("v2")).content()
        );
        d.rollback().unwrap();
        assert_eq!(manifest(&s.root()).below_top(), before, "{flavor:?}");
        assert!(s.unfinished_journals().is_empty());

        stored(
            d.install(&s.artifact("demo-2.0", &s.src("v2"), None))
                .unwrap(),
        );
        d.commit().unwrap();
        assert_eq!(
            manifest(&s.dest()).content(),
            manifest(&s.src("v2")).content()
        );
        let names: Vec<_> = fs::read_dir(s.root())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["demo-app"], "no staging or previous tree is left");
        assert_eq!(s.phase().as_deref(), Some("committed"));
    }
}

#[test]
fn store_mode_refuses_a_pending_install_in_download_before_the_client_stores_anything() {
    for flavor in FLAVORS {
        let s = Sandbox::new(&format!("store-pending-{flavor:?}"));
        s.configure(Some("store"));
        make_v1(&s.src("v1"));
        make_v2(&s.src("v2"));
        let mut d = s.driver(flavor);
        d.install(&s.artifact("demo-1.0", &s.src("v1"), None))
            .unwrap();
        let next = s.artifact("demo-2.0", &s.src("v2"), None);
        assert_pending_refuses(&s, &mut d, &next, "demo-1.0");
    }
}

/// A commit the client asks for without anything installed must not be
/// reported as done.
#[test]
fn a_commit_of_an_artifact_that_was_never_installed_fails() {
    for flavor in FLAVORS {
        let s = Sandbox::new(&format!("commit-nothing-{flavor:?}"));
        make_v1(&s.src("v1"));
        let mut d = s.driver(flavor);
        d.prepare_tree(&s.artifact("demo-1.0", &s.src("v1"), None))
            .unwrap();
        assert!(!d.call("ArtifactCommit").success());
        let line = error_line(&d, "ArtifactCommit");
        assert!(line.contains("was not installed"), "{line}");
        assert!(!s.dest().exists());
    }
}
