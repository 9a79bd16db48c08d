//! A merged, interpolated compose model into a docker-stack document. Pure:
//! images are named here and pinned afterwards like any docker-stack file's.
//! Every key is either translated or refused with the path it sits at and
//! what to change; nothing is dropped silently except what compose itself
//! gives no meaning on a device (`version`, `x-` extensions, `expose`).

use std::collections::BTreeMap;

use docker_spec::container::{
    check_memory, parse_bind, parse_cpus, parse_device, parse_go_duration, parse_port,
    parse_restart,
};
use serde_json::{json, Map, Value};

use super::merge::scalar_text;

/// What the command line adds to the files.
#[derive(Debug, Default, Clone)]
pub struct Options {
    /// The project (and stack) name.
    pub project: String,
    /// `--image SERVICE=REF`: the image a service deploys, instead of its
    /// `image` or the name compose tags its `build` with.
    pub images: BTreeMap<String, String>,
    /// `--platform`: the device's, e.g. `linux/arm64`.
    pub platform: Option<String>,
}

/// The translation: the docker-stack meta-data and, for services whose image
/// is one compose builds, the container → service whose `build` names it.
#[derive(Debug)]
pub struct Translated {
    pub meta: Value,
    pub built: BTreeMap<String, String>,
}

const TOP_KEYS: &[&str] = &[
    "name", "version", "services", "networks", "volumes", "secrets", "configs",
];

const SERVICE_KEYS: &[&str] = &[
    "image",
    "build",
    "command",
    "entrypoint",
    "environment",
    "ports",
    "expose",
    "volumes",
    "networks",
    "network_mode",
    "depends_on",
    "healthcheck",
    "restart",
    "container_name",
    "hostname",
    "user",
    "working_dir",
    "labels",
    "cap_add",
    "cap_drop",
    "devices",
    "privileged",
    "read_only",
    "tty",
    "stdin_open",
    "tmpfs",
    "stop_signal",
    "stop_grace_period",
    "sysctls",
    "logging",
    "mem_limit",
    "cpus",
    "deploy",
    "init",
    "extra_hosts",
    "dns",
    "ulimits",
    "shm_size",
    "secrets",
    "configs",
    "platform",
];

type R<T> = Result<T, String>;

fn at(path: &str, msg: impl std::fmt::Display) -> String {
    format!("{path}: {msg}")
}

/// The whole model into `{"docker-stack": …}`. `env` answers `environment`
/// entries given without a value, as compose takes them from its shell.
pub fn translate(
    model: &Value,
    options: &Options,
    env: &BTreeMap<String, String>,
) -> R<Translated> {
    let top = model
        .as_object()
        .ok_or_else(|| "the compose file is not a mapping".to_owned())?;
    for key in top.keys() {
        if !key.starts_with("x-") && !TOP_KEYS.contains(&key.as_str()) {
            return Err(at(
                key,
                "is not a compose key docker-artifact-gen translates (top level: name, version, \
                 services, networks, volumes, secrets, configs, x-…); remove it",
            ));
        }
    }
    let device_files = [
        ("secrets", declared_files("secrets", top.get("secrets"))?),
        ("configs", declared_files("configs", top.get("configs"))?),
    ];
    let declared = declared_networks(top.get("networks"))?;
    let volumes = named_volumes(top.get("volumes"), &options.project)?;
    let services = top
        .get("services")
        .and_then(Value::as_object)
        .filter(|s| !s.is_empty())
        .ok_or_else(|| "services: the compose files define no services".to_owned())?;
    let mut names = BTreeMap::new();
    for (service, body) in services {
        let path = format!("services.{service}");
        let body = body
            .as_object()
            .ok_or_else(|| at(&path, "is not a mapping"))?;
        let name = match body.get("container_name") {
            Some(v) => v
                .as_str()
                .ok_or_else(|| at(&format!("{path}.container_name"), "is not a string"))?
                .to_owned(),
            None => format!("{}-{service}-1", options.project),
        };
        names.insert(service.as_str(), name);
    }
    for service in options.images.keys() {
        if !services.contains_key(service) {
            return Err(format!(
                "--image {service}=…: the compose files have no service {service:?}"
            ));
        }
    }
    let mut containers = Map::new();
    let mut built = BTreeMap::new();
    let mut used = BTreeMap::new();
    for (service, body) in services {
        let t = Service {
            path: format!("services.{service}"),
            name: service,
            body: body.as_object().expect("checked above"),
            options,
            names: &names,
            volumes: &volumes,
            networks: &declared,
            device_files: &device_files,
            env,
        };
        let (container, from_build) = t.translate()?;
        for network in container
            .get("networks")
            .and_then(Value::as_object)
            .into_iter()
            .flat_map(|m| m.keys())
        {
            used.insert(network.clone(), declared[network].clone());
        }
        let name = names[service.as_str()].clone();
        if from_build {
            built.insert(name.clone(), service.clone());
        }
        containers.insert(name, Value::Object(container));
    }
    let mut stack = json!({
        "format": 1,
        "stack": options.project,
        "containers": containers,
    });
    if !used.is_empty() {
        stack["networks"] = Value::Object(used.into_iter().collect());
    }
    Ok(Translated {
        meta: json!({ "docker-stack": stack }),
        built,
    })
}

/// A boolean as compose reads one: YAML's, or text an interpolation left
/// (`internal: "${INTERNAL}"`), spelt as Go's ParseBool takes it.
fn as_bool(v: &Value) -> Option<bool> {
    match v {
        Value::Bool(b) => Some(*b),
        Value::String(s) => match s.as_str() {
            "1" | "t" | "T" | "true" | "TRUE" | "True" => Some(true),
            "0" | "f" | "F" | "false" | "FALSE" | "False" => Some(false),
            _ => None,
        },
        _ => None,
    }
}

