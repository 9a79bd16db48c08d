//! Errors of the protocol layer. Each names the file or stream it concerns, so
//! the one line that reaches the deployment log is enough to act on. Causes are
//! kept as `source()`, not repeated in the message: [`crate::one_line`] joins them.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot {action} {}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("{} is not valid JSON", path.display())]
    Json {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },

    #[error("{}: {detail}", path.display())]
    BadFile { path: PathBuf, detail: String },

    #[error("protocol violation: {0}")]
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

pub type Result<T, E = Error> = std::result::Result<T, E>;
