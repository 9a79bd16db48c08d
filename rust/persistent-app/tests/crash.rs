//! Power cuts, simulated by SIGKILL at every fault point the module passes
//! (`PERSISTENT_APP_FAULT=POINT#N`, compiled into test builds only), then the
//! client's recovery in fresh processes. The app tree must end up exactly as
//! one of the two versions, never a mix: the old one after an interrupted
//! install or rollback, the new one after an interrupted commit run again.

mod common;

use std::collections::BTreeSet;

use common::*;
use mender_module_driver::{Artifact, Driver, Flavor};
use persistent_app::fault::POINTS;

/// Enough for any point's occurrences in these trees.
const MAX_HITS: usize = 64;

struct Setup {
    s: Sandbox,
    v2: Artifact,
    old: Manifest,
}

fn setup(name: &str, flavor: Flavor) -> Setup {
    let s = Sandbox::new(name);
    make_v1(&s.src("v1"));
    make_v2(&s.src("v2"));
    let mut d = s.driver(flavor);
    d.install(&s.artifact("demo-1.0", &s.src("v1"), None))
        .unwrap();
    d.commit().unwrap();
    let old = manifest(&s.root()).below_top();
    let v2 = s.artifact("demo-2.0", &s.src("v2"), None);
    Setup { s, v2, old }
}

fn killed(d: &Driver) -> bool {
    d.calls().iter().any(|c| c.status.is_none())
}

fn faulty(s: &Sandbox, flavor: Flavor, point: &str, n: usize) -> Driver {
    let mut d = s.driver(flavor);
    d.env("PERSISTENT_APP_FAULT", format!("{point}#{n}"));
    d
}

/// Runs the given states in new processes on a tree for `artifact`, as a
/// client does after rebooting; each must succeed.
fn recover(s: &Sandbox, flavor: Flavor, artifact: &Artifact, states: &[&str]) {
    let mut d = s.driver(flavor);
    d.prepare_tree(artifact).unwrap();
    for state in states {
        let c = d.call(state);
        assert!(c.success(), "recovery {state}: {c:?}");
    }
}

fn assert_clean(s: &Sandbox, want: &Manifest, why: &str) {
    assert_eq!(&manifest(&s.root()).below_top(), want, "{why}");
    assert!(s.journals().is_empty(), "{why}: {:?}", s.journals());
}

#[test]
fn an_install_killed_anywhere_recovers_to_exactly_the_old_tree() {
    for flavor in [Flavor::Go3, Flavor::Cpp5] {
        let mut fired = BTreeSet::new();
        for point in POINTS {
            for n in 1..=MAX_HITS {
                let Setup { s, v2, old } =
                    setup(&format!("crash-install-{flavor:?}-{point}-{n}"), flavor);
                let mut d = faulty(&s, flavor, point, n);
                let _ = d.install(&v2);
                if !killed(&d) {
                    break;
                }
                fired.insert(*point);
                let why = format!("{flavor:?} {point}#{n}: {:?}", d.sequence());
                recover(
                    &s,
                    flavor,
                    &v2,
                    &["ArtifactRollback", "ArtifactFailure", "Cleanup"],
                );
                assert_clean(&s, &old, &why);
            }
        }
        for point in [
            "extract-entry",
            "before-staged",
            "journal",
            "exchange",
            "rename",
        ] {
            assert!(
                fired.contains(point),
                "{flavor:?}: {point} never fired: {fired:?}"
            );
        }
    }
}

#[test]
fn a_rollback_killed_anywhere_and_run_again_restores_the_old_tree() {
    for flavor in [Flavor::Go3, Flavor::Cpp5] {
        let mut fired = BTreeSet::new();
        for point in POINTS {
            for n in 1..=MAX_HITS {
                let Setup { s, v2, old } =
                    setup(&format!("crash-rollback-{flavor:?}-{point}-{n}"), flavor);
                s.driver(flavor).install(&v2).unwrap();
                let mut d = faulty(&s, flavor, point, n);
                let c = d.call("ArtifactRollback");
                if c.status.is_some() {
                    assert!(c.success(), "{c:?}");
                    break;
                }
                fired.insert(*point);
                recover(
                    &s,
                    flavor,
                    &v2,
                    &["ArtifactRollback", "ArtifactFailure", "Cleanup"],
                );
                assert_clean(&s, &old, &format!("{flavor:?} {point}#{n}"));
            }
        }
        for point in [
            "journal",
            "exchange",
            "remove-entry",
            "remove-tree",
            "clear-journal",
        ] {
            assert!(
                fired.contains(point),
                "{flavor:?}: {point} never fired: {fired:?}"
            );
        }
    }
}

#[test]
fn a_commit_killed_anywhere_and_run_again_keeps_exactly_the_new_tree() {
    for flavor in [Flavor::Go3, Flavor::Cpp5] {
        let mut fired = BTreeSet::new();
        for point in POINTS {
            for n in 1..=MAX_HITS {
                let Setup { s, v2, .. } =
                    setup(&format!("crash-commit-{flavor:?}-{point}-{n}"), flavor);
                s.driver(flavor).install(&v2).unwrap();
                let new = manifest(&s.dest());
                let mut d = faulty(&s, flavor, point, n);
                let c = d.call("ArtifactCommit");
                if c.status.is_some() {
                    assert!(c.success(), "{c:?}");
                    break;
                }
                fired.insert(*point);
                recover(&s, flavor, &v2, &["ArtifactCommit", "Cleanup"]);
                let mut want = Manifest(Default::default());
                for (k, v) in new.0.iter() {
                    let key = if k == "." {
                        "demo-app".to_owned()
                    } else {
                        format!("demo-app/{k}")
                    };
                    want.0.insert(key, v.clone());
                }
                assert_clean(&s, &want, &format!("{flavor:?} {point}#{n}"));
            }
        }
        for point in ["journal", "remove-entry", "remove-tree", "clear-journal"] {
            assert!(
                fired.contains(point),
                "{flavor:?}: {point} never fired: {fired:?}"
            );
        }
    }
}

#[test]
fn sigterm_while_waiting_for_the_stream_stops_cleanly_and_cleanup_restores_the_old_state() {
    use std::process::{Command, Stdio};
    let Setup { s, v2, old } = setup("sigterm", Flavor::Go3);
    let d = s.driver(Flavor::Go3);
    d.prepare_tree(&v2).unwrap();
    let tree = d.tree();
    std::fs::create_dir_all(tree.join("streams")).unwrap();
    nix::unistd::mkfifo(
        &tree.join("stream-next"),
        nix::sys::stat::Mode::from_bits_truncate(0o600),
    )
    .unwrap();
    // Nobody writes stream-next: the module blocks in open() after staging began.
    let child = Command::new(MODULE)
        .args(["Download".as_ref(), tree.as_os_str()])
        .current_dir(&tree)
        .env("PERSISTENT_APP_CONF", s.dir.join("persistent-app.conf"))
        .env("PERSISTENT_APP_LOCK", s.dir.join("lock"))
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(500));
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::SIGTERM,
    )
    .unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("stopped by SIGTERM"), "{stderr}");
    recover(&s, Flavor::Go3, &v2, &["Cleanup"]);
    assert_clean(&s, &old, "after SIGTERM");
}