/// A whole number, or its text after an interpolation.
fn as_u64(v: &Value) -> Option<u64> {
    match v {
        Value::String(s) => s.parse().ok(),
        v => v.as_u64(),
    }
}

fn as_i64(v: &Value) -> Option<i64> {
    match v {
        Value::String(s) => s.parse().ok(),
        v => v.as_i64(),
    }
}

fn is_empty(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Object(m) => m.is_empty(),
        _ => false,
    }
}

/// Top-level networks as docker-stack network definitions, with compose's
/// implicit `default` (a plain bridge) unless the files define it.
fn declared_networks(value: Option<&Value>) -> R<BTreeMap<String, Value>> {
    let mut out = BTreeMap::new();
    out.insert("default".to_owned(), json!({}));
    let Some(value) = value.filter(|v| !v.is_null()) else {
        return Ok(out);
    };
    let map = value
        .as_object()
        .ok_or_else(|| at("networks", "is not a mapping"))?;
    for (name, body) in map {
        let path = format!("networks.{name}");
        let body = match body {
            Value::Null => Map::new(),
            Value::Object(m) => m.clone(),
            _ => return Err(at(&path, "is not a mapping")),
        };
        let mut def = Map::new();
        for (key, v) in &body {
            let p = format!("{path}.{key}");
            match key.as_str() {
                "driver" if v.as_str() == Some("bridge") => {}
                "internal" | "external" => {
                    let b = as_bool(v).ok_or_else(|| at(&p, "is not true or false"))?;
                    if b {
                        def.insert(key.clone(), Value::Bool(true));
                    }
                }
                "name" => {
                    let n = v.as_str().ok_or_else(|| at(&p, "is not a string"))?;
                    def.insert("name".into(), Value::String(n.to_owned()));
                }
                // Only says whether swarm services may attach; no meaning here.
                "attachable" => {}
                "labels" if is_empty(v) || v.as_array().is_some_and(Vec::is_empty) => {}
                k if k.starts_with("x-") => {}
                _ => {
                    return Err(at(
                        &p,
                        "is not supported: the device creates each stack network as a bridge \
                         with the engine's addresses (driver: bridge, internal, external and name \
                         are translated); remove it, or create the network on the device and mark \
                         it external: true",
                    ))
                }
            }
        }
        if def.contains_key("name") && !def.contains_key("external") {
            return Err(at(
                &format!("{path}.name"),
                "is only kept for external networks: the device names the networks it creates \
                 after the stack; remove it",
            ));
        }
        if def.contains_key("external") && def.contains_key("internal") {
            return Err(at(
                &path,
                "is external, so the device does not create it: remove internal",
            ));
        }
        out.insert(name.clone(), Value::Object(def));
    }
    Ok(out)
}

/// Top-level `secrets` or `configs`: compose name → the file's name on the
/// device (`name:`, else the compose name). `file:` is not read: the file
/// is provisioned on the device and never travels in the artifact.
fn declared_files(kind: &str, value: Option<&Value>) -> R<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    let Some(value) = value.filter(|v| !v.is_null()) else {
        return Ok(out);
    };
    let map = value
        .as_object()
        .ok_or_else(|| at(kind, "is not a mapping"))?;
    for (name, body) in map {
        let path = format!("{kind}.{name}");
        let body = body
            .as_object()
            .ok_or_else(|| at(&path, "is not a mapping"))?;
        let mut device = name.clone();
        for (key, v) in body {
            let p = format!("{path}.{key}");
            match key.as_str() {
                // Where compose would read it on a desktop; on the device it is provisioned.
                "file" | "external" => {}
                "name" => {
                    device = v
                        .as_str()
                        .ok_or_else(|| at(&p, "is not a string"))?
                        .to_owned()
                }
                "environment" | "content" => return Err(at(
                    &p,
                    "would put the value into the artifact; provision the file on the device and \
                         use file: (which is not read) or external: true",
                )),
                k if k.starts_with("x-") => {}
                _ => return Err(at(&p, "is not supported (file, external, name)")),
            }
        }
        docker_spec::container::check_device_file_name(&kind[..kind.len() - 1], &device)
            .map_err(|e| at(&path, e))?;
        out.insert(name.clone(), device);
    }
    Ok(out)
}

/// Top-level volumes: compose name → engine name (`<project>_<name>`, or
/// `name:`, or the name itself when external).
fn named_volumes(value: Option<&Value>, project: &str) -> R<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    let Some(value) = value.filter(|v| !v.is_null()) else {
        return Ok(out);
    };
    let map = value
        .as_object()
        .ok_or_else(|| at("volumes", "is not a mapping"))?;
    for (name, body) in map {
        let path = format!("volumes.{name}");
        let body = match body {
            Value::Null => Map::new(),
            Value::Object(m) => m.clone(),
            _ => return Err(at(&path, "is not a mapping")),
        };
        let mut engine = None;
        let mut external = false;
        for (key, v) in &body {
            let p = format!("{path}.{key}");
            match key.as_str() {
                "name" => {
                    engine = Some(
                        v.as_str()
                            .ok_or_else(|| at(&p, "is not a string"))?
                            .to_owned(),
                    )
                }
                "external" => {
                    external = as_bool(v).ok_or_else(|| at(&p, "is not true or false"))?
                }
                "driver" if v.as_str() == Some("local") => {}
                "labels" if is_empty(v) || v.as_array().is_some_and(Vec::is_empty) => {}
                k if k.starts_with("x-") => {}
                _ => {
                    return Err(at(
                        &p,
                        "is not supported: the device creates named volumes with the local \
                         driver and no options; remove it (or create the volume on the device and \
                         mark it external: true)",
                    ))
                }
            }
        }
        let engine = engine.unwrap_or_else(|| {
            if external {
                name.clone()
            } else {
                format!("{project}_{name}")
            }
        });
        docker_spec::container::check_object_name("volume", &engine).map_err(|e| at(&path, e))?;
        out.insert(name.clone(), engine);
    }
    Ok(out)
}

