//! `docker-artifact-gen`: builds a Mender artifact for the docker Update
//! Module. A drop-in for the old shell generator's command line that pins
//! every image by digest from the local engine (never pulling), validates the
//! meta-data as the device will, and makes the stack's version a
//! data-partition provide that OS updates do not clear. With `--inline` the
//! images travel in the artifact as payload files instead.

mod archive;
mod base;
mod compose;
mod inline;
mod legacy;
mod resolve;

use std::collections::BTreeMap;
use std::fs;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{anyhow, bail, Context, Result};
use artifact_gen::{Common, Passthrough, Scratch};
use clap::Parser;
use serde_json::{json, Value};

use archive::Kind;
use inline::{Inliner, Payload};
use resolve::Resolver;

/// The payload type, i.e. the Update Module's name on the device.
const PAYLOAD_TYPE: &str = "docker";

#[derive(Debug, Parser)]
#[command(
    name = "docker-artifact-gen",
    version,
    about = "Build a Mender artifact that deploys container images with the docker Update Module",
    after_help = "\
Every IMAGE is pinned by digest without pulling: REPOSITORY@sha256:… is kept,
any other reference is looked up in the local engine (DOCKER_HOST=unix://…,
else /var/run/docker.sock) and must have been pushed to a registry. The
meta-data is the old generator's {\"containers\": […], \"run_args\": \"…\"}
(stack `docker`), or with --spec a docker-stack file (see docker-spec's
FORMAT.md), validated as the device will.

Provides: unlike the old generator, the default is --software-filesystem
data-partition and --software-name <stack>, so the artifact provides
data-partition.<stack>.version and clears data-partition.<stack>.*. The old
default, rootfs-image.docker.version, is cleared by the next OS (rootfs)
update, after which the server no longer knows which stack the device runs.

Arguments after `--` go to `mender-artifact write module-image` unchanged
(signing keys, --depends, …). SOURCE_DATE_EPOCH makes the output reproducible.

--inline embeds every image instead, for devices that cannot reach a
registry: local images (tag, name or ID; nothing needs to be pushed) are
exported from the engine into the payload images.tar; an IMAGE (or a --spec
container's \"image\") written as docker-archive:PATH (`docker save` output) or
oci-archive:PATH (a tarred OCI image layout, e.g. meta-virtualization's
image-oci) is taken from that file, one image per file, as its own payload;
relative paths are from the current directory. Each image is then named
REPOSITORY:TAG@sha256:<image ID>, and the docker-stack key \"inline\" lists the
payloads. The legacy meta-data cannot carry inline images, so with IMAGEs
--inline writes a docker-stack document with the same containers, stack
--software-name (default docker). Every payload is rewritten as a
normalised tar (members sorted, times SOURCE_DATE_EPOCH or 0, owner root,
an OCI layout at the top with only the blobs its index reaches); the
images' blobs are copied byte for byte, so image IDs do not change, and
archives of the same image give the same artifact however they were
tarred. An image that image-oci (umoci) builds twice is not the same
image: its config records the build time.

--base ARTIFACT (with --inline) makes a delta against the release a device
already runs: ARTIFACT is that release's artifact of the same stack (full or
itself a delta). Each image leaves out the bottom layers that an image of the
base has over the same layers; the meta-data lists which layers stay on the
device, and the artifact depends on the base's
<filesystem>.<name>.version, so the client refuses it on devices at any other
version: keep the full artifact for those.

--compose FILE (repeat to merge, later files win) translates a compose
project into a docker-stack on this machine; the device needs no docker
compose. Variables come from .env beside the first file and from the
environment (which wins), as with docker compose. The stack and the
containers are named as compose names them (<project>-<service>-1, or
container_name); a service with only build: deploys the image compose tags,
<project>-<service>, or the one given with --image SERVICE=REF. Keys the
device cannot honour are refused with their path and what to change; see
COMPOSE.md beside this generator's sources.

