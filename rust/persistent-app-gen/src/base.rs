//! `--base OLD.mender`: what the previous release installed, read back from
//! its artifact with `mender-artifact dump`, so that a delta ships only what
//! that tree lacks.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{self, BufReader, Read};
use std::path::{Component, Path};

use anyhow::{anyhow, bail, Context, Result};
use artifact_gen::mender_artifact::Tool;
use persistent_app_format::delta::{Content, Manifest};
use persistent_app_format::sha256::Sha256;
use persistent_app_format::spec::{self, AppSpec, ArtifactFormat};

/// The base release as the device has it installed.
#[derive(Debug)]
pub struct Base {
    /// Its `data-partition.<name>.version`.
    pub version: String,
    pub dest: String,
    /// Every regular file of its tree.
    pub files: BTreeMap<String, Content>,
}

/// Dumps `artifact` into `work` (`mender-artifact dump`, shared with
/// docker-artifact-gen) and reads it as a release of `name`.
pub fn read(tool: &Tool, artifact: &Path, work: &Path, name: &str) -> Result<Base> {
    let shown = artifact.display();
    let dumped = tool
        .dump(artifact, work)
        .map_err(|e| anyhow!("--base {shown}: {e:#}"))?;
    if dumped.payload_type != crate::PAYLOAD_TYPE {
        bail!(
            "--base {shown} is not a persistent-app artifact (its payload type is {}); \
             give the artifact of {name}'s previous release",
            dumped.payload_type
        );
    }
    let text = fs::read(&dumped.meta_data)
        .with_context(|| format!("--base {shown}: its payload has no meta-data"))?;
    let meta: serde_json::Value = serde_json::from_slice(&text)
        .with_context(|| format!("--base {shown}: its meta-data is not JSON"))?;
    let spec = match spec::parse_meta_data(&meta).with_context(|| format!("--base {shown}"))? {
        ArtifactFormat::Ours(spec) => spec,
        ArtifactFormat::Community => bail!(
            "--base {shown} is in the community format (no persistent-app meta-data); \
             a delta needs a base built by persistent-app-artifact-gen"
        ),
    };
    if spec.name != name {
        bail!(
            "--base {shown} is a release of app {}, not of {name}; give the artifact of {name}'s previous release",
            spec.name
        );
    }
    let Some(version) = dumped.provide(&format!("data-partition.{name}.version")) else {
        bail!("--base {shown} does not provide data-partition.{name}.version; give an artifact built by persistent-app-artifact-gen");
    };
    let files = tree_of(&spec, &dumped.files).with_context(|| format!("--base {shown}"))?;
    Ok(Base {
        version: version.to_owned(),
        dest: spec.dest,
        files,
    })
}

/// The regular files of the base's tree: from its manifest when the base is
/// itself a delta (its archive lacks what it took from its own base),
/// otherwise hashed from its archive.
fn tree_of(spec: &AppSpec, files_dir: &Path) -> Result<BTreeMap<String, Content>> {
    if let Some(delta) = &spec.delta {
        let path = files_dir.join(&delta.manifest);
        let bytes = fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?;
        let manifest = Manifest::parse(&bytes, spec.entries, spec.unpacked_size)?;
        return Ok(manifest
            .files
            .into_iter()
            .map(|f| (f.path, f.content))
            .collect());
    }
    let path = files_dir.join(&spec.archive);
    let file = File::open(&path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut archive = tar::Archive::new(BufReader::with_capacity(1 << 20, file));
    let mut files = BTreeMap::new();
    let mut buf = vec![0u8; 1 << 20];
    for entry in archive
        .entries()
        .with_context(|| format!("cannot read {}", path.display()))?
    {
        let mut entry = entry.with_context(|| format!("cannot read {}", path.display()))?;
        let rel = normal(&entry.path()?)?;
        match entry.header().entry_type() {
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                let mut hash = Sha256::new();
                let mut size = 0u64;
                loop {
                    let n = match entry.read(&mut buf) {
                        Ok(0) => break,
                        Ok(n) => n,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                        Err(e) => {
                            return Err(e).with_context(|| {
                                format!("cannot read {rel} in {}", path.display())
                            })
                        }
                    };
                    hash.update(&buf[..n]);
                    size += n as u64;
                }
                files.insert(
                    rel,
                    Content {
                        size,
                        sha256: hash.finish(),
                    },
                );
            }
            tar::EntryType::Link => {
                // The second path of a hard link has its first path's content.
                if let Some(target) = entry.link_name()? {
                    let target = normal(&target)?;
                    if let Some(content) = files.get(&target).copied() {
                        files.insert(rel, content);
                    }
                }
            }
            _ => {}
        }
    }
    Ok(files)
}

/// A member path as the manifest writes it: `/`-separated, no `./`.
pub fn normal(path: &Path) -> Result<String> {
    let mut parts = Vec::new();
    for c in path.components() {
        match c {
            Component::Normal(n) => match n.to_str() {
                Some(s) => parts.push(s),
                None => bail!(
                    "{} is not UTF-8; a delta's manifest names files in UTF-8",
                    path.display()
                ),
            },
            Component::CurDir => {}
            _ => bail!("{} is not a path below the tree's root", path.display()),
        }
    }
    Ok(parts.join("/"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn member_paths_are_normalised_and_kept_below_the_root() {
        assert_eq!(normal(Path::new("./a//b")).unwrap(), "a/b");
        assert!(normal(Path::new("../a")).is_err());
    }
}
