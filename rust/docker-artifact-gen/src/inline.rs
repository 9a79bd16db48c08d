//! `--inline`: every image of the release travels in the artifact as a
//! payload file. Images the local engine holds go into one `images.tar`
//! (the engine's export); `docker-archive:PATH` and `oci-archive:PATH` files
//! become payloads of their own. Every payload is a normalised tar (see
//! `archive`). Containers name their image by ID:
//! `REPOSITORY[:TAG]@sha256:<image ID>`.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Result};
use docker_spec::ImageRef;
use serde_json::{json, Value};

use crate::archive::{Archive, BaseLayers, Kind};
use crate::resolve::{split_reference, Resolver};

/// The payload holding the images exported from the local engine.
pub const ENGINE_PAYLOAD: &str = "images.tar";

/// One payload file and the image IDs it carries.
#[derive(Debug)]
pub struct Payload {
    pub name: String,
    pub images: Vec<String>,
    source: Option<Archive>,
}

impl Payload {
    /// Writes the payload as `dir/<name>` (a normalised tar, see
    /// [`Archive::write_to`]); against a `base`, without the layers a device
    /// at the base holds.
    pub fn write(
        &self,
        dir: &Path,
        resolver: &mut Resolver,
        mtime: u64,
        base: Option<&BaseLayers>,
    ) -> Result<Written> {
        let dest = dir.join(&self.name);
        match &self.source {
            Some(archive) => write_archive(archive.clone(), &dest, mtime, base),
            None => {
                // The engine's export is normalised like any archive: its
                // tar headers are the engine's choice, not the images'. That
                // needs the export on disk a second time until it is
                // rewritten (beside the output, not in /tmp).
                let export = dir.join(format!(".{}.export", self.name));
                resolver.export(&self.images, &export)?;
                let written = self.write_export(&export, &dest, mtime, base);
                let _ = fs::remove_file(&export);
                written
            }
        }
    }

    fn write_export(
        &self,
        export: &Path,
        dest: &Path,
        mtime: u64,
        base: Option<&BaseLayers>,
    ) -> Result<Written> {
        // The engine's own archive must hold exactly what the meta-data lists.
        let saved = Archive::read(export, Kind::Docker)
            .map_err(|e| anyhow!("the engine's export is unusable: {e:#}"))?;
        let got: BTreeSet<&str> = saved.images.iter().map(|i| i.id.as_str()).collect();
        let want: BTreeSet<&str> = self.images.iter().map(String::as_str).collect();
        if got != want {
            bail!(
                "the engine exported the images {} instead of {}; was an image removed or \
                 retagged meanwhile? run the generator again",
                got.into_iter().collect::<Vec<_>>().join(", "),
                want.into_iter().collect::<Vec<_>>().join(", ")
            );
        }
        write_archive(saved, dest, mtime, base)
    }

    /// The meta-data's `inline` entry, keyed by the payload's name: for a
    /// delta, each image's layers, those left out (`on_device`) and those
    /// carried (`inline`).
    pub fn entry(&self, written: &Written) -> Value {
        let mut entry = json!({"images": self.images, "size": written.size});
        if let Some(layers) = &written.layers {
            let by_image: serde_json::Map<String, Value> = layers
                .iter()
                .filter(|(_, ids, _)| !ids.is_empty())
                .map(|(id, ids, left_out)| {
                    let (on_device, inline) = ids.split_at(*left_out);
                    (
                        id.clone(),
                        json!({"on_device": on_device, "inline": inline}),
                    )
                })
                .collect();
            entry["layers"] = Value::Object(by_image);
        }
        entry
    }
}

/// A payload as written.
#[derive(Debug)]
pub struct Written {
    pub size: u64,
    /// Against a base: each image's ID, diff IDs and how many bottom layers
    /// were left out.
    pub layers: Option<Vec<(String, Vec<String>, usize)>>,
}

impl Written {
    /// Left-out and total layers, over the payload's images.
    pub fn counts(&self) -> (usize, usize) {
        self.layers
            .iter()
            .flatten()
            .fold((0, 0), |(out, all), (_, ids, n)| (out + n, all + ids.len()))
    }
}

