//! The phase plan's steps ([`crate::plan::steps`]) run against the engine
//! and the journal: settling what an earlier deployment left, putting the
//! previous set back, removing what a failed update fetched, finishing a
//! commit, and the container operations every switch is made of.

use std::collections::BTreeMap;
use std::time::Duration;

use docker_spec::Release;
use mender_module_protocol::signal;

use crate::engine::{Container, ErrorKind};
use crate::executor::{short, DeployError, Deployer, Result};
use crate::health;
use crate::journal::{Journal, Phase, ReleaseRecord};
use crate::labels::{self, Identity};
use crate::plan::{self, Action, Op, Step};
use crate::{fault, log};

/// What the phase plan decides from: the journal's update, and whether it
/// is this deployment's.
fn facts(journal: &Journal, artifact: &str) -> plan::Facts {
    plan::Facts {
        update: journal.state.update.as_ref().map(|u| plan::UpdateFacts {
            phase: u.phase,
            ours: u.artifact == artifact,
            load: u.load.is_some(),
            pulled: !u.pulled.is_empty(),
        }),
    }
}

/// The phase plan's refusal, worded with what to do.
fn refusal(journal: &Journal, artifact: &str, r: plan::Refusal) -> DeployError {
    let stack = &journal.state.stack;
    DeployError::Refused(match r {
        plan::Refusal::Pending(phase) => format!(
            "stack {stack} is in the middle of an update to {} (phase {}); commit or roll it back first (mender commit / mender rollback)",
            journal.state.update.as_ref().map_or("", |u| u.artifact.as_str()),
            phase.as_str()
        ),
        plan::Refusal::AlreadyInstalling(phase) => format!(
            "{artifact} of stack {stack} is already being installed (phase {}); commit or roll it back first (mender commit / mender rollback)",
            phase.as_str()
        ),
        plan::Refusal::NotInstalled(phase) => format!(
            "{artifact} cannot be committed: its install did not complete (phase {}); roll it back",
            phase.as_str()
        ),
    })
}

/// The steps of `action` for this journal.
fn steps(journal: &Journal, artifact: &str, action: Action) -> Result<Vec<Step>> {
    plan::steps(action, &facts(journal, artifact)).map_err(|r| refusal(journal, artifact, r))
}

/// ArtifactCommit: accept the release. Removal waits for Cleanup, so a
/// rollback after a commit that died on the way still finds the old set. It
/// needs no engine: a commit must not fail because the engine is busy.
pub fn commit(journal: &mut Journal, artifact: &str) -> Result<()> {
    if journal.update_for(artifact).is_none() {
        log!("no update of {artifact} in progress; nothing to commit");
        return Ok(());
    }
    for step in steps(journal, artifact, Action::Commit)? {
        record_commit(journal, artifact, step)?;
    }
    Ok(())
}

/// The one step ArtifactCommit's plan has.
fn record_commit(journal: &mut Journal, artifact: &str, step: Step) -> Result<()> {
    if step != Step::Commit {
        return Err(DeployError::Refused(format!(
            "ArtifactCommit cannot take the step {step:?} without the engine; roll {artifact} back"
        )));
    }
    if let Some(u) = journal.update_mut() {
        u.phase = Phase::Commit;
    }
    journal.save("commit")?;
    log!("committed {artifact}");
    Ok(())
}

