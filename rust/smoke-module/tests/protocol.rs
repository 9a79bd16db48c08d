//! The protocol crate under both client orders, driven through real FIFOs by
//! the protocol driver, with the smoke module as the module under test.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use mender_module_driver::{Artifact, Delivery, Driver, Flavor, Installed, PayloadFile};

const MODULE: &str = env!("CARGO_BIN_EXE_smoke-module");

struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Scratch {
        let dir =
            std::env::temp_dir().join(format!("smoke-protocol-{}-{name}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }

    fn driver(&self, flavor: Flavor) -> Driver {
        Driver::new(MODULE, self.0.join("work"), flavor)
    }

    fn dest(&self) -> PathBuf {
        self.0.join("data").join("app")
    }

    fn artifact(&self, name: &str, extra_meta: &str) -> Artifact {
        let meta = format!(r#"{{"dest":"{}"{extra_meta}}}"#, self.dest().display());
        Artifact::new(name, "smoke").meta_data(&meta)
    }

    fn states(&self) -> Vec<String> {
        let log = self.0.join("data").join("app.states");
        fs::read_to_string(log)
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect()
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn read(dir: &Path, name: &str) -> String {
    fs::read_to_string(dir.join(name)).unwrap()
}

fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

fn three_payloads() -> Vec<PayloadFile> {
    vec![
        PayloadFile::bytes("a.txt", "alpha"),
        PayloadFile::bytes("b.bin", vec![7u8; 300_000]),
        PayloadFile::bytes("c.txt", ""),
    ]
}

#[test]
fn go_order_streams_several_payloads_then_commits() {
    let s = Scratch::new("go-stream");
    let mut d = s.driver(Flavor::Go3);
    let mut art = s.artifact("v1", "");
    art.payloads = three_payloads();
    let r = d.install(&art).unwrap();
    assert_eq!(
        r,
        Installed::AwaitingCommit {
            delivery: Delivery::Streamed,
            supports_rollback: true
        }
    );
    assert_eq!(
        d.sequence(),
        [
            "Download",
            "SupportsRollback",
            "ArtifactInstall",
            "NeedsArtifactReboot"
        ]
    );
    assert_eq!(names(&s.dest()), ["a.txt", "b.bin", "c.txt"]);
    assert_eq!(read(&s.dest(), "a.txt"), "alpha");
    assert_eq!(
        fs::read(s.dest().join("b.bin")).unwrap(),
        vec![7u8; 300_000]
    );
    d.clear_calls();
    d.commit().unwrap();
    assert_eq!(d.sequence(), ["ArtifactCommit", "Cleanup"]);
    assert_eq!(
        s.states(),
        ["Download", "ArtifactInstall", "ArtifactCommit", "Cleanup"]
    );
    assert!(
        !d.tree().exists(),
        "the client removes the tree after Cleanup"
    );
}

#[test]
fn cpp_order_announces_sizes_and_asks_rollback_after_install() {
    let s = Scratch::new("cpp-sizes");
    let mut d = s.driver(Flavor::Cpp5);
    let mut art = s.artifact("v1", "");
    art.payloads = three_payloads();
    let r = d.install(&art).unwrap();
    assert_eq!(
        r,
        Installed::AwaitingCommit {
            delivery: Delivery::Streamed,
            supports_rollback: true
        }
    );
    assert_eq!(
        d.sequence(),
        [
            "ProvidePayloadFileSizes",
            "DownloadWithFileSizes",
            "ArtifactInstall",
            "NeedsArtifactReboot",
            "SupportsRollback"
        ]
    );
    assert_eq!(read(&s.dest(), "a.txt"), "alpha");
    d.commit().unwrap();
}

#[test]
fn cpp_order_without_sizes_uses_plain_download() {
    let s = Scratch::new("cpp-nosizes");
    let mut d = s.driver(Flavor::Cpp5);
    d.env("SMOKE_FILE_SIZES", "no");
    let mut art = s.artifact("v1", "");
    art.payloads = three_payloads();
    d.install(&art).unwrap();
    assert_eq!(d.sequence()[..2], ["ProvidePayloadFileSizes", "Download"]);
    assert_eq!(names(&s.dest()), ["a.txt", "b.bin", "c.txt"]);
}

#[test]
fn a_module_that_does_not_stream_gets_stored_files_under_both_clients() {
    for flavor in [Flavor::Go3, Flavor::Cpp5] {
        let s = Scratch::new(&format!("stored-{flavor:?}"));
        let mut d = s.driver(flavor);
        let mut art = s.artifact("v1", r#","delivery":"stored""#);
        art.payloads = three_payloads();
        let r = d.install(&art).unwrap();
        assert_eq!(
            r,
            Installed::AwaitingCommit {
                delivery: Delivery::Stored,
                supports_rollback: true
            },
            "{flavor:?}"
        );
        assert_eq!(names(&d.tree().join("files")), ["a.txt", "b.bin", "c.txt"]);
        assert_eq!(names(&s.dest()), ["a.txt", "b.bin", "c.txt"]);
        assert_eq!(fs::read(s.dest().join("b.bin")).unwrap().len(), 300_000);
        d.commit().unwrap();
    }
}

#[test]
fn empty_payload_lists_install_streamed_and_stored() {
    for (flavor, extra) in [
        (Flavor::Go3, ""),
        (Flavor::Cpp5, ""),
        (Flavor::Go3, r#","delivery":"stored""#),
        (Flavor::Cpp5, r#","delivery":"stored""#),
    ] {
        let s = Scratch::new(&format!("empty-{flavor:?}-{}", extra.len()));
        let mut d = s.driver(flavor);
        let r = d.install(&s.artifact("v1", extra)).unwrap();
        assert!(
            matches!(r, Installed::AwaitingCommit { .. }),
            "{flavor:?} {extra}: {r:?}"
        );
        assert!(names(&s.dest()).is_empty());
    }
}

#[test]
fn a_module_that_exits_mid_stream_fails_download_and_nothing_is_installed() {
    for flavor in [Flavor::Go3, Flavor::Cpp5] {
        let s = Scratch::new(&format!("midstream-{flavor:?}"));
        let mut d = s.driver(flavor);
        let mut art = s.artifact("v1", r#","exit_after_bytes":1000"#);
        art.payloads = three_payloads();
        let r = d.install(&art).unwrap();
        assert_eq!(r, Installed::NotModified, "{flavor:?}");
        let download = match flavor {
            Flavor::Go3 => "Download",
            Flavor::Cpp5 => "DownloadWithFileSizes",
        };
        assert_eq!(d.sequence().last().map(String::as_str), Some("Cleanup"));
        assert_eq!(d.sequence()[d.sequence().len() - 2], download, "{flavor:?}");
        assert!(!s.dest().exists(), "{flavor:?}: nothing may be installed");
    }
}

#[test]
fn a_refused_download_exits_only_where_neither_client_can_hang() {
    // The driver's Go3 flavour fails an exit where the Go 3.x client can wait
    // for ever (Failure::hangs_go3), so `install` returning at all is the
    // check; the module's own line must be what the deployment log shows.
    let cases = [
        ("start", ""),
        ("start", r#","delivery":"stored""#),
        ("mid-drop", ""),
        ("mid-discard", ""),
        ("after-first", ""),
    ];
    for flavor in [Flavor::Go3, Flavor::Cpp5] {
        for (at, extra) in cases {
            let what = format!("{flavor:?} {at}{extra}");
            let s = Scratch::new(&format!("refuse-{flavor:?}-{at}"));
            let mut d = s.driver(flavor);
            let mut art = s.artifact("v1", &format!(r#","refuse_download":"{at}"{extra}"#));
            art.payloads = three_payloads();
            let r = d.install(&art).unwrap_or_else(|f| panic!("{what}: {f}"));
            assert_eq!(r, Installed::NotModified, "{what}");
            let download = d
                .calls()
                .iter()
                .find(|c| c.arg.starts_with("Download"))
                .unwrap();
            assert_eq!(download.status, Some(1), "{what}: {download:?}");
            assert_eq!(
                download.stderr,
                format!("smoke: error: Download: refusing on request (meta-data refuse_download {at})\n")
                    .replace("Download:", &format!("{}:", download.arg)),
                "{what}"
            );
            assert!(!s.dest().exists(), "{what}: nothing may be installed");
        }
    }
}

#[test]
fn the_driver_fails_a_download_exit_that_hangs_the_go_client() {
    // The control for the test above: a module that fails Download at once,
    // without a word with stream-next, may exit before the Go 3.x client has
    // handed over the first payload. The C++ client just reports it.
    let s = Scratch::new("hangs-go3");
    let m = script_module(
        &s.0,
        r#"case "$1" in Download) exit 1;; ProvidePayloadFileSizes) echo No;; esac"#,
    );
    for flavor in [Flavor::Go3, Flavor::Cpp5] {
        let mut d = Driver::new(&m, s.0.join("work"), flavor);
        let art = s.artifact("v1", "").payload(PayloadFile::bytes("v", "1"));
        match (flavor, d.install(&art)) {
            (Flavor::Go3, Err(f)) => assert!(f.hangs_go3, "{f}"),
            (Flavor::Cpp5, Ok(r)) => assert_eq!(r, Installed::NotModified),
            (_, other) => panic!("{flavor:?}: {other:?}"),
        }
    }
}

#[test]
fn rollback_restores_the_previous_version_in_each_client_order() {
    for flavor in [Flavor::Go3, Flavor::Cpp5] {
        let s = Scratch::new(&format!("rollback-{flavor:?}"));
        let mut d = s.driver(flavor);
        let v1 = s.artifact("v1", "").payload(PayloadFile::bytes("v", "1"));
        d.install(&v1).unwrap();
        d.commit().unwrap();
        let v2 = s.artifact("v2", "").payload(PayloadFile::bytes("v", "2"));
        d.install(&v2).unwrap();
        assert_eq!(read(&s.dest(), "v"), "2");
        d.clear_calls();
        d.rollback().unwrap();
        let want: &[&str] = match flavor {
            Flavor::Go3 => &["SupportsRollback", "ArtifactRollback", "Cleanup"],
            Flavor::Cpp5 => &[
                "SupportsRollback",
                "ArtifactRollback",
                "ArtifactFailure",
                "Cleanup",
            ],
        };
        assert_eq!(d.sequence(), want, "{flavor:?}");
        assert_eq!(read(&s.dest(), "v"), "1", "{flavor:?}");
    }
}

#[test]
fn a_failing_install_runs_the_error_states_and_keeps_the_old_version() {
    for flavor in [Flavor::Go3, Flavor::Cpp5] {
        let s = Scratch::new(&format!("failinstall-{flavor:?}"));
        let mut d = s.driver(flavor);
        d.install(&s.artifact("v1", "").payload(PayloadFile::bytes("v", "1")))
            .unwrap();
        d.commit().unwrap();
        d.clear_calls();
        let bad = s
            .artifact("v2", r#","fail_install":true"#)
            .payload(PayloadFile::bytes("v", "2"));
        assert_eq!(d.install(&bad).unwrap(), Installed::RolledBack);
        let want: &[&str] = match flavor {
            Flavor::Go3 => &[
                "Download",
                "SupportsRollback",
                "ArtifactInstall",
                "ArtifactRollback",
                "ArtifactFailure",
                "Cleanup",
            ],
            Flavor::Cpp5 => &[
                "ProvidePayloadFileSizes",
                "DownloadWithFileSizes",
                "ArtifactInstall",
                "SupportsRollback",
                "ArtifactRollback",
                "ArtifactFailure",
                "Cleanup",
            ],
        };
        assert_eq!(d.sequence(), want, "{flavor:?}");
        assert_eq!(read(&s.dest(), "v"), "1");
        let stderr = &d
            .calls()
            .iter()
            .find(|c| c.arg == "ArtifactInstall")
            .unwrap()
            .stderr;
        assert_eq!(stderr.lines().count(), 1, "one line on stderr: {stderr:?}");
        assert!(
            stderr.starts_with("smoke: error: ArtifactInstall: failing on request"),
            "{stderr}"
        );
    }
}

#[test]
fn queries_answer_one_word_and_unknown_states_print_nothing() {
    let s = Scratch::new("queries");
    let mut d = s.driver(Flavor::Go3);
    d.prepare_tree(&s.artifact("v1", "")).unwrap();
    for (q, want) in [
        ("SupportsRollback", "Yes\n"),
        ("NeedsArtifactReboot", "No\n"),
        ("ProvidePayloadFileSizes", "Yes\n"),
        ("SupportsAugmentedArtifacts", "No\n"),
        ("SomeStateFromTheFuture", ""),
    ] {
        let c = d.call(q);
        assert!(c.success(), "{q}: {c:?}");
        assert_eq!(c.stdout, want, "{q}");
        assert_eq!(c.stderr, "", "{q}");
    }
}

fn script_module(dir: &Path, body: &str) -> PathBuf {
    let path = dir.join("module.sh");
    fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).unwrap();
    path
}

#[test]
fn the_driver_rejects_anything_but_one_word_on_a_query() {
    let s = Scratch::new("chatty");
    for (body, ok) in [
        (r#"echo Yes"#, true),
        (r#"printf Yes"#, true),
        (r#"printf 'Yes\nextra\n'"#, false),
        (r#"echo 'Yes please'"#, false),
        (r#"echo; echo Yes"#, false),
        (r#"true"#, false),
        (r#"echo Yes; exit 1"#, false),
    ] {
        let m = script_module(&s.0, body);
        let mut d = Driver::new(&m, s.0.join("work"), Flavor::Cpp5);
        d.prepare_tree(&s.artifact("v1", "")).unwrap();
        assert_eq!(d.query("SupportsRollback").is_ok(), ok, "{body}");
    }
}

#[test]
fn sigterm_while_waiting_for_the_stream_stops_the_module_cleanly() {
    let s = Scratch::new("sigterm");
    let d = s.driver(Flavor::Go3);
    d.prepare_tree(&s.artifact("v1", "")).unwrap();
    let tree = d.tree();
    fs::create_dir_all(tree.join("streams")).unwrap();
    let fifo = tree.join("stream-next");
    assert!(Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap()
        .success());
    // Nobody ever writes stream-next: the module blocks opening it.
    let child = Command::new(MODULE)
        .args(["Download".as_ref(), tree.as_os_str()])
        .current_dir(&tree)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let started = Instant::now();
    assert!(Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap()
        .success());
    let out = child.wait_with_output().unwrap();
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("stopped by SIGTERM"), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
}

#[test]
fn bad_meta_data_fails_with_one_line_naming_the_file() {
    let s = Scratch::new("badmeta");
    let mut d = s.driver(Flavor::Go3);
    d.prepare_tree(&s.artifact("v1", "")).unwrap();
    fs::write(d.tree().join("header/meta-data"), "{oops").unwrap();
    let c = d.call("ArtifactInstall");
    assert_eq!(c.status, Some(1));
    assert_eq!(c.stderr.lines().count(), 1, "{:?}", c.stderr);
    assert!(
        c.stderr.contains("header/meta-data is not valid JSON"),
        "{}",
        c.stderr
    );
}
