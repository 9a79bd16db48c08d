//! The planner from tables: hand-written scenarios with their exact
//! operations, and a cross product of old sets, new sets, foreign, replaced
//! and other stacks' containers and strategies, each simulated step by step
//! and rolled back from every intermediate point.

use std::collections::BTreeMap;

use docker_spec::{Condition, ContainerSpec, ImageRef, Release, Strategy};

use super::*;
use crate::engine::{Container, MountUse};
use crate::journal::{OldContainer, Phase, ReleaseRecord, Update};
use crate::labels::{self, Identity};

const INSTALL: &str = "inst2";

fn digest(c: char) -> String {
    format!("sha256:{}", c.to_string().repeat(64))
}

fn spec(name: &str, d: char) -> ContainerSpec {
    let image = ImageRef::parse(&format!("reg.example.com/{name}@{}", digest(d))).unwrap();
    let mut s = ContainerSpec::new(name, image);
    s.network_mode = Some("none".into());
    s
}

fn release(specs: Vec<ContainerSpec>, strategy: Strategy, replaces: &[&str]) -> Release {
    Release {
        format: docker_spec::Format::Stack(1),
        stack: "web".into(),
        strategy,
        health_timeout: None,
        registry: None,
        replaces: replaces.iter().map(|s| s.to_string()).collect(),
        start: docker_spec::StartOrder::Sequence,
        containers: specs,
        inline: vec![],
        networks: vec![],
    }
}

/// A container of stack `web` made by an earlier install from `s`.
fn own(id: &str, s: &ContainerSpec, order: usize, running: bool) -> Container {
    let mut c = Container::new(id, &s.name);
    c.labels = labels::for_container(
        s,
        order,
        &[],
        &Identity {
            stack: "web",
            release: "web-1",
            install_id: "inst1",
        },
    );
    c.running = running;
    c.image_id = format!("img-{}", s.name);
    c.network_mode = s.network_mode.clone().unwrap_or_default();
    c.published = s
        .published_ports()
        .map(|(p, q)| (p, q.to_owned()))
        .collect();
    c.devices = s.devices.iter().map(|d| d.host.clone()).collect();
    c
}

/// Running containers of stack `web` from an earlier install, each with the
/// id `o-NAME`, from their specs at their levels.
fn running_old<'a>(specs: impl IntoIterator<Item = (&'a ContainerSpec, usize)>) -> Vec<Container> {
    specs
        .into_iter()
        .map(|(s, level)| own(&format!("o-{}", s.name), s, level, true))
        .collect()
}

fn foreign(id: &str, name: &str, running: bool) -> Container {
    let mut c = Container::new(id, name);
    c.running = running;
    c.image_id = format!("img-{name}");
    c
}

fn other_stack(id: &str, name: &str) -> Container {
    let mut c = foreign(id, name, true);
    c.labels.insert(labels::STACK.into(), "api".into());
    c
}

fn text(ops: &[Op]) -> Vec<String> {
    ops.iter()
        .map(|op| match op {
            Op::Create { name, .. } => format!("create {name}"),
            Op::Start { target } => format!("start {target}"),
            Op::StartAll { targets } => format!("start {}", targets.join("+")),
            Op::Stop { target } => format!("stop {target}"),
            Op::StopAll { targets } => format!("stop {}", targets.join("+")),
            Op::WaitFor { waits } => format!(
                "wait {}",
                waits
                    .iter()
                    .map(|(n, c)| format!("{n}:{}", c.as_str()))
                    .collect::<Vec<_>>()
                    .join(",")
            ),
            Op::Rename { target, to } => format!("rename {target} {to}"),
            Op::Remove { target } => format!("remove {target}"),
            Op::RemoveImage { reference } => format!("rmi {reference}"),
            Op::RemoveVolume { name } => format!("rmv {name}"),
            Op::HealthGate { names } => format!("gate {}", names.join(",")),
            Op::Keep { name } => format!("keep {name}"),
        })
        .collect()
}