impl Deployer<'_> {
    /// Runs the phase plan's steps of `action` except the switch, which
    /// only ArtifactInstall takes with its release. `keep`: images a new
    /// release needs, never dropped with an abandoned update's.
    pub(crate) fn run_steps(&mut self, action: Action, keep: &[String]) -> Result<Vec<Step>> {
        let list = steps(self.journal, self.artifact, action)?;
        let abandoned = self
            .journal
            .state
            .update
            .as_ref()
            .filter(|u| u.artifact != self.artifact)
            .map(|u| (u.artifact.clone(), u.phase));
        if let (Some((other, phase)), false) = (abandoned, list.is_empty()) {
            let stack = &self.journal.state.stack;
            if phase == Phase::Commit {
                log!("finishing the commit of {other} of stack {stack} first");
            } else {
                log!("finishing the cleanup of the abandoned update to {other} of stack {stack}");
            }
        }
        for step in &list {
            self.step(action, *step, keep)?;
        }
        Ok(list)
    }

    pub(crate) fn step(&mut self, action: Action, step: Step, keep: &[String]) -> Result<()> {
        match step {
            Step::UndoLoad => self.undo_interrupted_load(),
            Step::DropPulled => self.drop_pulled(keep),
            Step::Clear => {
                self.journal.state.update = None;
                self.save("cleared")
            }
            Step::Restore => {
                match action {
                    Action::Install => log!("an earlier attempt of this install was interrupted; restoring the previous set first"),
                    Action::Cleanup => log!("the update was neither committed nor rolled back; restoring the previous set"),
                    _ => {}
                }
                self.restore()
            }
            Step::FinishCommit => self.collect_garbage(),
            Step::Commit => record_commit(self.journal, self.artifact, step),
            // ArtifactInstall takes it itself, with its release.
            Step::Switch => Ok(()),
        }
    }

    /// ArtifactCommit, see [`commit`].
    pub fn commit(&mut self) -> Result<()> {
        commit(self.journal, self.artifact)
    }

    /// ArtifactRollback: the previous set, exactly.
    pub fn rollback(&mut self) -> Result<()> {
        if self.journal.update_for(self.artifact).is_none() {
            log!(
                "no update of {} in progress; nothing to roll back",
                self.artifact
            );
            return Ok(());
        }
        if self.run_steps(Action::Rollback, &[])?.is_empty() {
            log!("nothing was switched; the previous set is untouched");
        }
        Ok(())
    }

    /// ArtifactFailure: previous set back, and what the update fetched gone.
    pub fn failure(&mut self) -> Result<()> {
        self.run_steps(Action::Failure, &[]).map(drop)
    }

    /// Cleanup: after a commit, remove the old set and prune images; after a
    /// failure, leave nothing of the update behind. Clears the update.
    pub fn cleanup(&mut self) -> Result<()> {
        self.run_steps(Action::Cleanup, &[])?;
        // Only tidying: a network left behind is removed by the next Cleanup,
        // and the deployment's outcome does not depend on it.
        if let Err(e) = self.prune_networks() {
            log!(
                "left the unused networks of stack {} for the next Cleanup: {e}",
                self.journal.state.stack
            );
        }
        Ok(())
    }

    /// Removes the stack's networks that none of its containers joins any
    /// more (after a commit, the previous release's; after a failure, the
    /// failed one's). One the engine still finds in use is kept and logged.
    pub(crate) fn prune_networks(&mut self) -> Result<()> {
        let stack = self.journal.state.stack.clone();
        let networks = self.engine.stack_networks(&stack)?;
        if networks.is_empty() {
            return Ok(());
        }
        let containers = self.engine.containers()?;
        for name in plan::unused_networks(&stack, &networks, &containers) {
            match self.engine.remove_network(&name) {
                Err(e) if e.kind == ErrorKind::Conflict => {
                    log!("kept network {name}: still in use ({})", e.message)
                }
                other => {
                    other?;
                    log!("removed network {name}: no container of stack {stack} joins it");
                }
            }
        }
        Ok(())
    }

    /// Creates the release's own networks that are not there yet, labelled
    /// as the stack's, before any of its containers is created.
    pub(crate) fn ensure_networks(&mut self, release: &Release) -> Result<()> {
        let existing: Vec<String> = self
            .engine
            .stack_networks(&release.stack)?
            .into_iter()
            .map(|n| n.name)
            .collect();
        for n in release.networks.iter().filter(|n| !n.external) {
            if existing.contains(&n.engine) {
                continue;
            }
            let request = crate::engine::NetworkRequest {
                name: n.engine.clone(),
                internal: n.internal,
                labels: [
                    (labels::STACK.to_owned(), release.stack.clone()),
                    (labels::NETWORK.to_owned(), n.key.clone()),
                ]
                .into(),
            };
            self.engine.create_network(&request)?;
            log!(
                "created network {}{}",
                n.engine,
                if n.internal { " (internal)" } else { "" }
            );
        }
        Ok(())
    }

    /// Puts the previous set back and records that.
    pub(crate) fn restore(&mut self) -> Result<()> {
        let update = self
            .journal
            .state
            .update
            .clone()
            .expect("restore is only called with an update");
        let containers = self.engine.containers()?;
        let stack = self.journal.state.stack.clone();
        let plan = plan::restore(&stack, &update, &containers)?;
        self.execute(&plan.ops, &containers, None, Duration::ZERO)?;
        self.update().phase = Phase::RolledBack;
        self.save("rolled-back")?;
        if !plan.lost.is_empty() {
            return Err(DeployError::Refused(format!(
                "restored the previous set of stack {stack} except {}, which no longer exist(s) and cannot be brought back",
                plan.lost.join(", ")
            )));
        }
        log!("the previous set of stack {stack} is back");
        Ok(())
    }

    /// What the image planners decide from: the engine's image ID of each of
    /// `refs` and of the current and previous releases' images, and every
    /// container.
    pub(crate) fn observe(
        &mut self,
        refs: &[String],
    ) -> Result<(BTreeMap<String, String>, Vec<Container>)> {
        let state = &self.journal.state;
        let all: Vec<String> = refs
            .iter()
            .chain(state.current.iter().flat_map(|r| r.images.iter()))
            .chain(state.previous.iter().flat_map(|r| r.images.iter()))
            .cloned()
            .collect();
        let ids = self.ids_of(&all)?;
        Ok((ids, self.engine.containers()?))
    }

    pub(crate) fn ids_of(&mut self, refs: &[String]) -> Result<BTreeMap<String, String>> {
        let mut ids = BTreeMap::new();
        for r in refs {
            if ids.contains_key(r) {
                continue;
            }
            if let Some(i) = self.engine.image(r)? {
                ids.insert(r.clone(), i.id);
            }
        }
        Ok(ids)
    }

    /// Removes the images this update pulled that nothing uses (except `keep`).
    pub(crate) fn drop_pulled(&mut self, keep: &[String]) -> Result<()> {
        let Some(mut update) = self.journal.state.update.clone() else {
            return Ok(());
        };
        update.pulled.retain(|p| !keep.contains(p));
        if update.pulled.is_empty() {
            return Ok(());
        }
        let state = self.journal.state.clone();
        let (ids, containers) = self.observe(&update.pulled)?;
        let ops = plan::drop_pulled(
            &update,
            state.current.as_ref(),
            state.previous.as_ref(),
            &containers,
            &ids,
        );
        self.execute(&ops, &containers, None, Duration::ZERO)?;
        if let Some(u) = self.journal.update_mut() {
            u.pulled.clear();
        }
        self.save("dropped-pulled")
    }

    /// After a commit: the old set, its purged volumes and the images no
    /// longer needed go; the release records move on; the update is cleared.
    pub(crate) fn collect_garbage(&mut self) -> Result<()> {
        let state = self.journal.state.clone();
        let update = state.update.clone().expect("called with an update");
        let (ids, containers) = self.observe(&update.images)?;
        let ops = plan::collect_garbage(
            &update,
            state.current.as_ref(),
            state.previous.as_ref(),
            &containers,
            &ids,
        );
        self.execute(&ops, &containers, None, Duration::ZERO)?;
        let s = &mut self.journal.state;
        s.previous = s.current.take();
        s.current = Some(ReleaseRecord {
            artifact: update.artifact.clone(),
            images: update.images.clone(),
        });
        s.update = None;
        self.save("cleared")?;
        log!(
            "release {} of stack {} is now the current one",
            update.artifact,
            state.stack
        );
        Ok(())
    }

    /// Runs the operations in order, SIGTERM checked before each.
    pub(crate) fn execute(
        &mut self,
        ops: &[Op],
        observed: &[Container],
        creating: Option<(&Release, &Identity<'_>)>,
        gate_timeout: Duration,
    ) -> Result<()> {
        // Names as they are at each step: a container renamed earlier in
        // this list is logged under its new name.
        let mut names: BTreeMap<&str, String> = observed
            .iter()
            .map(|c| (c.id.as_str(), c.name.clone()))
            .collect();
        let name_of = |names: &BTreeMap<&str, String>, target: &str| -> String {
            match names.get(target) {
                Some(name) => format!("{name} ({})", short(target)),
                None => target.to_owned(),
            }
        };
        // The level of each container to create, worked out once.
        let levels = creating.map_or_else(Vec::new, |(release, _)| release.levels());
        for op in ops {
            signal::check()?;
            match op {
                Op::Keep { name } => log!("keeping {name}: unchanged and running"),
                Op::Create { index, name } => {
                    let (release, identity) =
                        creating.expect("create operations come with their release");
                    let spec = &release.containers[*index];
                    let mut engine_spec = spec.clone();
                    // Secrets and configs: the device's files, read-only.
                    for (kind, files) in [
                        (docker_spec::DeviceFile::Secret, &spec.secrets),
                        (docker_spec::DeviceFile::Config, &spec.configs),
                    ] {
                        for (target, name) in files {
                            let path = docker_spec::device_file(
                                &self.config.state_dir,
                                &release.stack,
                                kind,
                                name,
                            );
                            engine_spec.binds.push(docker_spec::Bind {
                                source: path.to_string_lossy().into_owned(),
                                target: target.clone(),
                                options: "ro".to_owned(),
                            });
                        }
                    }
                    let mut purge = Vec::new();
                    for v in &mut engine_spec.volumes {
                        v.name = plan::engine_volume(v, identity.install_id);
                        if v.purge_on_deploy {
                            purge.push(v.name.clone());
                        }
                    }
                    let request = crate::engine::CreateRequest {
                        name: name.clone(),
                        labels: labels::for_container(spec, levels[*index], &purge, identity),
                        spec: engine_spec,
                    };
                    let id = self.engine.create(&request)?;
                    log!("created {name} ({}) from {}", short(&id), spec.image);
                    // Created on its first network; the engine of Docker 20.10
                    // (API 1.41) takes one network at create, so the others are
                    // joined here, before anything starts it. A crash in
                    // between leaves an install that is restored as a whole.
                    for (network, aliases) in spec.networks.iter().skip(1) {
                        self.engine.connect_network(network, &id, aliases)?;
                        log!(
                            "connected {name} to network {network} as {}",
                            aliases.join(", ")
                        );
                    }
                    fault::point("after-create");
                }
                Op::Start { target } => {
                    self.engine.start(target)?;
                    log!("started {}", name_of(&names, target));
                    fault::point("after-start");
                }
                Op::StartAll { targets } => {
                    let results = self.engine.start_all(targets);
                    report_batch(targets, results, "started", "after-start", |t| {
                        name_of(&names, t)
                    })?;
                }
                Op::StopAll { targets } => {
                    let results = self.engine.stop_all(targets, self.config.stop_timeout);
                    report_batch(targets, results, "stopped", "after-stop", |t| {
                        name_of(&names, t)
                    })?;
                }
                Op::WaitFor { waits } => {
                    // Restoring, the old set must come back whatever its
                    // dependencies do: a wait that fails is reported and the
                    // rest started anyway, as it ran before.
                    let restoring = creating.is_none();
                    let gate_timeout = if restoring {
                        self.config.health_timeout
                    } else {
                        gate_timeout
                    };
                    log!(
                        "waiting up to {}s for {} before starting what depends on {}",
                        gate_timeout.as_secs(),
                        waits
                            .iter()
                            .map(|(n, c)| format!("{n} ({})", c.as_str()))
                            .collect::<Vec<_>>()
                            .join(", "),
                        if waits.len() == 1 { "it" } else { "them" }
                    );
                    match health::wait_for_dependencies(
                        self.engine,
                        waits,
                        gate_timeout,
                        self.poll,
                    ) {
                        Err(health::GateError::Failed(why)) if restoring => {
                            log!("{why}; starting the rest of the previous set anyway")
                        }
                        Err(health::GateError::TimedOut { waiting, .. }) if restoring => log!(
                            "still waiting for {waiting}; starting the rest of the previous set anyway"
                        ),
                        other => other?,
                    }
                }
                Op::Stop { target } => {
                    self.engine.stop(target, self.config.stop_timeout)?;
                    log!("stopped {}", name_of(&names, target));
                    fault::point("after-stop");
                }
                Op::Rename { target, to } => {
                    self.engine.rename(target, to)?;
                    log!("renamed {} to {to}", name_of(&names, target));
                    if let Some(n) = names.get_mut(target.as_str()) {
                        n.clone_from(to);
                    }
                    fault::point("after-rename");
                }
                Op::Remove { target } => {
                    match self.engine.stop(target, self.config.stop_timeout) {
                        Err(e) if e.kind == ErrorKind::NotFound => {}
                        other => other?,
                    }
                    self.engine.remove_container(target)?;
                    log!("removed container {}", name_of(&names, target));
                    fault::point("after-remove");
                }
                Op::RemoveImage { reference } => {
                    match self.engine.remove_image(reference) {
                        Err(e) if e.kind == ErrorKind::Conflict => {
                            log!(
                                "kept image {reference}: the engine says it is still in use ({})",
                                e.message
                            )
                        }
                        other => {
                            other?;
                            log!("removed image {reference}");
                        }
                    }
                    fault::point("after-remove-image");
                }
                Op::RemoveVolume { name } => {
                    match self.engine.remove_volume(name) {
                        Err(e) if e.kind == ErrorKind::Conflict => {
                            log!("kept volume {name}: still in use ({})", e.message)
                        }
                        other => {
                            other?;
                            log!("removed volume {name}");
                        }
                    }
                    fault::point("after-remove-volume");
                }
                Op::HealthGate { names } => {
                    log!(
                        "health gate: waiting up to {}s for {}",
                        gate_timeout.as_secs(),
                        names.join(", ")
                    );
                    health::wait(
                        self.engine,
                        names,
                        gate_timeout,
                        self.config.settle,
                        self.poll,
                    )?;
                    log!("health gate passed");
                }
            }
        }
        Ok(())
    }
}

/// The outcome of a batch the engine ran together (`results`, one per
/// target in order): each success logged as `verb` (e.g. "started") and
/// passed through the fault `point`, then the first failure, if any.
fn report_batch(
    targets: &[String],
    results: Vec<crate::engine::Result<()>>,
    verb: &str,
    point: &str,
    name_of: impl Fn(&str) -> String,
) -> Result<()> {
    let mut first_error = None;
    for (target, result) in targets.iter().zip(results) {
        match result {
            Ok(()) => {
                log!("{verb} {}", name_of(target));
                fault::point(point);
            }
            Err(e) => {
                first_error.get_or_insert(e);
            }
        }
    }
    match first_error {
        Some(e) => Err(e.into()),
        None => Ok(()),
    }
}
