//! The Mender client's side of the Update Module v3 file API, for tests.
//!
//! It builds the file tree, creates the real FIFOs and calls a module binary
//! state by state in the order one of the two client families uses:
//!
//! * [`Flavor::Go3`] (mender 3.x): `Download` → `SupportsRollback` →
//!   `ArtifactInstall` → `NeedsArtifactReboot`; values written without a
//!   trailing newline, JSON re-marshalled with indentation, `meta-data` `null`
//!   when the artifact has none.
//! * [`Flavor::Cpp5`] (mender-update 4.x/5.x): `ProvidePayloadFileSizes` →
//!   `Download` or `DownloadWithFileSizes` → `ArtifactInstall` →
//!   `NeedsArtifactReboot` → `SupportsRollback`; values with a trailing
//!   newline, JSON verbatim, `ArtifactFailure` also after a plain rollback.
//!
//! Query answers are held to what the C++ client accepts (one line, one word),
//! which is stricter than Go's whole-stdout comparison: a module that passes
//! here passes under both.
//!
//! The real Go client stays the end-to-end judge; this driver exists so CI can
//! cover the C++ order and the corner cases (exits mid-stream, stored files,
//! several or no payloads) deterministically.

use std::ffi::OsString;
use std::fmt;
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::fcntl::{fcntl, open, FcntlArg, OFlag};
use nix::sys::stat::Mode;
use nix::unistd::mkfifo;

/// Which client's behaviour to reproduce.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavor {
    /// The Go client, mender 3.x.
    Go3,
    /// The C++ client, mender-update 4.x and 5.x.
    Cpp5,
}

/// The payload bytes of one payload file.
#[derive(Debug, Clone)]
pub enum PayloadSource {
    Bytes(Vec<u8>),
    /// Streamed from a file, for payloads too large to hold in memory.
    Path(PathBuf),
}

#[derive(Debug, Clone)]
pub struct PayloadFile {
    pub name: String,
    pub source: PayloadSource,
}

impl PayloadFile {
    pub fn bytes(name: &str, data: impl Into<Vec<u8>>) -> Self {
        PayloadFile {
            name: name.to_owned(),
            source: PayloadSource::Bytes(data.into()),
        }
    }

    pub fn path(name: &str, path: impl Into<PathBuf>) -> Self {
        PayloadFile {
            name: name.to_owned(),
            source: PayloadSource::Path(path.into()),
        }
    }

    fn size(&self) -> io::Result<u64> {
        match &self.source {
            PayloadSource::Bytes(b) => Ok(b.len() as u64),
            PayloadSource::Path(p) => Ok(fs::metadata(p)?.len()),
        }
    }

    fn copy_to(&self, out: &mut File) -> io::Result<u64> {
        match &self.source {
            PayloadSource::Bytes(b) => out.write_all(b).map(|()| b.len() as u64),
            PayloadSource::Path(p) => io::copy(&mut File::open(p)?, out),
        }
    }
}

/// The artifact as the module sees it through `header/`.
#[derive(Debug, Clone)]
pub struct Artifact {
    pub name: String,
    pub group: String,
    pub payload_type: String,
    /// The `-m` meta-data object as JSON text; `None` when the artifact has none.
    pub meta_data: Option<String>,
    /// Extra `type-info` keys (`artifact_provides`, …) as a JSON object text.
    pub type_info: Option<String>,
    pub payloads: Vec<PayloadFile>,
}

impl Artifact {
    pub fn new(name: &str, payload_type: &str) -> Self {
        Artifact {
            name: name.to_owned(),
            group: String::new(),
            payload_type: payload_type.to_owned(),
            meta_data: None,
            type_info: None,
            payloads: Vec::new(),
        }
    }

    pub fn meta_data(mut self, json: &str) -> Self {
        self.meta_data = Some(json.to_owned());
        self
    }

    pub fn payload(mut self, p: PayloadFile) -> Self {
        self.payloads.push(p);
        self
    }
}

