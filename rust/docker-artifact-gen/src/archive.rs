//! Image archives as payload files: what `docker save` writes (a tar with
//! `manifest.json`) and OCI image layouts (`index.json`, `blobs/sha256/…`)
//! such as meta-virtualization's image-oci class tars. Only the headers and
//! the small JSON members are read; payloads are copied by streaming.
//!
//! Docker Engine 20.10's loader extracts the tar and reads `manifest.json`
//! (`Config` and `Layers` are paths inside the tar; the image ID is the
//! sha256 of the config file). An OCI layout gets that file added, pointing
//! at the blobs of the one manifest its index names; the engine detects gzip
//! layers itself.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use docker_spec::ImageRef;
use serde_json::{json, Value};

use crate::resolve::split_reference;

/// How the user named the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `docker-archive:PATH`: what `docker save` writes.
    Docker,
    /// `oci-archive:PATH`: a tarred OCI image layout.
    Oci,
}

impl Kind {
    pub fn prefix(self) -> &'static str {
        match self {
            Kind::Docker => "docker-archive:",
            Kind::Oci => "oci-archive:",
        }
    }

    /// `docker-archive:PATH` / `oci-archive:PATH`, else `None`.
    pub fn split(image: &str) -> Option<(Kind, &str)> {
        [Kind::Docker, Kind::Oci]
            .into_iter()
            .find_map(|k| image.strip_prefix(k.prefix()).map(|p| (k, p)))
    }
}

/// One image an archive holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Image {
    /// `sha256:<64 hex>`: the engine's image ID after loading.
    pub id: String,
    /// `REPOSITORY[:TAG]` for the meta-data: informational only.
    pub name: String,
}

/// A readable archive, ready to be written as a payload.
#[derive(Debug)]
pub struct Archive {
    pub path: PathBuf,
    pub images: Vec<Image>,
    /// Where the last member ends: the copy stops there when a member is added.
    end: u64,
    /// The `manifest.json` an OCI layout needs for the engine's loader.
    add_manifest: Option<Vec<u8>>,
}

/// JSON members larger than this are not what these formats hold.
const MAX_JSON: u64 = 16 << 20;

/// The members of a tar: normalised path → (data offset, size, regular file).
struct Members {
    file: File,
    path: PathBuf,
    entries: BTreeMap<String, (u64, u64, bool)>,
    end: u64,
}

impl Members {
    fn scan(path: &Path) -> Result<Members> {
        let mut file =
            File::open(path).with_context(|| format!("cannot read {}", path.display()))?;
        let mut magic = [0u8; 6];
        let n = read_up_to(&mut file, &mut magic)
            .with_context(|| format!("cannot read {}", path.display()))?;
        if let Some(what) = compression(&magic[..n]) {
            bail!(
                "{} is {what}-compressed; an image archive is a plain tar: decompress it first",
                path.display()
            );
        }
        file.seek(SeekFrom::Start(0))?;
        let not_tar =
            |e: io::Error| anyhow!("{} is not a readable tar archive: {e}", path.display());
        let mut archive = tar::Archive::new(file);
        let mut entries = BTreeMap::new();
        let mut end = 0;
        for entry in archive.entries_with_seek().map_err(not_tar)? {
            let entry = entry.map_err(not_tar)?;
            let size = entry.size();
            end = entry.raw_file_position() + size.div_ceil(512) * 512;
            let kind = entry.header().entry_type();
            if kind.is_dir() {
                continue;
            }
            let name = normalise(&entry.path().map_err(not_tar)?.to_string_lossy());
            if !name.is_empty() {
                entries.insert(name, (entry.raw_file_position(), size, kind.is_file()));
            }
        }
        Ok(Members {
            file: archive.into_inner(),
            path: path.to_owned(),
            entries,
            end,
        })
    }

    fn has(&self, name: &str) -> bool {
        self.entries.contains_key(name)
    }

    fn json(&mut self, name: &str) -> Result<Value> {
        let shown = self.path.display().to_string();
        let Some(&(offset, size, regular)) = self.entries.get(name) else {
            bail!("{shown} has no {name}");
        };
        if !regular || size > MAX_JSON {
            bail!("{shown}: {name} is not a JSON file of at most {MAX_JSON} bytes");
        }
        let mut data = Vec::with_capacity(size as usize);
        self.file.seek(SeekFrom::Start(offset))?;
        (&mut self.file)
            .take(size)
            .read_to_end(&mut data)
            .with_context(|| format!("cannot read {name} in {shown}"))?;
        serde_json::from_slice(&data).map_err(|e| anyhow!("{shown}: {name} is not valid JSON: {e}"))
    }

