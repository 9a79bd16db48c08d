//! Typed reads from a JSON object that remember where they are, so every
//! error names the offending key's path, and that refuse keys nobody read.

use std::collections::BTreeSet;

use serde_json::{Map, Value};

use crate::error::{Path, Result, SpecError};

pub(crate) struct Object<'a> {
    map: &'a Map<String, Value>,
    at: Path,
    read: BTreeSet<&'static str>,
}

pub(crate) fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// A string as it is, a number as its JSON text; `None` for anything else.
fn scalar_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

impl<'a> Object<'a> {
    pub fn new(map: &'a Map<String, Value>, at: Path) -> Object<'a> {
        Object {
            map,
            at,
            read: BTreeSet::new(),
        }
    }

    pub fn at(&self) -> &Path {
        &self.at
    }

    pub fn path(&self, key: &str) -> Path {
        self.at.key(key)
    }

    fn get(&mut self, key: &'static str) -> Option<&'a Value> {
        self.read.insert(key);
        self.map.get(key)
    }

    fn wrong(&self, key: &str, want: &str, found: &Value) -> SpecError {
        SpecError::invalid(
            &self.path(key),
            format!("must be {want}, found {}", kind(found)),
        )
    }

    fn missing(&self, key: &str, want: &str) -> SpecError {
        SpecError::invalid(&self.path(key), format!("is required ({want})"))
    }

    pub fn required_str(&mut self, key: &'static str) -> Result<&'a str> {
        match self.get(key) {
            Some(Value::String(s)) => Ok(s),
            Some(v) => Err(self.wrong(key, "a string", v)),
            None => Err(self.missing(key, "a string")),
        }
    }

    pub fn optional_str(&mut self, key: &'static str) -> Result<Option<&'a str>> {
        match self.get(key) {
            Some(Value::String(s)) => Ok(Some(s)),
            Some(v) => Err(self.wrong(key, "a string", v)),
            None => Ok(None),
        }
    }

    /// Like `optional_str`, but `null` means absent (jq writes it for unset values).
    pub fn optional_str_or_null(&mut self, key: &'static str) -> Result<Option<String>> {
        match self.get(key) {
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(Value::Null) | None => Ok(None),
            Some(v) => Err(self.wrong(key, "a string", v)),
        }
    }

    pub fn optional_bool(&mut self, key: &'static str) -> Result<bool> {
        Ok(self.optional_flag(key)?.unwrap_or(false))
    }

    /// A boolean that may be absent (`None`: the engine's default).
    pub fn optional_flag(&mut self, key: &'static str) -> Result<Option<bool>> {
        match self.get(key) {
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(v) => Err(self.wrong(key, "true or false", v)),
            None => Ok(None),
        }
    }

    /// A string, or a number as its JSON text (`9` → `"9"`), for values
    /// that compose writes either way.
    pub fn optional_str_or_number(&mut self, key: &'static str) -> Result<Option<String>> {
        match self.get(key) {
            Some(v) => scalar_text(v)
                .map(Some)
                .ok_or_else(|| self.wrong(key, "a string or a number", v)),
            None => Ok(None),
        }
    }

    pub fn optional_u64(&mut self, key: &'static str) -> Result<Option<u64>> {
        match self.get(key) {
            Some(Value::Number(n)) => n
                .as_u64()
                .map(Some)
                .ok_or_else(|| self.wrong(key, "a whole number ≥ 0", &Value::Number(n.clone()))),
            Some(v) => Err(self.wrong(key, "a whole number ≥ 0", v)),
            None => Ok(None),
        }
    }

    pub fn optional_f64(&mut self, key: &'static str) -> Result<Option<f64>> {
        match self.get(key) {
            Some(Value::Number(n)) => Ok(n.as_f64()),
            Some(v) => Err(self.wrong(key, "a number", v)),
            None => Ok(None),
        }
    }

    pub fn required_array(&mut self, key: &'static str) -> Result<&'a Vec<Value>> {
        match self.get(key) {
            Some(Value::Array(a)) => Ok(a),
            Some(v) => Err(self.wrong(key, "an array", v)),
            None => Err(self.missing(key, "an array")),
        }
    }

    pub fn optional_array(&mut self, key: &'static str) -> Result<&'a [Value]> {
        match self.get(key) {
            Some(Value::Array(a)) => Ok(a),
            Some(v) => Err(self.wrong(key, "an array", v)),
            None => Ok(&[]),
        }
    }

    /// An array of strings, each with its own path for errors.
    pub fn optional_strings(&mut self, key: &'static str) -> Result<Option<Vec<(Path, &'a str)>>> {
        if !self.map.contains_key(key) {
            self.read.insert(key);
            return Ok(None);
        }
        let items = self.optional_array(key)?;
        let at = self.path(key);
        items
            .iter()
            .enumerate()
            .map(|(i, v)| match v {
                Value::String(s) => Ok((at.index(i), s.as_str())),
                other => Err(SpecError::invalid(
                    &at.index(i),
                    format!("must be a string, found {}", kind(other)),
                )),
            })
            .collect::<Result<Vec<_>>>()
            .map(Some)
    }

    pub fn optional_object(&mut self, key: &'static str) -> Result<Option<Object<'a>>> {
        match self.get(key) {
            Some(Value::Object(m)) => Ok(Some(Object::new(m, self.path(key)))),
            Some(v) => Err(self.wrong(key, "an object", v)),
            None => Ok(None),
        }
    }

    /// An object of string values: `{"KEY": "VALUE"}`.
    pub fn optional_string_map(
        &mut self,
        key: &'static str,
    ) -> Result<Vec<(Path, &'a str, &'a str)>> {
        let Some(obj) = self.optional_object(key)? else {
            return Ok(Vec::new());
        };
        obj.map
            .iter()
            .map(|(k, v)| match v {
                Value::String(s) => Ok((obj.path(k), k.as_str(), s.as_str())),
                other => Err(SpecError::invalid(
                    &obj.path(k),
                    format!("must be a string, found {}", kind(other)),
                )),
            })
            .collect()
    }

    /// An object of strings or numbers (numbers as their JSON text):
    /// `{"nofile": "1024:4096", "nproc": 512}`.
    pub fn optional_scalar_map(
        &mut self,
        key: &'static str,
    ) -> Result<Vec<(Path, &'a str, String)>> {
        let Some(obj) = self.optional_object(key)? else {
            return Ok(Vec::new());
        };
        obj.map
            .iter()
            .map(|(k, v)| match scalar_text(v) {
                Some(text) => Ok((obj.path(k), k.as_str(), text)),
                None => Err(SpecError::invalid(
                    &obj.path(k),
                    format!("must be a string or a number, found {}", kind(v)),
                )),
            })
            .collect()
    }

    /// Every key with its value (in key order: serde_json does not keep the
    /// document's).
    pub fn entries(&self) -> Vec<(&'a str, &'a Value)> {
        self.map.iter().map(|(k, v)| (k.as_str(), v)).collect()
    }

    /// Fails on the first key that no read asked for.
    pub fn finish(self) -> Result<()> {
        if let Some(key) = self.map.keys().find(|k| !self.read.contains(k.as_str())) {
            let known: Vec<&str> = self.read.iter().copied().collect();
            return Err(SpecError::invalid(
                &self.at.key(key),
                format!(
                    "unknown key {key:?}; the keys allowed here are {}",
                    known.join(", ")
                ),
            ));
        }
        Ok(())
    }
}
