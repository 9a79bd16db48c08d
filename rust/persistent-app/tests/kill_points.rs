//! Every (state, fault point) pair the module reaches, killed and recovered.
//!
//! Each scenario is run once with `PERSISTENT_APP_FAULT_TRACE`, which lists
//! every point each state process passes; then, for every (state, point)
//! pair and a few of its occurrences (the first, the second, the last), the
//! scenario runs again on a fresh sandbox with SIGKILL there
//! (`PERSISTENT_APP_FAULT=<State>:<point>:<n>`), the client's recovery states
//! run in fresh processes, and the app's tree must be exactly one version,
//! the right one, with nothing left behind. The pairs reached and killed are
//! counted and written to `$KILL_POINTS_REPORT` when set
//! (scripts/reliability-report prints them).

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use common::*;
use mender_module_driver::{Artifact, Driver, Flavor, PayloadFile};

/// Which version a scenario's tree must show after a kill and recovery.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Want {
    Old,
    /// Killed before its commit began: old; in the commit or after: new.
    OldUntilCommit,
}

struct Scenario {
    name: &'static str,
    want: Want,
    /// Sets the device up (before tracing or killing anything).
    setup: fn(&Sandbox, Flavor),
    /// The client's operations under test.
    run: fn(&Sandbox, &mut Driver, &Artifact),
    /// The new version's artifact.
    artifact: fn(&Sandbox) -> Artifact,
    /// Extra environment for every module process (fault-injection builds).
    env: &'static [(&'static str, &'static str)],
}

fn v1_committed(s: &Sandbox, flavor: Flavor) {
    make_v1(&s.src("v1"));
    make_v2(&s.src("v2"));
    let mut d = driver(s, flavor, &[]);
    d.install(&s.artifact("demo-1.0", &s.src("v1"), service(s)))
        .unwrap();
    d.commit().unwrap();
}

/// A unit for scenarios that have one (a fake systemctl in the sandbox).
fn service(s: &Sandbox) -> Option<&'static str> {
    s.dir.join("systemctl").exists().then_some("demo.service")
}

fn with_unit(s: &Sandbox, flavor: Flavor) {
    let script = "#!/bin/sh\n[ \"$1\" = is-active ] && { cat \"$(dirname \"$0\")/unit\" 2>/dev/null || echo inactive; }\n\
                  case \"$1\" in stop) echo inactive > \"$(dirname \"$0\")/unit\" ;; \
                  start) echo active > \"$(dirname \"$0\")/unit\" ;; esac\n\
                  [ \"$1\" != is-active ] || [ \"$(cat \"$(dirname \"$0\")/unit\" 2>/dev/null)\" = active ]\n";
    fs::write(s.dir.join("systemctl"), script).unwrap();
    fs::set_permissions(s.dir.join("systemctl"), fs::Permissions::from_mode(0o755)).unwrap();
    v1_committed(s, flavor);
}

/// A unit that fails to start with version 2 (etc/app.conf of make_v2).
fn with_failing_unit(s: &Sandbox, flavor: Flavor) {
    let script = "#!/bin/sh\nhere=$(dirname \"$0\")\n\
                  case \"$1\" in stop) echo inactive > \"$here/unit\" ;; \
                  start) if grep -q version=2 \"$DEST/etc/app.conf\" 2>/dev/null; then echo failed > \"$here/unit\"; \
                  else echo active > \"$here/unit\"; fi ;; \
                  is-active) s=$(cat \"$here/unit\" 2>/dev/null || echo inactive); echo $s; [ \"$s\" = active ] ;; esac\n";
    fs::write(
        s.dir.join("systemctl"),
        script.replace("$DEST", &s.dest().display().to_string()),
    )
    .unwrap();
    fs::set_permissions(s.dir.join("systemctl"), fs::Permissions::from_mode(0o755)).unwrap();
    v1_committed(s, flavor);
}

fn community_v1(s: &Sandbox, flavor: Flavor) {
    make_v1(&s.src("v1"));
    let mut d = driver(s, flavor, &[]);
    d.install(&community(s, "demo-1.0", b"one")).unwrap();
    d.commit().unwrap();
}

fn community(s: &Sandbox, name: &str, content: &[u8]) -> Artifact {
    let mut a = Artifact::new(name, "persistent-app");
    a.payloads = vec![
        PayloadFile::bytes("a.conf", content.to_vec()),
        PayloadFile::bytes("dest_dir", format!("{}\n", s.dest().display())),
        PayloadFile::bytes("b.bin", vec![7u8; 50_000]),
    ];
    a
}

/// v1 installed, then a Download of v2 killed halfway: what the next
/// deployment's Download has to clear away first.
fn abandoned(s: &Sandbox, flavor: Flavor) {
    v1_committed(s, flavor);
    let mut d = driver(s, flavor, &[("PERSISTENT_APP_FAULT", "*:extract-entry:5")]);
    let _ = d.install(&s.artifact("demo-2.0", &s.src("v2"), None));
    assert!(
        d.calls().iter().any(|c| c.status.is_none()),
        "the Download was killed"
    );
}

