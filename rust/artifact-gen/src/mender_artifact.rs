//! The `mender-artifact` tool the generators drive: finding it, checking
//! that it is new enough, and making its output reproducible.

use std::fs::{self, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

const HOW_TO_GET: &str =
    "install mender-artifact 3.5 or newer: `apt-get install mender-artifact` on Debian/Ubuntu, \
     DEPENDS += \"mender-artifact-native\" in a Yocto recipe, or a release from mender.io";

pub struct Tool {
    pub path: PathBuf,
    /// `--device-type` up to 3.x; later releases call it `--compatible-types`.
    pub device_type_flag: &'static str,
}

impl Tool {
    pub fn command(&self) -> Command {
        Command::new(&self.path)
    }

    /// Runs `mender-artifact write module-image` for `image` into the scratch
    /// file `scratch`, makes it reproducible under SOURCE_DATE_EPOCH, and
    /// moves it to `output` only once it is complete.
    pub fn write_module_image(
        &self,
        image: &ModuleImage<'_>,
        scratch: &Path,
        output: &Path,
        epoch: Option<u64>,
    ) -> Result<()> {
        let mut cmd = self.command();
        cmd.args(["write", "module-image", "-T", image.payload_type, "-n"])
            .arg(image.artifact_name);
        for t in image.device_types {
            cmd.arg(self.device_type_flag).arg(t);
        }
        cmd.arg("-o").arg(scratch).arg("-m").arg(image.meta_data);
        for f in &image.files {
            cmd.arg("-f").arg(f);
        }
        let (filesystem, name, version) = image.software;
        cmd.arg("--software-filesystem")
            .arg(filesystem)
            .arg("--software-name")
            .arg(name)
            .arg("--software-version")
            .arg(version)
            // mender-artifact adds this clear by default; naming it keeps it
            // under --no-default-clears-provides too, since a C++ client
            // treats an artifact without clears as clearing every provide.
            .arg("--clears-provides")
            .arg(format!("{filesystem}.{name}.*"))
            .args(image.extra_args);
        let status = cmd
            .status()
            .with_context(|| format!("cannot run {}", self.path.display()))?;
        if !status.success() {
            bail!(
                "{} write module-image failed ({status}); its messages are above",
                self.path.display()
            );
        }
        if let Some(epoch) = epoch {
            normalize_outer_tar(scratch, epoch)?;
        }
        fs::rename(scratch, output).with_context(|| {
            format!(
                "cannot move the artifact to {} (is it on the same filesystem as its directory?)",
                output.display()
            )
        })
    }
}

/// An earlier artifact taken apart (`mender-artifact dump`), as a base for a
/// delta: what its first payload provides and carries.
#[derive(Debug)]
pub struct Dumped {
    /// The Update Module the payload is for (`--type`).
    pub payload_type: String,
    /// `KEY:VALUE` provides, split at the first `:`.
    pub provides: Vec<(String, String)>,
    /// The payload's meta-data file and the directory holding its files.
    pub meta_data: PathBuf,
    pub files: PathBuf,
}

impl Dumped {
    pub fn provide(&self, key: &str) -> Option<&str> {
        self.provides
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

impl Tool {
    /// Takes `artifact` apart into `dir` (its meta-data and payload files)
    /// and reads the command line that would write it again, for its type
    /// and provides. Checksums are verified by mender-artifact as it reads.
    pub fn dump(&self, artifact: &Path, dir: &Path) -> Result<Dumped> {
        let meta_dir = dir.join("meta-data");
        let files = dir.join("files");
        for d in [&meta_dir, &files] {
            fs::create_dir_all(d).with_context(|| format!("cannot create {}", d.display()))?;
        }
        let shown = artifact.display();
        if !artifact.is_file() {
            bail!("{shown} is not a file");
        }
        let out = self
            .command()
            .arg("dump")
            .arg("--meta-data")
            .arg(&meta_dir)
            .arg("--files")
            .arg(&files)
            .arg("--print0-cmdline")
            .arg(artifact)
            .output()
            .with_context(|| format!("cannot run {}", self.path.display()))?;
        if !out.status.success() {
            let err = String::from_utf8_lossy(&out.stderr);
            let last = err
                .lines()
                .rev()
                .find(|l| !l.trim().is_empty() && !l.trim_start().starts_with(['.', '|', '0']))
                .unwrap_or("no message");
            bail!(
                "cannot read {shown} with `mender-artifact dump`: {}; is it a Mender artifact?",
                last.trim()
            );
        }
        let words: Vec<String> = out
            .stdout
            .split(|b| *b == 0)
            .map(|w| String::from_utf8_lossy(w).trim().to_owned())
            .collect();
        let value = |flag: &str| -> Vec<&str> {
            words
                .windows(2)
                .filter(|w| w[0] == flag)
                .map(|w| w[1].as_str())
                .collect()
        };
        let payload_type = value("--type").first().map(|t| (*t).to_owned());
        let Some(payload_type) = payload_type else {
            bail!("{shown} holds no module-image payload (only those can be a base)");
        };
        let provides = value("--provides")
            .iter()
            .filter_map(|p| p.split_once(':'))
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        Ok(Dumped {
            payload_type,
            provides,
            meta_data: meta_dir.join("0000.meta-data"),
            files,
        })
    }
}

/// What goes into one `write module-image` call.
pub struct ModuleImage<'a> {
    /// The Update Module's name on the device.
    pub payload_type: &'a str,
    pub artifact_name: &'a str,
    pub device_types: &'a [String],
    pub meta_data: &'a Path,
    pub files: Vec<PathBuf>,
    /// `(filesystem, name, version)`: provides `FILESYSTEM.NAME.version` and
    /// clears `FILESYSTEM.NAME.*`.
    pub software: (&'a str, &'a str, &'a str),
    /// Passed on unchanged after everything else (signing keys, --depends, …).
    pub extra_args: &'a [std::ffi::OsString],
}

/// Finds `mender-artifact` on PATH and checks it knows `write module-image`
/// and `--software-filesystem` (3.5 and later), the two things older
/// releases lack.
pub fn probe() -> Result<Tool> {
    let Some(path) = find_on_path("mender-artifact") else {
        bail!("mender-artifact is not on PATH; {HOW_TO_GET}");
    };
    let version = Command::new(&path)
        .arg("--version")
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| "of unknown version".to_owned());
    let out = Command::new(&path)
        .args(["write", "module-image", "--help"])
        .output()
        .with_context(|| format!("cannot run {}", path.display()))?;
    let help = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if !out.status.success() || !help.contains("module-image") || !help.contains("--type") {
        bail!(
            "{} ({version}) does not know `write module-image`, which the generators need; {HOW_TO_GET}",
            path.display()
        );
    }
    if !help.contains("--software-filesystem") {
        bail!(
            "{} ({version}) does not know --software-filesystem, without which the software version would be \
             cleared by every OS update; {HOW_TO_GET}",
            path.display()
        );
    }
    let device_type_flag = if help.contains("--device-type") {
        "--device-type"
    } else if help.contains("--compatible-types") {
        "--compatible-types"
    } else {
        bail!(
            "{} ({version}) has neither --device-type nor --compatible-types; {HOW_TO_GET}",
            path.display()
        );
    };
    Ok(Tool {
        path,
        device_type_flag,
    })
}

fn find_on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|p| {
            fs::metadata(p)
                .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
                .unwrap_or(false)
        })
}

