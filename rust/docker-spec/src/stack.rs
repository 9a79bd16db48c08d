//! The versioned format: `{"docker-stack": {"format": 1, …}}` (see FORMAT.md).

use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::{Map, Value};

use crate::container::{self, Condition, ContainerSpec, Healthcheck, LogConfig, VolumeMount};
use crate::document::{kind, Object};
use crate::error::{Path, Result, SpecError};
use crate::image::ImageRef;
use crate::{Format, NetworkSpec, Release, StartOrder, Strategy};

pub const KEY: &str = "docker-stack";

/// Format versions this crate reads.
pub const FORMATS: &[u64] = &[1];

/// The stack-name rule: it becomes part of file names, labels and the
/// `data-partition.<stack>.version` provide.
pub fn check_stack_name(name: &str) -> std::result::Result<(), String> {
    if container::is_engine_name(name, 1, 63) {
        Ok(())
    } else {
        Err(format!(
            "stack name {name:?} is not valid: 1 to 63 characters, letters, digits, _ . -, starting with a letter or digit"
        ))
    }
}

pub(crate) fn parse(top: &Map<String, Value>) -> Result<Release> {
    let mut outer = Object::new(top, Path::root());
    let doc = outer
        .optional_object(KEY)?
        .ok_or_else(|| SpecError::invalid(&Path::root().key(KEY), "must be an object"))?;
    outer.finish()?;
    let mut doc = doc;

    let format_at = doc.path("format");
    let format = doc
        .optional_u64("format")?
        .ok_or_else(|| SpecError::invalid(&format_at, "is required: the format version, 1"))?;
    if !FORMATS.contains(&format) {
        return Err(SpecError::invalid(
            &format_at,
            format!(
                "format {format} is not supported by this module (it reads format 1); update the module or write format 1"
            ),
        ));
    }
    let stack_at = doc.path("stack");
    let stack = doc.required_str("stack")?;
    check_stack_name(stack).map_err(|p| SpecError::invalid(&stack_at, p))?;

    let strategy_at = doc.path("strategy");
    let strategy = match doc.optional_str("strategy")? {
        None | Some("stop-first") => Strategy::StopFirst,
        Some("start-first") => Strategy::StartFirst,
        Some(other) => {
            return Err(SpecError::invalid(
                &strategy_at,
                format!("{other:?} is not a strategy; use stop-first or start-first"),
            ))
        }
    };
    let timeout_at = doc.path("health_timeout_seconds");
    let health_timeout = match doc.optional_u64("health_timeout_seconds")? {
        Some(0) => return Err(SpecError::invalid(&timeout_at, "must be at least 1 second")),
        Some(s) => Some(Duration::from_secs(s)),
        None => None,
    };
    let registry_at = doc.path("registry");
    let registry = doc.optional_str("registry")?.map(str::to_owned);
    if let Some(r) = &registry {
        if r.is_empty() || r.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(SpecError::invalid(
                &registry_at,
                format!("{r:?} is not a registry name from the device's configuration"),
            ));
        }
    }
    let mut replaces = Vec::new();
    for (at, name) in doc.optional_strings("replaces")?.unwrap_or_default() {
        let name = name.strip_prefix('/').unwrap_or(name);
        container::check_object_name("container", name).map_err(|p| SpecError::invalid(&at, p))?;
        if replaces.iter().any(|r| r == name) {
            return Err(SpecError::invalid(&at, format!("{name:?} is listed twice")));
        }
        replaces.push(name.to_owned());
    }
    let containers_at = doc.path("containers");
    let keyed = "must be an object keyed by container name, {\"web\": {\"image\": …}}: artifact meta-data cannot hold objects inside a list (mender-artifact refuses it)";
    if matches!(
        top.get(KEY).and_then(|d| d.get("containers")),
        Some(Value::Array(_))
    ) {
        return Err(SpecError::invalid(&containers_at, keyed));
    }
    if matches!(
        top.get(KEY).and_then(|d| d.get("inline")),
        Some(Value::Array(_))
    ) {
        return Err(SpecError::invalid(
            &doc.path("inline"),
            "must be an object keyed by payload file name, {\"images.tar\": {\"images\": […]}}: artifact meta-data cannot hold objects inside a list (mender-artifact refuses it)",
        ));
    }
    let items = match doc.optional_object("containers")? {
        Some(o) => o,
        None => {
            return Err(SpecError::invalid(
                &containers_at,
                "is required: an object of containers keyed by name",
            ))
        }
    };
    let order_at = doc.path("start_order");
    let order = doc.optional_strings("start_order")?;
    let purge = doc.optional_strings("purge_on_deploy")?.unwrap_or_default();
    let inline_items = doc.optional_object("inline")?;
    let networks = match doc.optional_object("networks")? {
        Some(o) => parse_networks(stack, o)?,
        None => Vec::new(),
    };
    doc.finish()?;
    let map = items.entries();
    if map.is_empty() {
        return Err(SpecError::invalid(
            &containers_at,
            "lists no containers; a stack needs at least one",
        ));
    }
    // JSON object order does not survive mender-artifact (Go sorts keys),
    // so a flat start order is a list of names. Without one, several
    // containers start along their depends_on.
    let graph = order.is_none() && map.len() > 1;
    let names: Vec<(Path, &str)> = match order {
        Some(o) => o,
        None => map
            .iter()
            .map(|(n, _)| (containers_at.key(n), *n))
            .collect(),
    };
    let mut containers: Vec<ContainerSpec> = Vec::new();
    for (at, name) in &names {
        let Some((_, value)) = map.iter().find(|(n, _)| n == name) else {
            return Err(SpecError::invalid(
                at,
                format!(
                    "{name:?} is not one of the containers ({})",
                    map.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(", ")
                ),
            ));
        };
        if containers
            .iter()
            .any(|c| c.name == name.strip_prefix('/').unwrap_or(name))
        {
            return Err(SpecError::invalid(at, format!("{name:?} is listed twice")));
        }
        let at = containers_at.key(name);
        let Value::Object(obj) = value else {
            return Err(SpecError::invalid(
                &at,
                format!("must be an object, found {}", kind(value)),
            ));
        };
        containers.push(parse_container(
            name,
            Object::new(obj, at.clone()),
            &networks,
        )?);
    }
    if let Some((missing, _)) = map.iter().find(|(n, _)| !names.iter().any(|(_, o)| o == n)) {
        return Err(SpecError::invalid(
            &order_at,
            format!("does not list container {missing:?}; every container is started in the listed order"),
        ));
    }
    let start = if graph {
        containers = in_dependency_order(containers, &containers_at)?;
        StartOrder::Graph
    } else {
        check_dependencies(&containers, &containers_at)?;
        if let Some(c) = containers.iter().find(|c| !c.depends_on.is_empty()) {
            return Err(SpecError::invalid(
                &containers_at.key(&c.name).key("depends_on"),
                "cannot be combined with start_order, which already fixes the start; drop start_order to start along depends_on",
            ));
        }
        StartOrder::Sequence
    };
    for (i, (at, v)) in purge.iter().enumerate() {
        if purge[..i].iter().any(|(_, p)| p == v) {
            return Err(SpecError::invalid(at, format!("{v:?} is listed twice")));
        }
        if !containers
            .iter()
            .any(|c| c.volumes.iter().any(|m| m.name == *v))
        {
            return Err(SpecError::invalid(
                at,
                format!("volume {v:?} is mounted by no container"),
            ));
        }
        for c in &mut containers {
            for m in c.volumes.iter_mut().filter(|m| m.name == *v) {
                m.purge_on_deploy = true;
            }
        }
    }
    let inline = match inline_items {
        Some(o) => crate::inline::parse(o, &mut containers)?,
        None => Vec::new(),
    };
    Ok(Release {
        format: Format::Stack(format as u32),
        stack: stack.to_owned(),
        strategy,
        health_timeout,
        registry,
        replaces,
        start,
        containers,
        inline,
        networks,
    })
}

