//! `--compose`: compose files read, interpolated and merged as docker compose
//! does, then translated into a docker-stack document on the host, so the
//! device needs nothing but the module.
//!
//! The project directory is the first file's; `.env` there and `env_file`
//! paths are read relative to it. The environment this runs in overrides
//! `.env`, as with docker compose.

pub mod interpolate;
pub mod merge;
pub mod translate;

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use serde_json::{Map, Value};

use interpolate::Vars;
pub use translate::{Options, Translated};

/// Reads, interpolates, merges and translates `files`. `project` is
/// `--project-name`; `environment` the process environment.
pub fn load(
    files: &[PathBuf],
    project: Option<&str>,
    images: BTreeMap<String, String>,
    platform: Option<String>,
    environment: &BTreeMap<String, String>,
) -> Result<Translated> {
    let first = files
        .first()
        .ok_or_else(|| anyhow!("--compose needs a file"))?;
    let dir = first
        .parent()
        .map(|d| {
            if d.as_os_str().is_empty() {
                Path::new(".")
            } else {
                d
            }
        })
        .unwrap_or(Path::new("."))
        .to_path_buf();
    let vars = variables(&dir, environment)?;
    let label = files
        .iter()
        .map(|f| f.display().to_string())
        .collect::<Vec<_>>()
        .join(" + ");
    let mut model = Value::Object(Map::new());
    let mut unset = Vec::new();
    for file in files {
        let text =
            fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?;
        let mut value = parse_yaml(&text).map_err(|e| anyhow!("{}: {e}", file.display()))?;
        let mut v = Vars::new(&vars);
        interpolate_values(&mut value, &mut v, "")
            .map_err(|e| anyhow!("{}: {e}", file.display()))?;
        unset.extend(v.unset);
        normalise(&mut value).map_err(|e| anyhow!("{}: {e}", file.display()))?;
        merge::merge(&mut model, value, &[]);
    }
    unset.sort();
    unset.dedup();
    for name in unset {
        eprintln!("docker-artifact-gen: warning: the {name} variable is not set; defaulting to a blank string");
    }
    read_env_files(&mut model, &dir, &vars).map_err(|e| anyhow!("{label}: {e}"))?;
    let project = project_name(project, &model, &dir, environment)?;
    let options = Options {
        project,
        images,
        platform,
    };
    translate::translate(&model, &options, &vars).map_err(|e| anyhow!("{label}: {e}"))
}

/// The variables files see: `.env` of the project directory, overridden by
/// the environment.
fn variables(
    dir: &Path,
    environment: &BTreeMap<String, String>,
) -> Result<BTreeMap<String, String>> {
    let path = dir.join(".env");
    let mut vars = match fs::read_to_string(&path) {
        Ok(text) => interpolate::parse_env_file(&path.display().to_string(), &text, environment)
            .map_err(|e| anyhow!(e))?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => BTreeMap::new(),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    };
    for (k, v) in environment {
        vars.insert(k.clone(), v.clone());
    }
    Ok(vars)
}

/// `--project-name`, else `COMPOSE_PROJECT_NAME`, else `name:`, else the
/// project directory's name, normalised as compose does.
fn project_name(
    given: Option<&str>,
    model: &Value,
    dir: &Path,
    environment: &BTreeMap<String, String>,
) -> Result<String> {
    if let Some(name) = given {
        docker_spec::stack::check_stack_name(name).map_err(|e| anyhow!("--project-name: {e}"))?;
        return Ok(name.to_owned());
    }
    if let Some(name) = environment
        .get("COMPOSE_PROJECT_NAME")
        .filter(|n| !n.is_empty())
    {
        docker_spec::stack::check_stack_name(name)
            .map_err(|e| anyhow!("COMPOSE_PROJECT_NAME: {e}"))?;
        return Ok(name.clone());
    }
    if let Some(name) = model.get("name") {
        let name = name
            .as_str()
            .ok_or_else(|| anyhow!("name: is not a string"))?;
        docker_spec::stack::check_stack_name(name).map_err(|e| anyhow!("name: {e}"))?;
        return Ok(name.to_owned());
    }
    let dir = fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
    let base = dir
        .file_name()
        .map(|n| n.to_string_lossy().to_ascii_lowercase())
        .unwrap_or_default();
    let name: String = base
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '-')
        .collect();
    let name = name.trim_start_matches(['_', '-']).to_owned();
    if docker_spec::stack::check_stack_name(&name).is_err() {
        bail!(
            "cannot name the project after the directory {}; pass --project-name",
            dir.display()
        );
    }
    Ok(name)
}

