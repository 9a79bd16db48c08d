use super::*;

fn update(phase: Phase, ours: bool, load: bool, pulled: bool) -> Facts {
    Facts {
        update: Some(UpdateFacts {
            phase,
            ours,
            load,
            pulled,
        }),
    }
}

const PHASES: [Phase; 5] = [
    Phase::Download,
    Phase::Install,
    Phase::Installed,
    Phase::Commit,
    Phase::RolledBack,
];

fn every_facts() -> Vec<Facts> {
    let mut all = vec![Facts::default()];
    for phase in PHASES {
        for ours in [false, true] {
            for load in [false, true] {
                for pulled in [false, true] {
                    all.push(update(phase, ours, load, pulled));
                }
            }
        }
    }
    all
}

// ---- the decisions, state by state --------------------------------------

#[test]
fn a_first_install_switches_and_commit_then_cleanup_finish_it() {
    let none = Facts::default();
    assert_eq!(steps(Action::Download, &none), Ok(vec![]));
    assert_eq!(steps(Action::Install, &none), Ok(vec![Step::Switch]));
    let fetched = update(Phase::Download, true, false, true);
    assert_eq!(steps(Action::Install, &fetched), Ok(vec![Step::Switch]));
    let installed = update(Phase::Installed, true, false, true);
    assert_eq!(steps(Action::Install, &installed), Ok(vec![]));
    assert_eq!(steps(Action::Commit, &installed), Ok(vec![Step::Commit]));
    let committed = update(Phase::Commit, true, false, true);
    assert_eq!(steps(Action::Commit, &committed), Ok(vec![]));
    assert_eq!(
        steps(Action::Cleanup, &committed),
        Ok(vec![Step::FinishCommit])
    );
}

#[test]
fn the_error_states_restore_then_undo_what_was_fetched_and_cleanup_forgets() {
    let switched = update(Phase::Install, true, true, true);
    assert_eq!(steps(Action::Rollback, &switched), Ok(vec![Step::Restore]));
    assert_eq!(
        steps(Action::Failure, &switched),
        Ok(vec![Step::Restore, Step::UndoLoad, Step::DropPulled])
    );
    assert_eq!(
        steps(Action::Cleanup, &switched),
        Ok(vec![
            Step::Restore,
            Step::UndoLoad,
            Step::DropPulled,
            Step::Clear
        ])
    );
    let fetched = update(Phase::Download, true, false, true);
    assert_eq!(steps(Action::Rollback, &fetched), Ok(vec![]));
    assert_eq!(
        steps(Action::Cleanup, &fetched),
        Ok(vec![Step::DropPulled, Step::Clear])
    );
}

#[test]
fn a_rollback_after_a_commit_that_died_still_restores() {
    let committed = update(Phase::Commit, true, false, true);
    assert_eq!(steps(Action::Rollback, &committed), Ok(vec![Step::Restore]));
}

#[test]
fn an_interrupted_install_restores_the_previous_set_before_switching_again() {
    let half = update(Phase::Install, true, false, true);
    assert_eq!(
        steps(Action::Install, &half),
        Ok(vec![Step::Restore, Step::Switch])
    );
    let loading = update(Phase::Download, true, true, true);
    assert_eq!(
        steps(Action::Install, &loading),
        Ok(vec![Step::UndoLoad, Step::Switch])
    );
    assert_eq!(steps(Action::Download, &loading), Ok(vec![Step::UndoLoad]));
}

#[test]
fn commit_and_download_refuse_what_does_not_fit_the_phase() {
    for phase in [Phase::Download, Phase::Install, Phase::RolledBack] {
        assert_eq!(
            steps(Action::Commit, &update(phase, true, false, false)),
            Err(Refusal::NotInstalled(phase))
        );
    }
    for phase in [Phase::Installed, Phase::Commit] {
        assert_eq!(
            steps(Action::Download, &update(phase, true, false, false)),
            Err(Refusal::AlreadyInstalling(phase))
        );
    }
    // A switch that never returned is put back first (settle_abandoned).
    assert_eq!(
        steps(Action::Download, &update(Phase::Install, true, false, true)),
        Ok(vec![Step::Restore])
    );
    assert_eq!(steps(Action::Commit, &Facts::default()), Ok(vec![]));
}

