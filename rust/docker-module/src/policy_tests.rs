use serde_json::json;

use super::*;

const DIGEST: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
const SOCKET: &str = "/var/run/docker.sock";

/// A docker-stack release with one container `web` carrying `fields`.
fn stack(fields: serde_json::Value) -> Release {
    let mut web = json!({"image": format!("reg.example.com/web@{DIGEST}"), "network_mode": "none"});
    for (k, v) in fields.as_object().unwrap() {
        web[k] = v.clone();
    }
    docker_spec::parse(
        &json!({"docker-stack": {"format": 1, "stack": "web", "containers": {"web": web}}}),
    )
    .unwrap()
}

fn legacy(run_args: &str) -> Release {
    docker_spec::parse(
        &json!({"containers": [format!("reg.example.com/web@{DIGEST}")], "run_args": run_args}),
    )
    .unwrap()
}

fn policy(rules: serde_json::Value) -> Policy {
    parse(&rules).unwrap()
}

fn verdict(release: &Release, p: &Policy) -> Result<(), String> {
    check(release, p, SOCKET, &Host::default()).map_err(|r| r.to_string())
}

/// Everything an artifact can ask of the host, in both formats.
fn everything() -> Vec<Release> {
    vec![
        stack(json!({
            "privileged": true, "cap_add": ["ALL", "SYS_ADMIN"], "devices": ["/dev/mem", "/dev/sda:/dev/xvda"],
            "binds": ["/:/host", "/var/run/docker.sock:/var/run/docker.sock"], "network_mode": "host"
        })),
        legacy("--privileged --cap-add ALL --device /dev/mem -v /:/host -v /run/docker.sock:/s --network host"),
    ]
}

#[test]
fn the_default_policy_allows_what_the_old_module_ran() {
    assert_eq!(parse(&json!({})).unwrap(), Policy::default());
    for r in everything() {
        assert_eq!(verdict(&r, &Policy::default()), Ok(()));
    }
}

#[test]
fn privileged_mode() {
    let deny = policy(json!({"allow_privileged": false}));
    let e = verdict(&stack(json!({"privileged": true})), &deny).unwrap_err();
    assert_eq!(
        e,
        "artifact meta-data at docker-stack.containers.web.privileged asks for privileged mode, which this device's policy refuses: policy.allow_privileged is false"
    );
    let e = verdict(&legacy("--privileged"), &deny).unwrap_err();
    assert!(
        e.starts_with("artifact meta-data at run_args (--privileged) asks for privileged mode"),
        "{e}"
    );
    assert_eq!(verdict(&stack(json!({"privileged": false})), &deny), Ok(()));
    assert_eq!(
        verdict(
            &stack(json!({"privileged": true})),
            &policy(json!({"allow_privileged": true}))
        ),
        Ok(())
    );
}

#[test]
fn capabilities_are_compared_as_docker_spells_them_and_all_must_be_listed() {
    let p = policy(json!({"allowed_capabilities": ["NET_ADMIN", "cap_sys_time"]}));
    for ok in [
        json!(["NET_ADMIN"]),
        json!(["net_admin", "CAP_SYS_TIME"]),
        json!([]),
    ] {
        assert_eq!(verdict(&stack(json!({"cap_add": ok})), &p), Ok(()), "{ok}");
    }
    let e = verdict(&stack(json!({"cap_add": ["NET_ADMIN", "ALL"]})), &p).unwrap_err();
    assert!(
        e.contains("at docker-stack.containers.web.cap_add[1] asks for capability ALL")
            && e.ends_with("policy.allowed_capabilities does not list it"),
        "{e}"
    );
    let e = verdict(&legacy("--cap-add SYS_ADMIN"), &p).unwrap_err();
    assert!(
        e.contains("run_args (--cap-add) asks for capability SYS_ADMIN"),
        "{e}"
    );
    // Dropping is never restricted; ALL is allowed when listed.
    assert_eq!(verdict(&stack(json!({"cap_drop": ["ALL"]})), &p), Ok(()));
    let all = policy(json!({"allowed_capabilities": ["ALL"]}));
    assert_eq!(verdict(&stack(json!({"cap_add": ["ALL"]})), &all), Ok(()));
    let none = policy(json!({"allowed_capabilities": []}));
    assert!(verdict(&stack(json!({"cap_add": ["CHOWN"]})), &none).is_err());
}

