use std::collections::BTreeMap;
use std::fs;

use serde_json::{json, Value};

use super::*;
use crate::archive::tests::TempDir;

const D: &str = "registry.local:5000/app@sha256:1111111111111111111111111111111111111111111111111111111111111111";

fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Writes `files` (name, text) into a fresh project directory `proj` and
/// loads the compose files among them in order.
fn load_files(
    tag: &str,
    files: &[(&str, &str)],
    compose: &[&str],
    shell: &[(&str, &str)],
) -> Result<Translated> {
    let dir = TempDir::new(tag);
    let proj = dir.0.join("proj");
    fs::create_dir_all(&proj).unwrap();
    for (name, text) in files {
        fs::write(proj.join(name), text).unwrap();
    }
    let paths: Vec<PathBuf> = compose.iter().map(|c| proj.join(c)).collect();
    load(&paths, None, BTreeMap::new(), None, &env(shell))
}

fn one(yaml: &str) -> Result<Value, String> {
    one_with(
        yaml,
        &Options {
            project: "proj".into(),
            ..Options::default()
        },
    )
}

fn one_with(yaml: &str, options: &Options) -> Result<Value, String> {
    let mut model = parse_yaml(yaml)?;
    normalise(&mut model)?;
    translate::translate(&model, options, &BTreeMap::new()).map(|t| t.meta)
}

fn containers(meta: &Value) -> &serde_json::Map<String, Value> {
    meta["docker-stack"]["containers"].as_object().unwrap()
}

#[test]
fn a_realistic_stack_translates_key_by_key() {
    let yaml = format!(
        r#"
name: shop
version: "3.8"
x-defaults: &defaults
  restart: unless-stopped
  logging:
    driver: json-file
    options: {{max-size: 1m, max-file: 3}}
services:
  db:
    <<: *defaults
    image: {D}
    environment:
      POSTGRES_DB: shop
      RETRIES: 3
    volumes:
      - dbdata:/var/lib/postgresql/data
      - type: tmpfs
        target: /run/pg
        tmpfs: {{size: 8m}}
    healthcheck:
      test: pg_isready
      interval: 5s
      timeout: 1m30s
      start_period: 0s
      retries: 5
    network_mode: host
    shm_size: 64m
    stop_grace_period: 1m
    stop_signal: SIGINT
  api:
    <<: *defaults
    image: {D}
    container_name: shop-api
    command: serve --port "8080"
    entrypoint: ["/bin/app"]
    environment: [MODE=prod, "EMPTY="]
    ports: ["127.0.0.1:8080:8080", "9000-9001:9000-9001/udp", {{target: 443, published: "8443", protocol: tcp, mode: host}}]
    expose: ["7000"]
    volumes: ["/data/shop/config:/etc/app:ro", "cache:/cache"]
    network_mode: bridge
    depends_on:
      db: {{condition: service_healthy}}
      migrate: {{condition: service_completed_successfully, restart: true}}
    user: 1000
    working_dir: /srv
    hostname: api
    labels: [com.example.team=shop]
    cap_add: [NET_ADMIN]
    cap_drop: [ALL]
    devices: ["/dev/ttyUSB0:/dev/ttyUSB0:rw", {{source: /dev/i2c-1, target: /dev/i2c-1, permissions: r}}]
    privileged: false
    read_only: true
    tmpfs: /tmp:size=4m
    sysctls: {{net.core.somaxconn: 1024}}
    deploy: {{replicas: 1, resources: {{limits: {{cpus: "0.5", memory: 256M}}}}}}
    init: true
    extra_hosts: ["gateway=10.0.0.1", "v6:fe80::1"]
    dns: 10.0.0.53
    ulimits: {{nofile: {{soft: 1024, hard: 4096}}, nproc: 512}}
  migrate:
    image: {D}
    command: ["migrate", "up"]
    network_mode: none
    mem_limit: 64m
    cpus: 1.5
    restart: "no"
volumes:
  dbdata: {{}}
  cache:
    external: true
"#
    );
    let meta = one(&yaml).unwrap();
    assert_eq!(meta["docker-stack"]["format"], 1);
    // `name:` is not the project here: the caller's project wins (checked in load tests).
    assert_eq!(meta["docker-stack"]["stack"], "proj");
    let log = json!({"driver": "json-file", "options": {"max-size": "1m", "max-file": "3"}});
    assert_eq!(
        containers(&meta)["proj-db-1"],
        json!({
            "image": D, "restart": "unless-stopped", "log": log,
            "env": {"POSTGRES_DB": "shop", "RETRIES": "3"},
            "volumes": ["proj_dbdata:/var/lib/postgresql/data"],
            "tmpfs": {"/run/pg": "size=8388608"},
            "healthcheck": {"test": ["CMD-SHELL", "pg_isready"], "interval_seconds": 5,
                            "timeout_seconds": 90, "start_period_seconds": 0, "retries": 5},
            "network_mode": "host", "shm_size_bytes": 67108864,
            "stop_grace_period_seconds": 60, "stop_signal": "SIGINT"
        })
    );
    assert_eq!(
        containers(&meta)["shop-api"],
        json!({
            "image": D, "restart": "unless-stopped", "log": log,
            "command": ["serve", "--port", "8080"], "entrypoint": ["/bin/app"],
            "env": {"MODE": "prod", "EMPTY": ""},
            "ports": ["127.0.0.1:8080:8080/tcp", "9000:9000/udp", "9001:9001/udp", "8443:443/tcp"],
            "binds": ["/data/shop/config:/etc/app:ro"],
            "volumes": ["cache:/cache"],
            "network_mode": "bridge",
            "depends_on": {"proj-db-1": "service_healthy",
                           "proj-migrate-1": "service_completed_successfully"},
            "user": "1000", "workdir": "/srv", "hostname": "api",
            "labels": {"com.example.team": "shop"},
            "cap_add": ["NET_ADMIN"], "cap_drop": ["ALL"],
            "devices": ["/dev/ttyUSB0:/dev/ttyUSB0:rw", "/dev/i2c-1:/dev/i2c-1:r"],
            "privileged": false, "read_only": true,
            "tmpfs": {"/tmp": "size=4m"},
            "sysctls": {"net.core.somaxconn": "1024"},
            "cpus": 0.5, "memory_bytes": 268435456,
            "init": true,
            "extra_hosts": ["gateway:10.0.0.1", "v6:fe80::1"],
            "dns": ["10.0.0.53"],
            "ulimits": {"nofile": "1024:4096", "nproc": "512"}
        })
    );
    assert_eq!(
        containers(&meta)["proj-migrate-1"],
        json!({"image": D, "command": ["migrate", "up"], "network_mode": "none",
               "memory_bytes": 67108864, "cpus": 1.5, "restart": "no"})
    );
    // And the device's own parser takes it.
    docker_spec::parse(&meta).unwrap();
}

