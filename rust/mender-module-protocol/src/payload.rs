//! Payload files, either streamed during `Download` or stored by the client.
//!
//! Streaming: every read of the `stream-next` FIFO (open, read to EOF, close)
//! yields one line, `streams/<name>\n`, or `streams/<name> <size>\n` under
//! `DownloadWithFileSizes`; an empty read means there are no more payloads.
//! Each `streams/<name>` FIFO must be read to its EOF, once, before the next
//! `stream-next` read, or the client blocks. A module that opened `stream-next`
//! and exits before seeing the empty read fails the update.
//!
//! Stored: a module that never opens `stream-next` during `Download` finds the
//! payloads under `files/` from `ArtifactInstall` on.
//!
//! Failing: a `Download` that fails must not exit at just any moment. The Go
//! 3.x client's download loop (`installer/modules.go`, `downloadProcessLoop`)
//! turns the module's exit and a failed stream write into two errors on one
//! unbuffered channel, which its caller reads once per payload; an error that
//! arrives while the caller is handing over a payload or finishing blocks both
//! for ever. The exit is safe only while the caller waits for the module:
//! after `stream-next` gave a name whose stream is not open yet, or after its
//! empty read. `dispatch` gets there with `end_of_failed_download` below.

use std::cell::Cell;
use std::fs::{self, File};
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::rc::Rc;

use nix::errno::Errno;
use nix::fcntl::{open, OFlag};
use nix::sys::stat::Mode;

use crate::error::{Error, Result};
use crate::signal;
use crate::tree::FileTree;

/// How a module takes its payloads in `Download`, as its device
/// configuration says (`"download": "stream"` or `"store"`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DownloadMode {
    /// Read each payload from the client's stream while it arrives and put
    /// it where it goes: no second copy on the device's disk.
    #[default]
    Stream,
    /// Never open `stream-next`, so the client stores the payloads under
    /// `files/`; ArtifactInstall takes them from there. Costs their size once
    /// more on the client's datastore until the deployment ends.
    Store,
}

/// One payload file: its name in the artifact, its size when the client told
/// it (`DownloadWithFileSizes`, or the stored file's length), and its bytes.
pub struct Payload<'a> {
    pub name: String,
    pub size: Option<u64>,
    file: File,
    at_eof: &'a Cell<bool>,
}

impl Payload<'_> {
    /// Reads what is left and throws it away, errors included: after a
    /// refusal, the client should see the module's exit as the reason, not a
    /// broken pipe (the C++ client ends the download on the first failed
    /// write). The refused payload's remaining bytes are the price.
    pub fn discard_rest(mut self) {
        let _ = io::copy(&mut self, &mut io::sink());
    }
}

impl Read for Payload<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        let n = read_interruptible(&mut self.file, buf)?;
        if n == 0 {
            self.at_eof.set(true);
        }
        Ok(n)
    }
}

/// Where a `Download` stands with `stream-next`, which decides what a failing
/// module must still do before it exits (see the module documentation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StreamNext {
    /// Never read: the client may still be handing over the first payload.
    Untouched,
    /// A name was read and its stream not opened: the client waits in that
    /// open, and for the module.
    Named,
    /// A stream was opened. Read to its end, the client goes on to the next
    /// payload or the end; dropped early, its write fails and it goes to the
    /// end. Either way it waits on `stream-next` next.
    Opened,
    /// The empty read came: the client waits for the exit alone.
    Ended,
    /// Reading `stream-next` failed: reading it again could block for ever.
    Broken,
}

impl StreamNext {
    /// Whether a failing module must read `stream-next` once more before its
    /// exit is safe for the client.
    pub(crate) fn needs_one_more_read(self) -> bool {
        matches!(self, StreamNext::Untouched | StreamNext::Opened)
    }
}

/// The payloads of one artifact, in artifact order when streamed and in name
/// order when stored.
pub struct Payloads {
    source: Source,
    /// Whether the payload handed out last was read to its end.
    at_eof: Cell<bool>,
    last_name: Option<String>,
}

enum Source {
    Streamed {
        root: PathBuf,
        with_sizes: bool,
        /// Shared with the `Download` that made these payloads, so that the
        /// state's failure path knows it even after the module dropped them.
        phase: Rc<Cell<StreamNext>>,
    },
    Stored {
        files: std::vec::IntoIter<PathBuf>,
    },
}

