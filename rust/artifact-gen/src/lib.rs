//! Host-side support shared by the artifact generators (persistent-app-artifact-gen,
//! docker-artifact-gen). Never linked into device binaries.

pub mod mender_artifact;

use std::ffi::OsString;
use std::fs;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant, UNIX_EPOCH};

use anyhow::{anyhow, Context, Result};

/// The generators' exit: on error, one line `NAME: error: what: why` on
/// stderr (CI logs and terminals alike), exit status 1.
pub fn exit(name: &str, result: Result<()>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let line = format!("{e:#}");
            eprintln!(
                "{name}: error: {}",
                line.split_whitespace().collect::<Vec<_>>().join(" ")
            );
            ExitCode::FAILURE
        }
    }
}

/// `SOURCE_DATE_EPOCH`, when set: the time stamped into artifacts so that two
/// builds of the same inputs are byte-identical.
pub fn source_date_epoch() -> Result<Option<u64>> {
    match std::env::var("SOURCE_DATE_EPOCH") {
        Ok(v) if v.is_empty() => Ok(None),
        Ok(v) => v.parse().map(Some).map_err(|_| {
            anyhow!("SOURCE_DATE_EPOCH={v:?} is not a whole number of seconds since 1970")
        }),
        Err(_) => Ok(None),
    }
}

/// The flags every generator takes, spelt as the old generators and
/// `mender-artifact` spell them, so scripts move between the tools unchanged.
/// The defaults of `--software-name` differ per generator: each sets that
/// flag's help with `mut_arg`.
#[derive(Debug, Clone, clap::Args)]
pub struct Common {
    /// Name of the artifact
    #[arg(short = 'n', long, value_name = "NAME")]
    pub artifact_name: String,

    /// Compatible device type; repeat for several
    #[arg(short = 't', long, value_name = "TYPE", required = true)]
    pub device_type: Vec<String>,

    /// Name in the provide FILESYSTEM.NAME.version
    #[arg(long, value_name = "NAME")]
    pub software_name: Option<String>,

    /// Version in the provide [default: the artifact name]
    #[arg(long, value_name = "VERSION")]
    pub software_version: Option<String>,
}

impl Common {
    /// `--software-version`, or the artifact name when it is not given.
    pub fn software_version(&self) -> String {
        self.software_version
            .clone()
            .unwrap_or_else(|| self.artifact_name.clone())
    }
}

/// Everything after `--`, handed to `mender-artifact write module-image`
/// verbatim (signing keys, `--depends`, ...). Flatten it last: it is the
/// final positional argument.
#[derive(Debug, Clone, clap::Args)]
pub struct Passthrough {
    /// Extra arguments for mender-artifact
    #[arg(
        last = true,
        value_name = "MENDER-ARTIFACT-ARGS",
        allow_hyphen_values = true
    )]
    pub mender_artifact_args: Vec<OsString>,
}

/// Sets a payload file's mtime to `SOURCE_DATE_EPOCH` when it is set:
/// mender-artifact records each payload file's mtime in the artifact, so a
/// reproducible artifact needs it fixed.
pub fn stamp_mtime(path: &Path, epoch: Option<u64>) -> Result<()> {
    let Some(epoch) = epoch else {
        return Ok(());
    };
    fs::File::options()
        .write(true)
        .open(path)
        .and_then(|f| f.set_modified(UNIX_EPOCH + Duration::from_secs(epoch)))
        .with_context(|| format!("cannot set the mtime of {}", path.display()))
}

/// A working directory beside the output, so the final rename is atomic and
/// large intermediate files never land on a small /tmp. Removed when dropped.
pub struct Scratch {
    pub dir: PathBuf,
}