fn v2(s: &Sandbox) -> Artifact {
    s.artifact("demo-2.0", &s.src("v2"), service(s))
}

fn install_commit(_: &Sandbox, d: &mut Driver, a: &Artifact) {
    let _ = d.install(a);
    let _ = d.commit();
}

fn install_rollback(_: &Sandbox, d: &mut Driver, a: &Artifact) {
    let _ = d.install(a);
    let _ = d.rollback();
}

const SCENARIOS: &[Scenario] = &[
    Scenario {
        name: "install, commit",
        want: Want::OldUntilCommit,
        setup: v1_committed,
        run: install_commit,
        artifact: v2,
        env: &[],
    },
    Scenario {
        name: "install, rollback",
        want: Want::Old,
        setup: v1_committed,
        run: install_rollback,
        artifact: v2,
        env: &[],
    },
    Scenario {
        name: "install, commit (store)",
        want: Want::OldUntilCommit,
        setup: v1_committed,
        run: install_commit,
        artifact: v2,
        env: &[("STORE", "1")],
    },
    Scenario {
        name: "install with a unit, commit",
        want: Want::OldUntilCommit,
        setup: with_unit,
        run: install_commit,
        artifact: v2,
        env: &[],
    },
    Scenario {
        name: "install with a unit, rollback",
        want: Want::Old,
        setup: with_unit,
        run: install_rollback,
        artifact: v2,
        env: &[],
    },
    Scenario {
        name: "install with a unit that fails to start",
        want: Want::Old,
        setup: with_failing_unit,
        run: install_commit,
        artifact: v2,
        env: &[],
    },
    Scenario {
        name: "install, rollback (no RENAME_EXCHANGE)",
        want: Want::Old,
        setup: v1_committed,
        run: install_rollback,
        artifact: v2,
        env: &[("PERSISTENT_APP_FAULT_NO_EXCHANGE", "1")],
    },
    Scenario {
        name: "install, commit (no RENAME_EXCHANGE)",
        want: Want::OldUntilCommit,
        setup: v1_committed,
        run: install_commit,
        artifact: v2,
        env: &[("PERSISTENT_APP_FAULT_NO_EXCHANGE", "1")],
    },
    Scenario {
        name: "community format, rollback",
        want: Want::Old,
        setup: community_v1,
        run: install_rollback,
        artifact: |s| community(s, "demo-2.0", b"two"),
        env: &[],
    },
    Scenario {
        name: "community format, commit",
        want: Want::OldUntilCommit,
        setup: community_v1,
        run: install_commit,
        artifact: |s| community(s, "demo-2.0", b"two"),
        env: &[],
    },
    Scenario {
        name: "after an abandoned Download, install, commit",
        want: Want::OldUntilCommit,
        setup: abandoned,
        run: install_commit,
        artifact: |s| {
            make_v3(&s.src("v3"));
            s.artifact("demo-3.0", &s.src("v3"), None)
        },
        env: &[],
    },
];

fn driver(s: &Sandbox, flavor: Flavor, env: &[(&str, &str)]) -> Driver {
    let mut d = s.driver(flavor);
    if s.dir.join("systemctl").exists() {
        d.env("PERSISTENT_APP_SYSTEMCTL", s.dir.join("systemctl"));
    }
    for (k, v) in env {
        if *k == "STORE" {
            s.configure(Some("store"));
        } else {
            d.env(k, v);
        }
    }
    d
}

/// (state, point) → hits per process of that state, from one run.
fn trace(sc: &Scenario, flavor: Flavor, tag: &str) -> BTreeMap<(String, String), usize> {
    let s = Sandbox::new(&format!("kp-trace-{tag}"));
    (sc.setup)(&s, flavor);
    let file = s.dir.join("trace");
    let _ = fs::remove_file(&file);
    let art = (sc.artifact)(&s);
    let mut d = driver(&s, flavor, sc.env);
    d.env("PERSISTENT_APP_FAULT_TRACE", &file);
    (sc.run)(&s, &mut d, &art);
    // `State:point:pid` per point passed: count per process, keep the most.
    let mut per_process: BTreeMap<(String, String, String), usize> = BTreeMap::new();
    for line in fs::read_to_string(&file).unwrap_or_default().lines() {
        let mut parts = line.splitn(3, ':');
        let (state, point, pid) = (
            parts.next().unwrap(),
            parts.next().unwrap(),
            parts.next().unwrap(),
        );
        *per_process
            .entry((state.to_owned(), point.to_owned(), pid.to_owned()))
            .or_insert(0) += 1;
    }
    let mut most: BTreeMap<(String, String), usize> = BTreeMap::new();
    for ((state, point, _), n) in per_process {
        let e = most.entry((state, point)).or_insert(0);
        *e = (*e).max(n);
    }
    most
}