Examples:
  docker-artifact-gen -n web-1.2 -t qemux86-64 --software-version 1.2 \\
      --run-args '-p 8080:80 --restart unless-stopped' \\
      -o web-1.2.mender registry.example.com/web/app:1.2
  docker-artifact-gen -n web-2.0 -t qemux86-64 --spec web.json -o web-2.0.mender \\
      -- -k signing-key.pem
  docker-artifact-gen -n web-1.3 -t qemux86-64 --inline --software-name web \\
      --run-args '--network host' -o web-1.3.mender \\
      web/app:1.3 oci-archive:tmp/deploy/images/qemux86-64/web-worker-oci.tar
  docker-artifact-gen -n shop-1.0 -t qemux86-64 --inline --compose compose.yaml \\
      --project-name shop --software-version 1.0 -o shop-1.0.mender
  docker-artifact-gen -n web-1.4 -t qemux86-64 --inline --spec web.json \\
      --software-version 1.4 --base web-1.3.mender -o web-1.4-delta.mender",
    mut_arg("software_name", |a| a.help(
        "Name in the provide FILESYSTEM.NAME.version [default: the stack, `docker` without --spec or --compose]"
    ))
)]
struct Args {
    #[command(flatten)]
    common: Common,

    /// Output file
    #[arg(
        short = 'o',
        long,
        value_name = "FILE",
        default_value = "docker-artifact.mender"
    )]
    output_path: PathBuf,

    /// First part of the provide; the old generator's default was rootfs-image [default: data-partition]
    #[arg(long, value_name = "FILESYSTEM")]
    software_filesystem: Option<String>,

    /// `docker run` options for every container (legacy meta-data)
    #[arg(long, value_name = "ARGS", allow_hyphen_values = true)]
    run_args: Option<String>,

    /// A docker-stack meta-data file to use instead of IMAGEs and --run-args
    #[arg(long, value_name = "FILE", conflicts_with_all = ["images", "run_args", "compose"])]
    spec: Option<PathBuf>,

    /// A compose file to translate into a docker-stack (repeat to merge, later files win)
    #[arg(long, value_name = "FILE", conflicts_with_all = ["images", "run_args"])]
    compose: Vec<PathBuf>,

    /// The compose project, which names the stack [default: name:, else the first file's directory]
    #[arg(long, value_name = "NAME", conflicts_with_all = ["spec", "images", "run_args"])]
    project_name: Option<String>,

    /// The image SERVICE deploys, instead of its image: or the name compose tags its build: with
    #[arg(long = "image", value_name = "SERVICE=REF", conflicts_with_all = ["spec", "images", "run_args"], value_parser = service_image)]
    service_images: Vec<(String, String)>,

    /// The device's platform (e.g. linux/arm64), against which services' platform: is checked
    #[arg(long, value_name = "OS/ARCH[/VARIANT]", conflicts_with_all = ["spec", "images", "run_args"])]
    platform: Option<String>,

    /// Embed the images as payload files (images.tar, archive files) instead of pulling them
    #[arg(long)]
    inline: bool,

    /// With --inline: a delta against this earlier artifact of the stack, carrying only the
    /// layers its images lack, and depending on its version
    #[arg(long, value_name = "ARTIFACT", requires = "inline")]
    base: Option<PathBuf>,

    /// Container images (legacy meta-data: one container each); with --inline also
    /// docker-archive:PATH or oci-archive:PATH
    #[arg(value_name = "IMAGE", required_unless_present_any = ["spec", "compose"])]
    images: Vec<String>,

    #[command(flatten)]
    passthrough: Passthrough,
}

fn service_image(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((service, image)) if !service.is_empty() && !image.is_empty() => {
            Ok((service.to_owned(), image.to_owned()))
        }
        _ => Err(format!("{text:?} is not SERVICE=IMAGE")),
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    artifact_gen::exit("docker-artifact-gen", run(&args))
}

/// The meta-data of the old generator, byte-compatible in content.
fn legacy_meta(pinned: &[String], run_args: Option<&str>) -> Value {
    json!({"containers": pinned, "run_args": run_args.unwrap_or("")})
}

