//! The artifact format: what the generator writes into `meta-data` and what
//! the module accepts. Shared by the device module and the host generator, so
//! both refuse exactly the same inputs. See `FORMAT.md` beside `Cargo.toml`.
//!
//! Validation is complete here and runs in `Download` before anything is
//! written: a spec that parses is safe to act on once its destination has
//! been checked against the device's allowed roots ([`check_allowed`]).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The key under which our meta-data lives.
pub const META_KEY: &str = "persistent-app";
/// The format of a full artifact: the archive holds the whole tree.
pub const FORMAT_VERSION: u64 = 1;
/// The format of a delta artifact ([`Delta`]): format 1 plus a manifest, so
/// that a module that predates deltas refuses one as a format it does not
/// read rather than as malformed meta-data.
pub const DELTA_FORMAT_VERSION: u64 = 2;
/// Written into the root of every tree this module installs; names the
/// artifact and the install it belongs to, so that after a power cut the
/// module can tell which directory holds which tree.
pub const RELEASE_MARKER: &str = ".persistent-app-release";
/// The payload that names the destination in the community format.
pub const COMMUNITY_DEST_PAYLOAD: &str = "dest_dir";

/// Our meta-data, `{"persistent-app": {...}}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppSpec {
    pub format: u64,
    /// The app's name: the journal's key, and the generator's `--software-name`.
    pub name: String,
    /// Where the tree is installed; absolute, normalised, under an allowed root.
    pub dest: String,
    /// The payload file holding the tree as one uncompressed tar.
    pub archive: String,
    /// A systemd unit stopped before the swap and started after it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    /// Bytes of regular-file content in the archive, for the disk check.
    pub unpacked_size: u64,
    /// Number of members in the archive (files, directories, links).
    /// For a delta, of the whole new tree, as if the archive held it all.
    pub entries: u64,
    /// Present exactly in format 2: the archive holds only the files the
    /// base release lacks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delta: Option<Delta>,
}

/// What a delta artifact adds to the meta-data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Delta {
    /// The version (`data-partition.<name>.version`) the artifact applies
    /// to; the artifact also depends on it, so the client refuses it first.
    pub base_version: String,
    /// The payload file holding the manifest ([`crate::delta::Manifest`]),
    /// sent before the archive.
    pub manifest: String,
}

/// What an artifact's meta-data says about its payloads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ArtifactFormat {
    /// Our format: one tar payload, everything else in meta-data.
    Ours(AppSpec),
    /// The community generator's: flat payload files plus `dest_dir`, whose
    /// content is the destination. No meta-data of ours.
    Community,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpecError {
    #[error("meta-data must be a JSON object, found {0}")]
    NotAnObject(&'static str),
    #[error("meta-data has unknown key {} beside \"persistent-app\"; remove it", quoted(.0))]
    UnknownTopLevelKey(String),
    #[error("meta-data \"persistent-app\" is malformed: {}", bounded(.0, 400))]
    Shape(String),
    #[error(
        "meta-data \"persistent-app\" has format {0}; this module reads formats {FORMAT_VERSION} (full) \
         and {DELTA_FORMAT_VERSION} (delta): build the artifact with a matching persistent-app-artifact-gen \
         or update the module"
    )]
    Format(u64),
    #[error("meta-data \"persistent-app\" has format {format} but {}; format {FORMAT_VERSION} has no \"delta\", format {DELTA_FORMAT_VERSION} needs one", if *.has_delta { "a \"delta\" object" } else { "no \"delta\" object" })]
    DeltaFormat { format: u64, has_delta: bool },
    #[error("delta base version {} is not valid: {why}", quoted(.version))]
    BaseVersion { version: String, why: &'static str },
    #[error(
        "app name {} is not valid: {why}; use 1 to 200 of A-Z a-z 0-9 . _ -, not starting with '.'",
        quoted(.name)
    )]
    Name { name: String, why: &'static str },
    #[error("destination {} is not valid: {why}; give an absolute, normalised path such as /data/apps/demo-app", quoted(.dest))]
    Dest { dest: String, why: &'static str },
    #[error("destination {} is not strictly under an allowed root ({}); use one of them or add a root to allowed_roots in the device's persistent-app.conf", bounded(.dest, 200), bounded(.roots, 300))]
    NotAllowed { dest: String, roots: String },
    #[error(
        "archive payload name {} is not valid: {why}; give a plain file name such as app.tar",
        quoted(.name)
    )]
    Archive { name: String, why: &'static str },
    #[error(
        "service {} is not valid: {why}; give a systemd unit name such as demo-app.service",
        quoted(.name)
    )]
    Service { name: String, why: &'static str },
}

