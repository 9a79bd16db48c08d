//! The Update Module states: each loads the configuration, the release and
//! the stack's journal, takes the module lock and hands over to the
//! [`Deployer`]. The engine is contacted only when there is work for it.

use std::time::Duration;

use docker_spec::{Release, LEGACY_STACK};
use mender_module_protocol::{Download, FileTree, ModuleResult, Payloads, UpdateModule};
use serde_json::Value;

use crate::config::{Config, DownloadMode};
use crate::engine::docker::DockerEngine;
use crate::executor::{self, DeployError, Deployer, PayloadSource};
use crate::journal::{Journal, Phase};
use crate::log;
use module_kit::lock::ModuleLock;

/// One docker module process at a time: two installs, or an install and a
/// rollback, must never interleave their engine calls. The lock file is
/// `DOCKER_MODULE_LOCK` where set (tests give each device its own).
pub const LOCK_PATH: &str = "/run/lock/mender-docker-module.lock";
const LOCK_ENV: &str = "DOCKER_MODULE_LOCK";

/// The `docker` Update Module.
#[derive(Debug, Default)]
pub struct DockerModule;

/// Everything a state needs besides the engine.
struct Session {
    config: Config,
    artifact: String,
    journal: Journal,
    _lock: ModuleLock,
}

impl Session {
    fn open(config: Config, artifact: String, stack: &str) -> ModuleResultOf<Session> {
        let path = module_kit::lock::path_from_env(LOCK_ENV, LOCK_PATH);
        let lock = module_kit::lock::acquire(&path, || {
            log!(
                "waiting for another docker module process to release {}",
                path.display()
            )
        })?;
        let journal = Journal::open(&config.state_dir, stack)?;
        Ok(Session {
            config,
            artifact,
            journal,
            _lock: lock,
        })
    }