/// YAML into JSON values: anchors resolved, `<<` merge keys applied, keys
/// as strings. Tags are refused.
fn parse_yaml(text: &str) -> Result<Value, String> {
    let mut yaml: serde_yaml_ng::Value =
        serde_yaml_ng::from_str(text).map_err(|e| format!("not valid YAML: {e}"))?;
    yaml.apply_merge()
        .map_err(|e| format!("a `<<` merge key: {e}"))?;
    if yaml.is_null() {
        return Ok(Value::Object(Map::new()));
    }
    to_json(yaml, "")
}

fn to_json(yaml: serde_yaml_ng::Value, path: &str) -> Result<Value, String> {
    use serde_yaml_ng::Value as Y;
    Ok(match yaml {
        Y::Null => Value::Null,
        Y::Bool(b) => Value::Bool(b),
        Y::Number(n) => {
            if let Some(i) = n.as_i64() {
                Value::from(i)
            } else if let Some(u) = n.as_u64() {
                Value::from(u)
            } else {
                let f = n.as_f64().unwrap_or(f64::NAN);
                serde_json::Number::from_f64(f)
                    .map(Value::Number)
                    .ok_or_else(|| format!("{path}: {f} is not a finite number"))?
            }
        }
        Y::String(s) => Value::String(s),
        Y::Sequence(items) => Value::Array(
            items
                .into_iter()
                .enumerate()
                .map(|(i, v)| to_json(v, &format!("{path}[{i}]")))
                .collect::<Result<_, _>>()?,
        ),
        Y::Mapping(map) => {
            let mut out = Map::new();
            for (k, v) in map {
                let key = match k {
                    Y::String(s) => s,
                    Y::Number(n) => n.to_string(),
                    Y::Bool(b) => b.to_string(),
                    other => return Err(format!("{path}: the key {other:?} is not a string")),
                };
                let child = if path.is_empty() {
                    key.clone()
                } else {
                    format!("{path}.{key}")
                };
                let value = to_json(v, &child)?;
                out.insert(key, value);
            }
            Value::Object(out)
        }
        Y::Tagged(t) => return Err(format!("{path}: YAML tags ({}) are not supported", t.tag)),
    })
}

/// Substitutes variables in every string value (keys stay as written).
fn interpolate_values(value: &mut Value, vars: &mut Vars, path: &str) -> Result<(), String> {
    match value {
        Value::String(s) => *s = vars.substitute(s).map_err(|e| format!("{path}: {e}"))?,
        Value::Array(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                interpolate_values(item, vars, &format!("{path}[{i}]"))?;
            }
        }
        Value::Object(map) => {
            for (k, v) in map.iter_mut() {
                let child = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                interpolate_values(v, vars, &child)?;
            }
        }
        _ => {}
    }
    Ok(())
}

fn normalise(file: &mut Value) -> Result<(), String> {
    if let Some(services) = file.get_mut("services").and_then(Value::as_object_mut) {
        for (name, service) in services.iter_mut() {
            if let Some(body) = service.as_object_mut() {
                merge::normalise_service(body).map_err(|e| format!("services.{name}.{e}"))?;
            }
        }
    }
    Ok(())
}

/// Reads every service's `env_file` into its `environment`, beneath what
/// `environment` sets, as compose does.
fn read_env_files(
    model: &mut Value,
    dir: &Path,
    vars: &BTreeMap<String, String>,
) -> Result<(), String> {
    let Some(services) = model.get_mut("services").and_then(Value::as_object_mut) else {
        return Ok(());
    };
    for (name, service) in services.iter_mut() {
        let Some(body) = service.as_object_mut() else {
            continue;
        };
        let Some(files) = body.remove("env_file") else {
            continue;
        };
        let path = format!("services.{name}.env_file");
        let items = files
            .as_array()
            .ok_or_else(|| format!("{path}: is not a path or list of paths"))?;
        let mut env = Map::new();
        for (i, item) in items.iter().enumerate() {
            let ip = format!("{path}[{i}]");
            let (file, required) = match item {
                Value::String(s) => (s.clone(), true),
                Value::Object(o) => (
                    o.get("path")
                        .and_then(Value::as_str)
                        .ok_or_else(|| format!("{ip}: has no path"))?
                        .to_owned(),
                    o.get("required").and_then(Value::as_bool).unwrap_or(true),
                ),
                _ => return Err(format!("{ip}: is not a path")),
            };
            let full = dir.join(&file);
            let text = match fs::read_to_string(&full) {
                Ok(t) => t,
                Err(e) if !required && e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(format!("{ip}: cannot read {}: {e}", full.display())),
            };
            let values = interpolate::parse_env_file(&full.display().to_string(), &text, vars)?;
            for (k, v) in values {
                env.insert(k, Value::String(v));
            }
        }
        if let Some(existing) = body.get("environment").and_then(Value::as_object) {
            for (k, v) in existing {
                env.insert(k.clone(), v.clone());
            }
        }
        body.insert("environment".into(), Value::Object(env));
    }
    Ok(())
}

#[cfg(test)]
mod tests;
