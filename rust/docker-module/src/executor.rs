//! What every state works with: the [`Deployer`] (the engine, the
//! configuration, the journal and this deployment's artifact), its errors,
//! and the payloads on their way in. The states' work is split by what it
//! does, as in the persistent-app module: [`crate::fetch`] (Download: disk
//! check, pulls, inline loads), [`crate::switch`] (ArtifactInstall's switch)
//! and [`crate::apply`] (the phase plan's steps: restore, clean-up, commit,
//! and running container operations). Every function can run again in a
//! fresh process after a crash at any point, because it decides from the
//! journal and what the engine reports.

use std::io::{self, Read};
use std::time::Duration;

use docker_spec::{DeviceFile, ImageRef, Release};

use crate::config::Config;
use crate::engine::{Credentials, Engine, EngineError};
use crate::health::GateError;
use crate::journal::{Journal, JournalError, Update};
use crate::log;
use crate::plan::PlanError;

pub use crate::apply::commit;

#[derive(Debug, thiserror::Error)]
pub enum DeployError {
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error(transparent)]
    Journal(#[from] JournalError),
    #[error(transparent)]
    Plan(#[from] PlanError),
    #[error(transparent)]
    Gate(#[from] GateError),
    #[error(transparent)]
    Protocol(#[from] mender_module_protocol::Error),
    /// A refusal with its reason and what to do.
    #[error("{0}")]
    Refused(String),
}

pub type Result<T, E = DeployError> = std::result::Result<T, E>;

/// One payload file on its way in: its name, the size the client announced
/// (`DownloadWithFileSizes`, or a stored file's length), and its bytes.
pub struct Incoming<'a> {
    pub name: String,
    pub size: Option<u64>,
    pub reader: Box<dyn Read + 'a>,
}

/// The artifact's payload files, streamed during Download or stored by the
/// client for ArtifactInstall. Each must be read to its end before the next.
pub trait PayloadSource {
    fn next_payload(&mut self) -> Result<Option<Incoming<'_>>>;
}

impl PayloadSource for mender_module_protocol::Payloads {
    fn next_payload(&mut self) -> Result<Option<Incoming<'_>>> {
        Ok(
            mender_module_protocol::Payloads::next_payload(self)?.map(|p| Incoming {
                name: p.name.clone(),
                size: p.size,
                reader: Box::new(p),
            }),
        )
    }
}

/// Reads what is left of a payload so the client can go on; its errors do
/// not matter any more.
pub(crate) fn drain(reader: &mut dyn Read) {
    let _ = io::copy(reader, &mut io::sink());
}

/// What every state works with.
pub struct Deployer<'a> {
    pub engine: &'a mut dyn Engine,
    pub config: &'a Config,
    pub journal: &'a mut Journal,
    /// The header's artifact name.
    pub artifact: &'a str,
    /// How often the health gate looks (short in tests).
    pub poll: Duration,
}

pub(crate) fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}

pub(crate) fn join(ids: &[&String]) -> String {
    ids.iter()
        .map(|s| s.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Engine messages can quote archive content: at most `max` characters,
/// printable.
pub(crate) fn bounded(text: &str, max: usize) -> String {
    crate::archive::printable(text.as_bytes(), max)
}

pub(crate) fn short(id: &str) -> &str {
    &id[..id.len().min(12)]
}

/// Tells two installs of one stack apart: 10 hex digits, in container
/// labels and volume names.
pub fn new_install_id() -> String {
    module_kit::ids::new_id(5)
}

/// The images of a release, each once, in order.
pub(crate) fn release_images(release: &Release) -> Vec<&ImageRef> {
    let mut out: Vec<&ImageRef> = Vec::new();
    for c in &release.containers {
        if !out.iter().any(|i| i.pinned() == c.image.pinned()) {
            out.push(&c.image);
        }
    }
    out
}

/// Every secret and config file the release mounts, where the device keeps
/// them; each must be there as a file: the engine would mount an empty
/// directory in place of a missing one.
pub(crate) fn check_device_files(release: &Release, config: &Config) -> Result<()> {
    for c in &release.containers {
        for (kind, files) in [
            (DeviceFile::Secret, &c.secrets),
            (DeviceFile::Config, &c.configs),
        ] {
            for name in files.values() {
                let path = docker_spec::device_file(&config.state_dir, &release.stack, kind, name);
                if !path.is_file() {
                    let what = match kind {
                        DeviceFile::Secret => "secret",
                        DeviceFile::Config => "config",
                    };
                    return Err(DeployError::Refused(format!(
                        "{what} {name} of container {} (stack {}) is not on the device: provision it as the file {} (readable by root only for a secret) before deploying; {what}s never travel in artifacts",
                        c.name,
                        release.stack,
                        path.display()
                    )));
                }
            }
        }
    }
    Ok(())
}

/// The credentials to pull `image` with. The release's registry is used only
/// for images on that registry's address: credentials never go to another host.
pub fn credentials_for<'c>(
    release: &Release,
    config: &'c Config,
    image: &ImageRef,
) -> Result<Option<&'c Credentials>> {
    match &release.registry {
        Some(name) => {
            let creds = config.registries.get(name).ok_or_else(|| {
                DeployError::Refused(format!(
                    "the release pulls through registry {name:?}, which {} does not configure; add \"registries\": {{\"{name}\": {{\"address\", \"username\", \"password\"}}}} there (readable by root only)",
                    config.path.display()
                ))
            })?;
            if creds.address == image.registry() {
                Ok(Some(creds))
            } else {
                log!(
                    "image {image} is not on registry {name:?} ({}); pulling it without credentials",
                    creds.address
                );
                Ok(None)
            }
        }
        None => Ok(config
            .registries
            .values()
            .find(|c| c.address == image.registry())),
    }
}

impl Deployer<'_> {
    pub(crate) fn update(&mut self) -> &mut Update {
        self.journal
            .update_mut()
            .expect("callers record an update before changing it")
    }

    pub(crate) fn save(&mut self, point: &str) -> Result<()> {
        self.journal.save(point)?;
        Ok(())
    }
}

#[cfg(test)]
#[path = "executor_tests.rs"]
mod tests;