#[test]
fn devices_are_judged_by_their_host_path_with_or_without_a_container_path() {
    let p = policy(json!({"allowed_devices": ["/dev/ttyUSB0", "/dev/serial/"]}));
    for ok in [
        "/dev/ttyUSB0",
        "/dev/ttyUSB0:/dev/ttyS0",
        "/dev/ttyUSB0:r",
        "/dev/serial/by-id/usb-1:/dev/gps:rw",
        "/dev//ttyUSB0",
    ] {
        assert_eq!(
            verdict(&stack(json!({"devices": [ok]})), &p),
            Ok(()),
            "{ok}"
        );
    }
    for bad in [
        "/dev/mem",
        "/dev/ttyS0:/dev/ttyUSB0",
        "/dev/serialx",
        "/dev/ttyUSB01",
    ] {
        let e = verdict(&stack(json!({"devices": [bad]})), &p).unwrap_err();
        assert!(
            e.contains("docker-stack.containers.web.devices[0] asks for host device"),
            "{bad}: {e}"
        );
        assert!(
            e.ends_with("policy.allowed_devices does not list it"),
            "{e}"
        );
    }
    let e = verdict(&legacy("--device /dev/mem:/dev/x"), &p).unwrap_err();
    assert!(
        e.contains("run_args (--device) asks for host device /dev/mem"),
        "{e}"
    );
    // A symlink on the device is judged at its target too.
    let r = stack(json!({"devices": ["/dev/serial/by-id/x"]}));
    let host = Host {
        resolved: [("/dev/serial/by-id/x".to_owned(), "/dev/mem".to_owned())].into(),
        ..Host::default()
    };
    let e = check(&r, &p, SOCKET, &host).unwrap_err().to_string();
    assert!(e.contains("host device /dev/mem"), "{e}");
}

#[test]
fn binds_must_lie_below_an_allowed_prefix_after_normalisation() {
    let p = policy(
        json!({"allowed_bind_prefixes": ["/data/apps/", "/var/log/x/../apps", "/srv/./a//b"]}),
    );
    assert_eq!(
        p.allowed_bind_prefixes.as_deref(),
        Some(
            &[
                "/data/apps".to_owned(),
                "/var/log/apps".to_owned(),
                "/srv/a/b".to_owned()
            ][..]
        )
    );
    for ok in [
        "/data/apps:/a",
        "/data/apps/web/config:/etc/app:ro",
        "/var/log/apps/web:/log",
        "/srv/a/b/:/b",
        "/data//apps/./x:/x",
    ] {
        assert_eq!(verdict(&stack(json!({"binds": [ok]})), &p), Ok(()), "{ok}");
    }
    for bad in [
        "/:/host",
        "/data:/d",
        "/data/apps2:/x",
        "/etc:/etc",
        "/var/log:/l",
    ] {
        let e = verdict(&stack(json!({"binds": [bad]})), &p).unwrap_err();
        assert!(
            e.contains("docker-stack.containers.web.binds[0] asks for a bind of host path"),
            "{bad}: {e}"
        );
        assert!(
            e.ends_with("it is not below any of policy.allowed_bind_prefixes"),
            "{e}"
        );
    }
    let e = verdict(&legacy("-v /data/apps:/a -v /etc:/e:ro"), &p).unwrap_err();
    assert!(
        e.contains("run_args (--volume) asks for a bind of host path /etc"),
        "{e}"
    );
    // Named volumes are not binds.
    assert_eq!(
        verdict(&stack(json!({"volumes": ["cache:/cache"]})), &p),
        Ok(())
    );
    // A symlink below an allowed prefix that points elsewhere is refused.
    let r = stack(json!({"binds": ["/data/apps/link:/x"]}));
    let host = Host {
        resolved: [("/data/apps/link".to_owned(), "/etc".to_owned())].into(),
        ..Host::default()
    };
    let e = check(&r, &p, SOCKET, &host).unwrap_err().to_string();
    assert!(e.contains("a bind of host path /etc"), "{e}");
}

#[test]
fn the_engine_socket_is_refused_under_every_spelling_and_through_its_directories() {
    let p = policy(json!({"allow_engine_socket": false}));
    for bad in [
        "/var/run/docker.sock:/s",
        "/run/docker.sock:/s",
        "/var/run:/r",
        "/run:/r",
        "/var:/v",
        "/:/host",
        "/var/run/./docker.sock:/s",
    ] {
        let e = verdict(&stack(json!({"binds": [bad]})), &p).unwrap_err();
        assert!(e.contains("that exposes the engine's socket"), "{bad}: {e}");
        assert!(e.ends_with("policy.allow_engine_socket is false"), "{e}");
    }
    for ok in ["/var/run/other.sock:/s", "/run/user:/u", "/data:/d"] {
        assert_eq!(verdict(&stack(json!({"binds": [ok]})), &p), Ok(()), "{ok}");
    }
    // Also when the prefixes would allow it, and for another socket path.
    let both = policy(json!({"allow_engine_socket": false, "allowed_bind_prefixes": ["/"]}));
    assert!(verdict(&stack(json!({"binds": ["/:/host"]})), &both).is_err());
    let r = stack(json!({"binds": ["/srv/engine/api.sock:/s"]}));
    assert!(check(&r, &p, "/srv/engine/api.sock", &Host::default()).is_err());
    let e = verdict(&legacy("-v /run/docker.sock:/s"), &p).unwrap_err();
    assert!(e.contains("run_args (--volume)"), "{e}");
}

