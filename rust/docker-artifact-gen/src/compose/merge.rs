//! Several compose files into one model, as `docker compose -f a -f b`
//! merges them: mappings key by key, later files winning; `command`,
//! `entrypoint` and `healthcheck.test` replaced whole; lists of unique things
//! (ports, volumes by target, devices by target) merged by that identity;
//! other lists appended without repeats. Keys that take a list or a mapping
//! (environment, labels, …) are turned into mappings first, so a list in one
//! file and a mapping in the next merge entry by entry. Pure.

use serde_json::{Map, Value};

/// Service keys written either as a `KEY=VALUE` list or as a mapping.
const KEY_VALUE_LISTS: &[&str] = &["environment", "labels", "sysctls"];

/// Rewrites the list forms of a service into their mapping forms.
pub fn normalise_service(service: &mut Map<String, Value>) -> Result<(), String> {
    for key in KEY_VALUE_LISTS {
        if let Some(Value::Array(items)) = service.get(*key) {
            let mut map = Map::new();
            for item in items {
                let text = scalar_text(item)
                    .ok_or_else(|| format!("{key}: an entry is not a string: {item}"))?;
                match text.split_once('=') {
                    Some((k, v)) => map.insert(k.to_owned(), Value::String(v.to_owned())),
                    None => map.insert(text, Value::Null),
                };
            }
            service.insert((*key).to_owned(), Value::Object(map));
        }
    }
    if let Some(Value::Array(items)) = service.get("extra_hosts") {
        let mut map = Map::new();
        for item in items {
            let text = scalar_text(item)
                .ok_or_else(|| format!("extra_hosts: an entry is not a string: {item}"))?;
            // HOST=IP, or HOST:IP where the IP may itself hold colons (IPv6).
            let (host, ip) = text
                .split_once('=')
                .or_else(|| text.split_once(':'))
                .ok_or_else(|| format!("extra_hosts: {text:?} is not HOST:IP or HOST=IP"))?;
            map.insert(host.to_owned(), Value::String(ip.to_owned()));
        }
        service.insert("extra_hosts".to_owned(), Value::Object(map));
    }
    for key in ["depends_on", "networks"] {
        if let Some(Value::Array(items)) = service.get(key) {
            let mut map = Map::new();
            for item in items {
                let name = item
                    .as_str()
                    .ok_or_else(|| format!("{key}: an entry is not a name: {item}"))?;
                let value = match key {
                    "depends_on" => serde_json::json!({"condition": "service_started"}),
                    _ => Value::Null,
                };
                map.insert(name.to_owned(), value);
            }
            service.insert(key.to_owned(), Value::Object(map));
        }
    }
    for key in ["dns", "env_file", "tmpfs"] {
        if let Some(text) = service.get(key).and_then(Value::as_str) {
            let one = Value::Array(vec![Value::String(text.to_owned())]);
            service.insert(key.to_owned(), one);
        }
    }
    Ok(())
}

