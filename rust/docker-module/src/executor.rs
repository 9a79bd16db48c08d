//! The only code that acts: it runs plans against the engine, moves the
//! journal on, and checks for SIGTERM between steps. Each function is one
//! state's work and can run again in a fresh process after a crash at any
//! point, because it decides from the journal and what the engine reports.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{self, Read};
use std::time::{Duration, Instant};

use docker_spec::{ImageRef, InlineArchive, Release};
use mender_module_protocol::signal;

use crate::archive::TagStripper;
use crate::config::Config;
use crate::engine::{Container, Credentials, Engine, EngineError, ErrorKind};
use crate::health::{self, GateError};
use crate::journal::{Journal, JournalError, Phase, ReleaseRecord, Update};
use crate::labels::{self, Identity};
use crate::plan::{self, Action, Op, PlanError, Step};
use crate::{fault, load_guard, log};

#[derive(Debug, thiserror::Error)]
pub enum DeployError {
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error(transparent)]
    Journal(#[from] JournalError),
    #[error(transparent)]
    Plan(#[from] PlanError),
    #[error(transparent)]
    Gate(#[from] GateError),
    #[error(transparent)]
    Protocol(#[from] mender_module_protocol::Error),
    /// A refusal with its reason and what to do.
    #[error("{0}")]
    Refused(String),
}

pub type Result<T, E = DeployError> = std::result::Result<T, E>;

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

/// One payload file on its way in: its name, the size the client announced
/// (`DownloadWithFileSizes`, or a stored file's length), and its bytes.
pub struct Incoming<'a> {
    pub name: String,
    pub size: Option<u64>,
    pub reader: Box<dyn Read + 'a>,
}

/// The artifact's payload files, streamed during Download or stored by the
/// client for ArtifactInstall. Each must be read to its end before the next.
pub trait PayloadSource {
    fn next_payload(&mut self) -> Result<Option<Incoming<'_>>>;
}

impl PayloadSource for mender_module_protocol::Payloads {
    fn next_payload(&mut self) -> Result<Option<Incoming<'_>>> {
        Ok(
            mender_module_protocol::Payloads::next_payload(self)?.map(|p| Incoming {
                name: p.name.clone(),
                size: p.size,
                reader: Box::new(p),
            }),
        )
    }
}

/// Reads what is left of a payload so the client can go on; its errors do
/// not matter any more.
fn drain(reader: &mut dyn Read) {
    let _ = io::copy(reader, &mut io::sink());
}

/// Reads every remaining payload to its end: a Go 3.x client waits forever
/// for a module that stops reading before the end of the payload list.
pub fn drain_all(source: &mut dyn PayloadSource) {
    while let Ok(Some(mut p)) = source.next_payload() {
        drain(&mut p.reader);
    }
}

/// What every state works with.
pub struct Deployer<'a> {
    pub engine: &'a mut dyn Engine,
    pub config: &'a Config,
    pub journal: &'a mut Journal,
    /// The header's artifact name.
    pub artifact: &'a str,
    /// How often the health gate looks (short in tests).
    pub poll: Duration,
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}

fn join(ids: &[&String]) -> String {
    ids.iter()
        .map(|s| s.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Engine messages can quote archive content: at most `max` characters,
/// printable.
fn bounded(text: &str, max: usize) -> String {
    crate::archive::printable(text.as_bytes(), max)
}

fn short(id: &str) -> &str {
    &id[..id.len().min(12)]
}

/// Tells two installs of one stack apart: 10 hex digits, in container
/// labels and volume names.
pub fn new_install_id() -> String {
    module_kit::ids::new_id(5)
}

/// The images of a release, each once, in order.
fn release_images(release: &Release) -> Vec<&ImageRef> {
    let mut out: Vec<&ImageRef> = Vec::new();
    for c in &release.containers {
        if !out.iter().any(|i| i.pinned() == c.image.pinned()) {
            out.push(&c.image);
        }
    }
    out
}

/// The credentials to pull `image` with. The release's registry is used only
/// for images on that registry's address: credentials never go to another host.
pub fn credentials_for<'c>(
    release: &Release,
    config: &'c Config,
    image: &ImageRef,
) -> Result<Option<&'c Credentials>> {
    match &release.registry {
        Some(name) => {
            let creds = config.registries.get(name).ok_or_else(|| {
                DeployError::Refused(format!(
                    "the release pulls through registry {name:?}, which {} does not configure; add \"registries\": {{\"{name}\": {{\"address\", \"username\", \"password\"}}}} there (readable by root only)",
                    config.path.display()
                ))
            })?;
            if creds.address == image.registry() {
                Ok(Some(creds))
            } else {
                log!(
                    "image {image} is not on registry {name:?} ({}); pulling it without credentials",
                    creds.address
                );
                Ok(None)
            }
        }
        None => Ok(config
            .registries
            .values()
            .find(|c| c.address == image.registry())),
    }
}

