//! A small in-memory engine for the executor's unit tests. It keeps the
//! rules the real engine enforces where the module relies on them (unique
//! names, images in use cannot go, pulls by digest), can fail any call, and
//! records every mutating call.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::time::Duration;

use docker_spec::ImageRef;

use super::{
    Container, CreateRequest, Credentials, DataRoot, Engine, EngineError, ErrorKind, Health, Image,
    ImageEntry, MountUse, Network, NetworkRequest, Result,
};
use crate::labels;

#[derive(Debug, Clone)]
pub struct FakeImage {
    pub id: String,
    pub refs: Vec<String>,
    /// Diff IDs, bottom first.
    pub layers: Vec<String>,
}

#[derive(Debug, Default)]
pub struct FakeEngine {
    pub containers: Vec<Container>,
    pub images: Vec<FakeImage>,
    /// What a pull can fetch: pinned reference → image id.
    pub registry: BTreeMap<String, String>,
    pub volumes: BTreeSet<String>,
    /// Mutating calls, e.g. `create web`, `stop web`.
    pub calls: Vec<String>,
    /// Mutating calls so far, for `fail_at`.
    pub mutations: usize,
    /// Fail the n-th mutating call (1-based) with an engine error.
    pub fail_at: Option<usize>,
    /// Containers (by their name label) that exit at once when started.
    pub exits_on_start: BTreeSet<String>,
    /// Containers (by name label) that report this health once started.
    pub health_on_start: BTreeMap<String, Health>,
    pub free_bytes: Option<u64>,
    /// Credentials each pull came with (address, user), never the password.
    pub pulls_with: Vec<Option<(String, String)>>,
    /// A load a killed process left behind: the engine reports it in
    /// progress for this many more questions, then these images appear.
    pub loading_polls: u32,
    pub late_images: Vec<FakeImage>,
    /// Networks by name, with their labels.
    pub networks: BTreeMap<String, BTreeMap<String, String>>,
    /// (network, container id) attachments made by `connect_network`.
    pub connected: BTreeSet<(String, String)>,
    next_id: u32,
}

impl FakeEngine {
    pub fn new() -> FakeEngine {
        FakeEngine {
            free_bytes: Some(u64::MAX / 2),
            ..Default::default()
        }
    }

    /// Makes `image` pullable.
    pub fn publish(&mut self, image: &ImageRef) -> String {
        let repo = image.repository.rsplit('/').next().unwrap_or_default();
        let id = format!("sha256:img-{repo}-{}", &image.digest[7..15]);
        self.registry.insert(image.pinned(), id.clone());
        id
    }

    /// Puts a container not made by the module, running.
    pub fn foreign(&mut self, name: &str, image_id: &str) -> String {
        self.next_id += 1;
        let id = format!("foreign{:04}", self.next_id);
        let mut c = Container::new(&id, name);
        c.image_id = image_id.to_owned();
        c.running = true;
        self.containers.push(c);
        id
    }

    /// A local image with no registry reference (e.g. built on the device).
    pub fn local_image(&mut self, id: &str, reference: &str) {
        self.images.push(FakeImage {
            id: id.to_owned(),
            refs: vec![reference.to_owned()],
            layers: Vec::new(),
        });
    }

    pub fn by_name(&self, name: &str) -> Option<&Container> {
        self.containers.iter().find(|c| c.name == name)
    }

    pub fn running_names(&self) -> Vec<String> {
        let mut v: Vec<String> = self
            .containers
            .iter()
            .filter(|c| c.running)
            .map(|c| c.name.clone())
            .collect();
        v.sort();
        v
    }

    pub fn all_names(&self) -> Vec<String> {
        let mut v: Vec<String> = self.containers.iter().map(|c| c.name.clone()).collect();
        v.sort();
        v
    }

    pub fn has_image(&self, reference: &str) -> bool {
        self.images
            .iter()
            .any(|i| i.refs.iter().any(|r| r == reference))
    }

    fn add_image(&mut self, id: &str) {
        if !self.images.iter().any(|i| i.id == id) {
            self.images.push(FakeImage {
                id: id.to_owned(),
                refs: vec![id.to_owned()],
                layers: Vec::new(),
            });
        }
    }

    /// `repo:tag` → image id, what `docker images` shows.
    pub fn tags(&self) -> BTreeMap<String, String> {
        self.images
            .iter()
            .flat_map(|i| {
                i.refs
                    .iter()
                    .filter(|r| is_tag(r))
                    .map(move |r| (r.clone(), i.id.clone()))
            })
            .collect()
    }

