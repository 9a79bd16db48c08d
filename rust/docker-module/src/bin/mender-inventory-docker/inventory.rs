//! What the inventory reports, computed from the journals and the engine's
//! containers: pure functions, so tests need neither.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::path::Path;

use docker_module::engine::Container;
use docker_module::journal::{Journal, StackState};
use docker_module::labels;
use docker_spec::image::canonical_pinned;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StackInfo {
    pub name: String,
    /// The committed release's artifact name, else the containers' release label.
    pub version: Option<String>,
    /// `running`, `degraded` (some containers down or unhealthy), `stopped`
    /// or `absent` (the journal has a release but no container exists).
    pub state: &'static str,
    /// Engine names, in start order.
    pub containers: Vec<String>,
    /// `REPOSITORY@sha256:…`, in start order, without duplicates.
    pub images: Vec<String>,
    /// An update in progress: (artifact, phase).
    pub update: Option<(String, &'static str)>,
}

/// The journals under `state_dir`; unreadable ones are reported on stderr
/// and skipped, a missing directory is no journal at all.
pub fn read_journals(state_dir: &Path) -> Vec<StackState> {
    let Ok(entries) = std::fs::read_dir(state_dir) else {
        return Vec::new();
    };
    let mut names: Vec<String> = entries
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().into_string().ok())
        .filter_map(|n| n.strip_suffix(".json").map(str::to_owned))
        .filter(|n| docker_spec::stack::check_stack_name(n).is_ok())
        .collect();
    names.sort();
    let mut out = Vec::new();
    for name in names {
        match Journal::open(state_dir, &name) {
            Ok(j) => out.push(j.state),
            Err(e) => eprintln!("mender-inventory-docker: {e}"),
        }
    }
    out
}

fn order(c: &Container) -> (u64, &str) {
    (
        c.label(labels::ORDER)
            .and_then(|o| o.parse().ok())
            .unwrap_or(u64::MAX),
        c.name.as_str(),
    )
}

fn canonical(reference: &str) -> String {
    canonical_pinned(reference).unwrap_or_else(|| reference.to_owned())
}

/// One entry per stack that has a journal with a release or an update, or
/// containers. `digests_of(image_id)` gives an image's RepoDigests.
pub fn stacks(
    journals: &[StackState],
    containers: &[Container],
    digests_of: &mut dyn FnMut(&str) -> Vec<String>,
) -> Vec<StackInfo> {
    let mut by_stack: BTreeMap<&str, Vec<&Container>> = BTreeMap::new();
    for c in containers {
        if let Some(stack) = c.label(labels::STACK) {
            by_stack.entry(stack).or_default().push(c);
        }
    }
    let mut names: Vec<&str> = by_stack.keys().copied().collect();
    for j in journals {
        if (j.current.is_some() || j.update.is_some()) && !names.contains(&j.stack.as_str()) {
            names.push(&j.stack);
        }
    }
    names.sort_unstable();
    names
        .into_iter()
        .map(|name| {
            let journal = journals.iter().find(|j| j.stack == name);
            let mut own: Vec<&Container> = by_stack.get(name).cloned().unwrap_or_default();
            // While an update is switching, the set it created is what runs.
            let install = journal
                .and_then(|j| j.update.as_ref())
                .and_then(|u| u.install_id.as_deref());
            if let Some(id) = install {
                if own.iter().any(|c| c.label(labels::INSTALL) == Some(id)) {
                    own.retain(|c| c.label(labels::INSTALL) == Some(id));
                }
            }
            own.sort_by(|a, b| order(a).cmp(&order(b)));
            let known: Vec<String> = journal
                .map(|j| {
                    let mut v: Vec<&String> = Vec::new();
                    if let Some(u) = &j.update {
                        v.extend(&u.images);
                    }
                    for r in [&j.current, &j.previous].into_iter().flatten() {
                        v.extend(&r.images);
                    }
                    v.into_iter().map(|i| canonical(i)).collect()
                })
                .unwrap_or_default();
            let mut images: Vec<String> = Vec::new();
            for c in &own {
                let digests = digests_of(&c.image_id);
                let pick = digests
                    .iter()
                    .find(|d| known.contains(&canonical(d)))
                    .or_else(|| digests.first());
                if let Some(p) = pick {
                    if !images.contains(p) {
                        images.push(p.clone());
                    }
                }
            }
            if own.is_empty() {
                if let Some(current) = journal.and_then(|j| j.current.as_ref()) {
                    images.clone_from(&current.images);
                }
            }
            let running = own
                .iter()
                .filter(|c| {
                    c.running
                        && !c.restarting
                        && !matches!(c.health, docker_module::engine::Health::Unhealthy(_))
                })
                .count();
            let state = match (own.len(), running) {
                (0, _) => "absent",
                (n, r) if r == n => "running",
                (_, 0) => "stopped",
                _ => "degraded",
            };
            let version = journal
                .and_then(|j| j.current.as_ref())
                .map(|r| r.artifact.clone())
                .or_else(|| {
                    own.iter()
                        .find_map(|c| c.label(labels::RELEASE).map(str::to_owned))
                });
            StackInfo {
                name: name.to_owned(),
                version,
                state,
                containers: own.iter().map(|c| c.name.clone()).collect(),
                images,
                update: journal
                    .and_then(|j| j.update.as_ref())
                    .map(|u| (u.artifact.clone(), u.phase.as_str())),
            }
        })
        .collect()
}