#[test]
fn load_interpolates_dot_env_and_merges_files_with_env_files() {
    let files = [
        (".env", "TAG=1.0\nREG=registry.local:5000\nPORT=8080\n"),
        ("app.env", "FROM_FILE=1\nMODE=from-file\nIMAGE_TAG=$TAG\n"),
        (
            "compose.yaml",
            "services:\n  web:\n    image: ${REG}/web:${TAG}\n    network_mode: bridge\n    \
             ports: [\"${PORT}:80\"]\n    env_file: app.env\n    environment:\n      MODE: ${MODE:-prod}\n      \
             LEVEL: ${LEVEL-info}\n      COST: $$5\n",
        ),
        (
            "compose.override.yaml",
            "services:\n  web:\n    image: ${REG}/web:${TAG}-debug\n    ports: [\"9229:9229\"]\n",
        ),
    ];
    let t = load_files(
        "compose-load",
        &files,
        &["compose.yaml", "compose.override.yaml"],
        &[("TAG", "2.0")],
    )
    .unwrap();
    let meta = t.meta;
    // The project is the first file's directory; the shell's TAG beats .env's.
    assert_eq!(meta["docker-stack"]["stack"], "proj");
    let web = &containers(&meta)["proj-web-1"];
    assert_eq!(web["image"], "registry.local:5000/web:2.0-debug");
    assert_eq!(web["ports"], json!(["8080:80/tcp", "9229:9229/tcp"]));
    assert_eq!(
        web["env"],
        json!({"FROM_FILE": "1", "MODE": "prod", "LEVEL": "info", "COST": "$5", "IMAGE_TAG": "2.0"})
    );
    assert!(t.built.is_empty());
}