    fn find(&self, target: &str) -> Option<usize> {
        self.containers
            .iter()
            .position(|c| c.id == target || c.name == target)
    }

    fn mutate(&mut self, call: String) -> Result<()> {
        self.mutations += 1;
        if self.fail_at == Some(self.mutations) {
            return Err(EngineError::new(
                "fake",
                &call,
                ErrorKind::Other,
                "injected failure",
            ));
        }
        self.calls.push(call);
        Ok(())
    }

    fn missing(op: &'static str, target: &str) -> EngineError {
        EngineError::new(op, target, ErrorKind::NotFound, "no such object")
    }
}

impl Engine for FakeEngine {
    fn containers(&mut self) -> Result<Vec<Container>> {
        Ok(self.containers.clone())
    }

    fn container(&mut self, id_or_name: &str) -> Result<Option<Container>> {
        Ok(self.find(id_or_name).map(|i| self.containers[i].clone()))
    }

    fn image(&mut self, reference: &str) -> Result<Option<Image>> {
        Ok(self
            .images
            .iter()
            .find(|i| i.id == reference || i.refs.iter().any(|r| r == reference))
            .map(|i| Image {
                id: i.id.clone(),
                repo_digests: i.refs.iter().filter(|r| r.contains('@')).cloned().collect(),
                layers: i.layers.clone(),
            }))
    }

    fn image_ids(&mut self) -> Result<BTreeSet<String>> {
        Ok(self.images.iter().map(|i| i.id.clone()).collect())
    }

    /// A fake archive is a tar whose `ids` entry lists one image ID per
    /// line; a line `corrupt` makes the engine refuse it after reading it
    /// all, as a real engine refuses a layer whose digest does not match. A
    /// manifest that still carries tags is refused: the module must strip them.
    fn load(&mut self, archive: &mut dyn Read) -> Result<Vec<String>> {
        let fail = |m: String| EngineError::new("load", "archive", ErrorKind::Other, m);
        let mut bytes = Vec::new();
        archive
            .read_to_end(&mut bytes)
            .map_err(|e| fail(e.to_string()))?;
        self.mutate("load".to_owned())?;
        let mut text = String::new();
        let mut tar = tar::Archive::new(bytes.as_slice());
        for entry in tar.entries().map_err(|e| fail(e.to_string()))? {
            let mut entry = entry.map_err(|e| fail(e.to_string()))?;
            let name = entry
                .path()
                .map_err(|e| fail(e.to_string()))?
                .display()
                .to_string();
            let mut data = String::new();
            entry
                .read_to_string(&mut data)
                .map_err(|e| fail(e.to_string()))?;
            match name.as_str() {
                "ids" => text = data,
                "manifest.json" if data.contains("RepoTags") => {
                    return Err(fail("the fake refuses tagged manifests".into()))
                }
                "repositories" => return Err(fail("repositories must be dropped".into())),
                _ => {}
            }
        }
        if text.lines().any(|l| l == "corrupt") {
            return Err(fail("invalid diffID for layer 0".into()));
        }
        let mut loaded = Vec::new();
        for line in text.lines().filter(|l| !l.is_empty()) {
            // `tag ID REPO:TAG`: an engine that tags what it loads, as one
            // would for a manifest the filter failed to strip.
            if let Some(rest) = line.strip_prefix("tag ") {
                let (id, tag) = rest.split_once(' ').unwrap_or((rest, ""));
                self.add_image(id);
                self.tag(id, tag)?;
                loaded.push(format!("tagged {tag}"));
                continue;
            }
            self.add_image(line);
            loaded.push(line.to_owned());
        }
        Ok(loaded)
    }

    fn pull(&mut self, image: &ImageRef, credentials: Option<&Credentials>) -> Result<()> {
        let pinned = image.pinned();
        self.mutate(format!("pull {pinned}"))?;
        self.pulls_with
            .push(credentials.map(|c| (c.address.clone(), c.username.clone())));
        let Some(id) = self.registry.get(&pinned).cloned() else {
            return Err(Self::missing("pull", &pinned));
        };
        match self.images.iter_mut().find(|i| i.id == id) {
            Some(i) => {
                if !i.refs.contains(&pinned) {
                    i.refs.push(pinned)
                }
            }
            None => self.images.push(FakeImage {
                id,
                refs: vec![pinned],
                layers: Vec::new(),
            }),
        }
        Ok(())
    }