struct Service<'a> {
    path: String,
    name: &'a str,
    body: &'a Map<String, Value>,
    options: &'a Options,
    names: &'a BTreeMap<&'a str, String>,
    volumes: &'a BTreeMap<String, String>,
    networks: &'a BTreeMap<String, Value>,
    /// ("secrets" | "configs", compose name → name on the device).
    device_files: &'a [(&'static str, BTreeMap<String, String>); 2],
    env: &'a BTreeMap<String, String>,
}

impl Service<'_> {
    fn p(&self, key: &str) -> String {
        format!("{}.{key}", self.path)
    }

    fn string(&self, key: &str, v: &Value) -> R<String> {
        scalar_text(v).ok_or_else(|| at(&self.p(key), "is not a string"))
    }

    fn bool(&self, key: &str, v: &Value) -> R<bool> {
        as_bool(v).ok_or_else(|| at(&self.p(key), "is not true or false"))
    }

    fn strings(&self, key: &str, v: &Value) -> R<Vec<String>> {
        match v {
            Value::Array(items) => items
                .iter()
                .enumerate()
                .map(|(i, item)| {
                    scalar_text(item)
                        .ok_or_else(|| at(&format!("{}[{i}]", self.p(key)), "is not a string"))
                })
                .collect(),
            _ => Err(at(&self.p(key), "is not a list")),
        }
    }

    /// A string or list of words: a string is split as compose splits it.
    fn words(&self, key: &str, v: &Value) -> R<Vec<String>> {
        match v {
            Value::String(s) => docker_spec::words::split(s).map_err(|e| at(&self.p(key), e)),
            _ => self.strings(key, v),
        }
    }

    fn map_of_strings(&self, key: &str, v: &Value) -> R<Map<String, Value>> {
        let map = v
            .as_object()
            .ok_or_else(|| at(&self.p(key), "is not a mapping"))?;
        let mut out = Map::new();
        for (k, v) in map {
            let text = match v {
                Value::Null => String::new(),
                v => scalar_text(v)
                    .ok_or_else(|| at(&format!("{}.{k}", self.p(key)), "is not a string"))?,
            };
            out.insert(k.clone(), Value::String(text));
        }
        Ok(out)
    }

    /// A compose duration as whole seconds, which the docker-stack format keeps.
    fn seconds(&self, key: &str, v: &Value) -> R<u64> {
        let text = v
            .as_str()
            .ok_or_else(|| at(&self.p(key), "is not a duration such as 30s or 1m30s"))?;
        let d = parse_go_duration(text).map_err(|e| at(&self.p(key), e))?;
        if d.subsec_nanos() != 0 {
            return Err(at(
                &self.p(key),
                format!(
                    "{text} is not a whole number of seconds, which the device keeps; write {}s",
                    d.as_secs() + 1
                ),
            ));
        }
        Ok(d.as_secs())
    }

    fn translate(&self) -> R<(Map<String, Value>, bool)> {
        let mut c = Map::new();
        let mut from_build = false;
        for key in self.body.keys() {
            if !key.starts_with("x-") && !SERVICE_KEYS.contains(&key.as_str()) {
                return Err(at(&self.p(key), unknown_service_key(key)));
            }
        }
        // The image: --image, else `image`, else the name compose tags a build with.
        let image = match (self.options.images.get(self.name), self.body.get("image")) {
            (Some(reference), _) => reference.clone(),
            (None, Some(v)) => {
                from_build = self.body.contains_key("build");
                self.string("image", v)?
            }
            (None, None) if self.body.contains_key("build") => {
                from_build = true;
                format!("{}-{}", self.options.project, self.name)
            }
            (None, None) => {
                return Err(at(
                    &self.path,
                    "has neither image nor build; give it an image",
                ));
            }
        };
        c.insert("image".into(), Value::String(image));
        let mut ports = Vec::new();
        let mut binds = Vec::new();
        let mut volumes = Vec::new();
        let mut tmpfs = Map::new();
        let mut memory = None;
        let mut cpus = None;
        for (key, v) in self.body {
            if v.is_null() || key.starts_with("x-") {
                continue;
            }
            let p = self.p(key);
            match key.as_str() {
                "image" | "build" | "container_name" | "expose" => {}
                "command" => {
                    c.insert("command".into(), json!(self.words(key, v)?));
                }
                "entrypoint" => {
                    c.insert("entrypoint".into(), json!(self.words(key, v)?));
                }
                "environment" => {
                    let map = v
                        .as_object()
                        .ok_or_else(|| at(&p, "is not a list or mapping"))?;
                    let mut env = Map::new();
                    for (k, value) in map {
                        let value = match value {
                            // `- KEY` alone: from the environment compose runs in, if set there.
                            Value::Null => match self.env.get(k) {
                                Some(v) => v.clone(),
                                None => continue,
                            },
                            v => scalar_text(v)
                                .ok_or_else(|| at(&format!("{p}.{k}"), "is not a string"))?,
                        };
                        env.insert(k.clone(), Value::String(value));
                    }
                    c.insert("env".into(), Value::Object(env));
                }
                "ports" => {
                    let items = v.as_array().ok_or_else(|| at(&p, "is not a list"))?;
                    for (i, item) in items.iter().enumerate() {
                        ports.extend(port(item).map_err(|e| at(&format!("{p}[{i}]"), e))?);
                    }
                }
                "volumes" => {
                    let items = v.as_array().ok_or_else(|| at(&p, "is not a list"))?;
                    for (i, item) in items.iter().enumerate() {
                        let ip = format!("{p}[{i}]");
                        match self.mount(item).map_err(|e| at(&ip, e))? {
                            Mount::Bind(b) => binds.push(b),
                            Mount::Volume(v) => volumes.push(v),
                            Mount::Tmpfs(target, options) => {
                                tmpfs.insert(target, Value::String(options));
                            }
                        }
                    }
                }
                "tmpfs" => {
                    for (i, item) in self.strings(key, v)?.into_iter().enumerate() {
                        let (target, options) = item.split_once(':').unwrap_or((&item, ""));
                        if !target.starts_with('/') {
                            return Err(at(
                                &format!("{p}[{i}]"),
                                format!("{target:?} is not an absolute path"),
                            ));
                        }
                        tmpfs.insert(target.to_owned(), Value::String(options.to_owned()));
                    }
                }
                "networks" => {
                    if self.body.get("network_mode").is_some_and(|m| !m.is_null()) {
                        return Err(at(&p, "and network_mode cannot both be set; keep one"));
                    }
                    c.insert("networks".into(), Value::Object(self.networks(v)?));
                }
                "network_mode" => {
                    let mode = self.string(key, v)?;
                    if let Some(other) = mode.strip_prefix("service:") {
                        return Err(at(
                            &p,
                            format!(
                                "{mode:?} shares the network of service {other:?} of the same \
                                 stack, which the device cannot order safely across updates; use \
                                 network_mode: host, or give both the same network_mode"
                            ),
                        ));
                    }
                    c.insert("network_mode".into(), Value::String(mode));
                }
                "depends_on" => {
                    c.insert("depends_on".into(), Value::Object(self.depends_on(v)?));
                }
                "healthcheck" => {
                    c.insert("healthcheck".into(), self.healthcheck(v)?);
                }
                "restart" => {
                    // YAML 1.1 readers take a bare `no` for false; compose means "no".
                    let text = match v {
                        Value::Bool(false) => "no".to_owned(),
                        v => self.string(key, v)?,
                    };
                    parse_restart(&text).map_err(|e| at(&p, e))?;
                    c.insert("restart".into(), Value::String(text));
                }
                "hostname" | "user" | "stop_signal" => {
                    c.insert(key.clone(), Value::String(self.string(key, v)?));
                }
                "working_dir" => {
                    c.insert("workdir".into(), Value::String(self.string(key, v)?));
                }
                "labels" | "sysctls" => {
                    c.insert(key.clone(), Value::Object(self.map_of_strings(key, v)?));
                }
                "cap_add" | "cap_drop" | "dns" => {
                    c.insert(key.clone(), json!(self.strings(key, v)?));
                }
                "devices" => {
                    let items = v.as_array().ok_or_else(|| at(&p, "is not a list"))?;
                    let mut devices = Vec::new();
                    for (i, item) in items.iter().enumerate() {
                        let ip = format!("{p}[{i}]");
                        let text = match item {
                            Value::Object(o) => {
                                let get = |k: &str| o.get(k).and_then(Value::as_str);
                                let source =
                                    get("source").ok_or_else(|| at(&ip, "has no source"))?;
                                let target = get("target").unwrap_or(source);
                                format!("{source}:{target}:{}", get("permissions").unwrap_or("rwm"))
                            }
                            v => scalar_text(v).ok_or_else(|| at(&ip, "is not a string"))?,
                        };
                        parse_device(&text).map_err(|e| at(&ip, e))?;
                        devices.push(Value::String(text));
                    }
                    c.insert("devices".into(), Value::Array(devices));
                }
                "privileged" | "read_only" | "tty" | "stdin_open" | "init" => {
                    c.insert(key.clone(), Value::Bool(self.bool(key, v)?));
                }
                "stop_grace_period" => {
                    c.insert(
                        "stop_grace_period_seconds".into(),
                        json!(self.seconds(key, v)?),
                    );
                }
                "logging" => {
                    let o = v.as_object().ok_or_else(|| at(&p, "is not a mapping"))?;
                    let mut log = Map::new();
                    for (k, v) in o {
                        match k.as_str() {
                            "driver" => {
                                log.insert(
                                    "driver".into(),
                                    Value::String(self.string("logging.driver", v)?),
                                );
                            }
                            "options" if !v.is_null() => {
                                log.insert(
                                    "options".into(),
                                    Value::Object(self.map_of_strings("logging.options", v)?),
                                );
                            }
                            "options" => {}
                            _ => {
                                return Err(at(
                                    &format!("{p}.{k}"),
                                    "is not a logging key (driver, options)",
                                ))
                            }
                        }
                    }
                    log.entry("driver").or_insert_with(|| json!("json-file"));
                    c.insert("log".into(), Value::Object(log));
                }
                "mem_limit" => set_once(&mut memory, size(v, true).map_err(|e| at(&p, e))?, p)?,
                "cpus" => set_once(&mut cpus, cpu_count(v).map_err(|e| at(&p, e))?, p)?,
                "deploy" => self.deploy(v, &mut memory, &mut cpus)?,
                "extra_hosts" => {
                    let map = self.map_of_strings(key, v)?;
                    let hosts: Vec<String> = map
                        .iter()
                        .map(|(h, ip)| format!("{h}:{}", ip.as_str().unwrap_or_default()))
                        .collect();
                    c.insert("extra_hosts".into(), json!(hosts));
                }
                "ulimits" => {
                    c.insert("ulimits".into(), Value::Object(self.ulimits(v)?));
                }
                "shm_size" => {
                    c.insert(
                        "shm_size_bytes".into(),
                        json!(size(v, false).map_err(|e| at(&p, e))?),
                    );
                }
                "secrets" | "configs" => {
                    c.insert(key.clone(), Value::Object(self.device_files(key, v)?));
                }
                "platform" => self.platform(v)?,
                _ => unreachable!("{key} is in SERVICE_KEYS"),
            }
        }
        // Neither networks nor network_mode: compose's default network.
        if !c.contains_key("network_mode") && !c.contains_key("networks") {
            c.insert("networks".into(), json!({"default": [self.name]}));
        }
        if !ports.is_empty() {
            c.insert("ports".into(), json!(ports));
        }
        if !binds.is_empty() {
            c.insert("binds".into(), json!(binds));
        }
        if !volumes.is_empty() {
            c.insert("volumes".into(), json!(volumes));
        }
        if !tmpfs.is_empty() {
            c.insert("tmpfs".into(), Value::Object(tmpfs));
        }
        if let Some((bytes, _)) = memory {
            c.insert("memory_bytes".into(), json!(bytes));
        }
        if let Some((n, _)) = cpus {
            c.insert("cpus".into(), json!(n));
        }
        Ok((c, from_build))
    }

    /// The service's networks, each with its aliases: the service name
    /// first, as compose gives it, then its own.
    fn networks(&self, v: &Value) -> R<Map<String, Value>> {
        let p = self.p("networks");
        let map = v
            .as_object()
            .ok_or_else(|| at(&p, "is not a list or mapping"))?;
        let mut out = Map::new();
        for (network, body) in map {
            let np = format!("{p}.{network}");
            if !self.networks.contains_key(network) {
                return Err(at(&np, format!(
                    "is not declared under the top-level networks; add `networks: {{{network}: {{}}}}`"
                )));
            }
            let mut aliases = vec![Value::String(self.name.to_owned())];
            if let Some(body) = body.as_object() {
                for (k, v) in body {
                    match k.as_str() {
                        "aliases" => {
                            for alias in self.strings(&format!("networks.{network}.aliases"), v)? {
                                if !aliases.iter().any(|a| a.as_str() == Some(alias.as_str())) {
                                    aliases.push(Value::String(alias));
                                }
                            }
                        }
                        _ => return Err(at(
                            &format!("{np}.{k}"),
                            "is not supported (aliases); the engine assigns addresses, remove it",
                        )),
                    }
                }
            } else if !body.is_null() {
                return Err(at(&np, "is not a mapping"));
            }
            out.insert(network.clone(), Value::Array(aliases));
        }
        Ok(out)
    }

    /// `secrets` / `configs` of the service: path in the container → the
    /// file's name on the device.
    fn device_files(&self, key: &str, v: &Value) -> R<Map<String, Value>> {
        let p = self.p(key);
        let declared = &self
            .device_files
            .iter()
            .find(|(k, _)| *k == key)
            .expect("both kinds are declared")
            .1;
        let items = v.as_array().ok_or_else(|| at(&p, "is not a list"))?;
        let mut out = Map::new();
        for (i, item) in items.iter().enumerate() {
            let ip = format!("{p}[{i}]");
            let (source, target) = match item {
                Value::String(s) => (s.clone(), None),
                Value::Object(o) => {
                    let mut source = None;
                    let mut target = None;
                    for (k, v) in o {
                        let text = || {
                            scalar_text(v)
                                .ok_or_else(|| at(&format!("{ip}.{k}"), "is not a string"))
                        };
                        match k.as_str() {
                            "source" => source = Some(text()?),
                            "target" => target = Some(text()?),
                            "uid" | "gid" | "mode" => {
                                return Err(at(
                                    &format!("{ip}.{k}"),
                                    "is not supported: the device's file is mounted read-only as it is; set its owner and mode on the device",
                                ))
                            }
                            _ => return Err(at(&format!("{ip}.{k}"), "is not a key here (source, target)")),
                        }
                    }
                    (source.ok_or_else(|| at(&ip, "has no source"))?, target)
                }
                _ => return Err(at(&ip, "is not a name or a mapping")),
            };
            let device = declared.get(&source).ok_or_else(|| {
                at(&ip, format!("{source:?} is not declared under the top-level {key}; add `{key}: {{{source}: {{file: …}}}}`"))
            })?;
            let target = match (key, target) {
                ("secrets", None) => format!("/run/secrets/{source}"),
                ("secrets", Some(t)) if !t.starts_with('/') => format!("/run/secrets/{t}"),
                ("configs", None) => format!("/{source}"),
                (_, Some(t)) if t.starts_with('/') => t,
                (_, Some(t)) => {
                    return Err(at(&ip, format!("target {t:?} is not an absolute path")))
                }
                _ => unreachable!("two kinds"),
            };
            out.insert(target, Value::String(device.clone()));
        }
        Ok(out)
    }

    fn depends_on(&self, v: &Value) -> R<Map<String, Value>> {
        let p = self.p("depends_on");
        let map = v
            .as_object()
            .ok_or_else(|| at(&p, "is not a list or mapping"))?;
        let mut out = Map::new();
        for (service, body) in map {
            let dp = format!("{p}.{service}");
            let mut condition = "service_started".to_owned();
            let mut required = true;
            if let Some(body) = body.as_object() {
                for (k, v) in body {
                    match k.as_str() {
                        "condition" => {
                            condition = v
                                .as_str()
                                .ok_or_else(|| at(&format!("{dp}.{k}"), "is not a string"))?
                                .to_owned();
                            docker_spec::Condition::parse(&condition)
                                .map_err(|e| at(&format!("{dp}.{k}"), e))?;
                        }
                        "required" => {
                            required = as_bool(v)
                                .ok_or_else(|| at(&format!("{dp}.{k}"), "is not true or false"))?
                        }
                        // Compose restarts the dependant when this service is
                        // updated; the device switches the whole stack anyway.
                        "restart" => {}
                        _ => {
                            return Err(at(
                                &format!("{dp}.{k}"),
                                "is not a depends_on key (condition, required, restart)",
                            ))
                        }
                    }
                }
            } else if !body.is_null() {
                return Err(at(&dp, "is not a mapping"));
            }
            match self.names.get(service.as_str()) {
                Some(name) => {
                    out.insert(name.clone(), Value::String(condition));
                }
                None if !required => {}
                None => {
                    return Err(at(
                        &dp,
                        format!(
                            "names no service of the compose files (services: {:?})",
                            self.names.keys().collect::<Vec<_>>()
                        ),
                    ))
                }
            }
        }
        Ok(out)
    }

    fn healthcheck(&self, v: &Value) -> R<Value> {
        let p = self.p("healthcheck");
        let map = v.as_object().ok_or_else(|| at(&p, "is not a mapping"))?;
        let mut out = Map::new();
        if map.get("disable").and_then(as_bool) == Some(true) {
            return Ok(json!({"test": ["NONE"]}));
        }
        for (k, v) in map {
            let kp = format!("healthcheck.{k}");
            match k.as_str() {
                "test" => {
                    let test = match v {
                        Value::String(s) => vec!["CMD-SHELL".to_owned(), s.clone()],
                        v => self.strings(&kp, v)?,
                    };
                    out.insert("test".into(), json!(test));
                }
                "interval" | "timeout" | "start_period" => {
                    let seconds = self.seconds(&kp, v)?;
                    out.insert(format!("{k}_seconds"), json!(seconds));
                }
                "retries" => {
                    let n = as_u64(v).ok_or_else(|| at(&self.p(&kp), "is not a whole number"))?;
                    out.insert("retries".into(), json!(n));
                }
                "disable" => {}
                "start_interval" => return Err(at(&self.p(&kp), "is not kept by the device's engine (Docker 20.10); remove it")),
                _ => return Err(at(&self.p(&kp), "is not a healthcheck key (test, interval, timeout, start_period, retries, disable)")),
            }
        }
        if !out.contains_key("test") {
            return Err(at(&p, "has no test; give one, or disable: true"));
        }
        Ok(Value::Object(out))
    }

    fn mount(&self, item: &Value) -> R<Mount> {
        match item {
            Value::String(s) => {
                let parts: Vec<&str> = s.split(':').collect();
                let (source, target, mode) = match parts.as_slice() {
                    [target] => {
                        return Err(format!(
                            "{target:?} is an anonymous volume, which a new container would not \
                             keep across updates; name it (e.g. data:{target}) and declare it \
                             under the top-level volumes"
                        ))
                    }
                    [s, t] => (*s, *t, ""),
                    [s, t, m] => (*s, *t, *m),
                    _ => return Err(format!("{s:?} is not SOURCE:TARGET[:MODE]")),
                };
                self.mount_of(source, target, mode, "volume-or-bind")
            }
            Value::Object(o) => {
                let get = |k: &str| o.get(k).and_then(Value::as_str);
                let kind = get("type").ok_or("has no type (volume, bind or tmpfs)")?;
                let target = get("target").ok_or("has no target")?;
                let read_only = o.get("read_only").and_then(as_bool).unwrap_or(false);
                let mut mode = Vec::new();
                if read_only {
                    mode.push("ro".to_owned());
                }
                for (k, v) in o {
                    match (kind, k.as_str()) {
                        (_, "type" | "target" | "read_only" | "source" | "consistency") => {}
                        ("bind", "bind") => {
                            for (bk, bv) in v.as_object().ok_or("bind is not a mapping")? {
                                match bk.as_str() {
                                    "propagation" => mode.push(bv.as_str().ok_or("bind.propagation is not a string")?.to_owned()),
                                    "create_host_path" => {}
                                    "selinux" => mode.push(bv.as_str().ok_or("bind.selinux is not z or Z")?.to_owned()),
                                    _ => return Err(format!("bind.{bk} is not supported (propagation, selinux, create_host_path)")),
                                }
                            }
                        }
                        ("volume", "volume") => {
                            if v.as_object().is_some_and(|m| !m.is_empty()) {
                                return Err("volume options (nocopy, subpath) are not supported; remove them".into());
                            }
                        }
                        ("tmpfs", "tmpfs") => {
                            let t = v.as_object().ok_or("tmpfs is not a mapping")?;
                            let mut options = Vec::new();
                            for (tk, tv) in t {
                                match tk.as_str() {
                                    "size" => options.push(format!("size={}", size(tv, false)?)),
                                    "mode" => options.push(format!(
                                        "mode={:o}",
                                        as_u64(tv).ok_or("tmpfs.mode is not a number")?
                                    )),
                                    _ => {
                                        return Err(format!(
                                            "tmpfs.{tk} is not supported (size, mode)"
                                        ))
                                    }
                                }
                            }
                            return Ok(Mount::Tmpfs(target.to_owned(), options.join(",")));
                        }
                        _ => return Err(format!("{k} is not a key of a {kind} mount")),
                    }
                }
                match kind {
                    "tmpfs" => Ok(Mount::Tmpfs(target.to_owned(), String::new())),
                    "bind" | "volume" => {
                        let source = get("source").ok_or("has no source")?;
                        self.mount_of(source, target, &mode.join(","), kind)
                    }
                    other => Err(format!(
                        "type {other:?} is not supported (volume, bind or tmpfs)"
                    )),
                }
            }
            _ => Err("is not a string or mapping".into()),
        }
    }

    fn mount_of(&self, source: &str, target: &str, mode: &str, kind: &str) -> R<Mount> {
        if source.starts_with('.') || source.starts_with('~') {
            return Err(format!(
                "{source:?} is a path on this build machine, which the device does not have; \
                 use an absolute path on the device (e.g. /data/{}/{}) or a named volume",
                self.options.project,
                source.trim_start_matches(['.', '~', '/'])
            ));
        }
        let mode_part = if mode.is_empty() {
            String::new()
        } else {
            format!(":{mode}")
        };
        if source.starts_with('/') {
            if kind == "volume" {
                return Err(format!("{source:?} is a path; use type: bind for it"));
            }
            let text = format!("{source}:{target}{mode_part}");
            parse_bind(&text)?;
            return Ok(Mount::Bind(text));
        }
        if kind == "bind" {
            return Err(format!("{source:?} is not an absolute path on the device"));
        }
        let engine = self.volumes.get(source).ok_or_else(|| {
            format!("volume {source:?} is not declared under the top-level volumes; add `volumes: {{{source}: {{}}}}`")
        })?;
        if !matches!(mode, "" | "ro" | "rw") {
            return Err(format!("mode {mode:?} of a named volume is not ro or rw"));
        }
        Ok(Mount::Volume(format!("{engine}:{target}{mode_part}")))
    }

    fn deploy(
        &self,
        v: &Value,
        memory: &mut Option<(u64, String)>,
        cpus: &mut Option<(f64, String)>,
    ) -> R<()> {
        let p = self.p("deploy");
        let map = v.as_object().ok_or_else(|| at(&p, "is not a mapping"))?;
        for (k, v) in map {
            let kp = format!("{p}.{k}");
            match k.as_str() {
                "replicas" if as_u64(v) == Some(1) => {}
                "resources" => {
                    for (rk, rv) in v.as_object().ok_or_else(|| at(&kp, "is not a mapping"))? {
                        let rp = format!("{kp}.{rk}");
                        if rk != "limits" {
                            return Err(at(&rp, "is not supported (only deploy.resources.limits: cpus, memory); remove it"));
                        }
                        for (lk, lv) in rv.as_object().ok_or_else(|| at(&rp, "is not a mapping"))? {
                            let lp = format!("{rp}.{lk}");
                            match lk.as_str() {
                                "memory" => set_once(memory, size(lv, true).map_err(|e| at(&lp, e))?, lp)?,
                                "cpus" => set_once(cpus, cpu_count(lv).map_err(|e| at(&lp, e))?, lp)?,
                                _ => return Err(at(&lp, "is not supported (limits: cpus, memory); remove it")),
                            }
                        }
                    }
                }
                _ => return Err(at(&kp, "is not supported: deploy is for swarm; only deploy.resources.limits (cpus, memory) and replicas: 1 are translated")),
            }
        }
        Ok(())
    }

    fn ulimits(&self, v: &Value) -> R<Map<String, Value>> {
        let p = self.p("ulimits");
        let map = v.as_object().ok_or_else(|| at(&p, "is not a mapping"))?;
        let mut out = Map::new();
        for (name, limit) in map {
            let lp = format!("{p}.{name}");
            let text = match limit {
                Value::Number(n) => n.to_string(),
                Value::Object(o) => {
                    let get = |k: &str| {
                        o.get(k)
                            .and_then(as_i64)
                            .ok_or_else(|| at(&lp, format!("has no whole number {k}")))
                    };
                    format!("{}:{}", get("soft")?, get("hard")?)
                }
                _ => return Err(at(&lp, "is not a number or {soft, hard}")),
            };
            out.insert(name.clone(), Value::String(text));
        }
        Ok(out)
    }

    fn platform(&self, v: &Value) -> R<()> {
        let p = self.p("platform");
        let wanted = self.string("platform", v)?;
        match &self.options.platform {
            None => Err(at(&p, format!("is {wanted}; pass the device's --platform (e.g. linux/arm64) so it can be checked"))),
            Some(device) if same_platform(device, &wanted) => Ok(()),
            Some(device) => Err(at(&p, format!("is {wanted}, but the device is {device} (--platform); build the image for {device}"))),
        }
    }
}