#[test]
fn the_project_name_comes_from_the_flag_the_environment_the_file_or_the_directory() {
    let files = [(
        "compose.yaml",
        "name: fromfile\nservices:\n  a:\n    image: x\n    network_mode: host\n",
    )];
    let dir = TempDir::new("compose-name");
    let proj = dir.0.join("My Project_1");
    fs::create_dir_all(&proj).unwrap();
    fs::write(proj.join("compose.yaml"), files[0].1).unwrap();
    let path = vec![proj.join("compose.yaml")];
    let stack = |given: Option<&str>, shell: &[(&str, &str)]| {
        load(&path, given, BTreeMap::new(), None, &env(shell))
            .map(|t| t.meta["docker-stack"]["stack"].as_str().unwrap().to_owned())
    };
    assert_eq!(
        stack(Some("flag"), &[("COMPOSE_PROJECT_NAME", "shell")]).unwrap(),
        "flag"
    );
    assert_eq!(
        stack(None, &[("COMPOSE_PROJECT_NAME", "shell")]).unwrap(),
        "shell"
    );
    assert_eq!(stack(None, &[]).unwrap(), "fromfile");
    fs::write(
        proj.join("compose.yaml"),
        "services:\n  a:\n    image: x\n    network_mode: host\n",
    )
    .unwrap();
    assert_eq!(stack(None, &[]).unwrap(), "myproject_1");
    let err = stack(Some("-bad"), &[]).unwrap_err().to_string();
    assert!(err.starts_with("--project-name: "), "{err}");
}

#[test]
fn build_only_services_take_the_name_compose_tags_or_the_image_flag() {
    let yaml = "services:\n  api:\n    build: ./api\n    network_mode: host\n  \
                worker:\n    build: {context: ./worker}\n    image: shop/worker:dev\n    network_mode: host\n  \
                web:\n    build: .\n    network_mode: host\n";
    let mut model = parse_yaml(yaml).unwrap();
    normalise(&mut model).unwrap();
    let options = Options {
        project: "shop".into(),
        images: [("web".to_string(), "registry.local:5000/web:1".to_string())].into(),
        platform: None,
    };
    let t = translate::translate(&model, &options, &BTreeMap::new()).unwrap();
    let c = containers(&t.meta);
    assert_eq!(c["shop-api-1"]["image"], "shop-api");
    assert_eq!(c["shop-worker-1"]["image"], "shop/worker:dev");
    assert_eq!(c["shop-web-1"]["image"], "registry.local:5000/web:1");
    assert_eq!(
        t.built,
        BTreeMap::from([
            ("shop-api-1".to_string(), "api".to_string()),
            ("shop-worker-1".to_string(), "worker".to_string())
        ])
    );
}

#[test]
fn environment_entries_without_a_value_come_from_the_shell_or_stay_unset() {
    let mut model = parse_yaml("services:\n  a:\n    image: x\n    network_mode: host\n    environment: [HOME, NOT_SET, A=1]\n").unwrap();
    normalise(&mut model).unwrap();
    let options = Options {
        project: "p".into(),
        ..Options::default()
    };
    let t = translate::translate(&model, &options, &env(&[("HOME", "/root")])).unwrap();
    assert_eq!(
        containers(&t.meta)["p-a-1"]["env"],
        json!({"HOME": "/root", "A": "1"})
    );
}

#[test]
fn platforms_are_checked_against_the_device() {
    let yaml =
        "services:\n  a:\n    image: x\n    network_mode: host\n    platform: linux/arm64/v8\n";
    let with = |p: Option<&str>| {
        one_with(
            yaml,
            &Options {
                project: "p".into(),
                platform: p.map(str::to_owned),
                ..Options::default()
            },
        )
    };
    assert!(with(Some("linux/arm64")).is_ok());
    assert!(with(Some("linux/aarch64")).is_ok());
    assert_eq!(
        with(Some("linux/amd64")).unwrap_err(),
        "services.a.platform: is linux/arm64/v8, but the device is linux/amd64 (--platform); build the image for linux/amd64"
    );
    assert!(with(None)
        .unwrap_err()
        .contains("pass the device's --platform"));
    assert!(translate::same_platform("linux/arm/v7", "linux/arm/v7"));
    assert!(!translate::same_platform("linux/arm/v6", "linux/arm/v7"));
    assert!(translate::same_platform("linux/x86_64", "linux/amd64"));
}

