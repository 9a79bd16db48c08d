//! Errors of the protocol layer. Each names the file or stream it concerns, so
//! the one line that reaches the deployment log is enough to act on. Causes are
//! kept as `source()`, not repeated in the message: [`crate::one_line`] joins them.

use std::path::{Path, PathBuf};

use crate::printable;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot {action} {}", shown(path))]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("{} is not valid JSON", shown(path))]
    Json {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },

    #[error("{}: {}", shown(path), printable(detail, 600))]
    BadFile { path: PathBuf, detail: String },

    #[error("protocol violation: {}", printable(.0, 600))]
    Protocol(String),

    #[error("stopped by SIGTERM (the client's module timeout or a shutdown); the state can be run again")]
    Terminated,
}

impl Error {
    pub(crate) fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
        source: std::io::Error,
    ) -> Self {
        Error::Io {
            action,
            path: path.into(),
            source,
        }
    }
}

/// A path for an error line: the tree's root is the client's, but the names
/// below it (a payload's, from `stream-next`) are the artifact's.
fn shown(path: &Path) -> String {
    printable(&path.to_string_lossy(), 400)
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_payload_name_with_control_characters_is_escaped_in_the_path() {
        let path = PathBuf::from("/tree/streams/a\u{13}b\u{1b}[2J");
        let e = Error::io("open", &path, std::io::ErrorKind::NotFound.into());
        assert_eq!(
            e.to_string(),
            "cannot open /tree/streams/a\\u{13}b\\u{1b}[2J"
        );
        let long = PathBuf::from(format!("/tree/streams/{}", "n".repeat(5000)));
        let e = Error::BadFile {
            path: long,
            detail: "x\n".repeat(1000),
        };
        let text = e.to_string();
        assert!(text.len() <= 1024 && !text.contains('\n'), "{text}");
    }
}
