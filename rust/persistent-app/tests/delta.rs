//! File deltas (format 2) through real FIFOs: the new tree built from the
//! installed one plus the shipped files, exactly the full release's tree;
//! rollback to the base; and every way the base or the shipped content can
//! be wrong refused in Download with one line and the installed tree as it
//! was.

mod common;

use std::collections::{BTreeMap, HashSet};
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use common::*;
use mender_module_driver::{Artifact, Delivery, Flavor, Installed, PayloadFile};
use persistent_app::spec::{AppSpec, Delta, DELTA_FORMAT_VERSION};
use persistent_app_format::delta::{self, Content, FileEntry, Manifest};
use persistent_app_format::pack::Packer;
use persistent_app_format::sha256::{self, Sha256};

const FLAVORS: [Flavor; 2] = [Flavor::Go3, Flavor::Cpp5];

fn content_of(path: &Path) -> Content {
    let bytes = fs::read(path).unwrap();
    let mut h = Sha256::new();
    h.update(&bytes);
    Content {
        size: bytes.len() as u64,
        sha256: h.finish(),
    }
}

fn rel(p: &Path) -> String {
    p.to_str().unwrap().to_owned()
}

/// A delta from `base_src` to `new_src`, built as the generator builds it;
/// `edit` may alter the manifest before it is written.
fn delta_artifact(
    s: &Sandbox,
    name: &str,
    base_src: &Path,
    new_src: &Path,
    edit: impl FnOnce(&mut Manifest),
) -> Artifact {
    let mut base = Packer::new();
    base.add_source(base_src).unwrap();
    let base_files: BTreeMap<String, Content> = base
        .regular_files(None)
        .unwrap()
        .iter()
        .map(|f| (rel(&f.rel), content_of(&f.source)))
        .collect();
    let mut packer = Packer::new();
    packer.add_source(new_src).unwrap();
    let regular = packer.regular_files(None).unwrap();
    let new: Vec<(String, Content)> = regular
        .iter()
        .map(|f| (rel(&f.rel), content_of(&f.source)))
        .collect();
    let sources = delta::plan(&base_files, &new);
    let mut omit = HashSet::new();
    let mut files = Vec::new();
    for ((f, (path, content)), from) in regular.iter().zip(new).zip(sources) {
        if from.is_some() {
            omit.insert(PathBuf::from(&path));
        }
        files.push(FileEntry {
            path,
            size: content.size,
            mode: f.mode,
            mtime: f.mtime,
            sha256: sha256::hex(&content.sha256),
            base: from,
        });
    }
    let mut manifest = Manifest { files };
    edit(&mut manifest);
    let (tar, summary) = packer
        .write_except(Vec::new(), None, &omit, |_| {})
        .unwrap();
    let spec = AppSpec {
        format: DELTA_FORMAT_VERSION,
        name: "demo-app".into(),
        dest: s.dest().to_str().unwrap().into(),
        archive: "app.tar".into(),
        service: None,
        unpacked_size: summary.bytes,
        entries: summary.entries,
        delta: Some(Delta {
            base_version: "1.0".into(),
            manifest: "manifest.json".into(),
        }),
    };
    Artifact::new(name, "persistent-app")
        .meta_data(&spec.to_meta_data().to_string())
        .payload(PayloadFile::bytes(
            "manifest.json",
            serde_json::to_vec(&manifest).unwrap(),
        ))
        .payload(PayloadFile::bytes("app.tar", tar))
}

/// 1.1 from 1.0: one file changed, one added, one removed, one renamed,
/// one mode changed on unchanged content; the hard-linked pair unchanged.
fn make_v1_1(v1: &Path, dir: &Path) {
    make_v1(dir);
    fs::write(dir.join("etc/app.conf"), b"version=1.1\n").unwrap();
    fs::write(dir.join("share/added.txt"), b"new in 1.1").unwrap();
    fs::remove_file(dir.join("etc/old-only.conf")).unwrap();
    fs::rename(
        dir.join("lib/libfoo.so.1"),
        dir.join("lib/libfoo-renamed.so.1"),
    )
    .unwrap();
    fs::set_permissions(dir.join("bin/helper"), fs::Permissions::from_mode(0o750)).unwrap();
    settle_mtimes(dir, 1_650_000_000);
    assert!(v1.exists());
}