enum Mount {
    Bind(String),
    Volume(String),
    Tmpfs(String, String),
}

fn set_once<T: PartialEq + Copy>(slot: &mut Option<(T, String)>, value: T, path: String) -> R<()> {
    match slot {
        Some((old, old_path)) if *old != value => {
            Err(at(&path, format!("disagrees with {old_path}; keep one")))
        }
        _ => {
            *slot = Some((value, path));
            Ok(())
        }
    }
}

/// `linux/arm64` against `linux/arm64/v8`: an omitted variant matches any.
pub fn same_platform(a: &str, b: &str) -> bool {
    let norm = |s: &str| {
        let mut parts: Vec<String> = s
            .to_ascii_lowercase()
            .split('/')
            .map(str::to_owned)
            .collect();
        if parts.get(1).map(String::as_str) == Some("x86_64") {
            parts[1] = "amd64".into();
        }
        if parts.get(1).map(String::as_str) == Some("aarch64") {
            parts[1] = "arm64".into();
        }
        parts
    };
    let (a, b) = (norm(a), norm(b));
    a.len() >= 2
        && b.len() >= 2
        && a[..2] == b[..2]
        && (a.len() == 2 || b.len() == 2 || a[2] == b[2])
}

fn unknown_service_key(key: &str) -> String {
    let why = match key {
        "profiles" => {
            "profiles choose services at `up` time; pass only the files of the services to deploy"
        }
        "pull_policy" => "the device never pulls by policy: images are pinned by digest",
        "links" | "external_links" => "use network_mode or depends_on",
        "volumes_from" => "mount the same named volume in both services",
        "scale" => "a stack runs one container per service",
        _ => "remove it, or move it to an override file you do not pass",
    };
    format!("is not a compose key docker-artifact-gen translates: {why}")
}

