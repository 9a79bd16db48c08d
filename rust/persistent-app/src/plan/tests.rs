//! The planner, three ways: fixed expectations for the paths users take;
//! every combination of phase, directories, unit and request, checked for
//! termination and for steps that could destroy or misplace a tree; and a
//! model of the disk on which every install, commit and rollback is cut at
//! every step (and in the middle of every removal) and then recovered the
//! way a client does after a power cut.

use super::*;
use Slot::*;
use Step::*;

fn journal(phase: Phase) -> Option<JournalFacts> {
    Some(JournalFacts {
        phase,
        fresh_install: false,
        service_was_active: false,
        same_artifact: true,
    })
}

fn facts(j: Option<JournalFacts>, d: Tree, s: Tree, p: Tree) -> Facts {
    Facts {
        journal: j,
        dest: d,
        staging: s,
        previous: p,
        service_active: None,
        atomic_exchange: true,
    }
}

#[test]
fn install_exchanges_and_keeps_the_old_tree_as_previous() {
    let mut f = facts(journal(Phase::Staged), Tree::Other, Tree::New, Tree::Absent);
    f.service_active = Some(true);
    assert_eq!(
        plan(Action::Install, &f).unwrap(),
        [
            BeginSwap {
                fresh_install: false,
                service_was_active: true
            },
            StopService,
            Exchange(Staging, Dest),
            Rename(Staging, Previous),
            Journal(Phase::Swapped),
            StartService,
        ]
    );
}

#[test]
fn a_fresh_install_renames_and_without_exchange_two_renames_do() {
    let f = facts(
        journal(Phase::Staged),
        Tree::Absent,
        Tree::New,
        Tree::Absent,
    );
    assert_eq!(
        plan(Action::Install, &f).unwrap(),
        [
            BeginSwap {
                fresh_install: true,
                service_was_active: false
            },
            Rename(Staging, Dest),
            Journal(Phase::Swapped),
        ]
    );
    let mut f = facts(journal(Phase::Staged), Tree::Other, Tree::New, Tree::Absent);
    f.atomic_exchange = false;
    assert_eq!(
        plan(Action::Install, &f).unwrap()[1..],
        [
            Rename(Dest, Previous),
            Rename(Staging, Dest),
            Journal(Phase::Swapped)
        ]
    );
}

#[test]
fn commit_declares_the_previous_tree_garbage_before_deleting_it() {
    let f = facts(
        journal(Phase::Swapped),
        Tree::New,
        Tree::Absent,
        Tree::Other,
    );
    assert_eq!(
        plan(Action::Commit, &f).unwrap(),
        [
            Journal(Phase::Committing),
            Remove(Previous),
            Journal(Phase::Committed)
        ]
    );
}

#[test]
fn a_completed_commit_leaves_a_tombstone_that_refuses_rollback_until_the_next_download() {
    let f = facts(
        journal(Phase::Committed),
        Tree::New,
        Tree::Absent,
        Tree::Absent,
    );
    assert_eq!(plan(Action::Rollback, &f), Err(Refusal::AlreadyCommitted));
    for action in [Action::Commit, Action::Failure, Action::Cleanup] {
        assert_eq!(plan(action, &f).unwrap(), [], "{action:?}");
    }
    assert_eq!(plan(Action::Prepare, &f).unwrap(), [ClearJournal]);
    // Another artifact's states: nothing of it was installed.
    let mut other = journal(Phase::Committed);
    other.as_mut().unwrap().same_artifact = false;
    let f = facts(other, Tree::New, Tree::Absent, Tree::Absent);
    assert_eq!(plan(Action::Rollback, &f).unwrap(), []);
    assert_eq!(plan(Action::Commit, &f), Err(Refusal::NotInstalled));
}

#[test]
fn a_commit_without_any_journal_is_refused_rather_than_reported_done() {
    let f = facts(None, Tree::Other, Tree::Absent, Tree::Absent);
    assert_eq!(plan(Action::Commit, &f), Err(Refusal::NotInstalled));
    assert_eq!(plan(Action::Rollback, &f).unwrap(), []);
}

