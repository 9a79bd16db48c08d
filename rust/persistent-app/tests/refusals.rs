//! Bad artifacts, each refused in Download with one line that says what is
//! wrong, and the allowed root exactly as it was once the client's Cleanup
//! has run: nothing installed, nothing left behind.

mod common;

use std::fs;
use std::os::unix::fs::symlink;

use common::*;
use mender_module_driver::{Artifact, Flavor, Installed, PayloadFile};
use serde_json::{json, Value};
use tar::EntryType;

struct Case {
    what: &'static str,
    artifact: Artifact,
    want: String,
}

fn with_meta(art: &Artifact, edit: impl FnOnce(&mut Value)) -> Artifact {
    let mut meta: Value = serde_json::from_str(art.meta_data.as_deref().unwrap()).unwrap();
    edit(&mut meta);
    let mut a = art.clone();
    a.meta_data = Some(meta.to_string());
    a
}

/// An artifact whose tar is made member by member, with meta-data that
/// matches it, so only the member itself is wrong.
fn crafted(s: &Sandbox, members: impl FnOnce(&mut tar::Builder<Vec<u8>>)) -> Artifact {
    let mut b = tar::Builder::new(Vec::new());
    members(&mut b);
    let tar = b.into_inner().unwrap();
    let meta = json!({"persistent-app": {
        "format": 1, "name": "demo-app", "dest": s.dest(),
        "archive": "app.tar", "unpacked_size": 1000, "entries": 100
    }});
    Artifact::new("bad", "persistent-app")
        .meta_data(&meta.to_string())
        .payload(PayloadFile::bytes("app.tar", tar))
}

