//! What to do, decided from what is known: the journal's phase, what each
//! of the three directories holds, whether the unit runs, and which state
//! the client asked for. Pure functions, no I/O; `deploy` applies the steps.
//!
//! The plan is built one step at a time by [`next`], each step's effect
//! simulated by [`apply`], until nothing is left to do. A fresh process after
//! a power cut gets the remaining steps the same way from what is on disk,
//! which is why interrupted and uninterrupted runs share one code path.

use crate::journal::Phase;

/// What a directory holds, as far as this install is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Tree {
    Absent,
    /// Holds the release marker of this install (the journal's token).
    New,
    /// Anything else: the previous version, or garbage.
    Other,
}

/// The three directories of one app: `dest`, `.NAME.staging`, `.NAME.previous`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Slot {
    Dest,
    Staging,
    Previous,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct JournalFacts {
    pub phase: Phase,
    pub fresh_install: bool,
    pub service_was_active: bool,
    /// The journal belongs to the artifact of the current deployment.
    pub same_artifact: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Facts {
    pub journal: Option<JournalFacts>,
    pub dest: Tree,
    pub staging: Tree,
    pub previous: Tree,
    /// `None` when no unit is named; otherwise whether it is active.
    pub service_active: Option<bool>,
    /// `renameat2(RENAME_EXCHANGE)` works on this filesystem.
    pub atomic_exchange: bool,
}

impl Facts {
    pub fn tree(&self, slot: Slot) -> Tree {
        match slot {
            Slot::Dest => self.dest,
            Slot::Staging => self.staging,
            Slot::Previous => self.previous,
        }
    }

    fn tree_mut(&mut self, slot: Slot) -> &mut Tree {
        match slot {
            Slot::Dest => &mut self.dest,
            Slot::Staging => &mut self.staging,
            Slot::Previous => &mut self.previous,
        }
    }
}

/// The client's request, plus `Prepare`: the part of Download that settles
/// what an earlier deployment left before a new tree is staged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    Prepare,
    Install,
    Commit,
    Rollback,
    Failure,
    Cleanup,
}

impl Action {
    pub const ALL: [Action; 6] = [
        Action::Prepare,
        Action::Install,
        Action::Commit,
        Action::Rollback,
        Action::Failure,
        Action::Cleanup,
    ];
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Step {
    /// Delete the tree (never the destination itself).
    Remove(Slot),
    /// Atomically exchange two directories.
    Exchange(Slot, Slot),
    /// Move the first onto the second, which is absent.
    Rename(Slot, Slot),
    /// Write the journal with a new phase.
    Journal(Phase),
    /// Write the journal as `swapping`, recording what a rollback needs.
    BeginSwap {
        fresh_install: bool,
        service_was_active: bool,
    },
    ClearJournal,
    StopService,
    /// Start the unit and wait until it is active.
    StartService,
}

/// Why nothing may be done; `deploy` turns it into a one-line error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// Another deployment's install is neither committed nor rolled back.
    Pending(Phase),
    /// ArtifactInstall without a complete staged tree.
    NothingStaged,
    /// ArtifactCommit before ArtifactInstall completed.
    NotInstalled,
    /// ArtifactCommit while the swap is unfinished.
    InstallIncomplete,
    /// Rollback after the commit began deleting the previous version.
    CommitStarted,
    /// Rollback after the commit completed: the previous version is gone.
    AlreadyCommitted,
    /// Install or commit during an unfinished rollback.
    RollbackInProgress,
    /// The directories do not match any state this module leaves.
    Inconsistent(String),
}

/// The whole list of steps for `action` from `facts`.
pub fn plan(action: Action, facts: &Facts) -> Result<Vec<Step>, Refusal> {
    let mut f = *facts;
    let mut steps = Vec::new();
    while let Some(step) = next(action, &f)? {
        steps.push(step);
        apply(&mut f, step);
        assert!(
            steps.len() <= 16,
            "plan does not terminate: {action:?} {facts:?} {steps:?}"
        );
    }
    Ok(steps)
}

