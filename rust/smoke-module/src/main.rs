//! `smoke`: the smallest real Update Module on the protocol crate, used by the
//! test bench to prove the protocol layer under the real Mender client and
//! under the protocol driver. It is a test fixture and is never shipped.
//!
//! It installs the payload files into a directory named by the meta-data
//! (`{"dest": "/data/smoke/NAME"}`), keeps the previous directory until
//! commit, and appends every state it runs to `DEST.states` so tests can see
//! the sequence the client used. Test knobs in the meta-data:
//! `"delivery": "stored"` (do not stream), `"exit_after_bytes": N` (exit 0
//! in the middle of the stream, which the client must treat as a failure),
//! `"fail_install": true`, `"refuse_download": WHERE` (fail `Download` before
//! the payloads, `"start"`; in the middle of the first one after 1000 bytes,
//! dropping it, `"mid-drop"`, or reading the rest, `"mid-discard"`; after the
//! first one's end, `"after-first"`). `SMOKE_FILE_SIZES=no` makes it answer
//! `No` to `ProvidePayloadFileSizes`.

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use mender_module_protocol::{Download, FileTree, ModuleResult, Payloads, UpdateModule};

struct Smoke;

struct Plan {
    dest: PathBuf,
    stored: bool,
    exit_after_bytes: Option<u64>,
    fail_install: bool,
    refuse_download: Option<String>,
}

impl Plan {
    fn load(tree: &FileTree) -> Result<Plan, String> {
        let meta = tree.meta_data().map_err(|e| e.to_string())?;
        let dest = meta["dest"]
            .as_str()
            .filter(|d| d.starts_with('/') && !d.split('/').any(|c| c == ".."))
            .ok_or("meta-data needs \"dest\": an absolute path without \"..\"")?;
        Ok(Plan {
            dest: PathBuf::from(dest),
            stored: meta["delivery"] == "stored",
            exit_after_bytes: meta["exit_after_bytes"].as_u64(),
            fail_install: meta["fail_install"] == true,
            refuse_download: meta["refuse_download"].as_str().map(str::to_owned),
        })
    }

    fn with_suffix(&self, suffix: &str) -> PathBuf {
        let mut s = self.dest.clone().into_os_string();
        s.push(suffix);
        PathBuf::from(s)
    }

    fn staging(&self) -> PathBuf {
        self.with_suffix(".staging")
    }

    fn previous(&self) -> PathBuf {
        self.with_suffix(".previous")
    }

    /// Present between a completed swap and commit/rollback.
    fn swapped_marker(&self) -> PathBuf {
        self.with_suffix(".swapped")
    }

    fn record(&self, state: &str) -> io::Result<()> {
        if let Some(parent) = self.dest.parent() {
            fs::create_dir_all(parent)?;
        }
        let mut log = File::options()
            .create(true)
            .append(true)
            .open(self.with_suffix(".states"))?;
        writeln!(log, "{state}")?;
        log.sync_all()
    }
}

fn remove_dir(path: &Path) -> io::Result<()> {
    match fs::remove_dir_all(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// Copies every payload into a fresh staging directory.
fn refused(at: &str) -> Box<dyn std::error::Error + Send + Sync> {
    format!("refusing on request (meta-data refuse_download {at})").into()
}

fn stage(plan: &Plan, mut payloads: Payloads) -> ModuleResult {
    let staging = plan.staging();
    remove_dir(&staging)?;
    fs::create_dir_all(&staging)?;
    let mut seen = 0u64;
    let refuse = plan.refuse_download.as_deref();
    while let Some(mut payload) = payloads.next_payload()? {
        if let Some(at @ ("mid-drop" | "mid-discard")) = refuse {
            let mut first = vec![0u8; 1000];
            let _ = payload.read(&mut first)?;
            if at == "mid-discard" {
                payload.discard_rest();
            }
            return Err(refused(at));
        }
        let mut out = File::create(staging.join(&payload.name))?;
        let mut buf = [0u8; 64 * 1024];
        let mut copied = 0u64;
        loop {
            let n = payload.read(&mut buf)?;
            if n == 0 {
                break;
            }
            out.write_all(&buf[..n])?;
            copied += n as u64;
            seen += n as u64;
            if plan.exit_after_bytes.is_some_and(|limit| seen >= limit) {
                // Simulates a module that dies in the middle of a stream
                // while reporting success: the client must fail the update.
                std::process::exit(0);
            }
        }
        if let Some(size) = payload.size {
            if size != copied {
                return Err(format!(
                    "payload {}: announced {size} bytes, received {copied}",
                    payload.name
                )
                .into());
            }
        }
        out.sync_all()?;
        if refuse == Some("after-first") {
            return Err(refused("after-first"));
        }
    }
    Ok(())
}

impl UpdateModule for Smoke {
    fn supports_rollback(&self) -> bool {
        true
    }

    fn provide_payload_file_sizes(&self) -> bool {
        std::env::var("SMOKE_FILE_SIZES").map_or(true, |v| v != "no")
    }

    fn download(&mut self, tree: &FileTree, download: Download<'_>) -> ModuleResult {
        let plan = Plan::load(tree)?;
        plan.record(if download.with_sizes() {
            "DownloadWithFileSizes"
        } else {
            "Download"
        })?;
        if plan.refuse_download.as_deref() == Some("start") {
            return Err(refused("start"));
        }
        if plan.stored {
            return Ok(());
        }
        stage(&plan, download.stream())
    }

    fn artifact_install(&mut self, tree: &FileTree) -> ModuleResult {
        let plan = Plan::load(tree)?;
        plan.record("ArtifactInstall")?;
        if plan.stored {
            stage(&plan, Payloads::stored(tree)?)?;
        }
        if plan.fail_install {
            return Err("failing on request (meta-data fail_install)".into());
        }
        if plan.swapped_marker().exists() {
            return Ok(());
        }
        remove_dir(&plan.previous())?;
        if plan.dest.exists() {
            fs::rename(&plan.dest, plan.previous())?;
        }
        fs::rename(plan.staging(), &plan.dest)?;
        File::create(plan.swapped_marker())?.sync_all()?;
        Ok(())
    }

    fn artifact_commit(&mut self, tree: &FileTree) -> ModuleResult {
        let plan = Plan::load(tree)?;
        plan.record("ArtifactCommit")?;
        remove_dir(&plan.previous())?;
        remove_file(&plan.swapped_marker())?;
        Ok(())
    }

    fn artifact_rollback(&mut self, tree: &FileTree) -> ModuleResult {
        let plan = Plan::load(tree)?;
        plan.record("ArtifactRollback")?;
        if !plan.swapped_marker().exists() {
            return Ok(());
        }
        remove_dir(&plan.dest)?;
        if plan.previous().exists() {
            fs::rename(plan.previous(), &plan.dest)?;
        }
        remove_file(&plan.swapped_marker())?;
        Ok(())
    }

    fn artifact_failure(&mut self, tree: &FileTree) -> ModuleResult {
        let plan = Plan::load(tree)?;
        plan.record("ArtifactFailure")?;
        remove_dir(&plan.staging())?;
        Ok(())
    }

    fn cleanup(&mut self, tree: &FileTree) -> ModuleResult {
        let plan = Plan::load(tree)?;
        plan.record("Cleanup")?;
        remove_dir(&plan.staging())?;
        Ok(())
    }
}

fn remove_file(path: &Path) -> io::Result<()> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

fn main() -> ExitCode {
    mender_module_protocol::run("smoke", Smoke)
}
