//! The module binary under both client orders, driven through real FIFOs by
//! the protocol driver, for everything that needs no engine: query answers,
//! refusals of bad meta-data in Download (one line, nothing touched), and
//! recovery states that find nothing to do. The real engine is the judge in
//! tests/e2e/test_docker_*.py.

use std::fs;
use std::path::PathBuf;

use mender_module_driver::{Artifact, Driver, Flavor, Installed};

const MODULE: &str = env!("CARGO_BIN_EXE_mender-docker-module");
const DIGEST: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Scratch {
        let dir =
            std::env::temp_dir().join(format!("docker-protocol-{}-{name}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        // No engine listens on this socket: any engine call would fail loudly.
        let conf = format!(
            r#"{{"socket": "{0}/no-engine.sock", "state_dir": "{0}/state"}}"#,
            dir.display()
        );
        fs::write(dir.join("docker-module.conf"), conf).unwrap();
        Scratch(dir)
    }

    fn driver(&self, flavor: Flavor) -> Driver {
        let mut d = Driver::new(MODULE, self.0.join("work"), flavor);
        d.env("DOCKER_MODULE_CONF", self.0.join("docker-module.conf"));
        d.env("DOCKER_MODULE_LOCK", self.0.join("module.lock"));
        d
    }

    fn state_files(&self) -> usize {
        fs::read_dir(self.0.join("state")).map_or(0, |d| d.count())
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// A state's stderr; `Download` also finds `DownloadWithFileSizes`, which C++
/// clients call because the module answers Yes to ProvidePayloadFileSizes.
fn stderr_of(d: &Driver, state: &str) -> String {
    d.calls()
        .iter()
        .find(|c| c.arg == state || (state == "Download" && c.arg == "DownloadWithFileSizes"))
        .map(|c| c.stderr.clone())
        .unwrap_or_default()
}

#[test]
fn queries_answer_one_word() {
    let s = Scratch::new("queries");
    let mut d = s.driver(Flavor::Cpp5);
    d.prepare_tree(&Artifact::new("web-1", "docker")).unwrap();
    for (q, want) in [
        ("SupportsRollback", "Yes"),
        ("NeedsArtifactReboot", "No"),
        ("ProvidePayloadFileSizes", "Yes"),
    ] {
        assert_eq!(d.query(q).unwrap(), want, "{q}");
    }
}

#[test]
fn bad_meta_data_is_refused_in_download_in_one_line_under_both_clients() {
    let cases = [
        (
            r#"{"docker-stack": {"format": 1, "stack": "web", "containers": {"web": {"image": "web:1"}}}}"#,
            "docker: error: Download: artifact meta-data at docker-stack.containers.web.image: image \"web:1\" is not pinned by digest",
        ),
        (
            r#"{"containers": ["web@DIGEST"], "run_args": "--pid host"}"#,
            "docker: error: Download: artifact meta-data at run_args: flag --pid is not supported",
        ),
        (
            r#"{"payload": "x"}"#,
            "docker: error: Download: artifact meta-data has the keys payload",
        ),
    ];
    for flavor in [Flavor::Go3, Flavor::Cpp5] {
        for (meta, want) in cases {
            let s = Scratch::new("bad");
            let mut d = s.driver(flavor);
            let art = Artifact::new("web-2", "docker").meta_data(&meta.replace("DIGEST", DIGEST));
            assert_eq!(
                d.install(&art).unwrap(),
                Installed::NotModified,
                "{flavor:?} {meta}"
            );
            let err = stderr_of(&d, "Download").replacen(
                "error: DownloadWithFileSizes:",
                "error: Download:",
                1,
            );
            assert_eq!(err.lines().count(), 1, "{err}");
            assert!(
                err.starts_with(want),
                "{flavor:?}\n got: {err}\nwant: {want}"
            );
            let cleanup = d.calls().last().unwrap();
            assert_eq!(cleanup.arg, "Cleanup");
            assert!(cleanup.success(), "{cleanup:?}");
            assert_eq!(s.state_files(), 0, "no journal for a refused artifact");
        }
    }
}

#[test]
fn meta_data_that_is_not_json_is_refused_naming_the_file() {
    let s = Scratch::new("notjson");
    let mut d = s.driver(Flavor::Cpp5);
    d.prepare_tree(&Artifact::new("web-2", "docker")).unwrap();
    fs::write(d.tree().join("header/meta-data"), "{\"docker-stack\": {").unwrap();
    assert!(d.download(&[], false).is_err());
    let c = d.calls().last().unwrap().clone();
    assert_eq!(c.arg, "Download");
    assert_eq!(c.status, Some(1));
    assert_eq!(c.stderr.lines().count(), 1, "{}", c.stderr);
    assert!(
        c.stderr.contains("header/meta-data is not valid JSON"),
        "{}",
        c.stderr
    );
    for state in ["ArtifactRollback", "ArtifactFailure", "Cleanup"] {
        let c = d.call(state);
        assert!(c.success(), "{state}: {c:?}");
    }
}

/// A hand-made artifact naming one container twice: serde_json would keep
/// the second silently. The C++ client hands the meta-data over as it is
/// (the Go client hands the module none at all then).
#[test]
fn meta_data_naming_a_container_twice_is_refused_naming_the_key() {
    let s = Scratch::new("twice");
    let mut d = s.driver(Flavor::Cpp5);
    d.prepare_tree(&Artifact::new("web-2", "docker")).unwrap();
    let twice = r#"{"docker-stack": {"format": 1, "stack": "web", "containers": {"web": {"image": "web@DIGEST"}, "web": {"image": "web@DIGEST", "privileged": true}}}}"#;
    fs::write(
        d.tree().join("header/meta-data"),
        twice.replace("DIGEST", DIGEST),
    )
    .unwrap();
    assert!(d.download(&[], false).is_err());
    let c = d.calls().last().unwrap().clone();
    assert_eq!(c.status, Some(1));
    assert_eq!(c.stderr.lines().count(), 1, "{}", c.stderr);
    assert!(
        c.stderr
            .contains("header/meta-data is not valid JSON: the key \"web\" appears twice"),
        "{}",
        c.stderr
    );
    for state in ["ArtifactRollback", "ArtifactFailure", "Cleanup"] {
        let c = d.call(state);
        assert!(c.success(), "{state}: {c:?}");
    }
    assert_eq!(s.state_files(), 0);
}

#[test]
fn an_unreachable_engine_fails_download_with_what_to_check() {
    let s = Scratch::new("noengine");
    let mut d = s.driver(Flavor::Go3);
    let meta = format!(
        r#"{{"docker-stack": {{"format": 1, "stack": "web", "containers": {{"web": {{"image": "web@{DIGEST}"}}}}}}}}"#
    );
    let art = Artifact::new("web-1", "docker").meta_data(&meta);
    assert_eq!(d.install(&art).unwrap(), Installed::NotModified);
    let err = stderr_of(&d, "Download");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("cannot connect to"), "{err}");
    assert!(err.contains("is dockerd running"), "{err}");
}

#[test]
fn recovery_states_without_an_update_do_nothing_and_succeed() {
    let s = Scratch::new("recovery");
    let mut d = s.driver(Flavor::Cpp5);
    let meta = format!(r#"{{"containers": ["web@{DIGEST}"], "run_args": ""}}"#);
    d.prepare_tree(&Artifact::new("web-1", "docker").meta_data(&meta))
        .unwrap();
    for state in [
        "ArtifactCommit",
        "ArtifactRollback",
        "ArtifactFailure",
        "Cleanup",
    ] {
        let c = d.call(state);
        assert!(c.success(), "{state}: {c:?}");
        assert!(
            c.stdout.is_empty(),
            "{state}: stdout belongs to the protocol"
        );
        assert!(c.stderr.contains("nothing to"), "{state}: {}", c.stderr);
    }
}

#[test]
fn a_refused_inline_artifact_ends_its_download_where_neither_client_can_hang() {
    // The module refuses before the payloads (the engine is unreachable). It
    // must not exit while a Go 3.x client may be handing over the first one:
    // the driver's Go3 flavour fails such an exit (Failure::hangs_go3). It
    // reads one stream-next line and leaves the 8 MiB unread.
    for flavor in [Flavor::Go3, Flavor::Cpp5] {
        let s = Scratch::new(&format!("inline-{flavor:?}"));
        let mut d = s.driver(flavor);
        let meta = format!(
            r#"{{"docker-stack": {{"format": 1, "stack": "web",
                "inline": {{"images.tar": {{"images": ["{DIGEST}"], "size": 4194304}}}},
                "containers": {{"web": {{"image": "demo/web:1@{DIGEST}"}}}}}}}}"#
        );
        let art = Artifact::new("web-1", "docker")
            .meta_data(&meta)
            .payload(mender_module_driver::PayloadFile::bytes(
                "images.tar",
                vec![0u8; 4 << 20],
            ))
            .payload(mender_module_driver::PayloadFile::bytes(
                "notes.bin",
                vec![1u8; 4 << 20],
            ));
        assert_eq!(
            d.install(&art).unwrap(),
            Installed::NotModified,
            "{flavor:?}"
        );
        let err = stderr_of(&d, "Download");
        assert_eq!(err.lines().count(), 1, "{flavor:?}: {err}");
        assert!(err.contains("cannot connect to"), "{flavor:?}: {err}");
        assert_eq!(s.state_files(), 0, "{flavor:?}: no journal written");
    }
}