fn cases(s: &Sandbox) -> Vec<Case> {
    let good = s.artifact("demo-2.0", &s.src("v2"), None);
    let tar = match &good.payloads[0].source {
        mender_module_driver::PayloadSource::Bytes(b) => b.clone(),
        _ => unreachable!(),
    };
    let case = |what, artifact, want: &str| Case {
        what,
        artifact,
        want: want.to_owned(),
    };
    let mut v = vec![
        case(
            "destination outside the allowed roots",
            with_meta(&good, |m| {
                m["persistent-app"]["dest"] = json!("/etc/demo-app")
            }),
            "destination /etc/demo-app is not strictly under an allowed root",
        ),
        case(
            "destination with ..",
            with_meta(&good, |m| {
                m["persistent-app"]["dest"] = json!(format!("{}/../../etc", s.root().display()))
            }),
            "'..' component",
        ),
        case(
            "the allowed root itself",
            with_meta(&good, |m| m["persistent-app"]["dest"] = json!(s.root())),
            "not strictly under an allowed root",
        ),
        case(
            "unknown meta-data key",
            with_meta(&good, |m| {
                m["persistent-app"]["post_install"] = json!("rm -rf /")
            }),
            "unknown field `post_install`",
        ),
        case(
            "newer format",
            with_meta(&good, |m| m["persistent-app"]["format"] = json!(3)),
            "has format 3; this module reads formats 1 (full) and 2 (delta)",
        ),
        case(
            "bad app name",
            with_meta(&good, |m| m["persistent-app"]["name"] = json!("../x")),
            "app name \"../x\" is not valid",
        ),
        case(
            "bad unit name",
            with_meta(&good, |m| m["persistent-app"]["service"] = json!("--force")),
            "service \"--force\" is not valid",
        ),
        case(
            "more members than announced",
            with_meta(&good, |m| {
                let e = m["persistent-app"]["entries"].as_u64().unwrap();
                m["persistent-app"]["entries"] = json!(e - 1)
            }),
            "more than the",
        ),
        case(
            "fewer bytes than announced",
            with_meta(&good, |m| {
                let b = m["persistent-app"]["unpacked_size"].as_u64().unwrap();
                m["persistent-app"]["unpacked_size"] = json!(b + 1)
            }),
            "the artifact is inconsistent",
        ),
        case(
            "more than the disk holds",
            with_meta(&good, |m| {
                m["persistent-app"]["unpacked_size"] = json!(1u64 << 60)
            }),
            "not enough space for payload app.tar",
        ),
        case(
            "truncated archive",
            {
                let mut a = good.clone();
                a.payloads = vec![PayloadFile::bytes("app.tar", tar[..tar.len() / 2].to_vec())];
                a
            },
            "truncated",
        ),
        case(
            "unexpected extra payload",
            good.clone().payload(PayloadFile::bytes("extra.bin", "x")),
            "unexpected payload \"extra.bin\"",
        ),
        case(
            "archive payload missing",
            {
                let mut a = good.clone();
                a.payloads.clear();
                a
            },
            "has no payload \"app.tar\"",
        ),
        case(
            "parent traversal",
            crafted(s, |b| {
                raw_member(b, "../evil", EntryType::Regular, "", b"x")
            }),
            "member \"../evil\" refused: '..' is not allowed",
        ),
        case(
            "absolute member",
            crafted(s, |b| {
                raw_member(b, "/tmp/evil", EntryType::Regular, "", b"x")
            }),
            "absolute paths are not allowed",
        ),
        case(
            "escaping symlink",
            crafted(s, |b| {
                raw_member(b, "l", EntryType::Symlink, "../../../etc", b"")
            }),
            "points outside the tree",
        ),
        case(
            "write through a symlink",
            crafted(s, |b| {
                raw_member(b, "d/", EntryType::Directory, "", b"");
                raw_member(b, "l", EntryType::Symlink, "d", b"");
                raw_member(b, "l/x", EntryType::Regular, "", b"x");
            }),
            "written through the symlink l",
        ),
        case(
            "hard link outside",
            crafted(s, |b| {
                raw_member(b, "h", EntryType::Link, "../../etc/passwd", b"")
            }),
            "leaves the tree",
        ),
        case(
            "device node",
            crafted(s, |b| raw_member(b, "null", EntryType::Char, "", b"")),
            "device nodes are not allowed",
        ),
        case(
            "forged release marker",
            crafted(s, |b| {
                raw_member(b, ".persistent-app-release", EntryType::Regular, "", b"x")
            }),
            "reserved",
        ),
        case(
            "community artifact without dest_dir",
            {
                let mut a = Artifact::new("c", "persistent-app");
                a.payloads = vec![PayloadFile::bytes("a.conf", "x")];
                a
            },
            "nor a dest_dir payload",
        ),
        case(
            "community dest_dir outside the allowed roots",
            {
                let mut a = Artifact::new("c", "persistent-app");
                a.payloads = vec![
                    PayloadFile::bytes("a.conf", "x"),
                    PayloadFile::bytes("dest_dir", "/etc/c\n"),
                ];
                a
            },
            "destination /etc/c is not strictly under an allowed root",
        ),
        case(
            "FIFO member",
            crafted(s, |b| raw_member(b, "pipe", EntryType::Fifo, "", b"")),
            "FIFOs are not allowed",
        ),
        case(
            "the same member twice",
            crafted(s, |b| {
                raw_member(b, "x", EntryType::Regular, "", b"one");
                raw_member(b, "x", EntryType::Regular, "", b"two");
            }),
            "appears twice",
        ),
        case(
            "member below a file",
            crafted(s, |b| {
                raw_member(b, "f", EntryType::Regular, "", b"x");
                raw_member(b, "f/x", EntryType::Regular, "", b"x");
            }),
            "its parent f is a file",
        ),
        case(
            "hard link to a member not yet written",
            crafted(s, |b| {
                raw_member(b, "h", EntryType::Link, "later", b"");
                raw_member(b, "later", EntryType::Regular, "", b"x");
            }),
            "hard link target later is not a regular file extracted before it",
        ),
        case(
            "symlinks escaping through each other",
            crafted(s, |b| {
                raw_member(b, "d/", EntryType::Directory, "", b"");
                raw_member(b, "d/up", EntryType::Symlink, "..", b"");
                raw_member(b, "d/out", EntryType::Symlink, "up/..", b"");
            }),
            "leaves the tree through the links it passes",
        ),
        case(
            "corrupt tar header",
            {
                let mut bad = tar.clone();
                bad[148] ^= 0x01; // the first member's checksum
                let mut a = good.clone();
                a.payloads = vec![PayloadFile::bytes("app.tar", bad)];
                a
            },
            "archive",
        ),
        case(
            "meta-data that is not an object",
            with_meta(&good, |m| m["persistent-app"] = json!(["x"])),
            "persistent-app",
        ),
        case(
            "meta-data without a destination",
            with_meta(&good, |m| {
                m["persistent-app"].as_object_mut().unwrap().remove("dest");
            }),
            "missing field `dest`",
        ),
        case(
            "archive name with a slash",
            with_meta(&good, |m| {
                m["persistent-app"]["archive"] = json!("a/app.tar")
            }),
            "archive",
        ),
        case(
            "destination with a control character",
            with_meta(&good, |m| {
                m["persistent-app"]["dest"] = json!(format!("{}/demo\u{1b}[2J", s.root().display()))
            }),
            "it contains a control character",
        ),
        case(
            "the Mender client's own unit",
            with_meta(&good, |m| {
                m["persistent-app"]["service"] = json!("mender-updated.service")
            }),
            "is the Mender client's own unit",
        ),
        case(
            "destination inside another app",
            with_meta(&good, |m| {
                m["persistent-app"]["dest"] = json!(format!("{}/team/plugins", s.root().display()))
            }),
            "overlaps the directory of app team",
        ),
        case(
            "destination inside another app's previous version",
            with_meta(&good, |m| {
                m["persistent-app"]["dest"] =
                    json!(format!("{}/.team.previous/x", s.root().display()))
            }),
            "overlaps a directory the module keeps for app team",
        ),
        case(
            "community dest_dir longer than 4096 bytes",
            {
                let mut a = Artifact::new("c", "persistent-app");
                a.payloads = vec![PayloadFile::bytes("dest_dir", "/".repeat(5000))];
                a
            },
            "longer than 4096 bytes",
        ),
    ];
    let linked = s.root().join("linked");
    v.push(case(
        "destination is a symlink",
        with_meta(&good, |m| m["persistent-app"]["dest"] = json!(linked)),
        "is a symlink or a file, not a directory",
    ));
    v
}

