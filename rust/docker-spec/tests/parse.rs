//! Both formats through the public entry point: what deploys, and every way an
//! artifact is refused, each with one line naming where and what.

use docker_spec::{
    parse, parse_str, Condition, Format, RestartPolicy, SpecError, StartOrder, Strategy,
    LEGACY_STACK,
};
use serde_json::{json, Value};

const D1: &str = "sha256:1111111111111111111111111111111111111111111111111111111111111111";
const D2: &str = "sha256:2222222222222222222222222222222222222222222222222222222222222222";

fn img(repo: &str, d: &str) -> String {
    format!("{repo}@{d}")
}

/// A docker-stack document; `containers` is keyed by name. Several
/// containers without a `start_order` start along their `depends_on`.
fn stack(containers: Value) -> Value {
    json!({"docker-stack": {"format": 1, "stack": "web", "containers": containers}})
}

fn err(meta: Value) -> String {
    match parse(&meta) {
        Ok(r) => panic!("expected an error for {meta}, got {r:?}"),
        Err(e) => {
            let text = e.to_string();
            assert!(!text.contains('\n'), "one line: {text}");
            text
        }
    }
}

/// No list anywhere in the document holds an object or a list: mender-artifact
/// refuses such meta-data.
fn assert_mender_lists(v: &Value) {
    match v {
        Value::Array(items) => {
            for i in items {
                assert!(
                    !i.is_array() && !i.is_object(),
                    "a list holds {i}, which Mender meta-data does not allow"
                );
            }
        }
        Value::Object(map) => map.values().for_each(assert_mender_lists),
        _ => {}
    }
}

#[test]
fn a_full_stack_document_parses_into_the_release() {
    let meta = json!({"docker-stack": {
        "format": 1,
        "stack": "web",
        "strategy": "start-first",
        "health_timeout_seconds": 30,
        "registry": "fleet",
        "replaces": ["legacy-web", "/old-db"],
        "start_order": ["db", "web"],
        "purge_on_deploy": ["dbdata"],
        "containers": {
            "db": {"image": img("127.0.0.1:5000/stacks/db", D1), "size": 1000,
             "command": ["postgres", "-c", "fsync=on"], "entrypoint": ["/entry"],
             "env": {"A": "1", "B": "x=y"},
             "binds": ["/data/db:/var/lib/db:rw"],
             "volumes": ["dbdata:/data:rw", "shared:/shared:ro"],
             "tmpfs": {"/run": "size=8m"},
             "ports": ["5432:5432/tcp", "127.0.0.1:9187:9187"],
             "network_mode": "none", "restart": "on-failure:5", "privileged": false,
             "cap_add": ["NET_ADMIN"], "cap_drop": ["ALL"], "devices": ["/dev/ttyS0:/dev/ttyS0:rw"],
             "labels": {"com.example.team": "core"},
             "healthcheck": {"test": ["CMD-SHELL", "pg_isready"], "interval_seconds": 5,
                             "timeout_seconds": 2, "retries": 3, "start_period_seconds": 10},
             "user": "999:999", "workdir": "/srv", "hostname": "db", "tty": true,
             "stdin_open": true, "read_only": true,
             "log": {"driver": "json-file", "options": {"max-size": "1m"}},
             "memory_bytes": 67108864, "cpus": 1.5},
            "web": {"image": img("web", D2), "volumes": ["shared:/srv/shared"]}
        }
    }});
    assert_mender_lists(&meta);
    let r = parse(&meta).unwrap();
    assert_eq!(r.format, Format::Stack(1));
    assert_eq!(r.stack, "web");
    assert_eq!(r.strategy, Strategy::StartFirst);
    assert_eq!(r.health_timeout, Some(std::time::Duration::from_secs(30)));
    assert_eq!(r.registry.as_deref(), Some("fleet"));
    assert_eq!(r.replaces, ["legacy-web", "old-db"]);
    let db = &r.containers[0];
    assert_eq!(db.name, "db");
    assert_eq!(db.image.registry(), "127.0.0.1:5000");
    assert_eq!(db.size, Some(1000));
    assert_eq!(db.command.as_ref().unwrap().len(), 3);
    assert_eq!(db.env["B"], "x=y");
    assert_eq!(
        (db.volumes[0].name.as_str(), db.volumes[0].target.as_str()),
        ("dbdata", "/data")
    );
    assert!(!db.volumes[0].read_only && db.volumes[0].purge_on_deploy);
    assert!(db.volumes[1].read_only, ":ro mounts read-only");
    assert!(
        !db.volumes[1].purge_on_deploy,
        "only the volumes purge_on_deploy names are purged"
    );
    assert_eq!(db.ports[1].host_ip.as_deref(), Some("127.0.0.1"));
    assert_eq!(db.restart, RestartPolicy::OnFailure(Some(5)));
    assert_eq!(db.healthcheck.as_ref().unwrap().retries, Some(3));
    assert_eq!(db.nano_cpus, Some(1_500_000_000));
    assert!(db.tty && db.open_stdin && db.read_only);
    let web = &r.containers[1];
    assert_eq!(web.restart, RestartPolicy::No);
    assert!(!web.tty);
    assert!(!web.volumes[0].read_only && !web.volumes[0].purge_on_deploy);
    assert_eq!(
        r.containers.iter().map(|c| &c.name).collect::<Vec<_>>(),
        ["db", "web"]
    );
}

#[test]
fn start_order_decides_the_order_not_the_keys() {
    let mut meta = stack(json!({
        "alpha": {"image": img("a", D1)},
        "beta": {"image": img("b", D2)},
        "gamma": {"image": img("c", D1)}
    }));
    meta["docker-stack"]["start_order"] = json!(["gamma", "alpha", "beta"]);
    let r = parse(&meta).unwrap();
    assert_eq!(
        r.containers.iter().map(|c| &c.name).collect::<Vec<_>>(),
        ["gamma", "alpha", "beta"]
    );
}

#[test]
fn purge_on_deploy_marks_every_mount_of_the_volume() {
    let mut meta = stack(json!({
        "a1": {"image": img("a", D1), "volumes": ["shared:/s", "own:/o"]},
        "b1": {"image": img("b", D1), "volumes": ["shared:/t:ro"]}
    }));
    meta["docker-stack"]["start_order"] = json!(["a1", "b1"]);
    meta["docker-stack"]["purge_on_deploy"] = json!(["shared"]);
    let r = parse(&meta).unwrap();
    let purged: Vec<(&str, &str, bool)> = r
        .containers
        .iter()
        .flat_map(|c| {
            c.volumes
                .iter()
                .map(move |v| (c.name.as_str(), v.name.as_str(), v.purge_on_deploy))
        })
        .collect();
    assert_eq!(
        purged,
        [
            ("a1", "shared", true),
            ("a1", "own", false),
            ("b1", "shared", true)
        ]
    );
}