/// `ports` entries (short or long syntax) as docker-stack port strings, a
/// range expanded into one mapping per port.
fn port(item: &Value) -> R<Vec<String>> {
    let (host_ip, published, target, protocol) = match item {
        Value::Object(o) => {
            for k in o.keys() {
                if !matches!(
                    k.as_str(),
                    "target"
                        | "published"
                        | "host_ip"
                        | "protocol"
                        | "mode"
                        | "name"
                        | "app_protocol"
                ) {
                    return Err(format!("{k} is not a port key (target, published, host_ip, protocol, mode, name, app_protocol)"));
                }
            }
            let text = |k: &str| o.get(k).and_then(scalar_text);
            (
                text("host_ip"),
                text("published"),
                text("target").ok_or("has no target")?,
                text("protocol").unwrap_or_else(|| "tcp".into()),
            )
        }
        v => {
            let text = scalar_text(v).ok_or("is not a string or mapping")?;
            let (rest, protocol) = match text.rsplit_once('/') {
                Some((r, p)) => (r.to_owned(), p.to_owned()),
                None => (text.clone(), "tcp".to_owned()),
            };
            // An IPv6 host address is bracketed: [::1]:8080:80.
            let (host_ip, rest) = match rest.strip_prefix('[') {
                Some(r) => {
                    let (ip, after) = r.split_once("]:").ok_or_else(|| {
                        format!("{text:?}: the [ of an IPv6 address is not closed")
                    })?;
                    (Some(ip.to_owned()), after.to_owned())
                }
                None => (None, rest),
            };
            let parts: Vec<&str> = rest.split(':').collect();
            match (host_ip, parts.as_slice()) {
                (None, [t]) => (None, None, t.to_string(), protocol),
                (ip, [p, t]) => (ip, Some(p.to_string()), t.to_string(), protocol),
                (None, [ip, p, t]) => (
                    Some(ip.to_string()),
                    Some(p.to_string()),
                    t.to_string(),
                    protocol,
                ),
                _ => {
                    return Err(format!(
                        "{text:?} is not [[HOST_IP:]HOST_PORT:]CONTAINER_PORT[/PROTOCOL]"
                    ))
                }
            }
        }
    };
    let targets = range(&target)?;
    let published = match published.as_deref().filter(|p| !p.is_empty()) {
        Some(p) => Some(range(p)?),
        None => None,
    };
    if let Some(p) = &published {
        if p.len() != targets.len() && p.len() != 1 {
            return Err(format!(
                "published {} ports for {} container ports; give ranges of the same length",
                p.len(),
                targets.len()
            ));
        }
        if p.len() == 1 && targets.len() > 1 {
            return Err("one host port for a range of container ports; give a host range of the same length".into());
        }
    }
    let ip = match host_ip.as_deref() {
        Some(ip) if ip.contains(':') => format!("[{ip}]:"),
        Some(ip) if !ip.is_empty() => format!("{ip}:"),
        _ => String::new(),
    };
    let mut out = Vec::new();
    for (i, t) in targets.iter().enumerate() {
        let text = match &published {
            Some(p) => format!("{ip}{}:{t}/{protocol}", p[i]),
            None if ip.is_empty() => format!("{t}/{protocol}"),
            None => return Err("a host IP without a host port; give the host port".into()),
        };
        parse_port(&text)?;
        out.push(text);
    }
    Ok(out)
}