/// mender-artifact (3.9 at least) stamps the outer tar's `header.tar.gz`
/// and `data/*.tar.gz` members with the current time and the build user,
/// whatever SOURCE_DATE_EPOCH says; everything inside them is already
/// deterministic. Clamps those mtimes and clears the owner in place. The
/// signature, if any, covers the manifest of checksums of the members'
/// contents, not these header fields, so it stays valid.
pub fn normalize_outer_tar(path: &Path, epoch: u64) -> Result<()> {
    let mut f = OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .with_context(|| format!("cannot open {} to normalise it", path.display()))?;
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    let mut offset = 0u64;
    let mut block = [0u8; 512];
    while offset + 512 <= len {
        f.seek(SeekFrom::Start(offset))?;
        f.read_exact(&mut block)?;
        if block.iter().all(|b| *b == 0) {
            break;
        }
        let mut header = tar::Header::new_old();
        header.as_mut_bytes().copy_from_slice(&block);
        let size = header
            .entry_size()
            .with_context(|| format!("{} is not a tar archive", path.display()))?;
        if header.entry_type().is_file() {
            let mtime = header.mtime().unwrap_or(0);
            header.set_mtime(mtime.min(epoch));
            header.set_uid(0);
            header.set_gid(0);
            if header.as_ustar().is_some() || header.as_gnu().is_some() {
                header.set_username("")?;
                header.set_groupname("")?;
            }
            header.set_cksum();
            f.seek(SeekFrom::Start(offset))?;
            f.write_all(header.as_bytes())?;
        }
        offset += 512 + size.div_ceil(512) * 512;
    }
    f.sync_all()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs::File;

    #[test]
    fn outer_member_times_and_owners_are_normalised() {
        let dir = std::env::temp_dir().join(format!("pag-norm-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let path = dir.join("a.tar");
        let mut b = tar::Builder::new(File::create(&path).unwrap());
        for (name, mtime) in [("version", 0), ("header.tar.gz", 1_900_000_000)] {
            let mut h = tar::Header::new_gnu();
            h.set_size(3);
            h.set_mtime(mtime);
            h.set_uid(1000);
            h.set_username("builder").unwrap();
            h.set_mode(0o600);
            b.append_data(&mut h, name, &b"abc"[..]).unwrap();
        }
        b.into_inner().unwrap();
        normalize_outer_tar(&path, 1_700_000_000).unwrap();
        let mut a = tar::Archive::new(File::open(&path).unwrap());
        let got: Vec<(u64, u64, Option<String>)> = a
            .entries()
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                let h = e.header();
                (
                    h.mtime().unwrap(),
                    h.uid().unwrap(),
                    h.username().unwrap().map(str::to_owned),
                )
            })
            .collect();
        assert_eq!(
            got,
            [
                (0, 0, Some(String::new())),
                (1_700_000_000, 0, Some(String::new()))
            ]
        );
        fs::remove_dir_all(dir).unwrap();
    }
}