#[test]
fn a_minimal_stack_gets_the_defaults() {
    let r = parse(&stack(json!({"app": {"image": img("app", D1)}}))).unwrap();
    assert_eq!(r.strategy, Strategy::StopFirst);
    assert_eq!(r.health_timeout, None);
    assert_eq!(r.registry, None);
    assert!(r.replaces.is_empty());
    assert_eq!(r.containers.len(), 1, "one container needs no start_order");
    assert_eq!(r.containers[0].name, "app");
    assert!(r.inline.is_empty());
}

#[test]
fn legacy_artifacts_of_the_old_generator_deploy_as_the_docker_stack() {
    let meta = json!({"containers": [img("127.0.0.1:5000/stacks/web", D1), img("registry.example.com/tools/web", D2)],
                      "run_args": "--network host -e MODE=prod --restart always"});
    let r = parse(&meta).unwrap();
    assert_eq!(r.format, Format::Legacy);
    assert_eq!(r.stack, LEGACY_STACK);
    assert_eq!(r.strategy, Strategy::StopFirst);
    let names: Vec<&str> = r.containers.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(
        names,
        ["web", "web-2"],
        "names come from the repository, deduplicated"
    );
    for c in &r.containers {
        assert!(c.tty, "the old module ran docker run -dt");
        assert_eq!(c.network_mode.as_deref(), Some("host"));
        assert_eq!(c.env["MODE"], "prod");
        assert_eq!(c.restart, RestartPolicy::Always);
    }
}

#[test]
fn legacy_name_flag_names_a_single_container_and_run_args_may_be_absent() {
    let r = parse(&json!({"containers": [img("app", D1)], "run_args": "--name front"})).unwrap();
    assert_eq!(r.containers[0].name, "front");
    let r = parse(&json!({"containers": [img("app", D1)]})).unwrap();
    assert_eq!(r.containers[0].name, "app");
    let r = parse(&json!({"containers": [img("app", D1)], "run_args": null})).unwrap();
    assert_eq!(r.containers[0].name, "app");
    let r = parse(&json!({"containers": [img("a", D1)], "run_args": ""})).unwrap();
    assert_eq!(
        r.containers[0].name, "a-1",
        "one-letter repositories still give a valid name"
    );
}

#[test]
fn parse_str_reports_malformed_json() {
    let e = parse_str("{\"containers\": [").unwrap_err().to_string();
    assert!(e.contains("is not valid JSON"), "{e}");
    assert!(parse_str(&stack(json!({"ab": {"image": img("x", D1)}})).to_string()).is_ok());
}