#[test]
fn host_network_directly_or_through_another_container() {
    let p = policy(json!({"allow_host_network": false}));
    let e = verdict(&stack(json!({"network_mode": "host"})), &p).unwrap_err();
    assert_eq!(
        e,
        "artifact meta-data at docker-stack.containers.web.network_mode asks for the host's network, which this device's policy refuses: policy.allow_host_network is false"
    );
    assert!(verdict(&legacy("--network host"), &p)
        .unwrap_err()
        .contains("run_args (--network)"));
    assert!(verdict(&legacy("--net=host"), &p).is_err());
    let host = Host {
        host_network_containers: ["monitor".to_owned()].into(),
        ..Host::default()
    };
    let joined = stack(json!({"network_mode": "container:monitor"}));
    let e = check(&joined, &p, SOCKET, &host).unwrap_err().to_string();
    assert!(
        e.contains("the network of a container that uses the host's network"),
        "{e}"
    );
    for ok in ["none", "bridge", "backend", "container:other"] {
        let r = stack(json!({"network_mode": ok}));
        assert_eq!(
            check(&r, &p, SOCKET, &host).map_err(|r| r.to_string()),
            Ok(()),
            "{ok}"
        );
    }
}

#[test]
fn a_tightened_policy_refuses_everything_the_issue_lists() {
    let tight = policy(json!({
        "allow_privileged": false, "allowed_capabilities": [], "allowed_devices": [],
        "allowed_bind_prefixes": ["/data"], "allow_engine_socket": false, "allow_host_network": false
    }));
    for r in everything() {
        assert!(verdict(&r, &tight).is_err());
    }
    let fields = [
        json!({"privileged": true}),
        json!({"cap_add": ["ALL"]}),
        json!({"devices": ["/dev/mem"]}),
        json!({"binds": ["/:/host"]}),
        json!({"binds": ["/var/run/docker.sock:/s"]}),
        json!({"network_mode": "host"}),
    ];
    for f in fields {
        assert!(verdict(&stack(f.clone()), &tight).is_err(), "{f}");
    }
    assert_eq!(
        verdict(&stack(json!({"binds": ["/data/x:/x"]})), &tight),
        Ok(())
    );
}

#[test]
fn paths_normalise_or_are_refused() {
    assert_eq!(normalise("/a/./b//c/../d/").as_deref(), Some("/a/b/d"));
    assert_eq!(normalise("/").as_deref(), Some("/"));
    assert_eq!(normalise("/a/..").as_deref(), Some("/"));
    assert_eq!(normalise("/.."), None);
    assert_eq!(normalise("/a/../../b"), None);
    assert_eq!(normalise("relative/path"), None);
    assert_eq!(normalise("/a\0b"), None);
    assert!(under("/data/x", "/data") && under("/data", "/data") && under("/x", "/"));
    assert!(!under("/database", "/data"));
}

#[test]
fn a_bad_policy_names_the_key_and_never_the_value() {
    for (rules, want) in [
        (json!("strict"), "policy: must be an object"),
        (
            json!({"allow_privileged": "no-SECRET"}),
            "policy.allow_privileged: must be true or false",
        ),
        (
            json!({"allowed_capabilities": "SECRET"}),
            "policy.allowed_capabilities: must be a list",
        ),
        (
            json!({"allowed_capabilities": ["NET ADMIN SECRET"]}),
            "policy.allowed_capabilities[0]: must be a capability name",
        ),
        (
            json!({"allowed_devices": [7]}),
            "policy.allowed_devices[0]: must be a string",
        ),
        (
            json!({"allowed_bind_prefixes": ["SECRET/relative"]}),
            "policy.allowed_bind_prefixes[0]: must be an absolute path",
        ),
        (
            json!({"allowed_bind_prefixes": ["/../SECRET"]}),
            "policy.allowed_bind_prefixes[0]: must be an absolute path that stays below /",
        ),
        (
            json!({"allow_everything": true}),
            "policy.allow_everything: unknown rule; the rules are allow_privileged,",
        ),
    ] {
        let e = parse(&rules).unwrap_err();
        assert!(e.starts_with(want), "{e}");
        assert!(!e.contains("SECRET"), "{e}");
    }
}

#[test]
fn symlinked_host_paths_are_resolved_on_the_device() {
    let dir = std::env::temp_dir().join(format!("dm-policy-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("real")).unwrap();
    std::os::unix::fs::symlink("/etc", dir.join("link")).unwrap();
    let d = dir.to_str().unwrap();
    let r = stack(
        json!({"binds": [format!("{d}/link/x:/x"), format!("{d}/real/y:/y"), format!("{d}/real:/z")]}),
    );
    let resolved = resolve_host_paths(&r);
    assert_eq!(
        resolved.get(&format!("{d}/link/x")).map(String::as_str),
        Some("/etc/x")
    );
    assert!(
        !resolved.contains_key(&format!("{d}/real/y")),
        "{resolved:?}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
