//! Image archives as payload files: what `docker save` writes (a tar with
//! `manifest.json`) and OCI image layouts (`index.json`, `blobs/sha256/…`)
//! such as meta-virtualization's image-oci class tars. Only the headers and
//! the small JSON members are read; member data is copied by streaming.
//!
//! Docker Engine 20.10's loader extracts the tar and reads `manifest.json`
//! (`Config` and `Layers` are paths inside the tar; the image ID is the
//! sha256 of the config file). An OCI layout gets that file added, pointing
//! at the blobs of the one manifest its index names; the engine detects gzip
//! layers itself. Its payload holds the layout at the top of the tar,
//! whatever directory the input had it in, and only the blobs the index
//! reaches.
//!
//! Every payload is written as a normalised tar, so that the same images
//! give the same bytes however the input tar was made (umoci and GNU tar
//! record wall-clock mtimes, the build user and readdir order): members
//! sorted by name, each directory that holds a member written before it,
//! ustar headers with the generator's mtime (SOURCE_DATE_EPOCH, else 0),
//! owner 0:0 without names, modes 0644,
//! 0755 and 0777 (symlinks). The data of every member — blobs, layers,
//! configs, manifests — is copied byte for byte, so image IDs and layer
//! digests stay what the engine verifies. Neither the engine's loader nor
//! the device's streaming filter (docker-module's `TagStripper`, which only
//! needs `manifest.json` before the end marker) depends on member order.
//! A name or link target that does not fit a ustar header gets the tar
//! crate's GNU long-name record, a function of the name alone. Hard links
//! become copies of their target (sorting may put a link before it);
//! directories are made from the members' paths, so empty ones vanish.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, BufWriter, Read, Seek, SeekFrom};
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
    /// Its configuration and layer files, by their names in the payload
    /// (the engine's `manifest.json` order: bottom layer first).
    pub config: String,
    pub layers: Vec<String>,
}

/// A readable archive, ready to be written as a payload.
#[derive(Debug, Clone)]
pub struct Archive {
    pub path: PathBuf,
    pub images: Vec<Image>,
    /// What the payload carries, by its name there (the map's order is the
    /// payload's member order).
    members: BTreeMap<String, Member>,
}

/// One member of a payload.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Member {
    /// `size` bytes at `offset` in the source archive.
    File { offset: u64, size: u64 },
    /// A symbolic link to `target`, as written (`docker save` links a layer
    /// that several images share).
    Symlink(String),
    /// Bytes the generator adds: the engine's `manifest.json` for an OCI layout.
    Added(Vec<u8>),
}

/// JSON members larger than this are not what these formats hold.
const MAX_JSON: u64 = 16 << 20;

/// A member of the source tar, by normalised name.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Source {
    Member(Member),
    /// A hard link to another member (normalised name): carried as a copy of
    /// it, since sorting may put a link before its target.
    Hardlink(String),
}

