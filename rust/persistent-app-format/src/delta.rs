//! File deltas: an artifact that carries only the files its base release
//! lacks, plus a manifest of every regular file of the new tree with its
//! digest. The device takes the rest from the tree it runs (which must be
//! the base, as the artifact's `depends` and every digest make sure).
//!
//! Pure decisions only: what the generator ships ([`plan`]) and what a
//! manifest must satisfy before the device acts on it ([`Manifest::parse`]).
//! See FORMAT.md for the payloads.

use std::collections::{BTreeMap, HashMap, HashSet};

use serde::{Deserialize, Serialize};

use crate::spec::{bounded, RELEASE_MARKER};

/// A file's content as the manifest names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Content {
    pub size: u64,
    pub sha256: [u8; 32],
}

/// The manifest payload: every regular file of the new tree, sorted by path.
/// Directories, symlinks and hard links travel as members of the archive,
/// as in a full artifact; a file listed with `base` does not.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub files: Vec<FileEntry>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileEntry {
    /// Below the tree's root, `/`-separated, normalised.
    pub path: String,
    pub size: u64,
    /// Permission bits (setuid/setgid are dropped on the device, as for
    /// archive members).
    pub mode: u32,
    /// Seconds since the epoch.
    pub mtime: u64,
    /// Lower-case hex.
    pub sha256: String,
    /// The path in the installed (base) tree whose content this file has;
    /// absent when the archive carries the file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ManifestError {
    #[error("manifest is not valid JSON of the expected shape: {}", bounded(.0, 300))]
    Shape(String),
    #[error("manifest entry {} is not valid: {why}", quoted(.path))]
    Entry { path: String, why: &'static str },
    #[error("manifest lists {} twice", quoted(.0))]
    Twice(String),
    #[error("manifest lists {files} files of {bytes} bytes, more than the {entries} members and {unpacked_size} bytes the meta-data announces; the artifact is inconsistent, rebuild it")]
    Totals {
        files: u64,
        bytes: u64,
        entries: u64,
        unpacked_size: u64,
    },
}

fn quoted(text: &str) -> String {
    format!("\"{}\"", bounded(text, 120))
}

/// A manifest checked entry by entry, with its digests decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckedManifest {
    pub files: Vec<CheckedEntry>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckedEntry {
    pub path: String,
    pub content: Content,
    pub mode: u32,
    pub mtime: u64,
    pub base: Option<String>,
}

impl CheckedManifest {
    /// The files the archive must carry, with the content each must have.
    pub fn shipped(&self) -> HashMap<&str, Content> {
        self.files
            .iter()
            .filter(|f| f.base.is_none())
            .map(|f| (f.path.as_str(), f.content))
            .collect()
    }

    /// The files taken from the installed tree.
    pub fn from_base(&self) -> impl Iterator<Item = &CheckedEntry> {
        self.files.iter().filter(|f| f.base.is_some())
    }
}

impl Manifest {
    /// Parses and checks a manifest against the meta-data's totals
    /// (`entries` members, `unpacked_size` bytes of file content).
    pub fn parse(
        bytes: &[u8],
        entries: u64,
        unpacked_size: u64,
    ) -> Result<CheckedManifest, ManifestError> {
        let manifest: Manifest =
            serde_json::from_slice(bytes).map_err(|e| ManifestError::Shape(e.to_string()))?;
        manifest.check(entries, unpacked_size)
    }

    pub fn check(self, entries: u64, unpacked_size: u64) -> Result<CheckedManifest, ManifestError> {
        let mut seen = HashSet::new();
        let mut files = Vec::with_capacity(self.files.len());
        let mut bytes = 0u64;
        for f in self.files {
            let bad = |why| ManifestError::Entry {
                path: f.path.clone(),
                why,
            };
            check_path(&f.path).map_err(bad)?;
            if let Some(base) = &f.base {
                check_path(base).map_err(|why| ManifestError::Entry {
                    path: base.clone(),
                    why,
                })?;
            }
            if f.mode > 0o7777 {
                return Err(bad("its mode has bits beyond 07777"));
            }
            let sha256 =
                parse_hex(&f.sha256).ok_or_else(|| bad("its sha256 is not 64 hex digits"))?;
            if !seen.insert(f.path.clone()) {
                return Err(ManifestError::Twice(f.path));
            }
            bytes = bytes.saturating_add(f.size);
            files.push(CheckedEntry {
                content: Content {
                    size: f.size,
                    sha256,
                },
                path: f.path,
                mode: f.mode,
                mtime: f.mtime,
                base: f.base,
            });
        }
        let count = files.len() as u64;
        if count > entries || bytes > unpacked_size {
            return Err(ManifestError::Totals {
                files: count,
                bytes,
                entries,
                unpacked_size,
            });
        }
        Ok(CheckedManifest { files })
    }
}

/// A path below the tree's root as the manifest may name it.
pub fn check_path(path: &str) -> Result<(), &'static str> {
    if path.is_empty() {
        return Err("its path is empty");
    }
    if path.len() > 4096 {
        return Err("its path is longer than 4096 bytes");
    }
    if path.starts_with('/') {
        return Err("its path is absolute");
    }
    if path.contains('\0') {
        return Err("its path contains a NUL byte");
    }
    for c in path.split('/') {
        match c {
            "" => return Err("its path has an empty component"),
            "." | ".." => return Err("its path has a '.' or '..' component"),
            _ if c.len() > 255 => return Err("its path has a component longer than 255 bytes"),
            _ => {}
        }
    }
    if path == RELEASE_MARKER {
        return Err("its path is reserved for the module's release marker");
    }
    Ok(())
}