/// Mender's inventory values are one line each: `%`, CR and LF are URL-encoded.
fn value(text: &str) -> String {
    text.replace('%', "%25")
        .replace('\n', "%0A")
        .replace('\r', "%0D")
}

/// `key=value` lines; a key repeated once per element forms a list.
pub fn render(stacks: &[StackInfo]) -> String {
    let mut out = String::new();
    for s in stacks {
        let _ = writeln!(out, "docker_stacks={}", value(&s.name));
    }
    for s in stacks {
        let key = format!("docker_stack_{}", s.name);
        if let Some(v) = &s.version {
            let _ = writeln!(out, "{key}_version={}", value(v));
        }
        let _ = writeln!(out, "{key}_state={}", s.state);
        for c in &s.containers {
            let _ = writeln!(out, "{key}_containers={}", value(c));
        }
        for i in &s.images {
            let _ = writeln!(out, "{key}_images={}", value(i));
        }
        if let Some((artifact, phase)) = &s.update {
            let _ = writeln!(out, "{key}_update={}", value(artifact));
            let _ = writeln!(out, "{key}_update_phase={phase}");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use docker_module::journal::ReleaseRecord;

    const D1: &str = "sha256:1111111111111111111111111111111111111111111111111111111111111111";
    const D2: &str = "sha256:2222222222222222222222222222222222222222222222222222222222222222";

    fn container(name: &str, stack: &str, order: u32, running: bool, image: &str) -> Container {
        let mut c = Container::new(&format!("id-{name}"), name);
        c.labels.insert(labels::STACK.into(), stack.into());
        c.labels
            .insert(labels::RELEASE.into(), format!("{stack}-label"));
        c.labels.insert(labels::ORDER.into(), order.to_string());
        c.running = running;
        c.image_id = image.into();
        c
    }

    fn journal(stack: &str, artifact: &str, images: &[String]) -> StackState {
        StackState {
            stack: stack.into(),
            current: Some(ReleaseRecord {
                artifact: artifact.into(),
                images: images.to_vec(),
            }),
            previous: None,
            update: None,
        }
    }

    fn digests(id: &str) -> Vec<String> {
        match id {
            "img-web" => vec![format!("mirror/web@{D1}"), format!("reg:5000/web@{D1}")],
            "img-db" => vec![format!("reg:5000/db@{D2}")],
            _ => Vec::new(),
        }
    }

    #[test]
    fn stacks_from_the_engine_and_the_journals() {
        let containers = vec![
            container("web", "app", 1, true, "img-web"),
            container("db", "app", 0, true, "img-db"),
            container("api", "api", 0, false, "img-db"),
            container("api-2", "api", 1, true, "img-db"),
            Container::new("x", "foreign"),
        ];
        let journals = vec![
            journal("app", "app-1.2", &[format!("reg:5000/web@{D1}")]),
            journal("gone", "gone-1", &[format!("reg:5000/db@{D2}")]),
        ];
        let got = stacks(&journals, &containers, &mut digests);
        let names: Vec<&str> = got.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["api", "app", "gone"]);
        assert_eq!(got[0].state, "degraded");
        assert_eq!(got[0].version.as_deref(), Some("api-label"));
        assert_eq!(got[0].images, [format!("reg:5000/db@{D2}")]);
        let app = &got[1];
        assert_eq!(app.version.as_deref(), Some("app-1.2"));
        assert_eq!(app.state, "running");
        assert_eq!(app.containers, ["db", "web"]);
        assert_eq!(
            app.images,
            [format!("reg:5000/db@{D2}"), format!("reg:5000/web@{D1}")]
        );
        assert_eq!(got[2].state, "absent");
        assert_eq!(got[2].images, [format!("reg:5000/db@{D2}")]);
    }

    #[test]
    fn lists_repeat_the_key() {
        let s = StackInfo {
            name: "web".into(),
            version: Some("web-1\n2%".into()),
            state: "running",
            containers: vec!["a".into(), "b".into()],
            images: vec![format!("r/a@{D1}")],
            update: Some(("web-2".into(), "installed")),
        };
        let text = render(&[
            s.clone(),
            StackInfo {
                name: "db".into(),
                ..s
            },
        ]);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(&lines[..2], ["docker_stacks=web", "docker_stacks=db"]);
        assert!(lines.contains(&"docker_stack_web_version=web-1%0A2%25"));
        assert!(lines.contains(&"docker_stack_web_containers=a"));
        assert!(lines.contains(&"docker_stack_web_containers=b"));
        assert!(lines.contains(&"docker_stack_db_update_phase=installed"));
        assert!(render(&[]).is_empty());
    }

    #[test]
    fn journals_are_read_and_strays_ignored() {
        let dir = std::env::temp_dir().join(format!("inv-journals-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let j = journal("web", "web-1", &[]);
        std::fs::write(
            dir.join("web.json"),
            module_kit::StateFile::<StackState>::encode(&j),
        )
        .unwrap();
        std::fs::write(dir.join(".web.json.tmp"), b"x").unwrap();
        std::fs::write(dir.join("notes.txt"), b"x").unwrap();
        assert_eq!(read_journals(&dir), [j]);
        assert!(read_journals(&dir.join("missing")).is_empty());
        std::fs::remove_dir_all(dir).unwrap();
    }
}