impl Deployer<'_> {
    fn update(&mut self) -> &mut Update {
        self.journal
            .update_mut()
            .expect("callers record an update before changing it")
    }

    fn save(&mut self, point: &str) -> Result<()> {
        self.journal.save(point)?;
        Ok(())
    }

    /// Runs the phase plan's steps of `action` except the switch, which
    /// only ArtifactInstall takes with its release. `keep`: images a new
    /// release needs, never dropped with an abandoned update's.
    fn run_steps(&mut self, action: Action, keep: &[String]) -> Result<Vec<Step>> {
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

    fn step(&mut self, action: Action, step: Step, keep: &[String]) -> Result<()> {
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

    /// Download: validate against the device, check the disk, pull by digest
    /// and verify. Stops nothing.
    ///
    /// `payloads` is the client's stream when the module streams (inline
    /// archives are loaded here), `None` when the client stores the payloads
    /// (ArtifactInstall loads them).
    pub fn download(
        &mut self,
        release: &Release,
        payloads: Option<&mut dyn PayloadSource>,
    ) -> Result<()> {
        let images = release_images(release);
        let pinned: Vec<String> = images.iter().map(|i| i.pinned()).collect();
        for image in &images {
            credentials_for(release, self.config, image)?;
        }
        self.run_steps(Action::Download, &pinned)?;

        let mut missing: Vec<&ImageRef> = Vec::new();
        for image in &images {
            match self.engine.image(&image.pinned())? {
                Some(found) if found.has_digest(image) => {
                    log!("image {image} is already on the device")
                }
                _ => missing.push(image),
            }
        }
        // Refuse now what ArtifactInstall would refuse (a name in use by a
        // container the module does not manage, …): nothing has changed yet.
        let containers = self.engine.containers()?;
        crate::policy::enforce(release, self.config, &containers)?;
        plan::install(release, "check", &containers)?;
        let (to_load, to_pull): (Vec<&ImageRef>, Vec<&ImageRef>) =
            missing.iter().partition(|i| i.inline);
        self.check_disk(release, &to_pull, &to_load)?;

        let artifact = self.artifact.to_owned();
        let mut update = match self.journal.state.update.take() {
            Some(u) if u.artifact == artifact => u,
            _ => Update::new(&artifact),
        };
        update.phase = Phase::Download;
        update.images = pinned;
        for m in &missing {
            let p = m.pinned();
            if !update.pulled.contains(&p) {
                update.pulled.push(p);
            }
        }
        self.journal.state.update = Some(update);
        self.save("download")?;
        // Room for the records a rollback writes, set aside while there is room.
        self.journal.reserve()?;

        match payloads {
            Some(source) => self.load_inline(release, source)?,
            None if !to_load.is_empty() => log!(
                "the client stores the payloads; ArtifactInstall loads the {} inline image(s)",
                to_load.len()
            ),
            None => {}
        }
        for (n, image) in to_pull.iter().enumerate() {
            signal::check()?;
            let creds = credentials_for(release, self.config, image)?;
            log!(
                "pulling {image} ({}/{}){}",
                n + 1,
                to_pull.len(),
                if creds.is_some() {
                    " with the configured registry credentials"
                } else {
                    ""
                }
            );
            self.engine.pull(image, creds)?;
            fault::point("after-pull");
            match self.engine.image(&image.pinned())? {
                Some(found) if found.has_digest(image) => {}
                Some(found) => {
                    return Err(DeployError::Refused(format!(
                        "pulled {image}, but the engine lists its digests as {:?}; the registry served something else, refusing it",
                        found.repo_digests
                    )))
                }
                None => {
                    return Err(DeployError::Refused(format!(
                        "pulled {image}, but the engine does not have it afterwards"
                    )))
                }
            }
        }
        log!(
            "release {} of stack {}: {} container(s), {} image(s) ready",
            self.artifact,
            release.stack,
            release.containers.len(),
            images.len()
        );
        Ok(())
    }

    /// What the images still to fetch need against the free space of the
    /// engine's data root: the size hints of registry images, and twice each
    /// inline archive (the engine unpacks the archive in its data root before
    /// it registers the layers). What has no size is named in the log: the
    /// check cannot cover it.
    fn check_disk(
        &mut self,
        release: &Release,
        to_pull: &[&ImageRef],
        to_load: &[&ImageRef],
    ) -> Result<()> {
        let mut need = 0u64;
        let mut unknown = Vec::new();
        for image in to_pull {
            let hint = release
                .containers
                .iter()
                .filter(|c| &c.image == *image)
                .filter_map(|c| c.size)
                .max();
            match hint {
                Some(s) => need = need.saturating_add(s),
                None => unknown.push(format!("image {image} has no size hint")),
            }
        }
        for archive in release.inline.iter().filter(|a| {
            a.images
                .iter()
                .any(|id| to_load.iter().any(|i| i.digest == *id))
        }) {
            match archive.size {
                Some(s) => need = need.saturating_add(s.saturating_mul(2)),
                // Checked again when the client announces the payload's size.
                None => unknown.push(format!(
                    "inline archive {} states no size (checked again if the client announces it)",
                    archive.payload
                )),
            }
        }
        self.check_free(need, "the images still to fetch", &unknown)
    }

    fn check_free(&mut self, need: u64, what: &str, unknown: &[String]) -> Result<()> {
        for u in unknown {
            log!("disk check: {u}, so the check cannot cover it");
        }
        if need == 0 {
            return Ok(());
        }
        let root = self.engine.data_root()?;
        match root.free_bytes {
            None => log!(
                "disk check: cannot examine the engine's data root {} from here; skipped",
                root.path.display()
            ),
            Some(free) if need > free => {
                return Err(DeployError::Refused(format!(
                    "not enough disk space for {what}: {} needed but the engine's data root {} has {} free; free space there (e.g. remove unused images) and retry",
                    mib(need),
                    root.path.display(),
                    mib(free)
                )))
            }
            Some(free) => log!(
                "disk check for {what}: {} needed, {} free on {}",
                mib(need),
                mib(free),
                root.path.display()
            ),
        }
        Ok(())
    }

    /// Streams every inline archive whose images are not all on the device
    /// into the engine and checks it loaded exactly the listed IDs. Other
    /// payloads are read and ignored. What a refused archive added is removed
    /// at once; what a good one added is in the journal's `pulled`, so a
    /// failed update removes it too.
    pub fn load_inline(&mut self, release: &Release, source: &mut dyn PayloadSource) -> Result<()> {
        // A Download of this artifact run again after a killed one.
        self.undo_interrupted_load()?;
        let mut seen: Vec<String> = Vec::new();
        while let Some(mut p) = source.next_payload()? {
            let result = match release.inline_archive(&p.name) {
                Some(archive) => {
                    seen.push(p.name.clone());
                    self.load_archive(archive, &mut p)
                }
                None => {
                    log!(
                        "ignoring payload file {}: the release lists no inline archive of that name",
                        bounded(&p.name, 80)
                    );
                    Ok(())
                }
            };
            drain(&mut p.reader);
            result?;
        }
        for archive in &release.inline {
            if seen.contains(&archive.payload) {
                continue;
            }
            let absent: Vec<&String> = self.absent_ids(archive)?;
            if !absent.is_empty() {
                return Err(DeployError::Refused(format!(
                    "the artifact has no payload file {} but its images {} are not on the device; rebuild the artifact with the archive (docker-artifact-gen --inline)",
                    archive.payload,
                    join(&absent)
                )));
            }
        }
        Ok(())
    }

    fn absent_ids<'r>(&mut self, archive: &'r InlineArchive) -> Result<Vec<&'r String>> {
        let mut absent = Vec::new();
        for id in &archive.images {
            match self.engine.image(id)? {
                Some(found) if found.id == *id => {}
                _ => absent.push(id),
            }
        }
        Ok(absent)
    }

    fn load_archive(&mut self, archive: &InlineArchive, p: &mut Incoming<'_>) -> Result<()> {
        signal::check()?;
        let absent = self.absent_ids(archive)?;
        if absent.is_empty() {
            log!(
                "inline archive {}: its {} image(s) are on the device already",
                archive.payload,
                archive.images.len()
            );
            return Ok(());
        }
        if let (Some(stated), Some(announced)) = (archive.size, p.size) {
            if stated != announced {
                return Err(DeployError::Refused(format!(
                    "payload {} is {announced} bytes but the artifact's meta-data states {stated}; the artifact is inconsistent, rebuild it",
                    archive.payload
                )));
            }
        }
        let size = archive.size.or(p.size);
        if archive.size.is_none() {
            if let Some(s) = size {
                self.check_free(
                    s.saturating_mul(2),
                    &format!("inline archive {}", archive.payload),
                    &[],
                )?;
            }
        }
        // Journaled first: a process killed anywhere in the load leaves the
        // next state what to put back (see load_guard).
        let before = self.begin_load(&archive.payload)?;
        log!(
            "loading inline archive {}{} into the engine: {}",
            archive.payload,
            size.map(|s| format!(" ({})", mib(s))).unwrap_or_default(),
            join(&absent)
        );
        let started = Instant::now();
        let mut filter = TagStripper::new(&mut p.reader, size);
        let answer = self.engine.load(&mut filter);
        let bytes = filter.summary().bytes;
        fault::point("after-load");
        // Judged from what the engine holds, not from its answer: a load that
        // failed half way may still have added images or moved tags.
        let after = self.engine.images()?;
        let changed = load_guard::diff(&before, &after);
        let unexpected: Vec<&String> = changed
            .added
            .iter()
            .filter(|id| !archive.images.contains(id))
            .collect();
        let present: BTreeSet<&str> = after.iter().map(|i| i.id.as_str()).collect();
        let still_absent: Vec<&String> = archive
            .images
            .iter()
            .filter(|id| !present.contains(id.as_str()))
            .collect();
        let good = answer.is_ok()
            && unexpected.is_empty()
            && still_absent.is_empty()
            && changed.tags.is_empty();
        // What a refused load added goes now, all of it; a good one keeps the
        // listed images (the journal's `pulled` has them for a failed update).
        let keep: &[String] = if good { &archive.images } else { &[] };
        let left = self.put_back(&before, keep)?;
        self.end_load()?;
        if let Err(e) = answer {
            return Err(DeployError::Refused(format!(
                "inline archive {} was refused: {}; the artifact is damaged or was modified, nothing of it is kept",
                archive.payload,
                bounded(&e.message, 160)
            )));
        }
        if !changed.tags.is_empty() {
            let tags: Vec<&str> = changed.tags.iter().map(|c| c.tag.as_str()).collect();
            return Err(DeployError::Refused(format!(
                "inline archive {} made the engine change tags ({}); {}; the archive was crafted, nothing of it is kept",
                archive.payload,
                load_guard::few(&tags),
                if left.is_empty() {
                    "they were put back".to_owned()
                } else {
                    format!("not put back: {}", load_guard::few(&left))
                }
            )));
        }
        if !unexpected.is_empty() || !still_absent.is_empty() {
            return Err(DeployError::Refused(format!(
                "inline archive {} holds {} instead of {}: it is not the archive the artifact's meta-data describes (modified or replaced), nothing of it is kept",
                archive.payload,
                if unexpected.is_empty() { "no other image".to_owned() } else { load_guard::few(&unexpected) },
                load_guard::few(&still_absent)
            )));
        }
        let secs = started.elapsed().as_secs_f64().max(1e-3);
        log!(
            "loaded inline archive {}: {} image(s), {} in {secs:.1} s ({:.1} MiB/s)",
            archive.payload,
            archive.images.len(),
            mib(bytes),
            bytes as f64 / secs / (1024.0 * 1024.0)
        );
        Ok(())
    }

    /// ArtifactInstall: create the new set beside the old one, switch, and
    /// pass the health gate.
    ///
    /// `stored`: the payloads the client stored because Download did not
    /// stream them; inline archives still missing are loaded from there
    /// before anything stops.
    pub fn install(
        &mut self,
        release: &Release,
        stored: Option<&mut dyn PayloadSource>,
    ) -> Result<()> {
        let images = release_images(release);
        let pinned: Vec<String> = images.iter().map(|i| i.pinned()).collect();
        let list = self.run_steps(Action::Install, &pinned)?;
        if !list.contains(&Step::Switch) {
            log!("release {} is already installed", self.artifact);
            return Ok(());
        }
        // The policy may have been tightened since Download.
        crate::policy::enforce(release, self.config, &self.engine.containers()?)?;
        if let Some(source) = stored {
            self.load_inline(release, source)?;
        }
        for image in &images {
            match self.engine.image(&image.pinned())? {
                Some(found) if found.has_digest(image) => {}
                _ => {
                    return Err(DeployError::Refused(format!(
                        "image {image} is not on the device; Download fetches it, so run the whole deployment again"
                    )))
                }
            }
        }
        let containers = self.engine.containers()?;
        let install_id = new_install_id();
        let plan = plan::install(release, &install_id, &containers)?;
        for r in &plan.missing_replaced {
            log!("replaces lists {r}, but no such container exists; nothing to take over");
        }
        if let Some(why) = &plan.fallback {
            log!("start-first is not possible ({why}); using stop-first");
        }
        log!(
            "installing {} of stack {} ({}, install {install_id}): {} old container(s), {} kept",
            self.artifact,
            release.stack,
            plan.strategy.as_str(),
            plan.old.len(),
            plan.kept.len()
        );

        let artifact = self.artifact.to_owned();
        let mut update = match self.journal.state.update.take() {
            Some(u) if u.artifact == artifact => u,
            _ => Update::new(&artifact),
        };
        update.phase = Phase::Install;
        update.images = pinned;
        update.install_id = Some(install_id.clone());
        update.strategy = Some(plan.strategy.as_str().to_owned());
        update.old = plan.old.clone();
        update.kept = plan.kept.clone();
        update.purge_volumes = plan.purge_volumes.clone();
        self.journal.state.update = Some(update);
        self.save("install")?;
        self.journal.reserve()?;

        let timeout = release.health_timeout.unwrap_or(self.config.health_timeout);
        let identity = Identity {
            stack: &release.stack,
            release: self.artifact,
            install_id: &install_id,
        };
        self.execute(&plan.ops, &containers, Some((release, &identity)), timeout)?;
        self.update().phase = Phase::Installed;
        self.save("installed")?;
        log!(
            "release {} of stack {} is up; waiting for commit",
            self.artifact,
            release.stack
        );
        Ok(())
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
        self.run_steps(Action::Cleanup, &[]).map(drop)
    }

    /// Puts the previous set back and records that.
    fn restore(&mut self) -> Result<()> {
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
    fn observe(&mut self, refs: &[String]) -> Result<(BTreeMap<String, String>, Vec<Container>)> {
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

    fn ids_of(&mut self, refs: &[String]) -> Result<BTreeMap<String, String>> {
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
    fn drop_pulled(&mut self, keep: &[String]) -> Result<()> {
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
    fn collect_garbage(&mut self) -> Result<()> {
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
    fn execute(
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
        for op in ops {
            signal::check()?;
            match op {
                Op::Keep { name } => log!("keeping {name}: unchanged and running"),
                Op::Create { index, name } => {
                    let (release, identity) =
                        creating.expect("create operations come with their release");
                    let spec = &release.containers[*index];
                    let mut engine_spec = spec.clone();
                    let mut purge = Vec::new();
                    for v in &mut engine_spec.volumes {
                        v.name = plan::engine_volume(v, identity.install_id);
                        if v.purge_on_deploy {
                            purge.push(v.name.clone());
                        }
                    }
                    let request = crate::engine::CreateRequest {
                        name: name.clone(),
                        labels: labels::for_container(spec, *index, &purge, identity),
                        spec: engine_spec,
                    };
                    let id = self.engine.create(&request)?;
                    log!("created {name} ({}) from {}", short(&id), spec.image);
                    fault::point("after-create");
                }
                Op::Start { target } => {
                    self.engine.start(target)?;
                    log!("started {}", name_of(&names, target));
                    fault::point("after-start");
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

#[cfg(test)]
#[path = "executor_tests.rs"]
mod tests;