/// The effect of a step on the facts, as the executor will produce it.
pub fn apply(f: &mut Facts, step: Step) {
    match step {
        Step::Remove(s) => *f.tree_mut(s) = Tree::Absent,
        Step::Exchange(a, b) => {
            let (ta, tb) = (f.tree(a), f.tree(b));
            *f.tree_mut(a) = tb;
            *f.tree_mut(b) = ta;
        }
        Step::Rename(a, b) => {
            *f.tree_mut(b) = f.tree(a);
            *f.tree_mut(a) = Tree::Absent;
        }
        Step::Journal(phase) => {
            if let Some(j) = &mut f.journal {
                j.phase = phase;
            }
        }
        Step::BeginSwap {
            fresh_install,
            service_was_active,
        } => {
            if let Some(j) = &mut f.journal {
                j.phase = Phase::Swapping;
                j.fresh_install = fresh_install;
                j.service_was_active = service_was_active;
            }
        }
        Step::ClearJournal => {
            f.journal = None;
            // Without a journal no tree is "this install's".
            for s in [Slot::Dest, Slot::Staging, Slot::Previous] {
                if f.tree(s) == Tree::New {
                    *f.tree_mut(s) = Tree::Other;
                }
            }
        }
        Step::StopService => f.service_active = Some(false),
        Step::StartService => f.service_active = Some(true),
    }
}

type Next = Result<Option<Step>, Refusal>;

/// The next step, or `None` when `action` is complete.
pub fn next(action: Action, f: &Facts) -> Next {
    let Some(j) = f.journal else {
        // Without a journal the staging and previous trees are leftovers.
        return match action {
            Action::Install => Err(Refusal::NothingStaged),
            // A commit leaves a tombstone, so without any journal this
            // artifact was never installed (or its install was rolled
            // back): reporting success would claim a version the device
            // does not run.
            Action::Commit => Err(Refusal::NotInstalled),
            _ => Ok(remove_leftovers(f)),
        };
    };
    match j.phase {
        Phase::Staging => match action {
            Action::Install => Err(Refusal::NothingStaged),
            Action::Commit => Err(Refusal::NotInstalled),
            _ => Ok(Some(if f.staging != Tree::Absent {
                Step::Remove(Slot::Staging)
            } else if f.previous != Tree::Absent {
                Step::Remove(Slot::Previous)
            } else if j.service_was_active && f.service_active == Some(false) {
                // An install that stopped the unit and never swapped.
                Step::StartService
            } else {
                Step::ClearJournal
            })),
        },
        Phase::Staged => match action {
            Action::Install if j.same_artifact => {
                if f.staging != Tree::New {
                    return Err(inconsistent(
                        f,
                        "the staged tree is missing or not this install's",
                    ));
                }
                if f.dest == Tree::New || f.previous == Tree::New {
                    return Err(inconsistent(f, "this install's tree is in two places"));
                }
                if f.previous != Tree::Absent {
                    return Ok(Some(Step::Remove(Slot::Previous)));
                }
                Ok(Some(Step::BeginSwap {
                    fresh_install: f.dest == Tree::Absent,
                    service_was_active: f.service_active == Some(true),
                }))
            }
            Action::Install => Err(Refusal::NothingStaged),
            Action::Commit => Err(Refusal::NotInstalled),
            _ => Ok(Some(Step::Journal(Phase::Staging))),
        },
        Phase::Swapping | Phase::Swapped if !j.same_artifact => match action {
            // The error states of another deployment leave this one alone.
            Action::Rollback | Action::Failure | Action::Cleanup => Ok(None),
            Action::Prepare if j.phase == Phase::Swapping => back_from_swapping(f, j),
            _ => Err(Refusal::Pending(j.phase)),
        },
        Phase::Swapping => match action {
            Action::Install => match forward(f, j)? {
                Some(step) => Ok(Some(step)),
                None => Ok(Some(Step::Journal(Phase::Swapped))),
            },
            // Download meeting a swap no state will finish (see the
            // module's README, "Power cuts"): a client runs ArtifactRollback
            // after an ArtifactInstall that did not return, unless it never
            // recorded the install (mender 3.x standalone records it only
            // once the state returns), and then it is the next Download
            // that finds it. Never finished means never accepted: the old
            // tree and its unit come back first, as a bootloader falls back
            // to the old rootfs.
            Action::Prepare => back_from_swapping(f, j),
            Action::Commit => Err(Refusal::InstallIncomplete),
            Action::Rollback | Action::Failure | Action::Cleanup => back_from_swapping(f, j),
        },
        Phase::Swapped => {
            if f.dest != Tree::New {
                return Err(inconsistent(
                    f,
                    "the journal says swapped but the destination is not this install",
                ));
            }
            match action {
                Action::Install => Ok(match f.service_active {
                    Some(false) => Some(Step::StartService),
                    _ => None,
                }),
                Action::Commit => Ok(Some(Step::Journal(Phase::Committing))),
                Action::Rollback | Action::Failure => Ok(Some(Step::Journal(Phase::RollingBack))),
                // An install awaiting commit is never undone by Cleanup.
                Action::Cleanup => Ok(None),
                // An install that returned: the client may hold it for a
                // commit (mender 3.x lets `mender install` run over it).
                Action::Prepare => Err(Refusal::Pending(j.phase)),
            }
        }
        Phase::RollingBack => match action {
            Action::Install | Action::Commit => Err(Refusal::RollbackInProgress),
            Action::Prepare => roll_back(f, j, true, true),
            // ArtifactRollback stops once the old version is back and
            // running; deleting the rejected tree is left to the states
            // both clients run after it, so it stays O(1) at any app size.
            Action::Rollback => roll_back(f, j, true, false),
            Action::Failure | Action::Cleanup => roll_back(f, j, true, true),
        },
        Phase::Committing => match action {
            Action::Rollback => Err(Refusal::CommitStarted),
            Action::Install => Err(Refusal::Pending(j.phase)),
            Action::Prepare | Action::Commit | Action::Failure | Action::Cleanup => Ok(Some(
                remove_leftovers(f).unwrap_or(Step::Journal(Phase::Committed)),
            )),
        },
        Phase::Committed => committed(action, f, j),
    }
}

