//! The device's policy: what an artifact's containers may ask of the host
//! (`"policy"` in the device configuration). Every rule defaults to what the
//! old module allowed, everything, so today's artifacts keep working until a
//! device tightens it:
//!
//! ```json
//! "policy": {
//!   "allow_privileged": false,
//!   "allowed_capabilities": ["NET_ADMIN", "SYS_TIME"],
//!   "allowed_devices": ["/dev/ttyUSB0", "/dev/serial"],
//!   "allowed_bind_prefixes": ["/data/apps", "/var/log/apps"],
//!   "allow_engine_socket": false,
//!   "allow_host_network": false
//! }
//! ```
//!
//! [`check`] is a pure function over the parsed release and the policy;
//! Download and ArtifactInstall call it before anything changes and refuse
//! with one line naming the artifact's key and the rule.
//!
//! Paths are compared after lexical normalisation (`.`, `..`, repeated and
//! trailing slashes); a path that climbs above `/` cannot be normalised and
//! is refused. A device or bind source that is a symlink on the device is
//! checked at its target too (the caller resolves them: the engine follows
//! them when it creates the container). An allowed path allows what lies
//! below it: `/dev/serial` allows `/dev/serial/by-id/…`.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use docker_spec::{ContainerSpec, Format, Path, Release};
use serde_json::Value;

/// The rules; `None` lists allow anything.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    pub allow_privileged: bool,
    /// Capability names without `CAP_`, upper case; `ALL` only if listed.
    pub allowed_capabilities: Option<BTreeSet<String>>,
    /// Host device paths (and what lies below them), normalised.
    pub allowed_devices: Option<Vec<String>>,
    /// Host paths binds may come from (and what lies below them), normalised.
    pub allowed_bind_prefixes: Option<Vec<String>>,
    /// Whether a bind may expose the engine's socket (binding it, or a
    /// directory that holds it such as `/` or `/run`).
    pub allow_engine_socket: bool,
    /// Whether a container may share the host's network namespace
    /// (`network_mode: host`, or joining a container that does).
    pub allow_host_network: bool,
}

impl Default for Policy {
    fn default() -> Policy {
        Policy {
            allow_privileged: true,
            allowed_capabilities: None,
            allowed_devices: None,
            allowed_bind_prefixes: None,
            allow_engine_socket: true,
            allow_host_network: true,
        }
    }
}

pub const KEYS: &[&str] = &[
    "allow_privileged",
    "allowed_capabilities",
    "allowed_devices",
    "allowed_bind_prefixes",
    "allow_engine_socket",
    "allow_host_network",
];

/// Reads the `"policy"` object. Errors name the key and what it must be,
/// never the value found.
pub fn parse(value: &Value) -> Result<Policy, String> {
    let obj = value
        .as_object()
        .ok_or("policy: must be an object of rules, e.g. {\"allow_privileged\": false}")?;
    let mut p = Policy::default();
    for (key, v) in obj {
        let at = format!("policy.{}", crate::archive::printable(key.as_bytes(), 40));
        let flag = |v: &Value| v.as_bool().ok_or(format!("{at}: must be true or false"));
        let list = |v: &Value, what: &str| -> Result<Vec<String>, String> {
            let items = v
                .as_array()
                .ok_or(format!("{at}: must be a list of {what}"))?;
            items
                .iter()
                .enumerate()
                .map(|(i, item)| {
                    item.as_str()
                        .map(str::to_owned)
                        .ok_or(format!("{at}[{i}]: must be a string, one of {what}"))
                })
                .collect()
        };
        let paths = |v: &Value| -> Result<Vec<String>, String> {
            list(v, "absolute paths")?
                .iter()
                .enumerate()
                .map(|(i, s)| {
                    normalise(s).ok_or(format!(
                        "{at}[{i}]: must be an absolute path that stays below / once . and .. are applied"
                    ))
                })
                .collect()
        };
        match key.as_str() {
            "allow_privileged" => p.allow_privileged = flag(v)?,
            "allow_engine_socket" => p.allow_engine_socket = flag(v)?,
            "allow_host_network" => p.allow_host_network = flag(v)?,
            "allowed_capabilities" => {
                let caps = list(v, "capability names such as NET_ADMIN")?;
                let mut set = BTreeSet::new();
                for (i, c) in caps.iter().enumerate() {
                    docker_spec::container::check_capability(c).map_err(|_| {
                        format!("{at}[{i}]: must be a capability name such as NET_ADMIN or ALL")
                    })?;
                    set.insert(capability(c));
                }
                p.allowed_capabilities = Some(set);
            }
            "allowed_devices" => p.allowed_devices = Some(paths(v)?),
            "allowed_bind_prefixes" => p.allowed_bind_prefixes = Some(paths(v)?),
            _ => {
                return Err(format!(
                    "{at}: unknown rule; the rules are {}",
                    KEYS.join(", ")
                ))
            }
        }
    }
    Ok(p)
}