/// Every refusal is one line naming the path and what to do.
#[test]
fn what_cannot_be_translated_is_refused_with_its_path() {
    let base = "services:\n  web:\n    image: x\n    network_mode: host\n";
    let cases: &[(&str, &str)] = &[
        ("services:\n  web:\n    image: x\n    profiles: [debug]\n", "services.web.profiles: is not a compose key docker-artifact-gen translates: profiles choose"),
        ("services:\n  web:\n    image: x\n    pull_policy: always\n", "services.web.pull_policy: is not a compose key"),
        ("services:\n  web:\n    build: .\n    network_mode: host\n    volumes_from: [db]\n", "services.web.volumes_from: is not a compose key"),
        ("include: [a.yaml]\nservices:\n  web:\n    image: x\n", "include: is not a compose key"),
        ("services:\n  web:\n    network_mode: host\n", "services.web: has neither image nor build"),
        ("services: {}\n", "services: the compose files define no services"),
        ("services:\n  web:\n    image: x\n    volumes: [./config:/etc/app]\n", "services.web.volumes[0]: \"./config\" is a path on this build machine"),
        ("services:\n  web:\n    image: x\n    volumes: [\"~/data:/data\"]\n", "services.web.volumes[0]: \"~/data\" is a path on this build machine"),
        ("services:\n  web:\n    image: x\n    volumes: [/data]\n", "services.web.volumes[0]: \"/data\" is an anonymous volume"),
        ("services:\n  web:\n    image: x\n    volumes: [data:/data]\n", "services.web.volumes[0]: volume \"data\" is not declared under the top-level volumes"),
        ("services:\n  web:\n    image: x\n    volumes: [{type: npipe, source: a, target: /b}]\n", "services.web.volumes[0]: type \"npipe\" is not supported"),
        ("services:\n  web:\n    image: x\n    ports: [\"80:80:80:80\"]\n", "services.web.ports[0]: \"80:80:80:80\" is not [[HOST_IP:]HOST_PORT:]CONTAINER_PORT"),
        ("services:\n  web:\n    image: x\n    ports: [\"8000-8002:80\"]\n", "services.web.ports[0]: published 3 ports for 1 container ports"),
        ("services:\n  web:\n    image: x\n    ports: [\"70000:80\"]\n", "services.web.ports[0]: \"70000\" is not a port"),
        ("services:\n  web:\n    image: x\n    healthcheck: {test: [CMD, x], interval: 500ms}\n", "services.web.healthcheck.interval: 500ms is not a whole number of seconds, which the device keeps; write 1s"),
        ("services:\n  web:\n    image: x\n    healthcheck: {test: [CMD, x], start_interval: 1s}\n", "services.web.healthcheck.start_interval: is not kept"),
        ("services:\n  web:\n    image: x\n    healthcheck: {interval: 1s}\n", "services.web.healthcheck: has no test"),
        ("services:\n  web:\n    image: x\n    depends_on: [db]\n", "services.web.depends_on.db: names no service"),
        ("services:\n  web:\n    image: x\n    depends_on: {db: {condition: service_running}}\n  db:\n    image: y\n    network_mode: host\n", "services.web.depends_on.db.condition: "),
        ("services:\n  web:\n    image: x\n    restart: sometimes\n", "services.web.restart: "),
        ("services:\n  web:\n    image: x\n    mem_limit: 1m\n", "services.web.mem_limit: memory limit of 1048576 bytes is below the engine's minimum"),
        ("services:\n  web:\n    image: x\n    mem_limit: lots\n", "services.web.mem_limit: \"lots\" is not a size"),
        ("services:\n  web:\n    image: x\n    cpus: 0\n", "services.web.cpus: cpus \"0\" is not a positive number"),
        ("services:\n  web:\n    image: x\n    mem_limit: 64m\n    deploy: {resources: {limits: {memory: 128m}}}\n", "services.web.mem_limit: disagrees with services.web.deploy.resources.limits.memory; keep one"),
        ("services:\n  web:\n    image: x\n    deploy: {replicas: 3}\n", "services.web.deploy.replicas: is not supported: deploy is for swarm"),
        ("services:\n  web:\n    image: x\n    deploy: {resources: {reservations: {cpus: 1}}}\n", "services.web.deploy.resources.reservations: is not supported"),
        ("services:\n  web:\n    image: x\n    network_mode: service:db\n  db:\n    image: y\n    network_mode: host\n", "services.web.network_mode: \"service:db\" shares the network"),
        ("services:\n  web:\n    image: x\n    networks: [front]\n", "services.web.networks.front: is not declared under the top-level networks; add `networks: {front: {}}`"),
        ("services:\n  web:\n    image: x\n    network_mode: host\n    networks: [default]\n", "services.web.networks: and network_mode cannot both be set; keep one"),
        ("services:\n  web:\n    image: x\n    networks: {default: {ipv4_address: 10.0.0.5}}\n", "services.web.networks.default.ipv4_address: is not supported (aliases)"),
        ("networks: {back: {driver: overlay}}\nservices:\n  web:\n    image: x\n", "networks.back.driver: is not supported: the device creates each stack network as a bridge"),
        ("networks: {back: {ipam: {config: [{subnet: 10.1.0.0/24}]}}}\nservices:\n  web:\n    image: x\n", "networks.back.ipam: is not supported"),
        ("networks: {back: {name: shared}}\nservices:\n  web:\n    image: x\n", "networks.back.name: is only kept for external networks"),
        ("networks: {back: {external: true, internal: true}}\nservices:\n  web:\n    image: x\n", "networks.back: is external, so the device does not create it: remove internal"),
        ("services:\n  web:\n    image: x\n    secrets: [token]\n", "services.web.secrets[0]: \"token\" is not declared under the top-level secrets"),
        ("secrets: {token: {environment: TOKEN}}\nservices:\n  web:\n    image: x\n", "secrets.token.environment: would put the value into the artifact"),
        ("configs: {app: {content: \"a=1\"}}\nservices:\n  web:\n    image: x\n", "configs.app.content: would put the value into the artifact"),
        ("secrets: {token: {file: ./t}}\nservices:\n  web:\n    image: x\n    secrets: [{source: token, mode: 0400}]\n", "services.web.secrets[0].mode: is not supported: the device's file is mounted read-only as it is"),
        ("configs: {app: {file: ./a}}\nservices:\n  web:\n    image: x\n    configs: [{source: app, target: etc/app}]\n", "services.web.configs[0]: target \"etc/app\" is not an absolute path"),
        ("secrets: {token: {file: ./t, name: ../x}}\nservices:\n  web:\n    image: x\n", "secrets.token: secret name \"../x\" is not valid"),
        ("volumes: {data: {driver: nfs}}\nservices:\n  web:\n    image: x\n", "volumes.data.driver: is not supported"),
        ("services:\n  web:\n    image: x\n    logging: {driver: syslog, format: x}\n", "services.web.logging.format: is not a logging key"),
        ("services:\n  web:\n    image: x\n    ulimits: {nofile: {soft: 1}}\n", "services.web.ulimits.nofile: has no whole number hard"),
        ("services:\n  web:\n    image: x\n    stop_grace_period: soon\n", "services.web.stop_grace_period: duration \"soon\" is not like 30s"),
        ("services:\n  web:\n    image: x\n    command: \"echo 'open\"\n", "services.web.command: "),
        ("services:\n  web:\n    image: x\n    tmpfs: [tmp]\n", "services.web.tmpfs[0]: \"tmp\" is not an absolute path"),
        ("services:\n  web:\n    image: x\n    devices: [\"dev/x\"]\n", "services.web.devices[0]: "),
        ("services:\n  web:\n    image: x\n    privileged: yes-please\n", "services.web.privileged: is not true or false"),
    ];
    assert!(one(base).is_ok());
    for (yaml, want) in cases {
        let err = one(yaml).expect_err(yaml);
        assert!(
            err.starts_with(want),
            "{yaml}\n  got:  {err}\n  want: {want}…"
        );
        assert!(!err.contains('\n'), "{err}");
    }
    // --image for a service the files do not have.
    let options = Options {
        project: "p".into(),
        images: [("nope".to_string(), "x".to_string())].into(),
        platform: None,
    };
    assert_eq!(
        one_with(base, &options).unwrap_err(),
        "--image nope=…: the compose files have no service \"nope\""
    );
}