/// How the images of the release are named in the meta-data.
enum Pinning<'r> {
    /// By registry digest, for the device to pull.
    Registry(&'r mut Resolver),
    /// By image ID, carried in the artifact.
    Inline(Inliner<'r>),
}

impl Pinning<'_> {
    fn resolver(&mut self) -> &mut Resolver {
        match self {
            Pinning::Registry(resolver) => resolver,
            Pinning::Inline(inliner) => inliner.resolver(),
        }
    }

    /// `keep_tag`: keep the informational tag (docker-stack meta-data).
    fn pin(&mut self, image: &str, keep_tag: bool) -> Result<String> {
        match self {
            Pinning::Registry(resolver) => {
                if let Some((kind, _)) = Kind::split(image) {
                    bail!(
                        "{image}: an image from a file ({}PATH) travels in the artifact, which \
                         needs --inline",
                        kind.prefix()
                    );
                }
                resolver.resolve(image, keep_tag)
            }
            Pinning::Inline(inliner) => inliner.pin(image),
        }
    }
}

/// Pins every image of a docker-stack document in place.
fn pin_stack_images(meta: &mut Value, pinning: &mut Pinning) -> Result<()> {
    let Some(containers) = meta
        .get_mut("docker-stack")
        .and_then(|s| s.get_mut("containers"))
        .and_then(Value::as_object_mut)
    else {
        return Ok(());
    };
    for (name, c) in containers.iter_mut() {
        if let Some(image) = c.get_mut("image") {
            if let Some(text) = image.as_str() {
                let pinned = pinning
                    .pin(text, true)
                    .with_context(|| format!("docker-stack.containers.{name}.image"))?;
                *image = Value::String(pinned);
            }
        }
    }
    Ok(())
}

/// What the artifact will carry: the meta-data (without the `inline` list,
/// added once the payloads are written), the stack and the payloads.
#[derive(Debug)]
struct Plan {
    meta: Value,
    stack: String,
    payloads: Vec<Payload>,
}

/// `--compose`: the files translated into a docker-stack document whose
/// images are checked against `--platform` and pinned.
fn compose_meta(args: &Args, pinning: &mut Pinning) -> Result<Value> {
    let environment: BTreeMap<String, String> = std::env::vars().collect();
    let translated = compose::load(
        &args.compose,
        args.project_name.as_deref(),
        args.service_images.iter().cloned().collect(),
        args.platform.clone(),
        &environment,
    )?;
    let mut meta = translated.meta;
    let containers = meta["docker-stack"]["containers"]
        .as_object_mut()
        .expect("the translation writes containers");
    for (name, c) in containers.iter_mut() {
        let image = c["image"]
            .as_str()
            .expect("the translation writes images")
            .to_owned();
        let service = translated.built.get(name);
        let from_file = Kind::split(&image).is_some();
        if let (Some(device), false) = (&args.platform, from_file) {
            if let Some(found) = pinning.resolver().platform(&image)? {
                if !compose::translate::same_platform(device, &found) {
                    bail!(
                        "container {name}: image {image} is {found}, but the device is {device} \
                         (--platform); build or pull it for {device}"
                    );
                }
            }
        }
        let pinned = pinning.pin(&image, true).map_err(|e| match service {
            Some(service) => anyhow!(
                "service {service}: its image {image} comes from `build:` and cannot be pinned \
                 ({e:#}); run `docker compose build`, then pass --inline to carry it, or push it \
                 and pass --image {service}=REGISTRY/REPOSITORY:TAG"
            ),
            None => e.context(format!("container {name}: image")),
        })?;
        c["image"] = Value::String(pinned);
    }
    Ok(meta)
}

