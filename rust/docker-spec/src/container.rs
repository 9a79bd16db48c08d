//! One container of a release, normalised from either format, and the parsers
//! of the value syntaxes both formats share (ports, binds, devices, restart
//! policies, durations, sizes). Each parser returns what is wrong and what
//! would be right; the caller adds where.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Serialize;

use crate::image::ImageRef;

/// Labels in this namespace are the module's own bookkeeping.
pub const RESERVED_LABEL_PREFIX: &str = "io.mender.composable.";

/// Longest container name accepted: the module appends short suffixes while
/// switching, and the result must stay a reasonable engine name.
pub const MAX_NAME_LEN: usize = 64;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ContainerSpec {
    /// The engine name of the running container.
    pub name: String,
    pub image: ImageRef,
    /// Unpacked size hint in bytes for the disk check before pulling.
    pub size: Option<u64>,
    /// Replaces the image's CMD when set.
    pub command: Option<Vec<String>>,
    /// Replaces the image's ENTRYPOINT when set; empty resets it.
    pub entrypoint: Option<Vec<String>>,
    pub env: BTreeMap<String, String>,
    pub binds: Vec<Bind>,
    pub volumes: Vec<VolumeMount>,
    /// Mount point → options (`size=64m,mode=1777`, or empty).
    pub tmpfs: BTreeMap<String, String>,
    pub ports: Vec<PortMapping>,
    pub network_mode: Option<String>,
    pub restart: RestartPolicy,
    pub privileged: bool,
    pub cap_add: Vec<String>,
    pub cap_drop: Vec<String>,
    pub devices: Vec<DeviceMapping>,
    pub labels: BTreeMap<String, String>,
    pub healthcheck: Option<Healthcheck>,
    pub user: Option<String>,
    pub workdir: Option<String>,
    pub hostname: Option<String>,
    pub tty: bool,
    pub open_stdin: bool,
    pub read_only: bool,
    pub log: Option<LogConfig>,
    pub memory_bytes: Option<u64>,
    pub nano_cpus: Option<u64>,
    /// Containers of the same release this one waits for before it starts,
    /// and what it waits for. Left out of the serialised form when empty, so
    /// the fingerprints of containers deployed before it existed still match.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub depends_on: BTreeMap<String, Condition>,
    // The keys below came later; each is left out of the serialised form when
    // unset, for the same reason as `depends_on`.
    /// The signal that asks it to stop (`SIGTERM`, `SIGRTMIN+3`, `9`), as written.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stop_signal: Option<String>,
    /// How long a stop waits after the stop signal before it kills.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stop_grace_period: Option<Duration>,
    /// Namespaced kernel parameters: `net.core.somaxconn` → `1024`.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub sysctls: BTreeMap<String, String>,
    /// Run the engine's init as PID 1; `None`: the engine's default.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub init: Option<bool>,
    /// `HOST:IP` lines for its `/etc/hosts`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub extra_hosts: Vec<String>,
    /// DNS server addresses.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub dns: Vec<String>,
    /// Resource limits by the engine's name (`nofile`, `nproc`, …).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub ulimits: BTreeMap<String, Ulimit>,
    /// The size of `/dev/shm` in bytes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shm_size_bytes: Option<u64>,
    /// The stack networks it joins, by engine name, each with the names
    /// other containers find it by there. The engine name carries the
    /// network's definition, so a changed network makes a changed container.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub networks: BTreeMap<String, Vec<String>>,
    /// Files provisioned on the device, never carried in an artifact, mounted
    /// read-only: path in the container → secret name.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub secrets: BTreeMap<String, String>,
    /// Likewise for configuration files: path in the container → config name.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub configs: BTreeMap<String, String>,
}

/// A resource limit; -1 is unlimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Ulimit {
    pub soft: i64,
    pub hard: i64,
}

/// What a container waits for from one it depends on (compose's
/// `depends_on` conditions).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub enum Condition {
    /// Started.
    #[serde(rename = "service_started")]
    Started,
    /// Running and healthy by its healthcheck.
    #[serde(rename = "service_healthy")]
    Healthy,
    /// Exited with code 0: a one-shot job such as a migration.
    #[serde(rename = "service_completed_successfully")]
    CompletedSuccessfully,
}

impl Condition {
    pub const ALL: [Condition; 3] = [
        Condition::Started,
        Condition::Healthy,
        Condition::CompletedSuccessfully,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Condition::Started => "service_started",
            Condition::Healthy => "service_healthy",
            Condition::CompletedSuccessfully => "service_completed_successfully",
        }
    }

    pub fn parse(text: &str) -> Result<Condition, String> {
        Condition::ALL
            .into_iter()
            .find(|c| c.as_str() == text)
            .ok_or_else(|| {
                format!(
                    "{text:?} is not a dependency condition; use service_started, service_healthy or service_completed_successfully"
                )
            })
    }
}

impl ContainerSpec {
    /// A container with only the required fields and the engine's defaults.
    pub fn new(name: impl Into<String>, image: ImageRef) -> ContainerSpec {
        ContainerSpec {
            name: name.into(),
            image,
            size: None,
            command: None,
            entrypoint: None,
            env: BTreeMap::new(),
            binds: Vec::new(),
            volumes: Vec::new(),
            tmpfs: BTreeMap::new(),
            ports: Vec::new(),
            network_mode: None,
            restart: RestartPolicy::No,
            privileged: false,
            cap_add: Vec::new(),
            cap_drop: Vec::new(),
            devices: Vec::new(),
            labels: BTreeMap::new(),
            healthcheck: None,
            user: None,
            workdir: None,
            hostname: None,
            tty: false,
            open_stdin: false,
            read_only: false,
            log: None,
            memory_bytes: None,
            nano_cpus: None,
            depends_on: BTreeMap::new(),
            stop_signal: None,
            stop_grace_period: None,
            sysctls: BTreeMap::new(),
            init: None,
            extra_hosts: Vec::new(),
            dns: Vec::new(),
            ulimits: BTreeMap::new(),
            shm_size_bytes: None,
            networks: BTreeMap::new(),
            secrets: BTreeMap::new(),
            configs: BTreeMap::new(),
        }
    }

