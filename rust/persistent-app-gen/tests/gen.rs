//! The generator with the real mender-artifact: what it writes is read
//! back by `mender-artifact read` and by the module's own parser and
//! extractor, and it is reproducible.

use std::fs;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use persistent_app::archive::{Durability, Expect, Extractor};
use persistent_app::spec::{self, ArtifactFormat};

const GEN: &str = env!("CARGO_BIN_EXE_persistent-app-artifact-gen");

struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Scratch {
        let dir = std::env::temp_dir().join(format!("pag-it-{}-{name}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }

    /// An app tree plus a loose file next to it.
    fn sources(&self) -> (PathBuf, PathBuf) {
        let app = self.0.join("app");
        fs::create_dir_all(app.join("bin")).unwrap();
        fs::create_dir_all(app.join("etc/conf.d")).unwrap();
        fs::write(app.join("bin/run"), "#!/bin/sh\necho hi\n").unwrap();
        fs::set_permissions(app.join("bin/run"), fs::Permissions::from_mode(0o755)).unwrap();
        fs::write(app.join("etc/conf.d/a.conf"), "a=1\n").unwrap();
        symlink("conf.d/a.conf", app.join("etc/current.conf")).unwrap();
        let model = self.0.join("model.bin");
        fs::write(&model, vec![3u8; 50_000]).unwrap();
        (app, model)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn gen(args: &[&str], envs: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(GEN);
    cmd.args(args);
    for (k, v) in envs {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

fn base_args<'a>(out: &'a str, payloads: &[&'a str]) -> Vec<&'a str> {
    let mut v = vec![
        "-n",
        "demo-app-1.0",
        "-t",
        "qemux86-64",
        "-t",
        "raspberrypi4",
        "-d",
        "/data/apps/demo-app",
        "--software-name",
        "demo-app",
        "--software-version",
        "1.0",
        "-o",
        out,
    ];
    v.extend_from_slice(payloads);
    v
}

fn ok(o: &Output) {
    assert!(
        o.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
}

fn one_error_line(o: &Output) -> String {
    assert!(!o.status.success());
    let stderr = String::from_utf8_lossy(&o.stderr).into_owned();
    assert_eq!(stderr.lines().count(), 1, "{stderr:?}");
    assert!(
        stderr.starts_with("persistent-app-artifact-gen: error: "),
        "{stderr}"
    );
    stderr
}

fn sh(script: &str) -> Vec<u8> {
    let o = Command::new("sh").arg("-c").arg(script).output().unwrap();
    assert!(
        o.status.success(),
        "{script}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    o.stdout
}

fn read(artifact: &Path) -> String {
    let o = Command::new("mender-artifact")
        .arg("read")
        .arg(artifact)
        .output()
        .expect("mender-artifact (3.5 or newer) must be installed for these tests: apt-get install mender-artifact");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn the_artifact_reads_back_with_type_provides_clears_and_meta_data() {
    let s = Scratch::new("read");
    let (app, model) = s.sources();
    let out = s.0.join("demo.mender");
    let o = gen(
        &base_args(
            out.to_str().unwrap(),
            &[app.to_str().unwrap(), model.to_str().unwrap()],
        ),
        &[],
    );
    ok(&o);
    let text = read(&out);
    for want in [
        "Name: demo-app-1.0",
        "Compatible devices: '[qemux86-64 raspberrypi4]'",
        "Type:   persistent-app",
        "data-partition.demo-app.version: 1.0",
        "Clears Provides: [\"data-partition.demo-app.*\"]",
        "\"dest\": \"/data/apps/demo-app\"",
        "name:     app.tar",
    ] {
        assert!(text.contains(want), "{want:?} missing from:\n{text}");
    }
    assert!(!text.contains("rootfs-image.demo-app"), "{text}");
    let leftovers: Vec<_> = fs::read_dir(&s.0)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with('.'))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn the_module_accepts_the_meta_data_and_extracts_exactly_the_sources() {
    let s = Scratch::new("roundtrip");
    let (app, model) = s.sources();
    let out = s.0.join("demo.mender");
    ok(&gen(
        &base_args(
            out.to_str().unwrap(),
            &[app.to_str().unwrap(), model.to_str().unwrap()],
        ),
        &[],
    ));
    let a = out.display();
    let meta = sh(&format!(
        "tar -xOf {a} header.tar.gz | tar -xzOf - headers/0000/meta-data"
    ));
    let tar = sh(&format!(
        "tar -xOf {a} data/0000.tar.gz | tar -xzOf - app.tar"
    ));
    let meta: serde_json::Value = serde_json::from_slice(&meta).unwrap();
    let ArtifactFormat::Ours(spec) = spec::parse_meta_data(&meta).unwrap() else {
        panic!("not our format: {meta}")
    };
    assert_eq!(spec.name, "demo-app");
    assert_eq!(spec.unpacked_size, 18 + 4 + 50_000);
    let staging = s.0.join("staging");
    fs::create_dir(&staging).unwrap();
    let mut x = Extractor::new(
        module_kit::fs::Dir::open(&staging).unwrap(),
        Expect {
            entries: Some(spec.entries),
            bytes: Some(spec.unpacked_size),
        },
        Durability::PerFile,
    );
    x.extract_tar(&tar[..]).unwrap();
    x.finish().unwrap();
    assert_eq!(
        fs::read(staging.join("bin/run")).unwrap(),
        b"#!/bin/sh\necho hi\n"
    );
    assert_eq!(
        fs::metadata(staging.join("bin/run"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o755
    );
    assert_eq!(
        fs::read_link(staging.join("etc/current.conf")).unwrap(),
        Path::new("conf.d/a.conf")
    );
    assert_eq!(fs::read(staging.join("model.bin")).unwrap().len(), 50_000);
}

#[test]
fn source_date_epoch_makes_the_output_identical() {
    let s = Scratch::new("repro");
    let (app, model) = s.sources();
    let mut outputs = Vec::new();
    for i in 0..2 {
        let out = s.0.join(format!("r{i}.mender"));
        ok(&gen(
            &base_args(
                out.to_str().unwrap(),
                &[app.to_str().unwrap(), model.to_str().unwrap()],
            ),
            &[("SOURCE_DATE_EPOCH", "1700000000")],
        ));
        outputs.push(fs::read(&out).unwrap());
        // mender-artifact stamps the current second; make it differ.
        std::thread::sleep(std::time::Duration::from_millis(1100));
    }
    assert!(outputs[0] == outputs[1], "two builds differ");
    let listing = String::from_utf8(sh(&format!(
        "tar -tvf {} --full-time",
        s.0.join("r0.mender").display()
    )))
    .unwrap();
    assert!(!listing.contains("root/root"), "{listing}");
}

#[test]
fn arguments_after_the_double_dash_reach_mender_artifact() {
    let s = Scratch::new("passthrough");
    let (app, _) = s.sources();
    let out = s.0.join("p.mender");
    let mut args = base_args(out.to_str().unwrap(), &[app.to_str().unwrap()]);
    args.extend_from_slice(&[
        "--",
        "--provides",
        "extra.key:value",
        "--depends",
        "rootfs-image.python.version:3.12",
        "--no-default-clears-provides",
    ]);
    ok(&gen(&args, &[]));
    let text = read(&out);
    assert!(text.contains("extra.key: value"), "{text}");
    assert!(text.contains("rootfs-image.python.version: 3.12"), "{text}");
    // The clear survives --no-default-clears-provides: without any, a C++
    // client would clear every provide.
    assert!(
        text.contains("Clears Provides: [\"data-partition.demo-app.*\"]"),
        "{text}"
    );
}

#[test]
fn a_missing_mender_artifact_is_one_line_saying_how_to_get_it() {
    let s = Scratch::new("missing");
    let (app, _) = s.sources();
    let out = s.0.join("m.mender");
    let o = gen(
        &base_args(out.to_str().unwrap(), &[app.to_str().unwrap()]),
        &[("PATH", "/nonexistent")],
    );
    let line = one_error_line(&o);
    assert!(line.contains("mender-artifact is not on PATH"), "{line}");
    assert!(line.contains("apt-get install mender-artifact"), "{line}");
    assert!(line.contains("mender-artifact-native"), "{line}");
    assert!(!out.exists());
}

#[test]
fn an_old_mender_artifact_is_named_with_what_it_lacks() {
    let s = Scratch::new("old");
    let (app, _) = s.sources();
    let bin = s.0.join("bin");
    fs::create_dir(&bin).unwrap();
    let fake = bin.join("mender-artifact");
    for (script, want) in [
        (
            "echo 'No help topic for module-image' >&2; exit 3",
            "does not know `write module-image`",
        ),
        (
            "echo 'module-image --type value --artifact-name value --device-type value'",
            "does not know --software-filesystem",
        ),
    ] {
        fs::write(
            &fake,
            format!("#!/bin/sh\n[ \"$1\" = --version ] && {{ echo 'mender-artifact version 2.4.0'; exit 0; }}\n{script}\n"),
        )
        .unwrap();
        fs::set_permissions(&fake, fs::Permissions::from_mode(0o755)).unwrap();
        let out = s.0.join("o.mender");
        let o = gen(
            &base_args(out.to_str().unwrap(), &[app.to_str().unwrap()]),
            &[("PATH", bin.to_str().unwrap())],
        );
        let line = one_error_line(&o);
        assert!(line.contains(want), "{line}");
        assert!(line.contains("(mender-artifact version 2.4.0)"), "{line}");
        assert!(line.contains("3.5 or newer"), "{line}");
    }
}

#[test]
fn bad_inputs_are_refused_before_anything_is_written() {
    let s = Scratch::new("bad");
    let (app, _) = s.sources();
    symlink("../../etc/passwd", app.join("etc/escape")).unwrap();
    let out = s.0.join("b.mender");
    let o = gen(
        &base_args(out.to_str().unwrap(), &[app.to_str().unwrap()]),
        &[],
    );
    let line = one_error_line(&o);
    assert!(
        line.contains("points to ../../etc/passwd, outside the app tree"),
        "{line}"
    );
    fs::remove_file(app.join("etc/escape")).unwrap();

    for (flag, value, want) in [
        ("-d", "data/apps/x", "not absolute"),
        ("-d", "/data/apps/../x", "'..' component"),
        ("--software-name", "demo app", "app name \"demo app\""),
    ] {
        let mut args = base_args(out.to_str().unwrap(), &[app.to_str().unwrap()]);
        let i = args.iter().position(|a| *a == flag).unwrap();
        args[i + 1] = value;
        let line = one_error_line(&gen(&args, &[]));
        assert!(line.contains(want), "{line}");
    }
    let mut args = base_args(out.to_str().unwrap(), &[app.to_str().unwrap()]);
    args.extend_from_slice(&["--service", "demo"]);
    let line = one_error_line(&gen(&args, &[]));
    assert!(line.contains("does not end in .service"), "{line}");
    assert!(!out.exists());
    let leftovers = fs::read_dir(&s.0)
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .starts_with('.')
        })
        .count();
    assert_eq!(leftovers, 0);
}
