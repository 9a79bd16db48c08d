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
    #[error("artifact meta-data {}; expected the legacy format {{\"containers\": [\"REPO@sha256:…\"], \"run_args\": \"…\"}} (docker-artifact-gen) or {{\"docker-stack\": {{\"format\": 1, …}}}} (see FORMAT.md)", bounded(.found, 300))]
    UnknownFormat { found: String },

    /// A value or key at `at` is wrong.
    #[error("artifact meta-data at {}: {}", bounded(&.at.to_string(), 200), bounded(.problem, 600))]
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

/// `text` as one short printable line: control characters (newlines, escapes,
/// DEL, C1) written as `\u{..}` and, past `max` bytes, the middle left out,
/// so that both the start (where) and the end (what would be right) remain.
/// Meta-data is the artifact's text: a key or value may be any size.
pub(crate) fn bounded(text: &str, max: usize) -> String {
    use std::fmt::Write as _;
    let mut out = String::with_capacity(text.len().min(max));
    for c in text.chars() {
        if c.is_control() {
            let _ = write!(out, "\\u{{{:x}}}", c as u32);
        } else {
            out.push(c);
        }
    }
    if out.len() <= max {
        return out;
    }
    let note = format!(" … ({} bytes left out) … ", out.len());
    let room = max.saturating_sub(note.len());
    let mut head = room * 2 / 3;
    while !out.is_char_boundary(head) {
        head -= 1;
    }
    let mut tail = out.len() - (room - room * 2 / 3);
    while !out.is_char_boundary(tail) {
        tail += 1;
    }
    format!("{}{note}{}", &out[..head], &out[tail..])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_in_keys_are_escaped_in_the_line() {
        let e = SpecError::UnknownFormat {
            found: "has the keys docke\r-stack, \u{1b}[2J".into(),
        };
        let text = e.to_string();
        assert!(!text.chars().any(char::is_control), "{text:?}");
        assert!(text.contains("docke\\u{d}-stack, \\u{1b}[2J"), "{text}");
    }

    #[test]
    fn a_huge_key_or_value_leaves_a_short_line_with_its_end() {
        let key = "k".repeat(100_000);
        let at = Path::root().key("docker-stack").key(&key);
        let e = SpecError::invalid(
            &at,
            format!("port {:?} is not like 8080:80", "9".repeat(50_000)),
        );
        let text = e.to_string();
        assert!(text.len() <= 900, "{} bytes", text.len());
        assert!(
            text.starts_with("artifact meta-data at docker-stack.kkk"),
            "{text}"
        );
        assert!(text.ends_with("is not like 8080:80"), "{text}");
        assert!(text.contains("bytes left out"), "{text}");
    }

    #[test]
    fn short_text_is_unchanged() {
        assert_eq!(bounded("web.image", 200), "web.image");
        let cut = bounded(&"é".repeat(500), 200);
        assert!(
            cut.len() <= 200 && cut.starts_with('é') && cut.ends_with('é'),
            "{cut}"
        );
    }
}
