//! The Mender Update Module protocol, version 3, as both the Go 3.x and the
//! C++ 4.x/5.x clients speak it.
//!
//! A module binary implements [`UpdateModule`] and hands it to [`run`], which
//! parses the command line, answers queries with exactly one word on stdout,
//! dispatches states, installs the SIGTERM handler, and turns an error into a
//! non-zero exit with one line on stderr (which the client copies into the
//! deployment log).
//!
//! ```no_run
//! use mender_module_protocol::{FileTree, ModuleResult, UpdateModule, Download};
//!
//! struct Noop;
//! impl UpdateModule for Noop {
//!     fn supports_rollback(&self) -> bool { false }
//!     fn artifact_install(&mut self, _tree: &FileTree) -> ModuleResult { Ok(()) }
//! }
//!
//! fn main() -> std::process::ExitCode {
//!     mender_module_protocol::run("noop", Noop)
//! }
//! ```

mod error;
mod payload;
pub mod signal;
mod state;
mod tree;

use std::cell::Cell;
use std::ffi::OsString;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::rc::Rc;

pub use error::{Error, Result};
pub use payload::{DownloadMode, Payload, Payloads};
pub use state::{Invocation, Query, State};
pub use tree::{FileTree, Header};

/// What a state returns: any error, reported as one line.
pub type ModuleResult = std::result::Result<(), Box<dyn std::error::Error + Send + Sync>>;

/// The answer to `NeedsArtifactReboot`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reboot {
    No,
    Yes,
    Automatic,
}

/// What the `Download` state may do with the payloads.
pub struct Download<'a> {
    tree: &'a FileTree,
    with_sizes: bool,
    phase: Rc<Cell<payload::StreamNext>>,
}

impl Download<'_> {
    /// Start streaming. A module that never calls this, or never calls
    /// [`Payloads::next_payload`] on the result, leaves the client to store the
    /// payloads under `files/`. Once `next_payload` has been called the module must
    /// go on until it returns `None`, or fail: [`dispatch`] then ends the
    /// download where the client waits for the module alone. A payload refused
    /// halfway should get [`Payload::discard_rest`] before the error.
    pub fn stream(&self) -> Payloads {
        Payloads::streamed_with(self.tree, self.with_sizes, Rc::clone(&self.phase))
    }

    /// True under `DownloadWithFileSizes`: each payload's size is known.
    pub fn with_sizes(&self) -> bool {
        self.with_sizes
    }
}

/// One Update Module. Every state defaults to doing nothing successfully;
/// a module overrides the ones it needs. Each state runs in a fresh process,
/// possibly again after a power cut, so each must work from what is on disk.
pub trait UpdateModule {
    /// Answer to `SupportsRollback`.
    fn supports_rollback(&self) -> bool;

    /// Answer to `NeedsArtifactReboot`.
    fn needs_artifact_reboot(&self) -> Reboot {
        Reboot::No
    }

    /// Answer to `ProvidePayloadFileSizes`: `true` makes a C++ client call
    /// `DownloadWithFileSizes` and put each payload's size on its
    /// `stream-next` line.
    fn provide_payload_file_sizes(&self) -> bool {
        false
    }

    /// `Download` / `DownloadWithFileSizes`. Nothing may be put into its final
    /// place here: checksums are verified only after the stream ends.
    fn download(&mut self, _tree: &FileTree, _download: Download<'_>) -> ModuleResult {
        Ok(())
    }

    fn artifact_install(&mut self, tree: &FileTree) -> ModuleResult;

    fn artifact_reboot(&mut self, _tree: &FileTree) -> ModuleResult {
        Ok(())
    }

    fn artifact_verify_reboot(&mut self, _tree: &FileTree) -> ModuleResult {
        Ok(())
    }

    fn artifact_commit(&mut self, _tree: &FileTree) -> ModuleResult {
        Ok(())
    }

    fn artifact_rollback(&mut self, _tree: &FileTree) -> ModuleResult {
        Ok(())
    }

    fn artifact_rollback_reboot(&mut self, _tree: &FileTree) -> ModuleResult {
        Ok(())
    }

    fn artifact_verify_rollback_reboot(&mut self, _tree: &FileTree) -> ModuleResult {
        Ok(())
    }

    fn artifact_failure(&mut self, _tree: &FileTree) -> ModuleResult {
        Ok(())
    }

    fn cleanup(&mut self, _tree: &FileTree) -> ModuleResult {
        Ok(())
    }
}

/// Runs one invocation from the process's arguments and returns the exit code.
pub fn run(module_name: &str, module: impl UpdateModule) -> ExitCode {
    let args: Vec<OsString> = std::env::args_os().skip(1).collect();
    let stdout = std::io::stdout();
    exit(module_name, dispatch(module, &args, &mut stdout.lock()))
}

/// Runs `work` outside the client (a module's own subcommand, such as the
/// boot-time recovery), reporting a failure as [`run`] does: one line on
/// stderr and exit status 1.
pub fn run_standalone(module_name: &str, work: impl FnOnce() -> ModuleResult) -> ExitCode {
    exit(module_name, work())
}

