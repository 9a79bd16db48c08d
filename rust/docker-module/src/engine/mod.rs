//! The one seam in front of the container engine. The bollard implementation
//! ([`docker::DockerEngine`]) talks to the engine's unix socket; unit tests of
//! the executor use the hand-written fake in `fake.rs`.

pub mod docker;
#[cfg(test)]
pub mod fake;
mod http;
mod info;
mod network;

pub use network::{Network, NetworkRequest};

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::io::Read;
use std::path::PathBuf;
use std::time::Duration;

use docker_spec::{ContainerSpec, ImageRef};

/// A container as the engine reports it, running or not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Container {
    pub id: String,
    /// Without the engine's leading `/`.
    pub name: String,
    pub labels: BTreeMap<String, String>,
    /// `sha256:…` of the image it was created from.
    pub image_id: String,
    pub running: bool,
    pub restarting: bool,
    pub exit_code: i64,
    pub restart_count: u64,
    pub health: Health,
    pub network_mode: String,
    /// Host ports it publishes (configured, so also known while stopped).
    pub published: Vec<(u16, String)>,
    /// Host device paths.
    pub devices: Vec<String>,
    pub mounts: Vec<MountUse>,
}

impl Container {
    pub fn label(&self, key: &str) -> Option<&str> {
        self.labels.get(key).map(String::as_str)
    }

    /// A bare container, for tests and the fake.
    pub fn new(id: &str, name: &str) -> Container {
        Container {
            id: id.to_owned(),
            name: name.to_owned(),
            labels: BTreeMap::new(),
            image_id: String::new(),
            running: false,
            restarting: false,
            exit_code: 0,
            restart_count: 0,
            health: Health::None,
            network_mode: "none".to_owned(),
            published: Vec::new(),
            devices: Vec::new(),
            mounts: Vec::new(),
        }
    }
}

