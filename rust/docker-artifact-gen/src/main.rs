//! `docker-artifact-gen`: builds a Mender artifact for the docker Update
//! Module. A drop-in for the old shell generator's command line that pins
//! every image by digest from the local engine (never pulling), validates the
//! meta-data as the device will, and makes the stack's version a
//! data-partition provide that OS updates do not clear.

// The mender-artifact probe and SOURCE_DATE_EPOCH normalisation of the
// sibling generator, shared as a source file until it moves to a library.
mod resolve;

use std::ffi::OsString;
use std::fs;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{anyhow, bail, Context, Result};
use artifact_gen::Scratch;
use clap::Parser;
use serde_json::{json, Value};

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

Examples:
  docker-artifact-gen -n web-1.2 -t qemux86-64 --software-version 1.2 \\
      --run-args '-p 8080:80 --restart unless-stopped' \\
      -o web-1.2.mender registry.example.com/web/app:1.2
  docker-artifact-gen -n web-2.0 -t qemux86-64 --spec web.json -o web-2.0.mender \\
      -- -k signing-key.pem"
)]
struct Args {
    /// Name of the artifact
    #[arg(short = 'n', long, value_name = "NAME")]
    artifact_name: String,

    /// Compatible device type; repeat for several
    #[arg(short = 't', long, value_name = "TYPE", required = true)]
    device_type: Vec<String>,

    /// Output file
    #[arg(
        short = 'o',
        long,
        value_name = "FILE",
        default_value = "docker-artifact.mender"
    )]
    output_path: PathBuf,

    /// Name in the provide FILESYSTEM.NAME.version [default: the stack, `docker` without --spec]
    #[arg(long, value_name = "NAME")]
    software_name: Option<String>,

    /// Version in the provide [default: the artifact name]
    #[arg(long, value_name = "VERSION")]
    software_version: Option<String>,

    /// First part of the provide; the old generator's default was rootfs-image [default: data-partition]
    #[arg(long, value_name = "FILESYSTEM")]
    software_filesystem: Option<String>,

    /// `docker run` options for every container (legacy meta-data)
    #[arg(long, value_name = "ARGS", allow_hyphen_values = true)]
    run_args: Option<String>,

    /// A docker-stack meta-data file to use instead of IMAGEs and --run-args
    #[arg(long, value_name = "FILE", conflicts_with_all = ["images", "run_args"])]
    spec: Option<PathBuf>,

    /// Container images (legacy meta-data: one container each)
    #[arg(value_name = "IMAGE", required_unless_present = "spec")]
    images: Vec<String>,

    /// Extra arguments for mender-artifact
    #[arg(
        last = true,
        value_name = "MENDER-ARTIFACT-ARGS",
        allow_hyphen_values = true
    )]
    mender_artifact_args: Vec<OsString>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    artifact_gen::exit("docker-artifact-gen", run(&args))
}

/// The meta-data of the old generator, byte-compatible in content.
fn legacy_meta(pinned: &[String], run_args: Option<&str>) -> Value {
    json!({"containers": pinned, "run_args": run_args.unwrap_or("")})
}

/// Pins every tag-only image of a docker-stack document in place.
fn pin_stack_images(meta: &mut Value, resolver: &mut Resolver) -> Result<()> {
    let Some(containers) = meta
        .get_mut("docker-stack")
        .and_then(|s| s.get_mut("containers"))
        .and_then(Value::as_array_mut)
    else {
        return Ok(());
    };
    for (i, c) in containers.iter_mut().enumerate() {
        if let Some(image) = c.get_mut("image") {
            if let Some(text) = image.as_str() {
                let pinned = resolver
                    .resolve(text, true)
                    .with_context(|| format!("docker-stack.containers[{i}].image"))?;
                *image = Value::String(pinned);
            }
        }
    }
    Ok(())
}

/// The meta-data and the stack it deploys, validated as the device will.
fn build_meta(args: &Args, resolver: &mut Resolver) -> Result<(Value, String)> {
    let meta = match &args.spec {
        Some(path) => {
            let text = fs::read_to_string(path)
                .with_context(|| format!("cannot read {}", path.display()))?;
            let mut meta: Value = serde_json::from_str(&text)
                .with_context(|| format!("{} is not valid JSON", path.display()))?;
            pin_stack_images(&mut meta, resolver)?;
            meta
        }
        None => {
            let mut pinned = Vec::new();
            for image in &args.images {
                pinned.push(resolver.resolve(image, false)?);
            }
            legacy_meta(&pinned, args.run_args.as_deref())
        }
    };
    let release = docker_spec::parse(&meta).map_err(|e| match &args.spec {
        Some(path) => anyhow!("{}: {e}", path.display()),
        None => anyhow!("{e}"),
    })?;
    Ok((meta, release.stack))
}