impl Payloads {
    /// The payloads as the client streams them during `Download`.
    /// Nothing is opened until [`Payloads::next_payload`] is called, so a module may
    /// build this and still decide not to stream.
    pub fn streamed(tree: &FileTree, with_sizes: bool) -> Payloads {
        Payloads::streamed_with(tree, with_sizes, Rc::new(Cell::new(StreamNext::Untouched)))
    }

    pub(crate) fn streamed_with(
        tree: &FileTree,
        with_sizes: bool,
        phase: Rc<Cell<StreamNext>>,
    ) -> Payloads {
        Payloads::new(Source::Streamed {
            root: tree.root().to_owned(),
            with_sizes,
            phase,
        })
    }

    /// The payloads the client stored under `files/` because the module did
    /// not stream them. A tree without `files/` has no payloads.
    pub fn stored(tree: &FileTree) -> Result<Payloads> {
        let dir = tree.files_dir();
        let mut files = Vec::new();
        match fs::read_dir(&dir) {
            Ok(entries) => {
                for entry in entries {
                    let entry = entry.map_err(|e| Error::io("list", &dir, e))?;
                    files.push(entry.path());
                }
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io("list", &dir, e)),
        }
        files.sort();
        Ok(Payloads::new(Source::Stored {
            files: files.into_iter(),
        }))
    }

    fn new(source: Source) -> Payloads {
        Payloads {
            source,
            at_eof: Cell::new(true),
            last_name: None,
        }
    }

    /// The next payload, or `None` when there are no more. The previous one
    /// must have been read to its end: the client writes payloads in order
    /// and blocks otherwise.
    pub fn next_payload(&mut self) -> Result<Option<Payload<'_>>> {
        if !self.at_eof.get() {
            let name = self.last_name.as_deref().unwrap_or("?");
            return Err(Error::Protocol(format!(
                "payload {name:?} was not read to its end before asking for the next one"
            )));
        }
        let found = match &mut self.source {
            Source::Streamed {
                root,
                with_sizes,
                phase,
            } => {
                if phase.get() == StreamNext::Ended {
                    return Ok(None);
                }
                let line = read_stream_next(root).map_err(|e| {
                    phase.set(StreamNext::Broken);
                    e
                })?;
                if line.is_empty() {
                    phase.set(StreamNext::Ended);
                    return Ok(None);
                }
                phase.set(StreamNext::Named);
                let (name, size) = parse_stream_line(&line, *with_sizes)?;
                let path = root.join("streams").join(&name);
                let file = open_read(&path)?;
                phase.set(StreamNext::Opened);
                (name, size, file)
            }
            Source::Stored { files } => {
                let Some(path) = files.next() else {
                    return Ok(None);
                };
                let file = open_read(&path)?;
                let size = file
                    .metadata()
                    .map_err(|e| Error::io("stat", &path, e))?
                    .len();
                let name = path
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                (name, Some(size), file)
            }
        };
        let (name, size, file) = found;
        self.at_eof.set(false);
        self.last_name = Some(name.clone());
        Ok(Some(Payload {
            name,
            size,
            file,
            at_eof: &self.at_eof,
        }))
    }
}

/// Brings a failed streaming `Download` to a point where the module's exit
/// cannot hang a Go 3.x client: one more read of `stream-next` when the
/// client may be between payloads (before the first one, or after a stream
/// the module opened). The client answers with the next name, whose stream
/// is then left unopened, or with the empty read. A payload read only in part
/// must have been dropped, or read to its end for the client to report the
/// module's own exit rather than a broken pipe ([`Payload::discard_rest`]).
///
/// Nothing happens once stopped by SIGTERM, or without a `stream-next`
/// (a state run by hand).
pub(crate) fn end_of_failed_download(root: &Path, phase: &Cell<StreamNext>) {
    if !phase.get().needs_one_more_read() || signal::terminated() {
        return;
    }
    let path = root.join("stream-next");
    match fs::symlink_metadata(&path) {
        Ok(m) if std::os::unix::fs::FileTypeExt::is_fifo(&m.file_type()) => {}
        _ => return,
    }
    phase.set(match read_stream_next(root) {
        Ok(line) if line.is_empty() => StreamNext::Ended,
        Ok(_) => StreamNext::Named,
        Err(_) => StreamNext::Broken,
    });
}

