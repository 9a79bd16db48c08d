//! Both formats through the public entry point: what deploys, and every way an
//! artifact is refused, each with one line naming where and what.

use docker_spec::{parse, parse_str, Format, RestartPolicy, SpecError, Strategy, LEGACY_STACK};
use serde_json::{json, Value};

const D1: &str = "sha256:1111111111111111111111111111111111111111111111111111111111111111";
const D2: &str = "sha256:2222222222222222222222222222222222222222222222222222222222222222";

fn img(repo: &str, d: &str) -> String {
    format!("{repo}@{d}")
}

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

#[test]
fn a_full_stack_document_parses_into_the_release() {
    let meta = json!({"docker-stack": {
        "format": 1,
        "stack": "web",
        "strategy": "start-first",
        "health_timeout_seconds": 30,
        "registry": "fleet",
        "replaces": ["legacy-web", "/old-db"],
        "containers": [
            {"name": "db", "image": img("127.0.0.1:5000/stacks/db", D1), "size": 1000,
             "command": ["postgres", "-c", "fsync=on"], "entrypoint": ["/entry"],
             "env": {"A": "1", "B": "x=y"},
             "binds": ["/data/db:/var/lib/db:rw"],
             "volumes": [{"name": "dbdata", "target": "/data", "read_only": false, "purge_on_deploy": true}],
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
            {"name": "web", "image": img("web", D2)}
        ]
    }});
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
    assert!(db.volumes[0].purge_on_deploy);
    assert_eq!(db.ports[1].host_ip.as_deref(), Some("127.0.0.1"));
    assert_eq!(db.restart, RestartPolicy::OnFailure(Some(5)));
    assert_eq!(db.healthcheck.as_ref().unwrap().retries, Some(3));
    assert_eq!(db.nano_cpus, Some(1_500_000_000));
    assert!(db.tty && db.open_stdin && db.read_only);
    let web = &r.containers[1];
    assert_eq!(web.restart, RestartPolicy::No);
    assert!(!web.tty);
    assert_eq!(
        r.containers.iter().map(|c| &c.name).collect::<Vec<_>>(),
        ["db", "web"]
    );
}

#[test]
fn a_minimal_stack_gets_the_defaults() {
    let r = parse(&stack(json!([{"name": "app", "image": img("app", D1)}]))).unwrap();
    assert_eq!(r.strategy, Strategy::StopFirst);
    assert_eq!(r.health_timeout, None);
    assert_eq!(r.registry, None);
    assert!(r.replaces.is_empty());
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
    assert!(parse_str(&stack(json!([{"name": "ab", "image": img("x", D1)}])).to_string()).is_ok());
}

#[test]
fn every_bad_input_names_where_and_what() {
    let good = || json!({"name": "app", "image": img("app", D1)});
    let with = |key: &str, value: Value| {
        let mut c = good();
        c[key] = value;
        stack(json!([c]))
    };
    let top = |key: &str, value: Value| {
        let mut s = stack(json!([good()]));
        s["docker-stack"][key] = value;
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
            json!({"docker-stack": {"format": 1, "stack": "web", "containers": [good()]}, "extra": 1}),
            "at extra: unknown key \"extra\"",
        ),
        (
            json!({"docker-stack": {"stack": "web", "containers": [good()]}}),
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
        (top("containers", json!([])), "lists no containers"),
        (
            top("containers", json!(["app"])),
            "docker-stack.containers[0]: must be an object",
        ),
        (
            top("contianers", json!([])),
            "docker-stack.contianers: unknown key \"contianers\"",
        ),
        (
            stack(json!([{"image": img("app", D1)}])),
            "containers[0].name: is required",
        ),
        (
            stack(json!([{"name": "app"}])),
            "containers[0].image: is required",
        ),
        (
            with("image", json!("app:1.0")),
            "containers[0].image: image \"app:1.0\" is not pinned by digest",
        ),
        (with("image", json!("app@sha256:1234")), "64 lower-case hex"),
        (with("image", json!("app@md5:1234")), "not sha256"),
        (
            with("image", json!(format!("App@{D1}"))),
            "repository component",
        ),
        (
            with("name", json!("a")),
            "containers[0].name: container name \"a\" is not valid",
        ),
        (with("name", json!("web/1")), "is not valid"),
        (
            stack(json!([good(), good()])),
            "containers[1].name: container name \"app\" is already used by containers[0]",
        ),
        (
            with("imagee", json!("x")),
            "containers[0].imagee: unknown key \"imagee\"; the keys allowed here are",
        ),
        (
            with("size", json!(-1)),
            "containers[0].size: must be a whole number",
        ),
        (
            with("command", json!("sleep 1")),
            "containers[0].command: must be an array",
        ),
        (
            with("command", json!(["sleep", 1])),
            "containers[0].command[1]: must be a string, found a number",
        ),
        (
            with("env", json!({"A=B": "x"})),
            "environment variable name",
        ),
        (
            with("env", json!({"A": 1})),
            "containers[0].env.A: must be a string",
        ),
        (
            with("env", json!(["A=1"])),
            "containers[0].env: must be an object",
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
        (
            with("volumes", json!([{"name": "v", "target": "/x"}])),
            "volume name \"v\" is not valid",
        ),
        (
            with("volumes", json!([{"name": "vol", "target": "x"}])),
            "containers[0].volumes[0].target",
        ),
        (
            with(
                "volumes",
                json!([{"name": "vol", "target": "/x", "purge": true}]),
            ),
            "containers[0].volumes[0].purge: unknown key",
        ),
        (
            with(
                "volumes",
                json!([{"name": "vol", "target": "/x"}, {"name": "vol2", "target": "/x/"}]),
            ),
            "two mounts target",
        ),
        (
            with("ports", json!(["80000:80"])),
            "containers[0].ports[0]: port",
        ),
        (
            with("ports", json!(["8000-8010:80"])),
            "port ranges are not supported",
        ),
        (
            with("network_mode", json!("my net")),
            "containers[0].network_mode",
        ),
        (
            with("restart", json!("sometimes")),
            "containers[0].restart: restart policy",
        ),
        (
            with("privileged", json!("yes")),
            "containers[0].privileged: must be true or false",
        ),
        (
            with("cap_add", json!(["NET ADMIN"])),
            "containers[0].cap_add[0]: capability",
        ),
        (
            with("devices", json!(["ttyS0"])),
            "containers[0].devices[0]: device path",
        ),
        (
            with("labels", json!({"io.mender.composable.stack": "x"})),
            "reserves for its own bookkeeping",
        ),
        (
            with("healthcheck", json!({"interval_seconds": 5})),
            "containers[0].healthcheck.test: is required",
        ),
        (
            with("healthcheck", json!({"test": ["CURL", "x"]})),
            "containers[0].healthcheck.test",
        ),
        (
            with("healthcheck", json!({"test": ["CMD-SHELL", "a", "b"]})),
            "containers[0].healthcheck.test",
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
            "containers[0].workdir: workdir \"srv\" must be an absolute path",
        ),
        (
            with("log", json!({"options": {}})),
            "containers[0].log.driver: is required",
        ),
        (
            with("memory_bytes", json!(0)),
            "containers[0].memory_bytes: must be more than 0",
        ),
        (with("cpus", json!(-1)), "containers[0].cpus"),
        (
            with("network_mode", json!("container:app")),
            "joins the network of \"app\" from the same release",
        ),
        (
            stack(json!([
               {"name": "a1", "image": img("a", D1), "volumes": [{"name": "shared", "target": "/s", "purge_on_deploy": true}]},
               {"name": "b1", "image": img("b", D1), "volumes": [{"name": "shared", "target": "/s"}]},
            ])),
            "used with and without purge_on_deploy",
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
    let e = parse(&stack(json!([{"name": "app", "image": "x"}]))).unwrap_err();
    assert_eq!(e.at().unwrap().as_str(), "docker-stack.containers[0].image");
    assert!(matches!(
        parse(&json!(3)).unwrap_err(),
        SpecError::UnknownFormat { .. }
    ));
}
