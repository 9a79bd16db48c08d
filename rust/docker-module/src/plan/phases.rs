//! Which steps a state takes, decided from the journal alone: the phase of
//! the update in progress, whose it is, and what it left (an interrupted
//! load, images it pulled). Pure, like the container planners above it; the
//! executor runs the steps and the engine work inside each.
//!
//! [`steps`] builds the list one step at a time with [`next`], simulating
//! each step's effect on the journal with [`apply`]. A fresh process after
//! a power cut gets the remaining steps the same way from the journal on
//! disk, so an interrupted state and a first run share one path. Download's
//! steps only settle what an earlier deployment left; its own work (pulls,
//! loads) follows them, and ArtifactInstall's switch is the step [`Step::Switch`].

use crate::journal::Phase;

/// The client's state this module runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Download,
    Install,
    Commit,
    Rollback,
    Failure,
    Cleanup,
}

impl Action {
    pub const ALL: [Action; 6] = [
        Action::Download,
        Action::Install,
        Action::Commit,
        Action::Rollback,
        Action::Failure,
        Action::Cleanup,
    ];
}

/// What the journal says about the update in progress.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UpdateFacts {
    pub phase: Phase,
    /// The update is this deployment's artifact, not one the client gave up on.
    pub ours: bool,
    /// A load of an inline archive was under way (what it changed is to be put back).
    pub load: bool,
    /// The update pulled or loaded images that are to go if it fails.
    pub pulled: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Facts {
    pub update: Option<UpdateFacts>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Wait for the engine to finish the interrupted load, then put back
    /// every tag and image it changed.
    UndoLoad,
    /// Remove the images the update pulled that no release uses.
    DropPulled,
    /// Forget the update.
    Clear,
    /// The previous set back, exactly; the journal says `rolled-back`.
    Restore,
    /// After a commit: the old set and unneeded images go, the release
    /// records move on, the update is forgotten.
    FinishCommit,
    /// Record the commit (no engine: a busy engine must not fail a commit).
    Commit,
    /// ArtifactInstall's switch: the journal says `install`, the new set
    /// starts and passes its health gate, the journal says `installed`.
    Switch,
}

/// Why a state may do nothing; the executor words it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Another artifact's update is switched and neither committed nor rolled back.
    Pending(Phase),
    /// Download of the artifact whose install is under way.
    AlreadyInstalling(Phase),
    /// ArtifactCommit of an install that did not complete.
    NotInstalled(Phase),
}

/// The effect of a step on the journal, as the executor produces it.
pub fn apply(f: &mut Facts, step: Step) {
    let Some(u) = &mut f.update else {
        // Switch starts an update where none was recorded.
        if step == Step::Switch {
            f.update = Some(UpdateFacts {
                phase: Phase::Installed,
                ours: true,
                load: false,
                pulled: false,
            });
        }
        return;
    };
    match step {
        Step::UndoLoad => u.load = false,
        Step::DropPulled => u.pulled = false,
        Step::Clear | Step::FinishCommit => f.update = None,
        Step::Restore => u.phase = Phase::RolledBack,
        Step::Commit => u.phase = Phase::Commit,
        Step::Switch => {
            // An update of another artifact was settled first; this one
            // replaces it in the journal.
            *u = UpdateFacts {
                phase: Phase::Installed,
                ours: true,
                load: false,
                pulled: u.pulled && u.ours,
            };
        }
    }
}

/// The next step of `action`, or `None` when it is complete.
pub fn next(action: Action, f: &Facts) -> Result<Option<Step>, Refusal> {
    let Some(u) = f.update else {
        return Ok(match action {
            Action::Install => Some(Step::Switch),
            _ => None,
        });
    };
    if !u.ours {
        return match action {
            // A new deployment first finishes what the client gave up on.
            Action::Download | Action::Install => settle_abandoned(u).map(Some),
            // The error states and the commit of this deployment leave
            // another deployment's update alone.
            _ => Ok(None),
        };
    }
    let switched = u.phase.switched();
    let undo = |u: UpdateFacts| {
        if switched {
            Some(Step::Restore)
        } else if u.load {
            Some(Step::UndoLoad)
        } else if u.pulled {
            Some(Step::DropPulled)
        } else {
            None
        }
    };
    Ok(match action {
        // A switch no state will finish (see settle_abandoned).
        Action::Download if u.phase == Phase::Install => Some(Step::Restore),
        Action::Download if switched => return Err(Refusal::AlreadyInstalling(u.phase)),
        // Download run again: a load the first run left is put back; what
        // it pulled stays, and is fetched no more.
        Action::Download => u.load.then_some(Step::UndoLoad),
        Action::Install => match u.phase {
            Phase::Installed | Phase::Commit => None,
            // An interrupted switch: back to the previous set, then again.
            Phase::Install => Some(Step::Restore),
            Phase::Download | Phase::RolledBack if u.load => Some(Step::UndoLoad),
            Phase::Download | Phase::RolledBack => Some(Step::Switch),
        },
        Action::Commit => match u.phase {
            Phase::Commit => None,
            Phase::Installed => Some(Step::Commit),
            other => return Err(Refusal::NotInstalled(other)),
        },
        // Only the containers: what the update fetched stays until the
        // client's ArtifactFailure or Cleanup.
        Action::Rollback => switched.then_some(Step::Restore),
        Action::Failure => undo(u),
        Action::Cleanup if u.phase == Phase::Commit => Some(Step::FinishCommit),
        Action::Cleanup => Some(undo(u).unwrap_or(Step::Clear)),
    })
}

fn settle_abandoned(u: UpdateFacts) -> Result<Step, Refusal> {
    match u.phase {
        // A switch that never returned. A client runs ArtifactRollback after
        // an ArtifactInstall that did not return, unless it never recorded
        // the install (mender 3.x standalone records it only once the state
        // returns, so a power cut inside it leaves no record), and then the
        // next deployment is the first to see it. Never finished means never
        // accepted: the previous set comes back, as a bootloader falls back
        // to the old rootfs.
        Phase::Install => Ok(Step::Restore),
        // An install that returned: the client may hold it for a commit
        // (mender 3.x lets `mender install` run over it).
        Phase::Installed => Err(Refusal::Pending(u.phase)),
        Phase::Commit => Ok(Step::FinishCommit),
        Phase::Download | Phase::RolledBack if u.load => Ok(Step::UndoLoad),
        Phase::Download | Phase::RolledBack if u.pulled => Ok(Step::DropPulled),
        Phase::Download | Phase::RolledBack => Ok(Step::Clear),
    }
}

/// Every step of `action` from `facts`, in order.
pub fn steps(action: Action, facts: &Facts) -> Result<Vec<Step>, Refusal> {
    let mut f = *facts;
    let mut out = Vec::new();
    while let Some(step) = next(action, &f)? {
        out.push(step);
        apply(&mut f, step);
        assert!(
            out.len() <= 8,
            "the phase plan does not terminate: {action:?} {facts:?} {out:?}"
        );
    }
    Ok(out)
}

#[cfg(test)]
#[path = "phases_tests.rs"]
mod tests;