/// The provide and clear this artifact writes: (filesystem, name, version).
fn provides(args: &Args, stack: &str) -> (String, String, String) {
    (
        args.software_filesystem
            .clone()
            .unwrap_or_else(|| "data-partition".to_owned()),
        args.software_name
            .clone()
            .unwrap_or_else(|| stack.to_owned()),
        args.software_version
            .clone()
            .unwrap_or_else(|| args.artifact_name.clone()),
    )
}

fn run(args: &Args) -> Result<()> {
    let epoch = artifact_gen::source_date_epoch()?;
    let tool = artifact_gen::mender_artifact::probe()?;
    let socket = resolve::socket_from(std::env::var("DOCKER_HOST").ok().as_deref())?;
    let mut resolver = Resolver::new(socket);
    let (meta, stack) = build_meta(args, &mut resolver)?;
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
    let meta_path = work.dir.join("meta-data.json");
    let text = serde_json::to_vec(&meta).expect("meta-data serialises");
    fs::write(&meta_path, text).with_context(|| format!("cannot write {}", meta_path.display()))?;

    let tmp_out = work.dir.join("artifact.mender");
    let mut cmd = tool.command();
    cmd.args(["write", "module-image", "-T", PAYLOAD_TYPE, "-n"])
        .arg(&args.artifact_name);
    for t in &args.device_type {
        cmd.arg(tool.device_type_flag).arg(t);
    }
    cmd.arg("-o")
        .arg(&tmp_out)
        .arg("-m")
        .arg(&meta_path)
        .arg("--software-filesystem")
        .arg(&filesystem)
        .arg("--software-name")
        .arg(&name)
        .arg("--software-version")
        .arg(&version)
        // Explicit, so it survives --no-default-clears-provides: a C++
        // client treats an artifact without clears as clearing everything.
        .arg("--clears-provides")
        .arg(format!("{filesystem}.{name}.*"))
        .args(&args.mender_artifact_args);
    let status = cmd
        .status()
        .with_context(|| format!("cannot run {}", tool.path.display()))?;
    if !status.success() {
        bail!(
            "{} write module-image failed ({status}); its messages are above",
            tool.path.display()
        );
    }
    if let Some(epoch) = epoch {
        artifact_gen::mender_artifact::normalize_outer_tar(&tmp_out, epoch)?;
    }
    fs::rename(&tmp_out, &args.output_path)
        .with_context(|| format!("cannot move the artifact to {}", args.output_path.display()))?;
    eprintln!(
        "docker-artifact-gen: wrote {}: stack {stack}; provides {filesystem}.{name}.version={version}",
        args.output_path.display()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

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
        assert_eq!(a.device_type, ["x", "y"]);
        assert_eq!(a.images, ["a/b:1", "c@sha256:x"]);
        assert_eq!(a.run_args.as_deref(), Some("-p 80:80 --restart always"));
        assert_eq!(a.output_path, PathBuf::from("o.mender"));
        assert_eq!(
            a.mender_artifact_args,
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
        let (meta, stack) = build_meta(&a, &mut offline()).unwrap();
        assert_eq!(stack, "docker");
        assert_eq!(
            serde_json::to_string(&meta).unwrap(),
            format!(
                r#"{{"containers":["reg.example.com/app@{D}","reg.example.com/tools/sidecar@{D}"],"run_args":"--network host -e MODE=prod"}}"#
            )
        );
        let no_args = parse(&["-n", "a", "-t", "x", &format!("app@{D}")]).unwrap();
        assert_eq!(
            build_meta(&no_args, &mut offline()).unwrap().0["run_args"],
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
                    "containers": [{{"name": "web", "image": "reg.example.com/web:2@{D}"}}]}}}}"#
            ),
        )
        .unwrap();
        let a = parse(&["-n", "a", "-t", "x", "--spec", good.to_str().unwrap()]).unwrap();
        let (meta, stack) = build_meta(&a, &mut offline()).unwrap();
        assert_eq!(stack, "web");
        assert_eq!(
            meta["docker-stack"]["containers"][0]["image"],
            format!("reg.example.com/web:2@{D}")
        );
        assert_eq!(provides(&a, &stack).1, "web");

        let bad = dir.join("bad.json");
        fs::write(
            &bad,
            format!(
                r#"{{"docker-stack": {{"format": 1, "stack": "web", "colour": "red",
                    "containers": [{{"name": "web", "image": "reg.example.com/web@{D}"}}]}}}}"#
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
    fn help_explains_the_provides_and_shows_a_real_example() {
        let help = Args::command().render_long_help().to_string();
        assert!(
            help.contains("docker-artifact-gen -n web-1.2 -t qemux86-64"),
            "{help}"
        );
        assert!(help.contains("cleared by the next OS"), "{help}");
    }
}
