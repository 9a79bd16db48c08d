//! Power cuts, simulated by SIGKILL at every fault point the module passes
//! (`PERSISTENT_APP_FAULT=*:POINT:N`, compiled into test builds only), then the
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
    setup_with(name, flavor, None)
}

fn setup_with(name: &str, flavor: Flavor, download: Option<&str>) -> Setup {
    let s = Sandbox::new(name);
    s.configure(download);
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
    d.env("PERSISTENT_APP_FAULT", format!("*:{point}:{n}"));
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
    assert!(
        s.unfinished_journals().is_empty(),
        "{why}: {:?}",
        s.unfinished_journals()
    );
}

#[test]
fn an_install_killed_anywhere_recovers_to_exactly_the_old_tree() {
    install_killed_anywhere(None);
}

#[test]
fn a_stored_install_killed_anywhere_recovers_to_exactly_the_old_tree() {
    // The extraction runs in ArtifactInstall, from files/.
    install_killed_anywhere(Some("store"));
}

fn install_killed_anywhere(download: Option<&str>) {
    for flavor in [Flavor::Go3, Flavor::Cpp5] {
        let mut fired = BTreeSet::new();
        for point in POINTS {
            for n in 1..=MAX_HITS {
                let Setup { s, v2, old } = setup_with(
                    &format!("crash-install-{flavor:?}-{download:?}-{point}-{n}"),
                    flavor,
                    download,
                );
                let mut d = faulty(&s, flavor, point, n);
                let _ = d.install(&v2);
                if !killed(&d) {
                    break;
                }
                fired.insert(*point);
                let why = format!("{flavor:?} {download:?} {point}#{n}: {:?}", d.sequence());
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

/// The app's tree without its top directory (whose mtime is the install's).
fn app_files(s: &Sandbox) -> Manifest {
    manifest(&s.dest()).below_top()
}

fn ran(d: &Driver, state: &str) -> bool {
    d.sequence().iter().any(|c| c == state)
}

/// `persistent-app recover`, as persistent-app-recover.service runs it at boot.
fn boot_recovery(s: &Sandbox) {
    let out = std::process::Command::new(MODULE)
        .arg("recover")
        .env("PERSISTENT_APP_CONF", s.dir.join("persistent-app.conf"))
        .env("PERSISTENT_APP_LOCK", s.dir.join("lock"))
        .output()
        .unwrap();
    assert!(out.status.success(), "recover: {out:?}");
}

#[test]
fn an_install_the_client_lost_is_put_back_at_boot_or_by_the_next_download() {
    // mender 3.x standalone records an install only once ArtifactInstall
    // returns: killed before that, no recovery state ever runs. The boot's
    // `recover` (or, without it, the next Download) puts the old tree back
    // unless the install had returned; then the next deployment installs.
    let flavor = Flavor::Go3;
    let new = {
        let Setup { s, v2, .. } = setup("crash-lost-reference", flavor);
        let mut d = s.driver(flavor);
        d.install(&v2).unwrap();
        d.commit().unwrap();
        app_files(&s)
    };
    let mut swapping = 0;
    for (state, point) in ["Download", "ArtifactInstall"]
        .iter()
        .flat_map(|s| POINTS.iter().map(move |p| (s, p)))
    {
        'hits: for n in 1..=MAX_HITS {
            for at_boot in [true, false] {
                let Setup { s, v2, old } =
                    setup(&format!("crash-lost-{state}-{point}-{n}-{at_boot}"), flavor);
                // The power goes: no state runs after the killed one.
                let mut d = s.driver(flavor);
                d.env("PERSISTENT_APP_FAULT", format!("{state}:{point}:{n}"));
                d.prepare_tree(&v2).unwrap();
                if d.download(&v2.payloads, false).is_ok() && !killed(&d) {
                    d.call("ArtifactInstall");
                }
                if !killed(&d) {
                    break 'hits;
                }
                let why = format!("{state}:{point}#{n} at_boot={at_boot}: {:?}", d.sequence());
                let phase = s.journal_phase("demo-app");
                if at_boot {
                    boot_recovery(&s);
                    if phase.as_deref() == Some("swapping") {
                        swapping += 1;
                        assert_eq!(manifest(&s.root()).below_top(), old, "{why}");
                        assert!(s.unfinished_journals().is_empty(), "{why}");
                    }
                }
                let mut next = s.driver(flavor);
                next.install(&v2).unwrap();
                let line = next.calls().last().map(|c| c.stderr.clone());
                if phase.as_deref() == Some("swapped") {
                    // The install returned: the client holds it for a commit.
                    assert!(!ran(&next, "ArtifactInstall"), "{why}");
                    continue;
                }
                assert!(ran(&next, "ArtifactInstall"), "{why}: {line:?}");
                next.commit().unwrap();
                assert_eq!(app_files(&s), new, "{why}");
            }
        }
    }
    assert!(swapping >= 2, "{swapping} cuts inside the swap");
}

#[test]
fn a_rollback_killed_anywhere_and_run_again_restores_the_old_tree() {
    // The rollback's work is spread over the states the client runs for
    // it: ArtifactRollback puts the old tree back (and the journal stays
    // `rolling-back`), ArtifactFailure or Cleanup deletes the rejected one
    // and the journal. Each is killed at every point.
    for flavor in [Flavor::Go3, Flavor::Cpp5] {
        // `mender rollback` / `mender-update rollback`.
        let sequence: &[&str] = match flavor {
            Flavor::Go3 => &["ArtifactRollback", "Cleanup"],
            Flavor::Cpp5 => &["ArtifactRollback", "ArtifactFailure", "Cleanup"],
        };
        let mut fired = BTreeSet::new();
        for (k, state) in sequence.iter().enumerate() {
            for point in POINTS {
                for n in 1..=MAX_HITS {
                    let Setup { s, v2, old } = setup(
                        &format!("crash-rollback-{flavor:?}-{state}-{point}-{n}"),
                        flavor,
                    );
                    s.driver(flavor).install(&v2).unwrap();
                    let mut d = s.driver(flavor);
                    for before in &sequence[..k] {
                        let c = d.call(before);
                        assert!(c.success(), "{c:?}");
                    }
                    let mut d = faulty(&s, flavor, point, n);
                    let c = d.call(state);
                    if c.status.is_some() {
                        assert!(c.success(), "{c:?}");
                        break;
                    }
                    fired.insert(format!("{state} {point}"));
                    recover(&s, flavor, &v2, sequence);
                    assert_clean(&s, &old, &format!("{flavor:?} {state} {point}#{n}"));
                }
            }
        }
        let finisher = sequence[1];
        for point in [
            "ArtifactRollback journal".to_owned(),
            "ArtifactRollback exchange".to_owned(),
            format!("{finisher} remove-entry"),
            format!("{finisher} remove-tree"),
            format!("{finisher} clear-journal"),
        ] {
            assert!(
                fired.contains(&point),
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
                assert_eq!(s.phase().as_deref(), Some("committed"), "{point}#{n}");
            }
        }
        for point in ["journal", "remove-entry", "remove-tree"] {
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

/// The window the tombstone closes: the commit is complete on disk (the
/// previous version deleted) but the process dies before it exits 0, so
/// the client takes the commit as failed and rolls back. That rollback
/// must fail loudly: succeeding would report the old version while the
/// new one stays.
#[test]
fn a_commit_killed_after_completing_makes_the_following_rollback_fail_loudly() {
    for flavor in [Flavor::Go3, Flavor::Cpp5] {
        let Setup { s, v2, .. } = setup(&format!("crash-tombstone-{flavor:?}"), flavor);
        s.driver(flavor).install(&v2).unwrap();
        let new = manifest(&s.root()).below_top();
        // ArtifactCommit writes the journal twice, `committing` and then
        // the tombstone; the second write is its last act before exit.
        let mut d = faulty(&s, flavor, "journal", 2);
        let c = d.call("ArtifactCommit");
        assert_eq!(c.status, None, "killed: {c:?}");
        assert_eq!(s.phase().as_deref(), Some("committed"));

        // The client's error path for a failed commit, in fresh processes.
        let mut d = s.driver(flavor);
        d.prepare_tree(&v2).unwrap();
        let rollback = d.call("ArtifactRollback");
        assert!(!rollback.success(), "{rollback:?}");
        let line = error_line(&d, "ArtifactRollback");
        assert!(
            line.contains(
                "cannot roll back demo-2.0: its commit already completed and removed the previous version"
            ),
            "{line}"
        );
        for state in ["ArtifactFailure", "Cleanup"] {
            let c = d.call(state);
            assert!(c.success(), "{c:?}");
        }
        // Consistently the new version: one tree, no leftovers, and the
        // refusal stands however often the client asks.
        let want_rel: std::collections::BTreeMap<_, _> = new
            .0
            .iter()
            .filter(|(k, _)| !k.starts_with(".demo-app.previous"))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        assert_eq!(manifest(&s.root()).below_top(), Manifest(want_rel));
        assert!(!d.call("ArtifactRollback").success());
        assert_eq!(s.phase().as_deref(), Some("committed"));

        // The next deployment's Download removes the tombstone.
        make_v3(&s.src("v3"));
        let mut d = s.driver(flavor);
        d.install(&s.artifact("demo-3.0", &s.src("v3"), None))
            .unwrap();
        assert_eq!(s.phase().as_deref(), Some("swapped"));
        d.rollback().unwrap();
        assert_eq!(s.phase(), None, "{:?}", s.journals());
    }
}