fn exit(module_name: &str, result: ModuleResult) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // One line: the client copies stderr into the deployment log and
            // operators read it on the server.
            stderr_line(format_args!(
                "{module_name}: error: {}",
                one_line(e.as_ref())
            ));
            ExitCode::FAILURE
        }
    }
}

/// Parses `STATE TREE`, answers a query on `out` or runs a state.
pub fn dispatch(
    mut module: impl UpdateModule,
    args: &[OsString],
    out: &mut dyn Write,
) -> ModuleResult {
    let Some(first) = args.first() else {
        return Err(usage().into());
    };
    let invocation = Invocation::parse(&first.to_string_lossy());
    let state = match invocation {
        Invocation::Unknown(_) => return Ok(()),
        Invocation::Query(q) => {
            let answer = answer(&module, q);
            out.write_all(answer.as_bytes())?;
            out.write_all(b"\n")?;
            out.flush()?;
            return Ok(());
        }
        Invocation::State(state) => state,
    };
    let _ = CURRENT_STATE.set(state);
    if args.len() != 2 {
        return Err(usage().into());
    }
    let tree = FileTree::new(PathBuf::from(&args[1]));
    signal::install()?;
    tree.require_v3()?;
    let result = match state {
        State::Download | State::DownloadWithFileSizes => {
            let phase = Rc::new(Cell::new(payload::StreamNext::Untouched));
            let download = Download {
                tree: &tree,
                with_sizes: state == State::DownloadWithFileSizes,
                phase: Rc::clone(&phase),
            };
            let result = module.download(&tree, download);
            if result.is_err() {
                payload::end_of_failed_download(tree.root(), &phase);
            }
            result
        }
        State::ArtifactInstall => module.artifact_install(&tree),
        State::ArtifactReboot => module.artifact_reboot(&tree),
        State::ArtifactVerifyReboot => module.artifact_verify_reboot(&tree),
        State::ArtifactCommit => module.artifact_commit(&tree),
        State::Cleanup => module.cleanup(&tree),
        State::ArtifactRollback => module.artifact_rollback(&tree),
        State::ArtifactRollbackReboot => module.artifact_rollback_reboot(&tree),
        State::ArtifactVerifyRollbackReboot => module.artifact_verify_rollback_reboot(&tree),
        State::ArtifactFailure => module.artifact_failure(&tree),
    };
    result.map_err(|e| format!("{state}: {}", one_line(e.as_ref())).into())
}

/// The exact one-word answer to a query.
pub fn answer(module: &impl UpdateModule, query: Query) -> &'static str {
    let yes_no = |b: bool| if b { "Yes" } else { "No" };
    match query {
        Query::SupportsRollback => yes_no(module.supports_rollback()),
        Query::NeedsArtifactReboot => match module.needs_artifact_reboot() {
            Reboot::No => "No",
            Reboot::Yes => "Yes",
            Reboot::Automatic => "Automatic",
        },
        Query::ProvidePayloadFileSizes => yes_no(module.provide_payload_file_sizes()),
        // Augmented artifacts carry unsigned parts; our modules refuse them,
        // and any answer but the magic sentence means exactly that.
        Query::SupportsAugmentedArtifacts => "No",
    }
}

fn usage() -> String {
    "usage: MODULE STATE FILE-TREE (this program is called by the Mender client, see the Update Module v3 protocol)".to_owned()
}

/// Writes one line to stderr with a single `write(2)`. The C++ client logs
/// every chunk it reads from a module's stderr as a record of its own, and
/// `eprintln!` writes its pieces separately, which cut lines into fragments
/// in the deployment log. A pipe write below 4 KiB is atomic.
///
/// The text is made [`printable`] and cut to [`MAX_LINE`] bytes first: lines
/// quote names from artifacts, which must neither split or colour a log line
/// nor flood the deployment log.
pub fn stderr_line(args: std::fmt::Arguments<'_>) {
    let mut text = printable(&args.to_string(), MAX_LINE);
    text.push('\n');
    // As with eprintln!, nothing sensible can be done if stderr is gone.
    let _ = std::io::stderr().write_all(text.as_bytes());
}

/// The longest line [`stderr_line`] writes, in bytes (without the newline):
/// room for a path and a cause, well below the 4 KiB a pipe writes whole.
pub const MAX_LINE: usize = 1024;

/// `text` with every control character (newlines, escapes, DEL, C1) written
/// as `\u{..}`, and cut to at most `max` bytes at a character boundary,
/// ending with a note of the whole length, where it is longer.
pub fn printable(text: &str, max: usize) -> String {
    use std::fmt::Write as _;
    let mut out = String::with_capacity(text.len().min(max) + 8);
    for c in text.chars() {
        if c.is_control() {
            let _ = write!(out, "\\u{{{:x}}}", c as u32);
        } else {
            out.push(c);
        }
        if out.len() > max {
            return cut(out, text.len(), max);
        }
    }
    out
}

