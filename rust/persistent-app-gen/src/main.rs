//! `persistent-app-artifact-gen`: packs an application tree into a Mender
//! artifact for the persistent-app Update Module.
//!
//! The tree is streamed into one uncompressed tar (mender-artifact
//! compresses payloads itself) next to the output, the meta-data is derived
//! from it, and `mender-artifact write module-image` does the rest. With
//! `SOURCE_DATE_EPOCH` set the output is byte-for-byte reproducible.

mod base;

use std::collections::HashSet;
use std::ffi::OsString;
use std::fs::{self, File};
use std::io::{BufWriter, Read};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{anyhow, bail, Context, Result};
use artifact_gen::{Common, Passthrough, Progress, Scratch};
use clap::Parser;
use persistent_app_format::delta::{self, Content, FileEntry, Manifest};
use persistent_app_format::pack::{Packer, RegularFile};
use persistent_app_format::sha256::{self, Sha256};
use persistent_app_format::spec::{self, AppSpec, Delta, DELTA_FORMAT_VERSION, FORMAT_VERSION};

/// The payload type, i.e. the Update Module's name on the device.
const PAYLOAD_TYPE: &str = "persistent-app";
const ARCHIVE_NAME: &str = "app.tar";
const MANIFEST_NAME: &str = "manifest.json";

#[derive(Debug, Parser)]
#[command(
    name = "persistent-app-artifact-gen",
    version,
    about = "Build a Mender artifact that installs an application tree with the persistent-app Update Module",
    after_help = "\
Directories given as PAYLOAD are packed with their contents below DEST-DIR,
keeping relative paths; a file lands as DEST-DIR/<its name>. Arguments after
`--` go to `mender-artifact write module-image` unchanged (e.g. signing keys,
--depends). The artifact provides data-partition.<software-name>.version,
which an OS update does not clear. SOURCE_DATE_EPOCH makes the output
reproducible.

With --base OLD.mender (the previous release's artifact) the artifact is a
delta: it carries only the files OLD lacks, plus a manifest of every file
with its SHA-256, and depends on data-partition.<software-name>.version of
OLD, so only devices running that release accept it. The device takes the
other files from its installed tree and refuses the delta if any differs.

Example:
  persistent-app-artifact-gen -n demo-app-1.0 -t qemux86-64 \\
      -d /data/apps/demo-app --software-name demo-app --software-version 1.0 \\
      --service demo-app.service -o demo-app-1.0.mender ./build/demo-app \\
      -- --depends rootfs-image.python.version:3.12
  persistent-app-artifact-gen -n demo-app-1.1 -t qemux86-64 \\
      -d /data/apps/demo-app --software-name demo-app --software-version 1.1 \\
      --base demo-app-1.0.mender -o demo-app-1.1-delta.mender ./build/demo-app",
    mut_arg("software_name", |a| a.help(
        "Name of the app and of its provide data-partition.NAME.version [default: DEST-DIR's last component]"
    ))
)]
struct Args {
    #[command(flatten)]
    common: Common,

    /// Directory on the device to install into, under an allowed root (default root: /data/apps)
    #[arg(short = 'd', long, value_name = "DEST-DIR")]
    dest_dir: String,

    /// Output file
    #[arg(short = 'o', long, value_name = "FILE")]
    output: PathBuf,

    /// systemd unit stopped before the new tree is swapped in and started after
    #[arg(long, value_name = "UNIT")]
    service: Option<String>,

    /// The previous release's artifact: build a delta that carries only the files it lacks
    #[arg(long, value_name = "OLD.mender")]
    base: Option<PathBuf>,

    /// Files and directories to install
    #[arg(value_name = "PAYLOAD", required = true)]
    payloads: Vec<PathBuf>,

    #[command(flatten)]
    passthrough: Passthrough,
}

fn main() -> ExitCode {
    let args = Args::parse();
    artifact_gen::exit("persistent-app-artifact-gen", run(&args))
}