/// The stack-level `networks`: key → `{"internal": bool}` or
/// `{"external": true, "name": …}`.
fn parse_networks(stack: &str, o: Object<'_>) -> Result<Vec<NetworkSpec>> {
    let mut out = Vec::new();
    for (key, value) in o.entries() {
        let at = o.path(key);
        container::check_network_key(key).map_err(invalid(&at))?;
        let Value::Object(map) = value else {
            return Err(SpecError::invalid(
                &at,
                format!(
                    "must be an object ({{}} for a plain bridge), found {}",
                    kind(value)
                ),
            ));
        };
        let mut n = Object::new(map, at.clone());
        let internal = n.optional_bool("internal")?;
        let external = n.optional_bool("external")?;
        let name_at = n.path("name");
        let name = n.optional_str("name")?.map(str::to_owned);
        n.finish()?;
        let engine = match (external, name) {
            (true, Some(name)) => {
                container::check_object_name("network", &name).map_err(invalid(&name_at))?;
                name
            }
            (true, None) => key.to_owned(),
            (false, Some(_)) => {
                return Err(SpecError::invalid(
                    &name_at,
                    "is only for external networks: the module names the networks it creates after the stack",
                ))
            }
            (false, None) => NetworkSpec::engine_name(stack, key, internal),
        };
        if external && internal {
            return Err(SpecError::invalid(
                &at,
                "an external network is not created by the module, so internal cannot apply; drop one",
            ));
        }
        out.push(NetworkSpec {
            key: key.to_owned(),
            engine,
            internal,
            external,
        });
    }
    Ok(out)
}

