//! The one error of this crate: where in the meta-data the problem is and
//! what would be right instead. The text reaches the deployment log as one line.

use std::fmt;

/// A place in the meta-data document, e.g. `docker-stack.containers.web.image`
/// or `run_args`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Path(String);

impl Path {
    pub fn root() -> Path {
        Path(String::new())
    }

    /// Keys that are not plain words (a payload `images.tar`, a name with a
    /// dot) are quoted so the path stays unambiguous: `inline["images.tar"]`.
    pub fn key(&self, key: &str) -> Path {
        let plain = !key.is_empty()
            && key
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
        match (self.0.is_empty(), plain) {
            (true, true) => Path(key.to_owned()),
            (false, true) => Path(format!("{}.{key}", self.0)),
            (_, false) => Path(format!("{}[{key:?}]", self.0)),
        }
    }

    pub fn index(&self, i: usize) -> Path {
        Path(format!("{}[{i}]", self.0))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Path {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            f.write_str("(top level)")
        } else {
            f.write_str(&self.0)
        }
    }
}

/// Why the meta-data cannot be deployed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpecError {
    /// Neither format: the artifact was not written for this module.
    #[error("artifact meta-data {found}; expected the legacy format {{\"containers\": [\"REPO@sha256:…\"], \"run_args\": \"…\"}} (docker-artifact-gen) or {{\"docker-stack\": {{\"format\": 1, …}}}} (see FORMAT.md)")]
    UnknownFormat { found: String },

    /// A value or key at `at` is wrong.
    #[error("artifact meta-data at {at}: {problem}")]
    Invalid { at: Path, problem: String },
}

impl SpecError {
    pub fn invalid(at: &Path, problem: impl Into<String>) -> SpecError {
        SpecError::Invalid {
            at: at.clone(),
            problem: problem.into(),
        }
    }

    /// Where the problem is (`None` for an unknown format).
    pub fn at(&self) -> Option<&Path> {
        match self {
            SpecError::Invalid { at, .. } => Some(at),
            SpecError::UnknownFormat { .. } => None,
        }
    }
}

pub type Result<T, E = SpecError> = std::result::Result<T, E>;