    fn require(&self, what: &str, name: &str) -> Result<()> {
        if self.has(name) {
            Ok(())
        } else {
            bail!(
                "{}: {what} {name} is not in the archive; the archive is incomplete, export it again",
                self.path.display()
            )
        }
    }
}

fn read_up_to(file: &mut File, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match file.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

fn compression(magic: &[u8]) -> Option<&'static str> {
    if magic.starts_with(&[0x1f, 0x8b]) {
        Some("gzip")
    } else if magic.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Some("zstd")
    } else if magic.starts_with(b"BZh") {
        Some("bzip2")
    } else if magic.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0]) {
        Some("xz")
    } else {
        None
    }
}

/// `./a/b` and `/a/b` are `a/b`; `.` and `./` are the empty root.
fn normalise(name: &str) -> String {
    let mut s = name;
    loop {
        if let Some(rest) = s.strip_prefix("./") {
            s = rest;
        } else if let Some(rest) = s.strip_prefix('/') {
            s = rest;
        } else {
            break;
        }
    }
    if s == "." {
        return String::new();
    }
    s.trim_end_matches('/').to_owned()
}

/// The 64 hex digits of a sha256 digest, validated.
fn sha256_hex(text: &str) -> Option<&str> {
    let ok = text.len() == 64
        && text
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    ok.then_some(text)
}

/// The image ID a docker-save `Config` entry names: `<hex>.json` (Docker up
/// to 24) or `blobs/sha256/<hex>` (Docker 25 and later).
fn config_id(config: &str) -> Option<String> {
    let (dir, file) = match config.rsplit_once('/') {
        Some((d, f)) => (d, f),
        None => ("", config),
    };
    let hex = if dir.ends_with("blobs/sha256") || dir == "sha256" {
        sha256_hex(file)?
    } else if dir.is_empty() {
        sha256_hex(file.strip_suffix(".json")?)?
    } else {
        return None;
    };
    Some(format!("sha256:{hex}"))
}

/// The first candidate that makes a valid `NAME@sha256:…`, else one made
/// from the file name.
fn display_name(candidates: &[String], stem: &str, id: &str) -> String {
    candidates
        .iter()
        .find(|c| ImageRef::parse(&format!("{c}@{id}")).is_ok())
        .cloned()
        .unwrap_or_else(|| repository_from(stem))
}

/// A valid repository made from a file name: lower case, other characters
/// as `-`.
fn repository_from(stem: &str) -> String {
    let mut out = String::new();
    for c in stem.chars() {
        let c = c.to_ascii_lowercase();
        if c.is_ascii_lowercase() || c.is_ascii_digit() {
            out.push(c);
        } else if !out.is_empty() && !out.ends_with('-') {
            out.push('-');
        }
    }
    let out = out.trim_end_matches('-');
    if out.is_empty() {
        "image".to_owned()
    } else {
        out.chars().take(128).collect()
    }
}

