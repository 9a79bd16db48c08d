//! The docker Update Module's artifact meta-data, shared by the device module
//! and the host-side generator.
//!
//! Two formats arrive in the artifact's `meta-data` (`mender-artifact -m`):
//!
//! * the **legacy** one of the old `docker-artifact-gen`,
//!   `{"containers": ["REPO@sha256:…"], "run_args": "…"}`, deployed as the
//!   stack [`LEGACY_STACK`];
//! * the versioned **docker-stack** one, `{"docker-stack": {"format": 1, …}}`.
//!
//! [`parse`] validates either completely and returns one normalised
//! [`Release`]; a bad artifact is refused before anything on the device
//! changes. FORMAT.md in this crate documents both formats.
//!
//! ```
//! let meta = serde_json::json!({"docker-stack": {
//!     "format": 1, "stack": "web",
//!     "containers": {"web": {"network_mode": "host",
//!         "image": "registry.example.com/web@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"}}
//! }});
//! let release = docker_spec::parse(&meta).unwrap();
//! assert_eq!(release.stack, "web");
//! assert_eq!(release.containers[0].image.registry(), "registry.example.com");
//! ```

pub mod container;
mod document;
mod error;
pub mod image;
pub mod inline;
pub mod legacy;
pub mod stack;
pub mod words;

use std::time::Duration;

use serde_json::Value;

pub use container::{
    Bind, Condition, ContainerSpec, DeviceMapping, Healthcheck, LogConfig, PortMapping,
    RestartPolicy, VolumeMount, RESERVED_LABEL_PREFIX,
};
pub use error::{Path, Result, SpecError};
pub use image::ImageRef;
pub use inline::{ImageLayers, InlineArchive};

/// The stack every legacy artifact deploys into: the old module had no notion
/// of stacks, so all its artifacts replace one another.
pub const LEGACY_STACK: &str = "docker";

/// Which format the artifact used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Legacy,
    Stack(u32),
}

/// How the old set hands over to the new one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Strategy {
    /// Stop the old set, then start the new one: never two at once.
    StopFirst,
    /// Start the new set and pass the health gate before stopping the old
    /// one, when nothing they use conflicts (the module decides and falls
    /// back to stop-first, saying why).
    StartFirst,
}

impl Strategy {
    pub fn as_str(self) -> &'static str {
        match self {
            Strategy::StopFirst => "stop-first",
            Strategy::StartFirst => "start-first",
        }
    }
}

/// How the containers of a release are started and stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartOrder {
    /// One after the other in `containers` order (`start_order`, or the
    /// legacy list), stopped one after the other in reverse.
    Sequence,
    /// Along each container's `depends_on`: those with nothing left to wait
    /// for start together, and the stop runs the graph backwards, dependents
    /// first, each level together.
    Graph,
}

/// One deployable release of one stack.
#[derive(Debug, Clone, PartialEq)]
pub struct Release {
    pub format: Format,
    pub stack: String,
    pub strategy: Strategy,
    /// `None`: the device's configured default.
    pub health_timeout: Option<Duration>,
    /// The name of a registry in the device's configuration whose credentials
    /// pull this release's images.
    pub registry: Option<String>,
    /// Containers not managed by the module that this release takes over:
    /// stopped before the switch, removed on commit, restarted on failure.
    pub replaces: Vec<String>,
    pub start: StartOrder,
    /// In start order: with [`StartOrder::Graph`], every container after the
    /// ones it depends on, level by level ([`Release::start_levels`]).
    pub containers: Vec<ContainerSpec>,
    /// Images carried in the artifact's payload files.
    pub inline: Vec<InlineArchive>,
    /// The networks its containers join.
    pub networks: Vec<NetworkSpec>,
}

/// A network of a stack.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkSpec {
    /// Its name in the docker-stack.
    pub key: String,
    /// Its name in the engine: `<stack>_<key>` (`.internal` appended for an
    /// internal one), or for an external network the name it has there.
    pub engine: String,
    /// Without a route out of the host.
    pub internal: bool,
    /// Made by someone else: used, never created or removed.
    pub external: bool,
}

impl NetworkSpec {
    /// The engine name of the stack's network `key`.
    pub fn engine_name(stack: &str, key: &str, internal: bool) -> String {
        if internal {
            format!("{stack}_{key}.internal")
        } else {
            format!("{stack}_{key}")
        }
    }
}

/// Where the device keeps the files a stack's `secrets` and `configs` name,
/// below the module's state directory: `<dir>/files/<stack>/secrets/<name>`
/// and `…/configs/<name>`. Provisioned there by the device's owner (a
/// factory step, a configuration tool), never by an artifact.
pub fn device_file(
    state_dir: &std::path::Path,
    stack: &str,
    kind: DeviceFile,
    name: &str,
) -> std::path::PathBuf {
    state_dir
        .join("files")
        .join(stack)
        .join(kind.as_str())
        .join(name)
}

/// The two kinds of device-provisioned files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceFile {
    Secret,
    Config,
}