#[test]
fn rollback_exchanges_back_and_restarts_the_unit_and_the_next_state_deletes_the_rejected_tree() {
    let mut j = journal(Phase::Swapped);
    j.as_mut().unwrap().service_was_active = true;
    let mut f = facts(j, Tree::New, Tree::Absent, Tree::Other);
    f.service_active = Some(true);
    let steps = plan(Action::Rollback, &f).unwrap();
    assert_eq!(
        steps,
        [
            Journal(Phase::RollingBack),
            StopService,
            Exchange(Previous, Dest),
            StartService
        ]
    );
    // O(1): the rejected tree waits at the previous slot, named garbage by
    // the journal, for ArtifactFailure or Cleanup (or the next Download).
    let mut after = f;
    for step in steps {
        apply(&mut after, step);
    }
    assert_eq!(plan(Action::Rollback, &after).unwrap(), []);
    for action in [Action::Failure, Action::Cleanup, Action::Prepare] {
        assert_eq!(
            plan(action, &after).unwrap(),
            [Remove(Previous), ClearJournal]
        );
    }
    for action in [Action::Install, Action::Commit] {
        assert_eq!(plan(action, &after), Err(Refusal::RollbackInProgress));
    }

    let mut j = journal(Phase::Swapped);
    j.as_mut().unwrap().fresh_install = true;
    let f = facts(j, Tree::New, Tree::Absent, Tree::Absent);
    assert_eq!(
        plan(Action::Rollback, &f).unwrap(),
        [Journal(Phase::RollingBack), Rename(Dest, Staging)]
    );
}

#[test]
fn download_clears_leftovers_and_rolls_back_an_install_the_client_lost() {
    let f = facts(None, Tree::Other, Tree::Other, Tree::Other);
    assert_eq!(
        plan(Action::Prepare, &f).unwrap(),
        [Remove(Staging), Remove(Previous)]
    );
    let f = facts(journal(Phase::Staged), Tree::Other, Tree::New, Tree::Absent);
    assert_eq!(
        plan(Action::Prepare, &f).unwrap(),
        [Journal(Phase::Staging), Remove(Staging), ClearJournal]
    );
    // An install that returned may still be committed: refused.
    for same_artifact in [false, true] {
        let mut j = journal(Phase::Swapped);
        j.as_mut().unwrap().same_artifact = same_artifact;
        let f = facts(j, Tree::New, Tree::Absent, Tree::Other);
        assert_eq!(
            plan(Action::Prepare, &f),
            Err(Refusal::Pending(Phase::Swapped))
        );
    }
    // A swap that never returned, the new tree in place, the unit stopped
    // or started again by the boot: whoever's install it was, it was never
    // committed, so the old tree comes back with its unit first.
    for phase in [Phase::Swapping] {
        for same_artifact in [false, true] {
            for active in [false, true] {
                let mut j = journal(phase);
                j.as_mut().unwrap().same_artifact = same_artifact;
                j.as_mut().unwrap().service_was_active = true;
                let mut f = facts(j, Tree::New, Tree::Absent, Tree::Other);
                f.service_active = Some(active);
                let mut want = vec![Journal(Phase::RollingBack)];
                if active {
                    want.push(StopService);
                }
                want.extend([
                    Exchange(Previous, Dest),
                    StartService,
                    Remove(Previous),
                    ClearJournal,
                ]);
                let got = plan(Action::Prepare, &f).unwrap();
                assert_eq!(got, want, "{phase:?} same={same_artifact} active={active}");
            }
        }
    }
    // Cut before the exchange, the unit already stopped: only the unit.
    let mut j = journal(Phase::Swapping);
    j.as_mut().unwrap().service_was_active = true;
    let mut f = facts(j, Tree::Other, Tree::New, Tree::Absent);
    f.service_active = Some(false);
    assert_eq!(
        plan(Action::Prepare, &f).unwrap(),
        [
            Journal(Phase::Staging),
            Remove(Staging),
            StartService,
            ClearJournal
        ]
    );
}

#[test]
fn rollback_after_commit_began_is_refused_and_cleanup_finishes_the_commit() {
    let f = facts(
        journal(Phase::Committing),
        Tree::New,
        Tree::Absent,
        Tree::Other,
    );
    assert_eq!(plan(Action::Rollback, &f), Err(Refusal::CommitStarted));
    assert_eq!(
        plan(Action::Cleanup, &f).unwrap(),
        [Remove(Previous), Journal(Phase::Committed)]
    );
}