pub fn parse_hex(text: &str) -> Option<[u8; 32]> {
    let bytes = text.as_bytes();
    if bytes.len() != 64 {
        return None;
    }
    let nibble = |b: u8| match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        _ => None,
    };
    let mut out = [0u8; 32];
    for (i, pair) in bytes.chunks_exact(2).enumerate() {
        out[i] = nibble(pair[0])? << 4 | nibble(pair[1])?;
    }
    Some(out)
}

/// Where each regular file of the new tree comes from: `None` when the
/// archive must carry it, or the base path with the same content, the same
/// path first (the common case, and what a reader expects), otherwise the
/// first in path order (a renamed or copied file is not shipped again).
pub fn plan(base: &BTreeMap<String, Content>, new: &[(String, Content)]) -> Vec<Option<String>> {
    let mut by_content: HashMap<Content, &str> = HashMap::new();
    for (path, content) in base {
        by_content.entry(*content).or_insert(path.as_str());
    }
    new.iter()
        .map(|(path, content)| {
            if base.get(path) == Some(content) {
                Some(path.clone())
            } else {
                by_content.get(content).map(|p| (*p).to_owned())
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(size: u64, tag: u8) -> Content {
        Content {
            size,
            sha256: [tag; 32],
        }
    }

    #[test]
    fn unchanged_files_come_from_the_base_changed_and_new_ones_are_shipped() {
        let base: BTreeMap<String, Content> = [
            ("a".into(), c(1, 1)),
            ("b".into(), c(2, 2)),
            ("old/name".into(), c(3, 3)),
            ("z-copy".into(), c(4, 4)),
            ("d".into(), c(4, 4)),
        ]
        .into();
        let new = vec![
            ("a".to_owned(), c(1, 1)),        // unchanged
            ("b".to_owned(), c(2, 9)),        // changed content, same size
            ("c".to_owned(), c(5, 5)),        // new
            ("new/name".to_owned(), c(3, 3)), // renamed
            ("z-copy".to_owned(), c(4, 4)),   // same path preferred
            ("e".to_owned(), c(4, 4)),        // a copy: first base path in order
            ("grown".to_owned(), c(7, 1)),    // same digest, other size: not the same content
        ];
        assert_eq!(
            plan(&base, &new),
            [
                Some("a".into()),
                None,
                None,
                Some("old/name".into()),
                Some("z-copy".into()),
                Some("d".into()),
                None,
            ]
        );
        assert_eq!(plan(&BTreeMap::new(), &new), vec![None; new.len()]);
    }

    fn entry(path: &str) -> serde_json::Value {
        serde_json::json!({"path": path, "size": 1, "mode": 420, "mtime": 1,
                           "sha256": "ab".repeat(32)})
    }

    fn parse(files: Vec<serde_json::Value>) -> Result<CheckedManifest, ManifestError> {
        let bytes = serde_json::to_vec(&serde_json::json!({ "files": files })).unwrap();
        Manifest::parse(&bytes, 10, 10)
    }

    #[test]
    fn a_manifest_splits_into_shipped_and_base_files() {
        let mut base = entry("lib/x");
        base["base"] = "lib/old-x".into();
        let m = parse(vec![entry("bin/a"), base]).unwrap();
        assert_eq!(
            m.shipped().into_iter().collect::<Vec<_>>(),
            [(
                "bin/a",
                Content {
                    size: 1,
                    sha256: [0xab; 32]
                }
            )]
        );
        let from: Vec<_> = m.from_base().map(|f| f.base.as_deref()).collect();
        assert_eq!(from, [Some("lib/old-x")]);
    }

    #[test]
    fn every_bad_manifest_gets_its_own_one_line_error() {
        let with = |key: &str, value: serde_json::Value| {
            let mut e = entry("a");
            e[key] = value;
            vec![e]
        };
        let cases: Vec<(Vec<serde_json::Value>, &str)> = vec![
            (with("path", "/etc/passwd".into()), "is absolute"),
            (with("path", "a/../b".into()), "'..' component"),
            (with("path", "a//b".into()), "empty component"),
            (with("path", "".into()), "path is empty"),
            (with("path", RELEASE_MARKER.into()), "reserved"),
            (with("base", "../x".into()), "\"../x\" is not valid"),
            (with("sha256", "AB".repeat(32).into()), "not 64 hex digits"),
            (with("sha256", "ab".into()), "not 64 hex digits"),
            (with("mode", 0o10000.into()), "beyond 07777"),
            (with("colour", "red".into()), "unknown field `colour`"),
            (vec![entry("a"), entry("a")], "lists \"a\" twice"),
            (
                with("size", 11.into()),
                "more than the 10 members and 10 bytes",
            ),
        ];
        for (files, want) in cases {
            let err = parse(files.clone()).unwrap_err().to_string();
            assert!(err.contains(want), "{files:?}: {err:?} lacks {want:?}");
            assert!(!err.contains('\n'), "{err:?}");
        }
        let err = Manifest::parse(b"[", 1, 1).unwrap_err().to_string();
        assert!(err.starts_with("manifest is not valid JSON"), "{err}");
    }

    #[test]
    fn hex_digests_round_trip() {
        let d: [u8; 32] = std::array::from_fn(|i| (i * 37) as u8);
        assert_eq!(parse_hex(&crate::sha256::hex(&d)), Some(d));
        assert_eq!(parse_hex(&"g".repeat(64)), None);
    }
}
