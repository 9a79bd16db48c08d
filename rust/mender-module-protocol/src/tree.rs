//! The directory the client prepares for each payload (`…/payloads/0000/tree`).
//!
//! The Go client writes values without a trailing newline, the C++ client with
//! one; `type-info` is re-marshalled by Go and verbatim in C++. So values are
//! trimmed and JSON files are parsed as JSON, never compared as text.

use std::fs;
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::error::{Error, Result};

/// The file tree of one payload.
#[derive(Debug, Clone)]
pub struct FileTree {
    root: PathBuf,
}

/// The artifact headers of the payload being processed.
#[derive(Debug, Clone, PartialEq)]
pub struct Header {
    pub artifact_name: String,
    pub artifact_group: String,
    pub payload_type: String,
    pub header_info: Value,
    pub type_info: Value,
    /// The object given to `mender-artifact -m`; `Value::Null` when the
    /// artifact has none (Go writes `null`, an empty file means the same).
    pub meta_data: Value,
}

impl FileTree {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        FileTree { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Scratch space the client creates empty and removes after the update.
    /// It is not on /data: nothing that must survive a power cut belongs here.
    pub fn tmp_dir(&self) -> PathBuf {
        self.root.join("tmp")
    }

    /// Where the client stored the payloads when the module did not stream them.
    pub fn files_dir(&self) -> PathBuf {
        self.root.join("files")
    }

    pub fn stream_next_path(&self) -> PathBuf {
        self.root.join("stream-next")
    }

    /// The artifact format version; this crate speaks version 3 only.
    pub fn version(&self) -> Result<u32> {
        let path = self.root.join("version");
        let text = read_value(&path)?;
        text.parse().map_err(|_| Error::BadFile {
            path,
            detail: format!(
                "expected an integer format version, found \"{}\"",
                crate::printable(&text, 100)
            ),
        })
    }

    /// Fails unless the tree is of format version 3.
    pub fn require_v3(&self) -> Result<()> {
        match self.version()? {
            3 => Ok(()),
            v => Err(Error::BadFile {
                path: self.root.join("version"),
                detail: format!(
                    "format version {v} is not supported; this module speaks version 3"
                ),
            }),
        }
    }

    pub fn current_artifact_name(&self) -> Result<String> {
        read_value(&self.root.join("current_artifact_name"))
    }

    pub fn current_artifact_group(&self) -> Result<String> {
        read_value(&self.root.join("current_artifact_group"))
    }

    pub fn current_device_type(&self) -> Result<String> {
        read_value(&self.root.join("current_device_type"))
    }

    pub fn header(&self) -> Result<Header> {
        let dir = self.root.join("header");
        Ok(Header {
            artifact_name: read_value(&dir.join("artifact_name"))?,
            artifact_group: read_value(&dir.join("artifact_group"))?,
            payload_type: read_value(&dir.join("payload_type"))?,
            header_info: read_json(&dir.join("header-info"))?,
            type_info: read_json(&dir.join("type-info"))?,
            meta_data: read_json(&dir.join("meta-data"))?,
        })
    }

    /// The payload's `meta-data` alone, which is what most states need.
    pub fn meta_data(&self) -> Result<Value> {
        read_json(&self.root.join("header").join("meta-data"))
    }