#[test]
fn services_join_compose_networks_under_their_names() {
    let yaml = "networks:\n  back: {internal: true}\n  lan: {external: true, name: plant-lan}\n  unused: {}\n\
                services:\n  db:\n    image: x\n    networks: {back: {aliases: [database]}}\n  \
                web:\n    image: x\n    networks: [default, back, lan]\n  \
                cache:\n    image: x\n  \
                probe:\n    image: x\n    network_mode: host\n";
    let yaml = yaml.replace("image: x", &format!("image: {D}"));
    let meta = one(&yaml).unwrap();
    let stack = &meta["docker-stack"];
    // Only the networks some service joins; `default` is compose's implicit one.
    assert_eq!(
        stack["networks"],
        json!({"back": {"internal": true}, "default": {}, "lan": {"external": true, "name": "plant-lan"}})
    );
    let c = containers(&meta);
    assert_eq!(
        c["proj-db-1"]["networks"],
        json!({"back": ["db", "database"]})
    );
    assert_eq!(
        c["proj-web-1"]["networks"],
        json!({"default": ["web"], "back": ["web"], "lan": ["web"]})
    );
    assert_eq!(c["proj-cache-1"]["networks"], json!({"default": ["cache"]}));
    assert_eq!(c["proj-probe-1"].get("networks"), None);
    let release = docker_spec::parse(&meta).unwrap();
    let engine: Vec<&str> = release.networks.iter().map(|n| n.engine.as_str()).collect();
    assert_eq!(engine, ["proj_back.internal", "proj_default", "plant-lan"]);
}