#[test]
fn every_bad_input_names_where_and_what() {
    let good = || json!({"image": img("app", D1)});
    let with = |key: &str, value: Value| {
        let mut c = good();
        c[key] = value;
        stack(json!({"app": c}))
    };
    let top = |key: &str, value: Value| {
        let mut s = stack(json!({"app": good()}));
        s["docker-stack"][key] = value;
        s
    };
    // Two containers, "a1" and "b1", with the given start_order (null: none).
    let two = |order: Value| {
        let mut s = stack(json!({"a1": {"image": img("a", D1)}, "b1": {"image": img("b", D2)}}));
        if !order.is_null() {
            s["docker-stack"]["start_order"] = order;
        }
        s
    };
    let cases: Vec<(Value, &str)> = vec![
        (Value::Null, "is missing"),
        (json!([]), "is an array, not an object"),
        (json!({}), "is an empty object"),
        (json!({"image": "x"}), "has the keys image"),
        (
            json!({"docker-stack": []}),
            "at docker-stack: must be an object",
        ),
        (
            json!({"docker-stack": {"format": 1, "stack": "web", "containers": {"app": good()}}, "extra": 1}),
            "at extra: unknown key \"extra\"",
        ),
        (
            json!({"docker-stack": {"stack": "web", "containers": {"app": good()}}}),
            "docker-stack.format: is required",
        ),
        (top("format", json!(2)), "format 2 is not supported"),
        (
            top("format", json!("1")),
            "docker-stack.format: must be a whole number",
        ),
        (
            top("stack", json!("we b")),
            "stack name \"we b\" is not valid",
        ),
        (top("stack", json!("")), "stack name \"\" is not valid"),
        (
            top("strategy", json!("blue-green")),
            "docker-stack.strategy: \"blue-green\" is not a strategy",
        ),
        (
            top("health_timeout_seconds", json!(0)),
            "must be at least 1 second",
        ),
        (
            top("health_timeout_seconds", json!(-5)),
            "must be a whole number",
        ),
        (top("registry", json!("")), "docker-stack.registry"),
        (
            top("replaces", json!(["a b"])),
            "docker-stack.replaces[0]: container name",
        ),
        (
            top("replaces", json!(["old", "old"])),
            "docker-stack.replaces[1]: \"old\" is listed twice",
        ),
        (
            json!({"docker-stack": {"format": 1, "stack": "web"}}),
            "docker-stack.containers: is required: an object of containers keyed by name",
        ),
        (top("containers", json!({})), "lists no containers"),
        // The list form of containers (objects in a list) is not Mender meta-data.
        (
            top("containers", json!([])),
            "docker-stack.containers: must be an object keyed by container name",
        ),
        (
            top("containers", json!([{"name": "app", "image": img("app", D1)}])),
            "docker-stack.containers: must be an object keyed by container name",
        ),
        (
            top("containers", json!({"app": "x"})),
            "docker-stack.containers.app: must be an object, found a string",
        ),
        (
            top("contianers", json!({})),
            "docker-stack.contianers: unknown key \"contianers\"",
        ),
        (
            stack(json!({"app": {}})),
            "containers.app.image: is required",
        ),
        (
            with("name", json!("app")),
            "containers.app.name: unknown key \"name\"",
        ),
        (
            with("image", json!("app:1.0")),
            "containers.app.image: image \"app:1.0\" is not pinned by digest",
        ),
        (with("image", json!("app@sha256:1234")), "64 lower-case hex"),
        (with("image", json!("app@md5:1234")), "not sha256"),
        (
            with("image", json!(format!("App@{D1}"))),
            "repository component",
        ),
        (
            stack(json!({"a": good()})),
            "docker-stack.containers.a: container name \"a\" is not valid",
        ),
        (stack(json!({"web/1": good()})), "is not valid"),
        // start_order.
        (
            two(json!(["a1", "c1"])),
            "docker-stack.start_order[1]: \"c1\" is not one of the containers (a1, b1)",
        ),
        (
            two(json!(["a1", "b1", "a1"])),
            "docker-stack.start_order[2]: \"a1\" is listed twice",
        ),
        (
            two(json!(["b1"])),
            "docker-stack.start_order: does not list container \"a1\"",
        ),
        (
            two(json!([])),
            "docker-stack.start_order: does not list container \"a1\"",
        ),
        (
            two(json!("a1 b1")),
            "docker-stack.start_order: must be an array, found a string",
        ),
        (
            two(json!(["a1", ["b1"]])),
            "docker-stack.start_order[1]: must be a string, found an array",
        ),
        // "/app" is the engine's spelling of "app": one name, two containers.
        (
            {
                let mut s = stack(json!({"app": good(), "/app": good()}));
                s["docker-stack"]["start_order"] = json!(["app", "/app"]);
                s
            },
            "docker-stack.start_order[1]: \"/app\"",
        ),
        (
            top("start_order", json!(["app", "app"])),
            "docker-stack.start_order[1]: \"app\" is listed twice",
        ),
        (
            top("start_order", json!(["web"])),
            "docker-stack.start_order[0]: \"web\" is not one of the containers (app)",
        ),
        (
            with("imagee", json!("x")),
            "containers.app.imagee: unknown key \"imagee\"; the keys allowed here are",
        ),
        (
            with("size", json!(-1)),
            "containers.app.size: must be a whole number",
        ),
        (
            with("command", json!("sleep 1")),
            "containers.app.command: must be an array",
        ),
        (
            with("command", json!(["sleep", 1])),
            "containers.app.command[1]: must be a string, found a number",
        ),
        (
            with("env", json!({"A=B": "x"})),
            "environment variable name",
        ),
        (
            with("env", json!({"A": 1})),
            "containers.app.env.A: must be a string",
        ),
        (
            with("env", json!(["A=1"])),
            "containers.app.env: must be an object",
        ),
        (
            with("binds", json!(["data:/data"])),
            "named volumes go in \"volumes\"",
        ),
        (with("binds", json!(["/data:data"])), "absolute path"),
        (
            with("binds", json!(["/data:/data:bogus"])),
            "mount option \"bogus\"",
        ),
        // volumes: "NAME:/TARGET[:ro|rw]".
        (
            with("volumes", json!(["v:/x"])),
            "containers.app.volumes[0]: volume name \"v\" is not valid",
        ),
        (
            with("volumes", json!(["vol:x"])),
            "containers.app.volumes[0]: volume target \"x\" must be an absolute path",
        ),
        (
            with("volumes", json!(["vol:/x:purge"])),
            "containers.app.volumes[0]: volume \"vol:/x:purge\": option \"purge\" is not supported for named volumes (ro or rw)",
        ),
        (
            with("volumes", json!(["vol:/x:ro,z"])),
            "option \"ro,z\" is not supported",
        ),
        (
            with("volumes", json!(["vol"])),
            "containers.app.volumes[0]: volume \"vol\" is not NAME:/TARGET[:ro|rw]",
        ),
        (
            with("volumes", json!(["vol:/x:ro:rw"])),
            "volume \"vol:/x:ro:rw\" is not NAME:/TARGET[:ro|rw]",
        ),
        (
            with("volumes", json!(["/data:/x"])),
            "containers.app.volumes[0]: volume \"/data:/x\" names a host path; host paths go in \"binds\"",
        ),
        (
            with("volumes", json!([{"name": "vol", "target": "/x"}])),
            "containers.app.volumes[0]: must be a string, found an object",
        ),
        (
            with("volumes", json!(["vol:/x", "vol2:/x/"])),
            "two mounts target",
        ),
        // purge_on_deploy: volume names.
        (
            top("purge_on_deploy", json!(["cache"])),
            "docker-stack.purge_on_deploy[0]: volume \"cache\" is mounted by no container",
        ),
        (
            {
                let mut s = with("volumes", json!(["data:/data"]));
                s["docker-stack"]["purge_on_deploy"] = json!(["data", "cache"]);
                s
            },
            "docker-stack.purge_on_deploy[1]: volume \"cache\" is mounted by no container",
        ),
        (
            top("purge_on_deploy", json!(true)),
            "docker-stack.purge_on_deploy: must be an array, found a boolean",
        ),
        (
            with("ports", json!(["80000:80"])),
            "containers.app.ports[0]: port",
        ),
        (
            with("ports", json!(["8000-8010:80"])),
            "port ranges are not supported",
        ),
        (
            with("network_mode", json!("my net")),
            "containers.app.network_mode",
        ),
        (
            with("restart", json!("sometimes")),
            "containers.app.restart: restart policy",
        ),
        (
            with("privileged", json!("yes")),
            "containers.app.privileged: must be true or false",
        ),
        (
            with("cap_add", json!(["NET ADMIN"])),
            "containers.app.cap_add[0]: capability",
        ),
        (
            with("devices", json!(["ttyS0"])),
            "containers.app.devices[0]: device path",
        ),
        (
            with("labels", json!({"io.mender.composable.stack": "x"})),
            "reserves for its own bookkeeping",
        ),
        (
            with("healthcheck", json!({"interval_seconds": 5})),
            "containers.app.healthcheck.test: is required",
        ),
        (
            with("healthcheck", json!({"test": ["CURL", "x"]})),
            "containers.app.healthcheck.test",
        ),
        (
            with("healthcheck", json!({"test": ["CMD-SHELL", "a", "b"]})),
            "containers.app.healthcheck.test",
        ),
        (
            with(
                "healthcheck",
                json!({"test": ["NONE"], "interval_seconds": 0}),
            ),
            "must be at least 1 second",
        ),
        (
            with("healthcheck", json!({"test": ["NONE"], "intervall": 1})),
            "healthcheck.intervall: unknown key",
        ),
        (
            with("workdir", json!("srv")),
            "containers.app.workdir: workdir \"srv\" must be an absolute path",
        ),
        (
            with("log", json!({"options": {}})),
            "containers.app.log.driver: is required",
        ),
        (
            with("memory_bytes", json!(0)),
            "containers.app.memory_bytes: memory limit of 0 bytes is below the engine's minimum",
        ),
        (with("cpus", json!(-1)), "containers.app.cpus"),
        (
            with("network_mode", json!("container:app")),
            "containers.app.network_mode: joins the network of \"app\" from the same release",
        ),
        // Legacy.
        (json!({"containers": []}), "at containers: lists no images"),
        (
            json!({"containers": "app"}),
            "at containers: must be an array",
        ),
        (
            json!({"containers": [1]}),
            "at containers[0]: must be a string",
        ),
        (
            json!({"containers": ["nginx:latest"]}),
            "at containers[0]: image \"nginx:latest\" is not pinned by digest",
        ),
        (
            json!({"containers": [img("app", D1)], "run_args": 5}),
            "at run_args: must be a string",
        ),
        (
            json!({"containers": [img("app", D1)], "run_args": "--pid host"}),
            "at run_args: flag --pid is not supported",
        ),
        (
            json!({"containers": [img("app", D1)], "run_args": "--env-file x"}),
            "--env-file is not supported",
        ),
        (
            json!({"containers": [img("app", D1)], "runargs": ""}),
            "at runargs: unknown key",
        ),
        (
            json!({"containers": [img("app", D1), img("db", D2)], "run_args": "--name x1"}),
            "--name applies to every image",
        ),
        (
            json!({"containers": [img("app", D1)], "run_args": "-v /a:/x -v /b:/x"}),
            "two mounts target \"/x\"",
        ),
    ];
    for (meta, want) in cases {
        let e = err(meta.clone());
        assert!(
            e.contains(want),
            "for {meta}:\n  got:  {e}\n  want: …{want}…"
        );
    }
}