fn run(args: &Args) -> Result<()> {
    let software_name = args
        .common
        .software_name
        .clone()
        .unwrap_or_else(|| spec::community_name(&args.dest_dir));
    let software_version = args.common.software_version();
    // The same checks the module makes on the device, so a bad artifact is
    // never built.
    spec::check_dest(&args.dest_dir)?;
    spec::check_name(&software_name).context("--software-name")?;
    if let Some(unit) = &args.service {
        spec::check_service(unit)?;
    }
    if software_version.is_empty() {
        bail!("--software-version is empty");
    }
    let epoch = artifact_gen::source_date_epoch()?;
    let tool = artifact_gen::mender_artifact::probe()?;

    let mut packer = Packer::new();
    for payload in &args.payloads {
        packer
            .add_source(payload)
            .with_context(|| format!("payload {}", payload.display()))?;
    }
    if packer.is_empty() {
        bail!("the payloads hold no files; give at least one file or non-empty directory");
    }

    let work = Scratch::new(&args.output, "--output")?;
    let delta = match &args.base {
        Some(base) => Some(plan_delta(
            &tool,
            base,
            &work.dir,
            &software_name,
            &args.dest_dir,
            &packer,
            epoch,
        )?),
        None => None,
    };
    let omit = delta.as_ref().map(|d| d.omit.clone()).unwrap_or_default();

    let tar_path = work.dir.join(ARCHIVE_NAME);
    let file =
        File::create(&tar_path).with_context(|| format!("cannot create {}", tar_path.display()))?;
    let mut progress = Progress::on_terminal("persistent-app-artifact-gen: packing");
    let (out, summary) = packer
        .write_except(
            BufWriter::with_capacity(1 << 20, file),
            epoch,
            &omit,
            |bytes| progress.set(bytes),
        )
        .context("cannot pack the payloads")?;
    progress.finish();
    let file = out
        .into_inner()
        .map_err(|e| anyhow!("cannot write {}: {}", tar_path.display(), e.error()))?;
    drop(file);
    artifact_gen::stamp_mtime(&tar_path, epoch)?;

    let mut files = vec![tar_path.clone()];
    let mut extra_args: Vec<OsString> = Vec::new();
    if let Some(d) = &delta {
        let manifest_path = work.dir.join(MANIFEST_NAME);
        let bytes = serde_json::to_vec(&d.manifest).expect("the manifest serialises");
        fs::write(&manifest_path, bytes)
            .with_context(|| format!("cannot write {}", manifest_path.display()))?;
        artifact_gen::stamp_mtime(&manifest_path, epoch)?;
        // The manifest first: the device needs it before the archive.
        files.insert(0, manifest_path);
        extra_args.push("--depends".into());
        extra_args
            .push(format!("data-partition.{software_name}.version:{}", d.base_version).into());
    }
    extra_args.extend(args.passthrough.mender_artifact_args.iter().cloned());

    let app = AppSpec {
        format: if delta.is_some() {
            DELTA_FORMAT_VERSION
        } else {
            FORMAT_VERSION
        },
        name: software_name.clone(),
        dest: args.dest_dir.clone(),
        archive: ARCHIVE_NAME.to_owned(),
        service: args.service.clone(),
        unpacked_size: summary.bytes,
        entries: summary.entries,
        delta: delta.as_ref().map(|d| Delta {
            base_version: d.base_version.clone(),
            manifest: MANIFEST_NAME.to_owned(),
        }),
    };
    app.validate()?;
    let meta_path = work.dir.join("meta-data.json");
    let meta = serde_json::to_vec_pretty(&app.to_meta_data()).expect("meta-data serialises");
    fs::write(&meta_path, meta).with_context(|| format!("cannot write {}", meta_path.display()))?;

    let tmp_out = work.dir.join("artifact.mender");
    tool.write_module_image(
        &artifact_gen::mender_artifact::ModuleImage {
            payload_type: PAYLOAD_TYPE,
            artifact_name: &args.common.artifact_name,
            device_types: &args.common.device_type,
            meta_data: &meta_path,
            files,
            software: ("data-partition", &software_name, &software_version),
            extra_args: &extra_args,
        },
        &tmp_out,
        &args.output,
        epoch,
    )?;
    eprintln!(
        "persistent-app-artifact-gen: wrote {}: {} members, {} bytes for {}; provides data-partition.{}.version={}",
        args.output.display(),
        summary.entries,
        summary.bytes,
        args.dest_dir,
        software_name,
        software_version
    );
    if let Some(d) = &delta {
        eprintln!(
            "persistent-app-artifact-gen: delta against {}: carries {} of {} files ({} of {} bytes); \
             depends on data-partition.{}.version={}",
            d.base_version,
            d.shipped_files,
            d.manifest.files.len(),
            d.shipped_bytes,
            summary.bytes,
            software_name,
            d.base_version
        );
    }
    Ok(())
}

