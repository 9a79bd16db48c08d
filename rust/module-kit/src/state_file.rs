//! Versioned state files (the modules' journals) on the data partition.
//!
//! A journal outlives the module that wrote it: an OS update can bring a
//! newer module in the middle of a deployment, and that module must carry it
//! on. So every file says its format (`"format": N` beside the value's own
//! fields), a module reads every format it ever wrote ([`Versioned::upgrade`]
//! turns an older one into today's) and refuses, saying so, one written by a
//! newer module. It writes only its own format.
//!
//! Writes are atomic and durable ([`Dir::write_atomic`]). A file can also
//! keep a spare ([`StateFile::reserve`]): blocks set aside while there is
//! room, so that the writes a rollback needs succeed on a full disk. Each
//! write then goes into the spare and is renamed over the file, whose blocks
//! become the next spare.

use std::ffi::{OsStr, OsString};
use std::fmt;
use std::marker::PhantomData;

use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::{Map, Value};

use crate::fs::{self, Dir, Kind};

/// A value kept in a state file.
pub trait Versioned: Serialize + DeserializeOwned {
    /// The format this build writes.
    const FORMAT: u32;

    /// Today's value from a file of an older `format` (the object without
    /// its `format` key), or why it cannot be read.
    fn upgrade(format: u32, value: Map<String, Value>) -> Result<Self, String>;
}

/// Why a state file could not be read or written.
#[derive(Debug)]
pub enum StateError {
    Io(fs::Error),
    /// The file exists but is not a state this module reads.
    Unreadable {
        path: std::path::PathBuf,
        detail: String,
    },
}

impl fmt::Display for StateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StateError::Io(e) => e.fmt(f),
            StateError::Unreadable { path, detail } => {
                write!(f, "state file {}: {detail}", path.display())
            }
        }
    }
}

impl std::error::Error for StateError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            StateError::Io(e) => Some(e),
            StateError::Unreadable { .. } => None,
        }
    }
}

impl From<fs::Error> for StateError {
    fn from(e: fs::Error) -> StateError {
        StateError::Io(e)
    }
}

/// Larger than any state a module writes: a bound on what is read.
pub const MAX_SIZE: u64 = 1 << 20;

/// The smallest spare: one block of the usual 4 KiB, more than a journal
/// needs. A spare is never smaller than the file it replaces, so the blocks
/// that file frees on each write are enough for the next spare.
pub const SPARE_SIZE: u64 = 4096;

fn spare_size(len: usize) -> u64 {
    (len as u64).max(SPARE_SIZE).div_ceil(SPARE_SIZE) * SPARE_SIZE
}

/// The state file `name` in a directory.
pub struct StateFile<T> {
    dir: Dir,
    name: OsString,
    _value: PhantomData<T>,
}

impl<T: Versioned> StateFile<T> {
    pub fn new(dir: Dir, name: impl Into<OsString>) -> StateFile<T> {
        StateFile {
            dir,
            name: name.into(),
            _value: PhantomData,
        }
    }

    pub fn dir(&self) -> &Dir {
        &self.dir
    }

    pub fn name(&self) -> &OsStr {
        &self.name
    }

    /// `.NAME.spare`: hidden, so that scans of state files pass it by.
    fn spare(&self) -> OsString {
        let mut s = OsString::from(".");
        s.push(&self.name);
        s.push(".spare");
        s
    }

    fn unreadable(&self, detail: String) -> StateError {
        StateError::Unreadable {
            path: self.dir.display(&self.name),
            detail,
        }
    }

    /// The state, upgraded to today's format; None when there is no file.
    pub fn load(&self) -> Result<Option<T>, StateError> {
        let Some(bytes) = self.dir.read(&self.name, MAX_SIZE)? else {
            return Ok(None);
        };
        self.decode(&bytes).map(Some)
    }