#[test]
fn errors_carry_their_path_for_programs() {
    let e = parse(&stack(json!({"app": {"image": "x"}}))).unwrap_err();
    assert_eq!(
        e.at().unwrap().as_str(),
        "docker-stack.containers.app.image"
    );
    assert!(matches!(
        parse(&json!(3)).unwrap_err(),
        SpecError::UnknownFormat { .. }
    ));
}

fn inline_stack(inline: Value) -> Value {
    json!({"docker-stack": {"format": 1, "stack": "web", "inline": inline,
    "start_order": ["web", "db"],
    "containers": {
        "web": {"image": img("demo/web:1.0", D1), "network_mode": "none"},
        "db": {"image": img("127.0.0.1:5000/db", D2), "network_mode": "none"}
    }}})
}

#[test]
fn inline_images_are_marked_and_asked_for_by_image_id() {
    let meta = inline_stack(json!({"images.tar": {"images": [D1], "size": 4096}}));
    assert_mender_lists(&meta);
    let r = parse(&meta).unwrap();
    assert_eq!(r.inline.len(), 1);
    assert_eq!(r.inline[0].payload, "images.tar");
    assert_eq!(r.inline[0].images, vec![D1.to_owned()]);
    assert_eq!(r.inline[0].size, Some(4096));
    assert_eq!(r.containers[0].name, "web");
    assert!(r.containers[0].image.inline);
    assert_eq!(
        r.containers[0].image.pinned(),
        D1,
        "the engine is asked for the ID"
    );
    assert_eq!(r.containers[0].image.to_string(), format!("demo/web@{D1}"));
    assert!(
        !r.containers[1].image.inline,
        "registry images stay registry images"
    );
    assert_eq!(r.containers[1].image.pinned(), img("127.0.0.1:5000/db", D2));
    assert!(r.inline_archive("images.tar").is_some());
    assert!(r.inline_archive("other.tar").is_none());
    // Two archives, one image each.
    let r = parse(&inline_stack(json!({
        "web.tar": {"images": [D1]},
        "db.tar": {"images": [D2], "size": 1}
    })))
    .unwrap();
    assert_eq!(r.inline.len(), 2);
    assert_eq!(r.inline_archive("web.tar").unwrap().images, [D1]);
    assert_eq!(r.inline_archive("db.tar").unwrap().size, Some(1));
    assert!(r.containers.iter().all(|c| c.image.inline));
    // An empty "inline" makes nothing inline.
    let r = parse(&inline_stack(json!({}))).unwrap();
    assert!(r.inline.is_empty() && r.containers.iter().all(|c| !c.image.inline));
}

#[test]
fn every_bad_inline_entry_names_where_and_what() {
    let d3 = "sha256:3333333333333333333333333333333333333333333333333333333333333333";
    let cases: Vec<(Value, &str)> = vec![
        // The list form (objects in a list) is not Mender meta-data.
        (json!([]), "docker-stack.inline: must be an object keyed by payload file name"),
        (json!([{"payload": "images.tar", "images": [D1]}]), "docker-stack.inline: must be an object keyed by payload file name"),
        (json!("images.tar"), "docker-stack.inline: must be an object, found a string"),
        (json!({"images.tar": [D1]}), "docker-stack.inline[\"images.tar\"]: must be an object, found an array"),
        (json!({"images.tar": {"payload": "images.tar", "images": [D1]}}), "docker-stack.inline[\"images.tar\"].payload: unknown key \"payload\""),
        (json!({"../x.tar": {"images": [D1]}}), "docker-stack.inline[\"../x.tar\"]: payload name \"../x.tar\" is not valid"),
        (json!({".hidden": {"images": [D1]}}), "not starting with ."),
        (json!({"a/b.tar": {"images": [D1]}}), "payload name \"a/b.tar\" is not valid"),
        (json!({"": {"images": [D1]}}), "payload name \"\" is not valid"),
        (json!({"a b.tar": {"images": [D1]}}), "payload name \"a b.tar\" is not valid"),
        (json!({"a.tar": {}}), "docker-stack.inline[\"a.tar\"].images: must list the image IDs"),
        (json!({"a.tar": {"images": []}}), "must list the image IDs"),
        (json!({"a.tar": {"images": ["sha256:ABC"]}}), "docker-stack.inline[\"a.tar\"].images[0]: \"sha256:ABC\" is not an image ID"),
        (json!({"a.tar": {"images": [D1.to_uppercase()]}}), "is not an image ID"),
        (json!({"a.tar": {"images": [D1, D1]}}), "images[1]: image sha256:1111111111111111111111111111111111111111111111111111111111111111 is listed twice"),
        (json!({"a.tar": {"images": [D1]}, "b.tar": {"images": [D1]}}), "docker-stack.inline[\"b.tar\"].images[0]: image sha256:1111"),
        (json!({"a.tar": {"images": [D1, d3]}}), "docker-stack.inline[\"a.tar\"].images: image sha256:3333333333333333333333333333333333333333333333333333333333333333 is used by no container"),
        (json!({"a.tar": {"images": [D1], "size": 0}}), "docker-stack.inline[\"a.tar\"].size: must be the archive's length in bytes, not 0"),
        (json!({"a.tar": {"images": [D1], "size": "1k"}}), "docker-stack.inline[\"a.tar\"].size"),
        (json!({"a.tar": {"images": [D1], "sha": "x"}}), "docker-stack.inline[\"a.tar\"].sha: unknown key"),
    ];
    for (inline, want) in cases {
        let got = err(inline_stack(inline.clone()));
        assert!(
            got.contains(want),
            "inline {inline}:\n got: {got}\nwant: {want}"
        );
    }
}