fn range(text: &str) -> R<Vec<u16>> {
    let parse = |s: &str| {
        s.parse::<u16>()
            .map_err(|_| format!("{text:?} is not a port or range of ports"))
    };
    match text.split_once('-') {
        Some((a, b)) => {
            let (a, b) = (parse(a)?, parse(b)?);
            if a > b || b - a > 1000 {
                return Err(format!(
                    "{text:?} is not a range of at most 1000 ports, low to high"
                ));
            }
            Ok((a..=b).collect())
        }
        None => Ok(vec![parse(text)?]),
    }
}

/// A compose size (`512m`, `1gb`, `1GiB`, bytes) in bytes; `memory`
/// applies the engine's minimum memory limit.
fn size(v: &Value, memory: bool) -> R<u64> {
    let bytes = match v {
        Value::Number(n) => n
            .as_u64()
            .ok_or_else(|| format!("{n} is not a whole number of bytes"))?,
        Value::String(s) => {
            let lower = s.trim().to_ascii_lowercase();
            let number_end = lower
                .find(|c: char| !c.is_ascii_digit())
                .unwrap_or(lower.len());
            let (number, unit) = lower.split_at(number_end);
            let factor: u64 = match unit.trim() {
                "" | "b" => 1,
                "k" | "kb" | "kib" => 1 << 10,
                "m" | "mb" | "mib" => 1 << 20,
                "g" | "gb" | "gib" => 1 << 30,
                _ => return Err(format!("{s:?} is not a size such as 512m, 1g or 1048576")),
            };
            number
                .parse::<u64>()
                .ok()
                .and_then(|n| n.checked_mul(factor))
                .ok_or_else(|| format!("{s:?} is not a size such as 512m, 1g or 1048576"))?
        }
        _ => return Err("is not a size such as 512m".into()),
    };
    if bytes == 0 {
        return Err("a size of 0".into());
    }
    if memory {
        check_memory(bytes)?;
    }
    Ok(bytes)
}

fn cpu_count(v: &Value) -> R<f64> {
    let text = scalar_text(v).ok_or("is not a number of CPUs")?;
    parse_cpus(&text)?;
    Ok(text.parse().expect("parse_cpus accepted it"))
}
