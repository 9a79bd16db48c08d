//! Pure planning: from what the release wants, what the engine reports and
//! what the journal remembers, the ordered operations to get there. The
//! executor is the only code that acts; everything here is decided from data
//! and tested from tables.
//!
//! Naming while switching. A new container is created under its final name
//! when that name is free. When an old container (the stack's own, or one the
//! release `replaces`) holds the name, the new one is created as
//! `NAME.mender-new`, and at the switch the old one is renamed to
//! `NAME.mender-prev` and the new one to `NAME`. Rollback renames by id, so
//! the names are conveniences for people running `docker ps`, not state.
//!
//! Hand-over (`start-first`). The new set is started and must pass the health
//! gate while the old set still runs, then the old set is stopped and the
//! names are switched. That is only safe when the two sets cannot step on each
//! other, so a new container conflicts with a running old one when they
//! publish the same host port and protocol; when either uses the host's
//! network and the other uses it too or publishes ports; when they map the
//! same host device; or when they mount the same host path or named volume
//! and either mounts it writable (two writers on one database). On a
//! conflict the plan falls back to stop-first and says why.

use std::collections::{BTreeMap, BTreeSet};

use docker_spec::{Condition, ContainerSpec, Release, Strategy, VolumeMount};

use crate::engine::Container;
use crate::journal::{OldContainer, ReleaseRecord, Update};
use crate::labels;

pub const NEW_SUFFIX: &str = ".mender-new";
pub const PREV_SUFFIX: &str = ".mender-prev";

/// One step for the executor. Targets are engine ids or names; both work.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// Create `release.containers[index]` under `name`.
    Create {
        index: usize,
        name: String,
    },
    Start {
        target: String,
    },
    /// Start these together: nothing among them waits for another.
    StartAll {
        targets: Vec<String>,
    },
    Stop {
        target: String,
    },
    /// Stop these together: nothing still running waits for them.
    StopAll {
        targets: Vec<String>,
    },
    /// Before the next containers start: wait until each of these (current
    /// names) is healthy or has exited 0, as its dependents' `depends_on`
    /// asks.
    WaitFor {
        waits: Vec<(String, Condition)>,
    },
    Rename {
        target: String,
        to: String,
    },
    /// Stop (if running) and remove.
    Remove {
        target: String,
    },
    RemoveImage {
        reference: String,
    },
    RemoveVolume {
        name: String,
    },
    /// Wait until these containers (current names) are up and healthy.
    HealthGate {
        names: Vec<String>,
    },
    /// An unchanged, running container stays as it is.
    Keep {
        name: String,
    },
}

/// Why no safe plan exists; nothing has been changed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct PlanError(pub String);

/// The plan of an ArtifactInstall.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstallPlan {
    /// The strategy actually used.
    pub strategy: Strategy,
    /// Why start-first was asked for and not used.
    pub fallback: Option<String>,
    /// The set before the switch, for the journal.
    pub old: Vec<OldContainer>,
    /// Ids of containers left running unchanged.
    pub kept: Vec<String>,
    /// `replaces` entries that match no container.
    pub missing_replaced: Vec<String>,
    /// Fresh engine volumes the new set gets (purge_on_deploy).
    pub purge_volumes: Vec<String>,
    pub ops: Vec<Op>,
}

/// Whose a container is, as its labels say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Owner<'a> {
    /// This stack's.
    Stack,
    /// Another stack's.
    OtherStack(&'a str),
    /// Not the module's.
    Foreign,
}

pub fn owner<'a>(c: &'a Container, stack: &str) -> Owner<'a> {
    match c.label(labels::STACK) {
        Some(s) if s == stack => Owner::Stack,
        Some(s) => Owner::OtherStack(s),
        None => Owner::Foreign,
    }
}

/// The engine volume a container of this install mounts for `v`: purged
/// volumes get a fresh one per install, the old one stays for a rollback.
pub fn engine_volume(v: &VolumeMount, install_id: &str) -> String {
    if v.purge_on_deploy {
        format!("{}-{install_id}", v.name)
    } else {
        v.name.clone()
    }
}