#[test]
fn a_delta_archive_lists_each_images_layers_on_the_device_and_inline() {
    let l1 = "sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    let l2 = "sha256:bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";
    let meta = inline_stack(json!({"images.tar": {"images": [D1], "size": 10,
        "layers": {D1: {"on_device": [l1], "inline": [l2]}}}}));
    assert_mender_lists(&meta);
    let r = parse(&meta).unwrap();
    let a = r.inline_archive("images.tar").unwrap();
    assert_eq!(
        a.layers,
        [docker_spec::ImageLayers {
            image: D1.to_owned(),
            on_device: vec![l1.to_owned()],
            inline: vec![l2.to_owned()],
        }]
    );
    assert_eq!(a.on_device(D1), [l1.to_owned()]);
    assert!(a.on_device(D2).is_empty());
    // A full archive needs nothing on the device.
    let r = parse(&inline_stack(json!({"images.tar": {"images": [D1]}}))).unwrap();
    assert!(r.inline[0].layers.is_empty() && r.inline[0].on_device(D1).is_empty());

    let cases: Vec<(Value, &str)> = vec![
        (json!({D2: {"on_device": [l1]}}), "layers[\"sha256:2222222222222222222222222222222222222222222222222222222222222222\"]: \"sha256:2222222222222222222222222222222222222222222222222222222222222222\" is not one of the archive's images"),
        (json!({D1: []}), "layers[\"sha256:1111111111111111111111111111111111111111111111111111111111111111\"]: must be an object, found an array"),
        (json!({D1: {}}), "lists no layer"),
        (json!({D1: {"on_device": ["sha256:x"]}}), ".on_device[0]: \"sha256:x\" is not a layer's diff ID"),
        (json!({D1: {"inline": [l1], "base": 1}}), ".base: unknown key"),
        (json!([l1]), "docker-stack.inline[\"a.tar\"].layers"),
    ];
    for (layers, want) in cases {
        let got = err(inline_stack(
            json!({"a.tar": {"images": [D1], "layers": layers.clone()}}),
        ));
        assert!(
            got.contains(want),
            "layers {layers}:\n got: {got}\nwant: {want}"
        );
    }
}

/// `a` depends on each name in `deps` with `service_started`; the others are
/// plain containers.
fn graph(deps: &[(&str, &[(&str, &str)])]) -> Value {
    let mut containers = serde_json::Map::new();
    for (name, on) in deps {
        let mut c = json!({"image": img("app", D1)});
        if !on.is_empty() {
            let map: serde_json::Map<String, Value> = on
                .iter()
                .map(|(d, cond)| ((*d).to_owned(), json!(cond)))
                .collect();
            c["depends_on"] = Value::Object(map);
        }
        containers.insert((*name).to_owned(), c);
    }
    stack(Value::Object(containers))
}

#[test]
fn without_start_order_containers_start_along_their_dependencies_level_by_level() {
    let r = parse(&graph(&[
        ("web", &[("api", "service_healthy")]),
        (
            "api",
            &[
                ("db", "service_healthy"),
                ("migrate", "service_completed_successfully"),
            ],
        ),
        ("migrate", &[("db", "service_started")]),
        ("db", &[]),
        ("cache", &[]),
        ("worker", &[("cache", "service_started")]),
    ]))
    .unwrap();
    assert_eq!(r.start, StartOrder::Graph);
    let names: Vec<&str> = r.containers.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["cache", "db", "migrate", "worker", "api", "web"]);
    let levels: Vec<Vec<&str>> = r
        .start_levels()
        .iter()
        .map(|l| l.iter().map(|&i| names[i]).collect())
        .collect();
    assert_eq!(
        levels,
        vec![
            vec!["cache", "db"],
            vec!["migrate", "worker"],
            vec!["api"],
            vec!["web"]
        ]
    );
    assert_eq!(r.level_of(4), 2);
    let api = r.container("api").unwrap();
    assert_eq!(api.depends_on["migrate"], Condition::CompletedSuccessfully);
    assert_eq!(api.depends_on["db"], Condition::Healthy);

    // Independent containers all start at once.
    let r = parse(&graph(&[("a1", &[]), ("b1", &[]), ("c1", &[])])).unwrap();
    assert_eq!(r.start_levels(), vec![vec![0, 1, 2]]);
    // A start_order keeps today's one-by-one start.
    let mut meta = graph(&[("a1", &[]), ("b1", &[])]);
    meta["docker-stack"]["start_order"] = json!(["b1", "a1"]);
    let r = parse(&meta).unwrap();
    assert_eq!(r.start, StartOrder::Sequence);
    assert_eq!(r.start_levels(), vec![vec![0], vec![1]]);
}

#[test]
fn every_bad_dependency_names_where_and_what() {
    let cases: Vec<(Value, &str)> = vec![
        (
            graph(&[("a1", &[("a1", "service_started")]), ("b1", &[])]),
            "docker-stack.containers.a1.depends_on.a1: a container cannot depend on itself",
        ),
        (
            graph(&[("a1", &[("zz", "service_started")]), ("b1", &[])]),
            "docker-stack.containers.a1.depends_on.zz: \"zz\" is not one of the containers (a1, b1)",
        ),
        (
            graph(&[("a1", &[("b1", "service_running")]), ("b1", &[])]),
            "docker-stack.containers.a1.depends_on.b1: \"service_running\" is not a dependency condition; use service_started, service_healthy or service_completed_successfully",
        ),
        (
            graph(&[
                ("a1", &[("b1", "service_started")]),
                ("b1", &[("c1", "service_healthy")]),
                ("c1", &[("a1", "service_started")]),
                ("d1", &[]),
            ]),
            "docker-stack.containers.a1.depends_on: the dependencies form a cycle (a1 -> b1 -> c1 -> a1), so nothing could start first; remove one of them",
        ),
        (
            {
                let mut m = graph(&[("a1", &[("b1", "service_started")]), ("b1", &[])]);
                m["docker-stack"]["start_order"] = json!(["b1", "a1"]);
                m
            },
            "docker-stack.containers.a1.depends_on: cannot be combined with start_order, which already fixes the start; drop start_order to start along depends_on",
        ),
        (
            graph(&[("a1", &[("b1", "service_started")])]),
            "docker-stack.containers.a1.depends_on.b1: \"b1\" is not one of the containers (a1)",
        ),
    ];
    for (meta, want) in cases {
        let got = err(meta.clone());
        assert_eq!(got, format!("artifact meta-data at {want}"), "for {meta}");
    }
}

/// Every key a container had before the compose keys, as one document.
fn every_older_container_key() -> Value {
    json!({"docker-stack": {"format": 1, "stack": "web", "start_order": ["db", "web"],
    "purge_on_deploy": ["dbdata"],
    "containers": {
     "db": {"image": img("127.0.0.1:5000/stacks/db:15", D1), "size": 1000,
       "command": ["postgres", "-c", "fsync=on"], "entrypoint": ["/entry"], "env": {"A": "1"},
       "binds": ["/data/db:/var/lib/db:rw"], "volumes": ["dbdata:/data:rw", "shared:/shared:ro"],
       "tmpfs": {"/run": "size=8m"}, "ports": ["5432:5432/tcp", "127.0.0.1:9187:9187"],
       "network_mode": "none", "restart": "on-failure:5", "privileged": true,
       "cap_add": ["NET_ADMIN"], "cap_drop": ["ALL"], "devices": ["/dev/ttyS0:/dev/ttyS0:rw"],
       "labels": {"com.example.team": "core"},
       "healthcheck": {"test": ["CMD-SHELL", "pg_isready"], "interval_seconds": 5,
                       "timeout_seconds": 2, "retries": 3, "start_period_seconds": 10},
       "user": "999:999", "workdir": "/srv", "hostname": "db", "tty": true, "stdin_open": true,
       "read_only": true, "log": {"driver": "json-file", "options": {"max-size": "1m"}},
       "memory_bytes": 67108864, "cpus": 1.5},
     "web": {"image": img("web", D2)}
    }}})
}

