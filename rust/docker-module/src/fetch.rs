//! Download's own work, after the phase plan has settled what an earlier
//! deployment left: the checks against the device, the disk check, pulls by
//! digest and inline archive loads. Nothing stops here.

use std::collections::BTreeSet;
use std::time::Instant;

use docker_spec::{ImageLayers, ImageRef, InlineArchive, Release};
use mender_module_protocol::signal;

use crate::archive::TagStripper;
use crate::executor::{
    bounded, credentials_for, drain, join, mib, release_images, DeployError, Deployer, Incoming,
    PayloadSource, Result,
};
use crate::journal::{Phase, Update};
use crate::plan::{self, Action};
use crate::{fault, load_guard, log};

impl Deployer<'_> {
    /// Download: validate against the device, check the disk, pull by digest
    /// and verify. Stops nothing.
    ///
    /// `payloads` is the client's stream when the module streams (inline
    /// archives are loaded here), `None` when the client stores the payloads
    /// (ArtifactInstall loads them).
    pub fn download(
        &mut self,
        release: &Release,
        payloads: Option<&mut dyn PayloadSource>,
    ) -> Result<()> {
        let images = release_images(release);
        let pinned: Vec<String> = images.iter().map(|i| i.pinned()).collect();
        for image in &images {
            credentials_for(release, self.config, image)?;
        }
        self.run_steps(Action::Download, &pinned)?;

        let mut missing: Vec<&ImageRef> = Vec::new();
        for image in &images {
            match self.engine.image(&image.pinned())? {
                Some(found) if found.has_digest(image) => {
                    log!("image {image} is already on the device")
                }
                _ => missing.push(image),
            }
        }
        // Refuse now what ArtifactInstall would refuse (a name in use by a
        // container the module does not manage, …): nothing has changed yet.
        let containers = self.engine.containers()?;
        crate::policy::enforce(release, self.config, &containers)?;
        plan::install(release, "check", &containers)?;
        crate::executor::check_device_files(release, self.config)?;
        self.check_base_layers(release, &missing)?;
        for n in release.networks.iter().filter(|n| n.external) {
            if !self.engine.network_exists(&n.engine)? {
                return Err(DeployError::Refused(format!(
                    "network {} (docker-stack.networks.{}) is external, so the module does not create it, and the engine has no network of that name; create it on the device (docker network create {}) or drop external",
                    n.engine, n.key, n.engine
                )));
            }
        }
        let (to_load, to_pull): (Vec<&ImageRef>, Vec<&ImageRef>) =
            missing.iter().partition(|i| i.inline);
        self.check_disk(release, &to_pull, &to_load)?;

        let artifact = self.artifact.to_owned();
        let mut update = match self.journal.state.update.take() {
            Some(u) if u.artifact == artifact => u,
            _ => Update::new(&artifact),
        };
        update.phase = Phase::Download;
        update.images = pinned;
        for m in &missing {
            let p = m.pinned();
            if !update.pulled.contains(&p) {
                update.pulled.push(p);
            }
        }
        self.journal.state.update = Some(update);
        self.save("download")?;
        // Room for the records a rollback writes, set aside while there is room.
        self.journal.reserve()?;

        match payloads {
            Some(source) => self.load_inline(release, source)?,
            None if !to_load.is_empty() => log!(
                "the client stores the payloads; ArtifactInstall loads the {} inline image(s)",
                to_load.len()
            ),
            None => {}
        }
        for (n, image) in to_pull.iter().enumerate() {
            signal::check()?;
            let creds = credentials_for(release, self.config, image)?;
            log!(
                "pulling {image} ({}/{}){}",
                n + 1,
                to_pull.len(),
                if creds.is_some() {
                    " with the configured registry credentials"
                } else {
                    ""
                }
            );
            self.engine.pull(image, creds)?;
            fault::point("after-pull");
            match self.engine.image(&image.pinned())? {
                Some(found) if found.has_digest(image) => {}
                Some(found) => {
                    return Err(DeployError::Refused(format!(
                        "pulled {image}, but the engine lists its digests as {:?}; the registry served something else, refusing it",
                        found.repo_digests
                    )))
                }
                None => {
                    return Err(DeployError::Refused(format!(
                        "pulled {image}, but the engine does not have it afterwards"
                    )))
                }
            }
        }
        log!(
            "release {} of stack {}: {} container(s), {} image(s) ready",
            self.artifact,
            release.stack,
            release.containers.len(),
            images.len()
        );
        Ok(())
    }

    /// A delta archive (`docker-artifact-gen --base`) leaves out the bottom
    /// layers of its images. The engine's loader takes a left-out layer from
    /// its own store only when it holds the same stack of layers below it
    /// (the chain ID); otherwise the load fails half way. Refused here
    /// instead, before anything changes, naming the first missing layer.
    fn check_base_layers(&mut self, release: &Release, missing: &[&ImageRef]) -> Result<()> {
        let needs: Vec<(&InlineArchive, &ImageLayers)> = release
            .inline
            .iter()
            .flat_map(|a| a.layers.iter().map(move |l| (a, l)))
            .filter(|(_, l)| !l.on_device.is_empty())
            .filter(|(_, l)| missing.iter().any(|i| i.inline && i.digest == l.image))
            .collect();
        if needs.is_empty() {
            return Ok(());
        }
        let mut stacks = Vec::new();
        for id in self.engine.image_ids()? {
            if let Some(image) = self.engine.image(&id)? {
                stacks.push(image.layers);
            }
        }
        for (archive, l) in &needs {
            if let Some((n, layer)) = first_missing(&l.on_device, &stacks) {
                return Err(DeployError::Refused(format!(
                    "inline archive {} is a delta: it leaves out layer {} of image {} ({} of the {} layers it expects on the device), and no image on the device has that layer over the same layers; the device lacks its base release's images, so deploy the full artifact (docker-artifact-gen --inline without --base)",
                    archive.payload,
                    layer,
                    l.image,
                    n + 1,
                    l.on_device.len()
                )));
            }
        }
        let left_out: usize = needs.iter().map(|(_, l)| l.on_device.len()).sum();
        log!("the {left_out} layer(s) the delta's inline archives leave out are on the device");
        Ok(())
    }

    /// What the images still to fetch need against the free space of the
    /// engine's data root: the size hints of registry images, and twice each
    /// inline archive (the engine unpacks the archive in its data root before
    /// it registers the layers). What has no size is named in the log: the
    /// check cannot cover it.
    pub(crate) fn check_disk(
        &mut self,
        release: &Release,
        to_pull: &[&ImageRef],
        to_load: &[&ImageRef],
    ) -> Result<()> {
        let mut need = 0u64;
        let mut unknown = Vec::new();
        for image in to_pull {
            let hint = release
                .containers
                .iter()
                .filter(|c| &c.image == *image)
                .filter_map(|c| c.size)
                .max();
            match hint {
                Some(s) => need = need.saturating_add(s),
                None => unknown.push(format!("image {image} has no size hint")),
            }
        }
        for archive in release.inline.iter().filter(|a| {
            a.images
                .iter()
                .any(|id| to_load.iter().any(|i| i.digest == *id))
        }) {
            match archive.size {
                Some(s) => need = need.saturating_add(s.saturating_mul(2)),
                // Checked again when the client announces the payload's size.
                None => unknown.push(format!(
                    "inline archive {} states no size (checked again if the client announces it)",
                    archive.payload
                )),
            }
        }
        self.check_free(need, "the images still to fetch", &unknown)
    }

    pub(crate) fn check_free(&mut self, need: u64, what: &str, unknown: &[String]) -> Result<()> {
        for u in unknown {
            log!("disk check: {u}, so the check cannot cover it");
        }
        if need == 0 {
            return Ok(());
        }
        let root = self.engine.data_root()?;
        match root.free_bytes {
            None => log!(
                "disk check: cannot examine the engine's data root {} from here; skipped",
                root.path.display()
            ),
            Some(free) if need > free => {
                return Err(DeployError::Refused(format!(
                    "not enough disk space for {what}: {} needed but the engine's data root {} has {} free; free space there (e.g. remove unused images) and retry",
                    mib(need),
                    root.path.display(),
                    mib(free)
                )))
            }
            Some(free) => log!(
                "disk check for {what}: {} needed, {} free on {}",
                mib(need),
                mib(free),
                root.path.display()
            ),
        }
        Ok(())
    }

    /// Streams every inline archive whose images are not all on the device
    /// into the engine and checks it loaded exactly the listed IDs. Other
    /// payloads are read and ignored. What a refused archive added is removed
    /// at once; what a good one added is in the journal's `pulled`, so a
    /// failed update removes it too.
    pub fn load_inline(&mut self, release: &Release, source: &mut dyn PayloadSource) -> Result<()> {
        // A Download of this artifact run again after a killed one.
        self.undo_interrupted_load()?;
        let mut seen: Vec<String> = Vec::new();
        while let Some(mut p) = source.next_payload()? {
            let result = match release.inline_archive(&p.name) {
                Some(archive) => {
                    seen.push(p.name.clone());
                    self.load_archive(archive, &mut p)
                }
                None => {
                    log!(
                        "ignoring payload file {}: the release lists no inline archive of that name",
                        bounded(&p.name, 80)
                    );
                    Ok(())
                }
            };
            drain(&mut p.reader);
            result?;
        }
        for archive in &release.inline {
            if seen.contains(&archive.payload) {
                continue;
            }
            let absent: Vec<&String> = self.absent_ids(archive)?;
            if !absent.is_empty() {
                return Err(DeployError::Refused(format!(
                    "the artifact has no payload file {} but its images {} are not on the device; rebuild the artifact with the archive (docker-artifact-gen --inline)",
                    archive.payload,
                    join(&absent)
                )));
            }
        }
        Ok(())
    }

    pub(crate) fn absent_ids<'r>(&mut self, archive: &'r InlineArchive) -> Result<Vec<&'r String>> {
        let mut absent = Vec::new();
        for id in &archive.images {
            match self.engine.image(id)? {
                Some(found) if found.id == *id => {}
                _ => absent.push(id),
            }
        }
        Ok(absent)
    }

    pub(crate) fn load_archive(
        &mut self,
        archive: &InlineArchive,
        p: &mut Incoming<'_>,
    ) -> Result<()> {
        signal::check()?;
        let absent = self.absent_ids(archive)?;
        if absent.is_empty() {
            log!(
                "inline archive {}: its {} image(s) are on the device already",
                archive.payload,
                archive.images.len()
            );
            return Ok(());
        }
        if let (Some(stated), Some(announced)) = (archive.size, p.size) {
            if stated != announced {
                return Err(DeployError::Refused(format!(
                    "payload {} is {announced} bytes but the artifact's meta-data states {stated}; the artifact is inconsistent, rebuild it",
                    archive.payload
                )));
            }
        }
        let size = archive.size.or(p.size);
        if archive.size.is_none() {
            if let Some(s) = size {
                self.check_free(
                    s.saturating_mul(2),
                    &format!("inline archive {}", archive.payload),
                    &[],
                )?;
            }
        }
        // Journaled first: a process killed anywhere in the load leaves the
        // next state what to put back (see load_guard).
        let before = self.begin_load(&archive.payload)?;
        log!(
            "loading inline archive {}{} into the engine: {}",
            archive.payload,
            size.map(|s| format!(" ({})", mib(s))).unwrap_or_default(),
            join(&absent)
        );
        let started = Instant::now();
        let mut filter = TagStripper::new(&mut p.reader, size);
        let answer = self.engine.load(&mut filter);
        let bytes = filter.summary().bytes;
        fault::point("after-load");
        // Judged from what the engine holds, not from its answer: a load that
        // failed half way may still have added images or moved tags.
        let after = self.engine.images()?;
        let changed = load_guard::diff(&before, &after);
        let unexpected: Vec<&String> = changed
            .added
            .iter()
            .filter(|id| !archive.images.contains(id))
            .collect();
        let present: BTreeSet<&str> = after.iter().map(|i| i.id.as_str()).collect();
        let still_absent: Vec<&String> = archive
            .images
            .iter()
            .filter(|id| !present.contains(id.as_str()))
            .collect();
        let good = answer.is_ok()
            && unexpected.is_empty()
            && still_absent.is_empty()
            && changed.tags.is_empty();
        // What a refused load added goes now, all of it; a good one keeps the
        // listed images (the journal's `pulled` has them for a failed update).
        let keep: &[String] = if good { &archive.images } else { &[] };
        let left = self.put_back(&before, keep)?;
        self.end_load()?;
        if let Err(e) = answer {
            return Err(DeployError::Refused(format!(
                "inline archive {} was refused: {}; the artifact is damaged or was modified, nothing of it is kept",
                archive.payload,
                bounded(&e.message, 160)
            )));
        }
        if !changed.tags.is_empty() {
            let tags: Vec<&str> = changed.tags.iter().map(|c| c.tag.as_str()).collect();
            return Err(DeployError::Refused(format!(
                "inline archive {} made the engine change tags ({}); {}; the archive was crafted, nothing of it is kept",
                archive.payload,
                load_guard::few(&tags),
                if left.is_empty() {
                    "they were put back".to_owned()
                } else {
                    format!("not put back: {}", load_guard::few(&left))
                }
            )));
        }
        if !unexpected.is_empty() || !still_absent.is_empty() {
            return Err(DeployError::Refused(format!(
                "inline archive {} holds {} instead of {}: it is not the archive the artifact's meta-data describes (modified or replaced), nothing of it is kept",
                archive.payload,
                if unexpected.is_empty() { "no other image".to_owned() } else { load_guard::few(&unexpected) },
                load_guard::few(&still_absent)
            )));
        }
        let secs = started.elapsed().as_secs_f64().max(1e-3);
        log!(
            "loaded inline archive {}: {} image(s), {} in {secs:.1} s ({:.1} MiB/s)",
            archive.payload,
            archive.images.len(),
            mib(bytes),
            bytes as f64 / secs / (1024.0 * 1024.0)
        );
        Ok(())
    }
}