    /// `bytes` as today's value (see the module documentation).
    pub fn decode(&self, bytes: &[u8]) -> Result<T, StateError> {
        let value: Value = serde_json::from_slice(bytes).map_err(|e| {
            self.unreadable(format!(
                "not JSON (line {}, column {}); inspect it before removing it",
                e.line(),
                e.column()
            ))
        })?;
        let Value::Object(mut object) = value else {
            return Err(self.unreadable("not a JSON object; inspect it before removing it".into()));
        };
        let format = match object.remove("format") {
            Some(Value::Number(n)) if n.as_u64().is_some_and(|n| n <= u32::MAX as u64) => {
                n.as_u64().unwrap_or_default() as u32
            }
            _ => return Err(self.unreadable("has no \"format\" number".into())),
        };
        if format > T::FORMAT {
            return Err(self.unreadable(format!(
                "format {format} was written by a newer module, which this one (format {}) cannot \
                 continue; install that module again, or finish its deployment with it",
                T::FORMAT
            )));
        }
        if format == T::FORMAT {
            return serde_json::from_value(Value::Object(object))
                .map_err(|e| self.unreadable(format!("format {format}: {}", describe(&e))));
        }
        T::upgrade(format, object)
            .map_err(|why| self.unreadable(format!("format {format} cannot be upgraded: {why}")))
    }

    /// The bytes written for `value`: its fields and `"format"`.
    pub fn encode(value: &T) -> Vec<u8> {
        let mut object = match serde_json::to_value(value).expect("a state always serialises") {
            Value::Object(o) => o,
            other => {
                let mut o = Map::new();
                o.insert("value".into(), other);
                o
            }
        };
        let mut out = Map::new();
        out.insert("format".into(), Value::from(T::FORMAT));
        out.append(&mut object);
        let mut text = serde_json::to_vec_pretty(&Value::Object(out)).expect("JSON serialises");
        text.push(b'\n');
        text
    }

    /// Writes `value` durably: through the spare where there is one, so a
    /// full disk does not stop it.
    pub fn store(&self, value: &T) -> Result<(), StateError> {
        let bytes = Self::encode(value);
        let spare = self.spare();
        if self.dir.kind(&spare)? == Kind::File {
            self.dir.write_over_spare(&spare, &self.name, &bytes)?;
            // The old file's blocks are free again: make them the next spare.
            // Where even that fails, the next write takes the ordinary path.
            if self.dir.reserve(&spare, spare_size(bytes.len())).is_err() {
                let _ = self.dir.remove_file(&spare);
            }
        } else {
            self.dir.write_atomic(&self.name, &bytes, 0o644)?;
        }
        Ok(())
    }

    /// Sets blocks aside so that later [`StateFile::store`]s need no free
    /// space (see the module documentation).
    pub fn reserve(&self) -> Result<(), StateError> {
        let current = self.dir.read(&self.name, MAX_SIZE)?.map_or(0, |b| b.len());
        Ok(self.dir.reserve(self.spare(), spare_size(current))?)
    }

    /// Removes the spare, keeping the file.
    pub fn release(&self) -> Result<(), StateError> {
        Ok(self.dir.remove_file(self.spare())?)
    }

    /// Removes the file and its spare; a missing one is fine.
    pub fn remove(&self) -> Result<(), StateError> {
        self.dir.remove_file(&self.name)?;
        self.dir.remove_file(self.spare())?;
        Ok(())
    }
}