#[test]
fn containers_without_the_compose_keys_serialise_byte_for_byte_as_before() {
    // The module keeps an unchanged running container by a hash of this
    // form (io.mender.composable.spec): containers deployed before the
    // compose keys existed must hash the same. The literals are what the
    // module printed before them.
    let r = parse(&every_older_container_key()).unwrap();
    let json: Vec<String> = r
        .containers
        .iter()
        .map(|c| serde_json::to_string(c).unwrap())
        .collect();
    assert_eq!(
        json[0],
        r#"{"name":"db","image":{"repository":"127.0.0.1:5000/stacks/db","tag":"15","digest":"sha256:1111111111111111111111111111111111111111111111111111111111111111"},"size":1000,"command":["postgres","-c","fsync=on"],"entrypoint":["/entry"],"env":{"A":"1"},"binds":[{"source":"/data/db","target":"/var/lib/db","options":"rw"}],"volumes":[{"name":"dbdata","target":"/data","read_only":false,"purge_on_deploy":true},{"name":"shared","target":"/shared","read_only":true,"purge_on_deploy":false}],"tmpfs":{"/run":"size=8m"},"ports":[{"host_ip":null,"host_port":5432,"container_port":5432,"protocol":"tcp"},{"host_ip":"127.0.0.1","host_port":9187,"container_port":9187,"protocol":"tcp"}],"network_mode":"none","restart":{"OnFailure":5},"privileged":true,"cap_add":["NET_ADMIN"],"cap_drop":["ALL"],"devices":[{"host":"/dev/ttyS0","container":"/dev/ttyS0","permissions":"rw"}],"labels":{"com.example.team":"core"},"healthcheck":{"test":["CMD-SHELL","pg_isready"],"interval":{"secs":5,"nanos":0},"timeout":{"secs":2,"nanos":0},"start_period":{"secs":10,"nanos":0},"retries":3},"user":"999:999","workdir":"/srv","hostname":"db","tty":true,"open_stdin":true,"read_only":true,"log":{"driver":"json-file","options":{"max-size":"1m"}},"memory_bytes":67108864,"nano_cpus":1500000000}"#
    );
    assert_eq!(
        json[1],
        r#"{"name":"web","image":{"repository":"web","tag":null,"digest":"sha256:2222222222222222222222222222222222222222222222222222222222222222"},"size":null,"command":null,"entrypoint":null,"env":{},"binds":[],"volumes":[],"tmpfs":{},"ports":[],"network_mode":null,"restart":"No","privileged":false,"cap_add":[],"cap_drop":[],"devices":[],"labels":{},"healthcheck":null,"user":null,"workdir":null,"hostname":null,"tty":false,"open_stdin":false,"read_only":false,"log":null,"memory_bytes":null,"nano_cpus":null}"#
    );
}

#[test]
fn the_compose_keys_parse_into_the_container_and_change_its_serialised_form() {
    let meta = stack(json!({"app": {"image": img("app", D1),
        "stop_signal": "SIGRTMIN+3", "stop_grace_period_seconds": 30,
        "sysctls": {"net.core.somaxconn": "1024", "kernel.shmmax": "68719476736"},
        "init": true,
        "extra_hosts": ["db.local:10.0.0.2", "v6.local=::1", "b6.local=[fd00::2]", "gw:host-gateway"],
        "dns": ["10.0.0.53", "fd00::53"],
        "ulimits": {"nofile": "1024:4096", "nproc": 512, "memlock": "-1", "core": "0"},
        "shm_size_bytes": 67108864}}));
    assert_mender_lists(&meta);
    let c = &parse(&meta).unwrap().containers[0];
    assert_eq!(c.stop_signal.as_deref(), Some("SIGRTMIN+3"));
    assert_eq!(
        c.stop_grace_period,
        Some(std::time::Duration::from_secs(30))
    );
    assert_eq!(c.sysctls["net.core.somaxconn"], "1024");
    assert_eq!(c.init, Some(true));
    assert_eq!(
        c.extra_hosts,
        [
            "db.local:10.0.0.2",
            "v6.local:::1",
            "b6.local:fd00::2",
            "gw:host-gateway"
        ]
    );
    assert_eq!(c.dns, ["10.0.0.53", "fd00::53"]);
    let limit = |name: &str| (c.ulimits[name].soft, c.ulimits[name].hard);
    assert_eq!(limit("nofile"), (1024, 4096));
    assert_eq!(limit("nproc"), (512, 512), "a JSON number is N");
    assert_eq!(limit("memlock"), (-1, -1), "-1 is unlimited");
    assert_eq!(limit("core"), (0, 0));
    assert_eq!(c.shm_size_bytes, Some(64 << 20));
    let form = serde_json::to_string(c).unwrap();
    for key in [
        "stop_signal",
        "stop_grace_period",
        "sysctls",
        "init",
        "extra_hosts",
        "dns",
        "ulimits",
        "shm_size_bytes",
    ] {
        assert!(form.contains(&format!("\"{key}\":")), "{key} in {form}");
    }

    // A number is a signal too; init: false is kept (it overrides an
    // engine configured to add an init); a zero grace period is a value.
    let meta = stack(json!({"app": {"image": img("app", D1), "stop_signal": 3,
        "init": false, "stop_grace_period_seconds": 0}}));
    let c = &parse(&meta).unwrap().containers[0];
    assert_eq!(c.stop_signal.as_deref(), Some("3"));
    assert_eq!(c.init, Some(false));
    assert_eq!(c.stop_grace_period, Some(std::time::Duration::ZERO));
}