/// The members of a tar, by normalised name; a later member of the same
/// name replaces an earlier one, as when the tar is extracted.
struct Members {
    file: File,
    path: PathBuf,
    entries: BTreeMap<String, Source>,
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
        let shown = path.display();
        check_headers(&mut file)
            .map_err(|e| anyhow!("{shown} is not a readable tar archive: {e}"))?;
        file.seek(SeekFrom::Start(0))?;
        let not_tar = |e: io::Error| {
            anyhow!(
                "{shown} is not a readable tar archive: {}",
                printable(&e.to_string(), 200)
            )
        };
        let mut archive = tar::Archive::new(file);
        let mut entries = BTreeMap::new();
        for entry in archive.entries_with_seek().map_err(not_tar)? {
            let entry = entry.map_err(not_tar)?;
            let raw = entry
                .path()
                .map_err(not_tar)?
                .to_string_lossy()
                .into_owned();
            let name = normalise(&raw);
            let kind = entry.header().entry_type();
            // Directories are written anew for the members they hold; a PAX
            // global header only describes the source's own metadata.
            if kind.is_dir() || kind.is_pax_global_extensions() || name.is_empty() {
                continue;
            }
            if name.split('/').any(|c| c == "..") {
                bail!(
                    "{shown}: member {} points outside the archive (`..`); export it again",
                    quoted(&raw)
                );
            }
            let link = || -> Result<String> {
                match entry.link_name().map_err(not_tar)? {
                    Some(target) => Ok(target.to_string_lossy().into_owned()),
                    None => bail!(
                        "{shown}: link {} names no target; export it again",
                        quoted(&raw)
                    ),
                }
            };
            let member = if kind.is_file() || kind.is_contiguous() {
                Source::Member(Member::File {
                    offset: entry.raw_file_position(),
                    size: entry.size(),
                })
            } else if kind.is_symlink() {
                Source::Member(Member::Symlink(link()?))
            } else if kind.is_hard_link() {
                Source::Hardlink(normalise(&link()?))
            } else {
                let what = if kind.is_character_special() {
                    "a character device".to_owned()
                } else if kind.is_block_special() {
                    "a block device".to_owned()
                } else if kind.is_fifo() {
                    "a FIFO".to_owned()
                } else if kind.is_gnu_sparse() {
                    "a sparse file".to_owned()
                } else {
                    format!("an entry of type {:?}", char::from(kind.as_byte()))
                };
                bail!(
                    "{shown}: member {} is {what}; an image archive holds only files, \
                     directories and links: export it again with docker save, skopeo or umoci",
                    quoted(&raw)
                );
            };
            entries.insert(name, member);
        }
        Ok(Members {
            file: archive.into_inner(),
            path: path.to_owned(),
            entries,
        })
    }

    fn has(&self, name: &str) -> bool {
        self.entries.contains_key(name)
    }

    /// The member `name` as the payload carries it: a hard link becomes a
    /// copy of the file it links to.
    fn carried(&self, name: &str) -> Result<Member> {
        let shown = self.path.display();
        let mut at = name;
        // A chain longer than the archive is a loop.
        for _ in 0..=self.entries.len() {
            match self.entries.get(at) {
                Some(Source::Member(m)) => return Ok(m.clone()),
                Some(Source::Hardlink(target)) => at = target,
                None if at == name => bail!("{shown} has no {}", printable(name, 100)),
                None => bail!(
                    "{shown}: {} is a hard link to {}, which is not in the archive; \
                     export it again",
                    printable(name, 100),
                    printable(at, 100)
                ),
            }
        }
        bail!(
            "{shown}: the hard link {} leads to itself; export it again",
            printable(name, 100)
        )
    }

    fn json(&mut self, name: &str) -> Result<Value> {
        let shown = self.path.display().to_string();
        let Member::File { offset, size } = self.carried(name)? else {
            bail!("{shown}: {} is not a file", printable(name, 100));
        };
        if size > MAX_JSON {
            bail!(
                "{shown}: {} is not a JSON file of at most {MAX_JSON} bytes",
                printable(name, 100)
            );
        }
        let mut data = Vec::with_capacity(size as usize);
        self.file.seek(SeekFrom::Start(offset))?;
        (&mut self.file)
            .take(size)
            .read_to_end(&mut data)
            .with_context(|| format!("cannot read {} in {shown}", printable(name, 100)))?;
        // serde's messages quote what they found: archive text, so bounded.
        serde_json::from_slice(&data).map_err(|e| {
            anyhow!(
                "{shown}: {} is not valid JSON: {}",
                printable(name, 100),
                printable(&e.to_string(), 120)
            )
        })
    }

    fn require(&self, what: &str, name: &str) -> Result<()> {
        if self.has(name) {
            Ok(())
        } else {
            bail!(
                "{}: {what} {} is not in the archive; the archive is incomplete, export it again",
                self.path.display(),
                printable(name, 100)
            )
        }
    }
}

/// Archive text for a message: everything but printable ASCII escaped, cut
/// to at most `max` bytes with `…` where it was cut. Bytes, not characters:
/// one escaped character takes up to 10 (`\u{1f600}`).
fn printable(text: &str, max: usize) -> String {
    let mut out = String::new();
    for c in text.chars() {
        let before = out.len();
        if c.is_ascii_graphic() || c == ' ' {
            out.push(c);
        } else {
            out.extend(c.escape_default());
        }
        if out.len() > max {
            out.truncate(before);
            out.push('…');
            break;
        }
    }
    out
}

/// A member name (or other archive text) for a message, quoted.
fn quoted(text: &str) -> String {
    format!("\"{}\"", printable(text, 100))
}