/// `out`, longer than `max`, cut so that it and the note of the whole
/// length fit in `max` bytes (without the note where even that does not fit).
fn cut(mut out: String, whole: usize, max: usize) -> String {
    let note = format!("… (cut, {whole} bytes in all)");
    let (keep, note) = match max.checked_sub(note.len()) {
        Some(keep) => (keep, note.as_str()),
        None => (max, ""),
    };
    let mut at = keep;
    while !out.is_char_boundary(at) {
        at -= 1;
    }
    out.truncate(at);
    out.push_str(note);
    out
}

static CURRENT_STATE: std::sync::OnceLock<State> = std::sync::OnceLock::new();

/// The state this process runs, once [`dispatch`] has parsed it: fault
/// points and logs of the modules are keyed by it.
pub fn current_state() -> Option<State> {
    CURRENT_STATE.get().copied()
}

/// An error and its causes on one line, `outer: inner: root`. Causes whose text
/// the outer message already contains are not repeated.
pub fn one_line(err: &(dyn std::error::Error + 'static)) -> String {
    let mut line = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !line.contains(&text) {
            line.push_str(": ");
            line.push_str(&text);
        }
        source = cause.source();
    }
    line.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Fixed(bool);
    impl UpdateModule for Fixed {
        fn supports_rollback(&self) -> bool {
            self.0
        }
        fn provide_payload_file_sizes(&self) -> bool {
            self.0
        }
        fn artifact_install(&mut self, _tree: &FileTree) -> ModuleResult {
            Err("should not run".into())
        }
    }

    fn call(module: Fixed, args: &[&str]) -> (ModuleResult, String) {
        let args: Vec<OsString> = args.iter().map(OsString::from).collect();
        let mut out = Vec::new();
        let r = dispatch(module, &args, &mut out);
        (r, String::from_utf8(out).unwrap())
    }

    #[test]
    fn queries_print_exactly_one_word_and_a_newline() {
        for (module, q, want) in [
            (Fixed(true), "SupportsRollback", "Yes\n"),
            (Fixed(false), "SupportsRollback", "No\n"),
            (Fixed(true), "NeedsArtifactReboot", "No\n"),
            (Fixed(true), "ProvidePayloadFileSizes", "Yes\n"),
            (Fixed(false), "ProvidePayloadFileSizes", "No\n"),
            (Fixed(true), "SupportsAugmentedArtifacts", "No\n"),
        ] {
            let (r, out) = call(module, &[q, "/nonexistent"]);
            r.unwrap();
            assert_eq!(out, want, "{q}");
        }
    }

    #[test]
    fn unknown_states_print_nothing_and_succeed() {
        let (r, out) = call(Fixed(true), &["SomeFutureState", "/nonexistent"]);
        r.unwrap();
        assert_eq!(out, "");
        let (r, out) = call(Fixed(true), &["SomeFutureState"]);
        r.unwrap();
        assert_eq!(out, "");
    }

    #[test]
    fn a_state_without_a_tree_is_a_usage_error() {
        let (r, out) = call(Fixed(true), &["ArtifactInstall"]);
        assert!(r.unwrap_err().to_string().starts_with("usage:"));
        assert_eq!(out, "");
        let (r, _) = call(Fixed(true), &[]);
        assert!(r.is_err());
    }

    #[test]
    fn log_lines_are_printable_and_bounded() {
        assert_eq!(
            printable("a\nb\x1b[31mc\u{7f}", 100),
            "a\\u{a}b\\u{1b}[31mc\\u{7f}"
        );
        assert_eq!(printable("plain", 100), "plain");
        let long = "é".repeat(5000);
        let cut = printable(&long, MAX_LINE);
        assert!(cut.len() <= MAX_LINE, "{}", cut.len());
        assert!(cut.ends_with("… (cut, 10000 bytes in all)"), "{cut}");
        let escapes = "\n".repeat(2000);
        let cut = printable(&escapes, 200);
        assert!(cut.len() <= 200 && cut.starts_with("\\u{a}"), "{cut}");
        assert_eq!(printable(&"x".repeat(100), 100), "x".repeat(100));
    }

    #[test]
    fn a_line_one_byte_over_the_limit_is_cut_not_recursed_on() {
        // The escaped text was cut by calling printable on it again, which
        // found it unchanged and recursed until the stack overflowed.
        let cut = printable(&"x".repeat(101), 100);
        assert!(
            cut.len() <= 100 && cut.ends_with("… (cut, 101 bytes in all)"),
            "{cut}"
        );
        let cut = printable(&format!("{}é", "x".repeat(99)), 100);
        assert!(cut.len() <= 100, "{cut}");
    }

    #[test]
    fn a_limit_below_the_note_still_bounds_the_line() {
        for max in 0..40 {
            let cut = printable("some \u{1b} long text that does not fit", max);
            assert!(cut.len() <= max, "{max}: {cut:?}");
        }
    }

    #[test]
    fn one_line_joins_causes_and_flattens_newlines() {
        let io = std::io::Error::new(std::io::ErrorKind::NotFound, "gone\nreally");
        let e = Error::io("read", "/x/y", io);
        assert_eq!(one_line(&e), "cannot read /x/y: gone really");
    }
}