#[test]
fn an_abandoned_update_is_finished_or_blocks_the_next_deployment_while_it_may_be_committed() {
    for action in [Action::Download, Action::Install] {
        let tail = if action == Action::Install {
            vec![Step::Switch]
        } else {
            vec![]
        };
        let fetched = update(Phase::Download, false, true, true);
        let mut want = vec![Step::UndoLoad, Step::DropPulled, Step::Clear];
        want.extend(&tail);
        assert_eq!(steps(action, &fetched), Ok(want));
        let committed = update(Phase::Commit, false, false, true);
        let mut want = vec![Step::FinishCommit];
        want.extend(&tail);
        assert_eq!(steps(action, &committed), Ok(want));
        assert_eq!(
            steps(action, &update(Phase::Installed, false, false, false)),
            Err(Refusal::Pending(Phase::Installed))
        );
        // A switch that never returned: the previous set back, what it
        // fetched gone, then this deployment.
        let mut want = vec![Step::Restore, Step::DropPulled, Step::Clear];
        want.extend(&tail);
        assert_eq!(
            steps(action, &update(Phase::Install, false, false, true)),
            Ok(want)
        );
    }
    // This deployment's error states and commit leave the other one alone.
    for action in [
        Action::Commit,
        Action::Rollback,
        Action::Failure,
        Action::Cleanup,
    ] {
        for f in every_facts()
            .iter()
            .filter(|f| f.update.is_some_and(|u| !u.ours))
        {
            assert_eq!(steps(action, f), Ok(vec![]), "{action:?} {f:?}");
        }
    }
}

#[test]
fn every_combination_terminates_in_the_state_it_promises() {
    for f in every_facts() {
        for action in Action::ALL {
            let Ok(list) = steps(action, &f) else {
                continue;
            };
            let mut end = f;
            for s in &list {
                apply(&mut end, *s);
            }
            let ours = end.update.filter(|u| u.ours);
            match action {
                Action::Download => {
                    assert!(ours.map_or(true, |u| !u.phase.switched() && !u.load));
                    assert!(end.update.map_or(true, |u| u.ours), "{f:?}");
                }
                Action::Install => assert!(
                    matches!(ours, Some(u) if matches!(u.phase, Phase::Installed | Phase::Commit)),
                    "{f:?} {list:?}"
                ),
                Action::Commit => {
                    assert!(ours.map_or(true, |u| u.phase == Phase::Commit), "{f:?}")
                }
                Action::Rollback => {
                    assert!(ours.map_or(true, |u| !u.phase.switched()), "{f:?}")
                }
                Action::Failure => assert!(
                    ours.map_or(true, |u| !u.phase.switched() && !u.load && !u.pulled),
                    "{f:?} {list:?}"
                ),
                Action::Cleanup => assert!(ours.is_none(), "{f:?} {list:?}"),
            }
        }
    }
}

// ---- cut anywhere ---------------------------------------------------------
//
// A model of the device: the journal the steps read, and what the engine
// runs and holds. Each step is the sequence of writes the executor makes
// (engine calls and journal saves); a cut after any of them is a power cut
// or SIGKILL there. The client then runs its recovery states, each in a
// fresh process that plans from the journal again.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Set {
    Old,
    Mixed,
    New,
}

/// Deployments are numbered 1 and 2; bit `1 << n` marks deployment n's images.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Journal {
    owner: u8,
    phase: Phase,
    load: bool,
    pulled: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct World {
    journal: Option<Journal>,
    /// What runs: the committed release's set, the new one, or some of each.
    running: Set,
    /// Whose deployment's set is "new" while one is switched.
    committed: u8,
    /// Images a load changed and no one has put back yet (by owner bit).
    loaded: u8,
    /// Images an update fetched that are on the engine (by owner bit).
    fetched: u8,
}