/// The tombstone of a completed commit. It only says which artifact
/// finished: a rollback of that artifact is refused, a commit run again
/// succeeds, and the next Download removes the tombstone.
fn committed(action: Action, f: &Facts, j: JournalFacts) -> Next {
    if f.staging == Tree::New || f.previous == Tree::New {
        return Err(inconsistent(
            f,
            "the journal says committed but the committed tree is not (only) in the destination",
        ));
    }
    match action {
        Action::Rollback if j.same_artifact => Err(Refusal::AlreadyCommitted),
        Action::Commit if !j.same_artifact => Err(Refusal::NotInstalled),
        Action::Commit if f.dest != Tree::New => Err(inconsistent(
            f,
            "the journal says committed but the destination is not this install",
        )),
        Action::Install => Err(Refusal::NothingStaged),
        Action::Prepare => Ok(Some(remove_leftovers(f).unwrap_or(Step::ClearJournal))),
        Action::Rollback | Action::Commit | Action::Failure | Action::Cleanup => {
            Ok(remove_leftovers(f))
        }
    }
}

fn remove_leftovers(f: &Facts) -> Option<Step> {
    if f.staging != Tree::Absent {
        Some(Step::Remove(Slot::Staging))
    } else if f.previous != Tree::Absent {
        Some(Step::Remove(Slot::Previous))
    } else {
        None
    }
}

fn inconsistent(f: &Facts, what: &str) -> Refusal {
    Refusal::Inconsistent(format!(
        "{what} (destination {}, staging {}, previous {})",
        describe(f.dest),
        describe(f.staging),
        describe(f.previous)
    ))
}

fn describe(t: Tree) -> &'static str {
    match t {
        Tree::Absent => "absent",
        Tree::New => "holds this install",
        Tree::Other => "holds another tree",
    }
}