/// Walks every header of the archive before the tar crate reads it, seeking
/// over member data ([`tar_bounds::Walk`]: the tar crate's rules, the bounds
/// on long-name records and PAX headers, no sparse members). Anything the
/// walk cannot read (a cut archive) is left to the tar crate to report.
fn check_headers(file: &mut File) -> Result<()> {
    let mut walk = tar_bounds::Walk::new();
    let mut at = 0u64;
    let mut h = [0u8; tar_bounds::BLOCK];
    loop {
        file.seek(SeekFrom::Start(at))?;
        if read_up_to(file, &mut h)? < h.len() {
            return Ok(());
        }
        let member = match walk.header(&h) {
            Ok(Some(member)) => member,
            Ok(None) => return Ok(()),
            Err(why) => bail!("the tar header at byte {at}: {why}; export the archive again"),
        };
        if member.pax {
            // At most MAX_PAX bytes: the walk refused a longer one.
            let mut data = vec![0u8; member.data as usize];
            let n = read_up_to(file, &mut data)?;
            walk.pax_data(&data[..n]);
        }
        at = at
            .checked_add(tar_bounds::BLOCK as u64 + member.span())
            .ok_or_else(|| {
                anyhow!(
                    "the tar header at byte {at}: {}",
                    tar_bounds::Refusal::Overflow
                )
            })?;
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

/// `target` as seen from directory `dir` inside the archive (`..` climbs).
fn resolve_relative(dir: &str, target: &str) -> String {
    let mut parts: Vec<&str> = if target.starts_with('/') {
        Vec::new()
    } else {
        dir.split('/').filter(|c| !c.is_empty()).collect()
    };
    for c in target.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            c => parts.push(c),
        }
    }
    parts.join("/")
}

/// The layer stacks of a base release's images: every image's diff IDs,
/// and so every stack of bottom layers the device holds at that release.
#[derive(Debug, Default)]
pub struct BaseLayers {
    stacks: Vec<Vec<String>>,
}

impl BaseLayers {
    pub fn add(&mut self, diff_ids: Vec<String>) {
        if !self.stacks.contains(&diff_ids) {
            self.stacks.push(diff_ids);
        }
    }

    pub fn is_empty(&self) -> bool {
        self.stacks.is_empty()
    }

    /// How many bottom layers of `ids` some base image has, in that order.
    pub fn held(&self, ids: &[String]) -> usize {
        self.stacks
            .iter()
            .map(|s| s.iter().zip(ids).take_while(|(a, b)| a == b).count())
            .max()
            .unwrap_or(0)
    }
}