/// `text` as one short printable piece of a line: control characters
/// (newlines, escapes, DEL, C1) written as `\u{..}` and, past `max` bytes,
/// the middle left out. Names, paths and serde's messages quote the
/// artifact's text, which may be any size and hold anything.
pub fn bounded(text: &str, max: usize) -> String {
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
    let mut head = room / 2;
    while !out.is_char_boundary(head) {
        head -= 1;
    }
    let mut tail = out.len() - (room - room / 2);
    while !out.is_char_boundary(tail) {
        tail += 1;
    }
    format!("{}{note}{}", &out[..head], &out[tail..])
}

/// `text` in double quotes, [`bounded`] to 120 bytes.
fn quoted(text: &str) -> String {
    format!("\"{}\"", bounded(text, 120))
}

impl AppSpec {
    /// Checks every field except the allowed roots, which only the device knows.
    pub fn validate(&self) -> Result<(), SpecError> {
        if self.format != FORMAT_VERSION && self.format != DELTA_FORMAT_VERSION {
            return Err(SpecError::Format(self.format));
        }
        if (self.format == DELTA_FORMAT_VERSION) != self.delta.is_some() {
            return Err(SpecError::DeltaFormat {
                format: self.format,
                has_delta: self.delta.is_some(),
            });
        }
        check_name(&self.name)?;
        check_dest(&self.dest)?;
        check_archive_name(&self.archive)?;
        if let Some(delta) = &self.delta {
            check_base_version(&delta.base_version)?;
            check_archive_name(&delta.manifest)?;
            if delta.manifest == self.archive {
                return Err(SpecError::Archive {
                    name: delta.manifest.clone(),
                    why: "the manifest and the archive are the same payload",
                });
            }
        }
        if let Some(service) = &self.service {
            check_service(service)?;
        }
        Ok(())
    }

    /// The meta-data object the generator hands to `mender-artifact -m`.
    pub fn to_meta_data(&self) -> Value {
        let mut top = serde_json::Map::new();
        top.insert(
            META_KEY.to_owned(),
            serde_json::to_value(self).expect("AppSpec always serialises"),
        );
        Value::Object(top)
    }
}

/// Reads an artifact's `meta-data`. `null`, an empty object or an object
/// without our key is the community format; our key is validated completely.
pub fn parse_meta_data(meta: &Value) -> Result<ArtifactFormat, SpecError> {
    let map = match meta {
        Value::Null => return Ok(ArtifactFormat::Community),
        Value::Object(map) => map,
        Value::Bool(_) => return Err(SpecError::NotAnObject("a boolean")),
        Value::Number(_) => return Err(SpecError::NotAnObject("a number")),
        Value::String(_) => return Err(SpecError::NotAnObject("a string")),
        Value::Array(_) => return Err(SpecError::NotAnObject("an array")),
    };
    let Some(ours) = map.get(META_KEY) else {
        return Ok(ArtifactFormat::Community);
    };
    if let Some(other) = map.keys().find(|k| *k != META_KEY) {
        return Err(SpecError::UnknownTopLevelKey(other.clone()));
    }
    // Checked before the shape so that a newer format with new fields is
    // reported as a format mismatch, not as an unknown field.
    if let Some(format) = ours.get("format").and_then(Value::as_u64) {
        if format != FORMAT_VERSION && format != DELTA_FORMAT_VERSION {
            return Err(SpecError::Format(format));
        }
    }
    let spec: AppSpec =
        serde_json::from_value(ours.clone()).map_err(|e| SpecError::Shape(e.to_string()))?;
    spec.validate()?;
    Ok(ArtifactFormat::Ours(spec))
}

/// Parses the content of the community format's `dest_dir` payload.
pub fn parse_community_dest(content: &[u8]) -> Result<String, SpecError> {
    let text = std::str::from_utf8(content).map_err(|_| SpecError::Dest {
        dest: String::from_utf8_lossy(content).into_owned(),
        why: "dest_dir is not UTF-8",
    })?;
    let dest = text.trim_end_matches(['\n', '\r', ' ', '\t']).to_owned();
    check_dest(&dest)?;
    // The journal is keyed by name; here the name is the last component.
    check_name(&community_name(&dest))?;
    Ok(dest)
}