#[test]
fn another_deployments_error_states_leave_a_pending_install_alone() {
    let mut j = journal(Phase::Swapped);
    j.as_mut().unwrap().same_artifact = false;
    let f = facts(j, Tree::New, Tree::Absent, Tree::Other);
    for action in [Action::Rollback, Action::Failure, Action::Cleanup] {
        assert_eq!(plan(action, &f).unwrap(), [], "{action:?}");
    }
    assert_eq!(
        plan(Action::Commit, &f),
        Err(Refusal::Pending(Phase::Swapped))
    );
}

// ---------------------------------------------------------------------------
// Every combination.

const TREES: [Tree; 3] = [Tree::Absent, Tree::New, Tree::Other];

fn every_facts() -> Vec<Facts> {
    let mut all = Vec::new();
    let mut journals: Vec<Option<JournalFacts>> = vec![None];
    for phase in Phase::ALL {
        for fresh_install in [false, true] {
            for service_was_active in [false, true] {
                for same_artifact in [false, true] {
                    journals.push(Some(JournalFacts {
                        phase,
                        fresh_install,
                        service_was_active,
                        same_artifact,
                    }));
                }
            }
        }
    }
    for journal in journals {
        for dest in TREES {
            for staging in TREES {
                for previous in TREES {
                    for service_active in [None, Some(false), Some(true)] {
                        for atomic_exchange in [false, true] {
                            let f = Facts {
                                journal,
                                dest,
                                staging,
                                previous,
                                service_active,
                                atomic_exchange,
                            };
                            // Without a journal nothing is "this install's".
                            if journal.is_none() && [dest, staging, previous].contains(&Tree::New) {
                                continue;
                            }
                            all.push(f);
                        }
                    }
                }
            }
        }
    }
    all
}

#[test]
fn every_combination_terminates_with_well_formed_steps() {
    let mut planned = 0;
    let mut refused = 0;
    for f in every_facts() {
        for action in Action::ALL {
            let Ok(steps) = plan(action, &f) else {
                refused += 1;
                continue;
            };
            planned += 1;
            let mut sim = f;
            for step in &steps {
                match *step {
                    Remove(slot) => {
                        assert_ne!(
                            slot, Dest,
                            "{action:?} {f:?}: never delete the destination in place"
                        );
                        assert_ne!(sim.tree(slot), Tree::Absent, "{action:?} {f:?} {steps:?}");
                        // Deleting this install's complete tree only
                        // happens once the journal no longer counts on it.
                        if sim.tree(slot) == Tree::New {
                            let phase = sim.journal.map(|j| j.phase);
                            assert!(
                                matches!(
                                    phase,
                                    Some(Phase::Staging | Phase::RollingBack | Phase::Committing)
                                ),
                                "{action:?} {f:?} {steps:?}"
                            );
                        }
                    }
                    Rename(a, b) => {
                        assert_ne!(sim.tree(a), Tree::Absent, "{action:?} {f:?} {steps:?}");
                        assert_eq!(
                            sim.tree(b),
                            Tree::Absent,
                            "{action:?} {f:?} {steps:?}: rename onto a tree"
                        );
                    }
                    Exchange(a, b) => {
                        assert_ne!(sim.tree(a), Tree::Absent, "{action:?} {f:?}");
                        assert_ne!(sim.tree(b), Tree::Absent, "{action:?} {f:?}");
                        assert!(sim.atomic_exchange);
                    }
                    StartService | StopService => {
                        assert!(
                            sim.service_active.is_some(),
                            "{action:?} {f:?}: no unit named"
                        );
                    }
                    _ => {}
                }
                apply(&mut sim, *step);
            }
            // Completed requests leave the journal in a phase that says
            // what happened; only these end states are possible.
            let end = sim.journal.map(|j| j.phase);
            let other = f.journal.is_some_and(|j| !j.same_artifact);
            let committed = end == Some(Phase::Committed);
            match action {
                Action::Install => assert_eq!(end, Some(Phase::Swapped), "{f:?} {steps:?}"),
                // A commit always ends in the tombstone, never in silence.
                Action::Commit => assert!(committed && !other, "{f:?} {steps:?}"),
                // Download starts from a clean slate, or refuses.
                Action::Prepare => assert!(end.is_none(), "{f:?} {steps:?}"),
                // A rollback leaves no journal, or `rolling-back` naming the
                // rejected tree for the next state to delete (never with
                // the new tree in the destination); a tombstone of this
                // artifact refuses it.
                Action::Rollback => {
                    assert!(
                        end.is_none()
                            || other
                            || (end == Some(Phase::RollingBack) && sim.dest != Tree::New),
                        "{f:?} {steps:?}"
                    )
                }
                Action::Failure => {
                    assert!(end.is_none() || committed || other, "{f:?} {steps:?}")
                }
                Action::Cleanup => assert!(
                    end.is_none() || committed || end == Some(Phase::Swapped) || other,
                    "{f:?} {steps:?}"
                ),
            }
        }
    }
    assert!(
        planned > 1000 && refused > 1000,
        "{planned} planned, {refused} refused"
    );
}