impl DeviceFile {
    pub fn as_str(self) -> &'static str {
        match self {
            DeviceFile::Secret => "secrets",
            DeviceFile::Config => "configs",
        }
    }
}

impl Release {
    pub fn container(&self, name: &str) -> Option<&ContainerSpec> {
        self.containers.iter().find(|c| c.name == name)
    }

    /// Indexes into `containers`, grouped into what starts together: one
    /// container per level in a sequence; in a graph, level n holds the
    /// containers whose longest dependency chain is n long.
    pub fn start_levels(&self) -> Vec<Vec<usize>> {
        let mut levels: Vec<Vec<usize>> = Vec::new();
        for (i, level) in self.levels().into_iter().enumerate() {
            if levels.len() <= level {
                levels.resize_with(level + 1, Vec::new);
            }
            levels[level].push(i);
        }
        levels
    }

    /// The level of each container ([`Release::start_levels`]), indexed like
    /// `containers`. It is worked out from the whole release: a caller that
    /// needs several levels takes this once and indexes it.
    pub fn levels(&self) -> Vec<usize> {
        match self.start {
            StartOrder::Sequence => (0..self.containers.len()).collect(),
            StartOrder::Graph => graph_levels(&self.containers),
        }
    }

    /// The level of one container ([`Release::levels`]), by index.
    pub fn level_of(&self, index: usize) -> usize {
        match self.start {
            StartOrder::Sequence => index,
            StartOrder::Graph => graph_levels(&self.containers)[index],
        }
    }

    /// The inline archive a payload file name belongs to.
    pub fn inline_archive(&self, payload: &str) -> Option<&InlineArchive> {
        self.inline.iter().find(|a| a.payload == payload)
    }
}

/// Each container's level: 0 without dependencies, otherwise one more than
/// the highest level it depends on. `containers` is already in a dependency
/// order with no cycle (the parser sorted and checked it).
fn graph_levels(containers: &[ContainerSpec]) -> Vec<usize> {
    let mut levels: Vec<usize> = Vec::with_capacity(containers.len());
    for c in containers {
        let level = c
            .depends_on
            .keys()
            .filter_map(|d| containers.iter().position(|o| &o.name == d))
            .filter_map(|j| levels.get(j).map(|l| l + 1))
            .max()
            .unwrap_or(0);
        levels.push(level);
    }
    levels
}

/// Parses and fully validates the artifact's meta-data.
pub fn parse(meta: &Value) -> Result<Release> {
    let release = match meta {
        Value::Object(map) if map.contains_key(stack::KEY) => stack::parse(map)?,
        Value::Object(map) if map.contains_key("containers") => legacy::parse(map)?,
        Value::Object(map) => {
            let keys: Vec<&str> = map.keys().map(String::as_str).collect();
            return Err(SpecError::UnknownFormat {
                found: if keys.is_empty() {
                    "is an empty object".to_owned()
                } else {
                    format!("has the keys {}", keys.join(", "))
                },
            });
        }
        Value::Null => {
            return Err(SpecError::UnknownFormat {
                found: "is missing (write it with mender-artifact -m FILE)".to_owned(),
            })
        }
        other => {
            return Err(SpecError::UnknownFormat {
                found: format!("is {}, not an object", document::kind(other)),
            })
        }
    };
    check_release(&release)?;
    Ok(release)
}

/// Parses JSON text, e.g. a file a generator is about to embed.
pub fn parse_str(text: &str) -> Result<Release> {
    let value: Value = serde_json::from_str(text).map_err(|e| SpecError::UnknownFormat {
        found: format!("is not valid JSON ({e})"),
    })?;
    parse(&value)
}

/// Rules that span containers.
fn check_release(release: &Release) -> Result<()> {
    let containers_at = match release.format {
        Format::Legacy => Path::root().key("containers"),
        Format::Stack(_) => Path::root().key(stack::KEY).key("containers"),
    };
    let mut purge: Vec<(&str, bool)> = Vec::new();
    for (i, c) in release.containers.iter().enumerate() {
        let at = match release.format {
            Format::Legacy => containers_at.index(i),
            Format::Stack(_) => containers_at.key(&c.name),
        };
        if let Some(target) = c
            .network_mode
            .as_deref()
            .and_then(|m| m.strip_prefix("container:"))
        {
            if release.container(target).is_some() {
                return Err(SpecError::invalid(
                    &at.key("network_mode"),
                    format!(
                        "joins the network of {target:?} from the same release, which runs under a temporary name while the old set is still up; use a user network or host networking instead"
                    ),
                ));
            }
        }
        for v in &c.volumes {
            match purge.iter().find(|(n, _)| *n == v.name) {
                Some((_, p)) if *p != v.purge_on_deploy => {
                    return Err(SpecError::invalid(
                        &at.key("volumes"),
                        format!(
                            "volume {:?} is used with and without purge_on_deploy in this release; set it the same way everywhere",
                            v.name
                        ),
                    ))
                }
                Some(_) => {}
                None => purge.push((&v.name, v.purge_on_deploy)),
            }
        }
    }
    Ok(())
}
