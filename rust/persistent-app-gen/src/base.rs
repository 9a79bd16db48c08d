//! `--base OLD.mender`: what the previous release installed, read back from
//! its artifact with `mender-artifact dump`, so that a delta ships only what
//! that tree lacks.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{self, BufReader, Read};
use std::path::{Component, Path};

use anyhow::{bail, Context, Result};
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

/// Dumps `artifact` into `work` and reads it as a release of `name`.
pub fn read(tool: &Tool, artifact: &Path, work: &Path, name: &str) -> Result<Base> {
    let shown = artifact.display();
    let meta_dir = work.join("base-meta-data");
    let files_dir = work.join("base-files");
    for d in [&meta_dir, &files_dir] {
        fs::create_dir_all(d).with_context(|| format!("cannot create {}", d.display()))?;
    }
    let out = tool
        .command()
        .arg("dump")
        .arg("--meta-data")
        .arg(&meta_dir)
        .arg("--files")
        .arg(&files_dir)
        .arg("--print0-cmdline")
        .arg(artifact)
        .output()
        .with_context(|| format!("cannot run {}", tool.path.display()))?;
    if !out.status.success() {
        bail!(
            "--base {shown}: mender-artifact cannot read it ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let args: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .split('\0')
        .map(str::to_owned)
        .collect();
    let payload_type = value_of(&args, "--type").unwrap_or("(none)");
    if payload_type != crate::PAYLOAD_TYPE {
        bail!(
            "--base {shown} is not a persistent-app artifact (its payload type is {payload_type}); \
             give the artifact of {name}'s previous release"
        );
    }
    let meta = read_meta_data(&meta_dir).with_context(|| format!("--base {shown}"))?;
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
    let key = format!("data-partition.{name}.version:");
    let version = values_of(&args, "--provides")
        .find_map(|p| p.strip_prefix(&key))
        .map(str::to_owned);
    let Some(version) = version else {
        bail!("--base {shown} does not provide data-partition.{name}.version; give an artifact built by persistent-app-artifact-gen");
    };
    let files = tree_of(&spec, &files_dir).with_context(|| format!("--base {shown}"))?;
    Ok(Base {
        version,
        dest: spec.dest,
        files,
    })
}

fn value_of<'a>(args: &'a [String], flag: &'a str) -> Option<&'a str> {
    values_of(args, flag).next()
}

fn values_of<'a>(args: &'a [String], flag: &'a str) -> impl Iterator<Item = &'a str> + 'a {
    args.windows(2)
        .filter(move |w| w[0] == flag)
        .map(|w| w[1].as_str())
}

fn read_meta_data(dir: &Path) -> Result<serde_json::Value> {
    let mut names: Vec<_> = fs::read_dir(dir)
        .with_context(|| format!("cannot list {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    names.sort();
    let Some(first) = names.first() else {
        return Ok(serde_json::Value::Null);
    };
    let text = fs::read(first).with_context(|| format!("cannot read {}", first.display()))?;
    serde_json::from_slice(&text).context("its meta-data is not JSON")
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
    fn flags_are_read_from_the_dumped_command_line() {
        let args: Vec<String> = [
            "write",
            "module-image",
            "--type",
            "persistent-app",
            "--provides",
            "rootfs-image.x:1",
            "--provides",
            "data-partition.demo.version:1.0",
        ]
        .map(str::to_owned)
        .to_vec();
        assert_eq!(value_of(&args, "--type"), Some("persistent-app"));
        let found: Vec<_> = values_of(&args, "--provides").collect();
        assert_eq!(
            found,
            ["rootfs-image.x:1", "data-partition.demo.version:1.0"]
        );
        assert_eq!(normal(Path::new("./a//b")).unwrap(), "a/b");
        assert!(normal(Path::new("../a")).is_err());
    }
}