impl World {
    fn facts(&self, me: u8) -> Facts {
        Facts {
            update: self.journal.map(|j| UpdateFacts {
                phase: j.phase,
                ours: j.owner == me,
                load: j.load,
                pulled: j.pulled,
            }),
        }
    }
}

type Write = fn(&mut World, u8);

/// The writes of a step, in the order the executor makes them.
fn writes(step: Step) -> Vec<Write> {
    match step {
        Step::UndoLoad => vec![
            |w, _| {
                let owner = w.journal.unwrap().owner;
                w.loaded &= !(1 << owner);
            },
            |w, _| w.journal.as_mut().unwrap().load = false,
        ],
        Step::DropPulled => vec![
            |w, _| {
                let owner = w.journal.unwrap().owner;
                w.fetched &= !(1 << owner);
            },
            |w, _| w.journal.as_mut().unwrap().pulled = false,
        ],
        Step::Clear => vec![|w, _| w.journal = None],
        Step::Restore => vec![
            |w, _| w.running = Set::Mixed,
            |w, _| w.running = Set::Old,
            |w, _| w.journal.as_mut().unwrap().phase = Phase::RolledBack,
        ],
        Step::FinishCommit => vec![
            // The old set and the images no release needs go...
            |w, _| w.running = Set::New,
            // ...then the records move on, in one journal write.
            |w, _| {
                let owner = w.journal.unwrap().owner;
                w.committed = owner;
                w.running = Set::Old; // the committed set is now "old" for the next one
                w.fetched &= !(1 << owner); // now the release's own images
                w.journal = None;
            },
        ],
        Step::Commit => vec![|w, _| w.journal.as_mut().unwrap().phase = Phase::Commit],
        Step::Switch => vec![
            |w, me| match &mut w.journal {
                Some(j) => j.phase = Phase::Install,
                None => {
                    w.journal = Some(Journal {
                        owner: me,
                        phase: Phase::Install,
                        load: false,
                        pulled: false,
                    })
                }
            },
            |w, _| w.running = Set::Mixed,
            |w, _| w.running = Set::New,
            |w, _| w.journal.as_mut().unwrap().phase = Phase::Installed,
        ],
    }
}

/// Download's own work after its steps: the update recorded, an image
/// pulled, an inline archive loaded under the load record.
fn fetch() -> Vec<Write> {
    vec![
        |w, me| {
            let j = w.journal.get_or_insert(Journal {
                owner: me,
                phase: Phase::Download,
                load: false,
                pulled: false,
            });
            j.phase = Phase::Download;
            j.pulled = true;
        },
        |w, me| w.fetched |= 1 << me,
        |w, _| w.journal.as_mut().unwrap().load = true,
        |w, me| w.loaded |= 1 << me,
        // The load succeeded: its images are the update's, in one write.
        |w, me| {
            w.journal.as_mut().unwrap().load = false;
            w.loaded &= !(1 << me);
            w.fetched |= 1 << me;
        },
    ]
}

fn state_writes(action: Action, w: &World, me: u8) -> Vec<Write> {
    let list = steps(action, &w.facts(me))
        .unwrap_or_else(|r| panic!("{action:?} refused ({r:?}) in {w:?}"));
    let mut out: Vec<Write> = list.into_iter().flat_map(writes).collect();
    if action == Action::Download {
        out.extend(fetch());
    }
    out
}

/// Runs a state; `cut` kills it after that many writes. Returns whether it
/// completed.
fn run(w: &mut World, action: Action, me: u8, cut: Option<usize>) -> bool {
    let all = state_writes(action, w, me);
    let n = cut.map_or(all.len(), |c| c.min(all.len()));
    for write in &all[..n] {
        write(w, me);
    }
    n == all.len() && cut.map_or(true, |c| c > all.len())
}