/// The meta-data and the stack it deploys, validated as the device will.
fn build_meta(args: &Args, resolver: &mut Resolver) -> Result<Plan> {
    let inline = args.inline;
    let mut pinning = if inline {
        Pinning::Inline(Inliner::new(resolver))
    } else {
        Pinning::Registry(resolver)
    };
    let meta = match &args.spec {
        None if !args.compose.is_empty() => compose_meta(args, &mut pinning)?,
        Some(path) => {
            let text = fs::read_to_string(path)
                .with_context(|| format!("cannot read {}", path.display()))?;
            let mut meta: Value = serde_json::from_str(&text)
                .with_context(|| format!("{} is not valid JSON", path.display()))?;
            if inline
                && meta
                    .get("docker-stack")
                    .and_then(|s| s.get("inline"))
                    .is_some()
            {
                bail!(
                    "{}: docker-stack.inline is written by --inline; remove it from the file",
                    path.display()
                );
            }
            pin_stack_images(&mut meta, &mut pinning)
                .with_context(|| path.display().to_string())?;
            meta
        }
        None => {
            let mut pinned = Vec::new();
            for image in &args.images {
                pinned.push(pinning.pin(image, inline)?);
            }
            legacy_meta(&pinned, args.run_args.as_deref())
        }
    };
    let release = docker_spec::parse(&meta).map_err(|e| match &args.spec {
        Some(path) => anyhow!("{}: {e}", path.display()),
        None if !args.compose.is_empty() => {
            anyhow!("the stack translated from the compose files: {e}")
        }
        None => anyhow!("{e}"),
    })?;
    let Pinning::Inline(inliner) = pinning else {
        return Ok(Plan {
            meta,
            stack: release.stack,
            payloads: Vec::new(),
        });
    };
    let payloads = inliner.finish();
    if args.spec.is_some() || !args.compose.is_empty() {
        return Ok(Plan {
            meta,
            stack: release.stack,
            payloads,
        });
    }
    // The legacy format has no place for inline images.
    let stack = args
        .common
        .software_name
        .clone()
        .unwrap_or_else(|| docker_spec::LEGACY_STACK.to_owned());
    docker_spec::stack::check_stack_name(&stack)
        .map_err(|e| anyhow!("--software-name names the stack that --inline writes: {e}"))?;
    let meta = legacy::to_stack(&release, &stack).map_err(|e| anyhow!(e))?;
    Ok(Plan {
        meta,
        stack,
        payloads,
    })
}

/// Writes the payloads into `dir`, adds their `inline` list to the
/// meta-data and validates the result as the device will.
/// Returns the left-out and total layers (both 0 without a base).
fn write_payloads(
    plan: &mut Plan,
    dir: &std::path::Path,
    resolver: &mut Resolver,
    epoch: Option<u64>,
    base: Option<&base::Base>,
) -> Result<(usize, usize)> {
    let mut entries = serde_json::Map::new();
    let mut counts = (0, 0);
    for payload in &plan.payloads {
        let written = payload.write(dir, resolver, epoch.unwrap_or(0), base.map(|b| &b.layers))?;
        artifact_gen::stamp_mtime(&dir.join(&payload.name), epoch)?;
        entries.insert(payload.name.clone(), payload.entry(&written));
        let (out, all) = written.counts();
        counts = (counts.0 + out, counts.1 + all);
    }
    let doc = plan
        .meta
        .get_mut("docker-stack")
        .and_then(Value::as_object_mut)
        .expect("--inline meta-data is a docker-stack document");
    doc.insert("inline".to_owned(), Value::Object(entries));
    docker_spec::parse(&plan.meta)
        .map_err(|e| anyhow!("the meta-data with its inline images does not validate: {e}"))?;
    Ok(counts)
}

/// The provide and clear this artifact writes: (filesystem, name, version).
fn provides(args: &Args, stack: &str) -> (String, String, String) {
    (
        args.software_filesystem
            .clone()
            .unwrap_or_else(|| "data-partition".to_owned()),
        args.common
            .software_name
            .clone()
            .unwrap_or_else(|| stack.to_owned()),
        args.common.software_version(),
    )
}

