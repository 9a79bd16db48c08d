//! Errors of the module. Each names the path, payload or unit involved; causes
//! stay in `source()` and `mender_module_protocol::one_line` joins them into
//! the single line that reaches the deployment log.

use std::path::PathBuf;

use mender_module_protocol::printable;

use crate::archive::ArchiveError;
use crate::spec::SpecError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot {action} {}", printable(&path.to_string_lossy(), 400))]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("configuration {}: {detail}", path.display())]
    Config { path: PathBuf, detail: String },

    #[error(transparent)]
    Spec(#[from] SpecError),

    #[error("payload {}: {source}", printable(payload, 200))]
    Archive {
        payload: String,
        #[source]
        source: ArchiveError,
    },

    #[error(
        "not enough space for {what} on the filesystem of {}: need {need} bytes and {need_inodes} inodes, \
         {available} bytes and {available_inodes} inodes are free (the current version stays until commit, \
         so the new one must fit beside it); free space under {} or make the app smaller",
        path.display(), path.display()
    )]
    NoSpace {
        what: String,
        path: PathBuf,
        need: u64,
        available: u64,
        need_inodes: u64,
        available_inodes: u64,
    },

    #[error("{0}")]
    Payloads(String),

    #[error("{0}")]
    Refused(String),

    #[error("service {unit}: {detail}")]
    Service { unit: String, detail: String },

    #[error(transparent)]
    Protocol(#[from] mender_module_protocol::Error),

    #[error(transparent)]
    Fs(#[from] module_kit::fs::Error),

    #[error(transparent)]
    State(#[from] module_kit::state_file::StateError),

    #[error(transparent)]
    Lock(#[from] module_kit::lock::LockError),
}

impl Error {
    pub fn io(action: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            action,
            path: path.into(),
            source,
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_names_in_paths_and_errors_are_escaped() {
        // Payload names come from the client's stream-next line, which
        // refuses '/' and NUL but not control characters.
        let e = Error::io(
            "create",
            "/tmp/pending/a\u{1b}[2Jb",
            std::io::ErrorKind::AlreadyExists.into(),
        );
        assert_eq!(e.to_string(), "cannot create /tmp/pending/a\\u{1b}[2Jb");
        let e = Error::Archive {
            payload: "p\r\n".into(),
            source: ArchiveError::TooBig(1),
        };
        assert!(e.to_string().starts_with("payload p\\u{d}\\u{a}: "), "{e}");
    }
}