/// What the client runs after `action` failed or was killed.
fn recovery(action: Action) -> &'static [Action] {
    match action {
        Action::Download => &[Action::Cleanup],
        Action::Install | Action::Commit | Action::Rollback => {
            &[Action::Rollback, Action::Failure, Action::Cleanup]
        }
        Action::Failure => &[Action::Failure, Action::Cleanup],
        Action::Cleanup => &[Action::Cleanup],
    }
}

const FLOW: [Action; 4] = [
    Action::Download,
    Action::Install,
    Action::Commit,
    Action::Cleanup,
];

fn fresh() -> World {
    World {
        journal: None,
        running: Set::Old,
        committed: 0,
        loaded: 0,
        fetched: 0,
    }
}

/// Deployment `me` through the client's flow, cut at write `cut` of state
/// `at`, and, when `again` is given, its first recovery state cut too.
fn deploy(w: &mut World, me: u8, at: usize, cut: usize, again: Option<usize>) -> bool {
    for (i, action) in FLOW.iter().enumerate() {
        let c = (i == at).then_some(cut);
        if run(w, *action, me, c) {
            continue;
        }
        let rec = recovery(*action);
        let mut k = 0;
        let mut second = again;
        while k < rec.len() {
            if run(w, rec[k], me, second.take()) {
                k += 1;
            } else {
                // Killed in recovery: the client runs that state again
                // (and the ones after it).
                let rest = recovery(rec[k]);
                let mut j = 0;
                while j < rest.len() {
                    assert!(
                        run(w, rest[j], me, None),
                        "an uncut recovery state completes"
                    );
                    j += 1;
                }
                break;
            }
        }
        // The commit was accepted only if its state completed.
        return i > 2;
    }
    true
}

fn assert_clean(w: &World, committed: u8) {
    assert_eq!(w.journal, None, "{w:?}");
    assert_eq!(w.running, Set::Old, "{w:?}: the committed release runs");
    assert_eq!(w.committed, committed, "{w:?}");
    assert_eq!(w.loaded, 0, "{w:?}: every load's changes put back");
    assert_eq!(w.fetched, 0, "{w:?}: a failed update's images gone");
}

#[test]
fn a_deployment_cut_anywhere_ends_committed_or_exactly_as_before() {
    let mut cases = 0;
    for (at, action) in FLOW.iter().enumerate() {
        let len = state_writes(*action, &fresh(), 1).len().max(8);
        for cut in 0..=len {
            for again in [None, Some(0), Some(1), Some(2), Some(3), Some(4)] {
                let mut w = fresh();
                let done = deploy(&mut w, 1, at, cut, again);
                assert_clean(&w, if done { 1 } else { 0 });
                cases += 1;
            }
        }
    }
    assert!(cases > 100, "{cases}");
}

#[test]
fn a_deployment_abandoned_anywhere_in_download_is_finished_by_a_later_one() {
    let len = state_writes(Action::Download, &fresh(), 1).len();
    for cut in 0..len {
        let mut w = fresh();
        // Deployment 1 dies in Download and the client never runs its Cleanup.
        assert!(!run(&mut w, Action::Download, 1, Some(cut)));
        // Deployment 2 goes through, cut anywhere too. A cut before its
        // Download has settled deployment 1 leaves that to the next Download
        // (the error states leave another deployment's update alone).
        for at in 0..FLOW.len() {
            for cut2 in 0..8 {
                let mut w2 = w;
                let done = deploy(&mut w2, 2, at, cut2, None);
                assert_eq!(w2.committed, if done { 2 } else { 0 }, "{w2:?}");
                assert!(w2.journal.map_or(true, |j| j.owner == 1), "{w2:?}");
                assert!(deploy(&mut w2, 3, usize::MAX, 0, None));
                assert_clean(&w2, 3);
            }
        }
    }
}