fn write_archive(
    mut archive: Archive,
    dest: &Path,
    mtime: u64,
    base: Option<&BaseLayers>,
) -> Result<Written> {
    let layers = match base {
        Some(base) => Some(archive.leave_out(base)?),
        None => None,
    };
    let size = archive.write_to(dest, mtime)?;
    Ok(Written { size, layers })
}

/// Collects the images of a release and pins each to its image ID.
pub struct Inliner<'r> {
    resolver: &'r mut Resolver,
    engine_ids: Vec<String>,
    archives: Vec<Payload>,
    /// Archive files already read: path → pinned reference.
    files: Vec<(PathBuf, String)>,
}

impl<'r> Inliner<'r> {
    pub fn resolver(&mut self) -> &mut Resolver {
        self.resolver
    }

    pub fn new(resolver: &'r mut Resolver) -> Inliner<'r> {
        Inliner {
            resolver,
            engine_ids: Vec::new(),
            archives: Vec::new(),
            files: Vec::new(),
        }
    }

    /// `REPOSITORY[:TAG]@sha256:<image ID>` for an engine reference (tag,
    /// name, ID) or a `docker-archive:`/`oci-archive:` file.
    pub fn pin(&mut self, image: &str) -> Result<String> {
        match Kind::split(image) {
            Some((kind, path)) => self.pin_file(kind, Path::new(path)),
            None => {
                let (id, tags) = self.resolver.local_image(image)?;
                let name = engine_display(image, &id, &tags);
                let pinned = format!("{name}@{id}");
                ImageRef::parse(&pinned).map_err(|e| anyhow!("{image}: {e}"))?;
                if !self.engine_ids.contains(&id) {
                    self.engine_ids.push(id);
                }
                Ok(pinned)
            }
        }
    }

    fn pin_file(&mut self, kind: Kind, path: &Path) -> Result<String> {
        if path.as_os_str().is_empty() {
            bail!(
                "{} names no file; write {}PATH",
                kind.prefix(),
                kind.prefix()
            );
        }
        let key = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_owned());
        if let Some((_, pinned)) = self.files.iter().find(|(p, _)| *p == key) {
            return Ok(pinned.clone());
        }
        let archive = Archive::read_one(path, kind)?;
        let image = archive.images[0].clone();
        let pinned = format!("{}@{}", image.name, image.id);
        ImageRef::parse(&pinned).map_err(|e| anyhow!("{}: {e}", path.display()))?;
        // The same image from another file travels once.
        if !self.archives.iter().any(|p| p.images.contains(&image.id)) {
            let taken: Vec<&str> = self.archives.iter().map(|p| p.name.as_str()).collect();
            let name = payload_name(path, &taken);
            self.archives.push(Payload {
                name,
                images: vec![image.id],
                source: Some(archive),
            });
        }
        self.files.push((key, pinned.clone()));
        Ok(pinned)
    }

    /// The payloads: `images.tar` with the engine's images (those no
    /// archive carries) first, then one per archive file.
    pub fn finish(self) -> Vec<Payload> {
        let from_files: Vec<&String> = self.archives.iter().flat_map(|p| &p.images).collect();
        let engine: Vec<String> = self
            .engine_ids
            .into_iter()
            .filter(|id| !from_files.contains(&id))
            .collect();
        let mut payloads = Vec::new();
        if !engine.is_empty() {
            payloads.push(Payload {
                name: ENGINE_PAYLOAD.to_owned(),
                images: engine,
                source: None,
            });
        }
        payloads.extend(self.archives);
        payloads
    }
}

/// The display name of a local image: the reference as written (`:latest`
/// when it has no tag), or for an ID its first tag.
fn engine_display(reference: &str, id: &str, tags: &[String]) -> String {
    let hex = id.strip_prefix("sha256:").unwrap_or(id);
    let bare = reference.strip_prefix("sha256:").unwrap_or(reference);
    let by_id = !bare.is_empty()
        && bare.bytes().all(|b| b.is_ascii_hexdigit())
        && hex.starts_with(&bare.to_ascii_lowercase());
    if by_id {
        return tags
            .iter()
            .find(|t| ImageRef::parse(&format!("{t}@{id}")).is_ok())
            .cloned()
            .unwrap_or_else(|| format!("image-{}", &hex[..hex.len().min(12)]));
    }
    let name = reference.split_once('@').map_or(reference, |(n, _)| n);
    match split_reference(name) {
        (repo, Some(tag)) => format!("{repo}:{tag}"),
        (repo, None) if reference.contains('@') => repo.to_owned(),
        (repo, None) => format!("{repo}:latest"),
    }
}