    fn run<T>(
        &mut self,
        work: impl FnOnce(&mut Deployer<'_>) -> Result<T, DeployError>,
    ) -> ModuleResultOf<T> {
        self.config.usable()?;
        // Ample for a stop that waits out its own timeout, and for pull headers.
        let request_timeout = self.config.stop_timeout + Duration::from_secs(120);
        let mut engine = DockerEngine::connect(&self.config.socket, request_timeout)?;
        let mut deployer = Deployer {
            engine: &mut engine,
            config: &self.config,
            journal: &mut self.journal,
            artifact: &self.artifact,
            poll: Duration::from_millis(250),
        };
        Ok(work(&mut deployer)?)
    }

    /// Whether the journal holds an update of this artifact, i.e. whether a
    /// recovery state has anything to do.
    fn has_work(&self) -> bool {
        self.journal.update_for(&self.artifact).is_some()
    }
}

type ModuleResultOf<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

/// The release, validated completely: Download and ArtifactInstall refuse a
/// bad artifact before anything changes.
fn release(tree: &FileTree) -> ModuleResultOf<Release> {
    Ok(docker_spec::parse(&tree.meta_data()?)?)
}

/// The stack a recovery state works on. It must work even for meta-data that
/// Download refused (then nothing was done and there is nothing to find).
fn stack_of(tree: &FileTree) -> Option<String> {
    let meta = tree.meta_data().ok()?;
    if let Ok(r) = docker_spec::parse(&meta) {
        return Some(r.stack);
    }
    match &meta {
        Value::Object(m) if m.contains_key(docker_spec::stack::KEY) => meta
            [docker_spec::stack::KEY]["stack"]
            .as_str()
            .filter(|s| docker_spec::stack::check_stack_name(s).is_ok())
            .map(str::to_owned),
        Value::Object(m) if m.contains_key("containers") => Some(LEGACY_STACK.to_owned()),
        _ => None,
    }
}

/// Runs a recovery state (rollback, failure, cleanup, commit) if the journal
/// says there is something to do.
fn recover(
    tree: &FileTree,
    state: &str,
    work: impl FnOnce(&mut Deployer<'_>) -> Result<(), DeployError>,
) -> ModuleResult {
    let Some(stack) = stack_of(tree) else {
        log!("{state}: the artifact's meta-data names no stack, so this module changed nothing for it");
        return Ok(());
    };
    let config = Config::load_for_recovery_from_env()?;
    let mut session = Session::open(config, tree.artifact_name()?, &stack)?;
    if !session.has_work() {
        log!(
            "{state}: no update of {} of stack {stack} is in progress; nothing to do",
            session.artifact
        );
        return Ok(());
    }
    session.run(work)
}

impl UpdateModule for DockerModule {
    fn supports_rollback(&self) -> bool {
        true
    }

    /// C++ clients then announce each inline archive's size before it
    /// streams, so the disk check covers archives the meta-data states no
    /// size for.
    fn provide_payload_file_sizes(&self) -> bool {
        true
    }

    fn download(&mut self, tree: &FileTree, download: Download<'_>) -> ModuleResult {
        // Validate before touching anything: a bad artifact changes nothing.
        // Whatever fails, the protocol crate's dispatch then takes the client
        // to a point where the module's exit cannot hang it.
        let release = release(tree)?;
        let config = Config::load_from_env()?;
        // Never opening stream-next makes the client store the payloads
        // under files/ for ArtifactInstall.
        let mut payloads = match config.download {
            DownloadMode::Store => None,
            DownloadMode::Stream => Some(download.stream()),
        };
        let mut session = Session::open(config, tree.artifact_name()?, &release.stack)?;
        session.run(|d| {
            d.download(
                &release,
                payloads.as_mut().map(|p| p as &mut dyn PayloadSource),
            )
        })
    }

    fn artifact_install(&mut self, tree: &FileTree) -> ModuleResult {
        let release = release(tree)?;
        let config = Config::load_from_env()?;
        let mut stored = match config.download {
            DownloadMode::Store => Some(Payloads::stored(tree)?),
            DownloadMode::Stream => None,
        };
        let mut session = Session::open(config, tree.artifact_name()?, &release.stack)?;
        session.run(|d| {
            d.install(
                &release,
                stored
                    .as_mut()
                    .map(|p| p as &mut dyn executor::PayloadSource),
            )
        })
    }

    fn artifact_commit(&mut self, tree: &FileTree) -> ModuleResult {
        let Some(stack) = stack_of(tree) else {
            log!("ArtifactCommit: the artifact's meta-data names no stack; nothing to commit");
            return Ok(());
        };
        let config = Config::load_for_recovery_from_env()?;
        let mut session = Session::open(config, tree.artifact_name()?, &stack)?;
        Ok(executor::commit(&mut session.journal, &session.artifact)?)
    }

    fn artifact_rollback(&mut self, tree: &FileTree) -> ModuleResult {
        recover(tree, "ArtifactRollback", |d| d.rollback())
    }

    fn artifact_failure(&mut self, tree: &FileTree) -> ModuleResult {
        recover(tree, "ArtifactFailure", |d| d.failure())
    }

    fn cleanup(&mut self, tree: &FileTree) -> ModuleResult {
        recover(tree, "Cleanup", |d| d.cleanup())
    }
}

/// `mender-docker-module recover`, run once at boot before the Mender client
/// (mender-docker-recover.service): a stack whose switch never returned,
/// journal phase `install`, gets its previous set back, as the client's
/// ArtifactRollback, ArtifactFailure and Cleanup would do. A client that
/// recorded the install runs them itself after the boot and finds nothing
/// left to do; one that did not (mender 3.x standalone records an install
/// only once ArtifactInstall returns) would otherwise leave the stack down,
/// the old containers stopped by the switch, until the next deployment.
/// Every other phase is left to the client: from `installed` on, it may
/// still commit.
pub fn recover_at_boot() -> ModuleResult {
    let config = Config::load_for_recovery_from_env()?;
    let mut failed = Vec::new();
    for stack in Journal::stacks(&config.state_dir)? {
        let journal = Journal::open(&config.state_dir, &stack)?;
        let Some(update) = journal.state.update.as_ref() else {
            continue;
        };
        if update.phase != Phase::Install {
            continue;
        }
        let artifact = update.artifact.clone();
        log!("stack {stack}: the switch to {artifact} was cut short by a restart; restoring the previous set");
        let result = Session::open(config.clone(), artifact, &stack).and_then(|mut session| {
            // Read again under the lock: only a switch still unfinished is ours to undo.
            let unfinished = session.journal.state.update.as_ref();
            if unfinished.map_or(true, |u| u.phase != Phase::Install) {
                return Ok(());
            }
            session.run(|d| {
                d.rollback()?;
                d.cleanup()
            })
        });
        if let Err(e) = result {
            failed.push(format!("stack {stack}: {e}"));
        }
    }
    if failed.is_empty() {
        Ok(())
    } else {
        Err(failed.join("; ").into())
    }
}