fn installed_v1(s: &Sandbox, flavor: Flavor) -> mender_module_driver::Driver {
    make_v1(&s.src("v1"));
    make_v1_1(&s.src("v1"), &s.src("v1.1"));
    let mut d = s.driver(flavor);
    d.install(&s.artifact("demo-1.0", &s.src("v1"), None))
        .unwrap();
    d.commit().unwrap();
    d
}

#[test]
fn a_delta_on_its_base_installs_the_whole_new_tree_and_rolls_back_exactly() {
    for (flavor, mode) in [
        (Flavor::Go3, None),
        (Flavor::Cpp5, None),
        (Flavor::Go3, Some("store")),
    ] {
        let s = Sandbox::new(&format!("delta-ok-{flavor:?}-{mode:?}"));
        s.configure(mode);
        let mut d = installed_v1(&s, flavor);
        let before = manifest(&s.root()).below_top();
        let art = delta_artifact(&s, "demo-1.1", &s.src("v1"), &s.src("v1.1"), |_| {});
        // Only the changed and the added file travel.
        let tar = match &art.payloads[1].source {
            mender_module_driver::PayloadSource::Bytes(b) => b.clone(),
            _ => unreachable!(),
        };
        let carried: Vec<String> = tar::Archive::new(&tar[..])
            .entries()
            .unwrap()
            .map(|e| e.unwrap())
            .filter(|e| e.header().entry_type() == tar::EntryType::Regular)
            .map(|e| e.path().unwrap().display().to_string())
            .collect();
        assert_eq!(carried, ["etc/app.conf", "share/added.txt"]);

        let installed = d.install(&art).unwrap();
        let want = if mode.is_some() {
            Delivery::Stored
        } else {
            Delivery::Streamed
        };
        assert_eq!(
            installed,
            Installed::AwaitingCommit {
                delivery: want,
                supports_rollback: true
            },
            "{flavor:?} {mode:?}"
        );
        assert_eq!(
            manifest(&s.dest()).content(),
            manifest(&s.src("v1.1")).content(),
            "{flavor:?} {mode:?}: exactly 1.1, hard link, modes and mtimes included"
        );
        // The previous tree is the untouched 1.0: no inode shared with 1.1.
        d.rollback().unwrap();
        assert_eq!(
            manifest(&s.root()).below_top(),
            before,
            "{flavor:?} {mode:?}"
        );

        // And once more to commit.
        d.install(&art).unwrap();
        d.commit().unwrap();
        assert_eq!(
            manifest(&s.dest()).content(),
            manifest(&s.src("v1.1")).content()
        );
    }
}

#[test]
fn writing_the_new_release_s_files_in_place_leaves_the_previous_tree_intact() {
    let s = Sandbox::new("delta-in-place");
    let mut d = installed_v1(&s, Flavor::Go3);
    let before = manifest(&s.root()).below_top();
    d.install(&delta_artifact(
        &s,
        "demo-1.1",
        &s.src("v1"),
        &s.src("v1.1"),
        |_| {},
    ))
    .unwrap();
    // The new app rewrites a file taken from 1.0 in place (no rename).
    use std::io::Write;
    let mut f = fs::OpenOptions::new()
        .write(true)
        .open(s.dest().join("data/big.bin"))
        .unwrap();
    f.write_all(b"scribbled by 1.1").unwrap();
    drop(f);
    d.rollback().unwrap();
    assert_eq!(manifest(&s.root()).below_top(), before);
}

fn refused(s: &Sandbox, d: &mut mender_module_driver::Driver, art: &Artifact) -> String {
    let before = manifest(&s.root()).below_top();
    assert_eq!(d.install(art).unwrap(), Installed::NotModified);
    let line = error_line(d, "Download");
    assert_eq!(
        manifest(&s.root()).below_top(),
        before,
        "the installed tree as it was, no staging tree left: {line}"
    );
    line
}