/// What a container mounts, as far as hand-over conflicts are concerned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountUse {
    /// The volume name or the host path.
    pub source: String,
    pub named_volume: bool,
    pub read_write: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Health {
    /// No healthcheck.
    None,
    Starting,
    Healthy,
    /// With the output of the last failed check.
    Unhealthy(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Image {
    pub id: String,
    pub repo_digests: Vec<String>,
    /// The diff IDs of its layers, bottom first (`RootFS.Layers`).
    pub layers: Vec<String>,
}

impl Image {
    /// Whether the engine lists `pinned` among the image's RepoDigests, in
    /// any of the spellings the engine uses for Docker Hub names; for an
    /// inline image, whether this is the image with that ID.
    pub fn has_digest(&self, pinned: &ImageRef) -> bool {
        if pinned.inline {
            return self.id == pinned.digest;
        }
        let want = pinned.canonical();
        self.repo_digests
            .iter()
            .any(|d| docker_spec::image::canonical_pinned(d).as_deref() == Some(want.as_str()))
    }
}

/// An image as the engine lists it, with every name it holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageEntry {
    pub id: String,
    /// `REPO:TAG`, as the engine spells them (`postgres:15`).
    pub tags: Vec<String>,
    /// `REPO@sha256:…`.
    pub digests: Vec<String>,
}

/// Registry credentials from the device's configuration. Never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub address: String,
    pub username: String,
    pub password: String,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("address", &self.address)
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// Everything the engine needs to create one container.
#[derive(Debug, Clone)]
pub struct CreateRequest {
    /// The engine name to create it under (possibly a temporary one).
    pub name: String,
    /// With volume names already mapped to the engine volumes to use.
    pub spec: ContainerSpec,
    /// The spec's labels plus the module's own.
    pub labels: BTreeMap<String, String>,
}

/// Free space where the engine stores images.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataRoot {
    pub path: PathBuf,
    /// `None` when the path cannot be examined from here.
    pub free_bytes: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ErrorKind {
    NotFound,
    /// The engine refused because of the object's state (in use, name taken).
    Conflict,
    /// The engine cannot be reached.
    Unreachable,
    Other,
}

/// A failed engine call, naming the operation and its object.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("container engine: cannot {op} {target}: {message}")]
pub struct EngineError {
    pub op: &'static str,
    pub target: String,
    pub kind: ErrorKind,
    pub message: String,
}

impl EngineError {
    pub fn new(
        op: &'static str,
        target: &str,
        kind: ErrorKind,
        message: impl Into<String>,
    ) -> Self {
        EngineError {
            op,
            target: target.to_owned(),
            kind,
            message: message.into(),
        }
    }
}

pub type Result<T, E = EngineError> = std::result::Result<T, E>;

/// The engine operations the module uses. Removals of things already gone
/// succeed, so every caller can be re-run after a crash.
pub trait Engine {
    /// Every container, running or not, with its details.
    fn containers(&mut self) -> Result<Vec<Container>>;
    /// One container by id or name.
    fn container(&mut self, id_or_name: &str) -> Result<Option<Container>>;
    /// One image by reference or id.
    fn image(&mut self, reference: &str) -> Result<Option<Image>>;
    /// The IDs of every image the engine holds.
    fn image_ids(&mut self) -> Result<BTreeSet<String>>;
    /// Streams an image archive (`docker save` format, tags already removed)
    /// into the engine's image loader and returns the IDs it loaded. A read
    /// error of `archive` aborts the upload and is the error returned; the
    /// archive may be left unread when the engine gives up first.
    fn load(&mut self, archive: &mut dyn Read) -> Result<Vec<String>>;
    /// Pulls `image` by its digest.
    fn pull(&mut self, image: &ImageRef, credentials: Option<&Credentials>) -> Result<()>;
    /// Creates a container and returns its id.
    fn create(&mut self, request: &CreateRequest) -> Result<String>;
    fn start(&mut self, id_or_name: &str) -> Result<()>;
    /// Stops a container: its stop signal, then SIGKILL after its own grace
    /// period (the engine's `Config.StopTimeout`, which
    /// `stop_grace_period_seconds` sets) or, without one, after `timeout`.
    fn stop(&mut self, id_or_name: &str, timeout: Duration) -> Result<()>;
    /// Starts every target, all requests in flight at once where the engine
    /// allows; one result per target, in order.
    fn start_all(&mut self, targets: &[String]) -> Vec<Result<()>> {
        targets.iter().map(|t| self.start(t)).collect()
    }
    /// Stops every target like [`Engine::stop`], all at once where the
    /// engine allows; one result per target, in order.
    fn stop_all(&mut self, targets: &[String], timeout: Duration) -> Vec<Result<()>> {
        targets.iter().map(|t| self.stop(t, timeout)).collect()
    }
    fn rename(&mut self, id_or_name: &str, new_name: &str) -> Result<()>;
    fn remove_container(&mut self, id_or_name: &str) -> Result<()>;
    /// Removes one reference of an image; the engine keeps the image while
    /// other references or containers use it.
    fn remove_image(&mut self, reference: &str) -> Result<()>;
    fn remove_volume(&mut self, name: &str) -> Result<()>;
    fn data_root(&mut self) -> Result<DataRoot>;
    /// Every image with its tags and digests.
    fn images(&mut self) -> Result<Vec<ImageEntry>>;
    /// Points `tag` (`REPO:TAG`) at the image `id`, taking it from any other.
    fn tag(&mut self, id: &str, tag: &str) -> Result<()>;
    /// Removes the image `id` with all its tags; gone already is success.
    fn remove_image_forced(&mut self, id: &str) -> Result<()>;
    /// Whether the engine is still working on an image load (one a killed
    /// process started goes on without it); `None` when that cannot be told
    /// from here.
    fn loads_in_progress(&mut self) -> Result<Option<bool>>;
    /// The networks labelled as `stack`'s.
    fn stack_networks(&mut self, stack: &str) -> Result<Vec<Network>>;
    fn network_exists(&mut self, name: &str) -> Result<bool>;
    /// Creates a bridge network; one of that name already there is success.
    fn create_network(&mut self, request: &NetworkRequest) -> Result<()>;
    /// Attaches a container under `aliases`; attached already is success.
    fn connect_network(&mut self, network: &str, container: &str, aliases: &[String])
        -> Result<()>;
    /// Removes a network: gone already is success, in use a conflict.
    fn remove_network(&mut self, name: &str) -> Result<()>;
}