/// What the device reports as currently installed.
#[derive(Debug, Clone)]
pub struct Device {
    pub artifact_name: String,
    pub artifact_group: String,
    pub device_type: String,
}

impl Default for Device {
    fn default() -> Self {
        Device {
            artifact_name: "composable-demo-1.0".to_owned(),
            artifact_group: String::new(),
            device_type: "qemux86-64".to_owned(),
        }
    }
}

/// One call of the module, as the client saw it.
#[derive(Debug, Clone)]
pub struct Call {
    pub arg: String,
    pub status: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Call {
    pub fn success(&self) -> bool {
        self.status == Some(0)
    }
}

/// How `Download` ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// The module read every payload from the streams.
    Streamed,
    /// The module did not stream; the payloads were stored under `files/`.
    Stored,
}

/// Why a client command failed, with every call made so far.
#[derive(Debug)]
pub struct Failure {
    pub reason: String,
    pub calls: Vec<Call>,
    /// The module failed `Download` at a moment where the Go 3.x client can
    /// wait for ever (see [`Driver::download`]): a bug in the module, never
    /// an ordinary failed deployment.
    pub hangs_go3: bool,
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.reason)?;
        for c in &self.calls {
            write!(f, "\n  {} -> {:?}", c.arg, c.status)?;
            if !c.stderr.is_empty() {
                write!(f, " stderr: {}", c.stderr.trim_end())?;
            }
        }
        Ok(())
    }
}

impl std::error::Error for Failure {}

/// The result of `install`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Installed {
    /// Installed, waiting for `commit` or `rollback`.
    AwaitingCommit {
        delivery: Delivery,
        supports_rollback: bool,
    },
    /// `Download` failed; only `Cleanup` ran: "system not modified".
    NotModified,
    /// `ArtifactInstall` failed; the error states ran.
    RolledBack,
}

/// Plays the client for one module binary and one work directory.
pub struct Driver {
    module: PathBuf,
    work: PathBuf,
    pub flavor: Flavor,
    pub device: Device,
    env: Vec<(OsString, OsString)>,
    /// How long to wait for the module to open a FIFO before calling it hung.
    pub fifo_timeout: Duration,
    calls: Vec<Call>,
    supports_rollback: bool,
}

impl Driver {
    /// `work` plays `/var/lib/mender/modules/v3`; the tree is `payloads/0000/tree` in it.
    pub fn new(module: impl Into<PathBuf>, work: impl Into<PathBuf>, flavor: Flavor) -> Self {
        Driver {
            module: module.into(),
            work: work.into(),
            flavor,
            device: Device::default(),
            env: Vec::new(),
            fifo_timeout: Duration::from_secs(60),
            calls: Vec::new(),
            supports_rollback: false,
        }
    }

    /// Sets an environment variable for every module call (fault injection, config paths).
    pub fn env(&mut self, key: impl Into<OsString>, value: impl Into<OsString>) -> &mut Self {
        self.env.push((key.into(), value.into()));
        self
    }

    pub fn tree(&self) -> PathBuf {
        self.work.join("payloads").join("0000").join("tree")
    }

    /// Every call made so far.
    pub fn calls(&self) -> &[Call] {
        &self.calls
    }

    /// The first arguments of the calls made so far, in order.
    pub fn sequence(&self) -> Vec<String> {
        self.calls.iter().map(|c| c.arg.clone()).collect()
    }

    pub fn clear_calls(&mut self) {
        self.calls.clear();
    }

    fn fail(&self, reason: impl Into<String>) -> Failure {
        Failure {
            reason: reason.into(),
            calls: self.calls.clone(),
            hangs_go3: false,
        }
    }