#[test]
fn a_base_file_edited_removed_or_replaced_by_hand_is_refused_with_nothing_changed() {
    type Damage = fn(&Path);
    let cases: [(&str, Damage, &str); 4] = [
        (
            "edited",
            |dest| fs::write(dest.join("bin/app"), b"#!/bin/sh\necho v9\n").unwrap(),
            "bin/app\" has sha256",
        ),
        (
            "truncated",
            |dest| fs::write(dest.join("data/big.bin"), b"short").unwrap(),
            "data/big.bin\" has 5 bytes, the release installed 300000",
        ),
        (
            "removed",
            |dest| fs::remove_file(dest.join("lib/libfoo.so.1")).unwrap(),
            "lib/libfoo.so.1\" is missing",
        ),
        (
            "replaced by a symlink",
            |dest| {
                fs::remove_file(dest.join("bin/helper")).unwrap();
                std::os::unix::fs::symlink("app", dest.join("bin/helper")).unwrap();
            },
            "bin/helper\" is a symlink",
        ),
    ];
    for flavor in FLAVORS {
        for (what, damage, want) in cases {
            let s = Sandbox::new(&format!("delta-base-{what}-{flavor:?}"));
            let mut d = installed_v1(&s, flavor);
            damage(&s.dest());
            let art = delta_artifact(&s, "demo-1.1", &s.src("v1"), &s.src("v1.1"), |_| {});
            let line = refused(&s, &mut d, &art);
            assert!(
                line.starts_with("persistent-app: error: Download")
                    && line.contains(": delta demo-1.1 refused: "),
                "{what}: {line}"
            );
            assert!(line.contains(want), "{what}: {line}");
            assert!(
                line.ends_with(
                    "nothing was changed: deploy the full artifact of this release instead"
                ),
                "{what}: {line}"
            );
        }
    }
}

#[test]
fn a_delta_on_a_device_without_the_app_is_refused() {
    let s = Sandbox::new("delta-no-base");
    make_v1(&s.src("v1"));
    make_v1_1(&s.src("v1"), &s.src("v1.1"));
    let mut d = s.driver(Flavor::Go3);
    let art = delta_artifact(&s, "demo-1.1", &s.src("v1"), &s.src("v1.1"), |_| {});
    let line = refused(&s, &mut d, &art);
    assert!(line.contains("demo-app\" is missing"), "{line}");
}

#[test]
fn shipped_content_that_differs_from_the_manifest_is_refused() {
    let s = Sandbox::new("delta-tampered");
    let mut d = installed_v1(&s, Flavor::Go3);
    let art = delta_artifact(&s, "demo-1.1", &s.src("v1"), &s.src("v1.1"), |m| {
        let f = m
            .files
            .iter_mut()
            .find(|f| f.path == "etc/app.conf")
            .unwrap();
        f.sha256 = "00".repeat(32);
    });
    let line = refused(&s, &mut d, &art);
    assert!(
        line.contains("payload app.tar: member \"etc/app.conf\" refused: its content does not match the delta's manifest (has sha256"),
        "{line}"
    );

    // A file the manifest says travels, absent from the archive.
    let art = delta_artifact(&s, "demo-1.1", &s.src("v1"), &s.src("v1.1"), |m| {
        m.files.push(FileEntry {
            path: "ghost".into(),
            size: 0,
            mode: 0o644,
            mtime: 0,
            sha256: sha256::hex(&Sha256::new().finish()),
            base: None,
        });
    });
    let line = refused(&s, &mut d, &art);
    assert!(line.contains("member \"ghost\" refused: the delta's manifest lists it as carried in the archive, which lacks it"), "{line}");

    // A file the archive carries that the manifest takes from the base.
    let art = delta_artifact(&s, "demo-1.1", &s.src("v1"), &s.src("v1.1"), |m| {
        let f = m
            .files
            .iter_mut()
            .find(|f| f.path == "etc/app.conf")
            .unwrap();
        f.base = Some("etc/app.conf".into());
    });
    let line = refused(&s, &mut d, &art);
    assert!(
        line.contains("etc/app.conf\" has 10 bytes, the release installed 12"),
        "{line}"
    );
}