/// Opens `stream-next`, reads it to EOF and returns what it held, without
/// the trailing newline. Opening blocks until the client writes.
fn read_stream_next(root: &Path) -> Result<String> {
    let path = root.join("stream-next");
    let mut file = open_read(&path)?;
    let mut bytes = Vec::new();
    let mut buf = [0u8; 512];
    loop {
        let n = read_interruptible(&mut file, &mut buf).map_err(|e| map_read_error(&path, e))?;
        if n == 0 {
            break;
        }
        bytes.extend_from_slice(&buf[..n]);
        if bytes.len() > 64 * 1024 {
            return Err(Error::Protocol(format!(
                "{} holds more than one line",
                path.display()
            )));
        }
    }
    let text = String::from_utf8(bytes)
        .map_err(|_| Error::Protocol(format!("{} is not UTF-8", path.display())))?;
    Ok(text.strip_suffix('\n').unwrap_or(&text).to_owned())
}

/// Splits `streams/<name>` or `streams/<name> <size>` into name and size.
fn parse_stream_line(line: &str, with_sizes: bool) -> Result<(String, Option<u64>)> {
    let bad = |why: &str| {
        Error::Protocol(format!(
            "stream-next line \"{}\": {why}",
            crate::printable(line, 200)
        ))
    };
    if line.contains('\n') {
        return Err(bad("more than one line"));
    }
    let rest = line
        .strip_prefix("streams/")
        .ok_or_else(|| bad("does not start with streams/"))?;
    let (name, size) = if with_sizes {
        let (name, size) = rest
            .rsplit_once(' ')
            .ok_or_else(|| bad("has no size although DownloadWithFileSizes was requested"))?;
        let size = size
            .parse::<u64>()
            .map_err(|_| bad("size is not a whole number"))?;
        (name, Some(size))
    } else {
        (rest, None)
    };
    if name.is_empty() || name == "." || name == ".." || name.contains('/') || name.contains('\0') {
        return Err(bad("payload name is not a plain file name"));
    }
    Ok((name.to_owned(), size))
}

/// Opens for reading without std's automatic retry on EINTR, so a SIGTERM
/// that arrives while a FIFO open blocks ends the wait.
fn open_read(path: &Path) -> Result<File> {
    loop {
        match open(path, OFlag::O_RDONLY | OFlag::O_CLOEXEC, Mode::empty()) {
            Ok(fd) => return Ok(File::from(fd)),
            Err(Errno::EINTR) if !signal::terminated() => continue,
            Err(Errno::EINTR) => return Err(Error::Terminated),
            Err(e) => return Err(Error::io("open", path, io::Error::from(e))),
        }
    }
}

pub(crate) fn read_interruptible(file: &mut File, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        match file.read(buf) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {
                if signal::terminated() {
                    return Err(io::Error::new(
                        io::ErrorKind::Interrupted,
                        Error::Terminated,
                    ));
                }
            }
            other => return other,
        }
    }
}

fn map_read_error(path: &Path, e: io::Error) -> Error {
    if e.kind() == io::ErrorKind::Interrupted {
        Error::Terminated
    } else {
        Error::io("read", path, e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_lines_with_and_without_sizes() {
        assert_eq!(
            parse_stream_line("streams/app.tar", false).unwrap(),
            ("app.tar".to_owned(), None)
        );
        assert_eq!(
            parse_stream_line("streams/app.tar 1048576", true).unwrap(),
            ("app.tar".to_owned(), Some(1_048_576))
        );
        // A name may contain spaces; only the last field is the size.
        assert_eq!(
            parse_stream_line("streams/my app.tar 7", true).unwrap(),
            ("my app.tar".to_owned(), Some(7))
        );
        assert_eq!(
            parse_stream_line("streams/my app.tar", false).unwrap(),
            ("my app.tar".to_owned(), None)
        );
    }

    #[test]
    fn malformed_stream_lines_are_protocol_errors() {
        for (line, sizes) in [
            ("files/app.tar", false),
            ("streams/", false),
            ("streams/..", false),
            ("streams/a/b", false),
            ("streams/app.tar", true),
            ("streams/app.tar -1", true),
            ("streams/app.tar 12x", true),
        ] {
            let err = parse_stream_line(line, sizes).unwrap_err();
            assert!(matches!(err, Error::Protocol(_)), "{line}: {err}");
        }
    }

    #[test]
    fn a_long_stream_line_is_quoted_short_and_printable() {
        let line = format!("files/{}\u{1b}[2J", "x".repeat(60_000));
        let err = parse_stream_line(&line, false).unwrap_err().to_string();
        assert!(err.len() < 400, "{} bytes", err.len());
        assert!(!err.chars().any(char::is_control), "{err}");
        assert!(err.ends_with("does not start with streams/"), "{err}");
    }
}
