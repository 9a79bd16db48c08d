//! The executor against the fake engine: whole client sequences, failures at
//! every engine call followed by the client's recovery in a fresh process
//! (a new Deployer over the journal re-read from disk), and the refusals that
//! must leave everything as it was.

use std::path::PathBuf;
use std::time::Duration;

use docker_spec::{ContainerSpec, ImageRef, Release, Strategy};

use super::*;
use crate::engine::fake::FakeEngine;
use crate::engine::Health;
use crate::journal::Phase;
use crate::labels;

struct Bench {
    engine: FakeEngine,
    config: Config,
    dir: PathBuf,
}

impl Drop for Bench {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn digest(c: char) -> String {
    format!("sha256:{}", c.to_string().repeat(64))
}

fn image(repo: &str, d: char) -> ImageRef {
    ImageRef::parse(&format!("reg.example.com:5000/{repo}@{}", digest(d))).unwrap()
}

fn spec(name: &str, d: char) -> ContainerSpec {
    let mut s = ContainerSpec::new(name, image(name, d));
    s.network_mode = Some("none".into());
    s
}

fn release(specs: Vec<ContainerSpec>) -> Release {
    Release {
        format: docker_spec::Format::Stack(1),
        stack: "web".into(),
        strategy: Strategy::StopFirst,
        health_timeout: Some(Duration::from_secs(2)),
        registry: None,
        replaces: vec![],
        start: docker_spec::StartOrder::Sequence,
        containers: specs,
        inline: vec![],
        networks: vec![],
    }
}

impl Bench {
    fn new(name: &str) -> Bench {
        let dir = std::env::temp_dir().join(format!("dm-exec-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let mut config = Config::defaults(dir.join("docker-module.conf"));
        config.state_dir = dir.join("state");
        config.settle = Duration::ZERO;
        Bench {
            engine: FakeEngine::new(),
            config,
            dir,
        }
    }

    fn publish(&mut self, r: &Release) {
        for c in &r.containers {
            self.engine.publish(&c.image);
        }
    }

    /// One state in a "fresh process": the journal is read from disk.
    fn state(
        &mut self,
        artifact: &str,
        stack: &str,
        work: impl FnOnce(&mut Deployer<'_>) -> Result<()>,
    ) -> Result<()> {
        let mut journal = Journal::open(&self.config.state_dir, stack).unwrap();
        let mut d = Deployer {
            engine: &mut self.engine,
            config: &self.config,
            journal: &mut journal,
            artifact,
            poll: Duration::from_millis(1),
        };
        work(&mut d)
    }

    fn journal(&self, stack: &str) -> crate::journal::StackState {
        Journal::open(&self.config.state_dir, stack).unwrap().state
    }

    /// Go 3.x `mender install` + `mender commit`.
    fn deploy(&mut self, artifact: &str, r: &Release) {
        self.state(artifact, &r.stack, |d| d.download(r, None))
            .unwrap();
        self.state(artifact, &r.stack, |d| d.install(r, None))
            .unwrap();
        self.state(artifact, &r.stack, |d| d.commit()).unwrap();
        self.state(artifact, &r.stack, |d| d.cleanup()).unwrap();
    }

    /// The client's error path after a failed ArtifactInstall.
    fn recover(&mut self, artifact: &str, stack: &str) {
        self.state(artifact, stack, |d| d.rollback()).unwrap();
        self.state(artifact, stack, |d| d.failure()).unwrap();
        self.state(artifact, stack, |d| d.cleanup()).unwrap();
    }

    /// Names, ids, running state and images: what a user could see.
    fn view(&self) -> (Vec<(String, String, bool)>, Vec<String>) {
        let mut c: Vec<(String, String, bool)> = self
            .engine
            .containers
            .iter()
            .map(|c| (c.name.clone(), c.id.clone(), c.running))
            .collect();
        c.sort();
        let mut i: Vec<String> = self
            .engine
            .images
            .iter()
            .flat_map(|i| i.refs.clone())
            .collect();
        i.sort();
        (c, i)
    }
}

#[test]
fn install_commit_then_upgrade_and_commit_prunes_n_minus_2() {
    let mut b = Bench::new("upgrade");
    let v1 = release(vec![spec("db", '1'), spec("web", '1')]);
    let v2 = release(vec![spec("db", '1'), spec("web", '2')]);
    let v3 = release(vec![spec("db", '1'), spec("web", '3')]);
    for r in [&v1, &v2, &v3] {
        b.publish(r);
    }
    b.engine.foreign("monitor", "sha256:foreign");
    b.deploy("web-1", &v1);
    assert_eq!(b.engine.running_names(), ["db", "monitor", "web"]);
    let db_id = b.engine.by_name("db").unwrap().id.clone();
    let s = b.journal("web");
    assert_eq!(s.current.unwrap().artifact, "web-1");
    assert!(s.update.is_none());

    b.deploy("web-2", &v2);
    assert_eq!(b.engine.running_names(), ["db", "monitor", "web"]);
    assert_eq!(
        b.engine.by_name("db").unwrap().id,
        db_id,
        "unchanged db kept running"
    );
    assert_eq!(
        b.engine.all_names(),
        ["db", "monitor", "web"],
        "old web removed on commit"
    );
    assert!(b.engine.has_image(&image("web", '1').pinned()), "n-1 kept");

    b.deploy("web-3", &v3);
    assert!(
        !b.engine.has_image(&image("web", '1').pinned()),
        "n-2 pruned"
    );
    assert!(b.engine.has_image(&image("web", '2').pinned()), "n-1 kept");
    assert!(b.engine.has_image(&image("db", '1').pinned()), "in use");
    let s = b.journal("web");
    assert_eq!(s.current.unwrap().artifact, "web-3");
    assert_eq!(s.previous.unwrap().artifact, "web-2");
}

#[test]
fn rollback_restores_exactly_the_previous_set_and_cleanup_leaves_nothing() {
    let mut b = Bench::new("rollback");
    let v1 = release(vec![spec("web", '1'), spec("worker", '1')]);
    let mut v2 = release(vec![spec("web", '2'), spec("api", '2')]);
    v2.replaces = vec!["legacy".into()];
    b.publish(&v1);
    b.publish(&v2);
    b.engine.foreign("legacy", "sha256:legacy");
    b.deploy("web-1", &v1);
    let before = b.view();

    b.state("web-2", "web", |d| d.download(&v2, None)).unwrap();
    b.state("web-2", "web", |d| d.install(&v2, None)).unwrap();
    assert_eq!(b.engine.running_names(), ["api", "web"]);
    assert_eq!(
        b.engine.all_names(),
        ["api", "legacy", "web", "web.mender-prev", "worker"]
    );
    b.recover("web-2", "web");
    assert_eq!(b.view(), before, "same containers, ids, states and images");
    assert!(b.journal("web").update.is_none());
}

#[test]
fn a_container_that_exits_fails_the_gate_and_the_recovery_restores() {
    let mut b = Bench::new("gate");
    let v1 = release(vec![spec("web", '1')]);
    let v2 = release(vec![spec("web", '2'), spec("api", '2')]);
    b.publish(&v1);
    b.publish(&v2);
    b.deploy("web-1", &v1);
    let before = b.view();
    b.engine.exits_on_start.insert("api".into());
    b.state("web-2", "web", |d| d.download(&v2, None)).unwrap();
    let e = b
        .state("web-2", "web", |d| d.install(&v2, None))
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "health gate: container api exited with code 1; the previous set will be restored"
    );
    b.recover("web-2", "web");
    assert_eq!(b.view(), before);
}

#[test]
fn an_unhealthy_or_slow_container_fails_the_gate() {
    for (health, want) in [
        (
            Health::Unhealthy("boom".into()),
            "container web is unhealthy (last check: boom)",
        ),
        (
            Health::Starting,
            "still waiting for web to become healthy after 2s",
        ),
    ] {
        let mut b = Bench::new("unhealthy");
        let v1 = release(vec![spec("web", '1')]);
        b.publish(&v1);
        b.engine.health_on_start.insert("web".into(), health);
        b.state("web-1", "web", |d| d.download(&v1, None)).unwrap();
        let e = b
            .state("web-1", "web", |d| d.install(&v1, None))
            .unwrap_err();
        assert!(e.to_string().contains(want), "{e}");
        b.recover("web-1", "web");
        assert_eq!(b.view(), (vec![], vec![]), "first install: nothing left");
    }
}

#[test]
fn a_failure_at_any_engine_call_of_an_install_is_recovered_in_a_fresh_process() {
    let v1 = release(vec![spec("web", '1'), spec("worker", '1')]);
    let mut v2 = release(vec![
        spec("web", '2'),
        spec("worker", '1'),
        spec("api", '2'),
    ]);
    v2.replaces = vec!["legacy".into()];
    let mut v2_start_first = v2.clone();
    v2_start_first.strategy = Strategy::StartFirst;
    for r2 in [&v2, &v2_start_first] {
        let mut n = 1;
        loop {
            let mut b = Bench::new("crash");
            b.publish(&v1);
            b.publish(r2);
            b.engine.foreign("legacy", "sha256:legacy");
            b.engine.foreign("monitor", "sha256:monitor");
            b.deploy("web-1", &v1);
            let before = b.view();
            b.engine.fail_at = Some(b.engine.mutations + n);
            let download = b.state("web-2", "web", |d| d.download(r2, None));
            let failed = match download {
                Err(_) => {
                    // The client runs only Cleanup after a failed Download.
                    b.engine.fail_at = None;
                    b.state("web-2", "web", |d| d.cleanup()).unwrap();
                    true
                }
                Ok(()) => {
                    let install = b.state("web-2", "web", |d| d.install(r2, None));
                    b.engine.fail_at = None;
                    if install.is_err() {
                        b.recover("web-2", "web");
                        true
                    } else {
                        b.recover("web-2", "web");
                        false
                    }
                }
            };
            assert_eq!(
                b.view(),
                before,
                "{:?}: failure at mutating call {n}",
                r2.strategy
            );
            assert!(b.journal("web").update.is_none());
            if !failed {
                break;
            }
            n += 1;
        }
        assert!(n > 8, "{n} engine calls covered");
    }
}

#[test]
fn a_failure_at_any_engine_call_after_commit_is_finished_by_the_next_cleanup() {
    let v1 = release(vec![spec("web", '1')]);
    let v2 = release(vec![spec("web", '2')]);
    let v3 = release(vec![spec("web", '3'), spec("api", '3')]);
    let mut n = 1;
    loop {
        let mut b = Bench::new("gc");
        for r in [&v1, &v2, &v3] {
            b.publish(r);
        }
        b.deploy("web-1", &v1);
        b.deploy("web-2", &v2);
        b.state("web-3", "web", |d| d.download(&v3, None)).unwrap();
        b.state("web-3", "web", |d| d.install(&v3, None)).unwrap();
        b.state("web-3", "web", |d| d.commit()).unwrap();
        b.engine.fail_at = Some(b.engine.mutations + n);
        let first = b.state("web-3", "web", |d| d.cleanup());
        b.engine.fail_at = None;
        if first.is_err() {
            // The leftover commit is finished by the next state that opens the stack.
            b.state("web-3", "web", |d| d.cleanup()).unwrap();
        }
        assert_eq!(b.engine.all_names(), ["api", "web"]);
        assert!(!b.engine.has_image(&image("web", '1').pinned()));
        assert!(b.engine.has_image(&image("web", '2').pinned()));
        assert_eq!(b.journal("web").current.unwrap().artifact, "web-3");
        if first.is_ok() {
            break;
        }
        n += 1;
    }
    assert!(n >= 3, "{n}");
}

#[test]
fn rollback_after_a_commit_that_died_still_restores() {
    let mut b = Bench::new("commit-died");
    let v1 = release(vec![spec("web", '1')]);
    let v2 = release(vec![spec("web", '2')]);
    b.publish(&v1);
    b.publish(&v2);
    b.deploy("web-1", &v1);
    let before = b.view();
    b.state("web-2", "web", |d| d.download(&v2, None)).unwrap();
    b.state("web-2", "web", |d| d.install(&v2, None)).unwrap();
    // ArtifactCommit wrote its phase, then the process died: the client rolls back.
    b.state("web-2", "web", |d| d.commit()).unwrap();
    b.recover("web-2", "web");
    assert_eq!(b.view(), before);
}

#[test]
fn refusals_in_download_change_nothing() {
    let mut b = Bench::new("refuse");
    let v1 = release(vec![spec("web", '1')]);
    b.publish(&v1);
    b.deploy("web-1", &v1);
    b.engine.foreign("api", "sha256:x");
    let calls = b.engine.calls.len();
    let before = b.view();
    let journal = b.journal("web");

    let mut named = release(vec![spec("web", '2')]);
    named.registry = Some("fleet".into());
    b.publish(&named);
    let mut big = release(vec![spec("web", '2')]);
    big.containers[0].size = Some(10 << 30);
    b.engine.free_bytes = Some(1 << 30);
    let clash = release(vec![spec("web", '2'), spec("api", '2')]);
    let unpublished = release(vec![spec("web", '9')]);
    for (r, want) in [
        (&named, "the release pulls through registry \"fleet\", which"),
        (&big, "not enough disk space for the images still to fetch: 10240.0 MiB needed but the engine's data root /fake/docker has 1024.0 MiB free"),
        (&clash, "container name api is already used by container api"),
    ] {
        let e = b.state("web-2", "web", |d| d.download(r, None)).unwrap_err().to_string();
        assert!(e.contains(want), "{e}");
        assert_eq!(b.engine.calls.len(), calls, "{want}: no engine change");
        assert_eq!(b.journal("web"), journal, "{want}: no journal change");
        b.state("web-2", "web", |d| d.cleanup()).unwrap();
        assert_eq!(b.view(), before);
    }
    // A pull that fails leaves a record; Cleanup clears it and changes nothing else.
    let e = b
        .state("web-2", "web", |d| d.download(&unpublished, None))
        .unwrap_err();
    assert!(e.to_string().contains("cannot pull"), "{e}");
    b.state("web-2", "web", |d| d.cleanup()).unwrap();
    assert_eq!(b.view(), before);
    assert_eq!(b.journal("web"), journal);
}

#[test]
fn credentials_go_only_to_their_registry() {
    let mut b = Bench::new("creds");
    b.config.registries.insert(
        "fleet".into(),
        crate::engine::Credentials {
            address: "reg.example.com:5000".into(),
            username: "dev".into(),
            password: "secret".into(),
        },
    );
    let mut other = ContainerSpec::new(
        "other",
        ImageRef::parse(&format!("elsewhere.example.com/other@{}", digest('5'))).unwrap(),
    );
    other.network_mode = Some("none".into());
    let mut r = release(vec![spec("web", '1'), other]);
    r.registry = Some("fleet".into());
    b.publish(&r);
    b.state("web-1", "web", |d| d.download(&r, None)).unwrap();
    assert_eq!(
        b.engine.pulls_with,
        [Some(("reg.example.com:5000".into(), "dev".into())), None]
    );
    // Without a named registry, credentials are matched by address.
    let mut b2 = Bench::new("creds2");
    b2.config.registries = b.config.registries.clone();
    let r2 = release(vec![spec("web", '1')]);
    b2.publish(&r2);
    b2.state("web-1", "web", |d| d.download(&r2, None)).unwrap();
    assert_eq!(
        b2.engine.pulls_with,
        [Some(("reg.example.com:5000".into(), "dev".into()))]
    );
}

#[test]
fn an_abandoned_update_is_finished_or_blocks_the_next() {
    let mut b = Bench::new("abandoned");
    let v1 = release(vec![spec("web", '1')]);
    let v2 = release(vec![spec("web", '2')]);
    let v3 = release(vec![spec("web", '3')]);
    for r in [&v1, &v2, &v3] {
        b.publish(r);
    }
    b.deploy("web-1", &v1);
    // web-2 downloaded, then the client forgot it (no Cleanup).
    b.state("web-2", "web", |d| d.download(&v2, None)).unwrap();
    assert!(b.engine.has_image(&image("web", '2').pinned()));
    b.state("web-3", "web", |d| d.download(&v3, None)).unwrap();
    assert!(
        !b.engine.has_image(&image("web", '2').pinned()),
        "its pull is undone"
    );
    assert_eq!(b.journal("web").update.unwrap().artifact, "web-3");
    // web-3 installed and awaiting commit: another update must wait.
    b.state("web-3", "web", |d| d.install(&v3, None)).unwrap();
    let e = b
        .state("web-2", "web", |d| d.download(&v2, None))
        .unwrap_err();
    assert!(
        e.to_string().contains("stack web is in the middle of an update to web-3 (phase installed); commit or roll it back first"),
        "{e}"
    );
}

#[test]
fn a_switch_the_client_lost_is_put_back_by_the_next_download() {
    // mender 3.x standalone records an install only once ArtifactInstall
    // returns: after a power cut inside it no recovery state runs, and the
    // next deployment's Download is the first to see the switch.
    let v1 = release(vec![spec("web", '1'), spec("worker", '1')]);
    let v2 = release(vec![spec("web", '2'), spec("worker", '2')]);
    let v3 = release(vec![spec("web", '3'), spec("worker", '1')]);
    for next in ["web-3", "web-2"] {
        let mut n = 1;
        loop {
            let mut b = Bench::new("lost");
            for r in [&v1, &v2, &v3] {
                b.publish(r);
            }
            b.deploy("web-1", &v1);
            let before = b.view().0;
            b.state("web-2", "web", |d| d.download(&v2, None)).unwrap();
            b.engine.fail_at = Some(b.engine.mutations + n);
            let died = b.state("web-2", "web", |d| d.install(&v2, None)).is_err();
            b.engine.fail_at = None;
            if !died {
                break;
            }
            let r = if next == "web-3" { &v3 } else { &v2 };
            b.state(next, "web", |d| d.download(r, None)).unwrap();
            assert_eq!(b.view().0, before, "{next}: died at mutating call {n}");
            b.state(next, "web", |d| d.install(r, None)).unwrap();
            b.state(next, "web", |d| d.commit()).unwrap();
            b.state(next, "web", |d| d.cleanup()).unwrap();
            assert_eq!(b.engine.running_names(), ["web", "worker"]);
            assert_eq!(
                b.engine.by_name("web").unwrap().label(labels::RELEASE),
                Some(next)
            );
            assert!(b.journal("web").update.is_none());
            n += 1;
        }
        assert!(n > 4, "{n} engine calls covered");
    }
}

#[test]
fn start_first_starts_the_new_set_before_stopping_the_old() {
    let mut b = Bench::new("start-first");
    let v1 = release(vec![spec("web", '1')]);
    let mut v2 = release(vec![spec("web", '2')]);
    v2.strategy = Strategy::StartFirst;
    b.publish(&v1);
    b.publish(&v2);
    b.deploy("web-1", &v1);
    b.engine.calls.clear();
    b.state("web-2", "web", |d| d.download(&v2, None)).unwrap();
    b.state("web-2", "web", |d| d.install(&v2, None)).unwrap();
    let calls: Vec<&str> = b.engine.calls.iter().map(String::as_str).collect();
    let pinned = image("web", '2').pinned();
    assert_eq!(
        calls,
        [
            format!("pull {pinned}").as_str(),
            "create web.mender-new",
            "start web.mender-new",
            "stop web",
            "rename web web.mender-prev",
            "rename web.mender-new web",
        ]
    );
}

#[test]
fn reinstalling_after_an_interrupted_install_starts_from_the_previous_set() {
    let mut b = Bench::new("reinstall");
    let v1 = release(vec![spec("web", '1')]);
    let v2 = release(vec![spec("web", '2')]);
    b.publish(&v1);
    b.publish(&v2);
    b.deploy("web-1", &v1);
    b.state("web-2", "web", |d| d.download(&v2, None)).unwrap();
    b.engine.fail_at = Some(b.engine.mutations + 3);
    assert!(b.state("web-2", "web", |d| d.install(&v2, None)).is_err());
    b.engine.fail_at = None;
    assert_eq!(b.journal("web").update.unwrap().phase, Phase::Install);
    b.state("web-2", "web", |d| d.install(&v2, None)).unwrap();
    assert_eq!(b.engine.running_names(), ["web"]);
    assert_eq!(
        b.engine.by_name("web").unwrap().label(labels::RELEASE),
        Some("web-2")
    );
    b.state("web-2", "web", |d| d.commit()).unwrap();
    b.state("web-2", "web", |d| d.cleanup()).unwrap();
    assert_eq!(b.engine.all_names(), ["web"]);
}

// -- inline images ----------------------------------------------------------

/// A payload file as the client would hand it over.
struct FakePayloads(std::collections::VecDeque<(String, Option<u64>, Vec<u8>)>);

impl PayloadSource for FakePayloads {
    fn next_payload(&mut self) -> Result<Option<Incoming<'_>>> {
        Ok(self.0.pop_front().map(|(name, size, data)| Incoming {
            name,
            size,
            reader: Box::new(std::io::Cursor::new(data)),
        }))
    }
}

/// A `docker save`-shaped tar the fake engine understands: `ids` lists what
/// it loads; the manifest carries tags, as a real one does.
fn fake_archive(ids: &[&str]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let mut add = |name: &str, data: &[u8]| {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        b.append_data(&mut h, name, data).unwrap();
    };
    add("ids", ids.join("\n").as_bytes());
    add(
        "manifest.json",
        br#"[{"Config":"x.json","RepoTags":["demo/web:1.0"],"Layers":["l/layer.tar"]}]"#,
    );
    add("repositories", br#"{"demo/web":{"1.0":"l"}}"#);
    b.into_inner().unwrap()
}

fn inline_release(id_char: char, size: Option<u64>) -> Release {
    let mut web = spec("web", id_char);
    web.image.inline = true;
    let mut r = release(vec![web]);
    r.inline = vec![docker_spec::InlineArchive {
        payload: "images.tar".into(),
        images: vec![digest(id_char)],
        size,
        layers: Vec::new(),
    }];
    r
}

fn payloads(items: Vec<(&str, Vec<u8>)>) -> FakePayloads {
    FakePayloads(
        items
            .into_iter()
            .map(|(n, d)| (n.to_owned(), Some(d.len() as u64), d))
            .collect(),
    )
}

#[test]
fn an_inline_archive_loads_during_download_and_the_container_runs_from_its_id() {
    let mut b = Bench::new("inline");
    let id = digest('a');
    let archive = fake_archive(&[&id]);
    let r = inline_release('a', Some(archive.len() as u64));
    let mut src = payloads(vec![("other.bin", b"x".to_vec()), ("images.tar", archive)]);
    b.state("web-1", "web", |d| d.download(&r, Some(&mut src)))
        .unwrap();
    assert!(b.engine.has_image(&id), "loaded");
    assert!(b.engine.calls.contains(&"load".to_owned()));
    b.state("web-1", "web", |d| d.install(&r, None)).unwrap();
    assert_eq!(b.engine.by_name("web").unwrap().image_id, id);
    b.state("web-1", "web", |d| d.commit()).unwrap();
    b.state("web-1", "web", |d| d.cleanup()).unwrap();
    assert!(b.engine.by_name("web").unwrap().running);

    // The same release again: nothing to load, the payload is only read.
    let calls = b.engine.calls.len();
    let mut again = payloads(vec![("images.tar", fake_archive(&[&id]))]);
    b.state("web-1b", "web", |d| d.download(&r, Some(&mut again)))
        .unwrap();
    assert_eq!(
        b.engine.calls.len(),
        calls,
        "no load when the image is there"
    );
}

#[test]
fn a_failed_inline_update_removes_what_it_loaded() {
    let mut b = Bench::new("inline-fail");
    let v1 = release(vec![spec("web", '1')]);
    b.publish(&v1);
    b.deploy("web-1", &v1);
    let before = b.view();
    let archive = fake_archive(&[&digest('b')]);
    let r = inline_release('b', Some(archive.len() as u64));
    b.engine.exits_on_start.insert("web".into());
    let mut src = payloads(vec![("images.tar", archive)]);
    b.state("web-2", "web", |d| d.download(&r, Some(&mut src)))
        .unwrap();
    b.state("web-2", "web", |d| d.install(&r, None))
        .unwrap_err();
    b.engine.exits_on_start.clear();
    b.recover("web-2", "web");
    assert_eq!(b.view(), before, "previous set back, loaded image gone");
}

#[test]
fn a_bad_inline_archive_is_refused_in_download_with_nothing_changed() {
    let id = digest('c');
    let good = fake_archive(&[&id]);
    let mut truncated = good.clone();
    truncated.truncate(700);
    let other = fake_archive(&[&digest('d')]);
    let extra = fake_archive(&[&id, &digest('e')]);
    let cases: Vec<(&str, Release, FakePayloads, &str)> = vec![
        (
            "truncated",
            inline_release('c', None),
            payloads(vec![("images.tar", truncated)]),
            "inline archive images.tar was refused: the archive ends after 700 bytes, inside a tar entry: it is truncated",
        ),
        (
            "corrupt layer",
            inline_release('c', None),
            payloads(vec![("images.tar", fake_archive(&[&id, "corrupt"]))]),
            "inline archive images.tar was refused: invalid diffID",
        ),
        (
            "another image",
            inline_release('c', None),
            payloads(vec![("images.tar", other)]),
            &*Box::leak(format!("inline archive images.tar holds {} instead of {id}", digest('d')).into_boxed_str()),
        ),
        (
            "one image too many",
            inline_release('c', None),
            payloads(vec![("images.tar", extra)]),
            "not the archive the artifact's meta-data describes",
        ),
        (
            "stated size differs",
            inline_release('c', Some(good.len() as u64 + 1)),
            payloads(vec![("images.tar", good.clone())]),
            "payload images.tar is",
        ),
        (
            "missing payload",
            inline_release('c', None),
            payloads(vec![("other.tar", good.clone())]),
            "the artifact has no payload file images.tar",
        ),
        (
            "too big for the disk",
            inline_release('c', Some(600 << 20)),
            payloads(vec![("images.tar", good.clone())]),
            "not enough disk space for the images still to fetch: 1200.0 MiB needed",
        ),
    ];
    for (what, r, mut src, want) in cases {
        let mut b = Bench::new(&format!("inline-bad-{}", what.replace(' ', "-")));
        b.engine.free_bytes = Some(1 << 30);
        let v1 = release(vec![spec("web", '1')]);
        b.publish(&v1);
        b.deploy("web-1", &v1);
        let before = b.view();
        let journal = b.journal("web");
        let e = b
            .state("web-2", "web", |d| d.download(&r, Some(&mut src)))
            .unwrap_err()
            .to_string();
        assert!(e.contains(want), "{what}: {e}\nwant: {want}");
        assert!(!e.contains('\n'), "{what}: one line");
        b.state("web-2", "web", |d| d.cleanup()).unwrap();
        assert_eq!(b.view(), before, "{what}: nothing changed");
        assert_eq!(b.journal("web"), journal, "{what}: journal as before");
    }
}

#[test]
fn a_delta_archive_loads_only_over_its_base_layers_and_is_refused_without_them() {
    let layer = digest;
    let delta = |id_char: char| {
        let mut r = inline_release(id_char, None);
        r.inline[0].layers = vec![docker_spec::ImageLayers {
            image: digest(id_char),
            on_device: vec![layer('4'), layer('5')],
            inline: vec![layer('6')],
        }];
        r
    };
    for (what, held, refused) in [
        ("base present", vec![layer('4'), layer('5')], None),
        ("base under a longer stack", vec![layer('4'), layer('5'), layer('7')], None),
        ("second layer over another", vec![layer('7'), layer('5')], Some(format!(
            "inline archive images.tar is a delta: it leaves out layer {} of image {} (1 of the 2 layers it expects on the device)", layer('4'), digest('c')))),
        ("top base layer missing", vec![layer('4')], Some(format!(
            "it leaves out layer {} of image {} (2 of the 2 layers", layer('5'), digest('c')))),
    ] {
        let mut b = Bench::new(&format!("delta-{}", what.replace(' ', "-")));
        let v1 = release(vec![spec("web", '1')]);
        b.publish(&v1);
        b.deploy("web-1", &v1);
        // The running release's image holds them.
        for i in &mut b.engine.images {
            i.layers = held.clone();
        }
        let before = b.view();
        let journal = b.journal("web");
        let r = delta('c');
        let mut src = payloads(vec![("images.tar", fake_archive(&[&digest('c')]))]);
        let got = b.state("web-2", "web", |d| d.download(&r, Some(&mut src)));
        match refused {
            None => {
                got.unwrap();
                assert!(b.engine.has_image(&digest('c')), "{what}: loaded");
            }
            Some(want) => {
                let e = got.unwrap_err().to_string();
                assert!(e.contains(&want), "{what}: {e}\nwant: {want}");
                assert!(e.contains("deploy the full artifact") && !e.contains('\n'), "{what}: {e}");
                assert!(!b.engine.calls.iter().any(|c| c == "load"), "{what}: nothing loaded");
                assert_eq!(b.view(), before, "{what}: nothing changed");
                assert_eq!(b.journal("web"), journal, "{what}: journal as before");
            }
        }
    }
}

#[test]
fn stored_payloads_are_loaded_by_artifact_install_before_anything_stops() {
    let mut b = Bench::new("inline-store");
    let v1 = release(vec![spec("web", '1')]);
    b.publish(&v1);
    b.deploy("web-1", &v1);
    let archive = fake_archive(&[&digest('f')]);
    let r = inline_release('f', Some(archive.len() as u64));
    b.state("web-2", "web", |d| d.download(&r, None)).unwrap();
    assert!(
        !b.engine.calls.contains(&"load".to_owned()),
        "nothing loaded in Download"
    );
    let mut stored = payloads(vec![("images.tar", archive)]);
    b.state("web-2", "web", |d| d.install(&r, Some(&mut stored)))
        .unwrap();
    assert_eq!(b.engine.by_name("web").unwrap().image_id, digest('f'));
    let load_at = b.engine.calls.iter().position(|c| c == "load").unwrap();
    let stop_at = b
        .engine
        .calls
        .iter()
        .position(|c| c.starts_with("stop"))
        .unwrap();
    assert!(load_at < stop_at, "{:?}", b.engine.calls);
}

#[test]
fn a_load_that_tags_anything_is_refused_and_every_tag_and_image_put_back() {
    // An engine that tags what it loads: the filter's stripping bypassed.
    let mut b = Bench::new("inline-tags");
    b.engine.local_image("sha256:user", "postgres:15");
    let v1 = release(vec![spec("web", '1')]);
    b.publish(&v1);
    b.deploy("web-1", &v1);
    let before = b.view();
    let tags = b.engine.tags();
    let listed = digest('7');
    let archive = fake_archive(&[&listed, &format!("tag {} postgres:15", digest('8'))]);
    let r = inline_release('7', Some(archive.len() as u64));
    let mut src = payloads(vec![("images.tar", archive)]);

    let e = b
        .state("web-2", "web", |d| d.download(&r, Some(&mut src)))
        .unwrap_err()
        .to_string();

    assert!(
        e.contains("made the engine change tags (postgres:15); they were put back"),
        "{e}"
    );
    assert_eq!(b.engine.tags(), tags, "the user's tag is back at once");
    assert!(
        !b.engine.has_image(&listed) && !b.engine.has_image(&digest('8')),
        "nothing of it kept"
    );
    assert!(b.journal("web").update.unwrap().load.is_none());
    b.state("web-2", "web", |d| d.cleanup()).unwrap();
    assert_eq!(b.view(), before);
    assert_eq!(b.engine.tags(), tags);
}

#[test]
fn a_load_killed_half_way_is_undone_by_the_next_state_once_the_engine_has_finished() {
    let mut b = Bench::new("inline-killed");
    b.engine.local_image("sha256:user", "demo/web:1.0");
    let v1 = release(vec![spec("web", '1')]);
    b.publish(&v1);
    b.deploy("web-1", &v1);
    let before = b.view();
    let tags = b.engine.tags();
    let r = inline_release('9', None);
    // Download got as far as journaling the load, then the process died; the
    // engine goes on and adds the release's image, one more, and a tag.
    b.state("web-2", "web", |d| {
        d.download(&r, None)?;
        d.begin_load("images.tar").map(|_| ())
    })
    .unwrap();
    assert!(b.journal("web").update.unwrap().load.is_some());
    b.engine.loading_polls = 3;
    b.engine.late_images = vec![
        crate::engine::fake::FakeImage {
            id: digest('9'),
            refs: vec![digest('9')],
            layers: Vec::new(),
        },
        crate::engine::fake::FakeImage {
            id: digest('e'),
            refs: vec![digest('e'), "demo/web:1.0".into()],
            layers: Vec::new(),
        },
    ];
    if let Some(i) = b.engine.images.iter_mut().find(|i| i.id == "sha256:user") {
        i.refs.retain(|r| r != "demo/web:1.0");
    }

    b.state("web-2", "web", |d| d.cleanup()).unwrap();

    assert_eq!(b.engine.loading_polls, 0, "waited for the engine");
    assert_eq!(b.view(), before, "what the load added is gone");
    assert_eq!(b.engine.tags(), tags, "the tag is back");
    assert!(b.journal("web").update.is_none());
}

/// A tmpfs of `size` mounted on `dir` while it lives (tests run as root, as
/// the test command does).
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(dir: &std::path::Path, size: &str) -> Tmpfs {
        std::fs::create_dir_all(dir).unwrap();
        let status = std::process::Command::new("mount")
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
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
    }
}

/// Fills the filesystem of `dir` to the last byte.
fn fill(dir: &std::path::Path) {
    use std::io::Write;
    let mut f = std::fs::File::create(dir.join("filler")).unwrap();
    let block = vec![0u8; 4096];
    while f.write_all(&block).is_ok() {}
    while f.write_all(&[0u8]).is_ok() {}
    let _ = f.sync_all();
    let st = nix::sys::statvfs::statvfs(dir).unwrap();
    assert_eq!(st.blocks_available(), 0, "the filesystem is full");
}

#[test]
fn rollback_failure_and_cleanup_write_their_records_with_zero_free_bytes() {
    let mut b = Bench::new("full");
    let _mount = Tmpfs::mount(&b.config.state_dir, "1m");
    let v1 = release(vec![spec("web", '1'), spec("worker", '1')]);
    let v2 = release(vec![spec("web", '2'), spec("api", '2')]);
    b.publish(&v1);
    b.publish(&v2);
    b.deploy("web-1", &v1);
    let before = b.view();
    b.state("web-2", "web", |d| d.download(&v2, None)).unwrap();
    b.state("web-2", "web", |d| d.install(&v2, None)).unwrap();
    fill(&b.config.state_dir);

    b.state("web-2", "web", |d| d.rollback()).unwrap();
    assert_eq!(
        b.journal("web").update.map(|u| u.phase),
        Some(Phase::RolledBack),
        "the rollback's record is on disk"
    );
    b.state("web-2", "web", |d| d.failure()).unwrap();
    b.state("web-2", "web", |d| d.cleanup()).unwrap();

    assert_eq!(b.view(), before, "the previous set is back");
    let j = b.journal("web");
    assert!(j.update.is_none());
    assert_eq!(j.current.map(|r| r.artifact).as_deref(), Some("web-1"));
    let spare = b.config.state_dir.join(".web.json.spare");
    assert!(!spare.exists(), "the spare is given back with the update");
}

/// `s` on the stack networks `nets` (engine name, aliases) instead of
/// network_mode none.
fn on(mut s: ContainerSpec, nets: &[(&str, &[&str])]) -> ContainerSpec {
    s.network_mode = None;
    for (n, aliases) in nets {
        s.networks.insert(
            n.to_string(),
            aliases.iter().map(|a| a.to_string()).collect(),
        );
    }
    s
}

fn network(key: &str, internal: bool) -> docker_spec::NetworkSpec {
    docker_spec::NetworkSpec {
        key: key.into(),
        engine: docker_spec::NetworkSpec::engine_name("web", key, internal),
        internal,
        external: false,
    }
}

/// v1: web on front and back, db on back. v2: back turns internal (a new
/// engine network), web gains an image, and api joins front.
fn networked() -> (Release, Release) {
    let mut v1 = release(vec![
        on(spec("db", '1'), &[("web_back", &["db"])]),
        on(
            spec("web", '1'),
            &[("web_front", &["web"]), ("web_back", &["web"])],
        ),
    ]);
    v1.networks = vec![network("front", false), network("back", false)];
    let mut v2 = release(vec![
        on(spec("db", '1'), &[("web_back.internal", &["db"])]),
        on(
            spec("web", '2'),
            &[
                ("web_front", &["web"]),
                ("web_back.internal", &["web", "www"]),
            ],
        ),
        on(spec("api", '2'), &[("web_front", &["api"])]),
    ]);
    v2.networks = vec![network("front", false), network("back", true)];
    (v1, v2)
}

fn networks_of(b: &Bench) -> Vec<String> {
    b.engine.networks.keys().cloned().collect()
}

#[test]
fn stack_networks_come_before_the_switch_stay_for_a_rollback_and_go_after_commit() {
    let mut b = Bench::new("networks");
    let (v1, v2) = networked();
    b.publish(&v1);
    b.publish(&v2);
    b.deploy("web-1", &v1);
    assert_eq!(networks_of(&b), ["web_back", "web_front"]);
    for n in b.engine.networks.values() {
        assert_eq!(n[labels::STACK], "web");
    }
    // Created on its first network (by name order), joined to the other.
    let web = b.engine.by_name("web").unwrap().clone();
    assert_eq!(web.network_mode, "web_back");
    assert!(b
        .engine
        .connected
        .contains(&("web_front".to_owned(), web.id.clone())));
    assert_eq!(web.labels[labels::NETWORKS], "web_back,web_front");
    let before = (b.view(), networks_of(&b));

    // A failed v2 leaves v1 and its networks exactly as they were.
    b.state("web-2", "web", |d| d.download(&v2, None)).unwrap();
    b.state("web-2", "web", |d| d.install(&v2, None)).unwrap();
    assert_eq!(
        networks_of(&b),
        ["web_back", "web_back.internal", "web_front"]
    );
    b.recover("web-2", "web");
    assert_eq!((b.view(), networks_of(&b)), before);

    // A committed v2 drops the network only v1 used.
    b.deploy("web-2", &v2);
    assert_eq!(networks_of(&b), ["web_back.internal", "web_front"]);
    assert_eq!(
        b.engine.by_name("db").unwrap().network_mode,
        "web_back.internal"
    );
}

#[test]
fn a_network_another_container_still_uses_is_kept_and_the_cleanup_succeeds() {
    let mut b = Bench::new("networks-in-use");
    let (v1, v2) = networked();
    b.publish(&v1);
    b.publish(&v2);
    b.deploy("web-1", &v1);
    // Someone ran a container of their own on the stack's back network.
    let theirs = b.engine.foreign("theirs", &digest('1'));
    b.engine.connected.insert(("web_back".to_owned(), theirs));

    b.deploy("web-2", &v2);

    assert_eq!(
        networks_of(&b),
        ["web_back", "web_back.internal", "web_front"],
        "kept while their container is on it"
    );
    assert!(b.engine.by_name("theirs").unwrap().running);
    // Once it has gone, the next Cleanup tidies it.
    b.engine.remove_container("theirs").unwrap();
    b.state("web-2", "web", |d| d.cleanup()).unwrap();
    assert_eq!(networks_of(&b), ["web_back.internal", "web_front"]);
}

#[test]
fn a_failure_at_any_engine_call_of_a_networked_install_is_recovered_in_a_fresh_process() {
    let (v1, v2) = networked();
    let mut v2_start_first = v2.clone();
    v2_start_first.strategy = Strategy::StartFirst;
    for r2 in [&v2, &v2_start_first] {
        let mut n = 1;
        loop {
            let mut b = Bench::new("netcrash");
            b.publish(&v1);
            b.publish(r2);
            b.deploy("web-1", &v1);
            let before = (b.view(), networks_of(&b));
            b.engine.fail_at = Some(b.engine.mutations + n);
            let failed = match b.state("web-2", "web", |d| d.download(r2, None)) {
                Err(_) => {
                    b.engine.fail_at = None;
                    b.state("web-2", "web", |d| d.cleanup()).unwrap();
                    true
                }
                Ok(()) => {
                    let install = b.state("web-2", "web", |d| d.install(r2, None));
                    b.engine.fail_at = None;
                    b.recover("web-2", "web");
                    install.is_err()
                }
            };
            assert_eq!(
                (b.view(), networks_of(&b)),
                before,
                "{:?}: failure at mutating call {n}",
                r2.strategy
            );
            if !failed {
                break;
            }
            n += 1;
        }
        assert!(n > 8, "{n} engine calls covered");
    }
}

#[test]
fn an_external_network_must_exist_and_is_never_created_or_removed() {
    let mut b = Bench::new("external");
    let mut r = release(vec![on(spec("web", '1'), &[("plant-lan", &["web"])])]);
    r.networks = vec![docker_spec::NetworkSpec {
        key: "lan".into(),
        engine: "plant-lan".into(),
        internal: false,
        external: true,
    }];
    b.publish(&r);
    let err = b
        .state("web-1", "web", |d| d.download(&r, None))
        .unwrap_err()
        .to_string();
    assert_eq!(
        err,
        "network plant-lan (docker-stack.networks.lan) is external, so the module does not create it, and the engine has no network of that name; create it on the device (docker network create plant-lan) or drop external"
    );
    assert!(b.engine.calls.is_empty(), "{:?}", b.engine.calls);
    b.engine
        .networks
        .insert("plant-lan".into(), Default::default());
    b.deploy("web-1", &r);
    assert_eq!(b.engine.by_name("web").unwrap().network_mode, "plant-lan");
    assert_eq!(networks_of(&b), ["plant-lan"], "kept: not the stack's");
}

#[test]
fn secrets_and_configs_come_from_the_device_and_a_missing_one_is_refused_in_download() {
    let mut b = Bench::new("secrets");
    let mut web = spec("web", '1');
    web.secrets
        .insert("/run/secrets/token".into(), "api-token".into());
    web.configs
        .insert("/etc/app.conf".into(), "app.conf".into());
    let r = release(vec![web]);
    b.publish(&r);
    let token = docker_spec::device_file(
        &b.config.state_dir,
        "web",
        docker_spec::DeviceFile::Secret,
        "api-token",
    );
    let conf = docker_spec::device_file(
        &b.config.state_dir,
        "web",
        docker_spec::DeviceFile::Config,
        "app.conf",
    );
    let err = b
        .state("web-1", "web", |d| d.download(&r, None))
        .unwrap_err()
        .to_string();
    assert_eq!(
        err,
        format!(
            "secret api-token of container web (stack web) is not on the device: provision it as the file {} (readable by root only for a secret) before deploying; secrets never travel in artifacts",
            token.display()
        )
    );
    assert!(b.engine.calls.is_empty(), "{:?}", b.engine.calls);
    std::fs::create_dir_all(token.parent().unwrap()).unwrap();
    std::fs::write(&token, "s3cret").unwrap();
    // A directory is not a config file.
    std::fs::create_dir_all(&conf).unwrap();
    let err = b
        .state("web-1", "web", |d| d.download(&r, None))
        .unwrap_err()
        .to_string();
    assert!(err.starts_with("config app.conf of container web"), "{err}");
    std::fs::remove_dir(&conf).unwrap();
    std::fs::write(&conf, "level=info\n").unwrap();
    b.deploy("web-1", &r);
    let c = b.engine.by_name("web").unwrap();
    let mut mounts: Vec<(String, bool)> = c
        .mounts
        .iter()
        .map(|m| (m.source.clone(), m.read_write))
        .collect();
    mounts.sort();
    assert_eq!(
        mounts,
        [
            (conf.display().to_string(), false),
            (token.display().to_string(), false)
        ]
    );
}