/// The app name of a community-format artifact: its destination's last component.
pub fn community_name(dest: &str) -> String {
    dest.rsplit('/').next().unwrap_or_default().to_owned()
}

/// A version as mender-artifact accepts it in a provide's value.
pub fn check_base_version(version: &str) -> Result<(), SpecError> {
    let bad = |why| {
        Err(SpecError::BaseVersion {
            version: version.to_owned(),
            why,
        })
    };
    if version.is_empty() {
        return bad("it is empty");
    }
    if version.len() > 256 {
        return bad("it is longer than 256 bytes");
    }
    if version.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return bad("it contains white space or a control character");
    }
    Ok(())
}

pub fn check_name(name: &str) -> Result<(), SpecError> {
    let bad = |why| {
        Err(SpecError::Name {
            name: name.to_owned(),
            why,
        })
    };
    if name.is_empty() {
        return bad("it is empty");
    }
    if name.len() > 200 {
        return bad("it is longer than 200 characters");
    }
    if name.starts_with('.') {
        return bad("it starts with '.'");
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
    {
        return bad("it contains a character other than A-Z a-z 0-9 . _ -");
    }
    Ok(())
}

/// Syntactic checks of a destination. The last component must not be hidden:
/// `.NAME.staging` and `.NAME.previous` beside it are this module's, and a
/// destination must never be able to name another app's staging tree.
pub fn check_dest(dest: &str) -> Result<(), SpecError> {
    let bad = |why| {
        Err(SpecError::Dest {
            dest: dest.to_owned(),
            why,
        })
    };
    if !dest.starts_with('/') {
        return bad("it is not absolute");
    }
    if dest.len() > 3000 {
        return bad("it is longer than 3000 bytes");
    }
    if dest.contains('\0') {
        return bad("it contains a NUL byte");
    }
    if dest.chars().any(char::is_control) {
        return bad("it contains a control character");
    }
    if dest == "/" {
        return bad("it is the root directory");
    }
    if dest.ends_with('/') {
        return bad("it ends with '/'");
    }
    for component in dest[1..].split('/') {
        match component {
            "" => return bad("it contains an empty component ('//')"),
            "." => return bad("it contains a '.' component"),
            ".." => return bad("it contains a '..' component"),
            _ => {}
        }
    }
    let last = community_name(dest);
    if last.starts_with('.') {
        return bad("its last component starts with '.'");
    }
    if last.len() > 200 {
        return bad("its last component is longer than 200 bytes");
    }
    Ok(())
}

/// True when `dest` lies strictly below one of `roots` (component-wise, so
/// `/data/apps2` is not under `/data/apps`).
pub fn check_allowed(dest: &str, roots: &[PathBuf]) -> Result<(), SpecError> {
    let path = Path::new(dest);
    let inside = roots.iter().any(|root| {
        path.strip_prefix(root)
            .map(|rest| !rest.as_os_str().is_empty())
            .unwrap_or(false)
    });
    if inside {
        Ok(())
    } else {
        let roots = roots
            .iter()
            .map(|r| r.display().to_string())
            .collect::<Vec<_>>()
            .join(", ");
        Err(SpecError::NotAllowed {
            dest: dest.to_owned(),
            roots,
        })
    }
}

pub fn check_archive_name(name: &str) -> Result<(), SpecError> {
    let bad = |why| {
        Err(SpecError::Archive {
            name: name.to_owned(),
            why,
        })
    };
    if name.is_empty() {
        return bad("it is empty");
    }
    if name == "." || name == ".." {
        return bad("it is '.' or '..'");
    }
    if name.contains('/') || name.contains('\0') {
        return bad("it contains '/' or NUL");
    }
    if name.len() > 255 {
        return bad("it is longer than 255 bytes");
    }
    if name == COMMUNITY_DEST_PAYLOAD {
        return bad("dest_dir is reserved for the community format");
    }
    Ok(())
}

/// A unit name that cannot be mistaken for a `systemctl` option.
pub fn check_service(name: &str) -> Result<(), SpecError> {
    let bad = |why| {
        Err(SpecError::Service {
            name: name.to_owned(),
            why,
        })
    };
    if name.len() > 256 {
        return bad("it is longer than 256 characters");
    }
    if name.starts_with('-') {
        return bad("it starts with '-'");
    }
    let Some(stem) = name.strip_suffix(".service") else {
        return bad("it does not end in .service");
    };
    if stem.is_empty() {
        return bad("the part before .service is empty");
    }
    if !stem
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b":_.@\\-".contains(&b))
    {
        return bad("it contains a character systemd does not allow in unit names");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn good() -> Value {
        json!({"persistent-app": {
            "format": 1, "name": "demo-app", "dest": "/data/apps/demo-app",
            "archive": "app.tar", "service": "demo-app.service",
            "unpacked_size": 1234, "entries": 7
        }})
    }

    fn with(key: &str, value: Value) -> Value {
        let mut v = good();
        v["persistent-app"][key] = value;
        v
    }

    fn without(key: &str) -> Value {
        let mut v = good();
        v["persistent-app"].as_object_mut().unwrap().remove(key);
        v
    }

    #[test]
    fn a_complete_spec_parses_and_round_trips() {
        let ArtifactFormat::Ours(spec) = parse_meta_data(&good()).unwrap() else {
            panic!("not ours")
        };
        assert_eq!(spec.name, "demo-app");
        assert_eq!(spec.service.as_deref(), Some("demo-app.service"));
        assert_eq!(spec.to_meta_data(), good());
        let no_service = without("service");
        let ArtifactFormat::Ours(spec) = parse_meta_data(&no_service).unwrap() else {
            panic!("not ours")
        };
        assert_eq!(spec.service, None);
        assert_eq!(spec.to_meta_data(), no_service);
    }

    #[test]
    fn meta_data_without_our_key_is_the_community_format() {
        for meta in [Value::Null, json!({}), json!({"something": "else"})] {
            assert_eq!(
                parse_meta_data(&meta).unwrap(),
                ArtifactFormat::Community,
                "{meta}"
            );
        }
    }

    /// Each bad input and the words its one-line error must contain.
    #[test]
    fn every_bad_input_gets_its_own_one_line_error() {
        let cases: Vec<(Value, &str)> = vec![
            (json!([1]), "must be a JSON object, found an array"),
            (json!("x"), "found a string"),
            (
                {
                    let mut v = good();
                    v["extra"] = json!(1);
                    v
                },
                "unknown key \"extra\"",
            ),
            (with("colour", json!("red")), "unknown field `colour`"),
            (without("dest"), "missing field `dest`"),
            (with("entries", json!(-1)), "malformed"),
            (with("format", json!(3)), "has format 3"),
            (
                with("format", json!(2)),
                "has format 2 but no \"delta\" object",
            ),
            (
                with(
                    "delta",
                    json!({"base_version": "1.0", "manifest": "manifest.json"}),
                ),
                "has format 1 but a \"delta\" object",
            ),
            (with("name", json!("")), "it is empty"),
            (with("name", json!(".hidden")), "starts with '.'"),
            (with("name", json!("a/b")), "character other than"),
            (with("name", json!("a b")), "character other than"),
            (with("name", json!("x".repeat(201))), "longer than 200"),
            (with("dest", json!("data/apps/x")), "not absolute"),
            (with("dest", json!("/data/apps/../etc")), "'..' component"),
            (with("dest", json!("/data/apps/./x")), "'.' component"),
            (with("dest", json!("/data//apps/x")), "empty component"),
            (with("dest", json!("/data/apps/x/")), "ends with '/'"),
            (with("dest", json!("/")), "root directory"),
            (
                with("dest", json!("/data/apps/.x")),
                "last component starts with '.'",
            ),
            (with("dest", json!("/data/apps/a\u{0}b")), "NUL"),
            (with("archive", json!("")), "archive payload name \"\""),
            (with("archive", json!("../app.tar")), "contains '/'"),
            (with("archive", json!("..")), "'.' or '..'"),
            (with("archive", json!("dest_dir")), "reserved"),
            (with("service", json!("demo")), "does not end in .service"),
            (with("service", json!("--now.service")), "starts with '-'"),
            (with("service", json!("a b.service")), "does not allow"),
            (with("service", json!(".service")), "is empty"),
        ];
        for (meta, want) in cases {
            let err = parse_meta_data(&meta).unwrap_err().to_string();
            assert!(err.contains(want), "{meta}: {err:?} lacks {want:?}");
            assert!(!err.contains('\n'), "{err:?}");
        }
    }

    fn delta(base_version: &str, manifest: &str) -> Value {
        let mut v = with("format", json!(2));
        v["persistent-app"]["delta"] = json!({"base_version": base_version, "manifest": manifest});
        v
    }

    #[test]
    fn a_delta_spec_is_format_2_and_names_its_base_and_manifest() {
        let meta = delta("1.0", "manifest.json");
        let ArtifactFormat::Ours(spec) = parse_meta_data(&meta).unwrap() else {
            panic!("not ours")
        };
        let d = spec.delta.as_ref().unwrap();
        assert_eq!(
            (d.base_version.as_str(), d.manifest.as_str()),
            ("1.0", "manifest.json")
        );
        assert_eq!(spec.to_meta_data(), meta);
        for (meta, want) in [
            (
                delta("", "manifest.json"),
                "base version \"\" is not valid: it is empty",
            ),
            (delta("1 0", "manifest.json"), "white space"),
            (
                delta("1.0", "app.tar"),
                "the manifest and the archive are the same payload",
            ),
            (delta("1.0", "../m"), "contains '/'"),
        ] {
            let err = parse_meta_data(&meta).unwrap_err().to_string();
            assert!(err.contains(want), "{meta}: {err:?} lacks {want:?}");
        }
    }

    #[test]
    fn destinations_must_be_strictly_under_an_allowed_root() {
        let roots = vec![PathBuf::from("/data/apps"), PathBuf::from("/opt/x")];
        check_allowed("/data/apps/demo", &roots).unwrap();
        check_allowed("/data/apps/team/demo", &roots).unwrap();
        check_allowed("/opt/x/y", &roots).unwrap();
        for dest in ["/data/apps", "/data/apps2/demo", "/data", "/etc/demo"] {
            let err = check_allowed(dest, &roots).unwrap_err().to_string();
            assert!(
                err.contains("not strictly under an allowed root (/data/apps, /opt/x)"),
                "{err}"
            );
        }
    }

    #[test]
    fn community_dest_dir_is_trimmed_and_validated() {
        assert_eq!(
            parse_community_dest(b"/data/apps/demo\n").unwrap(),
            "/data/apps/demo"
        );
        assert_eq!(community_name("/data/apps/demo"), "demo");
        let err = parse_community_dest(b"relative/x").unwrap_err().to_string();
        assert!(err.contains("not absolute"), "{err}");
        let err = parse_community_dest(b"/data/apps/a b\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("app name \"a b\""), "{err}");
        let err = parse_community_dest(&[0xff, 0xfe]).unwrap_err().to_string();
        assert!(err.contains("not UTF-8"), "{err}");
    }

    #[test]
    fn an_unknown_field_is_named_escaped_and_short() {
        // serde's message quotes the field name as the artifact wrote it.
        let key = format!("des\u{7f}\u{1b}[2J\n{}", "x".repeat(10_000));
        let meta = json!({"persistent-app": {"format": 1, key.clone(): 1}});
        let text = parse_meta_data(&meta).unwrap_err().to_string();
        assert!(!text.chars().any(char::is_control), "{text:?}");
        assert!(
            text.contains("unknown field `des\\u{7f}\\u{1b}[2J\\u{a}xxx"),
            "{text}"
        );
        assert!(text.len() <= 500, "{} bytes", text.len());
        let top = json!({"persistent-app": {}, key: 1});
        let text = parse_meta_data(&top).unwrap_err().to_string();
        assert!(!text.chars().any(char::is_control), "{text:?}");
        assert!(text.len() <= 300 && text.ends_with("remove it"), "{text}");
    }

    #[test]
    fn a_huge_name_or_destination_is_quoted_short() {
        for bad in [
            with("name", json!("\u{1b}".repeat(5000))),
            with("dest", json!(format!("/data/apps/{}\n", "d".repeat(9000)))),
        ] {
            let text = parse_meta_data(&bad).unwrap_err().to_string();
            assert!(!text.chars().any(char::is_control), "{text:?}");
            assert!(text.len() <= 400, "{} bytes: {text}", text.len());
        }
    }
}