    /// Writes the file tree for `artifact` the way this flavor does.
    pub fn prepare_tree(&self, artifact: &Artifact) -> io::Result<()> {
        let tree = self.tree();
        match fs::remove_dir_all(&tree) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
        fs::create_dir_all(tree.join("header"))?;
        fs::create_dir_all(tree.join("tmp"))?;
        let nl = match self.flavor {
            Flavor::Go3 => "",
            Flavor::Cpp5 => "\n",
        };
        let go = self.flavor == Flavor::Go3;
        let json = |text: &str| -> io::Result<String> {
            let value: serde_json::Value = serde_json::from_str(text)
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
            Ok(if go {
                serde_json::to_string_pretty(&value).expect("a Value always serialises")
            } else {
                value.to_string()
            })
        };
        let header_info = format!(
            r#"{{"payloads":[{{"type":"{}"}}],"artifact_provides":{{"artifact_name":"{}"}},"artifact_depends":{{"device_type":["{}"]}}}}"#,
            json_escape(&artifact.payload_type),
            json_escape(&artifact.name),
            json_escape(&self.device.device_type)
        );
        let type_info = match &artifact.type_info {
            Some(t) => t.clone(),
            None => format!(r#"{{"type":"{}"}}"#, json_escape(&artifact.payload_type)),
        };
        let meta = artifact.meta_data.as_deref().unwrap_or("null");
        let files = [
            ("version".to_owned(), format!("3{nl}")),
            (
                "current_artifact_name".to_owned(),
                format!("{}{nl}", self.device.artifact_name),
            ),
            (
                "current_artifact_group".to_owned(),
                self.device.artifact_group.clone(),
            ),
            (
                "current_device_type".to_owned(),
                format!("{}{nl}", self.device.device_type),
            ),
            ("header/artifact_name".to_owned(), artifact.name.clone()),
            ("header/artifact_group".to_owned(), artifact.group.clone()),
            (
                "header/payload_type".to_owned(),
                artifact.payload_type.clone(),
            ),
            ("header/header-info".to_owned(), json(&header_info)?),
            ("header/type-info".to_owned(), json(&type_info)?),
            ("header/meta-data".to_owned(), json(meta)?),
        ];
        for (name, content) in files {
            fs::write(tree.join(name), content)?;
        }
        Ok(())
    }

    fn command(&self, arg: &str) -> Command {
        let tree = self.tree();
        let mut cmd = Command::new(&self.module);
        cmd.arg(arg).arg(&tree).current_dir(&tree);
        // Both clients start modules in their own process group so that a
        // timeout can signal the whole group.
        cmd.process_group(0);
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        cmd
    }

    /// Runs one state or query to completion and records it.
    pub fn call(&mut self, arg: &str) -> Call {
        let call = match self.command(arg).output() {
            Ok(out) => Call {
                arg: arg.to_owned(),
                status: out.status.code(),
                stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
                stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            },
            Err(e) => Call {
                arg: arg.to_owned(),
                status: None,
                stdout: String::new(),
                stderr: format!("cannot execute {}: {e}", self.module.display()),
            },
        };
        self.calls.push(call.clone());
        call
    }

    /// Asks a query and returns the answer. Fails on a non-zero exit and on
    /// anything but one word on one line.
    pub fn query(&mut self, query: &str) -> Result<String, Failure> {
        let call = self.call(query);
        if !call.success() {
            return Err(self.fail(format!("query {query} exited with {:?}", call.status)));
        }
        let answer = call.stdout.strip_suffix('\n').unwrap_or(&call.stdout);
        let one_word = !answer.is_empty() && answer.chars().all(|c| c.is_ascii_alphanumeric());
        if !one_word {
            return Err(self.fail(format!(
                "query {query}: expected one word on one line, got {:?}",
                call.stdout
            )));
        }
        Ok(answer.to_owned())
    }

    fn query_yes(&mut self, query: &str) -> Result<bool, Failure> {
        match self.query(query)?.as_str() {
            "Yes" => Ok(true),
            "No" => Ok(false),
            other => Err(self.fail(format!("query {query}: unexpected answer {other:?}"))),
        }
    }

    /// Runs `Download` (or `DownloadWithFileSizes`) and delivers the payloads
    /// the way the client does: through `stream-next` when the module opens
    /// it, into `files/` when it exits successfully without having opened it.
    ///
    /// Under [`Flavor::Go3`], a module that exits with a failure status while
    /// the client is between payloads (before the first one is handed over,
    /// after a stream's end, or after a failed stream write) fails with
    /// [`Failure::hangs_go3`]. There the Go 3.x client's download loop
    /// (`installer/modules.go`, `downloadProcessLoop`) can get a second error
    /// for its unbuffered `status` channel, which nobody reads any more, and
    /// hangs: a race this driver does not leave to chance. Exiting after a
    /// name was read and before its stream is opened, or after the empty
    /// read, is safe. A module killed by a signal is not judged: nothing it
    /// does can avoid the race then.
    pub fn download(
        &mut self,
        payloads: &[PayloadFile],
        with_sizes: bool,
    ) -> Result<Delivery, Failure> {
        let state = if with_sizes {
            "DownloadWithFileSizes"
        } else {
            "Download"
        };
        let tree = self.tree();
        let setup = (|| -> io::Result<()> {
            fs::create_dir_all(tree.join("streams"))?;
            mkfifo(&tree.join("stream-next"), Mode::from_bits_truncate(0o600))?;
            Ok(())
        })();
        if let Err(e) = setup {
            return Err(self.fail(format!("cannot prepare the streams tree: {e}")));
        }
        let mut cmd = self.command(state);
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = match cmd.spawn() {
            Ok(c) => c,
            Err(e) => {
                return Err(self.fail(format!("cannot execute {}: {e}", self.module.display())))
            }
        };
        let stdout = collect(child.stdout.take());
        let stderr = collect(child.stderr.take());

        let result = self.feed(&mut child, payloads, with_sizes);
        // Whatever happened, the process must be gone before we report.
        if result.is_err() {
            let _ = child.kill();
        }
        let status = child.wait().ok();
        let call = Call {
            arg: state.to_owned(),
            status: status.and_then(|s| s.code()),
            stdout: stdout.join().unwrap_or_default(),
            stderr: stderr.join().unwrap_or_default(),
        };
        self.calls.push(call.clone());
        let delivery = result.map_err(|fault| match fault {
            Fault::Failed(reason) => self.fail(reason),
            Fault::HangsGo3(reason) => Failure {
                hangs_go3: true,
                ..self.fail(format!(
                    "{reason}: the Go 3.x client can wait for ever on an exit there \
                     (installer/modules.go, downloadProcessLoop)"
                ))
            },
        })?;
        if !call.success() {
            return Err(self.fail(format!(
                "{state}: Update Module returned non-zero status {:?}",
                call.status
            )));
        }
        Ok(delivery)
    }

    fn feed(
        &self,
        child: &mut Child,
        payloads: &[PayloadFile],
        with_sizes: bool,
    ) -> Result<Delivery, Fault> {
        let tree = self.tree();
        let stream_next = tree.join("stream-next");
        let mut started = false;
        for (i, payload) in payloads.iter().enumerate() {
            let writer = match self.open_writer(&stream_next, child)? {
                Opened::Writer(w) => w,
                Opened::Exited(status) => {
                    self.between_payloads(status)?;
                    return self.after_exit(status, started, &payloads[i..]);
                }
            };
            started = true;
            let stream = tree.join("streams").join(&payload.name);
            mkfifo(&stream, Mode::from_bits_truncate(0o600))
                .map_err(|e| format!("cannot create {}: {e}", stream.display()))?;
            let line = if with_sizes {
                let size = payload
                    .size()
                    .map_err(|e| format!("payload {}: {e}", payload.name))?;
                format!("streams/{} {size}\n", payload.name)
            } else {
                format!("streams/{}\n", payload.name)
            };
            write_and_close(writer, line.as_bytes())
                .map_err(|e| format!("cannot write stream-next: {e}"))?;
            let mut out = match self.open_writer(&stream, child)? {
                Opened::Writer(w) => w,
                Opened::Exited(_) => {
                    return Err("Update Module terminated in the middle of the download"
                        .to_owned()
                        .into())
                }
            };
            if let Err(e) = payload.copy_to(&mut out) {
                drop(out);
                let reason = format!(
                    "Update Module terminated in the middle of the download (payload {}: {e})",
                    payload.name
                );
                if self.flavor == Flavor::Go3 {
                    // Go 3.x reports the failed write, then ends the payload
                    // list on stream-next and waits for the module.
                    match self.open_writer(&stream_next, child)? {
                        Opened::Writer(w) => {
                            let _ = write_and_close(w, b"");
                        }
                        Opened::Exited(status) => self.between_payloads(status)?,
                    }
                }
                return Err(reason.into());
            }
            drop(out);
        }
        match self.open_writer(&stream_next, child)? {
            // An empty write and close: EOF on stream-next means "no more payloads".
            Opened::Writer(w) => {
                write_and_close(w, b"").map_err(|e| format!("cannot end stream-next: {e}"))?
            }
            Opened::Exited(status) => {
                self.between_payloads(status)?;
                return self.after_exit(status, started, &[]);
            }
        }
        Ok(Delivery::Streamed)
    }

    /// The module exited while the client was between payloads.
    fn between_payloads(&self, status: ExitStatus) -> Result<(), Fault> {
        match status.code() {
            Some(code) if code != 0 && self.flavor == Flavor::Go3 => Err(Fault::HangsGo3(format!(
                "Download: the Update Module exited with status {code} between payloads"
            ))),
            _ => Ok(()),
        }
    }

    /// The module exited before opening stream-next again.
    fn after_exit(
        &self,
        status: ExitStatus,
        started: bool,
        rest: &[PayloadFile],
    ) -> Result<Delivery, Fault> {
        if !status.success() {
            return Err(format!(
                "Download: Update Module returned non-zero status {:?}",
                status.code()
            )
            .into());
        }
        if started {
            return Err("Update Module started downloading, but did not finish"
                .to_owned()
                .into());
        }
        let tree = self.tree();
        (|| -> io::Result<()> {
            fs::remove_dir_all(tree.join("streams"))?;
            fs::remove_file(tree.join("stream-next"))?;
            fs::create_dir_all(tree.join("files"))?;
            for p in rest {
                let mut f = File::options()
                    .write(true)
                    .create_new(true)
                    .open(tree.join("files").join(&p.name))?;
                p.copy_to(&mut f)?;
                f.sync_all()?;
            }
            Ok(())
        })()
        .map_err(|e| format!("cannot store payloads under files/: {e}"))?;
        Ok(Delivery::Stored)
    }

    /// Opens a FIFO for writing once the module opens it for reading, or
    /// reports that the module exited first.
    fn open_writer(&self, path: &Path, child: &mut Child) -> Result<Opened, String> {
        let deadline = Instant::now() + self.fifo_timeout;
        loop {
            match open(
                path,
                OFlag::O_WRONLY | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC,
                Mode::empty(),
            ) {
                Ok(fd) => {
                    fcntl(&fd, FcntlArg::F_SETFL(OFlag::empty()))
                        .map_err(|e| format!("cannot make {} blocking: {e}", path.display()))?;
                    return Ok(Opened::Writer(File::from(fd)));
                }
                // ENXIO: no reader yet.
                Err(Errno::ENXIO) | Err(Errno::EINTR) => {}
                Err(e) => return Err(format!("cannot open {}: {e}", path.display())),
            }
            if let Some(status) = child
                .try_wait()
                .map_err(|e| format!("cannot wait for module: {e}"))?
            {
                return Ok(Opened::Exited(status));
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "the module neither opened {} nor exited within {:?}",
                    path.display(),
                    self.fifo_timeout
                ));
            }
            thread::sleep(Duration::from_millis(2));
        }
    }

    /// `mender install`: from an empty tree to "waiting for commit".
    pub fn install(&mut self, artifact: &Artifact) -> Result<Installed, Failure> {
        self.prepare_tree(artifact)
            .map_err(|e| self.fail(format!("cannot prepare the file tree: {e}")))?;
        let with_sizes = match self.flavor {
            // A non-zero exit here is fatal to the deployment, as in the client.
            Flavor::Cpp5 => self.query_yes("ProvidePayloadFileSizes")?,
            Flavor::Go3 => false,
        };
        let delivery = match self.download(&artifact.payloads, with_sizes) {
            Ok(d) => d,
            Err(f) if f.hangs_go3 => return Err(f),
            Err(_) => {
                self.cleanup();
                return Ok(Installed::NotModified);
            }
        };
        if self.flavor == Flavor::Go3 {
            self.supports_rollback = self.query_yes("SupportsRollback")?;
        }
        if !self.call("ArtifactInstall").success() {
            if self.flavor == Flavor::Cpp5 {
                self.supports_rollback = self.query_yes("SupportsRollback")?;
            }
            self.error_states();
            return Ok(Installed::RolledBack);
        }
        let reboot = self.query("NeedsArtifactReboot")?;
        if reboot != "No" {
            return Err(self.fail(format!(
                "NeedsArtifactReboot answered {reboot:?}; our modules never reboot"
            )));
        }
        if self.flavor == Flavor::Cpp5 {
            self.supports_rollback = self.query_yes("SupportsRollback")?;
        }
        Ok(Installed::AwaitingCommit {
            delivery,
            supports_rollback: self.supports_rollback,
        })
    }

    /// `mender commit`. On failure the client rolls back and reports the error.
    pub fn commit(&mut self) -> Result<(), Failure> {
        if !self.call("ArtifactCommit").success() {
            self.error_states();
            return Err(self.fail("ArtifactCommit failed; rolled back"));
        }
        self.cleanup();
        Ok(())
    }

    /// `mender rollback`.
    pub fn rollback(&mut self) -> Result<(), Failure> {
        if !self.query_yes("SupportsRollback")? {
            return Err(self.fail("the module does not support rollback"));
        }
        let ok = self.call("ArtifactRollback").success();
        if self.flavor == Flavor::Cpp5 {
            self.call("ArtifactFailure");
        }
        self.cleanup();
        if ok {
            Ok(())
        } else {
            Err(self.fail("ArtifactRollback failed"))
        }
    }

    /// The error path after a failed `ArtifactInstall` or `ArtifactCommit`.
    fn error_states(&mut self) {
        if self.supports_rollback {
            self.call("ArtifactRollback");
        }
        self.call("ArtifactFailure");
        self.cleanup();
    }

    /// `Cleanup`, then the client removes the tree.
    pub fn cleanup(&mut self) {
        self.call("Cleanup");
        let _ = fs::remove_dir_all(self.tree());
    }
}

fn json_escape(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"")
}

enum Opened {
    Writer(File),
    Exited(ExitStatus),
}

/// Why a `Download` did not deliver its payloads.
enum Fault {
    /// The deployment fails, as the client would report it.
    Failed(String),
    /// See [`Failure::hangs_go3`].
    HangsGo3(String),
}

impl From<String> for Fault {
    fn from(reason: String) -> Fault {
        Fault::Failed(reason)
    }
}

fn write_and_close(mut f: File, bytes: &[u8]) -> io::Result<()> {
    f.write_all(bytes)?;
    drop(f);
    Ok(())
}

fn collect<R: Read + Send + 'static>(pipe: Option<R>) -> JoinHandle<String> {
    thread::spawn(move || {
        let mut s = Vec::new();
        if let Some(mut p) = pipe {
            let _ = p.read_to_end(&mut s);
        }
        String::from_utf8_lossy(&s).into_owned()
    })
}