    pub fn artifact_name(&self) -> Result<String> {
        read_value(&self.root.join("header").join("artifact_name"))
    }
}

/// Reads a one-value file, without the trailing newline(s) one client adds.
fn read_value(path: &Path) -> Result<String> {
    let text = fs::read_to_string(path).map_err(|e| Error::io("read", path, e))?;
    Ok(text.trim_end_matches(['\n', '\r']).to_owned())
}

/// Reads a JSON file; an empty file is `null`.
fn read_json(path: &Path) -> Result<Value> {
    let text = read_value(path)?;
    if text.trim().is_empty() {
        return Ok(Value::Null);
    }
    serde_json::from_str::<Unique>(&text)
        .map(|u| u.0)
        .map_err(|source| Error::Json {
            path: path.to_owned(),
            source,
        })
}

/// JSON as serde_json reads it, except that an object naming one key twice
/// is an error: serde_json would keep the last silently, so a hand-made
/// artifact could say two things (two containers of one name) and a module
/// would act on one of them without anyone knowing which was meant.
struct Unique(Value);

impl<'de> serde::Deserialize<'de> for Unique {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Unique, D::Error> {
        d.deserialize_any(UniqueVisitor).map(Unique)
    }
}

struct UniqueVisitor;

impl<'de> serde::de::Visitor<'de> for UniqueVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> std::result::Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> std::result::Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_u64<E>(self, v: u64) -> std::result::Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_f64<E>(self, v: f64) -> std::result::Result<Value, E> {
        Ok(serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number))
    }

    fn visit_str<E>(self, v: &str) -> std::result::Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E>(self, v: String) -> std::result::Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E>(self) -> std::result::Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E>(self) -> std::result::Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_some<D: serde::Deserializer<'de>>(self, d: D) -> std::result::Result<Value, D::Error> {
        <Unique as serde::Deserialize>::deserialize(d).map(|u| u.0)
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(
        self,
        mut seq: A,
    ) -> std::result::Result<Value, A::Error> {
        let mut out = Vec::new();
        while let Some(Unique(v)) = seq.next_element()? {
            out.push(v);
        }
        Ok(Value::Array(out))
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(
        self,
        mut map: A,
    ) -> std::result::Result<Value, A::Error> {
        let mut out = serde_json::Map::new();
        while let Some(key) = map.next_key::<String>()? {
            if out.contains_key(&key) {
                return Err(serde::de::Error::custom(format_args!(
                    "the key {} appears twice in one object, so which value counts is not certain",
                    crate::printable(&format!("{key:?}"), 66)
                )));
            }
            let Unique(v) = map.next_value()?;
            out.insert(key, v);
        }
        Ok(Value::Object(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree_with(files: &[(&str, &str)]) -> (PathBuf, FileTree) {
        static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let dir = std::env::temp_dir().join(format!("mmp-tree-{}-{n}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(dir.join("header")).unwrap();
        for (name, content) in files {
            fs::write(dir.join(name), content).unwrap();
        }
        (dir.clone(), FileTree::new(dir))
    }

    const GO_STYLE: &[(&str, &str)] = &[
        ("version", "3"),
        ("current_artifact_name", "release-1"),
        ("current_artifact_group", ""),
        ("current_device_type", "qemux86-64"),
        ("header/artifact_name", "app-2.0"),
        ("header/artifact_group", ""),
        ("header/payload_type", "persistent-app"),
        (
            "header/header-info",
            "{\n  \"payloads\": [\n    {\n      \"type\": \"persistent-app\"\n    }\n  ]\n}",
        ),
        ("header/type-info", "{\n  \"type\": \"persistent-app\"\n}"),
        ("header/meta-data", "null"),
    ];

    #[test]
    fn go_client_tree_without_newlines_and_null_meta_data() {
        let (dir, tree) = tree_with(GO_STYLE);
        assert_eq!(tree.version().unwrap(), 3);
        tree.require_v3().unwrap();
        assert_eq!(tree.current_artifact_name().unwrap(), "release-1");
        assert_eq!(tree.current_device_type().unwrap(), "qemux86-64");
        let h = tree.header().unwrap();
        assert_eq!(h.payload_type, "persistent-app");
        assert_eq!(h.meta_data, Value::Null);
        assert_eq!(h.type_info["type"], "persistent-app");
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn cpp_client_tree_with_newlines_and_compact_json() {
        let files: Vec<(&str, &str)> = vec![
            ("version", "3\n"),
            ("current_artifact_name", "release-1\n"),
            ("current_artifact_group", ""),
            ("current_device_type", "qemux86-64\n"),
            ("header/artifact_name", "app-2.0"),
            ("header/artifact_group", ""),
            ("header/payload_type", "persistent-app"),
            (
                "header/header-info",
                "{\"payloads\":[{\"type\":\"persistent-app\"}]}",
            ),
            (
                "header/type-info",
                "{\"type\":\"persistent-app\",\"artifact_provides\":{}}",
            ),
            ("header/meta-data", "{\"dest\":\"/data/apps/demo\"}"),
        ];
        let (dir, tree) = tree_with(&files);
        assert_eq!(tree.version().unwrap(), 3);
        assert_eq!(tree.current_artifact_name().unwrap(), "release-1");
        assert_eq!(tree.meta_data().unwrap()["dest"], "/data/apps/demo");
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn bad_json_names_the_file() {
        let mut files = GO_STYLE.to_vec();
        files.retain(|f| f.0 != "header/meta-data");
        files.push(("header/meta-data", "{not json"));
        let (dir, tree) = tree_with(&files);
        let err = tree.meta_data().unwrap_err();
        assert!(
            err.to_string()
                .contains("header/meta-data is not valid JSON"),
            "{err}"
        );
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_key_named_twice_in_one_object_is_refused_naming_it() {
        let mut files = GO_STYLE.to_vec();
        files.retain(|f| f.0 != "header/meta-data");
        let twice =
            r#"{"docker-stack": {"containers": {"web": {"image": "a"}, "web": {"image": "b"}}}}"#;
        files.push(("header/meta-data", twice));
        let (dir, tree) = tree_with(&files);
        let err = crate::one_line(&tree.meta_data().unwrap_err());
        assert!(
            err.contains("header/meta-data is not valid JSON: the key \"web\" appears twice"),
            "{err}"
        );
        // The same key in different objects, and everything else, as before.
        let fine = r#"{"a": {"x": 1, "y": [true, null, -2, 1.5, "s", {"x": {}}]}, "b": {"x": 18446744073709551615}}"#;
        fs::write(dir.join("header/meta-data"), fine).unwrap();
        assert_eq!(
            tree.meta_data().unwrap(),
            serde_json::from_str::<Value>(fine).unwrap()
        );
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn other_format_versions_are_refused() {
        let mut files = GO_STYLE.to_vec();
        files[0] = ("version", "4");
        let (dir, tree) = tree_with(&files);
        let err = tree.require_v3().unwrap_err().to_string();
        assert!(err.contains("format version 4 is not supported"), "{err}");
        fs::remove_dir_all(dir).unwrap();
    }
}