/// The first layer of `needed` (bottom first) that no stack in `engine`
/// holds at the same place over the same layers, with its index.
pub(crate) fn first_missing<'a>(
    needed: &'a [String],
    engine: &[Vec<String>],
) -> Option<(usize, &'a String)> {
    let held = engine
        .iter()
        .map(|stack| {
            needed
                .iter()
                .zip(stack)
                .take_while(|(want, have)| want == have)
                .count()
        })
        .max()
        .unwrap_or(0);
    needed.get(held).map(|layer| (held, layer))
}

#[cfg(test)]
mod tests {
    use super::first_missing;

    fn v(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn a_left_out_layer_counts_only_over_the_same_layers_below_it() {
        let needed = v(&["a", "b", "c"]);
        let cases: Vec<(Vec<Vec<String>>, Option<usize>)> = vec![
            (vec![], Some(0)),
            (vec![v(&["a", "b", "c"])], None),
            // A longer image on top of the same stack holds it too.
            (vec![v(&["a", "b", "c", "d"])], None),
            // The longest match of any image counts.
            (vec![v(&["a"]), v(&["a", "b"]), v(&["x"])], Some(2)),
            // The same layer over other layers is another layer to the engine.
            (vec![v(&["x", "b", "c"])], Some(0)),
            (vec![v(&["a", "x", "c"])], Some(1)),
            // Pieces from several images do not add up.
            (vec![v(&["a", "b"]), v(&["x", "y", "c"])], Some(2)),
        ];
        for (engine, want) in cases {
            let got = first_missing(&needed, &engine).map(|(n, l)| {
                assert_eq!(l, &needed[n]);
                n
            });
            assert_eq!(got, want, "engine {engine:?}");
        }
        assert_eq!(
            first_missing(&[], &[]),
            None,
            "a full archive needs nothing"
        );
    }
}