    fn create(&mut self, request: &CreateRequest) -> Result<String> {
        self.mutate(format!("create {}", request.name))?;
        if self.find(&request.name).is_some() {
            return Err(EngineError::new(
                "create container",
                &request.name,
                ErrorKind::Conflict,
                "name in use",
            ));
        }
        let pinned = request.spec.image.pinned();
        let image_id = self
            .images
            .iter()
            .find(|i| i.refs.contains(&pinned))
            .map(|i| i.id.clone())
            .ok_or_else(|| Self::missing("create container", &pinned))?;
        self.next_id += 1;
        let id = format!("c{:04}", self.next_id);
        let spec = &request.spec;
        let mut c = Container::new(&id, &request.name);
        c.labels = request.labels.clone();
        c.image_id = image_id;
        c.network_mode = match spec.networks.keys().next() {
            // Created on its first network, as the engine would be.
            Some(first) => {
                if !self.networks.contains_key(first) {
                    return Err(EngineError::new(
                        "create container",
                        &request.name,
                        ErrorKind::NotFound,
                        format!("network {first} not found"),
                    ));
                }
                first.clone()
            }
            None => spec
                .network_mode
                .clone()
                .unwrap_or_else(|| "default".into()),
        };
        c.published = spec
            .published_ports()
            .map(|(p, proto)| (p, proto.to_owned()))
            .collect();
        c.devices = spec.devices.iter().map(|d| d.host.clone()).collect();
        for b in &spec.binds {
            c.mounts.push(MountUse {
                source: b.source.clone(),
                named_volume: false,
                read_write: !b.read_only(),
            });
        }
        for v in &spec.volumes {
            self.volumes.insert(v.name.clone());
            c.mounts.push(MountUse {
                source: v.name.clone(),
                named_volume: true,
                read_write: !v.read_only,
            });
        }
        self.containers.push(c);
        Ok(id)
    }

    fn start(&mut self, id_or_name: &str) -> Result<()> {
        let i = self
            .find(id_or_name)
            .ok_or_else(|| Self::missing("start container", id_or_name))?;
        let name = self.containers[i].name.clone();
        self.mutate(format!("start {name}"))?;
        let c = &mut self.containers[i];
        let logical = c.label(labels::NAME).unwrap_or(&c.name).to_owned();
        if self.exits_on_start.contains(&logical) {
            c.running = false;
            c.exit_code = 1;
        } else {
            c.running = true;
            c.exit_code = 0;
            if let Some(h) = self.health_on_start.get(&logical) {
                c.health = h.clone();
            }
        }
        Ok(())
    }

    fn stop(&mut self, id_or_name: &str, _timeout: Duration) -> Result<()> {
        let i = self
            .find(id_or_name)
            .ok_or_else(|| Self::missing("stop container", id_or_name))?;
        let name = self.containers[i].name.clone();
        self.mutate(format!("stop {name}"))?;
        self.containers[i].running = false;
        Ok(())
    }

    fn rename(&mut self, id_or_name: &str, new_name: &str) -> Result<()> {
        let i = self
            .find(id_or_name)
            .ok_or_else(|| Self::missing("rename container", id_or_name))?;
        let name = self.containers[i].name.clone();
        self.mutate(format!("rename {name} {new_name}"))?;
        if self.containers.iter().any(|c| c.name == new_name) {
            return Err(EngineError::new(
                "rename container",
                id_or_name,
                ErrorKind::Conflict,
                "name in use",
            ));
        }
        self.containers[i].name = new_name.to_owned();
        Ok(())
    }

    fn remove_container(&mut self, id_or_name: &str) -> Result<()> {
        let Some(i) = self.find(id_or_name) else {
            return Ok(());
        };
        let name = self.containers[i].name.clone();
        self.mutate(format!("remove {name}"))?;
        self.containers.remove(i);
        Ok(())
    }

    fn remove_image(&mut self, reference: &str) -> Result<()> {
        let Some(i) = self
            .images
            .iter()
            .position(|i| i.refs.iter().any(|r| r == reference))
        else {
            return Ok(());
        };
        self.mutate(format!("rmi {reference}"))?;
        let id = self.images[i].id.clone();
        if self.images[i].refs.len() == 1 && self.containers.iter().any(|c| c.image_id == id) {
            return Err(EngineError::new(
                "remove image",
                reference,
                ErrorKind::Conflict,
                "image is in use by a container",
            ));
        }
        self.images[i].refs.retain(|r| r != reference);
        if self.images[i].refs.is_empty() {
            self.images.remove(i);
        }
        Ok(())
    }

