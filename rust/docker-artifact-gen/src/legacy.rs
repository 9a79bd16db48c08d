//! A legacy release (IMAGEs and `--run-args`) written as docker-stack
//! meta-data, for `--inline`: the legacy format has no place for inline
//! images. The containers are those the device derives from the legacy
//! meta-data (names, TTY, every flag), checked by parsing the result back.

use docker_spec::{ContainerSpec, Release, RestartPolicy};
use serde_json::{json, Map, Value};

/// What the legacy meta-data could say and docker-stack cannot.
fn unexpressible(what: &str) -> String {
    format!(
        "--run-args {what}, which the docker-stack meta-data that --inline writes cannot express; \
         change it or write a docker-stack file (--spec)"
    )
}

/// `{"docker-stack": {"format": 1, "stack": …, "containers": {NAME: …}}}`
/// with the containers of `release` (a parsed legacy release), their start
/// order in `start_order`.
pub fn to_stack(release: &Release, stack: &str) -> Result<Value, String> {
    let mut containers = Map::new();
    for c in &release.containers {
        containers.insert(c.name.clone(), container(c)?);
    }
    let mut doc = json!({"format": 1, "stack": stack, "containers": containers});
    if release.containers.len() > 1 {
        let order: Vec<&str> = release.containers.iter().map(|c| c.name.as_str()).collect();
        doc["start_order"] = json!(order);
    }
    let mut purged: Vec<&str> = release
        .containers
        .iter()
        .flat_map(|c| &c.volumes)
        .filter(|v| v.purge_on_deploy)
        .map(|v| v.name.as_str())
        .collect();
    purged.sort_unstable();
    purged.dedup();
    if !purged.is_empty() {
        doc["purge_on_deploy"] = json!(purged);
    }
    let doc = json!({ "docker-stack": doc });
    // The device must see exactly the containers the legacy meta-data describes.
    let back = docker_spec::parse(&doc).map_err(|e| unexpressible(&format!("gives {e}")))?;
    if back.containers != release.containers {
        return Err(unexpressible("has a setting"));
    }
    Ok(doc)
}

fn whole_seconds(flag: &str, d: Option<std::time::Duration>) -> Result<Option<u64>, String> {
    match d {
        Some(d) if d.subsec_nanos() != 0 => Err(unexpressible(&format!(
            "sets {flag} to {d:?}, not whole seconds"
        ))),
        d => Ok(d.map(|d| d.as_secs())),
    }
}