// ---------------------------------------------------------------------------
// A model disk, cut at every step.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Content {
    Old,
    New,
    /// A tree whose removal was cut short; the marker may be gone already.
    Partial {
        new: bool,
        marker: bool,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct World {
    dest: Option<Content>,
    staging: Option<Content>,
    previous: Option<Content>,
    journal: Option<JournalFacts>,
    service: Option<bool>,
    atomic: bool,
}

impl World {
    fn slot(&mut self, s: Slot) -> &mut Option<Content> {
        match s {
            Dest => &mut self.dest,
            Staging => &mut self.staging,
            Previous => &mut self.previous,
        }
    }

    fn facts(&self) -> Facts {
        let tree = |c: Option<Content>| match c {
            None => Tree::Absent,
            _ if self.journal.is_none() => Tree::Other,
            Some(Content::New)
            | Some(Content::Partial {
                new: true,
                marker: true,
            }) => Tree::New,
            Some(_) => Tree::Other,
        };
        Facts {
            journal: self.journal,
            dest: tree(self.dest),
            staging: tree(self.staging),
            previous: tree(self.previous),
            service_active: self.service,
            atomic_exchange: self.atomic,
        }
    }

    /// Applies a step; `cut_removal` leaves a removal half done instead.
    fn run(&mut self, step: Step, cut_removal: Option<bool>) {
        match step {
            Remove(s) => {
                let slot = self.slot(s);
                *slot = match (cut_removal, *slot) {
                    (Some(marker), Some(c)) => Some(Content::Partial {
                        new: matches!(c, Content::New | Content::Partial { new: true, .. }),
                        marker: marker && !matches!(c, Content::Partial { marker: false, .. }),
                    }),
                    _ => None,
                };
            }
            Exchange(a, b) => {
                let (ca, cb) = (*self.slot(a), *self.slot(b));
                *self.slot(a) = cb;
                *self.slot(b) = ca;
            }
            Rename(a, b) => {
                assert!(
                    self.slot(b).is_none(),
                    "rename onto a tree: {step:?} {self:?}"
                );
                *self.slot(b) = self.slot(a).take();
            }
            ClearJournal => self.journal = None,
            StopService => self.service = Some(false),
            StartService => self.service = Some(true),
            Journal(_) | BeginSwap { .. } => {
                let mut f = self.facts();
                apply(&mut f, step);
                self.journal = f.journal;
            }
        }
    }

    /// Runs `action` from what is on the model disk, cut at step `cut`
    /// (`Some((k, None))` before step k, `Some((k, Some(marker)))` in the
    /// middle of step k if it is a removal).
    fn act(
        &mut self,
        action: Action,
        cut: Option<(usize, Option<bool>)>,
    ) -> Result<usize, Refusal> {
        let steps = plan(action, &self.facts())?;
        for (i, step) in steps.iter().enumerate() {
            match cut {
                Some((k, None)) if k == i => return Ok(steps.len()),
                Some((k, Some(marker))) if k == i => {
                    if matches!(step, Remove(_)) {
                        self.run(*step, Some(marker));
                    }
                    return Ok(steps.len());
                }
                _ => self.run(*step, None),
            }
        }
        Ok(steps.len())
    }

    fn after_download(fresh: bool, service: bool, atomic: bool) -> World {
        World {
            dest: if fresh { None } else { Some(Content::Old) },
            staging: Some(Content::New),
            previous: None,
            journal: Some(JournalFacts {
                phase: Phase::Staged,
                fresh_install: false,
                service_was_active: false,
                same_artifact: true,
            }),
            service: service.then_some(true),
            atomic,
        }
    }

    fn assert_only(&self, dest: Option<Content>, why: &str) {
        assert_eq!(self.dest, dest, "{why}: {self:?}");
        assert_eq!(
            (self.staging, self.previous),
            (None, None),
            "{why}: {self:?}"
        );
        assert!(
            self.journal.is_none() || self.journal.map(|j| j.phase) == Some(Phase::Committed),
            "{why}: {self:?}"
        );
        if self.service.is_some() && dest.is_some() {
            assert_eq!(
                self.service,
                Some(true),
                "{why}: unit left stopped: {self:?}"
            );
        }
    }
}

fn cuts(len: usize) -> Vec<Option<(usize, Option<bool>)>> {
    let mut v = vec![None];
    for k in 0..len {
        v.push(Some((k, None)));
        v.push(Some((k, Some(true))));
        v.push(Some((k, Some(false))));
    }
    v
}

/// The client's error path after a power cut: in new processes,
/// ArtifactRollback → ArtifactFailure → Cleanup (Go: without Failure).
fn recover(w: &mut World, with_failure: bool) {
    w.act(Action::Rollback, None).unwrap();
    if with_failure {
        w.act(Action::Failure, None).unwrap();
    }
    w.act(Action::Cleanup, None).unwrap();
}

fn scenarios() -> Vec<(bool, bool, bool)> {
    let mut v = Vec::new();
    for fresh in [false, true] {
        for service in [false, true] {
            for atomic in [false, true] {
                v.push((fresh, service, atomic));
            }
        }
    }
    v
}

/// How many steps a clean install takes from a completed Download.
fn install_len(fresh: bool, service: bool, atomic: bool) -> usize {
    let f = World::after_download(fresh, service, atomic).facts();
    plan(Action::Install, &f).unwrap().len()
}

#[test]
fn an_install_cut_anywhere_recovers_to_exactly_the_old_tree() {
    for (fresh, service, atomic) in scenarios() {
        let old = (!fresh).then_some(Content::Old);
        let len = install_len(fresh, service, atomic);
        for cut in cuts(len) {
            for with_failure in [false, true] {
                let mut w = World::after_download(fresh, service, atomic);
                w.act(Action::Install, cut).unwrap();
                recover(&mut w, with_failure);
                w.assert_only(
                    old,
                    &format!("fresh={fresh} service={service} atomic={atomic} cut={cut:?}"),
                );
            }
        }
    }
}

#[test]
fn an_install_the_client_lost_is_rolled_back_by_the_next_download() {
    // mender 3.x standalone records an install only once ArtifactInstall
    // returns: after a power cut inside it (or before the record), the
    // client knows nothing, and the next Download is the first state run.
    for (fresh, service, atomic) in scenarios() {
        let old = (!fresh).then_some(Content::Old);
        let len = install_len(fresh, service, atomic);
        for cut in cuts(len) {
            for same_artifact in [false, true] {
                let mut w = World::after_download(fresh, service, atomic);
                w.act(Action::Install, cut).unwrap();
                // The unit is not restarted by the boot in this model: the
                // worst case, a unit the install stopped and nobody started.
                if let Some(j) = &mut w.journal {
                    j.same_artifact = same_artifact;
                }
                if w.journal.map(|j| j.phase) == Some(Phase::Swapped) {
                    // The install returned: the client holds it.
                    assert_eq!(
                        w.act(Action::Prepare, None),
                        Err(Refusal::Pending(Phase::Swapped))
                    );
                    continue;
                }
                w.act(Action::Prepare, None).unwrap();
                w.assert_only(
                    old,
                    &format!("fresh={fresh} service={service} atomic={atomic} cut={cut:?}"),
                );
                // Cut again anywhere in that Download: the next one finishes.
                let len = plan(Action::Prepare, &{
                    let mut again = World::after_download(fresh, service, atomic);
                    again.act(Action::Install, cut).unwrap();
                    again.facts()
                })
                .unwrap()
                .len();
                for cut2 in cuts(len) {
                    let mut w = World::after_download(fresh, service, atomic);
                    w.act(Action::Install, cut).unwrap();
                    w.act(Action::Prepare, cut2).unwrap();
                    w.act(Action::Prepare, None).unwrap();
                    w.assert_only(old, &format!("cut={cut:?} then {cut2:?}"));
                }
            }
        }
    }
}

#[test]
fn a_rollback_cut_anywhere_and_run_again_recovers_the_old_tree() {
    for (fresh, service, atomic) in scenarios() {
        let old = (!fresh).then_some(Content::Old);
        let mut installed = World::after_download(fresh, service, atomic);
        installed.act(Action::Install, None).unwrap();
        let len = plan(Action::Rollback, &installed.facts()).unwrap().len();
        for cut in cuts(len) {
            let mut w = installed;
            w.act(Action::Rollback, cut).unwrap();
            recover(&mut w, true);
            w.assert_only(
                old,
                &format!("fresh={fresh} service={service} atomic={atomic} cut={cut:?}"),
            );
        }
    }
}

#[test]
fn a_commit_cut_anywhere_and_run_again_keeps_exactly_the_new_tree() {
    for (fresh, service, atomic) in scenarios() {
        let mut installed = World::after_download(fresh, service, atomic);
        installed.act(Action::Install, None).unwrap();
        let len = plan(Action::Commit, &installed.facts()).unwrap().len();
        for cut in cuts(len) {
            let mut w = installed;
            w.act(Action::Commit, cut).unwrap();
            w.act(Action::Commit, None).unwrap();
            w.act(Action::Cleanup, None).unwrap();
            w.assert_only(Some(Content::New), &format!("cut={cut:?}"));

            // Or the client gives up on the commit and rolls back: before
            // the journal says committing that restores the old tree,
            // afterwards it is refused and the error states finish the commit.
            let mut w = installed;
            w.act(Action::Commit, cut).unwrap();
            let phase = w.journal.map(|j| j.phase);
            let committing = matches!(phase, Some(Phase::Committing | Phase::Committed));
            let want = if committing {
                Some(Content::New)
            } else {
                (!fresh).then_some(Content::Old)
            };
            let rolled = w.act(Action::Rollback, None);
            assert_eq!(rolled.is_err(), committing, "{cut:?} {w:?}");
            w.act(Action::Failure, None).unwrap();
            w.act(Action::Cleanup, None).unwrap();
            w.assert_only(want, &format!("rollback after commit cut {cut:?}"));
        }
    }
}

#[test]
fn a_download_cut_anywhere_is_cleaned_up_without_touching_the_destination() {
    for marker in [false, true] {
        let mut w = World::after_download(false, false, true);
        w.staging = Some(Content::Partial { new: true, marker });
        w.journal.as_mut().unwrap().phase = Phase::Staging;
        w.act(Action::Cleanup, None).unwrap();
        w.assert_only(Some(Content::Old), "cleanup after a cut download");
    }
}

#[test]
fn a_download_after_a_completed_deployment_starts_from_a_clean_slate() {
    let mut w = World::after_download(false, false, true);
    w.act(Action::Install, None).unwrap();
    w.act(Action::Commit, Some((1, Some(true)))).unwrap();
    w.act(Action::Prepare, None).unwrap();
    w.assert_only(Some(Content::New), "prepare finishes an interrupted commit");
    assert_eq!(w.journal, None, "and removes the tombstone");
}

#[test]
fn a_commit_that_completed_but_was_not_reported_refuses_the_rollback_that_follows() {
    for (fresh, service, atomic) in scenarios() {
        let mut w = World::after_download(fresh, service, atomic);
        w.act(Action::Install, None).unwrap();
        w.act(Action::Commit, None).unwrap();
        // The process died before exiting 0: the client rolls back.
        assert_eq!(
            w.act(Action::Rollback, None),
            Err(Refusal::AlreadyCommitted)
        );
        w.act(Action::Failure, None).unwrap();
        w.act(Action::Cleanup, None).unwrap();
        w.assert_only(Some(Content::New), "the committed tree stays");
        assert_eq!(
            w.act(Action::Rollback, None),
            Err(Refusal::AlreadyCommitted)
        );
        w.act(Action::Prepare, None).unwrap();
        assert_eq!(w.journal, None);
    }
}
