//! Host-side support shared by the artifact generators (persistent-app-artifact-gen,
//! docker-artifact-gen). Never linked into device binaries.

pub mod mender_artifact;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

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