/// Docker's spelling of a capability: upper case, without `CAP_`.
fn capability(name: &str) -> String {
    let upper = name.to_ascii_uppercase();
    upper.strip_prefix("CAP_").unwrap_or(&upper).to_owned()
}

/// `/a/./b//c/../d/` → `/a/b/d`. `None` for a relative path, a NUL byte, or
/// `..` above `/`.
pub fn normalise(path: &str) -> Option<String> {
    if !path.starts_with('/') || path.contains('\0') {
        return None;
    }
    let mut parts: Vec<&str> = Vec::new();
    for c in path.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                parts.pop()?;
            }
            c => parts.push(c),
        }
    }
    Some(format!("/{}", parts.join("/")))
}

/// Whether normalised `path` is `prefix` or lies below it.
fn under(path: &str, prefix: &str) -> bool {
    prefix == "/"
        || path == prefix
        || (path.starts_with(prefix) && path.as_bytes().get(prefix.len()) == Some(&b'/'))
}

/// The engine's socket as binds could reach it: `/var/run` is a symlink to
/// `/run` on the systems the module runs on.
fn socket_spellings(socket: &str) -> Vec<String> {
    let Some(s) = normalise(socket) else {
        return Vec::new();
    };
    let twin = if let Some(rest) = s.strip_prefix("/var/run/") {
        Some(format!("/run/{rest}"))
    } else {
        s.strip_prefix("/run/")
            .map(|rest| format!("/var/run/{rest}"))
    };
    std::iter::once(s).chain(twin).collect()
}

/// What the caller found on the device.
#[derive(Debug, Clone, Default)]
pub struct Host {
    /// Host paths (device and bind sources, as written) → their target when
    /// they are or pass through a symlink on the device.
    pub resolved: BTreeMap<String, String>,
    /// Names of existing containers that use the host's network.
    pub host_network_containers: BTreeSet<String>,
}

/// Why a release is refused: the artifact's key, what it asks, the rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub at: String,
    pub asks: String,
    pub rule: String,
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "artifact meta-data at {} asks for {}, which this device's policy refuses: {}",
            self.at, self.asks, self.rule
        )
    }
}

/// Where a container's field is in the artifact's meta-data.
fn at(
    release: &Release,
    c: &ContainerSpec,
    field: &str,
    legacy_flag: &str,
    i: Option<usize>,
) -> String {
    match release.format {
        Format::Legacy => format!("run_args ({legacy_flag})"),
        Format::Stack(_) => {
            let p = Path::root()
                .key(docker_spec::stack::KEY)
                .key("containers")
                .key(&c.name)
                .key(field);
            match i {
                Some(i) => p.index(i).to_string(),
                None => p.to_string(),
            }
        }
    }
}