/// A member name as the extracted file's path: `./a//b/` and `/a/b` are
/// `a/b`; `.` and `./` are the empty root.
fn normalise(name: &str) -> String {
    name.split('/')
        .filter(|c| !c.is_empty() && *c != ".")
        .collect::<Vec<_>>()
        .join("/")
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
            return Self::docker(members, true);
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

    /// Reads a payload of an earlier artifact (what this generator wrote),
    /// which may itself be a delta: layers it leaves out are not required.
    pub fn read_payload(path: &Path) -> Result<Archive> {
        let members = Members::scan(path)?;
        if !members.has("manifest.json") {
            bail!(
                "{} has no manifest.json: it is not an inline payload docker-artifact-gen wrote",
                path.display()
            );
        }
        Self::docker(members, false)
    }

    /// The diff IDs of image `i`'s layers, bottom first, from its
    /// configuration's `rootfs.diff_ids`: what the engine lists as
    /// `RootFS.Layers` once the image is loaded.
    pub fn diff_ids(&self, i: usize) -> Result<Vec<String>> {
        let image = &self.images[i];
        let shown = self.path.display();
        let data = match self.members.get(&image.config) {
            Some(Member::File { offset, size }) if *size <= MAX_JSON => {
                let mut file =
                    File::open(&self.path).with_context(|| format!("cannot read {shown}"))?;
                file.seek(SeekFrom::Start(*offset))?;
                let mut data = Vec::with_capacity(*size as usize);
                file.take(*size)
                    .read_to_end(&mut data)
                    .with_context(|| format!("cannot read {} in {shown}", image.config))?;
                data
            }
            Some(Member::Added(data)) => data.clone(),
            _ => bail!(
                "{shown}: the configuration {} of image {} is not a JSON file of at most {MAX_JSON} bytes",
                printable(&image.config, 100),
                image.id
            ),
        };
        let config: Value = serde_json::from_slice(&data).map_err(|e| {
            anyhow!(
                "{shown}: the configuration of image {} is not valid JSON: {}",
                image.id,
                printable(&e.to_string(), 120)
            )
        })?;
        let ids = strings(&config["rootfs"]["diff_ids"]);
        if ids.len() != image.layers.len()
            || ids
                .iter()
                .any(|d| docker_spec::inline::check_image_id(d).is_err())
        {
            bail!(
                "{shown}: image {} lists {} layer(s) but its configuration's rootfs.diff_ids holds {} valid diff ID(s); the archive is corrupt, export it again",
                image.id,
                image.layers.len(),
                ids.len()
            );
        }
        Ok(ids)
    }

    /// Leaves out of the payload the bottom layers that a device at the base
    /// release holds: layer `k` of an image goes only if the base had an
    /// image whose layers start with this image's layers `0..=k` (the
    /// engine's loader reuses a layer by its chain, the layer over the same
    /// layers, never by its diff ID alone). A file a carried layer still
    /// needs (`docker save` links a layer shared by several images) stays.
    /// Returns each image's diff IDs and how many bottom layers were left out.
    pub fn leave_out(&mut self, base: &BaseLayers) -> Result<Vec<(String, Vec<String>, usize)>> {
        let mut out = Vec::new();
        let mut gone: Vec<String> = Vec::new();
        let mut kept: Vec<String> = Vec::new();
        for i in 0..self.images.len() {
            let ids = self.diff_ids(i)?;
            let on_device = base.held(&ids);
            let image = &self.images[i];
            for (n, path) in image.layers.iter().enumerate() {
                let files = self.link_chain(path);
                if n < on_device {
                    gone.extend(files);
                } else {
                    kept.extend(files);
                }
            }
            out.push((image.id.clone(), ids, on_device));
        }
        for path in gone {
            if !kept.contains(&path) {
                self.members.remove(&path);
            }
        }
        Ok(out)
    }

    #[cfg(test)]
    pub fn members_names(&self) -> Vec<String> {
        self.members.keys().cloned().collect()
    }

    /// `path` and the members its symbolic links lead to.
    fn link_chain(&self, path: &str) -> Vec<String> {
        let mut chain = vec![path.to_owned()];
        let mut at = path.to_owned();
        while let Some(Member::Symlink(target)) = self.members.get(&at) {
            let dir = at.rsplit_once('/').map_or("", |(d, _)| d);
            let joined = resolve_relative(dir, target);
            if chain.contains(&joined) || chain.len() > self.members.len() {
                break;
            }
            chain.push(joined.clone());
            at = joined;
        }
        chain
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

    fn docker(mut members: Members, whole: bool) -> Result<Archive> {
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
                    "{shown}: manifest.json[{i}].Config {} is neither <sha256>.json nor \
                     blobs/sha256/<sha256>, so the image ID is unknown",
                    quoted(config)
                )
            })?;
            members.require("config", &normalise(config))?;
            let layers: Vec<String> = strings(&item["Layers"])
                .iter()
                .map(|l| normalise(l))
                .collect();
            if whole {
                for layer in &layers {
                    members.require("layer", layer)?;
                }
            }
            let name = display_name(&strings(&item["RepoTags"]), &stem, &id);
            images.push(Image {
                id,
                name,
                config: normalise(config),
                layers,
            });
        }
        // Everything the engine wrote travels: its loader (or a later one)
        // may read more than manifest.json names.
        let mut carried = BTreeMap::new();
        for name in members.entries.keys() {
            carried.insert(name.clone(), members.carried(name)?);
        }
        Ok(Archive {
            path: members.path.clone(),
            images,
            members: carried,
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
                    anyhow!(
                        "{shown}: the {what} digest {} is not sha256:<64 hex digits>",
                        quoted(digest)
                    )
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

        // The payload is the image, at the top of the tar: the layout's
        // files and the blobs the index reaches. Blobs umoci left behind
        // (each `umoci config` writes a new config and manifest and keeps the
        // old ones), a layout's own manifest.json or repositories, and
        // whatever else the tar holds do not travel.
        let strip = |p: &str| p.strip_prefix(prefix).unwrap_or(p).to_owned();
        let mut carried = BTreeMap::new();
        let layout = format!("{prefix}oci-layout");
        let layout = members.has(&layout).then_some(&layout);
        for path in layout
            .into_iter()
            .chain([&index_name, &manifest_path, &config_path])
            .chain(&layers)
        {
            carried.insert(strip(path), members.carried(path)?);
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
        let layers: Vec<String> = layers.iter().map(|l| strip(l)).collect();
        let config = strip(&config_path);
        let add = json!([{"Config": config, "RepoTags": repo_tags, "Layers": layers}]);
        carried.insert(
            "manifest.json".to_owned(),
            Member::Added(serde_json::to_vec(&add).expect("JSON serialises")),
        );
        Ok(Archive {
            path: members.path.clone(),
            images: vec![Image {
                id,
                name,
                config,
                layers,
            }],
            members: carried,
        })
    }

    /// Writes the payload to `dest` (a new file) as a normalised tar (see
    /// the module's documentation) and returns its length. `mtime` stamps
    /// every member.
    pub fn write_to(&self, dest: &Path, mtime: u64) -> Result<u64> {
        let shown = self.path.display();
        let mut src = File::open(&self.path).with_context(|| format!("cannot read {shown}"))?;
        let file =
            File::create(dest).with_context(|| format!("cannot create {}", dest.display()))?;
        let copy_err = |e: io::Error| anyhow!("cannot copy {shown} to {}: {e}", dest.display());
        let mut tar = tar::Builder::new(BufWriter::with_capacity(1 << 20, file));
        for (name, member) in self.tree()? {
            let mut header = tar::Header::new_ustar();
            header.set_mtime(mtime);
            header.set_uid(0);
            header.set_gid(0);
            let written = match member {
                None => {
                    header.set_entry_type(tar::EntryType::Directory);
                    header.set_mode(0o755);
                    header.set_size(0);
                    tar.append_data(&mut header, format!("{name}/"), io::empty())
                }
                Some(Member::File { offset, size }) => {
                    header.set_entry_type(tar::EntryType::Regular);
                    header.set_mode(0o644);
                    header.set_size(*size);
                    src.seek(SeekFrom::Start(*offset)).map_err(copy_err)?;
                    let data = Exact((&mut src).take(*size));
                    tar.append_data(&mut header, name, data)
                }
                Some(Member::Symlink(target)) => {
                    header.set_entry_type(tar::EntryType::Symlink);
                    header.set_mode(0o777);
                    header.set_size(0);
                    tar.append_link(&mut header, name, target)
                }
                Some(Member::Added(data)) => {
                    header.set_entry_type(tar::EntryType::Regular);
                    header.set_mode(0o644);
                    header.set_size(data.len() as u64);
                    tar.append_data(&mut header, name, data.as_slice())
                }
            };
            written
                .map_err(|e| anyhow!("cannot copy {name} of {shown} to {}: {e}", dest.display()))?;
        }
        let out = tar.into_inner().map_err(copy_err)?;
        let file = out.into_inner().map_err(|e| copy_err(e.into_error()))?;
        let len = file.metadata().map_err(copy_err)?.len();
        Ok(len)
    }

    /// The payload's members and the directories that hold them (`None`),
    /// by name: a directory sorts before its contents.
    fn tree(&self) -> Result<BTreeMap<&str, Option<&Member>>> {
        let mut tree: BTreeMap<&str, Option<&Member>> = self
            .members
            .iter()
            .map(|(name, m)| (name.as_str(), Some(m)))
            .collect();
        for name in self.members.keys() {
            let mut dir = name.as_str();
            while let Some((parent, _)) = dir.rsplit_once('/') {
                dir = parent;
                if let Some(Some(_)) = tree.insert(dir, None) {
                    bail!(
                        "{}: {} is a file and also the directory of {}; the archive is \
                         corrupt, export it again",
                        self.path.display(),
                        printable(dir, 100),
                        printable(name, 100)
                    );
                }
            }
        }
        Ok(tree)
    }
}

/// A member's data: its size in bytes, or an error if the source ends
/// sooner (the tar crate would pad a short copy into a corrupt entry).
struct Exact<R>(io::Take<R>);

impl<R: Read> Read for Exact<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.0.read(buf)?;
        if n == 0 && !buf.is_empty() && self.0.limit() > 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the archive became shorter while it was copied; run the generator again",
            ));
        }
        Ok(n)
    }
}

#[cfg(test)]
#[path = "archive_tests.rs"]
pub(crate) mod tests;