#[test]
fn every_bad_compose_key_names_the_container_the_key_and_what_is_accepted() {
    let with = |fields: Value| {
        let mut c = json!({"image": img("app", D1)});
        for (k, v) in fields.as_object().unwrap() {
            c[k] = v.clone();
        }
        stack(json!({"app": c}))
    };
    let at = "artifact meta-data at docker-stack.containers.app.";
    let cases: Vec<(Value, String)> = vec![
        (
            json!({"stop_signal": "SIGFOO"}),
            format!("{at}stop_signal: \"SIGFOO\" is not a signal; use a name such as SIGTERM, SIGQUIT or SIGRTMIN+3 (SIG and lower case also work) or a number 1-64"),
        ),
        (json!({"stop_signal": "65"}), format!("{at}stop_signal: \"65\" is not a signal")),
        (json!({"stop_signal": 0}), format!("{at}stop_signal: \"0\" is not a signal")),
        (json!({"stop_signal": "SIGRTMIN+16"}), format!("{at}stop_signal: \"SIGRTMIN+16\" is not a signal")),
        (json!({"stop_signal": ["SIGTERM"]}), format!("{at}stop_signal: must be a string or a number, found an array")),
        (json!({"stop_grace_period_seconds": -1}), format!("{at}stop_grace_period_seconds: must be a whole number ≥ 0, found a number")),
        (json!({"stop_grace_period_seconds": "10s"}), format!("{at}stop_grace_period_seconds: must be a whole number ≥ 0, found a string")),
        (
            json!({"stop_grace_period_seconds": 2_147_483_648_u64}),
            format!("{at}stop_grace_period_seconds: 2147483648 seconds is longer than the engine's stop timeout can be (2147483647); give whole seconds such as 10 or 30"),
        ),
        (
            json!({"sysctls": {"": "1"}}),
            format!("{at}sysctls[\"\"]: sysctl \"\" is not a kernel parameter name: parts of a-z 0-9 _ - joined by . or /, e.g. net.core.somaxconn"),
        ),
        (json!({"sysctls": {"Net.Core": "1"}}), format!("{at}sysctls[\"Net.Core\"]: sysctl \"Net.Core\" is not a kernel parameter name")),
        (json!({"sysctls": {"net/../../etc": "1"}}), format!("{at}sysctls[\"net/../../etc\"]: sysctl \"net/../../etc\" is not a kernel parameter name")),
        (json!({"sysctls": {"net.core somaxconn": "1"}}), format!("{at}sysctls[\"net.core somaxconn\"]: sysctl")),
        (json!({"sysctls": {"net.core.somaxconn": 1024}}), format!("{at}sysctls[\"net.core.somaxconn\"]: must be a string, found a number")),
        (json!({"sysctls": {"net.core.somaxconn": ""}}), format!("{at}sysctls[\"net.core.somaxconn\"]: sysctl \"net.core.somaxconn\" has an empty value; give the value to write, e.g. \"1024\"")),
        (json!({"sysctls": ["net.core.somaxconn=1024"]}), format!("{at}sysctls: must be an object, found an array")),
        (
            json!({"network_mode": "host", "sysctls": {"net.ipv4.ip_forward": "1"}}),
            format!("{at}sysctls[\"net.ipv4.ip_forward\"]: sysctl \"net.ipv4.ip_forward\" would change the host's network stack (network_mode host), which the engine refuses; drop it or use another network mode"),
        ),
        (json!({"init": "yes"}), format!("{at}init: must be true or false, found a string")),
        (
            json!({"extra_hosts": ["db.local"]}),
            format!("{at}extra_hosts[0]: extra host \"db.local\": there is no IP address; write HOST:IP or HOST=IP, e.g. db.local:10.0.0.2 or db6.local=::1"),
        ),
        (json!({"extra_hosts": ["db.local:10.0.0.300"]}), format!("{at}extra_hosts[0]: extra host \"db.local:10.0.0.300\": \"10.0.0.300\" is not an IP address; write HOST:IP")),
        (json!({"extra_hosts": [":10.0.0.1"]}), format!("{at}extra_hosts[0]: extra host \":10.0.0.1\": \"\" is not a host name (letters, digits, . - _)")),
        (json!({"extra_hosts": ["a b:10.0.0.1"]}), format!("{at}extra_hosts[0]: extra host \"a b:10.0.0.1\": \"a b\" is not a host name")),
        (json!({"extra_hosts": {"db.local": "10.0.0.2"}}), format!("{at}extra_hosts: must be an array, found an object")),
        (json!({"dns": ["dns.example.com"]}), format!("{at}dns[0]: DNS server \"dns.example.com\" is not an IP address such as 10.0.0.53 or fd00::53")),
        (json!({"dns": "10.0.0.53"}), format!("{at}dns: must be an array, found a string")),
        (
            json!({"network_mode": "container:other", "dns": ["10.0.0.53"]}),
            format!("{at}dns: cannot be combined with network_mode \"container:other\", which takes that container's name resolution (the engine refuses both); set it on that container"),
        ),
        (json!({"network_mode": "container:other", "extra_hosts": ["a:10.0.0.1"]}), format!("{at}extra_hosts: cannot be combined with network_mode \"container:other\"")),
        (
            json!({"ulimits": {"files": "1024"}}),
            format!("{at}ulimits.files: ulimit \"files\" is not one the engine knows; use one of as, core, cpu, data, fsize, locks, memlock, msgqueue, nice, nofile, nproc, rss, rtprio, rttime, sigpending, stack"),
        ),
        (
            json!({"ulimits": {"nofile": "4096:1024"}}),
            format!("{at}ulimits.nofile: ulimit nofile \"4096:1024\": the soft limit is above the hard limit; the soft limit must be at most the hard one"),
        ),
        (json!({"ulimits": {"nofile": "-1:1024"}}), format!("{at}ulimits.nofile: ulimit nofile \"-1:1024\": the soft limit is above the hard limit")),
        (
            json!({"ulimits": {"nofile": "lots"}}),
            format!("{at}ulimits.nofile: ulimit nofile \"lots\" is not SOFT:HARD or N: whole numbers ≥ 0, or -1 for unlimited, e.g. \"1024:4096\" or \"1024\""),
        ),
        (json!({"ulimits": {"nofile": "1:2:3"}}), format!("{at}ulimits.nofile: ulimit nofile \"1:2:3\" is not SOFT:HARD or N")),
        (json!({"ulimits": {"nofile": -2}}), format!("{at}ulimits.nofile: ulimit nofile \"-2\" is not SOFT:HARD or N")),
        (json!({"ulimits": {"nofile": 1.5}}), format!("{at}ulimits.nofile: ulimit nofile \"1.5\" is not SOFT:HARD or N")),
        (json!({"ulimits": {"nofile": {"soft": 1, "hard": 2}}}), format!("{at}ulimits.nofile: must be a string or a number, found an object")),
        (
            json!({"shm_size_bytes": 0}),
            format!("{at}shm_size_bytes: 0 is not a size of /dev/shm; give bytes, at least 1, e.g. 67108864 (64 MiB)"),
        ),
        (json!({"shm_size_bytes": "64m"}), format!("{at}shm_size_bytes: must be a whole number ≥ 0, found a string")),
        (json!({"shm_size_bytes": u64::MAX}), format!("{at}shm_size_bytes: {} is not a size of /dev/shm", u64::MAX)),
        (json!({"stop_grace_period": 10}), format!("{at}stop_grace_period: unknown key \"stop_grace_period\"; the keys allowed here are")),
        (json!({"shm_size": 10}), format!("{at}shm_size: unknown key")),
    ];
    for (fields, want) in cases {
        let e = err(with(fields.clone()));
        assert!(
            e.starts_with(&want),
            "for {fields}:\n  got:  {e}\n  want: {want}…"
        );
    }
}

fn networked(networks: Value, containers: Value) -> Value {
    json!({"docker-stack": {"format": 1, "stack": "shop", "networks": networks, "containers": containers}})
}