/// The swap, forwards: new tree into the destination, old one to previous.
fn forward(f: &Facts, j: JournalFacts) -> Next {
    use Tree::*;
    if f.service_active == Some(true) && f.dest != New {
        return Ok(Some(Step::StopService));
    }
    let fresh = j.fresh_install;
    Ok(match (f.dest, f.staging, f.previous) {
        (Other, New, Absent) if !fresh => Some(if f.atomic_exchange {
            Step::Exchange(Slot::Staging, Slot::Dest)
        } else {
            // Not atomic: between the two renames the destination is
            // missing; the journal says `swapping`, so either direction can
            // be completed from here.
            Step::Rename(Slot::Dest, Slot::Previous)
        }),
        (Absent, New, Absent) if fresh => Some(Step::Rename(Slot::Staging, Slot::Dest)),
        (Absent, New, Other) if !fresh => Some(Step::Rename(Slot::Staging, Slot::Dest)),
        (New, Other, Absent) if !fresh => Some(Step::Rename(Slot::Staging, Slot::Previous)),
        (New, Absent, Other) if !fresh => None,
        (New, Absent, Absent) if fresh => None,
        _ => {
            return Err(inconsistent(
                f,
                "an interrupted swap left directories this module cannot place",
            ))
        }
    })
}

/// From `swapping` back to the old version: first bring the trees into one
/// of the two shapes whose next phase is unambiguous.
fn back_from_swapping(f: &Facts, j: JournalFacts) -> Next {
    use Tree::*;
    let fresh = j.fresh_install;
    Ok(Some(match (f.dest, f.staging, f.previous) {
        (New, Other, Absent) if !fresh => Step::Rename(Slot::Staging, Slot::Previous),
        (Absent, New, Other) if !fresh => Step::Rename(Slot::Previous, Slot::Dest),
        // Nothing was swapped: the staged tree is only a leftover now.
        (Other, New, Absent) if !fresh => Step::Journal(Phase::Staging),
        (Absent, New, Absent) if fresh => Step::Journal(Phase::Staging),
        (New, Absent, Other) if !fresh => Step::Journal(Phase::RollingBack),
        (New, Absent, Absent) if fresh => Step::Journal(Phase::RollingBack),
        _ => {
            return Err(inconsistent(
                f,
                "an interrupted swap left directories this module cannot place",
            ))
        }
    }))
}

/// `rolling-back`: while the destination holds the new tree nothing has
/// moved; once it does not, whatever is at staging or previous is the
/// rejected tree. The old version is back then and the unit restarts;
/// with `finish`, the rejected tree is deleted and the journal removed.
/// Without it (ArtifactRollback) the journal stays `rolling-back`, naming
/// the rejected tree as garbage for ArtifactFailure, Cleanup or the next
/// Download, so neither the unit nor the rollback waits for a large tree
/// to be deleted.
fn roll_back(f: &Facts, j: JournalFacts, start_service: bool, finish: bool) -> Next {
    use Tree::*;
    let fresh = j.fresh_install;
    if f.dest == New {
        if f.service_active == Some(true) {
            return Ok(Some(Step::StopService));
        }
        return Ok(Some(match (f.staging, f.previous) {
            (Absent, Other) if !fresh => {
                if f.atomic_exchange {
                    Step::Exchange(Slot::Previous, Slot::Dest)
                } else {
                    Step::Rename(Slot::Dest, Slot::Staging)
                }
            }
            (Absent, Absent) if fresh => Step::Rename(Slot::Dest, Slot::Staging),
            _ => {
                return Err(inconsistent(
                    f,
                    "an interrupted rollback left directories this module cannot place",
                ))
            }
        }));
    }
    if f.dest == Absent && !fresh {
        return match f.previous {
            Other => Ok(Some(Step::Rename(Slot::Previous, Slot::Dest))),
            _ => Err(inconsistent(f, "the previous version is missing")),
        };
    }
    if start_service && j.service_was_active && f.service_active == Some(false) {
        return Ok(Some(Step::StartService));
    }
    if !finish {
        return Ok(None);
    }
    if let Some(step) = remove_leftovers(f) {
        return Ok(Some(step));
    }
    Ok(Some(Step::ClearJournal))
}

#[cfg(test)]
mod tests;