#[test]
fn secrets_and_configs_name_files_on_the_device_and_never_carry_them() {
    let yaml = format!(
        "secrets:\n  token: {{file: ./token.txt}}\n  cert: {{external: true, name: plant-cert}}\n\
         configs:\n  app: {{file: ./app.conf}}\n\
         services:\n  web:\n    image: {D}\n    network_mode: host\n    \
         secrets: [token, {{source: cert, target: tls.pem}}, {{source: token, target: /etc/token}}]\n    \
         configs: [app, {{source: app, target: /etc/app/app.conf}}]\n"
    );
    let meta = one(&yaml).unwrap();
    let web = &containers(&meta)["proj-web-1"];
    assert_eq!(
        web["secrets"],
        json!({"/run/secrets/token": "token", "/run/secrets/tls.pem": "plant-cert", "/etc/token": "token"})
    );
    assert_eq!(
        web["configs"],
        json!({"/app": "app", "/etc/app/app.conf": "app"})
    );
    // The files' paths on this machine are nowhere in the meta-data.
    assert!(!meta.to_string().contains("token.txt"), "{meta}");
    docker_spec::parse(&meta).unwrap();
}

#[test]
fn bad_files_are_refused_naming_the_file() {
    let cases: &[(&[(&str, &str)], &str)] = &[
        (
            &[("compose.yaml", "services: [\n")],
            "compose.yaml: not valid YAML",
        ),
        (
            &[("compose.yaml", "services:\n  a:\n    image: !custom x\n")],
            "compose.yaml: services.a.image: YAML tags",
        ),
        (
            &[(
                "compose.yaml",
                "services:\n  a:\n    image: ${TAG?set TAG in .env}\n",
            )],
            "compose.yaml: services.a.image: variable TAG is required: set TAG in .env",
        ),
        (
            &[("compose.yaml", "services:\n  a:\n    image: app:$\n")],
            "compose.yaml: services.a.image: `$` not followed",
        ),
        (
            &[(".env", "A B\n"), ("compose.yaml", "services: {}\n")],
            ".env:1: \"A B\" is not KEY=VALUE",
        ),
        (
            &[(
                "compose.yaml",
                "services:\n  a:\n    image: x\n    env_file: missing.env\n",
            )],
            "services.a.env_file[0]: cannot read",
        ),
    ];
    for (files, want) in cases {
        let err = format!(
            "{:#}",
            load_files("compose-bad", files, &["compose.yaml"], &[]).unwrap_err()
        );
        assert!(
            err.contains(want),
            "{files:?}\n  got:  {err}\n  want: {want}"
        );
        assert!(!err.contains('\n'), "{err}");
    }
    // An optional env_file may be missing.
    let ok = load_files(
        "compose-optional",
        &[("compose.yaml", "services:\n  a:\n    image: x\n    network_mode: host\n    env_file: [{path: missing.env, required: false}]\n")],
        &["compose.yaml"],
        &[],
    );
    assert!(ok.is_ok(), "{ok:?}");
}