/// The release against the policy; the first container and key that breaks
/// a rule, in the release's order.
pub fn check(release: &Release, policy: &Policy, socket: &str, host: &Host) -> Result<(), Refusal> {
    let refuse = |at: String, asks: String, rule: &str| Refusal {
        at,
        asks,
        rule: rule.to_owned(),
    };
    let shown = |p: &str| crate::archive::printable(p.as_bytes(), 80);
    // Every form a host path takes on the device: as written (normalised)
    // and, if it is or passes through a symlink, its target.
    let forms = |raw: &str| -> Option<Vec<String>> {
        let mut v = vec![normalise(raw)?];
        if let Some(t) = host.resolved.get(raw) {
            v.push(normalise(t)?);
        }
        Some(v)
    };
    let sockets = socket_spellings(socket);
    for c in &release.containers {
        if c.privileged && !policy.allow_privileged {
            return Err(refuse(
                at(release, c, "privileged", "--privileged", None),
                "privileged mode".into(),
                "policy.allow_privileged is false",
            ));
        }
        if let Some(allowed) = &policy.allowed_capabilities {
            for (i, cap) in c.cap_add.iter().enumerate() {
                if !allowed.contains(&capability(cap)) {
                    return Err(refuse(
                        at(release, c, "cap_add", "--cap-add", Some(i)),
                        format!("capability {}", shown(&capability(cap))),
                        "policy.allowed_capabilities does not list it",
                    ));
                }
            }
        }
        for (i, d) in c.devices.iter().enumerate() {
            let where_ = || at(release, c, "devices", "--device", Some(i));
            let Some(paths) = forms(&d.host) else {
                return Err(refuse(
                    where_(),
                    format!("device {}", shown(&d.host)),
                    "its host path cannot be normalised",
                ));
            };
            if let Some(allowed) = &policy.allowed_devices {
                if let Some(p) = paths.iter().find(|p| !allowed.iter().any(|a| under(p, a))) {
                    return Err(refuse(
                        where_(),
                        format!("host device {}", shown(p)),
                        "policy.allowed_devices does not list it",
                    ));
                }
            }
        }
        for (i, b) in c.binds.iter().enumerate() {
            let where_ = || at(release, c, "binds", "--volume", Some(i));
            let Some(paths) = forms(&b.source) else {
                return Err(refuse(
                    where_(),
                    format!("a bind of {}", shown(&b.source)),
                    "its host path cannot be normalised",
                ));
            };
            if !policy.allow_engine_socket {
                if let Some(p) = paths.iter().find(|p| sockets.iter().any(|s| under(s, p))) {
                    return Err(refuse(
                        where_(),
                        format!("a bind of {} that exposes the engine's socket", shown(p)),
                        "policy.allow_engine_socket is false",
                    ));
                }
            }
            if let Some(allowed) = &policy.allowed_bind_prefixes {
                if let Some(p) = paths.iter().find(|p| !allowed.iter().any(|a| under(p, a))) {
                    return Err(refuse(
                        where_(),
                        format!("a bind of host path {}", shown(p)),
                        "it is not below any of policy.allowed_bind_prefixes",
                    ));
                }
            }
        }
        if !policy.allow_host_network {
            let mode = c.network_mode.as_deref().unwrap_or("");
            let joined = mode
                .strip_prefix("container:")
                .is_some_and(|n| host.host_network_containers.contains(n));
            if mode == "host" || joined {
                return Err(refuse(
                    at(release, c, "network_mode", "--network", None),
                    if joined {
                        "the network of a container that uses the host's network".into()
                    } else {
                        "the host's network".into()
                    },
                    "policy.allow_host_network is false",
                ));
            }
        }
    }
    Ok(())
}

/// Download's and ArtifactInstall's check, with what it needs from the
/// device: one line naming the artifact's key and the rule.
pub fn enforce(
    release: &Release,
    config: &crate::config::Config,
    containers: &[crate::engine::Container],
) -> Result<(), crate::executor::DeployError> {
    let host = Host {
        resolved: resolve_host_paths(release),
        host_network_containers: containers
            .iter()
            .filter(|c| c.network_mode == "host")
            .map(|c| c.name.clone())
            .collect(),
    };
    check(release, &config.policy, &config.socket, &host).map_err(|r| {
        crate::executor::DeployError::Refused(format!(
            "{r}; change the artifact, or the policy in {}",
            config.path.display()
        ))
    })
}

/// What [`Host::resolved`] needs: every device and bind source of the
/// release that is, or passes through, a symlink on this machine, with its
/// target (for a path that does not exist yet, the target of its longest
/// existing ancestor with the rest appended).
pub fn resolve_host_paths(release: &Release) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let sources = release.containers.iter().flat_map(|c| {
        c.devices
            .iter()
            .map(|d| d.host.as_str())
            .chain(c.binds.iter().map(|b| b.source.as_str()))
    });
    for raw in sources {
        let Some(clean) = normalise(raw) else {
            continue;
        };
        let mut base = std::path::PathBuf::from(&clean);
        let mut rest: Vec<std::ffi::OsString> = Vec::new();
        let real = loop {
            if let Ok(r) = std::fs::canonicalize(&base) {
                break r;
            }
            match (base.file_name().map(|n| n.to_owned()), base.parent()) {
                (Some(name), Some(parent)) => {
                    rest.push(name);
                    base = parent.to_owned();
                }
                _ => break base,
            }
        };
        let mut real = real;
        real.extend(rest.iter().rev());
        if let Some(r) = real.to_str() {
            if r != clean {
                out.insert(raw.to_owned(), r.to_owned());
            }
        }
    }
    out
}

#[cfg(test)]
#[path = "policy_tests.rs"]
mod tests;