/// `<file stem>.tar` in the payload-name alphabet, unique among `taken`
/// and never `images.tar`.
fn payload_name(path: &Path, taken: &[&str]) -> String {
    let file = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let stem = file.strip_suffix(".tar").unwrap_or(&file);
    let clean: String = stem
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect();
    let clean = clean.trim_start_matches('.');
    let stem: String = if clean.is_empty() {
        "image".to_owned()
    } else {
        clean.chars().take(200).collect()
    };
    let used = |n: &str| n == ENGINE_PAYLOAD || taken.contains(&n);
    let first = format!("{stem}.tar");
    if !used(&first) {
        return first;
    }
    (2..)
        .map(|i| format!("{stem}-{i}.tar"))
        .find(|n| !used(n))
        .expect("an unused suffix exists")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::archive::tests::{docker_save, TempDir, A};

    const ID: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn local_images_are_shown_as_written_with_their_tag() {
        assert_eq!(engine_display("busybox", ID, &[]), "busybox:latest");
        assert_eq!(
            engine_display("reg:5000/a/b:1.0", ID, &[]),
            "reg:5000/a/b:1.0"
        );
        let pinned = format!("reg.example.com/app@sha256:{}", "f".repeat(64));
        assert_eq!(engine_display(&pinned, ID, &[]), "reg.example.com/app");
        let tags = vec!["web/app:2".to_owned()];
        assert_eq!(engine_display("0123456789ab", ID, &tags), "web/app:2");
        assert_eq!(engine_display(ID, ID, &[]), "image-0123456789ab");
    }

    #[test]
    fn payload_names_are_unique_and_valid() {
        let p = |s: &str, taken: &[&str]| payload_name(Path::new(s), taken);
        assert_eq!(p("/x/web-1.0.tar", &[]), "web-1.0.tar");
        assert_eq!(p("/x/images.tar", &[]), "images-2.tar");
        assert_eq!(p("/x/web.tar", &["web.tar"]), "web-2.tar");
        assert_eq!(p("/x/.hidden app+1", &[]), "hidden_app_1.tar");
    }

    #[test]
    fn archives_are_pinned_to_their_id_and_travel_once() {
        let dir = TempDir::new("inliner");
        let first = dir.0.join("images.tar");
        docker_save(&first, &format!("{A}.json"), &["web/app:1.0"]);
        let copy = dir.0.join("copy.tar");
        std::fs::copy(&first, &copy).unwrap();
        let mut resolver = Resolver::new("/nonexistent.sock".to_owned());
        let mut inliner = Inliner::new(&mut resolver);
        let a = format!("docker-archive:{}", first.display());
        let pinned = inliner.pin(&a).unwrap();
        assert_eq!(pinned, format!("web/app:1.0@sha256:{A}"));
        assert_eq!(inliner.pin(&a).unwrap(), pinned);
        assert_eq!(
            inliner
                .pin(&format!("docker-archive:{}", copy.display()))
                .unwrap(),
            pinned
        );
        let e = inliner.pin("local/app:1").unwrap_err().to_string();
        assert!(e.contains("local/app:1"), "{e}");
        let payloads = inliner.finish();
        assert_eq!(payloads.len(), 1);
        assert_eq!(payloads[0].name, "images-2.tar");
        assert_eq!(payloads[0].images, [format!("sha256:{A}")]);
        let full = Written {
            size: 42,
            layers: None,
        };
        assert_eq!(
            payloads[0].entry(&full),
            json!({"images": [format!("sha256:{A}")], "size": 42})
        );
        let l = |c: char| format!("sha256:{}", c.to_string().repeat(64));
        let delta = Written {
            size: 7,
            layers: Some(vec![(
                format!("sha256:{A}"),
                vec![l('1'), l('2'), l('3')],
                2,
            )]),
        };
        assert_eq!(
            payloads[0].entry(&delta),
            json!({"images": [format!("sha256:{A}")], "size": 7, "layers": {
                format!("sha256:{A}"): {"on_device": [l('1'), l('2')], "inline": [l('3')]}}})
        );
        assert_eq!(delta.counts(), (2, 3));
    }
}