#[test]
fn bad_artifacts_are_refused_in_download_and_leave_nothing_behind() {
    refused_and_nothing_left(None);
}

/// With `"download": "store"` whatever needs the payload is refused in
/// ArtifactInstall instead, with the same line and the same clean result.
#[test]
fn bad_artifacts_are_refused_in_store_mode_too_and_leave_nothing_behind() {
    refused_and_nothing_left(Some("store"));
}

fn refused_and_nothing_left(download: Option<&str>) {
    for flavor in [Flavor::Go3, Flavor::Cpp5] {
        let s = Sandbox::new(&format!("refusals-{flavor:?}-{download:?}"));
        s.configure(download);
        make_v1(&s.src("v1"));
        make_v2(&s.src("v2"));
        fs::create_dir_all(s.dir.join("elsewhere")).unwrap();
        symlink(s.dir.join("elsewhere"), s.root().join("linked")).unwrap();
        let mut d = s.driver(flavor);
        d.install(&s.artifact("demo-1.0", &s.src("v1"), None))
            .unwrap();
        d.commit().unwrap();
        // Another app beside it, whose directories others must keep out of.
        let (team_tar, mut team) = pack(&s.src("v1"), &s.root().join("team"), None);
        team.name = "team".into();
        d.install(
            &Artifact::new("team-1.0", "persistent-app")
                .meta_data(&team.to_meta_data().to_string())
                .payload(PayloadFile::bytes("app.tar", team_tar)),
        )
        .unwrap();
        d.commit().unwrap();
        let before = manifest(&s.root()).below_top();
        // The app's own commit tombstone goes with its next Download, refused
        // or not (FORMAT.md); every other journal stays as it was.
        let others = |s: &Sandbox| -> Vec<(String, String)> {
            s.journals()
                .into_iter()
                .filter(|j| j != "demo-app.json")
                .map(|j| (j.clone(), fs::read_to_string(s.state().join(&j)).unwrap()))
                .collect()
        };
        let state_before = others(&s);
        for case in cases(&s) {
            d.clear_calls();
            let r = d.install(&case.artifact).unwrap();
            let failed = match (download, r) {
                (_, Installed::NotModified) => "Download",
                (Some("store"), Installed::RolledBack) => "ArtifactInstall",
                (_, r) => panic!("{flavor:?} {download:?} {}: {r:?}", case.what),
            };
            let line = error_line(&d, failed);
            assert!(
                line.contains(&case.want),
                "{flavor:?} {}: {line}",
                case.what
            );
            assert!(
                d.calls().last().unwrap().success(),
                "Cleanup succeeds: {:?}",
                d.calls().last()
            );
            assert_eq!(
                manifest(&s.root()).below_top(),
                before,
                "{flavor:?} {}",
                case.what
            );
            assert!(
                s.unfinished_journals().is_empty(),
                "{flavor:?} {}: {:?}",
                case.what,
                s.unfinished_journals()
            );
            assert_eq!(fs::read_dir(s.dir.join("elsewhere")).unwrap().count(), 0);
            assert_eq!(others(&s), state_before, "{flavor:?} {}", case.what);
            report_bad_input(case.what);
        }
    }
}

#[test]
fn a_bad_config_fails_every_state_with_its_path() {
    let s = Sandbox::new("bad-config");
    fs::write(
        s.dir.join("persistent-app.conf"),
        r#"{"allowed_roots": ["relative"]}"#,
    )
    .unwrap();
    make_v1(&s.src("v1"));
    let mut d = s.driver(Flavor::Go3);
    assert_eq!(
        d.install(&s.artifact("demo-1.0", &s.src("v1"), None))
            .unwrap(),
        Installed::NotModified
    );
    let line = error_line(&d, "Download");
    assert!(
        line.contains("persistent-app.conf: allowed_roots entry \"relative\""),
        "{line}"
    );
}