fn invalid(at: &Path) -> impl Fn(String) -> SpecError + '_ {
    move |p| SpecError::invalid(at, p)
}

fn parse_container(
    name: &str,
    mut c: Object<'_>,
    networks: &[NetworkSpec],
) -> Result<ContainerSpec> {
    container::check_container_name(name).map_err(invalid(c.at()))?;
    let image_at = c.path("image");
    let image = ImageRef::parse(c.required_str("image")?).map_err(invalid(&image_at))?;
    let mut spec = ContainerSpec::new(name, image);
    spec.size = c.optional_u64("size")?;

    if let Some(cmd) = c.optional_strings("command")? {
        spec.command = Some(cmd.into_iter().map(|(_, s)| s.to_owned()).collect());
    }
    if let Some(ep) = c.optional_strings("entrypoint")? {
        spec.entrypoint = Some(ep.into_iter().map(|(_, s)| s.to_owned()).collect());
    }
    for (at, k, v) in c.optional_string_map("env")? {
        container::check_env_key(k).map_err(invalid(&at))?;
        spec.env.insert(k.to_owned(), v.to_owned());
    }
    for (at, b) in c.optional_strings("binds")?.unwrap_or_default() {
        if !b.starts_with('/') {
            return Err(SpecError::invalid(
                &at,
                format!("bind {b:?} must start with an absolute host path; named volumes go in \"volumes\""),
            ));
        }
        spec.binds
            .push(container::parse_bind(b).map_err(invalid(&at))?);
    }
    for (at, v) in c.optional_strings("volumes")?.unwrap_or_default() {
        spec.volumes.push(parse_volume(v).map_err(invalid(&at))?);
    }
    for (at, k, v) in c.optional_string_map("tmpfs")? {
        container::check_absolute("tmpfs mount point", k).map_err(invalid(&at))?;
        spec.tmpfs.insert(k.to_owned(), v.to_owned());
    }
    for (at, p) in c.optional_strings("ports")?.unwrap_or_default() {
        spec.ports
            .push(container::parse_port(p).map_err(invalid(&at))?);
    }
    let nm_at = c.path("network_mode");
    if let Some(m) = c.optional_str("network_mode")? {
        container::check_network_mode(m).map_err(invalid(&nm_at))?;
        spec.network_mode = Some(m.to_owned());
    }
    let restart_at = c.path("restart");
    if let Some(r) = c.optional_str("restart")? {
        spec.restart = container::parse_restart(r).map_err(invalid(&restart_at))?;
    }
    spec.privileged = c.optional_bool("privileged")?;
    for (at, cap) in c.optional_strings("cap_add")?.unwrap_or_default() {
        container::check_capability(cap).map_err(invalid(&at))?;
        spec.cap_add.push(cap.to_owned());
    }
    for (at, cap) in c.optional_strings("cap_drop")?.unwrap_or_default() {
        container::check_capability(cap).map_err(invalid(&at))?;
        spec.cap_drop.push(cap.to_owned());
    }
    for (at, d) in c.optional_strings("devices")?.unwrap_or_default() {
        spec.devices
            .push(container::parse_device(d).map_err(invalid(&at))?);
    }
    for (at, k, v) in c.optional_string_map("labels")? {
        container::check_label(k).map_err(invalid(&at))?;
        spec.labels.insert(k.to_owned(), v.to_owned());
    }
    if let Some(h) = c.optional_object("healthcheck")? {
        spec.healthcheck = Some(parse_healthcheck(h)?);
    }
    spec.user = c.optional_str("user")?.map(str::to_owned);
    let wd_at = c.path("workdir");
    if let Some(w) = c.optional_str("workdir")? {
        container::check_absolute("workdir", w).map_err(invalid(&wd_at))?;
        spec.workdir = Some(w.to_owned());
    }
    spec.hostname = c.optional_str("hostname")?.map(str::to_owned);
    spec.tty = c.optional_bool("tty")?;
    spec.open_stdin = c.optional_bool("stdin_open")?;
    spec.read_only = c.optional_bool("read_only")?;
    if let Some(mut l) = c.optional_object("log")? {
        let driver = l.required_str("driver")?.to_owned();
        let options = l
            .optional_string_map("options")?
            .into_iter()
            .map(|(_, k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        l.finish()?;
        spec.log = Some(LogConfig { driver, options });
    }
    let mem_at = c.path("memory_bytes");
    spec.memory_bytes = c.optional_u64("memory_bytes")?;
    if let Some(m) = spec.memory_bytes {
        container::check_memory(m).map_err(invalid(&mem_at))?;
    }
    let cpus_at = c.path("cpus");
    if let Some(cpus) = c.optional_f64("cpus")? {
        spec.nano_cpus = Some(container::parse_cpus(&cpus.to_string()).map_err(invalid(&cpus_at))?);
    }
    for (at, dependency, condition) in c.optional_string_map("depends_on")? {
        spec.depends_on.insert(
            dependency.to_owned(),
            Condition::parse(condition).map_err(invalid(&at))?,
        );
    }
    parse_compose_keys(&mut spec, &mut c)?;
    if let Some(joined) = c.optional_object("networks")? {
        if let Some(mode) = &spec.network_mode {
            return Err(SpecError::invalid(
                joined.at(),
                format!("cannot be combined with network_mode {mode:?}; keep one"),
            ));
        }
        for (key, value) in joined.entries() {
            let at = joined.path(key);
            let Some(network) = networks.iter().find(|n| n.key == key) else {
                return Err(SpecError::invalid(
                    &at,
                    format!(
                        "{key:?} is not one of the stack's networks ({}); declare it in docker-stack.networks",
                        networks.iter().map(|n| n.key.as_str()).collect::<Vec<_>>().join(", ")
                    ),
                ));
            };
            let Value::Array(items) = value else {
                return Err(SpecError::invalid(
                    &at,
                    format!(
                        "must be a list of aliases ([] for none), found {}",
                        kind(value)
                    ),
                ));
            };
            let mut aliases = Vec::new();
            for (i, item) in items.iter().enumerate() {
                let Value::String(alias) = item else {
                    return Err(SpecError::invalid(
                        &at.index(i),
                        format!("must be a string, found {}", kind(item)),
                    ));
                };
                container::check_alias(alias).map_err(invalid(&at.index(i)))?;
                if !aliases.contains(alias) {
                    aliases.push(alias.clone());
                }
            }
            spec.networks.insert(network.engine.clone(), aliases);
        }
    }
    for (at, target, name) in c.optional_string_map("secrets")? {
        container::check_bind_target("secret target", target).map_err(invalid(&at))?;
        container::check_device_file_name("secret", name).map_err(invalid(&at))?;
        spec.secrets.insert(target.to_owned(), name.to_owned());
    }
    for (at, target, name) in c.optional_string_map("configs")? {
        container::check_bind_target("config target", target).map_err(invalid(&at))?;
        container::check_device_file_name("config", name).map_err(invalid(&at))?;
        spec.configs.insert(target.to_owned(), name.to_owned());
    }
    check_mount_targets(&spec, c.at())?;
    c.finish()?;
    Ok(spec)
}

/// The process, kernel and name-resolution keys compose files use.
fn parse_compose_keys(spec: &mut ContainerSpec, c: &mut Object<'_>) -> Result<()> {
    let signal_at = c.path("stop_signal");
    if let Some(signal) = c.optional_str_or_number("stop_signal")? {
        container::check_stop_signal(&signal).map_err(invalid(&signal_at))?;
        spec.stop_signal = Some(signal);
    }
    let grace_at = c.path("stop_grace_period_seconds");
    if let Some(s) = c.optional_u64("stop_grace_period_seconds")? {
        spec.stop_grace_period =
            Some(container::check_stop_grace_period(s).map_err(invalid(&grace_at))?);
    }
    for (at, k, v) in c.optional_string_map("sysctls")? {
        container::check_sysctl(k, v).map_err(invalid(&at))?;
        if container::is_network_sysctl(k) && spec.host_network() {
            return Err(SpecError::invalid(
                &at,
                format!("sysctl {k:?} would change the host's network stack (network_mode host), which the engine refuses; drop it or use another network mode"),
            ));
        }
        spec.sysctls.insert(k.to_owned(), v.to_owned());
    }
    spec.init = c.optional_flag("init")?;
    for (at, h) in c.optional_strings("extra_hosts")?.unwrap_or_default() {
        spec.extra_hosts
            .push(container::parse_extra_host(h).map_err(invalid(&at))?);
    }
    for (at, d) in c.optional_strings("dns")?.unwrap_or_default() {
        container::check_dns_server(d).map_err(invalid(&at))?;
        spec.dns.push(d.to_owned());
    }
    if let Some(joined) = spec
        .network_mode
        .as_deref()
        .filter(|m| m.starts_with("container:"))
    {
        for (key, set) in [
            ("extra_hosts", !spec.extra_hosts.is_empty()),
            ("dns", !spec.dns.is_empty()),
        ] {
            if set {
                return Err(SpecError::invalid(
                    &c.path(key),
                    format!("cannot be combined with network_mode {joined:?}, which takes that container's name resolution (the engine refuses both); set it on that container"),
                ));
            }
        }
    }
    for (at, name, text) in c.optional_scalar_map("ulimits")? {
        let limit = container::parse_ulimit(name, &text).map_err(invalid(&at))?;
        spec.ulimits.insert(name.to_owned(), limit);
    }
    let shm_at = c.path("shm_size_bytes");
    if let Some(b) = c.optional_u64("shm_size_bytes")? {
        spec.shm_size_bytes = Some(container::check_shm_size(b).map_err(invalid(&shm_at))?);
    }
    Ok(())
}

/// Every dependency names another container of the release.
fn check_dependencies(containers: &[ContainerSpec], containers_at: &Path) -> Result<()> {
    for c in containers {
        for d in c.depends_on.keys() {
            let at = containers_at.key(&c.name).key("depends_on").key(d);
            if d == &c.name {
                return Err(SpecError::invalid(
                    &at,
                    "a container cannot depend on itself",
                ));
            }
            if !containers.iter().any(|o| &o.name == d) {
                return Err(SpecError::invalid(
                    &at,
                    format!(
                        "{d:?} is not one of the containers ({})",
                        containers
                            .iter()
                            .map(|o| o.name.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                ));
            }
        }
    }
    Ok(())
}

/// The containers sorted so that each comes after everything it depends on:
/// level by level, by name within a level. A cycle is refused, named.
fn in_dependency_order(
    containers: Vec<ContainerSpec>,
    containers_at: &Path,
) -> Result<Vec<ContainerSpec>> {
    check_dependencies(&containers, containers_at)?;
    let mut left = containers;
    left.sort_by(|a, b| a.name.cmp(&b.name));
    let mut placed: Vec<ContainerSpec> = Vec::with_capacity(left.len());
    while !left.is_empty() {
        let ready: Vec<usize> = (0..left.len())
            .filter(|&i| {
                left[i]
                    .depends_on
                    .keys()
                    .all(|d| placed.iter().any(|p| &p.name == d))
            })
            .collect();
        if ready.is_empty() {
            let cycle = find_cycle(&left);
            return Err(SpecError::invalid(
                &containers_at.key(&cycle[0]).key("depends_on"),
                format!(
                    "the dependencies form a cycle ({}), so nothing could start first; remove one of them",
                    cycle.join(" -> ")
                ),
            ));
        }
        let mut level: Vec<ContainerSpec> =
            ready.into_iter().rev().map(|i| left.remove(i)).collect();
        level.reverse();
        placed.extend(level);
    }
    Ok(placed)
}

/// A cycle among containers none of which can start: follow unplaced
/// dependencies until a name repeats.
fn find_cycle(left: &[ContainerSpec]) -> Vec<String> {
    let mut path: Vec<String> = vec![left[0].name.clone()];
    loop {
        let current = left
            .iter()
            .find(|c| Some(&c.name) == path.last())
            .expect("the path only holds unplaced containers");
        let next = current
            .depends_on
            .keys()
            .find(|d| left.iter().any(|c| &c.name == *d))
            .expect("an unplaced container waits for another unplaced one")
            .clone();
        if let Some(start) = path.iter().position(|p| *p == next) {
            let mut cycle = path.split_off(start);
            cycle.push(next);
            return cycle;
        }
        path.push(next);
    }
}

/// `NAME:/TARGET[:ro|rw]`, a named volume (binds go in "binds").
fn parse_volume(text: &str) -> std::result::Result<VolumeMount, String> {
    let (name, target, options) = match text.split(':').collect::<Vec<_>>().as_slice() {
        [n, t] => (*n, *t, ""),
        [n, t, o] => (*n, *t, *o),
        _ => return Err(format!("volume {text:?} is not NAME:/TARGET[:ro|rw]")),
    };
    if name.starts_with('/') {
        return Err(format!(
            "volume {text:?} names a host path; host paths go in \"binds\""
        ));
    }
    container::check_object_name("volume", name)?;
    container::check_absolute("volume target", target)?;
    let read_only = match options {
        "" if !text.ends_with(':') => false,
        "rw" => false,
        "ro" => true,
        o => {
            return Err(format!(
                "volume {text:?}: option {o:?} is not supported for named volumes (ro or rw)"
            ))
        }
    };
    Ok(VolumeMount {
        name: name.to_owned(),
        target: target.to_owned(),
        read_only,
        purge_on_deploy: false,
    })
}

fn parse_healthcheck(mut h: Object<'_>) -> Result<Healthcheck> {
    let test_at = h.path("test");
    let test: Vec<String> = h
        .optional_strings("test")?
        .ok_or_else(|| {
            SpecError::invalid(
                &test_at,
                "is required: [\"CMD\", \"prog\", \"arg\"…], [\"CMD-SHELL\", \"command\"] or [\"NONE\"]",
            )
        })?
        .into_iter()
        .map(|(_, s)| s.to_owned())
        .collect();
    let ok = match test.first().map(String::as_str) {
        Some("NONE") => test.len() == 1,
        Some("CMD") => test.len() >= 2,
        Some("CMD-SHELL") => test.len() == 2,
        _ => false,
    };
    if !ok {
        return Err(SpecError::invalid(
            &test_at,
            format!("{test:?} is not [\"CMD\", \"prog\", \"arg\"…], [\"CMD-SHELL\", \"command\"] or [\"NONE\"]"),
        ));
    }
    let secs = |v: Option<u64>| v.map(Duration::from_secs);
    let interval = secs(h.optional_u64("interval_seconds")?);
    let timeout = secs(h.optional_u64("timeout_seconds")?);
    let start_period = secs(h.optional_u64("start_period_seconds")?);
    let retries_at = h.path("retries");
    let retries = match h.optional_u64("retries")? {
        Some(r) => {
            Some(u32::try_from(r).map_err(|_| SpecError::invalid(&retries_at, "is too large"))?)
        }
        None => None,
    };
    for (key, d) in [("interval_seconds", interval), ("timeout_seconds", timeout)] {
        if d == Some(Duration::ZERO) {
            return Err(SpecError::invalid(
                &h.path(key),
                "must be at least 1 second",
            ));
        }
    }
    h.finish()?;
    Ok(Healthcheck {
        test,
        interval,
        timeout,
        start_period,
        retries,
    })
}

/// Two mounts on one target path would make the engine refuse the create at
/// install time; refuse the artifact now instead.
pub(crate) fn check_mount_targets(spec: &ContainerSpec, at: &Path) -> Result<()> {
    let mut seen = BTreeSet::new();
    let targets = spec
        .binds
        .iter()
        .map(|b| b.target.as_str())
        .chain(spec.volumes.iter().map(|v| v.target.as_str()))
        .chain(spec.tmpfs.keys().map(String::as_str))
        .chain(spec.secrets.keys().map(String::as_str))
        .chain(spec.configs.keys().map(String::as_str));
    for t in targets {
        if !seen.insert(t.trim_end_matches('/')) {
            return Err(SpecError::invalid(
                at,
                format!("two mounts target {t:?}; each container path can be mounted once"),
            ));
        }
    }
    Ok(())
}