/// `value` as text when it is a scalar compose would read as text.
pub fn scalar_text(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// Merges `over` into `base`; `path` is where `base` sits in the model.
pub fn merge(base: &mut Value, over: Value, path: &[&str]) {
    match (base, over) {
        (Value::Object(base), Value::Object(over)) => {
            for (key, value) in over {
                let mut child: Vec<&str> = path.to_vec();
                child.push(&key);
                match base.get_mut(&key) {
                    Some(existing) => merge(existing, value, &child),
                    None => {
                        base.insert(key, value);
                    }
                }
            }
        }
        (Value::Array(base), Value::Array(over)) => merge_list(base, over, path),
        (base, over) => *base = over,
    }
}

fn merge_list(base: &mut Vec<Value>, over: Vec<Value>, path: &[&str]) {
    let in_service = path.len() == 3 && path[0] == "services";
    let key = path.last().copied().unwrap_or_default();
    let replaced = (in_service && matches!(key, "command" | "entrypoint"))
        || (path.len() == 4 && path[0] == "services" && path[2] == "healthcheck" && key == "test");
    if replaced {
        *base = over;
        return;
    }
    let identity: fn(&Value) -> Value = match (in_service, key) {
        (true, "volumes") => mount_target,
        (true, "devices") => device_target,
        _ => Value::clone,
    };
    for item in over {
        let id = identity(&item);
        match base.iter().position(|b| identity(b) == id) {
            Some(i) => base[i] = item,
            None => base.push(item),
        }
    }
}

/// A service volume's target: `SRC:TARGET[:MODE]`, `TARGET`, or the long form.
fn mount_target(v: &Value) -> Value {
    match v {
        Value::String(s) => {
            let parts: Vec<&str> = s.split(':').collect();
            let target = if parts.len() == 1 { parts[0] } else { parts[1] };
            Value::String(target.to_owned())
        }
        Value::Object(o) => o.get("target").cloned().unwrap_or(Value::Null),
        other => other.clone(),
    }
}

fn device_target(v: &Value) -> Value {
    match v {
        Value::String(s) => {
            let parts: Vec<&str> = s.split(':').collect();
            Value::String(parts.get(1).unwrap_or(&parts[0]).to_string())
        }
        Value::Object(o) => o
            .get("target")
            .or_else(|| o.get("source"))
            .cloned()
            .unwrap_or(Value::Null),
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn merged(files: Vec<Value>) -> Value {
        let mut model = json!({});
        for mut file in files {
            if let Some(services) = file.get_mut("services").and_then(Value::as_object_mut) {
                for service in services.values_mut() {
                    normalise_service(service.as_object_mut().unwrap()).unwrap();
                }
            }
            merge(&mut model, file, &[]);
        }
        model
    }

    #[test]
    fn later_files_win_key_by_key_and_lists_merge_by_identity() {
        let base = json!({"services": {"web": {
            "image": "web:1", "command": ["serve", "--debug"],
            "environment": ["A=1", "B=2", "C"], "labels": {"team": "x"},
            "ports": ["8080:80", "9090:90"], "volumes": ["data:/data", "/etc/a:/etc/a:ro"],
            "cap_add": ["NET_ADMIN"], "dns": "1.1.1.1", "depends_on": ["db"],
            "healthcheck": {"test": ["CMD", "true"], "interval": "5s"},
            "extra_hosts": ["gw:10.0.0.1"]
        }}});
        let over = json!({"services": {"web": {
            "image": "web:2", "command": "serve",
            "environment": {"B": "3", "D": "4"}, "labels": ["owner=y"],
            "ports": ["8080:80", "443:443"], "volumes": ["other:/data"],
            "cap_add": ["NET_ADMIN", "SYS_TIME"], "dns": ["8.8.8.8"],
            "depends_on": {"cache": {"condition": "service_healthy"}},
            "healthcheck": {"test": ["CMD-SHELL", "curl -f localhost"]},
            "extra_hosts": {"gw": "10.0.0.2"}
        }}});
        let m = merged(vec![base, over]);
        assert_eq!(
            m["services"]["web"],
            json!({
                "image": "web:2", "command": "serve",
                "environment": {"A": "1", "B": "3", "C": null, "D": "4"},
                "labels": {"team": "x", "owner": "y"},
                "ports": ["8080:80", "9090:90", "443:443"],
                "volumes": ["other:/data", "/etc/a:/etc/a:ro"],
                "cap_add": ["NET_ADMIN", "SYS_TIME"], "dns": ["1.1.1.1", "8.8.8.8"],
                "depends_on": {"db": {"condition": "service_started"},
                               "cache": {"condition": "service_healthy"}},
                "healthcheck": {"test": ["CMD-SHELL", "curl -f localhost"], "interval": "5s"},
                "extra_hosts": {"gw": "10.0.0.2"}
            })
        );
    }

    #[test]
    fn entrypoints_are_replaced_and_new_services_added() {
        let m = merged(vec![
            json!({"services": {"a": {"image": "a", "entrypoint": ["/x", "-v"]}}}),
            json!({"services": {"a": {"entrypoint": ["/y"]}, "b": {"image": "b"}}}),
        ]);
        assert_eq!(m["services"]["a"]["entrypoint"], json!(["/y"]));
        assert_eq!(m["services"]["b"], json!({"image": "b"}));
    }

    #[test]
    fn extra_hosts_keep_ipv6_addresses_whole() {
        let mut s = json!({"extra_hosts": ["v6:fe80::1", "v4=10.0.0.1"]});
        normalise_service(s.as_object_mut().unwrap()).unwrap();
        assert_eq!(s["extra_hosts"], json!({"v6": "fe80::1", "v4": "10.0.0.1"}));
    }
}