fn order_of(c: &Container) -> u32 {
    c.label(labels::ORDER)
        .and_then(|o| o.parse().ok())
        .unwrap_or(u32::MAX)
}

fn short(id: &str) -> &str {
    &id[..id.len().min(12)]
}

fn describe(c: &Container, stack: &str) -> String {
    match owner(c, stack) {
        Owner::Stack => format!("container {} of this stack", c.name),
        Owner::OtherStack(s) => format!("container {} ({}) of stack {s:?}", c.name, short(&c.id)),
        Owner::Foreign => format!(
            "container {} ({}), which this module does not manage",
            c.name,
            short(&c.id)
        ),
    }
}

fn purge_volumes_of(c: &Container) -> Vec<String> {
    c.label(labels::PURGE_VOLUMES)
        .map(|v| {
            v.split(',')
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

/// Whether `old` can stay: same name, same spec, running, nothing to purge.
fn keepable(spec: &ContainerSpec, old: &Container) -> bool {
    old.name == spec.name
        && old.label(labels::NAME) == Some(spec.name.as_str())
        && old.label(labels::SPEC) == Some(labels::fingerprint(spec).as_str())
        && old.running
        && !old.restarting
        && !spec.volumes.iter().any(|v| v.purge_on_deploy)
}

/// Plans ArtifactInstall of `release` over `containers` (everything the
/// engine has).
pub fn install(
    release: &Release,
    install_id: &str,
    containers: &[Container],
) -> Result<InstallPlan, PlanError> {
    let stack = release.stack.as_str();
    let by_name: BTreeMap<&str, &Container> =
        containers.iter().map(|c| (c.name.as_str(), c)).collect();

    // The replaced containers that exist.
    let mut replaced: Vec<&Container> = Vec::new();
    let mut missing_replaced = Vec::new();
    for r in &release.replaces {
        match by_name.get(r.as_str()) {
            None => missing_replaced.push(r.clone()),
            Some(c) => match owner(c, stack) {
                Owner::Foreign => replaced.push(c),
                // Already part of the old set.
                Owner::Stack => {}
                Owner::OtherStack(s) => {
                    return Err(PlanError(format!(
                        "replaces names container {r}, which belongs to stack {s:?}; a release may only replace containers this module does not manage (deploy or change stack {s:?} instead)"
                    )))
                }
            },
        }
    }

    // The stack's own containers: kept when unchanged, otherwise old.
    let mut own: Vec<&Container> = containers
        .iter()
        .filter(|c| owner(c, stack) == Owner::Stack)
        .collect();
    own.sort_by_key(|c| (order_of(c), c.name.clone()));
    let mut kept: Vec<&Container> = Vec::new();
    for spec in &release.containers {
        if let Some(c) = own.iter().find(|c| keepable(spec, c)) {
            kept.push(c);
        }
    }
    let is_kept = |c: &Container| kept.iter().any(|k| k.id == c.id);
    let old: Vec<(&Container, bool)> = own
        .iter()
        .filter(|c| !is_kept(c))
        .map(|c| (*c, false))
        .chain(replaced.iter().map(|c| (*c, true)))
        .collect();
    let is_old = |c: &Container| old.iter().any(|(o, _)| o.id == c.id);

    // Names.
    let free_or_err = |name: &str, why: &str| -> Result<(), PlanError> {
        match by_name.get(name) {
            None => Ok(()),
            Some(c) => Err(PlanError(format!(
                "the name {name}, which the module needs {why}, is taken by {}; remove or rename that container",
                describe(c, stack)
            ))),
        }
    };
    let mut creates: Vec<(usize, String)> = Vec::new();
    let mut renames_old: Vec<(String, String)> = Vec::new();
    let mut renames_new: Vec<(String, String)> = Vec::new();
    for (i, spec) in release.containers.iter().enumerate() {
        if kept.iter().any(|k| k.name == spec.name) {
            continue;
        }
        let name = spec.name.as_str();
        match by_name.get(name) {
            None => creates.push((i, name.to_owned())),
            Some(holder) if is_old(holder) => {
                let temp = format!("{name}{NEW_SUFFIX}");
                let prev = format!("{name}{PREV_SUFFIX}");
                free_or_err(&temp, "while the old container still holds the name")?;
                free_or_err(&prev, "for the old container while switching")?;
                creates.push((i, temp.clone()));
                renames_old.push((holder.id.clone(), prev));
                renames_new.push((temp, name.to_owned()));
            }
            Some(holder) => {
                let hint = match owner(holder, stack) {
                    Owner::Foreign => {
                        "; list it in \"replaces\" to take it over, or choose another name"
                            .to_owned()
                    }
                    _ => "; choose another name".to_owned(),
                };
                return Err(PlanError(format!(
                    "container name {name} is already used by {}{hint}",
                    describe(holder, stack)
                )));
            }
        }
    }

    let purge_volumes: Vec<String> = creates
        .iter()
        .flat_map(|(i, _)| release.containers[*i].volumes.iter())
        .filter(|v| v.purge_on_deploy)
        .map(|v| engine_volume(v, install_id))
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();

    let running_old: Vec<&Container> = old
        .iter()
        .filter(|(c, _)| c.running || c.restarting)
        .map(|(c, _)| *c)
        .collect();
    let (strategy, fallback) = match release.strategy {
        Strategy::StopFirst => (Strategy::StopFirst, None),
        Strategy::StartFirst => {
            let conflict = creates.iter().find_map(|(i, _)| {
                running_old
                    .iter()
                    .find_map(|o| conflict(&release.containers[*i], o))
            });
            match conflict {
                None => (Strategy::StartFirst, None),
                Some(why) => (Strategy::StopFirst, Some(why)),
            }
        }
    };

    // Stop the old set in reverse start order: replaced ones (last in `old`)
    // first, one by one; then the stack's own, a level at a time (containers
    // of one level, started together, are stopped together).
    let mut stops: Vec<Op> = Vec::new();
    let mut group: Vec<&Container> = Vec::new();
    let flush = |group: &mut Vec<&Container>, stops: &mut Vec<Op>| {
        let group = std::mem::take(group);
        match group.len() {
            0 => {}
            1 => stops.push(Op::Stop {
                target: group[0].id.clone(),
            }),
            _ => stops.push(Op::StopAll {
                targets: group.iter().map(|c| c.id.clone()).collect(),
            }),
        }
    };
    for c in running_old.iter().rev() {
        let is_replaced = old.iter().any(|(o, r)| o.id == c.id && *r);
        let same_level = group
            .last()
            .is_some_and(|g| !is_replaced && order_of(g) == order_of(c));
        if !same_level {
            flush(&mut group, &mut stops);
        }
        if is_replaced {
            stops.push(Op::Stop {
                target: c.id.clone(),
            });
        } else {
            group.push(c);
        }
    }
    flush(&mut group, &mut stops);
    let create_ops = creates.iter().map(|(i, n)| Op::Create {
        index: *i,
        name: n.clone(),
    });
    let rename_old_ops = renames_old.iter().map(|(id, to)| Op::Rename {
        target: id.clone(),
        to: to.clone(),
    });
    let rename_new_ops = renames_new.iter().map(|(from, to)| Op::Rename {
        target: from.clone(),
        to: to.clone(),
    });
    let final_names: Vec<String> = creates
        .iter()
        .map(|(i, _)| release.containers[*i].name.clone())
        .collect();
    let keep_ops = kept.iter().map(|c| Op::Keep {
        name: c.name.clone(),
    });

    let one_shots = one_shots(release);
    let gated = |names: Vec<String>| -> Vec<String> {
        creates
            .iter()
            .zip(names)
            .filter(|((i, _), _)| !one_shots.contains(&release.containers[*i].name))
            .map(|(_, n)| n)
            .collect()
    };

    let mut ops: Vec<Op> = keep_ops.collect();
    ops.extend(create_ops);
    match strategy {
        Strategy::StopFirst => {
            ops.extend(stops);
            ops.extend(rename_old_ops);
            ops.extend(rename_new_ops);
            let started: Vec<(usize, String)> = creates
                .iter()
                .zip(&final_names)
                .map(|((i, _), n)| (*i, n.clone()))
                .collect();
            ops.extend(start_ops(release, &started));
            let names = gated(final_names);
            if !names.is_empty() {
                ops.push(Op::HealthGate { names });
            }
        }
        Strategy::StartFirst => {
            ops.extend(start_ops(release, &creates));
            let names = gated(creates.iter().map(|(_, n)| n.clone()).collect());
            if !names.is_empty() {
                ops.push(Op::HealthGate { names });
            }
            ops.extend(stops);
            ops.extend(rename_old_ops);
            ops.extend(rename_new_ops);
        }
    }

    Ok(InstallPlan {
        strategy,
        fallback,
        old: old
            .iter()
            .map(|(c, replaced)| OldContainer {
                id: c.id.clone(),
                name: c.name.clone(),
                running: c.running || c.restarting,
                replaced: *replaced,
                purge_volumes: if *replaced {
                    Vec::new()
                } else {
                    purge_volumes_of(c)
                },
            })
            .collect(),
        kept: kept.iter().map(|c| c.id.clone()).collect(),
        missing_replaced,
        purge_volumes,
        ops,
    })
}

/// Containers another one waits for with `service_completed_successfully`:
/// jobs that exit, which the health gate must not expect to keep running.
fn one_shots(release: &Release) -> BTreeSet<String> {
    release
        .containers
        .iter()
        .flat_map(|c| c.depends_on.iter())
        .filter(|(_, cond)| **cond == Condition::CompletedSuccessfully)
        .map(|(d, _)| d.clone())
        .collect()
}

/// Starts of `started` ((index in the release, name to start it by)), level
/// by level ([`level_starts`]).
fn start_ops(release: &Release, started: &[(usize, String)]) -> Vec<Op> {
    let levels = release.levels();
    let items: Vec<StartItem> = started
        .iter()
        .map(|(i, name)| StartItem {
            level: levels[*i],
            target: name.clone(),
            wait_as: name.clone(),
            logical: release.containers[*i].name.clone(),
            depends_on: release.containers[*i].depends_on.clone(),
        })
        .collect();
    level_starts(&items)
}

/// One container to start.
struct StartItem {
    level: usize,
    /// What the start names (engine id or name).
    target: String,
    /// What a wait for it names (its name by the time it starts).
    wait_as: String,
    /// Its name in its release, which dependencies refer to.
    logical: String,
    depends_on: BTreeMap<String, Condition>,
}

/// Starts level by level: a level's containers together, after waiting for
/// what the level's dependencies ask of the containers started before it.
/// `service_started` needs nothing more (the earlier start returned), and a
/// dependency that is not being started (kept, or a job that had exited) is
/// not waited for.
fn level_starts(items: &[StartItem]) -> Vec<Op> {
    let mut levels: Vec<usize> = items.iter().map(|i| i.level).collect();
    levels.sort_unstable();
    levels.dedup();
    let mut ops = Vec::new();
    let mut waited: BTreeSet<&str> = BTreeSet::new();
    for level in levels {
        let here: Vec<&StartItem> = items.iter().filter(|i| i.level == level).collect();
        let mut waits: Vec<(String, Condition)> = Vec::new();
        for item in &here {
            for (dependency, condition) in &item.depends_on {
                if *condition == Condition::Started {
                    continue;
                }
                let Some(d) = items
                    .iter()
                    .find(|d| d.logical == *dependency && d.level < level)
                else {
                    continue;
                };
                if waited.insert(d.wait_as.as_str()) {
                    waits.push((d.wait_as.clone(), *condition));
                }
            }
        }
        if !waits.is_empty() {
            ops.push(Op::WaitFor { waits });
        }
        ops.push(match here.as_slice() {
            [one] => Op::Start {
                target: one.target.clone(),
            },
            _ => Op::StartAll {
                targets: here.iter().map(|i| i.target.clone()).collect(),
            },
        });
    }
    ops
}

/// Why `new` cannot run beside the running `old`, if it cannot.
pub fn conflict(new: &ContainerSpec, old: &Container) -> Option<String> {
    let who = || format!("new {} and running {}", new.name, old.name);
    for (port, proto) in new.published_ports() {
        if old.published.iter().any(|(p, q)| *p == port && q == proto) {
            return Some(format!("{} both publish host port {port}/{proto}", who()));
        }
    }
    let old_host = old.network_mode == "host";
    if new.host_network() && (old_host || !old.published.is_empty()) {
        return Some(format!(
            "{} would both bind ports on the host network",
            who()
        ));
    }
    if old_host && new.published_ports().next().is_some() {
        return Some(format!(
            "{} would both bind ports on the host network",
            who()
        ));
    }
    for d in &new.devices {
        if old.devices.contains(&d.host) {
            return Some(format!("{} both use device {}", who(), d.host));
        }
    }
    for b in &new.binds {
        if let Some(m) = old
            .mounts
            .iter()
            .find(|m| !m.named_volume && same_path(&m.source, &b.source))
        {
            if m.read_write || !b.read_only() {
                return Some(format!(
                    "{} both mount {} and one of them writes to it",
                    who(),
                    b.source
                ));
            }
        }
    }
    for v in new.volumes.iter().filter(|v| !v.purge_on_deploy) {
        if let Some(m) = old
            .mounts
            .iter()
            .find(|m| m.named_volume && m.source == v.name)
        {
            if m.read_write || !v.read_only {
                return Some(format!(
                    "{} both mount volume {} and one of them writes to it",
                    who(),
                    v.name
                ));
            }
        }
    }
    None
}

fn same_path(a: &str, b: &str) -> bool {
    a.trim_end_matches('/') == b.trim_end_matches('/')
}

/// The plan that puts the previous set back: the install's containers go,
/// the old ones get their names back and run again if they ran before.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestorePlan {
    pub ops: Vec<Op>,
    /// Old containers that no longer exist and so cannot come back.
    pub lost: Vec<String>,
}

pub fn restore(
    stack: &str,
    update: &Update,
    containers: &[Container],
) -> Result<RestorePlan, PlanError> {
    let mut ops = Vec::new();
    let mut new: Vec<&Container> = match &update.install_id {
        Some(install) => containers
            .iter()
            .filter(|c| {
                owner(c, stack) == Owner::Stack
                    && c.label(labels::INSTALL) == Some(install.as_str())
                    && !update.kept.contains(&c.id)
            })
            .collect(),
        None => Vec::new(),
    };
    new.sort_by_key(|c| std::cmp::Reverse(order_of(c)));
    for c in &new {
        ops.push(Op::Remove {
            target: c.id.clone(),
        });
    }
    let by_id: BTreeMap<&str, &Container> = containers.iter().map(|c| (c.id.as_str(), c)).collect();
    let mut lost = Vec::new();
    let mut starts = Vec::new();
    for o in &update.old {
        let Some(c) = by_id.get(o.id.as_str()) else {
            lost.push(o.name.clone());
            continue;
        };
        if c.name != o.name {
            if let Some(holder) = containers
                .iter()
                .find(|h| h.name == o.name && !new.iter().any(|n| n.id == h.id))
            {
                return Err(PlanError(format!(
                    "cannot give {} its name back: {} now holds it; remove or rename that container and roll back again",
                    o.name,
                    describe(holder, stack)
                )));
            }
            ops.push(Op::Rename {
                target: o.id.clone(),
                to: o.name.clone(),
            });
        }
        if o.running && !c.running {
            starts.push((o, *c));
        }
    }
    // Replaced containers ran before the stack's own did: start them first,
    // one by one; then the stack's own, level by level as they were started.
    for (o, _) in starts.iter().filter(|(o, _)| o.replaced) {
        ops.push(Op::Start {
            target: o.id.clone(),
        });
    }
    let own: Vec<StartItem> = starts
        .iter()
        .filter(|(o, _)| !o.replaced)
        .map(|(o, c)| StartItem {
            level: order_of(c) as usize,
            target: o.id.clone(),
            wait_as: o.name.clone(),
            logical: c.label(labels::NAME).unwrap_or(&o.name).to_owned(),
            depends_on: labels::depends_on(c),
        })
        .collect();
    ops.extend(level_starts(&own));
    for v in &update.purge_volumes {
        ops.push(Op::RemoveVolume { name: v.clone() });
    }
    Ok(RestorePlan { ops, lost })
}

/// After a commit: remove the old set and its purged volumes, and the images
/// of the release before the previous one (keep n-1) that nothing uses.
pub fn collect_garbage(
    update: &Update,
    current: Option<&ReleaseRecord>,
    previous: Option<&ReleaseRecord>,
    containers: &[Container],
    image_ids: &BTreeMap<String, String>,
) -> Vec<Op> {
    let mut ops = Vec::new();
    let removed: BTreeSet<&str> = update.old.iter().map(|o| o.id.as_str()).collect();
    for o in &update.old {
        if containers.iter().any(|c| c.id == o.id) {
            ops.push(Op::Remove {
                target: o.id.clone(),
            });
        }
    }
    for o in &update.old {
        for v in &o.purge_volumes {
            ops.push(Op::RemoveVolume { name: v.clone() });
        }
    }
    let keep: BTreeSet<&str> = update
        .images
        .iter()
        .chain(current.iter().flat_map(|r| r.images.iter()))
        .map(String::as_str)
        .collect();
    let candidates = previous.iter().flat_map(|r| r.images.iter());
    ops.extend(
        unused_images(candidates, &keep, containers, &removed, image_ids)
            .into_iter()
            .map(|reference| Op::RemoveImage { reference }),
    );
    ops
}

/// After a failure: remove the images the update pulled that nothing uses.
pub fn drop_pulled(
    update: &Update,
    current: Option<&ReleaseRecord>,
    previous: Option<&ReleaseRecord>,
    containers: &[Container],
    image_ids: &BTreeMap<String, String>,
) -> Vec<Op> {
    let keep: BTreeSet<&str> = current
        .iter()
        .chain(previous.iter())
        .flat_map(|r| r.images.iter())
        .map(String::as_str)
        .collect();
    unused_images(
        update.pulled.iter(),
        &keep,
        containers,
        &BTreeSet::new(),
        image_ids,
    )
    .into_iter()
    .map(|reference| Op::RemoveImage { reference })
    .collect()
}

/// Candidates that are present, not kept, and used by no container except
/// those about to be removed. An image used by anyone else's container is
/// never a candidate.
fn unused_images<'a>(
    candidates: impl Iterator<Item = &'a String>,
    keep: &BTreeSet<&str>,
    containers: &[Container],
    removed: &BTreeSet<&str>,
    image_ids: &BTreeMap<String, String>,
) -> Vec<String> {
    let in_use: BTreeSet<&str> = containers
        .iter()
        .filter(|c| !removed.contains(c.id.as_str()))
        .map(|c| c.image_id.as_str())
        .collect();
    let kept_ids: BTreeSet<&str> = keep
        .iter()
        .filter_map(|k| image_ids.get(*k).map(String::as_str))
        .collect();
    let mut out: Vec<String> = Vec::new();
    for c in candidates {
        if keep.contains(c.as_str()) || out.contains(c) {
            continue;
        }
        let Some(id) = image_ids.get(c) else {
            continue;
        };
        if in_use.contains(id.as_str()) || kept_ids.contains(id.as_str()) {
            continue;
        }
        out.push(c.clone());
    }
    out
}

mod phases;
pub use phases::{apply, next, steps, Action, Facts, Refusal, Step, UpdateFacts};

#[cfg(test)]
#[path = "plan_tests.rs"]
mod tests;

/// The stack's networks (`networks`, all labelled as `stack`'s) that no
/// container of the stack joins, by the networks label each was created
/// with: stopped containers count, since a rollback starts them again.
pub fn unused_networks(
    stack: &str,
    networks: &[crate::engine::Network],
    containers: &[Container],
) -> Vec<String> {
    let joined: BTreeSet<&str> = containers
        .iter()
        .filter(|c| owner(c, stack) == Owner::Stack)
        .flat_map(|c| c.label(labels::NETWORKS).unwrap_or_default().split(','))
        .collect();
    networks
        .iter()
        .filter(|n| !joined.contains(n.name.as_str()))
        .map(|n| n.name.clone())
        .collect()
}