    fn images(&mut self) -> Result<Vec<ImageEntry>> {
        Ok(self
            .images
            .iter()
            .map(|i| ImageEntry {
                id: i.id.clone(),
                tags: i.refs.iter().filter(|r| is_tag(r)).cloned().collect(),
                digests: i.refs.iter().filter(|r| r.contains('@')).cloned().collect(),
            })
            .collect())
    }

    fn tag(&mut self, id: &str, tag: &str) -> Result<()> {
        if !self.images.iter().any(|i| i.id == id) {
            return Err(Self::missing("tag image", id));
        }
        self.mutate(format!("tag {id} {tag}"))?;
        for i in &mut self.images {
            i.refs.retain(|r| r != tag);
        }
        let i = self
            .images
            .iter_mut()
            .find(|i| i.id == id)
            .expect("checked");
        i.refs.push(tag.to_owned());
        Ok(())
    }

    fn remove_image_forced(&mut self, id: &str) -> Result<()> {
        let Some(i) = self.images.iter().position(|i| i.id == id) else {
            return Ok(());
        };
        self.mutate(format!("rmi -f {id}"))?;
        self.images.remove(i);
        Ok(())
    }

    fn loads_in_progress(&mut self) -> Result<Option<bool>> {
        if self.loading_polls == 0 {
            return Ok(Some(false));
        }
        self.loading_polls -= 1;
        if self.loading_polls == 0 {
            let late = std::mem::take(&mut self.late_images);
            self.images.extend(late);
        }
        Ok(Some(true))
    }

    fn stack_networks(&mut self, stack: &str) -> Result<Vec<Network>> {
        Ok(self
            .networks
            .iter()
            .filter(|(_, labels)| {
                labels.get(crate::labels::STACK).map(String::as_str) == Some(stack)
            })
            .map(|(name, labels)| Network {
                name: name.clone(),
                labels: Some(labels.clone()),
            })
            .collect())
    }

    fn network_exists(&mut self, name: &str) -> Result<bool> {
        Ok(self.networks.contains_key(name))
    }

    fn create_network(&mut self, request: &NetworkRequest) -> Result<()> {
        if self.networks.contains_key(&request.name) {
            return Ok(());
        }
        self.mutate(format!("create network {}", request.name))?;
        self.networks
            .insert(request.name.clone(), request.labels.clone());
        Ok(())
    }

    fn connect_network(
        &mut self,
        network: &str,
        container: &str,
        _aliases: &[String],
    ) -> Result<()> {
        self.mutate(format!("connect {container} {network}"))?;
        if !self.networks.contains_key(network) {
            return Err(EngineError::new(
                "connect",
                container,
                ErrorKind::NotFound,
                "no such network",
            ));
        }
        let id = self
            .find(container)
            .map(|i| self.containers[i].id.clone())
            .ok_or_else(|| {
                EngineError::new(
                    "connect",
                    container,
                    ErrorKind::NotFound,
                    "no such container",
                )
            })?;
        self.connected.insert((network.to_owned(), id));
        Ok(())
    }

    fn remove_network(&mut self, name: &str) -> Result<()> {
        if !self.networks.contains_key(name) {
            return Ok(());
        }
        self.mutate(format!("rmn {name}"))?;
        if self.containers.iter().any(|c| {
            c.running
                && (c.network_mode == name
                    || self.connected.contains(&(name.to_owned(), c.id.clone())))
        }) {
            return Err(EngineError::new(
                "remove network",
                name,
                ErrorKind::Conflict,
                "has active endpoints",
            ));
        }
        self.networks.remove(name);
        Ok(())
    }

    fn remove_volume(&mut self, name: &str) -> Result<()> {
        if !self.volumes.contains(name) {
            return Ok(());
        }
        self.mutate(format!("rmv {name}"))?;
        if self
            .containers
            .iter()
            .any(|c| c.mounts.iter().any(|m| m.named_volume && m.source == name))
        {
            return Err(EngineError::new(
                "remove volume",
                name,
                ErrorKind::Conflict,
                "volume is in use",
            ));
        }
        self.volumes.remove(name);
        Ok(())
    }

    fn data_root(&mut self) -> Result<DataRoot> {
        Ok(DataRoot {
            path: "/fake/docker".into(),
            free_bytes: self.free_bytes,
        })
    }
}

/// A `REPO:TAG` reference, as opposed to an ID or a `REPO@DIGEST`.
fn is_tag(reference: &str) -> bool {
    !reference.starts_with("sha256:") && !reference.contains('@')
}