/// What a delta ships and what its manifest says.
struct DeltaPlan {
    base_version: String,
    manifest: Manifest,
    /// The files the device takes from its tree.
    omit: HashSet<PathBuf>,
    shipped_files: usize,
    shipped_bytes: u64,
}

fn plan_delta(
    tool: &artifact_gen::mender_artifact::Tool,
    base_artifact: &Path,
    work: &Path,
    name: &str,
    dest: &str,
    packer: &Packer,
    epoch: Option<u64>,
) -> Result<DeltaPlan> {
    let base = base::read(tool, base_artifact, work, name)?;
    if base.dest != dest {
        bail!(
            "--base {} installs {name} to {}, this release to {dest}; a delta needs the same destination: \
             build a full artifact (without --base)",
            base_artifact.display(),
            base.dest
        );
    }
    let regular = packer
        .regular_files(epoch)
        .context("cannot list the payloads")?;
    let mut progress = Progress::on_terminal("persistent-app-artifact-gen: hashing");
    let mut new = Vec::with_capacity(regular.len());
    let mut buf = vec![0u8; 1 << 20];
    for f in &regular {
        let rel = base::normal(&f.rel)?;
        new.push((rel, digest(f, &mut buf, &mut progress)?));
    }
    progress.finish();
    let sources = delta::plan(&base.files, &new);
    let mut omit = HashSet::new();
    let mut files = Vec::with_capacity(new.len());
    let (mut shipped_files, mut shipped_bytes) = (0, 0);
    for ((f, (rel, content)), from) in regular.iter().zip(new).zip(sources) {
        if from.is_some() {
            omit.insert(f.rel.clone());
        } else {
            shipped_files += 1;
            shipped_bytes += content.size;
        }
        files.push(FileEntry {
            path: rel,
            size: content.size,
            mode: f.mode,
            mtime: f.mtime,
            sha256: sha256::hex(&content.sha256),
            base: from,
        });
    }
    Ok(DeltaPlan {
        base_version: base.version,
        manifest: Manifest { files },
        omit,
        shipped_files,
        shipped_bytes,
    })
}

fn digest(f: &RegularFile, buf: &mut [u8], progress: &mut Progress) -> Result<Content> {
    let mut file =
        File::open(&f.source).with_context(|| format!("cannot read {}", f.source.display()))?;
    let mut hash = Sha256::new();
    let mut size = 0u64;
    loop {
        let n = file
            .read(buf)
            .with_context(|| format!("cannot read {}", f.source.display()))?;
        if n == 0 {
            break;
        }
        hash.update(&buf[..n]);
        size += n as u64;
        progress.add(n as u64);
    }
    if size != f.size {
        bail!(
            "{} changed size while being read ({} then {size} bytes); build again once it is complete",
            f.source.display(),
            f.size
        );
    }
    Ok(Content {
        size,
        sha256: hash.finish(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_definition_is_consistent() {
        Args::command().debug_assert();
    }

    #[test]
    fn arguments_after_the_double_dash_are_kept_verbatim() {
        let a = Args::try_parse_from([
            "gen",
            "-n",
            "a-1",
            "-t",
            "x",
            "-t",
            "y",
            "-d",
            "/data/apps/a",
            "-o",
            "o.mender",
            "dir",
            "file",
            "--",
            "--depends",
            "k:v",
            "-k",
            "key.pem",
        ])
        .unwrap();
        assert_eq!(a.common.device_type, ["x", "y"]);
        assert_eq!(a.payloads, [PathBuf::from("dir"), PathBuf::from("file")]);
        assert_eq!(
            a.passthrough.mender_artifact_args,
            ["--depends", "k:v", "-k", "key.pem"]
        );
    }

    #[test]
    fn help_shows_a_real_example() {
        let help = Args::command().render_long_help().to_string();
        assert!(
            help.contains("persistent-app-artifact-gen -n demo-app-1.0 -t qemux86-64"),
            "{help}"
        );
    }
}