fn ok(r: &Release, containers: &[Container]) -> InstallPlan {
    install(r, INSTALL, containers).unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn install_scenarios_plan_exactly_these_operations() {
    let web = spec("web", 'a');
    let web2 = spec("web", 'b');
    let worker = spec("worker", 'c');
    let db = spec("db", 'd');
    let mut web_port = spec("web", 'b');
    web_port
        .ports
        .push(docker_spec::container::parse_port("8080:80").unwrap());
    let mut old_port = own("o1", &spec("web", 'a'), 0, true);
    old_port.published = vec![(8080, "tcp".into())];

    let cases: Vec<(&str, Release, Vec<Container>, Vec<&str>)> = vec![
        (
            "first install on an empty device",
            release(vec![web.clone()], Strategy::StopFirst, &[]),
            vec![],
            vec!["create web", "start web", "gate web"],
        ),
        (
            "first install of two containers starts them in order",
            release(vec![db.clone(), web.clone()], Strategy::StopFirst, &[]),
            vec![],
            vec![
                "create db",
                "create web",
                "start db",
                "start web",
                "gate db,web",
            ],
        ),
        (
            "upgrade, stop-first: the new one waits under a temporary name",
            release(vec![web2.clone()], Strategy::StopFirst, &[]),
            vec![own("o1", &web, 0, true)],
            vec![
                "create web.mender-new",
                "stop o1",
                "rename o1 web.mender-prev",
                "rename web.mender-new web",
                "start web",
                "gate web",
            ],
        ),
        (
            "upgrade, start-first without conflicts: gate before the old one stops",
            release(vec![web2.clone()], Strategy::StartFirst, &[]),
            vec![own("o1", &web, 0, true)],
            vec![
                "create web.mender-new",
                "start web.mender-new",
                "gate web.mender-new",
                "stop o1",
                "rename o1 web.mender-prev",
                "rename web.mender-new web",
            ],
        ),
        (
            "start-first with a shared host port falls back to stop-first",
            release(vec![web_port.clone()], Strategy::StartFirst, &[]),
            vec![old_port.clone()],
            vec![
                "create web.mender-new",
                "stop o1",
                "rename o1 web.mender-prev",
                "rename web.mender-new web",
                "start web",
                "gate web",
            ],
        ),
        (
            "an unchanged running container is kept",
            release(vec![web.clone()], Strategy::StopFirst, &[]),
            vec![own("o1", &web, 0, true)],
            vec!["keep web"],
        ),
        (
            "an unchanged but stopped container is re-created, nothing to stop",
            release(vec![web.clone()], Strategy::StopFirst, &[]),
            vec![own("o1", &web, 0, false)],
            vec![
                "create web.mender-new",
                "rename o1 web.mender-prev",
                "rename web.mender-new web",
                "start web",
                "gate web",
            ],
        ),
        (
            "a container the release drops is stopped (reverse order) and kept for rollback",
            release(vec![web2.clone()], Strategy::StopFirst, &[]),
            vec![own("o1", &web, 0, true), own("o2", &worker, 1, true)],
            vec![
                "create web.mender-new",
                "stop o2",
                "stop o1",
                "rename o1 web.mender-prev",
                "rename web.mender-new web",
                "start web",
                "gate web",
            ],
        ),
        (
            "one kept, one replaced by a new version",
            release(
                vec![web.clone(), spec("worker", 'e')],
                Strategy::StopFirst,
                &[],
            ),
            vec![own("o1", &web, 0, true), own("o2", &worker, 1, true)],
            vec![
                "keep web",
                "create worker.mender-new",
                "stop o2",
                "rename o2 worker.mender-prev",
                "rename worker.mender-new worker",
                "start worker",
                "gate worker",
            ],
        ),
        (
            "a replaced foreign container is stopped; its name is not needed",
            release(vec![web.clone()], Strategy::StopFirst, &["legacy"]),
            vec![foreign("f1", "legacy", true)],
            vec!["create web", "stop f1", "start web", "gate web"],
        ),
        (
            "a replaced foreign container holding the new name makes way",
            release(vec![web.clone()], Strategy::StopFirst, &["web"]),
            vec![foreign("f1", "web", true)],
            vec![
                "create web.mender-new",
                "stop f1",
                "rename f1 web.mender-prev",
                "rename web.mender-new web",
                "start web",
                "gate web",
            ],
        ),
        (
            "replaced after the stack's own: stopped first",
            release(vec![web2.clone()], Strategy::StopFirst, &["legacy"]),
            vec![own("o1", &web, 0, true), foreign("f1", "legacy", true)],
            vec![
                "create web.mender-new",
                "stop f1",
                "stop o1",
                "rename o1 web.mender-prev",
                "rename web.mender-new web",
                "start web",
                "gate web",
            ],
        ),
        (
            "foreign and other stacks' containers are never touched",
            release(vec![web.clone()], Strategy::StopFirst, &[]),
            vec![foreign("f1", "monitor", true), other_stack("s1", "api")],
            vec!["create web", "start web", "gate web"],
        ),
        (
            "a replaced name that does not exist is skipped",
            release(vec![web.clone()], Strategy::StopFirst, &["ghost"]),
            vec![],
            vec!["create web", "start web", "gate web"],
        ),
    ];
    for (what, r, containers, want) in cases {
        let plan = ok(&r, &containers);
        assert_eq!(text(&plan.ops), want, "{what}");
    }
}

#[test]
fn install_plans_record_the_old_set_and_the_fallback_reason() {
    let web = spec("web", 'a');
    let mut web_port = spec("web", 'b');
    web_port
        .ports
        .push(docker_spec::container::parse_port("8080:80").unwrap());
    let mut old = own("o1", &web, 0, true);
    old.published = vec![(8080, "tcp".into())];
    old.labels
        .insert(labels::PURGE_VOLUMES.into(), "cache-inst1".into());
    let r = release(vec![web_port], Strategy::StartFirst, &["legacy", "ghost"]);
    let plan = ok(&r, &[old, foreign("f1", "legacy", false)]);
    assert_eq!(plan.strategy, Strategy::StopFirst);
    assert_eq!(
        plan.fallback.as_deref(),
        Some("new web and running web both publish host port 8080/tcp")
    );
    assert_eq!(
        plan.old,
        vec![
            OldContainer {
                id: "o1".into(),
                name: "web".into(),
                running: true,
                replaced: false,
                purge_volumes: vec!["cache-inst1".into()],
            },
            OldContainer {
                id: "f1".into(),
                name: "legacy".into(),
                running: false,
                replaced: true,
                purge_volumes: vec![],
            },
        ]
    );
    assert_eq!(plan.missing_replaced, ["ghost"]);
}

#[test]
fn purged_volumes_get_a_fresh_engine_volume_and_prevent_keeping() {
    let mut s = spec("db", 'a');
    s.volumes.push(docker_spec::VolumeMount {
        name: "data".into(),
        target: "/data".into(),
        read_only: false,
        purge_on_deploy: true,
    });
    s.volumes.push(docker_spec::VolumeMount {
        name: "keepme".into(),
        target: "/keep".into(),
        read_only: false,
        purge_on_deploy: false,
    });
    let r = release(vec![s.clone()], Strategy::StopFirst, &[]);
    let plan = ok(&r, &[own("o1", &s, 0, true)]);
    assert_eq!(plan.purge_volumes, [format!("data-{INSTALL}")]);
    assert!(
        plan.kept.is_empty(),
        "a purged volume means a fresh deployment"
    );
    assert_eq!(engine_volume(&s.volumes[1], INSTALL), "keepme");
}

#[test]
fn refusals_name_the_container_in_the_way() {
    let web = spec("web", 'a');
    let cases: Vec<(Release, Vec<Container>, &str)> = vec![
        (
            release(vec![web.clone()], Strategy::StopFirst, &[]),
            vec![foreign("f1", "web", true)],
            "container name web is already used by container web (f1), which this module does not manage; list it in \"replaces\"",
        ),
        (
            release(vec![web.clone()], Strategy::StopFirst, &[]),
            vec![other_stack("s1", "web")],
            "container name web is already used by container web (s1) of stack \"api\"; choose another name",
        ),
        (
            release(vec![web.clone()], Strategy::StopFirst, &["metrics"]),
            vec![other_stack("s1", "metrics")],
            "replaces names container metrics, which belongs to stack \"api\"",
        ),
        (
            release(vec![spec("web", 'b')], Strategy::StopFirst, &[]),
            vec![own("o1", &web, 0, true), foreign("f1", "web.mender-new", false)],
            "the name web.mender-new, which the module needs while the old container still holds the name, is taken by container web.mender-new (f1)",
        ),
        (
            release(vec![spec("web", 'b')], Strategy::StopFirst, &[]),
            vec![own("o1", &web, 0, true), foreign("f1", "web.mender-prev", false)],
            "the name web.mender-prev, which the module needs for the old container while switching",
        ),
    ];
    for (r, containers, want) in cases {
        let e = install(&r, INSTALL, &containers).unwrap_err().to_string();
        assert!(e.contains(want), "got: {e}\nwant: {want}");
    }
}

#[test]
fn hand_over_conflicts() {
    let mut new = spec("web", 'b');
    let base = own("o1", &spec("web", 'a'), 0, true);
    let with = |f: &dyn Fn(&mut Container)| {
        let mut c = base.clone();
        f(&mut c);
        c
    };
    assert_eq!(conflict(&new, &base), None, "nothing shared");

    new.ports
        .push(docker_spec::container::parse_port("8080:80/udp").unwrap());
    assert_eq!(
        conflict(&new, &with(&|c| c.published = vec![(8080, "tcp".into())])),
        None,
        "other protocol"
    );
    assert!(
        conflict(&new, &with(&|c| c.published = vec![(8080, "udp".into())]))
            .unwrap()
            .contains("8080/udp")
    );
    assert!(conflict(&new, &with(&|c| c.network_mode = "host".into()))
        .unwrap()
        .contains("host network"));

    let mut host = spec("web", 'b');
    host.network_mode = Some("host".into());
    assert!(conflict(&host, &with(&|c| c.network_mode = "host".into())).is_some());
    assert!(conflict(&host, &with(&|c| c.published = vec![(1, "tcp".into())])).is_some());
    assert_eq!(conflict(&host, &base), None, "old one has no network");

    let mut dev = spec("web", 'b');
    dev.devices
        .push(docker_spec::container::parse_device("/dev/ttyS0").unwrap());
    assert!(
        conflict(&dev, &with(&|c| c.devices = vec!["/dev/ttyS0".into()]))
            .unwrap()
            .contains("/dev/ttyS0")
    );

    let mut bind = spec("web", 'b');
    bind.binds
        .push(docker_spec::container::parse_bind("/data/web:/srv:ro").unwrap());
    let ro = MountUse {
        source: "/data/web/".into(),
        named_volume: false,
        read_write: false,
    };
    let rw = MountUse {
        read_write: true,
        ..ro.clone()
    };
    assert_eq!(
        conflict(&bind, &with(&|c| c.mounts = vec![ro.clone()])),
        None,
        "two readers"
    );
    assert!(
        conflict(&bind, &with(&|c| c.mounts = vec![rw.clone()])).is_some(),
        "a writer"
    );

    let mut vol = spec("web", 'b');
    vol.volumes.push(docker_spec::VolumeMount {
        name: "db".into(),
        target: "/db".into(),
        read_only: false,
        purge_on_deploy: false,
    });
    let vol_ro = MountUse {
        source: "db".into(),
        named_volume: true,
        read_write: false,
    };
    assert!(conflict(&vol, &with(&|c| c.mounts = vec![vol_ro.clone()]))
        .unwrap()
        .contains("volume db"));
    vol.volumes[0].purge_on_deploy = true;
    assert_eq!(
        conflict(&vol, &with(&|c| c.mounts = vec![vol_ro.clone()])),
        None,
        "a purged volume is fresh"
    );
}

/// Applies operations to a list of containers the way the engine would.
fn simulate(model: &mut Vec<Container>, ops: &[Op], r: Option<&Release>) {
    let find = |m: &Vec<Container>, t: &str| {
        m.iter()
            .position(|c| c.id == t || c.name == t)
            .unwrap_or_else(|| panic!("no container {t} in {:?}", names(m)))
    };
    let levels = r.map(Release::levels).unwrap_or_default();
    for op in ops {
        match op {
            Op::Create { index, name } => {
                assert!(
                    model.iter().all(|c| &c.name != name),
                    "create {name}: name taken"
                );
                let s = &r.unwrap().containers[*index];
                let mut c = Container::new(&format!("n-{name}"), name);
                c.labels = labels::for_container(
                    s,
                    levels[*index],
                    &[],
                    &Identity {
                        stack: "web",
                        release: "web-2",
                        install_id: INSTALL,
                    },
                );
                model.push(c);
            }
            Op::Start { target } => {
                let i = find(model, target);
                model[i].running = true;
            }
            Op::StartAll { targets } => {
                for target in targets {
                    let i = find(model, target);
                    model[i].running = true;
                }
            }
            Op::Stop { target } => {
                let i = find(model, target);
                model[i].running = false;
            }
            Op::StopAll { targets } => {
                for target in targets {
                    let i = find(model, target);
                    model[i].running = false;
                }
            }
            Op::WaitFor { waits } => {
                for (n, _) in waits {
                    let i = find(model, n);
                    assert!(model[i].running, "wait for {n}, which was never started");
                }
            }
            Op::Rename { target, to } => {
                assert!(
                    model.iter().all(|c| &c.name != to),
                    "rename to {to}: name taken"
                );
                let i = find(model, target);
                model[i].name = to.clone();
            }
            Op::Remove { target } => {
                let i = find(model, target);
                model.remove(i);
            }
            Op::HealthGate { names: gated } => {
                for n in gated {
                    let i = find(model, n);
                    assert!(model[i].running, "gate on {n}, which is not running");
                }
            }
            Op::Keep { .. } | Op::RemoveImage { .. } | Op::RemoveVolume { .. } => {}
        }
    }
}

fn names(m: &[Container]) -> Vec<(String, bool)> {
    let mut v: Vec<(String, bool)> = m.iter().map(|c| (c.name.clone(), c.running)).collect();
    v.sort();
    v
}

fn update_from(plan: &InstallPlan) -> Update {
    Update {
        artifact: "web-2".into(),
        phase: Phase::Install,
        pulled: vec![],
        images: vec![],
        install_id: Some(INSTALL.into()),
        strategy: Some(plan.strategy.as_str().into()),
        old: plan.old.clone(),
        kept: plan.kept.clone(),
        purge_volumes: plan.purge_volumes.clone(),
        load: None,
    }
}

/// Foreign containers (name, running) and the release's `replaces`.
type ForeignCase = (Vec<(&'static str, bool)>, Vec<&'static str>);

#[test]
fn every_combination_switches_correctly_and_rolls_back_from_every_step() {
    let old_sets: Vec<Vec<(&str, char, bool)>> = vec![
        vec![],
        vec![("web", 'a', true)],
        vec![("web", 'a', false)],
        vec![("web", 'a', true), ("worker", 'c', true)],
        vec![("worker", 'c', true)],
        vec![("api", 'f', true), ("web", 'a', true)],
    ];
    let new_sets: Vec<Vec<(&str, char)>> = vec![
        vec![("web", 'a')],
        vec![("web", 'b')],
        vec![("web", 'b'), ("api", 'f')],
        vec![("api", '9')],
        vec![("worker", 'c'), ("web", 'b')],
    ];
    // (foreign containers, replaces)
    let foreigns: Vec<ForeignCase> = vec![
        (vec![], vec![]),
        (vec![("monitor", true)], vec![]),
        (vec![("legacy", true)], vec!["legacy"]),
        (vec![("legacy", false)], vec!["legacy"]),
        (vec![("web", true)], vec!["web"]),
        (vec![("web", true)], vec![]),
        (vec![], vec!["ghost"]),
    ];
    let others = [false, true];
    let strategies = [Strategy::StopFirst, Strategy::StartFirst];
    // 0: a start order; 1: a graph with no edges; 2: a graph where every
    // container after the first waits for the first to be healthy. The old
    // set was started one by one, or as one level.
    let starts = [0, 1, 2];
    let old_levels = [false, true];
    let mut planned = 0;
    let mut refused = 0;
    for old_set in &old_sets {
        for new_set in &new_sets {
            for (fs, replaces) in &foreigns {
                for &other in &others {
                    for (&strategy, &start, &one_level) in strategies
                        .iter()
                        .flat_map(|s| starts.iter().map(move |g| (s, g)))
                        .flat_map(|(s, g)| old_levels.iter().map(move |l| (s, g, l)))
                    {
                        let mut initial: Vec<Container> = Vec::new();
                        for (i, (n, d, running)) in old_set.iter().enumerate() {
                            let order = if one_level { 0 } else { i };
                            initial.push(own(&format!("o-{n}"), &spec(n, *d), order, *running));
                        }
                        for (n, running) in fs {
                            if initial.iter().any(|c| c.name == *n) {
                                continue;
                            }
                            initial.push(foreign(&format!("f-{n}"), n, *running));
                        }
                        if other {
                            initial.push(other_stack("s-metrics", "metrics"));
                        }
                        let mut specs: Vec<ContainerSpec> =
                            new_set.iter().map(|(n, d)| spec(n, *d)).collect();
                        if start == 2 {
                            let first = specs[0].name.clone();
                            for s in specs.iter_mut().skip(1) {
                                s.depends_on.insert(first.clone(), Condition::Healthy);
                            }
                        }
                        let mut r = release(specs, strategy, replaces);
                        if start > 0 {
                            r.start = docker_spec::StartOrder::Graph;
                        }
                        let case = format!(
                            "old {old_set:?} (one level {one_level}) new {new_set:?} start {start} foreign {fs:?} replaces {replaces:?} other {other} {strategy:?}"
                        );
                        let plan = match install(&r, INSTALL, &initial) {
                            Ok(p) => p,
                            Err(e) => {
                                // The only refusal here: a foreign `web` that is not replaced.
                                let foreign_web = initial
                                    .iter()
                                    .any(|c| c.name == "web" && owner(c, "web") == Owner::Foreign);
                                assert!(
                                    foreign_web && !replaces.contains(&"web"),
                                    "{case}: unexpected refusal {e}"
                                );
                                refused += 1;
                                continue;
                            }
                        };
                        planned += 1;
                        check_plan(&case, &r, &initial, &plan);
                    }
                }
            }
        }
    }
    assert!(
        planned > 1800 && refused > 0,
        "{planned} planned, {refused} refused"
    );
}

fn check_plan(case: &str, r: &Release, initial: &[Container], plan: &InstallPlan) {
    let untouchable: Vec<&Container> = initial
        .iter()
        .filter(|c| match owner(c, "web") {
            Owner::Stack => false,
            Owner::OtherStack(_) => true,
            Owner::Foreign => !r.replaces.contains(&c.name),
        })
        .collect();
    for op in &plan.ops {
        let targets = match op {
            Op::Start { target }
            | Op::Stop { target }
            | Op::Rename { target, .. }
            | Op::Remove { target } => vec![target],
            Op::StartAll { targets } | Op::StopAll { targets } => targets.iter().collect(),
            _ => continue,
        };
        for target in targets {
            assert!(
                !untouchable
                    .iter()
                    .any(|c| &c.id == target || &c.name == target),
                "{case}: {op:?} touches a container the module must leave alone"
            );
        }
    }
    // A container starts only after what it depends on started, and after
    // its wait when it asked for more than a start.
    let mut started: Vec<&str> = Vec::new();
    let mut waited: Vec<&str> = Vec::new();
    let logical = |name: &str| name.trim_end_matches(NEW_SUFFIX).to_owned();
    for op in &plan.ops {
        let now: Vec<&String> = match op {
            Op::Start { target } => vec![target],
            Op::StartAll { targets } => targets.iter().collect(),
            Op::WaitFor { waits } => {
                waited.extend(waits.iter().map(|(n, _)| n.trim_end_matches(NEW_SUFFIX)));
                continue;
            }
            _ => continue,
        };
        for t in &now {
            let Some(s) = r.container(&logical(t)) else {
                continue;
            };
            for (d, cond) in &s.depends_on {
                let kept = plan
                    .kept
                    .iter()
                    .any(|k| initial.iter().any(|c| &c.id == k && &c.name == d));
                assert!(
                    kept || started.contains(&d.as_str()),
                    "{case}: {t} started before its dependency {d}"
                );
                assert!(
                    kept || *cond == Condition::Started || waited.contains(&d.as_str()),
                    "{case}: {t} started without waiting for {d} to be {}",
                    cond.as_str()
                );
            }
        }
        started.extend(now.iter().map(|t| t.trim_end_matches(NEW_SUFFIX)));
    }

    let mut model = initial.to_vec();
    simulate(&mut model, &plan.ops, Some(r));
    for s in &r.containers {
        let c = model
            .iter()
            .find(|c| c.name == s.name)
            .unwrap_or_else(|| panic!("{case}: {} missing after the switch", s.name));
        assert!(c.running, "{case}: {} not running after the switch", s.name);
        assert_eq!(c.label(labels::NAME), Some(s.name.as_str()), "{case}");
    }
    for o in &plan.old {
        let c = model.iter().find(|c| c.id == o.id).unwrap();
        assert!(!c.running, "{case}: old {} still running", o.name);
    }
    for u in &untouchable {
        let c = model.iter().find(|c| c.id == u.id).unwrap();
        assert_eq!((&c.name, c.running), (&u.name, u.running), "{case}");
    }

    // Roll back from every point: after each prefix of the operations, the
    // restore plan (from the journal's record alone) gives back the start.
    let update = update_from(plan);
    for k in 0..=plan.ops.len() {
        let mut model = initial.to_vec();
        simulate(&mut model, &plan.ops[..k], Some(r));
        let rp = restore("web", &update, &model)
            .unwrap_or_else(|e| panic!("{case}: restore after {k} ops: {e}"));
        assert!(rp.lost.is_empty(), "{case}");
        simulate(&mut model, &rp.ops, None);
        assert_eq!(
            names(&model),
            names(initial),
            "{case}: after {k} ops and a restore"
        );
        // Restoring again changes nothing.
        let again = restore("web", &update, &model).unwrap();
        assert!(
            again
                .ops
                .iter()
                .all(|op| matches!(op, Op::RemoveVolume { .. })),
            "{case}: a second restore still had {:?}",
            again.ops
        );
    }
}

#[test]
fn restore_reports_lost_containers_and_refuses_a_taken_name() {
    let web = spec("web", 'a');
    let update = Update {
        old: vec![
            OldContainer {
                id: "o1".into(),
                name: "web".into(),
                running: true,
                replaced: false,
                purge_volumes: vec![],
            },
            OldContainer {
                id: "o2".into(),
                name: "gone".into(),
                running: true,
                replaced: false,
                purge_volumes: vec![],
            },
        ],
        install_id: Some(INSTALL.into()),
        purge_volumes: vec!["data-inst2".into()],
        ..Update::new("web-2")
    };
    let mut renamed = own("o1", &web, 0, false);
    renamed.name = "web.mender-prev".into();
    let rp = restore("web", &update, &[renamed.clone()]).unwrap();
    assert_eq!(
        text(&rp.ops),
        ["rename o1 web", "start o1", "rmv data-inst2"]
    );
    assert_eq!(rp.lost, ["gone"]);

    let e = restore("web", &update, &[renamed, foreign("f1", "web", true)]).unwrap_err();
    assert!(
        e.to_string()
            .contains("cannot give web its name back: container web (f1)"),
        "{e}"
    );

    let none = Update {
        install_id: None,
        ..update
    };
    assert_eq!(
        text(
            &restore("web", &none, &[own("o1", &web, 0, true)])
                .unwrap()
                .ops
        ),
        ["rmv data-inst2"]
    );
}

#[test]
fn garbage_collection_keeps_n_minus_one_and_anything_in_use() {
    let ids: BTreeMap<String, String> = [
        ("r/a@1", "id-a"),
        ("r/b@1", "id-b"),
        ("r/c@1", "id-c"),
        ("r/d@1", "id-d"),
        ("r/e@1", "id-e"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let record = |artifact: &str, images: &[&str]| ReleaseRecord {
        artifact: artifact.into(),
        images: images.iter().map(|s| s.to_string()).collect(),
    };
    // n-2 used a, b, e; n-1 (current) uses c; the new release uses d.
    let previous = record("web-1", &["r/a@1", "r/b@1", "r/e@1"]);
    let current = record("web-2", &["r/c@1"]);
    let update = Update {
        images: vec!["r/d@1".into()],
        old: vec![OldContainer {
            id: "o1".into(),
            name: "web".into(),
            running: true,
            replaced: false,
            purge_volumes: vec!["data-inst1".into()],
        }],
        ..Update::new("web-3")
    };
    let mut old = foreign("o1", "web.mender-prev", false);
    old.image_id = "id-c".into();
    let mut uses_b = foreign("f1", "monitor", true);
    uses_b.image_id = "id-b".into();
    let ops = collect_garbage(
        &update,
        Some(&current),
        Some(&previous),
        &[old, uses_b],
        &ids,
    );
    assert_eq!(
        text(&ops),
        ["remove o1", "rmv data-inst1", "rmi r/a@1", "rmi r/e@1"]
    );

    // Nothing recorded yet: only the old set goes.
    let ops = collect_garbage(&update, None, None, &[], &ids);
    assert_eq!(text(&ops), ["rmv data-inst1"]);
}

#[test]
fn a_failed_update_drops_only_the_images_it_pulled_that_nobody_uses() {
    let ids: BTreeMap<String, String> = [("r/a@1", "id-a"), ("r/b@1", "id-b"), ("r/c@1", "id-c")]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let update = Update {
        pulled: vec![
            "r/a@1".into(),
            "r/b@1".into(),
            "r/c@1".into(),
            "r/gone@1".into(),
        ],
        ..Update::new("web-2")
    };
    let mut uses_b = foreign("f1", "monitor", true);
    uses_b.image_id = "id-b".into();
    let current = ReleaseRecord {
        artifact: "web-1".into(),
        images: vec!["r/c@1".into()],
    };
    let ops = drop_pulled(&update, Some(&current), None, &[uses_b], &ids);
    assert_eq!(text(&ops), ["rmi r/a@1"]);
}

#[test]
fn a_graph_starts_level_by_level_after_its_waits_and_stops_backwards() {
    let on = |mut s: ContainerSpec, deps: &[(&str, Condition)]| {
        for (d, c) in deps {
            s.depends_on.insert((*d).to_owned(), *c);
        }
        s
    };
    // In dependency order, as the parser leaves them.
    let specs = vec![
        spec("cache", 'a'),
        spec("db", 'b'),
        on(spec("migrate", 'c'), &[("db", Condition::Started)]),
        on(
            spec("api", 'd'),
            &[
                ("db", Condition::Healthy),
                ("migrate", Condition::CompletedSuccessfully),
            ],
        ),
        on(
            spec("web", 'e'),
            &[("api", Condition::Healthy), ("cache", Condition::Started)],
        ),
    ];
    let graph = |specs: Vec<ContainerSpec>, strategy| {
        let mut r = release(specs, strategy, &[]);
        r.start = docker_spec::StartOrder::Graph;
        r
    };
    let r = graph(specs.clone(), Strategy::StopFirst);
    assert_eq!(
        text(&ok(&r, &[]).ops),
        [
            "create cache",
            "create db",
            "create migrate",
            "create api",
            "create web",
            "start cache+db",
            "start migrate",
            "wait db:service_healthy,migrate:service_completed_successfully",
            "start api",
            "wait api:service_healthy",
            "start web",
            // migrate is a job that exits: the gate does not expect it to run.
            "gate cache,db,api,web",
        ]
    );

    // Over the same graph's previous release: its levels stop backwards,
    // each level at once; start-first waits for the temporary names.
    let old: Vec<Container> = ["cache", "db", "migrate", "api", "web"]
        .iter()
        .zip([0, 0, 1, 2, 3])
        .map(|(n, level)| own(&format!("o-{n}"), &spec(n, 'f'), level, *n != "migrate"))
        .collect();
    assert_eq!(
        text(&ok(&r, &old).ops),
        [
            "create cache.mender-new",
            "create db.mender-new",
            "create migrate.mender-new",
            "create api.mender-new",
            "create web.mender-new",
            "stop o-web",
            "stop o-api",
            "stop o-db+o-cache",
            "rename o-cache cache.mender-prev",
            "rename o-db db.mender-prev",
            "rename o-migrate migrate.mender-prev",
            "rename o-api api.mender-prev",
            "rename o-web web.mender-prev",
            "rename cache.mender-new cache",
            "rename db.mender-new db",
            "rename migrate.mender-new migrate",
            "rename api.mender-new api",
            "rename web.mender-new web",
            "start cache+db",
            "start migrate",
            "wait db:service_healthy,migrate:service_completed_successfully",
            "start api",
            "wait api:service_healthy",
            "start web",
            "gate cache,db,api,web",
        ]
    );
    let r = graph(specs, Strategy::StartFirst);
    let ops = text(&ok(&r, &old).ops);
    assert_eq!(
        ops[5..11],
        [
            "start cache.mender-new+db.mender-new",
            "start migrate.mender-new",
            "wait db.mender-new:service_healthy,migrate.mender-new:service_completed_successfully",
            "start api.mender-new",
            "wait api.mender-new:service_healthy",
            "start web.mender-new",
        ]
    );

    // A dependency kept running unchanged is not waited for again.
    let db = spec("db", 'b');
    let api = on(spec("api", 'd'), &[("db", Condition::Healthy)]);
    let r = graph(vec![db.clone(), api], Strategy::StopFirst);
    let kept = own("o-db", &db, 0, true);
    assert_eq!(
        text(&ok(&r, &[kept]).ops),
        ["keep db", "create api", "start api", "gate api"]
    );

    // Three independent containers: one start, and one stop for all three.
    let three = |d| vec![spec("a1", d), spec("b1", d), spec("c1", d)];
    let r = graph(three('b'), Strategy::StopFirst);
    let old = running_old(three('a').iter().map(|s| (s, 0)));
    let ops = text(&ok(&r, &old).ops);
    assert!(ops.contains(&"stop o-c1+o-b1+o-a1".to_owned()), "{ops:?}");
    assert!(ops.contains(&"start a1+b1+c1".to_owned()), "{ops:?}");
}

#[test]
fn a_rollback_starts_a_graph_release_again_along_its_dependencies() {
    let mut api = spec("api", 'a');
    api.depends_on.insert("db".into(), Condition::Healthy);
    let mut web = spec("web", 'a');
    web.depends_on.insert("api".into(), Condition::Started);
    web.depends_on.insert("cache".into(), Condition::Started);
    // Release 1 as a graph: cache and db, then api, then web.
    let old = running_old([
        (&spec("cache", 'a'), 0),
        (&spec("db", 'a'), 0),
        (&api, 1),
        (&web, 2),
    ]);
    assert_eq!(old[2].label(labels::DEPENDS_ON), Some("db:service_healthy"));
    assert_eq!(labels::depends_on(&old[3]).len(), 2);
    let r = release(
        ["cache", "db", "api", "web"]
            .iter()
            .map(|n| spec(n, 'b'))
            .collect(),
        Strategy::StopFirst,
        &[],
    );
    let plan = ok(&r, &old);
    let mut model = old.clone();
    simulate(&mut model, &plan.ops, Some(&r));
    let rp = restore("web", &update_from(&plan), &model).unwrap();
    let ops = text(&rp.ops);
    let starts: Vec<&str> = ops
        .iter()
        .filter(|o| o.starts_with("start") || o.starts_with("wait"))
        .map(String::as_str)
        .collect();
    assert_eq!(
        starts,
        [
            "start o-cache+o-db",
            "wait db:service_healthy",
            "start o-api",
            "start o-web"
        ]
    );
    simulate(&mut model, &rp.ops, None);
    assert_eq!(names(&model), names(&old));
}