impl Scratch {
    /// `flag` names the option that gave `output`, for the error message.
    pub fn new(output: &Path, flag: &str) -> Result<Scratch> {
        let parent = match output.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
            _ => PathBuf::from("."),
        };
        let name = output
            .file_name()
            .ok_or_else(|| anyhow!("{flag} {} names no file", output.display()))?;
        let dir = parent.join(format!(
            ".{}.gen-{}",
            name.to_string_lossy(),
            std::process::id()
        ));
        fs::create_dir(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
        Ok(Scratch { dir })
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// Byte progress of a long copy on stderr (`label: 12.3 MiB, 45.6 MiB/s`),
/// redrawn at most a few times a second, and only when stderr is a
/// terminal: piped output (CI logs, Yocto tasks) stays quiet.
pub struct Progress {
    label: String,
    enabled: bool,
    start: Instant,
    drawn: Option<Instant>,
    bytes: u64,
}

impl Progress {
    /// Shows progress when stderr is a terminal.
    pub fn on_terminal(label: impl Into<String>) -> Progress {
        Progress::new(label, std::io::stderr().is_terminal())
    }

    pub fn new(label: impl Into<String>, enabled: bool) -> Progress {
        Progress {
            label: label.into(),
            enabled,
            start: Instant::now(),
            drawn: None,
            bytes: 0,
        }
    }

    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    pub fn add(&mut self, n: u64) {
        self.set(self.bytes + n);
    }

    /// For producers that report a running total rather than increments.
    pub fn set(&mut self, total: u64) {
        self.bytes = total;
        let due = self
            .drawn
            .map_or(true, |t| t.elapsed() >= Duration::from_millis(250));
        if self.enabled && due {
            self.draw();
            self.drawn = Some(Instant::now());
        }
    }

    /// The last state and a line break, so later messages start on their own line.
    pub fn finish(mut self) {
        if self.enabled {
            self.draw();
            eprintln!();
            self.enabled = false;
        }
    }

    fn draw(&self) {
        eprint!("\r{}\x1b[K", self.line());
    }

    /// `label: 12.3 MiB, 45.6 MiB/s`.
    pub fn line(&self) -> String {
        let mib = self.bytes as f64 / (1024.0 * 1024.0);
        let secs = self.start.elapsed().as_secs_f64();
        let rate = if secs > 0.0 { mib / secs } else { 0.0 };
        format!("{}: {mib:.1} MiB, {rate:.1} MiB/s", self.label)
    }
}

impl Drop for Progress {
    /// An aborted copy still ends its line, so the error starts on a fresh one.
    fn drop(&mut self) {
        if self.enabled {
            eprintln!();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_counts_bytes_and_reports_mib() {
        let mut p = Progress::new("exporting", false);
        p.add(1024 * 1024);
        p.add(512 * 1024);
        assert_eq!(p.bytes(), 1024 * 1024 + 512 * 1024);
        assert!(p.line().starts_with("exporting: 1.5 MiB, "), "{}", p.line());
        assert!(p.line().ends_with(" MiB/s"), "{}", p.line());
        p.set(3 * 1024 * 1024);
        assert_eq!(p.bytes(), 3 * 1024 * 1024);
    }

    #[test]
    fn the_mtime_stamp_is_the_epoch_and_nothing_without_one() {
        let dir = std::env::temp_dir().join(format!("artifact-gen-stamp-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let f = dir.join("payload");
        fs::write(&f, b"x").unwrap();
        let before = fs::metadata(&f).unwrap().modified().unwrap();
        stamp_mtime(&f, None).unwrap();
        assert_eq!(fs::metadata(&f).unwrap().modified().unwrap(), before);
        stamp_mtime(&f, Some(1_700_000_000)).unwrap();
        assert_eq!(
            fs::metadata(&f).unwrap().modified().unwrap(),
            UNIX_EPOCH + Duration::from_secs(1_700_000_000)
        );
        let err = stamp_mtime(&dir.join("absent"), Some(1)).unwrap_err();
        assert!(
            format!("{err:#}").starts_with("cannot set the mtime of "),
            "{err:#}"
        );
        fs::remove_dir_all(&dir).unwrap();
    }
}