/// A serde error without the value that caused it: state and configuration
/// files may hold secrets, and no value from them may reach a log. Keys
/// (field names) are the file's schema and are kept.
pub fn describe(e: &serde_json::Error) -> String {
    use serde_json::error::Category;
    let what = match e.classify() {
        Category::Io | Category::Syntax | Category::Eof => "not valid JSON".to_owned(),
        Category::Data => {
            let text = e.to_string();
            let text = text.split(" at line ").next().unwrap_or("");
            if text.starts_with("missing field")
                || text.starts_with("unknown field")
                || text.starts_with("duplicate field")
            {
                // The key is the file's text: escaped and bounded like a log line.
                mender_module_protocol::printable(text, 200)
            } else if let Some(expected) = text.split(", expected ").nth(1) {
                format!("a value of the wrong type or range, expected {expected}")
            } else {
                "a value of the wrong type or range".to_owned()
            }
        }
    };
    format!("{what} (line {}, column {})", e.line(), e.column())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Journal {
        app: String,
        phase: String,
        #[serde(default)]
        tries: u32,
    }

    impl Versioned for Journal {
        const FORMAT: u32 = 2;
        fn upgrade(format: u32, mut value: Map<String, Value>) -> Result<Self, String> {
            match format {
                // Format 1 called the phase "step".
                1 => {
                    let step = value.remove("step").ok_or("no step")?;
                    value.insert("phase".into(), step);
                    serde_json::from_value(Value::Object(value)).map_err(|e| describe(&e))
                }
                other => Err(format!("format {other} was never written")),
            }
        }
    }

    fn scratch(name: &str) -> Dir {
        let p = std::env::temp_dir().join(format!("kit-state-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        Dir::open_or_create(&p).unwrap()
    }

    fn file(dir: &Dir) -> StateFile<Journal> {
        StateFile::new(dir.try_clone().unwrap(), "demo.json")
    }

    #[test]
    fn round_trips_with_its_format_and_removes() {
        let d = scratch("round");
        let f = file(&d);
        assert_eq!(f.load().unwrap(), None);
        let j = Journal {
            app: "demo".into(),
            phase: "staged".into(),
            tries: 1,
        };
        f.store(&j).unwrap();
        let text = std::fs::read_to_string(d.display("demo.json")).unwrap();
        assert!(text.contains("\n  \"format\": 2,\n"), "{text}");
        assert_eq!(f.load().unwrap(), Some(j));
        f.remove().unwrap();
        f.remove().unwrap();
        assert_eq!(f.load().unwrap(), None);
        std::fs::remove_dir_all(d.path()).unwrap();
    }

    #[test]
    fn older_formats_are_upgraded_and_newer_ones_refused_by_name() {
        let d = scratch("formats");
        let f = file(&d);
        std::fs::write(
            d.display("demo.json"),
            r#"{"format":1,"app":"demo","step":"swapping"}"#,
        )
        .unwrap();
        assert_eq!(
            f.load().unwrap(),
            Some(Journal {
                app: "demo".into(),
                phase: "swapping".into(),
                tries: 0
            })
        );
        std::fs::write(d.display("demo.json"), r#"{"format":3,"app":"demo"}"#).unwrap();
        let e = f.load().unwrap_err().to_string();
        assert!(e.contains("format 3 was written by a newer module"), "{e}");
        std::fs::write(d.display("demo.json"), r#"{"app":"demo"}"#).unwrap();
        assert!(f
            .load()
            .unwrap_err()
            .to_string()
            .contains("has no \"format\""));
        std::fs::write(d.display("demo.json"), "{not json").unwrap();
        assert!(f
            .load()
            .unwrap_err()
            .to_string()
            .contains("not JSON (line 1"));
        std::fs::remove_dir_all(d.path()).unwrap();
    }

    #[test]
    fn a_value_in_a_bad_file_never_reaches_the_message() {
        let d = scratch("secret");
        let f = file(&d);
        std::fs::write(
            d.display("demo.json"),
            r#"{"format":2,"app":"demo","phase":"x","tries":"hunter2"}"#,
        )
        .unwrap();
        let e = f.load().unwrap_err().to_string();
        assert!(!e.contains("hunter2"), "{e}");
        assert!(e.contains("expected u32"), "{e}");
        std::fs::remove_dir_all(d.path()).unwrap();
    }

    #[test]
    fn with_a_spare_a_store_goes_through_it_and_a_new_spare_follows() {
        let d = scratch("spare");
        let f = file(&d);
        f.reserve().unwrap();
        assert_eq!(
            std::fs::metadata(d.display(".demo.json.spare"))
                .unwrap()
                .len(),
            SPARE_SIZE
        );
        let j = Journal {
            app: "demo".into(),
            phase: "rolling-back".into(),
            tries: 0,
        };
        f.store(&j).unwrap();
        assert_eq!(f.load().unwrap(), Some(j));
        assert_eq!(
            std::fs::metadata(d.display(".demo.json.spare"))
                .unwrap()
                .len(),
            SPARE_SIZE
        );
        f.remove().unwrap();
        assert_eq!(d.list().unwrap(), Vec::<OsString>::new());
        std::fs::remove_dir_all(d.path()).unwrap();
    }

    #[test]
    fn an_unknown_key_is_described_escaped_and_short() {
        let key = format!("app\u{7f}\u{1b}[2J\n{}", "k".repeat(5000));
        let text = format!("{{{}: 1}}", serde_json::to_string(&key).unwrap());
        let e = serde_json::from_str::<Journal>(&text).unwrap_err();
        let line = describe(&e);
        assert!(!line.chars().any(char::is_control), "{line:?}");
        assert!(
            line.starts_with("unknown field `app\\u{7f}\\u{1b}[2J\\u{a}kkk"),
            "{line}"
        );
        assert!(line.len() <= 240, "{} bytes", line.len());
    }
}