fn container(c: &ContainerSpec) -> Result<Value, String> {
    let mut m = Map::new();
    let mut put = |k: &str, v: Value| {
        m.insert(k.to_owned(), v);
    };
    let image = match &c.image.tag {
        Some(tag) => format!("{}:{tag}@{}", c.image.repository, c.image.digest),
        None => format!("{}@{}", c.image.repository, c.image.digest),
    };
    put("image", json!(image));
    if let Some(size) = c.size {
        put("size", json!(size));
    }
    if let Some(command) = &c.command {
        put("command", json!(command));
    }
    if let Some(entrypoint) = &c.entrypoint {
        put("entrypoint", json!(entrypoint));
    }
    if !c.env.is_empty() {
        put("env", json!(c.env));
    }
    if !c.binds.is_empty() {
        let binds: Vec<String> = c.binds.iter().map(|b| b.to_engine()).collect();
        put("binds", json!(binds));
    }
    if !c.volumes.is_empty() {
        let volumes: Vec<String> = c
            .volumes
            .iter()
            .map(|v| {
                let ro = if v.read_only { ":ro" } else { "" };
                format!("{}:{}{ro}", v.name, v.target)
            })
            .collect();
        put("volumes", json!(volumes));
    }
    if !c.tmpfs.is_empty() {
        put("tmpfs", json!(c.tmpfs));
    }
    if !c.ports.is_empty() {
        let ports: Vec<String> = c
            .ports
            .iter()
            .map(|p| {
                let host = match (&p.host_ip, p.host_port) {
                    (Some(ip), Some(port)) if ip.contains(':') => format!("[{ip}]:{port}:"),
                    (Some(ip), Some(port)) => format!("{ip}:{port}:"),
                    (_, Some(port)) => format!("{port}:"),
                    (_, None) => String::new(),
                };
                format!("{host}{}/{}", p.container_port, p.protocol)
            })
            .collect();
        put("ports", json!(ports));
    }
    if let Some(mode) = &c.network_mode {
        put("network_mode", json!(mode));
    }
    let restart = match c.restart {
        RestartPolicy::No => None,
        RestartPolicy::Always => Some("always".to_owned()),
        RestartPolicy::UnlessStopped => Some("unless-stopped".to_owned()),
        RestartPolicy::OnFailure(None) => Some("on-failure".to_owned()),
        RestartPolicy::OnFailure(Some(n)) => Some(format!("on-failure:{n}")),
    };
    if let Some(restart) = restart {
        put("restart", json!(restart));
    }
    for (key, on) in [
        ("privileged", c.privileged),
        ("read_only", c.read_only),
        ("tty", c.tty),
        ("stdin_open", c.open_stdin),
    ] {
        if on {
            put(key, json!(true));
        }
    }
    if !c.cap_add.is_empty() {
        put("cap_add", json!(c.cap_add));
    }
    if !c.cap_drop.is_empty() {
        put("cap_drop", json!(c.cap_drop));
    }
    if !c.devices.is_empty() {
        let devices: Vec<String> = c
            .devices
            .iter()
            .map(|d| format!("{}:{}:{}", d.host, d.container, d.permissions))
            .collect();
        put("devices", json!(devices));
    }
    if !c.labels.is_empty() {
        put("labels", json!(c.labels));
    }
    if let Some(h) = &c.healthcheck {
        if h.test.is_empty() {
            return Err(unexpressible(
                "tunes the image's healthcheck without --health-cmd",
            ));
        }
        let mut o = json!({"test": h.test});
        for (key, flag, d) in [
            ("interval_seconds", "--health-interval", h.interval),
            ("timeout_seconds", "--health-timeout", h.timeout),
            (
                "start_period_seconds",
                "--health-start-period",
                h.start_period,
            ),
        ] {
            if let Some(s) = whole_seconds(flag, d)? {
                o[key] = json!(s);
            }
        }
        if let Some(r) = h.retries {
            o["retries"] = json!(r);
        }
        put("healthcheck", o);
    }
    if let Some(user) = &c.user {
        put("user", json!(user));
    }
    if let Some(workdir) = &c.workdir {
        put("workdir", json!(workdir));
    }
    if let Some(hostname) = &c.hostname {
        put("hostname", json!(hostname));
    }
    if let Some(log) = &c.log {
        if log.driver.is_empty() {
            return Err(unexpressible("has --log-opt without --log-driver"));
        }
        let mut o = json!({"driver": log.driver});
        if !log.options.is_empty() {
            o["options"] = json!(log.options);
        }
        put("log", o);
    }
    if let Some(bytes) = c.memory_bytes {
        put("memory_bytes", json!(bytes));
    }
    if let Some(nano) = c.nano_cpus {
        put("cpus", json!(nano as f64 / 1e9));
    }
    Ok(Value::Object(m))
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:1111111111111111111111111111111111111111111111111111111111111111";

    fn legacy(images: &[&str], run_args: &str) -> Release {
        docker_spec::parse(&json!({"containers": images, "run_args": run_args})).unwrap()
    }

    #[test]
    fn every_run_arg_survives_the_conversion() {
        let run_args = "--network host -e MODE=prod -e 'GREETING=hello world' \
            -v /data/app:/etc/app:ro -v cache:/cache:ro -p 8080:80 -p 127.0.0.1:53:53/udp \
            -p '[::1]:8443:443' -p 9000 --restart on-failure:3 --privileged -l team=web \
            -u 1000:1000 -w /srv --device /dev/ttyUSB0 --device /dev/a:/dev/b:r --cap-add NET_ADMIN \
            --cap-drop ALL --entrypoint /bin/sh -h box -i --health-cmd 'true' --health-interval 30s \
            --health-timeout 1m --health-retries 3 --health-start-period 5s --read-only \
            --tmpfs /run:size=8m --tmpfs /tmp --log-driver json-file --log-opt max-size=1m \
            -m 512m --cpus 1.5";
        let release = legacy(&[&format!("reg.example.com/app:1.0@{D}")], run_args);
        let doc = to_stack(&release, "web").unwrap();
        let back = docker_spec::parse(&doc).unwrap();
        assert_eq!(back.stack, "web");
        assert_eq!(back.containers, release.containers);
        let c = &doc["docker-stack"]["containers"]["app"];
        assert_eq!(c["volumes"], json!(["cache:/cache:ro"]));
        assert_eq!(c["image"], format!("reg.example.com/app:1.0@{D}"));
        assert_eq!(c["tty"], true, "the old module's docker run -dt");
        assert_eq!(c["cpus"], 1.5);
    }

    #[test]
    fn derived_names_and_defaults_are_kept() {
        let release = legacy(
            &[
                &format!("a/web@{D}"),
                &format!("b/web@{D}"),
                &format!("tools/sidecar@{D}"),
            ],
            "",
        );
        let doc = to_stack(&release, "docker").unwrap();
        assert_eq!(
            doc["docker-stack"]["start_order"],
            json!(["web", "web-2", "sidecar"])
        );
        assert_eq!(
            doc["docker-stack"]["containers"]["sidecar"],
            json!({"image": format!("tools/sidecar@{D}"), "tty": true})
        );
        let one = to_stack(&legacy(&[&format!("a/web@{D}")], ""), "docker").unwrap();
        assert_eq!(
            one["docker-stack"].get("start_order"),
            None,
            "one container: no order"
        );
    }

    #[test]
    fn what_docker_stack_cannot_say_is_refused_by_flag() {
        let image = format!("app@{D}");
        for (run_args, expect) in [
            (
                "--health-interval 500ms --health-cmd true",
                "--health-interval",
            ),
            ("--health-interval 10s", "without --health-cmd"),
            ("--log-opt max-size=1m", "--log-opt without --log-driver"),
            (
                "--health-cmd true --health-interval 0s",
                "at least 1 second",
            ),
        ] {
            let e = to_stack(&legacy(&[&image], run_args), "docker").unwrap_err();
            assert!(
                e.contains(expect) && e.contains("--spec"),
                "{run_args}: {e}"
            );
        }
    }
}
