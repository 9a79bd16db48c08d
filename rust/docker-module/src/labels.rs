//! The labels the module puts on every container it creates. They let a fresh
//! process, after a crash, tell its containers from everyone else's and one
//! install from the next; the journal records only what the engine cannot.

use std::collections::BTreeMap;

use docker_spec::{Condition, ContainerSpec, RESERVED_LABEL_PREFIX};

use crate::engine::Container;

/// The stack the container belongs to.
pub const STACK: &str = "io.mender.composable.stack";
/// The artifact name of the release that created it.
pub const RELEASE: &str = "io.mender.composable.release";
/// Its name in the release (its engine name changes while switching).
pub const NAME: &str = "io.mender.composable.name";
/// The install that created it: tells a retry of the same artifact from the
/// set it replaces.
pub const INSTALL: &str = "io.mender.composable.install";
/// A fingerprint of its spec: an unchanged, running container is kept.
pub const SPEC: &str = "io.mender.composable.spec";
/// Its position in the release's start order.
pub const ORDER: &str = "io.mender.composable.order";
/// What it waits for before it starts, `NAME:CONDITION,…` (only when it
/// depends on something): a rollback starts the old set in the same way.
pub const DEPENDS_ON: &str = "io.mender.composable.depends-on";
/// The stack networks it joins (engine names), comma-separated: what a
/// network still serves is read from these, stopped containers included.
pub const NETWORKS: &str = "io.mender.composable.networks";
/// On a network the module created: its key in the docker-stack.
pub const NETWORK: &str = "io.mender.composable.network";
/// Engine volumes made fresh for it (purge_on_deploy), comma-separated.
pub const PURGE_VOLUMES: &str = "io.mender.composable.purge-volumes";

const _: () = assert!(matches!(
    RESERVED_LABEL_PREFIX.as_bytes(),
    b"io.mender.composable."
));

pub struct Identity<'a> {
    pub stack: &'a str,
    pub release: &'a str,
    pub install_id: &'a str,
}

/// The spec's own labels plus the module's.
pub fn for_container(
    spec: &ContainerSpec,
    order: usize,
    purge_volumes: &[String],
    id: &Identity<'_>,
) -> BTreeMap<String, String> {
    let mut labels = spec.labels.clone();
    labels.insert(STACK.to_owned(), id.stack.to_owned());
    labels.insert(RELEASE.to_owned(), id.release.to_owned());
    labels.insert(NAME.to_owned(), spec.name.clone());
    labels.insert(INSTALL.to_owned(), id.install_id.to_owned());
    labels.insert(SPEC.to_owned(), fingerprint(spec));
    labels.insert(ORDER.to_owned(), order.to_string());
    if !purge_volumes.is_empty() {
        labels.insert(PURGE_VOLUMES.to_owned(), purge_volumes.join(","));
    }
    if !spec.networks.is_empty() {
        let names: Vec<&str> = spec.networks.keys().map(String::as_str).collect();
        labels.insert(NETWORKS.to_owned(), names.join(","));
    }
    if !spec.depends_on.is_empty() {
        let deps: Vec<String> = spec
            .depends_on
            .iter()
            .map(|(name, condition)| format!("{name}:{}", condition.as_str()))
            .collect();
        labels.insert(DEPENDS_ON.to_owned(), deps.join(","));
    }
    labels
}

/// The dependencies a container was created with; an entry the module
/// cannot read (a hand-edited label) is left out, so it is started without
/// that wait rather than not at all.
pub fn depends_on(c: &Container) -> BTreeMap<String, Condition> {
    c.label(DEPENDS_ON)
        .unwrap_or_default()
        .split(',')
        .filter_map(|entry| {
            let (name, condition) = entry.split_once(':')?;
            Some((name.to_owned(), Condition::parse(condition).ok()?))
        })
        .collect()
}

/// A stable 64-bit FNV-1a of the spec's JSON form. A change of the module's
/// serialisation only costs one needless re-create.
pub fn fingerprint(spec: &ContainerSpec) -> String {
    let json = serde_json::to_vec(spec).expect("a spec always serialises");
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for b in json {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("{hash:016x}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(name: &str) -> ContainerSpec {
        let image = docker_spec::ImageRef::parse(
            "app@sha256:1111111111111111111111111111111111111111111111111111111111111111",
        )
        .unwrap();
        ContainerSpec::new(name, image)
    }

    #[test]
    fn a_spec_without_dependencies_keeps_the_fingerprint_it_had_before_they_existed() {
        // Containers deployed by an older module must still be kept when
        // unchanged: depends_on is left out of the hashed form when empty.
        let mut a = spec("web");
        assert!(!serde_json::to_string(&a).unwrap().contains("depends_on"));
        let before = fingerprint(&a);
        a.depends_on
            .insert("db".into(), docker_spec::Condition::Healthy);
        assert_ne!(fingerprint(&a), before);
    }

    #[test]
    fn fingerprints_change_with_any_field() {
        let a = spec("web");
        let mut b = a.clone();
        assert_eq!(fingerprint(&a), fingerprint(&b));
        b.env.insert("A".into(), "1".into());
        assert_ne!(fingerprint(&a), fingerprint(&b));
        assert_ne!(fingerprint(&a), fingerprint(&spec("web2")));
    }

    #[test]
    fn module_labels_are_added_to_the_specs() {
        let mut s = spec("web");
        s.labels.insert("team".into(), "core".into());
        let l = for_container(
            &s,
            2,
            &["data-abc".to_owned()],
            &Identity {
                stack: "st",
                release: "r1",
                install_id: "i1",
            },
        );
        assert_eq!(l["team"], "core");
        assert_eq!(l[STACK], "st");
        assert_eq!(l[RELEASE], "r1");
        assert_eq!(l[NAME], "web");
        assert_eq!(l[ORDER], "2");
        assert_eq!(l[PURGE_VOLUMES], "data-abc");
    }
}