/// The client's states after it finds the module killed in `state`.
fn recovery(state: &str) -> &'static [&'static str] {
    match state {
        "ArtifactCommit" => &["ArtifactCommit", "Cleanup"],
        "ArtifactFailure" => &["ArtifactFailure", "Cleanup"],
        "Cleanup" => &["Cleanup"],
        // Download, ArtifactInstall, ArtifactRollback: roll back.
        _ => &["ArtifactRollback", "ArtifactFailure", "Cleanup"],
    }
}

fn tree_of(dir: &Path) -> Manifest {
    manifest(dir).content()
}

/// A manifest without mtimes: the community format stamps its files with the
/// time of the install, so two installs of one artifact differ only there.
fn without_mtimes(m: &Manifest) -> Vec<(String, String)> {
    m.0.iter()
        .map(|(k, v)| (k.clone(), v.split(" mtime ").next().unwrap_or(v).to_owned()))
        .collect()
}

/// `old` is this sandbox's tree before the scenario ran (exact); `new` the
/// new version's tree from another install (compared without mtimes).
fn check(s: &Sandbox, sc: &Scenario, state: &str, old: &Manifest, new: &Manifest, why: &str) {
    let now = tree_of(&s.dest());
    let want_new = match sc.want {
        Want::Old => false,
        Want::OldUntilCommit => matches!(state, "ArtifactCommit" | "Cleanup"),
    };
    if want_new {
        assert_eq!(
            without_mtimes(&now),
            without_mtimes(new),
            "{why}: the tree is not exactly the new version"
        );
    } else {
        assert_eq!(&now, old, "{why}: the tree is not exactly the old version");
    }
    let names: BTreeSet<String> = fs::read_dir(s.root())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        names,
        BTreeSet::from(["demo-app".to_owned()]),
        "{why}: leftovers"
    );
    assert!(
        s.unfinished_journals().is_empty(),
        "{why}: {:?}",
        s.unfinished_journals()
    );
}

/// The new version's tree, as installed.
fn new_version(sc: &Scenario, flavor: Flavor) -> Manifest {
    let s = Sandbox::new(&format!("kp-versions-{}", sc.name.len()));
    (sc.setup)(&s, flavor);
    let art = (sc.artifact)(&s);
    let mut d = driver(&s, flavor, sc.env);
    install_commit(&s, &mut d, &art);
    tree_of(&s.dest())
}

#[test]
fn every_state_and_fault_point_reached_is_killed_and_recovered() {
    let mut reached: BTreeSet<(String, String)> = BTreeSet::new();
    let mut killed: BTreeSet<(String, String)> = BTreeSet::new();
    let mut runs = 0;
    for (i, sc) in SCENARIOS.iter().enumerate() {
        for flavor in [Flavor::Go3, Flavor::Cpp5] {
            let tag = format!("{i}-{flavor:?}");
            let hits = trace(sc, flavor, &tag);
            let new = new_version(sc, flavor);
            for ((state, point), count) in &hits {
                reached.insert((state.clone(), point.clone()));
                let mut ns: Vec<usize> = vec![1, 2, *count];
                ns.retain(|n| *n <= *count);
                ns.dedup();
                for n in ns {
                    let why = format!("{} {flavor:?} {state}:{point}:{n}", sc.name);
                    let s = Sandbox::new(&format!("kp-{tag}-{state}-{point}-{n}"));
                    (sc.setup)(&s, flavor);
                    let old = tree_of(&s.dest());
                    let art = (sc.artifact)(&s);
                    let mut d = driver(&s, flavor, sc.env);
                    d.env("PERSISTENT_APP_FAULT", format!("{state}:{point}:{n}"));
                    (sc.run)(&s, &mut d, &art);
                    assert!(
                        d.calls().iter().any(|c| c.status.is_none()),
                        "{why}: the traced point was not reached again: {:?}",
                        d.sequence()
                    );
                    let mut r = driver(&s, flavor, sc.env);
                    r.prepare_tree(&art).unwrap();
                    for st in recovery(state) {
                        let c = r.call(st);
                        assert!(c.success(), "{why}: recovery {st}: {c:?}");
                    }
                    check(&s, sc, state, &old, &new, &why);
                    killed.insert((state.clone(), point.clone()));
                    runs += 1;
                }
            }
        }
    }
    let points: BTreeSet<&str> = reached.iter().map(|(_, p)| p.as_str()).collect();
    for point in persistent_app::fault::POINTS {
        assert!(
            points.contains(point),
            "no scenario reaches the fault point {point}: {points:?}"
        );
    }
    println!(
        "kill points: {}/{} (state, point) pairs, {runs} kills",
        killed.len(),
        reached.len()
    );
    if let Some(out) = std::env::var_os("KILL_POINTS_REPORT") {
        let pairs: Vec<String> = reached.iter().map(|(s, p)| format!("{s}:{p}")).collect();
        let report = serde_json::json!({
            "module": "persistent-app",
            "reached": pairs,
            "killed": killed.iter().map(|(s, p)| format!("{s}:{p}")).collect::<Vec<_>>(),
            "kills": runs,
        });
        fs::write(PathBuf::from(out), report.to_string()).unwrap();
    }
    assert_eq!(killed, reached);
}