fn file_stem(path: &Path) -> String {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    name.strip_suffix(".tar").unwrap_or(&name).to_owned()
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

impl Archive {
    /// Reads the archive's index; any number of images.
    pub fn read(path: &Path, kind: Kind) -> Result<Archive> {
        let members = Members::scan(path)?;
        let shown = path.display();
        if members.has("manifest.json") {
            // What `docker save` writes, or an OCI layout that carries the
            // engine's manifest already (Docker 25 and later write both).
            return Self::docker(members);
        }
        if kind == Kind::Docker {
            if members.has("index.json")
                || members.entries.keys().any(|k| k.ends_with("/index.json"))
            {
                bail!(
                    "{shown} has no manifest.json but an OCI index.json: it is an OCI image layout; \
                     name it oci-archive:{shown}"
                );
            }
            bail!(
                "{shown} is not a docker-archive: it has no manifest.json; write one with \
                 `docker save -o FILE IMAGE`, or name an OCI layout as oci-archive:FILE"
            );
        }
        let prefix = if members.has("index.json") {
            String::new()
        } else {
            let tops: Vec<&str> = members
                .entries
                .keys()
                .filter_map(|k| k.strip_suffix("/index.json"))
                .filter(|d| !d.contains('/'))
                .collect();
            match tops.as_slice() {
                [one] => format!("{one}/"),
                _ => bail!(
                    "{shown} is not an OCI image layout: it has no index.json at its top or in one \
                     top-level directory (for a `docker save` archive write docker-archive:{shown})"
                ),
            }
        };
        Self::oci(members, &prefix)
    }

    /// Reads the archive and checks it holds exactly one image.
    pub fn read_one(path: &Path, kind: Kind) -> Result<Archive> {
        let archive = Archive::read(path, kind)?;
        if archive.images.len() != 1 {
            bail!(
                "{} holds {} images; name one image per file (`docker save -o FILE IMAGE`)",
                path.display(),
                archive.images.len()
            );
        }
        Ok(archive)
    }

    fn docker(mut members: Members) -> Result<Archive> {
        let shown = members.path.display().to_string();
        let manifest = members.json("manifest.json")?;
        let Some(items) = manifest.as_array() else {
            bail!("{shown}: manifest.json is not a list of images");
        };
        let stem = file_stem(&members.path);
        let mut images = Vec::new();
        for (i, item) in items.iter().enumerate() {
            let config = item["Config"]
                .as_str()
                .ok_or_else(|| anyhow!("{shown}: manifest.json[{i}] has no Config"))?;
            let id = config_id(&normalise(config)).ok_or_else(|| {
                anyhow!(
                    "{shown}: manifest.json[{i}].Config {config:?} is neither <sha256>.json nor \
                     blobs/sha256/<sha256>, so the image ID is unknown"
                )
            })?;
            members.require("config", &normalise(config))?;
            for layer in strings(&item["Layers"]) {
                members.require("layer", &normalise(&layer))?;
            }
            let name = display_name(&strings(&item["RepoTags"]), &stem, &id);
            images.push(Image { id, name });
        }
        Ok(Archive {
            path: members.path.clone(),
            images,
            end: members.end,
            add_manifest: None,
        })
    }

    fn oci(mut members: Members, prefix: &str) -> Result<Archive> {
        let shown = members.path.display().to_string();
        let index_name = format!("{prefix}index.json");
        let index = members.json(&index_name)?;
        let entries = index["manifests"].as_array().cloned().unwrap_or_default();
        let [entry] = entries.as_slice() else {
            bail!(
                "{shown}: {index_name} lists {} manifests; name one image per file",
                entries.len()
            );
        };
        let is_index = |v: &Value| {
            matches!(
                v["mediaType"].as_str(),
                Some("application/vnd.oci.image.index.v1+json")
                    | Some("application/vnd.docker.distribution.manifest.list.v2+json")
            )
        };
        let multi =
            "holds an image index (several platforms); the engine loads one platform: copy \
                     the one for the device into its own layout";
        if is_index(entry) {
            bail!("{shown}: {index_name} {multi}");
        }
        let blob = |digest: &Value, what: &str| -> Result<(String, String)> {
            let digest = digest.as_str().unwrap_or_default();
            let hex = digest
                .strip_prefix("sha256:")
                .and_then(sha256_hex)
                .ok_or_else(|| {
                    anyhow!("{shown}: the {what} digest {digest:?} is not sha256:<64 hex digits>")
                })?;
            Ok((
                format!("{prefix}blobs/sha256/{hex}"),
                format!("sha256:{hex}"),
            ))
        };
        let (manifest_path, _) = blob(&entry["digest"], "manifest")?;
        members.require("manifest", &manifest_path)?;
        let manifest = members.json(&manifest_path)?;
        if is_index(&manifest) || manifest.get("manifests").is_some() {
            bail!("{shown}: {manifest_path} {multi}");
        }
        let (config_path, id) = blob(&manifest["config"]["digest"], "config")?;
        members.require("config", &config_path)?;
        let mut layers = Vec::new();
        for layer in manifest["layers"].as_array().into_iter().flatten() {
            let (path, _) = blob(&layer["digest"], "layer")?;
            members.require("layer", &path)?;
            layers.push(path);
        }

        let annotations = &entry["annotations"];
        let mut candidates = Vec::new();
        if let Some(full) = annotations["io.containerd.image.name"].as_str() {
            candidates.push(full.to_owned());
        }
        let stem = file_stem(&members.path);
        if let Some(r) = annotations["org.opencontainers.image.ref.name"].as_str() {
            // A full reference, or (umoci, skopeo) only the tag.
            if r.contains('/') || r.contains(':') {
                candidates.push(r.to_owned());
            } else {
                candidates.push(format!("{}:{r}", repository_from(&stem)));
            }
        }
        let name = display_name(&candidates, &stem, &id);
        let repo_tags: Vec<&str> = match split_reference(&name) {
            (_, Some(_)) => vec![name.as_str()],
            _ => Vec::new(),
        };
        let add = json!([{"Config": config_path, "RepoTags": repo_tags, "Layers": layers}]);
        Ok(Archive {
            path: members.path.clone(),
            images: vec![Image { id, name }],
            end: members.end,
            add_manifest: Some(serde_json::to_vec(&add).expect("JSON serialises")),
        })
    }

    /// Writes the payload to `dest` (a new file) and returns its length.
    /// `mtime` stamps an added `manifest.json`.
    pub fn write_to(&self, dest: &Path, mtime: u64) -> Result<u64> {
        let shown = self.path.display();
        let mut src = File::open(&self.path).with_context(|| format!("cannot read {shown}"))?;
        let mut out =
            File::create(dest).with_context(|| format!("cannot create {}", dest.display()))?;
        let copy_err = |e: io::Error| anyhow!("cannot copy {shown} to {}: {e}", dest.display());
        match &self.add_manifest {
            None => {
                io::copy(&mut src, &mut out).map_err(copy_err)?;
            }
            Some(manifest) => {
                let copied =
                    io::copy(&mut (&mut src).take(self.end), &mut out).map_err(copy_err)?;
                if copied != self.end {
                    bail!("{shown} became shorter while it was copied; run the generator again");
                }
                let mut header = tar::Header::new_ustar();
                header.set_size(manifest.len() as u64);
                header.set_mode(0o644);
                header.set_mtime(mtime);
                header.set_entry_type(tar::EntryType::Regular);
                let mut builder = tar::Builder::new(out);
                builder
                    .append_data(&mut header, "manifest.json", manifest.as_slice())
                    .map_err(copy_err)?;
                out = builder.into_inner().map_err(copy_err)?;
            }
        }
        out.flush().map_err(copy_err)?;
        let len = out.metadata().map_err(copy_err)?.len();
        Ok(len)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::fs;

    pub const A: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    const B: &str = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";
    const M: &str = "cccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccc";

    pub struct TempDir(pub PathBuf);

    impl TempDir {
        pub fn new(tag: &str) -> TempDir {
            let dir = std::env::temp_dir().join(format!("dag-{tag}-{}", std::process::id()));
            let _ = fs::remove_dir_all(&dir);
            fs::create_dir_all(&dir).unwrap();
            TempDir(dir)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    /// A tar of (name, content); names ending in `/` are directories. Names
    /// are written as given (the tar crate's builder would drop `./`).
    pub fn tar_file(path: &Path, members: &[(&str, &[u8])]) {
        let mut b = tar::Builder::new(File::create(path).unwrap());
        for (name, data) in members {
            let mut h = tar::Header::new_ustar();
            if name.ends_with('/') {
                h.set_entry_type(tar::EntryType::Directory);
                h.set_size(0);
                h.set_mode(0o755);
            } else {
                h.set_size(data.len() as u64);
                h.set_mode(0o644);
            }
            let raw = &mut h.as_ustar_mut().unwrap().name;
            assert!(name.len() < raw.len(), "{name} is too long for the fixture");
            raw[..name.len()].copy_from_slice(name.as_bytes());
            h.set_cksum();
            b.append(&h, *data).unwrap();
        }
        b.into_inner().unwrap();
    }

    fn names(path: &Path) -> Vec<String> {
        let mut a = tar::Archive::new(File::open(path).unwrap());
        a.entries()
            .unwrap()
            .map(|e| e.unwrap().path().unwrap().to_string_lossy().into_owned())
            .collect()
    }

    fn member(path: &Path, name: &str) -> Vec<u8> {
        let mut a = tar::Archive::new(File::open(path).unwrap());
        for e in a.entries().unwrap() {
            let mut e = e.unwrap();
            if e.path().unwrap().to_string_lossy() == name {
                let mut v = Vec::new();
                e.read_to_end(&mut v).unwrap();
                return v;
            }
        }
        panic!("{name} not in {}", path.display())
    }

    pub fn docker_save(path: &Path, config: &str, tags: &[&str]) {
        let manifest = json!([{"Config": config, "RepoTags": tags, "Layers": ["l1/layer.tar"]}]);
        tar_file(
            path,
            &[
                (config, b"{}"),
                ("l1/", b""),
                ("l1/layer.tar", b"layer"),
                ("manifest.json", manifest.to_string().as_bytes()),
            ],
        );
    }

    fn oci_layout(path: &Path, prefix: &str, ref_name: Option<&str>) {
        let manifest = json!({"schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": format!("sha256:{A}"), "size": 2},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": format!("sha256:{B}"), "size": 5}]});
        let mut entry = json!({"mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": format!("sha256:{M}"), "size": 1});
        if let Some(r) = ref_name {
            entry["annotations"] = json!({"org.opencontainers.image.ref.name": r});
        }
        let index = json!({"schemaVersion": 2, "manifests": [entry]}).to_string();
        let n = |s: &str| format!("{prefix}{s}");
        let (dir, blobs, sha, layout, idx, cfg, layer, man) = (
            n(""),
            n("blobs/"),
            n("blobs/sha256/"),
            n("oci-layout"),
            n("index.json"),
            n(&format!("blobs/sha256/{A}")),
            n(&format!("blobs/sha256/{B}")),
            n(&format!("blobs/sha256/{M}")),
        );
        let mut members: Vec<(&str, &[u8])> = Vec::new();
        if !dir.is_empty() {
            members.push((&dir, b""));
        }
        let manifest = manifest.to_string();
        members.extend([
            (blobs.as_str(), &b""[..]),
            (sha.as_str(), b""),
            (cfg.as_str(), b"{}"),
            (layer.as_str(), b"\x1f\x8bgz"),
            (man.as_str(), manifest.as_bytes()),
            (layout.as_str(), br#"{"imageLayoutVersion":"1.0.0"}"#),
            (idx.as_str(), index.as_bytes()),
        ]);
        tar_file(path, &members);
    }

    #[test]
    fn a_docker_save_archive_names_its_image_and_is_copied_as_is() {
        let dir = TempDir::new("docker-save");
        for (config, tags, name) in [
            (format!("{A}.json"), vec!["web/app:1.0"], "web/app:1.0"),
            (format!("blobs/sha256/{A}"), vec![], "my-app-v1"),
        ] {
            let src = dir.0.join("My_App.v1.tar");
            docker_save(&src, &config, &tags);
            let a = Archive::read_one(&src, Kind::Docker).unwrap();
            assert_eq!(
                a.images,
                [Image {
                    id: format!("sha256:{A}"),
                    name: name.into()
                }]
            );
            let out = dir.0.join("out.tar");
            let len = a.write_to(&out, 0).unwrap();
            assert_eq!(fs::read(&out).unwrap(), fs::read(&src).unwrap());
            assert_eq!(len, fs::metadata(&src).unwrap().len());
        }
    }

    #[test]
    fn an_oci_layout_gets_the_engines_manifest_with_the_blob_paths() {
        let dir = TempDir::new("oci");
        // ./-prefixed (tar -C layout .), in a top-level directory (tar layout), and plain.
        for (prefix, path_prefix) in [("./", ""), ("app-oci/", "app-oci/"), ("", "")] {
            let src = dir.0.join("app-oci.tar");
            oci_layout(&src, prefix, Some("latest"));
            let a = Archive::read_one(&src, Kind::Oci).unwrap();
            assert_eq!(
                a.images,
                [Image {
                    id: format!("sha256:{A}"),
                    name: "app-oci:latest".into()
                }],
                "{prefix}"
            );
            let out = dir.0.join("out.tar");
            let len = a.write_to(&out, 1_700_000_000).unwrap();
            assert_eq!(len, fs::metadata(&out).unwrap().len());
            let written = names(&out);
            let original = names(&src);
            assert_eq!(written[..original.len()], original[..], "all members kept");
            assert_eq!(written[original.len()..], ["manifest.json"]);
            let manifest: Value = serde_json::from_slice(&member(&out, "manifest.json")).unwrap();
            assert_eq!(
                manifest,
                json!([{
                    "Config": format!("{path_prefix}blobs/sha256/{A}"),
                    "RepoTags": ["app-oci:latest"],
                    "Layers": [format!("{path_prefix}blobs/sha256/{B}")],
                }])
            );
            // Everything before the added member is the original, byte for byte.
            let (src_bytes, out_bytes) = (fs::read(&src).unwrap(), fs::read(&out).unwrap());
            assert_eq!(out_bytes[..a.end as usize], src_bytes[..a.end as usize]);
        }
    }

    #[test]
    fn oci_names_come_from_the_annotations_or_the_file() {
        let dir = TempDir::new("oci-names");
        let src = dir.0.join("Core Image.rootfs-oci.tar");
        oci_layout(&src, "", Some("registry.example.com:5000/apps/core:2.1"));
        let a = Archive::read_one(&src, Kind::Oci).unwrap();
        assert_eq!(a.images[0].name, "registry.example.com:5000/apps/core:2.1");
        oci_layout(&src, "", None);
        let a = Archive::read_one(&src, Kind::Oci).unwrap();
        assert_eq!(a.images[0].name, "core-image-rootfs-oci");
        let manifest: Value = serde_json::from_slice(a.add_manifest.as_deref().unwrap()).unwrap();
        assert_eq!(
            manifest[0]["RepoTags"],
            json!([]),
            "untagged: nothing to tag"
        );
    }

    fn err(path: &Path, kind: Kind) -> String {
        format!("{:#}", Archive::read_one(path, kind).unwrap_err())
    }

    #[test]
    fn unusable_archives_are_named_with_what_to_do() {
        let dir = TempDir::new("bad");
        let missing = dir.0.join("missing.tar");
        assert!(err(&missing, Kind::Docker).contains("cannot read"));

        let oci = dir.0.join("layout.tar");
        oci_layout(&oci, "", None);
        let e = err(&oci, Kind::Docker);
        assert!(
            e.contains("OCI image layout") && e.contains("oci-archive:"),
            "{e}"
        );

        let plain = dir.0.join("plain.tar");
        tar_file(&plain, &[("etc/hostname", b"x")]);
        let e = err(&plain, Kind::Oci);
        assert!(e.contains("no index.json"), "{e}");
        let e = err(&plain, Kind::Docker);
        assert!(
            e.contains("no manifest.json") && e.contains("docker save"),
            "{e}"
        );

        let gz = dir.0.join("x.tar.gz");
        fs::write(&gz, b"\x1f\x8b\x08\x00rest").unwrap();
        assert!(err(&gz, Kind::Docker).contains("gzip-compressed"));

        let junk = dir.0.join("junk.tar");
        fs::write(&junk, vec![b'x'; 1024]).unwrap();
        assert!(err(&junk, Kind::Oci).contains("not a readable tar"));

        let two = dir.0.join("two.tar");
        let manifest = json!([
            {"Config": format!("{A}.json"), "RepoTags": [], "Layers": []},
            {"Config": format!("{B}.json"), "RepoTags": [], "Layers": []},
        ]);
        let (ca, cb) = (format!("{A}.json"), format!("{B}.json"));
        tar_file(
            &two,
            &[
                (&ca, b"{}"),
                (&cb, b"{}"),
                ("manifest.json", manifest.to_string().as_bytes()),
            ],
        );
        assert!(err(&two, Kind::Docker).contains("holds 2 images"));
        assert_eq!(Archive::read(&two, Kind::Docker).unwrap().images.len(), 2);

        let incomplete = dir.0.join("incomplete.tar");
        let manifest = json!([{"Config": format!("{A}.json"), "Layers": ["l/layer.tar"]}]);
        tar_file(
            &incomplete,
            &[
                (&ca, b"{}"),
                ("manifest.json", manifest.to_string().as_bytes()),
            ],
        );
        let e = err(&incomplete, Kind::Docker);
        assert!(e.contains("layer l/layer.tar is not in the archive"), "{e}");
    }

    #[test]
    fn a_multi_platform_index_is_refused() {
        let dir = TempDir::new("multi");
        let index = json!({"schemaVersion": 2, "manifests": [{
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "digest": format!("sha256:{M}"), "size": 1}]});
        let src = dir.0.join("multi.tar");
        tar_file(&src, &[("index.json", index.to_string().as_bytes())]);
        let e = err(&src, Kind::Oci);
        assert!(e.contains("several platforms"), "{e}");
    }

    #[test]
    fn names_are_normalised() {
        assert_eq!(normalise("./blobs/sha256/x"), "blobs/sha256/x");
        assert_eq!(normalise("./"), "");
        assert_eq!(normalise("."), "");
        assert_eq!(normalise("/manifest.json"), "manifest.json");
        assert_eq!(config_id(&format!("{A}.json")), Some(format!("sha256:{A}")));
        assert_eq!(
            config_id(&format!("blobs/sha256/{A}")),
            Some(format!("sha256:{A}"))
        );
        assert_eq!(config_id("config.json"), None);
        assert_eq!(repository_from("--Web_App 1.0--"), "web-app-1-0");
        assert_eq!(repository_from("___"), "image");
    }
}