fn run(args: &Args) -> Result<()> {
    let epoch = artifact_gen::source_date_epoch()?;
    let tool = artifact_gen::mender_artifact::probe()?;
    let socket = resolve::socket_from(std::env::var("DOCKER_HOST").ok().as_deref())?;
    let mut resolver = Resolver::new(socket);
    let mut plan = build_meta(args, &mut resolver)?;
    let stack = plan.stack.clone();
    let (filesystem, name, version) = provides(args, &stack);
    if name.is_empty() || version.is_empty() || filesystem.is_empty() {
        bail!("--software-name, --software-version and --software-filesystem must not be empty");
    }
    if name != stack {
        eprintln!(
            "docker-artifact-gen: warning: --software-name {name} differs from the stack {stack}; \
             the device's provides will not name the stack the artifact deploys"
        );
    }

    let work = Scratch::new(&args.output_path, "--output-path")?;
    let base = match &args.base {
        Some(path) => Some(base::read(
            &tool,
            path,
            &work.dir.join("base"),
            &stack,
            &format!("{filesystem}.{name}.version"),
        )?),
        None => None,
    };
    let mut extra_args = args.passthrough.mender_artifact_args.clone();
    if let Some(b) = &base {
        extra_args.push("--depends".into());
        extra_args.push(b.depends().into());
    }
    let mut left_out = (0, 0);
    if args.inline {
        left_out = write_payloads(&mut plan, &work.dir, &mut resolver, epoch, base.as_ref())?;
    }
    let meta_path = work.dir.join("meta-data.json");
    let text = serde_json::to_vec(&plan.meta).expect("meta-data serialises");
    fs::write(&meta_path, text).with_context(|| format!("cannot write {}", meta_path.display()))?;

    let tmp_out = work.dir.join("artifact.mender");
    tool.write_module_image(
        &artifact_gen::mender_artifact::ModuleImage {
            payload_type: PAYLOAD_TYPE,
            artifact_name: &args.common.artifact_name,
            device_types: &args.common.device_type,
            meta_data: &meta_path,
            files: plan
                .payloads
                .iter()
                .map(|p| work.dir.join(&p.name))
                .collect(),
            software: (&filesystem, &name, &version),
            extra_args: &extra_args,
        },
        &tmp_out,
        &args.output_path,
        epoch,
    )?;
    let carried = match plan.payloads.len() {
        0 => String::new(),
        n => format!(
            "; {} inline image(s) in {n} payload(s)",
            plan.payloads.iter().map(|p| p.images.len()).sum::<usize>()
        ),
    };
    let delta = match &base {
        Some(b) => format!(
            "; a delta: {} of {} layer(s) left out, depends on {}={}",
            left_out.0, left_out.1, b.key, b.version
        ),
        None => String::new(),
    };
    eprintln!(
        "docker-artifact-gen: wrote {}: stack {stack}; provides {filesystem}.{name}.version={version}{carried}{delta}",
        args.output_path.display()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::archive::tests::{docker_save, TempDir, A};
    use clap::CommandFactory;
    use std::time::{Duration, UNIX_EPOCH};

    const D: &str = "sha256:1111111111111111111111111111111111111111111111111111111111111111";

    fn parse(argv: &[&str]) -> Result<Args, clap::Error> {
        Args::try_parse_from(std::iter::once("gen").chain(argv.iter().copied()))
    }

    fn offline() -> Resolver {
        Resolver::new("/nonexistent/docker.sock".to_owned())
    }

    #[test]
    fn the_command_line_definition_is_consistent() {
        Args::command().debug_assert();
    }

    #[test]
    fn the_old_command_line_still_parses() {
        let a = parse(&[
            "--artifact-name",
            "web-1",
            "--device-type",
            "x",
            "-t",
            "y",
            "--software-name",
            "web",
            "--software-version",
            "1",
            "--software-filesystem",
            "rootfs-image",
            "--run-args",
            "-p 80:80 --restart always",
            "--output-path",
            "o.mender",
            "a/b:1",
            "c@sha256:x",
            "--",
            "-k",
            "key.pem",
            "--depends",
            "k:v",
        ])
        .unwrap();
        assert_eq!(a.common.device_type, ["x", "y"]);
        assert_eq!(a.images, ["a/b:1", "c@sha256:x"]);
        assert_eq!(a.run_args.as_deref(), Some("-p 80:80 --restart always"));
        assert_eq!(a.output_path, PathBuf::from("o.mender"));
        assert_eq!(
            a.passthrough.mender_artifact_args,
            ["-k", "key.pem", "--depends", "k:v"]
        );
        assert_eq!(
            provides(&a, "docker"),
            ("rootfs-image".into(), "web".into(), "1".into())
        );
    }

    #[test]
    fn defaults_provide_the_stack_on_the_data_partition() {
        let a = parse(&["-n", "web-1", "-t", "x", "img@sha256:x"]).unwrap();
        assert_eq!(a.output_path, PathBuf::from("docker-artifact.mender"));
        assert_eq!(
            provides(&a, "docker"),
            ("data-partition".into(), "docker".into(), "web-1".into())
        );
    }

    #[test]
    fn images_or_a_spec_are_required_but_not_both() {
        assert!(parse(&["-n", "a", "-t", "x"]).is_err());
        assert!(parse(&["-n", "a", "-t", "x", "--spec", "s.json", "img"]).is_err());
        assert!(parse(&["-n", "a", "-t", "x", "--spec", "s.json", "--run-args", "-t"]).is_err());
        assert!(parse(&["-n", "a", "-t", "x", "--spec", "s.json"]).is_ok());
        assert!(
            parse(&["-n", "a", "img"]).is_err(),
            "a device type is required"
        );
    }

    #[test]
    fn compose_files_take_their_own_options() {
        let ok = parse(&[
            "-n",
            "a",
            "-t",
            "x",
            "--compose",
            "c.yaml",
            "--compose",
            "o.yaml",
        ])
        .unwrap();
        assert_eq!(ok.compose.len(), 2);
        let ok = parse(&[
            "-n",
            "a",
            "-t",
            "x",
            "--compose",
            "c.yaml",
            "--project-name",
            "shop",
            "--image",
            "api=registry.local/api:1",
            "--platform",
            "linux/arm64",
        ])
        .unwrap();
        assert_eq!(
            ok.service_images,
            [("api".to_owned(), "registry.local/api:1".to_owned())]
        );
        for bad in [
            &[
                "-n",
                "a",
                "-t",
                "x",
                "--compose",
                "c.yaml",
                "--spec",
                "s.json",
            ][..],
            &["-n", "a", "-t", "x", "--compose", "c.yaml", "img"],
            &[
                "-n",
                "a",
                "-t",
                "x",
                "--compose",
                "c.yaml",
                "--run-args",
                "-t",
            ],
            &[
                "-n",
                "a",
                "-t",
                "x",
                "--compose",
                "c.yaml",
                "--image",
                "api",
            ],
            &[
                "-n",
                "a",
                "-t",
                "x",
                "--spec",
                "s.json",
                "--project-name",
                "p",
            ],
            &["-n", "a", "-t", "x", "--spec", "s.json", "--image", "a=b"],
        ] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn legacy_meta_data_is_what_the_old_generator_writes() {
        let a = parse(&[
            "-n",
            "a",
            "-t",
            "x",
            "--run-args",
            "--network host -e MODE=prod",
            &format!("reg.example.com/app@{D}"),
            &format!("reg.example.com/tools/sidecar@{D}"),
        ])
        .unwrap();
        let Plan { meta, stack, .. } = build_meta(&a, &mut offline()).unwrap();
        assert_eq!(stack, "docker");
        assert_eq!(
            serde_json::to_string(&meta).unwrap(),
            format!(
                r#"{{"containers":["reg.example.com/app@{D}","reg.example.com/tools/sidecar@{D}"],"run_args":"--network host -e MODE=prod"}}"#
            )
        );
        let no_args = parse(&["-n", "a", "-t", "x", &format!("app@{D}")]).unwrap();
        assert_eq!(
            build_meta(&no_args, &mut offline()).unwrap().meta["run_args"],
            ""
        );
    }

    #[test]
    fn run_args_the_device_would_refuse_are_refused_here() {
        let a = parse(&[
            "-n",
            "a",
            "-t",
            "x",
            "--run-args",
            "-e KEY",
            &format!("app@{D}"),
        ])
        .unwrap();
        assert!(build_meta(&a, &mut offline()).is_err());
    }

    #[test]
    fn a_spec_file_is_validated_and_names_the_stack() {
        let dir = std::env::temp_dir().join(format!("dag-spec-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let good = dir.join("good.json");
        fs::write(
            &good,
            format!(
                r#"{{"docker-stack": {{"format": 1, "stack": "web",
                    "containers": {{"web": {{"image": "reg.example.com/web:2@{D}"}}}}}}}}"#
            ),
        )
        .unwrap();
        let a = parse(&["-n", "a", "-t", "x", "--spec", good.to_str().unwrap()]).unwrap();
        let Plan { meta, stack, .. } = build_meta(&a, &mut offline()).unwrap();
        assert_eq!(stack, "web");
        assert_eq!(
            meta["docker-stack"]["containers"]["web"]["image"],
            format!("reg.example.com/web:2@{D}")
        );
        assert_eq!(provides(&a, &stack).1, "web");

        let bad = dir.join("bad.json");
        fs::write(
            &bad,
            format!(
                r#"{{"docker-stack": {{"format": 1, "stack": "web", "colour": "red",
                    "containers": {{"web": {{"image": "reg.example.com/web@{D}"}}}}}}}}"#
            ),
        )
        .unwrap();
        let a = parse(&["-n", "a", "-t", "x", "--spec", bad.to_str().unwrap()]).unwrap();
        let e = build_meta(&a, &mut offline()).unwrap_err().to_string();
        assert!(e.contains("bad.json") && e.contains("colour"), "{e}");
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn an_unpinned_image_without_an_engine_is_a_one_line_error() {
        let a = parse(&["-n", "a", "-t", "x", "reg.example.com/app:1"]).unwrap();
        let e = format!("{:#}", build_meta(&a, &mut offline()).unwrap_err());
        assert!(
            e.contains("reg.example.com/app:1") && !e.contains('\n'),
            "{e}"
        );
    }

    #[test]
    fn archives_need_inline() {
        let dir = TempDir::new("needs-inline");
        let archive = dir.0.join("app.tar");
        docker_save(&archive, &format!("{A}.json"), &["web/app:1.0"]);
        let image = format!("docker-archive:{}", archive.display());
        let a = parse(&["-n", "a", "-t", "x", &image]).unwrap();
        let e = format!("{:#}", build_meta(&a, &mut offline()).unwrap_err());
        assert!(e.contains("needs --inline") && e.contains("app.tar"), "{e}");

        let spec = dir.0.join("s.json");
        fs::write(
            &spec,
            json!({"docker-stack": {"format": 1, "stack": "web",
                "containers": {"web": {"image": image}}}})
            .to_string(),
        )
        .unwrap();
        let a = parse(&["-n", "a", "-t", "x", "--spec", spec.to_str().unwrap()]).unwrap();
        let e = format!("{:#}", build_meta(&a, &mut offline()).unwrap_err());
        assert!(
            e.contains("s.json: docker-stack.containers.web.image") && e.contains("needs --inline"),
            "{e}"
        );
    }

    #[test]
    fn legacy_images_with_inline_become_a_docker_stack_with_payloads() {
        let dir = TempDir::new("legacy-inline");
        let archive = dir.0.join("app.tar");
        docker_save(&archive, &format!("{A}.json"), &["web/app:1.0"]);
        let image = format!("docker-archive:{}", archive.display());
        let a = parse(&[
            "-n",
            "a",
            "-t",
            "x",
            "--inline",
            "--software-name",
            "web",
            "--run-args",
            "--network host --restart always",
            &image,
        ])
        .unwrap();
        let mut plan = build_meta(&a, &mut offline()).unwrap();
        assert_eq!(plan.stack, "web");
        assert_eq!(
            plan.meta,
            json!({"docker-stack": {"format": 1, "stack": "web", "containers": {"app": {
                "image": format!("web/app:1.0@sha256:{A}"),
                "network_mode": "host", "restart": "always", "tty": true}}}})
        );
        let out = TempDir::new("legacy-inline-out");
        write_payloads(&mut plan, &out.0, &mut offline(), Some(1_700_000_000), None).unwrap();
        let written = fs::metadata(out.0.join("app.tar")).unwrap();
        assert_eq!(
            written.modified().unwrap(),
            UNIX_EPOCH + Duration::from_secs(1_700_000_000),
            "SOURCE_DATE_EPOCH"
        );
        let size = written.len();
        let mut payload = tar::Archive::new(fs::File::open(out.0.join("app.tar")).unwrap());
        for entry in payload.entries().unwrap() {
            let entry = entry.unwrap();
            assert_eq!(
                entry.header().mtime().unwrap(),
                1_700_000_000,
                "SOURCE_DATE_EPOCH stamps {}",
                entry.path().unwrap().display()
            );
        }
        assert_eq!(
            plan.meta["docker-stack"]["inline"],
            json!({"app.tar": {"images": [format!("sha256:{A}")], "size": size}})
        );

        // Without --software-name the stack is the legacy one.
        let a = parse(&["-n", "a", "-t", "x", "--inline", &image]).unwrap();
        assert_eq!(build_meta(&a, &mut offline()).unwrap().stack, "docker");
    }

    #[test]
    fn a_spec_with_inline_is_pinned_to_image_ids() {
        let dir = TempDir::new("spec-inline");
        let archive = dir.0.join("app.tar");
        docker_save(&archive, &format!("{A}.json"), &[]);
        let spec = dir.0.join("s.json");
        let image = format!("docker-archive:{}", archive.display());
        let mut doc = json!({"docker-stack": {"format": 1, "stack": "web",
            "start_order": ["web", "worker"],
            "containers": {"web": {"image": image}, "worker": {"image": image}}}});
        fs::write(&spec, doc.to_string()).unwrap();
        let a = parse(&[
            "-n",
            "a",
            "-t",
            "x",
            "--inline",
            "--spec",
            spec.to_str().unwrap(),
        ])
        .unwrap();
        let plan = build_meta(&a, &mut offline()).unwrap();
        let images: Vec<&Value> = plan.meta["docker-stack"]["containers"]
            .as_object()
            .unwrap()
            .values()
            .map(|c| &c["image"])
            .collect();
        assert_eq!(images, [&json!(format!("app@sha256:{A}")); 2]);
        assert_eq!(plan.payloads.len(), 1, "one image, one payload");

        doc["docker-stack"]["inline"] = json!({});
        fs::write(&spec, doc.to_string()).unwrap();
        let e = format!("{:#}", build_meta(&a, &mut offline()).unwrap_err());
        assert!(
            e.contains("docker-stack.inline is written by --inline"),
            "{e}"
        );
    }

    #[test]
    fn help_explains_the_provides_and_shows_a_real_example() {
        let help = Args::command().render_long_help().to_string();
        assert!(
            help.contains("docker-artifact-gen -n web-1.2 -t qemux86-64"),
            "{help}"
        );
        assert!(help.contains("cleared by the next OS"), "{help}");
        assert!(help.contains("normalised tar"), "{help}");
        assert!(
            help.contains("docker-artifact-gen -n web-1.3 -t qemux86-64 --inline"),
            "{help}"
        );
        assert!(help.contains("--inline --compose compose.yaml"), "{help}");
    }
}