    /// True when it shares the host's network stack (`network_mode: host`).
    pub fn host_network(&self) -> bool {
        self.network_mode.as_deref() == Some("host")
    }

    /// Host ports it publishes, as (port, protocol).
    pub fn published_ports(&self) -> impl Iterator<Item = (u16, &str)> + '_ {
        self.ports
            .iter()
            .filter_map(|p| p.host_port.map(|h| (h, p.protocol.as_str())))
    }
}

/// A host path mounted into the container.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Bind {
    pub source: String,
    pub target: String,
    /// Comma-separated engine options (`ro`, `rw`, `z`, `rshared`, …), possibly empty.
    pub options: String,
}

impl Bind {
    pub fn read_only(&self) -> bool {
        self.options.split(',').any(|o| o == "ro")
    }

    /// The engine's `Binds` entry.
    pub fn to_engine(&self) -> String {
        if self.options.is_empty() {
            format!("{}:{}", self.source, self.target)
        } else {
            format!("{}:{}:{}", self.source, self.target, self.options)
        }
    }
}

/// A named volume.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VolumeMount {
    pub name: String,
    pub target: String,
    pub read_only: bool,
    /// Each deployment starts with an empty volume; the previous one is kept
    /// for rollback until the release is committed.
    pub purge_on_deploy: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PortMapping {
    pub host_ip: Option<String>,
    /// `None`: exposed only, nothing published on the host.
    pub host_port: Option<u16>,
    pub container_port: u16,
    /// `tcp`, `udp` or `sctp`.
    pub protocol: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DeviceMapping {
    pub host: String,
    pub container: String,
    pub permissions: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum RestartPolicy {
    No,
    Always,
    UnlessStopped,
    OnFailure(Option<u32>),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Healthcheck {
    /// The engine's form: `["CMD", …]`, `["CMD-SHELL", "…"]` or `["NONE"]`.
    pub test: Vec<String>,
    pub interval: Option<Duration>,
    pub timeout: Option<Duration>,
    pub start_period: Option<Duration>,
    pub retries: Option<u32>,
}

impl Healthcheck {
    /// `["NONE"]` switches off a healthcheck the image defines.
    pub fn disabled(&self) -> bool {
        self.test.first().map(String::as_str) == Some("NONE")
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LogConfig {
    pub driver: String,
    pub options: BTreeMap<String, String>,
}

/// The engine's name rule (letters, digits, `_ . -`, starting with a letter
/// or digit) within `min..=max` bytes.
pub(crate) fn is_engine_name(name: &str, min: usize, max: usize) -> bool {
    (min..=max).contains(&name.len())
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

/// A stack network's name in the docker-stack: letters, digits, `_` and
/// `-` (a `.` in the engine name marks its kind).
pub fn check_network_key(name: &str) -> Result<(), String> {
    if (1..=64).contains(&name.len())
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-'))
    {
        Ok(())
    } else {
        Err(format!(
            "network name {name:?} is not valid: 1 to 64 characters, letters, digits, _ -, starting with a letter or digit"
        ))
    }
}

/// The name of a secret or config provisioned on the device: one file name.
pub fn check_device_file_name(kind: &str, name: &str) -> Result<(), String> {
    if is_engine_name(name, 1, 128) {
        Ok(())
    } else {
        Err(format!(
            "{kind} name {name:?} is not valid: 1 to 128 characters, letters, digits, _ . -, starting with a letter or digit"
        ))
    }
}

/// A name other containers find this one by on a network.
pub fn check_alias(alias: &str) -> Result<(), String> {
    if is_engine_name(alias, 1, 63) {
        Ok(())
    } else {
        Err(format!(
            "alias {alias:?} is not valid: 1 to 63 characters, letters, digits, _ . -, starting with a letter or digit"
        ))
    }
}

/// The engine's container-name rule, with our length limit.
pub fn check_container_name(name: &str) -> Result<(), String> {
    if is_engine_name(name, 2, MAX_NAME_LEN) {
        Ok(())
    } else {
        Err(format!(
            "container name {name:?} is not valid: 2 to {MAX_NAME_LEN} characters, letters, digits, _ . -, starting with a letter or digit"
        ))
    }
}

/// Volume and network names follow the same rule as container names, minus our length limit.
pub fn check_object_name(kind: &str, name: &str) -> Result<(), String> {
    if is_engine_name(name, 2, 255) {
        Ok(())
    } else {
        Err(format!(
            "{kind} name {name:?} is not valid: at least 2 characters, letters, digits, _ . -, starting with a letter or digit"
        ))
    }
}

pub fn check_absolute(what: &str, path: &str) -> Result<(), String> {
    if !path.starts_with('/') {
        return Err(format!("{what} {path:?} must be an absolute path"));
    }
    if path.contains('\0') {
        return Err(format!("{what} {path:?} contains a NUL byte"));
    }
    if path.split('/').any(|c| c == "..") {
        return Err(format!("{what} {path:?} must not contain \"..\""));
    }
    Ok(())
}

/// A path the module mounts a device file on with the engine's bind syntax
/// (`SOURCE:TARGET:ro`), where a `:` would split it.
pub fn check_bind_target(what: &str, path: &str) -> Result<(), String> {
    check_absolute(what, path)?;
    if path.contains(':') {
        return Err(format!(
            "{what} {path:?} holds ':', which a bind mount cannot carry; choose a path without ':'"
        ));
    }
    Ok(())
}

pub fn check_label(key: &str) -> Result<(), String> {
    if key.is_empty() {
        return Err("a label key is empty".to_owned());
    }
    if key.starts_with(RESERVED_LABEL_PREFIX) {
        return Err(format!(
            "label {key:?} is in the namespace {RESERVED_LABEL_PREFIX}*, which the module reserves for its own bookkeeping; choose another key"
        ));
    }
    Ok(())
}

pub fn check_env_key(key: &str) -> Result<(), String> {
    if key.is_empty() || key.contains('=') || key.contains('\0') {
        return Err(format!(
            "environment variable name {key:?} is not valid (non-empty, without = or NUL)"
        ));
    }
    Ok(())
}

/// `[[IP:]HOST_PORT:]CONTAINER_PORT[/PROTOCOL]`; IPv6 addresses in brackets.
pub fn parse_port(text: &str) -> Result<PortMapping, String> {
    let bad = |why: &str| {
        format!("port {text:?}: {why}; write [[HOST_IP:]HOST_PORT:]CONTAINER_PORT[/tcp|udp|sctp], e.g. 8080:80/tcp")
    };
    let (spec, protocol) = match text.rsplit_once('/') {
        Some((s, p)) => (s, p.to_owned()),
        None => (text, "tcp".to_owned()),
    };
    if !matches!(protocol.as_str(), "tcp" | "udp" | "sctp") {
        return Err(bad(&format!(
            "protocol {protocol:?} is not tcp, udp or sctp"
        )));
    }
    let (host_ip, rest) = if let Some(after) = spec.strip_prefix('[') {
        let (ip, rest) = after
            .split_once("]:")
            .ok_or_else(|| bad("unterminated [IPv6] address"))?;
        (Some(ip.to_owned()), rest)
    } else {
        let parts: Vec<&str> = spec.split(':').collect();
        match parts.len() {
            1 | 2 => (None, spec),
            3 => (Some(parts[0].to_owned()), &spec[parts[0].len() + 1..]),
            _ => return Err(bad("too many colons")),
        }
    };
    if let Some(ip) = &host_ip {
        if ip.parse::<std::net::IpAddr>().is_err() {
            return Err(bad(&format!("{ip:?} is not an IP address")));
        }
    }
    let (host, container) = match rest.split_once(':') {
        Some((h, c)) => (Some(h), c),
        None => (None, rest),
    };
    let port = |p: &str| -> Result<u16, String> {
        if p.contains('-') {
            return Err(bad("port ranges are not supported; list each port"));
        }
        match p.parse::<u16>() {
            Ok(n) if n > 0 => Ok(n),
            _ => Err(bad(&format!("{p:?} is not a port number 1-65535"))),
        }
    };
    let container_port = port(container)?;
    let host_port = match host {
        None | Some("") => None,
        Some(h) => Some(port(h)?),
    };
    if host_port.is_none() && host_ip.is_some() {
        return Err(bad("a host IP needs a host port"));
    }
    Ok(PortMapping {
        host_ip,
        host_port,
        container_port,
        protocol,
    })
}

const BIND_OPTIONS: &[&str] = &[
    "ro",
    "rw",
    "z",
    "Z",
    "shared",
    "rshared",
    "slave",
    "rslave",
    "private",
    "rprivate",
    "nocopy",
    "consistent",
    "cached",
    "delegated",
];

/// `SOURCE:TARGET[:OPTIONS]` where SOURCE is an absolute host path.
pub fn parse_bind(text: &str) -> Result<Bind, String> {
    let parts: Vec<&str> = text.split(':').collect();
    let (source, target, options) = match parts.as_slice() {
        [s, t] => (*s, *t, ""),
        [s, t, o] => (*s, *t, *o),
        _ => {
            return Err(format!(
                "bind {text:?} is not SOURCE:TARGET[:OPTIONS], e.g. /data/app:/var/lib/app:ro"
            ))
        }
    };
    check_absolute("bind source", source)?;
    check_absolute("bind target", target)?;
    check_bind_options(text, options)?;
    Ok(Bind {
        source: source.to_owned(),
        target: target.to_owned(),
        options: options.to_owned(),
    })
}

pub fn check_bind_options(text: &str, options: &str) -> Result<(), String> {
    if options.is_empty() {
        return Ok(());
    }
    for o in options.split(',') {
        if !BIND_OPTIONS.contains(&o) {
            return Err(format!(
                "{text:?}: mount option {o:?} is not one of {}",
                BIND_OPTIONS.join(", ")
            ));
        }
    }
    Ok(())
}

/// `HOST_PATH[:CONTAINER_PATH[:PERMISSIONS]]`.
pub fn parse_device(text: &str) -> Result<DeviceMapping, String> {
    let parts: Vec<&str> = text.split(':').collect();
    let perms_ok =
        |p: &str| !p.is_empty() && p.len() <= 3 && p.chars().all(|c| matches!(c, 'r' | 'w' | 'm'));
    let (host, container, permissions) = match parts.as_slice() {
        [h] => (*h, *h, "rwm"),
        [h, c] if perms_ok(c) && !c.starts_with('/') => (*h, *h, *c),
        [h, c] => (*h, *c, "rwm"),
        [h, c, p] => (*h, *c, *p),
        _ => {
            return Err(format!(
                "device {text:?} is not HOST_PATH[:CONTAINER_PATH[:PERMISSIONS]], e.g. /dev/ttyUSB0:/dev/ttyUSB0:rw"
            ))
        }
    };
    check_absolute("device path", host)?;
    check_absolute("device path", container)?;
    if !perms_ok(permissions) {
        return Err(format!(
            "device {text:?}: permissions {permissions:?} must be letters from rwm"
        ));
    }
    Ok(DeviceMapping {
        host: host.to_owned(),
        container: container.to_owned(),
        permissions: permissions.to_owned(),
    })
}

/// `no`, `always`, `unless-stopped`, `on-failure[:N]`.
pub fn parse_restart(text: &str) -> Result<RestartPolicy, String> {
    let policy = match text {
        "no" => RestartPolicy::No,
        "always" => RestartPolicy::Always,
        "unless-stopped" => RestartPolicy::UnlessStopped,
        "on-failure" => RestartPolicy::OnFailure(None),
        other => match other.strip_prefix("on-failure:") {
            Some(n) => match n.parse::<u32>() {
                Ok(n) => RestartPolicy::OnFailure(Some(n)),
                Err(_) => {
                    return Err(format!(
                        "restart policy {text:?}: the retry count must be a whole number"
                    ))
                }
            },
            None => {
                return Err(format!(
                "restart policy {text:?} is not one of no, always, unless-stopped, on-failure[:N]"
            ))
            }
        },
    };
    Ok(policy)
}

/// `none`, `host`, `bridge`, `default`, `container:NAME` or a user network name.
pub fn check_network_mode(mode: &str) -> Result<(), String> {
    match mode {
        "none" | "host" | "bridge" | "default" => Ok(()),
        m => match m.strip_prefix("container:") {
            Some(c) => {
                check_object_name("container", c).map_err(|e| format!("network mode {m:?}: {e}"))
            }
            None => check_object_name("network", m).map_err(|e| format!("network mode: {e}")),
        },
    }
}

pub fn check_capability(cap: &str) -> Result<(), String> {
    let upper = cap.to_ascii_uppercase();
    let name = upper.strip_prefix("CAP_").unwrap_or(&upper);
    if name == "ALL" || CAPABILITIES.contains(&name) {
        Ok(())
    } else {
        Err(format!(
            "capability {cap:?} is not a Linux capability; use a name such as NET_ADMIN (CAP_ and lower case also work) or ALL"
        ))
    }
}

/// The Linux capabilities (capability(7), 0 to 40), as the engine names
/// them: an unknown name would pass Download and fail the install when the
/// engine creates the container.
const CAPABILITIES: &[&str] = &[
    "CHOWN",
    "DAC_OVERRIDE",
    "DAC_READ_SEARCH",
    "FOWNER",
    "FSETID",
    "KILL",
    "SETGID",
    "SETUID",
    "SETPCAP",
    "LINUX_IMMUTABLE",
    "NET_BIND_SERVICE",
    "NET_BROADCAST",
    "NET_ADMIN",
    "NET_RAW",
    "IPC_LOCK",
    "IPC_OWNER",
    "SYS_MODULE",
    "SYS_RAWIO",
    "SYS_CHROOT",
    "SYS_PTRACE",
    "SYS_PACCT",
    "SYS_ADMIN",
    "SYS_BOOT",
    "SYS_NICE",
    "SYS_RESOURCE",
    "SYS_TIME",
    "SYS_TTY_CONFIG",
    "MKNOD",
    "LEASE",
    "AUDIT_WRITE",
    "AUDIT_CONTROL",
    "SETFCAP",
    "MAC_OVERRIDE",
    "MAC_ADMIN",
    "SYSLOG",
    "WAKE_ALARM",
    "BLOCK_SUSPEND",
    "AUDIT_READ",
    "PERFMON",
    "BPF",
    "CHECKPOINT_RESTORE",
];

/// Go-style durations as `docker run` takes them: `30s`, `1m30s`, `500ms`, `2h`.
/// At most [`MAX_DURATION`] in all: the engine keeps durations as i64
/// nanoseconds, and a longer one must not overflow here or there.
pub fn parse_go_duration(text: &str) -> Result<Duration, String> {
    let bad = || format!("duration {text:?} is not like 30s, 1m30s, 500ms or 2h");
    let too_long = || {
        format!(
            "duration {text:?} is longer than {} hours; give a shorter one such as 30s or 2h",
            MAX_DURATION.as_secs() / 3600
        )
    };
    if text == "0" {
        return Ok(Duration::ZERO);
    }
    let mut total = Duration::ZERO;
    let mut rest = text;
    if rest.is_empty() {
        return Err(bad());
    }
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit() && c != '.')
            .ok_or_else(bad)?;
        if digits == 0 {
            return Err(bad());
        }
        let number: f64 = rest[..digits].parse().map_err(|_| bad())?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let unit = &rest[..unit_len];
        rest = &rest[unit_len..];
        let seconds = match unit {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return Err(bad()),
        };
        let part = Duration::try_from_secs_f64(number * seconds).map_err(|_| too_long())?;
        total = total
            .checked_add(part)
            .filter(|t| *t <= MAX_DURATION)
            .ok_or_else(too_long)?;
    }
    Ok(total)
}

/// The longest duration [`parse_go_duration`] accepts: what fits the engine's
/// i64 nanoseconds, rounded down to whole hours (about 292 years).
pub const MAX_DURATION: Duration =
    Duration::from_secs(i64::MAX as u64 / 1_000_000_000 / 3600 * 3600);

/// Memory sizes as `docker run --memory` takes them: bytes, or with b, k, m, g.
/// The smallest memory limit the engine accepts (6 MiB): a smaller one would
/// pass Download and fail the install when the engine creates the container.
pub const MIN_MEMORY: u64 = 6 << 20;

/// A memory limit in bytes, at least [`MIN_MEMORY`].
pub fn check_memory(bytes: u64) -> Result<u64, String> {
    if bytes >= MIN_MEMORY {
        Ok(bytes)
    } else {
        Err(format!(
            "memory limit of {bytes} bytes is below the engine's minimum of {MIN_MEMORY} (6 MiB)"
        ))
    }
}

pub fn parse_memory(text: &str) -> Result<u64, String> {
    let bad = || format!("memory size {text:?} is not like 512m, 1g or 1048576");
    let lower = text.to_ascii_lowercase();
    let (number, factor) = match lower.char_indices().last() {
        Some((i, 'b')) => (&lower[..i], 1u64),
        Some((i, 'k')) => (&lower[..i], 1 << 10),
        Some((i, 'm')) => (&lower[..i], 1 << 20),
        Some((i, 'g')) => (&lower[..i], 1 << 30),
        Some(_) => (lower.as_str(), 1),
        None => return Err(bad()),
    };
    let n: u64 = number.parse().map_err(|_| bad())?;
    check_memory(n.checked_mul(factor).filter(|&b| b > 0).ok_or_else(bad)?)
}

/// `--cpus 1.5` → nano CPUs. The engine takes whole nano CPUs, and 0 means
/// no limit: a value that rounds to 0 is refused, not turned into that.
pub fn parse_cpus(text: &str) -> Result<u64, String> {
    match text.parse::<f64>() {
        Ok(c) if c > 0.0 && c.is_finite() && c < 1e6 => match (c * 1e9).round() as u64 {
            0 => Err(format!(
                "cpus {text:?} is below one billionth of a CPU, which the engine would take as no limit; give 0.001 or more"
            )),
            nano => Ok(nano),
        },
        _ => Err(format!(
            "cpus {text:?} is not a positive number such as 0.5 or 2"
        )),
    }
}

/// `SIGTERM`, `TERM`, `sigterm`, `SIGRTMIN+3`, `SIGRTMAX-2` or a number
/// 1-64: what the engine parses as a stop signal.
pub fn check_stop_signal(text: &str) -> Result<(), String> {
    let known = match text.parse::<u32>() {
        Ok(n) => (1..=64).contains(&n),
        Err(_) => {
            let upper = text.to_ascii_uppercase();
            let name = upper.strip_prefix("SIG").unwrap_or(&upper);
            SIGNALS.contains(&name)
                || (1..=15).any(|n| name == format!("RTMIN+{n}"))
                || (1..=14).any(|n| name == format!("RTMAX-{n}"))
        }
    };
    if known {
        Ok(())
    } else {
        Err(format!(
            "{text:?} is not a signal; use a name such as SIGTERM, SIGQUIT or SIGRTMIN+3 (SIG and lower case also work) or a number 1-64"
        ))
    }
}

/// The Linux signal names the engine knows, without `SIG` (the real-time
/// ones `RTMIN+n`, `RTMAX-n` are checked apart).
const SIGNALS: &[&str] = &[
    "ABRT", "ALRM", "BUS", "CHLD", "CLD", "CONT", "FPE", "HUP", "ILL", "INT", "IO", "IOT", "KILL",
    "PIPE", "POLL", "PROF", "PWR", "QUIT", "SEGV", "STKFLT", "STOP", "SYS", "TERM", "TRAP", "TSTP",
    "TTIN", "TTOU", "URG", "USR1", "USR2", "VTALRM", "WINCH", "XCPU", "XFSZ", "RTMIN", "RTMAX",
];

/// The longest stop grace period: the stop request carries it as an i32.
pub const MAX_STOP_GRACE_SECONDS: u64 = i32::MAX as u64;

pub fn check_stop_grace_period(seconds: u64) -> Result<Duration, String> {
    if seconds <= MAX_STOP_GRACE_SECONDS {
        Ok(Duration::from_secs(seconds))
    } else {
        Err(format!(
            "{seconds} seconds is longer than the engine's stop timeout can be ({MAX_STOP_GRACE_SECONDS}); give whole seconds such as 10 or 30"
        ))
    }
}

/// A kernel parameter name (`net.core.somaxconn`, `net/ipv4/ip_forward`)
/// and the value to write.
pub fn check_sysctl(key: &str, value: &str) -> Result<(), String> {
    let name_ok = key.split(['.', '/']).all(|part| {
        !part.is_empty()
            && part
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '_' | '-'))
    });
    if !name_ok {
        return Err(format!(
            "sysctl {key:?} is not a kernel parameter name: parts of a-z 0-9 _ - joined by . or /, e.g. net.core.somaxconn"
        ));
    }
    if value.is_empty() {
        return Err(format!(
            "sysctl {key:?} has an empty value; give the value to write, e.g. \"1024\""
        ));
    }
    Ok(())
}

/// Whether a sysctl belongs to the network namespace.
pub fn is_network_sysctl(key: &str) -> bool {
    key.starts_with("net.") || key.starts_with("net/")
}

/// `HOST:IP` or `HOST=IP` (IPv6 bare or in brackets, or `host-gateway`), as
/// the engine's `HOST:IP`.
pub fn parse_extra_host(text: &str) -> Result<String, String> {
    let bad = |why: String| {
        format!("extra host {text:?}: {why}; write HOST:IP or HOST=IP, e.g. db.local:10.0.0.2 or db6.local=::1")
    };
    let (host, ip) = text
        .split_once('=')
        .or_else(|| text.split_once(':'))
        .ok_or_else(|| bad("there is no IP address".to_owned()))?;
    if host.is_empty()
        || host.len() > 255
        || !host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
    {
        return Err(bad(format!(
            "{host:?} is not a host name (letters, digits, . - _)"
        )));
    }
    let ip = ip
        .strip_prefix('[')
        .and_then(|i| i.strip_suffix(']'))
        .unwrap_or(ip);
    if ip != "host-gateway" && ip.parse::<std::net::IpAddr>().is_err() {
        return Err(bad(format!("{ip:?} is not an IP address")));
    }
    Ok(format!("{host}:{ip}"))
}

pub fn check_dns_server(text: &str) -> Result<(), String> {
    match text.parse::<std::net::IpAddr>() {
        Ok(_) => Ok(()),
        Err(_) => Err(format!(
            "DNS server {text:?} is not an IP address such as 10.0.0.53 or fd00::53"
        )),
    }
}

/// The resource limits the engine knows by name.
pub const ULIMITS: &[&str] = &[
    "as",
    "core",
    "cpu",
    "data",
    "fsize",
    "locks",
    "memlock",
    "msgqueue",
    "nice",
    "nofile",
    "nproc",
    "rss",
    "rtprio",
    "rttime",
    "sigpending",
    "stack",
];

/// `SOFT:HARD` or `N` (both limits), whole numbers ≥ 0 or -1 for unlimited.
pub fn parse_ulimit(name: &str, text: &str) -> Result<Ulimit, String> {
    if !ULIMITS.contains(&name) {
        return Err(format!(
            "ulimit {name:?} is not one the engine knows; use one of {}",
            ULIMITS.join(", ")
        ));
    }
    let limit = |t: &str| {
        match t.parse::<i64>() {
        Ok(n) if n >= -1 => Ok(n),
        _ => Err(format!(
            "ulimit {name} {text:?} is not SOFT:HARD or N: whole numbers ≥ 0, or -1 for unlimited, e.g. \"1024:4096\" or \"1024\""
        )),
    }
    };
    let (soft, hard) = match text.split_once(':') {
        Some((s, h)) => (limit(s)?, limit(h)?),
        None => (limit(text)?, limit(text)?),
    };
    // -1 (unlimited) is above every number.
    let rank = |n: i64| u64::try_from(n).unwrap_or(u64::MAX);
    if rank(soft) > rank(hard) {
        return Err(format!(
            "ulimit {name} {text:?}: the soft limit is above the hard limit; the soft limit must be at most the hard one"
        ));
    }
    Ok(Ulimit { soft, hard })
}

/// The size of `/dev/shm` in bytes: more than 0, and within the engine's i64.
pub fn check_shm_size(bytes: u64) -> Result<u64, String> {
    if bytes == 0 || bytes > i64::MAX as u64 {
        Err(format!(
            "{bytes} is not a size of /dev/shm; give bytes, at least 1, e.g. 67108864 (64 MiB)"
        ))
    } else {
        Ok(bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capabilities_are_the_kernels_in_any_spelling_the_engine_takes() {
        for ok in [
            "NET_ADMIN",
            "net_admin",
            "CAP_SYS_TIME",
            "cap_bpf",
            "ALL",
            "all",
        ] {
            assert_eq!(check_capability(ok), Ok(()), "{ok}");
        }
        for bad in ["NOT_A_CAP", "", "CAP_", "NET ADMIN", "SYS_TIME\n"] {
            let e = check_capability(bad).unwrap_err();
            assert!(e.contains("is not a Linux capability"), "{e}");
        }
    }

    #[test]
    fn ports_in_every_documented_form() {
        let p = parse_port("8080:80").unwrap();
        assert_eq!(
            (p.host_port, p.container_port, p.protocol.as_str()),
            (Some(8080), 80, "tcp")
        );
        let p = parse_port("127.0.0.1:53:53/udp").unwrap();
        assert_eq!(p.host_ip.as_deref(), Some("127.0.0.1"));
        assert_eq!((p.host_port, p.protocol.as_str()), (Some(53), "udp"));
        let p = parse_port("[::1]:8443:443").unwrap();
        assert_eq!(p.host_ip.as_deref(), Some("::1"));
        let p = parse_port("9000").unwrap();
        assert_eq!((p.host_port, p.container_port), (None, 9000));
        let p = parse_port("0.0.0.0::80").unwrap_err();
        assert!(p.contains("host IP needs a host port"), "{p}");
        for bad in [
            "80:0",
            "x:80",
            "8000-8010:80",
            "80/icmp",
            "1:2:3:4",
            "300.1.1.1:80:80",
            "70000:80",
        ] {
            assert!(parse_port(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn binds_need_absolute_paths_and_known_options() {
        let b = parse_bind("/data/x:/y:ro").unwrap();
        assert!(b.read_only());
        assert_eq!(b.to_engine(), "/data/x:/y:ro");
        assert_eq!(parse_bind("/a:/b").unwrap().options, "");
        assert!(parse_bind("rel:/b").unwrap_err().contains("absolute"));
        assert!(parse_bind("/a:b").unwrap_err().contains("absolute"));
        assert!(parse_bind("/a/../etc:/b").unwrap_err().contains(".."));
        assert!(parse_bind("/a:/b:rx").unwrap_err().contains("\"rx\""));
        assert!(parse_bind("/a").is_err());
    }

    #[test]
    fn devices_restart_durations_memory_cpus() {
        assert_eq!(parse_device("/dev/ttyS0").unwrap().container, "/dev/ttyS0");
        assert_eq!(parse_device("/dev/ttyS0:r").unwrap().permissions, "r");
        assert_eq!(
            parse_device("/dev/a:/dev/b:rw").unwrap().container,
            "/dev/b"
        );
        assert!(parse_device("/dev/a:/dev/b:x").is_err());
        assert_eq!(
            parse_restart("on-failure:3").unwrap(),
            RestartPolicy::OnFailure(Some(3))
        );
        assert_eq!(
            parse_restart("unless-stopped").unwrap(),
            RestartPolicy::UnlessStopped
        );
        assert!(parse_restart("sometimes").is_err());
        assert!(parse_restart("on-failure:x").is_err());
        assert_eq!(parse_go_duration("1m30s").unwrap(), Duration::from_secs(90));
        assert_eq!(
            parse_go_duration("500ms").unwrap(),
            Duration::from_millis(500)
        );
        assert_eq!(
            parse_go_duration("1.5s").unwrap(),
            Duration::from_millis(1500)
        );
        assert!(parse_go_duration("30").is_err());
        assert!(parse_go_duration("s").is_err());
        assert_eq!(parse_memory("512m").unwrap(), 512 << 20);
        assert_eq!(parse_memory("1G").unwrap(), 1 << 30);
        assert_eq!(parse_memory("6291456").unwrap(), 6 << 20);
        // Below the engine's minimum: the install would fail at create.
        let e = parse_memory("4096").unwrap_err();
        assert!(e.contains("below the engine's minimum"), "{e}");
        assert!(parse_memory("5m").is_err());
        assert!(parse_memory("lots").is_err());
        assert_eq!(parse_cpus("1.5").unwrap(), 1_500_000_000);
        assert!(parse_cpus("-1").is_err());
        assert_eq!(parse_cpus("0.000000001").unwrap(), 1);
    }

    #[test]
    fn names_labels_and_network_modes() {
        assert!(check_container_name("web").is_ok());
        assert!(check_container_name("w").is_err());
        assert!(check_container_name("-web").is_err());
        assert!(check_container_name("we b").is_err());
        assert!(check_container_name(&"a".repeat(65)).is_err());
        assert!(check_label("io.mender.composable.stack").is_err());
        assert!(check_label("com.example.team").is_ok());
        for ok in ["none", "host", "bridge", "container:db", "backend-net"] {
            assert!(check_network_mode(ok).is_ok(), "{ok}");
        }
        assert!(check_network_mode("container:").is_err());
        assert!(check_network_mode("bad net").is_err());
    }

    #[test]
    fn a_duration_too_long_for_the_engine_is_refused_with_a_line() {
        // Duration::from_secs_f64 panicked on these, and adding the parts
        // overflowed.
        for text in [
            &format!("{}h", "9".repeat(400)),
            "99999999999999999999s",
            "2562047h2562047h",
            "18446744073709551615s1s",
        ] {
            let e = parse_go_duration(text).unwrap_err();
            assert!(e.contains("is longer than 2562047 hours"), "{text}: {e}");
        }
        assert_eq!(parse_go_duration("2562047h").unwrap(), MAX_DURATION);
    }

    #[test]
    fn stop_signals_are_the_engines_names_or_numbers() {
        for ok in [
            "SIGTERM",
            "SIGQUIT",
            "sigusr1",
            "TERM",
            "SIGRTMIN",
            "SIGRTMIN+3",
            "SIGRTMIN+15",
            "SIGRTMAX-14",
            "SIGRTMAX",
            "1",
            "9",
            "64",
        ] {
            assert_eq!(check_stop_signal(ok), Ok(()), "{ok}");
        }
        for bad in [
            "",
            "SIG",
            "SIGFOO",
            "0",
            "65",
            "-9",
            "SIGRTMIN+0",
            "SIGRTMIN+16",
            "SIGRTMIN+03",
            "SIGRTMAX-15",
            "SIG TERM",
            "SIGTERM\n",
        ] {
            let e = check_stop_signal(bad).unwrap_err();
            assert!(
                e.ends_with("is not a signal; use a name such as SIGTERM, SIGQUIT or SIGRTMIN+3 (SIG and lower case also work) or a number 1-64"),
                "{bad}: {e}"
            );
        }
    }

    #[test]
    fn grace_periods_fit_the_stop_request() {
        assert_eq!(check_stop_grace_period(0), Ok(Duration::ZERO));
        assert_eq!(
            check_stop_grace_period(2_147_483_647),
            Ok(Duration::from_secs(2_147_483_647))
        );
        let e = check_stop_grace_period(2_147_483_648).unwrap_err();
        assert!(
            e.contains("longer than the engine's stop timeout can be"),
            "{e}"
        );
    }

    #[test]
    fn sysctl_names_are_kernel_parameter_paths() {
        for ok in [
            "net.core.somaxconn",
            "net/ipv4/ip_forward",
            "net.ipv4.conf.eth0/100.forwarding",
            "kernel.shm_rmid_forced",
            "net.ipv6.conf.all.disable_ipv6",
            "fs.mqueue.msg_max",
        ] {
            assert_eq!(check_sysctl(ok, "1"), Ok(()), "{ok}");
        }
        for bad in [
            "",
            ".",
            "net..core",
            "net.core.",
            "/net/core",
            "net/../../etc/passwd",
            "Net.core",
            "net.core somaxconn",
            "net.core=1",
        ] {
            let e = check_sysctl(bad, "1").unwrap_err();
            assert!(e.contains("is not a kernel parameter name"), "{bad}: {e}");
        }
        assert!(check_sysctl("net.core.somaxconn", "")
            .unwrap_err()
            .contains("has an empty value"));
        assert!(is_network_sysctl("net.core.somaxconn") && is_network_sysctl("net/core/x"));
        assert!(!is_network_sysctl("kernel.shmmax") && !is_network_sysctl("netfoo.x"));
    }

    #[test]
    fn extra_hosts_become_the_engines_host_colon_ip() {
        for (text, engine) in [
            ("db:10.0.0.2", "db:10.0.0.2"),
            ("db=10.0.0.2", "db:10.0.0.2"),
            ("db6:::1", "db6:::1"),
            ("db6=::1", "db6:::1"),
            ("db6=[fd00::1]", "db6:fd00::1"),
            ("db6:[fd00::1]", "db6:fd00::1"),
            (
                "host.docker.internal:host-gateway",
                "host.docker.internal:host-gateway",
            ),
            ("my_host-1.local=192.168.1.1", "my_host-1.local:192.168.1.1"),
        ] {
            assert_eq!(parse_extra_host(text).as_deref(), Ok(engine), "{text}");
        }
        for (bad, why) in [
            ("db", "there is no IP address"),
            ("db:", "\"\" is not an IP address"),
            ("db:10.0.0", "\"10.0.0\" is not an IP address"),
            ("db=fe80::1%eth0", "is not an IP address"),
            (":10.0.0.1", "\"\" is not a host name"),
            ("a/b:10.0.0.1", "\"a/b\" is not a host name"),
        ] {
            let e = parse_extra_host(bad).unwrap_err();
            assert!(
                e.starts_with(&format!("extra host {bad:?}: "))
                    && e.contains(why)
                    && e.ends_with(
                        "; write HOST:IP or HOST=IP, e.g. db.local:10.0.0.2 or db6.local=::1"
                    ),
                "{bad}: {e}"
            );
        }
    }

    #[test]
    fn dns_servers_are_ip_addresses() {
        for ok in ["10.0.0.53", "fd00::53", "::1"] {
            assert_eq!(check_dns_server(ok), Ok(()), "{ok}");
        }
        for bad in ["", "dns.example.com", "10.0.0.53:53", "[fd00::53]"] {
            let e = check_dns_server(bad).unwrap_err();
            assert!(
                e.contains("is not an IP address such as 10.0.0.53 or fd00::53"),
                "{e}"
            );
        }
    }

    #[test]
    fn ulimits_have_the_engines_names_and_soft_at_most_hard() {
        let limit = |name: &str, text: &str| parse_ulimit(name, text).map(|u| (u.soft, u.hard));
        assert_eq!(limit("nofile", "1024:4096"), Ok((1024, 4096)));
        assert_eq!(limit("nproc", "512"), Ok((512, 512)));
        assert_eq!(limit("core", "0"), Ok((0, 0)));
        assert_eq!(limit("memlock", "-1"), Ok((-1, -1)));
        assert_eq!(
            limit("memlock", "1024:-1"),
            Ok((1024, -1)),
            "-1 is unlimited"
        );
        for name in ULIMITS {
            assert!(limit(name, "1:2").is_ok(), "{name}");
        }
        let e = parse_ulimit("openfiles", "1").unwrap_err();
        assert!(
            e.starts_with("ulimit \"openfiles\" is not one the engine knows; use one of as, core,"),
            "{e}"
        );
        for bad in [
            "",
            "x",
            "1:",
            ":1",
            "1:2:3",
            "-2",
            "1.5",
            "1 :2",
            "99999999999999999999",
        ] {
            let e = parse_ulimit("nofile", bad).unwrap_err();
            assert!(
                e.contains("is not SOFT:HARD or N: whole numbers ≥ 0, or -1 for unlimited"),
                "{bad}: {e}"
            );
        }
        for bad in ["2:1", "-1:1024"] {
            let e = parse_ulimit("nofile", bad).unwrap_err();
            assert!(
                e.contains("the soft limit is above the hard limit"),
                "{bad}: {e}"
            );
        }
    }

    #[test]
    fn shm_sizes_are_positive_and_fit_the_engine() {
        assert_eq!(check_shm_size(1), Ok(1));
        assert_eq!(check_shm_size(64 << 20), Ok(64 << 20));
        assert_eq!(check_shm_size(i64::MAX as u64), Ok(i64::MAX as u64));
        for bad in [0, i64::MAX as u64 + 1, u64::MAX] {
            let e = check_shm_size(bad).unwrap_err();
            assert!(
                e.contains("is not a size of /dev/shm; give bytes, at least 1"),
                "{e}"
            );
        }
    }

    #[test]
    fn cpus_that_round_to_no_limit_are_refused() {
        // 1e-10 CPUs is 0.1 nano CPUs: the engine would get 0, no limit.
        for text in ["0.0000000001", "1e-10", "4e-10", "5e-300"] {
            let e = parse_cpus(text).unwrap_err();
            assert!(e.contains("below one billionth of a CPU"), "{text}: {e}");
        }
        assert_eq!(parse_cpus("5e-10").unwrap(), 1);
    }
}