#[test]
fn stack_networks_are_named_by_stack_and_kind_and_joined_with_aliases() {
    let meta = networked(
        json!({"default": {}, "back": {"internal": true}, "lan": {"external": true, "name": "plant-lan"}, "mgmt": {"external": true}}),
        json!({
            "db": {"image": img("db", D1), "networks": {"back": ["db", "database"]}},
            "web": {"image": img("web", D2), "networks": {"default": ["web"], "back": [], "lan": ["web", "web"]}},
            "probe": {"image": img("probe", D2), "networks": {"mgmt": []}}
        }),
    );
    assert_mender_lists(&meta);
    let r = parse(&meta).unwrap();
    let nets: Vec<(&str, &str, bool, bool)> = r
        .networks
        .iter()
        .map(|n| (n.key.as_str(), n.engine.as_str(), n.internal, n.external))
        .collect();
    assert_eq!(
        nets,
        [
            ("back", "shop_back.internal", true, false),
            ("default", "shop_default", false, false),
            ("lan", "plant-lan", false, true),
            ("mgmt", "mgmt", false, true)
        ]
    );
    let web = r.container("web").unwrap();
    assert_eq!(
        web.networks,
        [
            ("plant-lan".to_string(), vec!["web".to_string()]),
            ("shop_back.internal".to_string(), vec![]),
            ("shop_default".to_string(), vec!["web".to_string()]),
        ]
        .into_iter()
        .collect()
    );
    assert_eq!(
        r.container("db").unwrap().networks["shop_back.internal"],
        ["db", "database"]
    );
    assert_eq!(web.network_mode, None);
}

#[test]
fn a_network_definition_is_part_of_what_its_containers_are() {
    let with = |internal: bool| {
        let r = parse(&networked(
            json!({"back": {"internal": internal}}),
            json!({"db": {"image": img("db", D1), "networks": {"back": ["db"]}}}),
        ))
        .unwrap();
        serde_json::to_string(r.container("db").unwrap()).unwrap()
    };
    assert_ne!(
        with(false),
        with(true),
        "a changed network makes a changed container"
    );
}

#[test]
fn every_bad_network_entry_names_where_and_what() {
    let c = |networks: Value| json!({"db": {"image": img("db", D1), "networks": networks}});
    let cases: Vec<(Value, &str)> = vec![
        (
            networked(json!({"back.end": {}}), c(json!({}))),
            "docker-stack.networks[\"back.end\"]: network name \"back.end\" is not valid: 1 to 64 characters, letters, digits, _ -, starting with a letter or digit",
        ),
        (
            networked(json!({"back": []}), c(json!({}))),
            "docker-stack.networks.back: must be an object ({} for a plain bridge), found an array",
        ),
        (
            networked(json!({"back": {"driver": "overlay"}}), c(json!({}))),
            "docker-stack.networks.back.driver: unknown key \"driver\"",
        ),
        (
            networked(json!({"back": {"name": "x"}}), c(json!({}))),
            "docker-stack.networks.back.name: is only for external networks",
        ),
        (
            networked(json!({"back": {"external": true, "internal": true}}), c(json!({}))),
            "docker-stack.networks.back: an external network is not created by the module, so internal cannot apply; drop one",
        ),
        (
            networked(json!({"back": {"external": true, "name": "-x"}}), c(json!({}))),
            "docker-stack.networks.back.name: network name \"-x\" is not valid",
        ),
        (
            networked(json!({"back": {}}), c(json!({"front": ["db"]}))),
            "docker-stack.containers.db.networks.front: \"front\" is not one of the stack's networks (back); declare it in docker-stack.networks",
        ),
        (
            networked(json!({"back": {}}), c(json!({"back": "db"}))),
            "docker-stack.containers.db.networks.back: must be a list of aliases ([] for none), found a string",
        ),
        (
            networked(json!({"back": {}}), c(json!({"back": ["db", 5]}))),
            "docker-stack.containers.db.networks.back[1]: must be a string, found a number",
        ),
        (
            networked(json!({"back": {}}), c(json!({"back": ["-db"]}))),
            "docker-stack.containers.db.networks.back[0]: alias \"-db\" is not valid",
        ),
        (
            networked(json!({"back": {}}), json!({"db": {"image": img("db", D1), "network_mode": "host", "networks": {"back": []}}})),
            "docker-stack.containers.db.networks: cannot be combined with network_mode \"host\"; keep one",
        ),
        (
            stack(json!({"db": {"image": img("db", D1), "networks": {"back": []}}})),
            "docker-stack.containers.db.networks.back: \"back\" is not one of the stack's networks ()",
        ),
    ];
    for (meta, want) in cases {
        let got = err(meta);
        let want = format!("artifact meta-data at {want}");
        assert!(got.starts_with(&want), "\n  got:  {got}\n  want: {want}…");
    }
}

#[test]
fn secrets_and_configs_name_device_files_and_their_paths_in_the_container() {
    let meta = stack(json!({"web": {"image": img("web", D1),
        "secrets": {"/run/secrets/token": "api-token"}, "configs": {"/etc/app.conf": "app.conf"}}}));
    let r = parse(&meta).unwrap();
    let web = r.container("web").unwrap();
    assert_eq!(web.secrets["/run/secrets/token"], "api-token");
    assert_eq!(web.configs["/etc/app.conf"], "app.conf");
    assert_eq!(
        docker_spec::device_file(
            std::path::Path::new("/data/m"),
            "web",
            docker_spec::DeviceFile::Secret,
            "api-token"
        ),
        std::path::Path::new("/data/m/files/web/secrets/api-token")
    );
    let bad = |c: Value| err(stack(json!({"web": c})));
    let base = |k: &str, v: Value| {
        let mut c = json!({"image": img("web", D1)});
        c[k] = v;
        c
    };
    for (c, want) in [
        (base("secrets", json!({"run/token": "t"})), "docker-stack.containers.web.secrets[\"run/token\"]: secret target \"run/token\" must be an absolute path"),
        (base("secrets", json!({"/run/a:b": "t"})), "docker-stack.containers.web.secrets[\"/run/a:b\"]: secret target \"/run/a:b\" holds ':', which a bind mount cannot carry; choose a path without ':'"),
        (base("configs", json!({"/etc/a:rw": "c"})), "docker-stack.containers.web.configs[\"/etc/a:rw\"]: config target \"/etc/a:rw\" holds ':'"),
        (base("secrets", json!({"/run/token": "../t"})), "docker-stack.containers.web.secrets[\"/run/token\"]: secret name \"../t\" is not valid"),
        (base("configs", json!({"/etc/a": 5})), "docker-stack.containers.web.configs[\"/etc/a\"]: must be a string, found a number"),
        (
            {
                let mut c = base("configs", json!({"/etc/a": "a"}));
                c["binds"] = json!(["/data/a:/etc/a"]);
                c
            },
            "docker-stack.containers.web: two mounts target \"/etc/a\"",
        ),
    ] {
        let got = bad(c);
        let want = format!("artifact meta-data at {want}");
        assert!(got.starts_with(&want), "\n  got:  {got}\n  want: {want}");
    }
}
