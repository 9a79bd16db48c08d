"""docker-artifact-gen --compose end to end: a compose project (two files, .env, env_file, a service
built locally) translated on the host, carried inline, installed by the real Go client with the
bench's engine, and started along its depends_on; a release whose service never turns healthy is
rolled back to the same containers. Debian's docker-compose is the reference for what the files mean
once merged and interpolated.

The bench's engine has no bridge, so every service here says network_mode: none (stack networks,
which need one, are not built yet)."""

from __future__ import annotations

import json
import os
import subprocess
import shutil
import time
from pathlib import Path

import pytest
import yaml

import bench
from bench.system import run
from docker_helpers import device  # noqa: F401  (fixture)
from test_docker_gen_inline import EPOCH, GENERATOR, meta_data
from test_docker_graph import events, first

pytestmark = pytest.mark.bench

COMPOSE = """\
x-common: &common
  network_mode: none
  restart: unless-stopped
  stop_grace_period: 2s
services:
  db:
    <<: *common
    image: shop/db:${DB_TAG:-1}
    command: ["sh", "-c", "sleep 2; touch /tmp/ready; exec sleep 3600"]
    healthcheck:
      test: test -f /tmp/ready
      interval: 1s
      retries: 30
    stop_signal: SIGINT
    init: true
    ulimits:
      nofile: {soft: 1024, hard: 2048}
    shm_size: 16m
    volumes:
      - dbdata:/var/lib/db
    secrets: [db_password]
  api:
    <<: *common
    build: ./api
    command: sleep 3600
    env_file: api.env
    configs:
      - source: api_conf
        target: /etc/api.conf
    environment:
      - RELEASE=${RELEASE:?set RELEASE}
      - DB_HOST=db
    depends_on:
      db:
        condition: service_healthy
    healthcheck:
      test: ["CMD", "sh", "-c", "test \\"$$API_HEALTHY\\" = yes"]
      interval: 1s
      retries: 3
  web:
    <<: *common
    image: shop/web:${WEB_TAG}
    command: sleep 3600
    depends_on: [api]
    sysctls:
      kernel.msgmax: 65536
    mem_limit: 64m
volumes:
  dbdata:
secrets:
  db_password: {file: ./db_password.txt}
configs:
  api_conf: {file: ./api.conf}
"""

SECRET = "s3cret-never-in-an-artifact"

OVERRIDE = """\
services:
  web:
    environment:
      MODE: ${MODE-production}
    labels:
      com.example.owner: shop
"""


def project(root: Path, release: str, api_healthy: str) -> Path:
    (root / "api").mkdir(parents=True, exist_ok=True)
    (root / "compose.yaml").write_text(COMPOSE)
    (root / "compose.override.yaml").write_text(OVERRIDE)
    (root / ".env").write_text(f"WEB_TAG=1\nRELEASE={release}\n")
    (root / "api.env").write_text(f"API_HEALTHY={api_healthy}\nFROM_ENV_FILE=1\n")
    (root / "db_password.txt").write_text(SECRET)
    (root / "api.conf").write_text("level=info\n")
    return root


def provision(device, kind: str, name: str, text: str) -> None:
    """What the device's owner does once: the file a secret or config names, where the module reads it."""
    path = device.state_dir / "files" / "shop" / kind / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(0o600)


def generate(device, root: Path, name: str, *extra: str, check: bool = True) -> subprocess.CompletedProcess:
    env = {**os.environ, **device.dockerd.env, "SOURCE_DATE_EPOCH": str(EPOCH)}
    env.pop("RELEASE", None)
    return run([str(device.rust_binary(*GENERATOR)), "-n", name, "-t", device.sandbox.device_type,
                "--compose", "compose.yaml", "--compose", "compose.override.yaml", "--project-name", "shop",
                "--software-version", name, "--inline", "-o", str(device.workdir / f"{name}.mender"), *extra],
               env=env, cwd=root, check=check, timeout=300)


def unescape(value):
    """`docker-compose config` writes `$` as `$$` so that its output is a compose file again."""
    if isinstance(value, str):
        return value.replace("$$", "$")
    if isinstance(value, list):
        return [unescape(v) for v in value]
    if isinstance(value, dict):
        return {k: unescape(v) for k, v in value.items()}
    return value


def inspect(device, name: str) -> dict:
    return json.loads(device.dockerd.docker("inspect", name).stdout)[0]


@pytest.fixture
def shop(device, rust_binary, tmp_path):
    device.rust_binary = rust_binary
    # The module mounts secrets from its state directory, and the bench's engine runs outside the
    # device sandbox: a state directory outside /data is the same path on both sides (the sandbox
    # binds the host's directories but /data), as module and engine share one filesystem on a device.
    device.state_dir = tmp_path / "module-state"
    device.configure(state_dir=str(device.state_dir))
    bench.make_busybox_image(device.dockerd, "shop/db:1", extra_files={"/etc/version": "db 1\n"})
    bench.make_busybox_image(device.dockerd, "shop/web:1", extra_files={"/etc/version": "web 1\n"})
    # What `docker compose build` tags for the service api of project shop.
    bench.make_busybox_image(device.dockerd, "shop-api", extra_files={"/etc/version": "api 1\n"})
    return device


def test_a_compose_project_deploys_along_its_graph_and_rolls_back(shop, tmp_path):
    device = shop
    root = project(tmp_path / "proj", "1.0", "yes")
    generate(device, root, "shop-1.0")
    artifact = device.workdir / "shop-1.0.mender"
    meta = meta_data(artifact)["docker-stack"]
    assert meta["stack"] == "shop"
    assert sorted(meta["containers"]) == ["shop-api-1", "shop-db-1", "shop-web-1"]
    assert SECRET.encode() not in artifact.read_bytes(), "a secret never travels in an artifact"
    assert meta["containers"]["shop-db-1"]["secrets"] == {"/run/secrets/db_password": "db_password"}

    # Not provisioned yet: refused in Download, nothing changed.
    result = device.install(artifact)
    assert result.returncode != 0
    assert "secret db_password of container shop-db-1 (stack shop) is not on the device" in result.stderr
    assert device.snapshot().containers == {}
    provision(device, "secrets", "db_password", "from-the-device")
    provision(device, "configs", "api_conf", "level=debug\n")

    since = time.time()
    device.deploy(artifact)
    evs = events(device, since)
    # api waits for db's health, web for api's start.
    assert first(evs, "shop-1.0", "shop-api-1", "start") > first(evs, "shop-1.0", "shop-db-1", "health_status: healthy")
    assert first(evs, "shop-1.0", "shop-web-1", "start") > first(evs, "shop-1.0", "shop-api-1", "start")

    db, api, web = (inspect(device, f"shop-{s}-1") for s in ("db", "api", "web"))
    for c in (db, api, web):
        assert c["State"]["Running"], c["Name"]
        assert c["HostConfig"]["NetworkMode"] == "none"
        assert c["HostConfig"]["RestartPolicy"]["Name"] == "unless-stopped"
        assert c["Config"]["StopTimeout"] == 2
    api_env = dict(e.split("=", 1) for e in api["Config"]["Env"])
    assert {k: api_env[k] for k in ("RELEASE", "DB_HOST", "API_HEALTHY", "FROM_ENV_FILE")} == \
        {"RELEASE": "1.0", "DB_HOST": "db", "API_HEALTHY": "yes", "FROM_ENV_FILE": "1"}
    assert db["Config"]["StopSignal"] == "SIGINT"
    assert db["HostConfig"]["Init"] is True
    assert db["HostConfig"]["Ulimits"] == [{"Name": "nofile", "Soft": 1024, "Hard": 2048}]
    assert db["HostConfig"]["ShmSize"] == 16 << 20
    assert [m["Name"] for m in db["Mounts"] if m["Type"] == "volume"] == ["shop_dbdata"]
    assert device.dockerd.docker("exec", "shop-db-1", "cat", "/run/secrets/db_password").stdout == "from-the-device"
    assert device.dockerd.docker("exec", "shop-api-1", "cat", "/etc/api.conf").stdout == "level=debug\n"
    assert device.dockerd.docker("exec", "shop-db-1", "sh", "-c", "echo x > /run/secrets/db_password",
                                 check=False).returncode != 0, "read-only"
    assert web["HostConfig"]["Sysctls"] == {"kernel.msgmax": "65536"}
    assert web["HostConfig"]["Memory"] == 64 << 20
    assert web["Config"]["Labels"]["com.example.owner"] == "shop"
    assert "MODE=production" in web["Config"]["Env"]
    before = device.snapshot()

    # 2.0: api never turns healthy; the install fails at the health gate and 1.0 comes back.
    root2 = project(tmp_path / "proj2", "2.0", "no")
    generate(device, root2, "shop-2.0")
    result = device.install(device.workdir / "shop-2.0.mender")
    assert result.returncode != 0
    after = device.snapshot()
    assert {n: v[:2] for n, v in after.containers.items()} == {n: v[:2] for n, v in before.containers.items()}
    assert device.mender("show-artifact").stdout.strip() == "shop-1.0"


def test_docker_compose_reads_the_files_as_the_generator_does(shop, tmp_path):
    """Debian's docker-compose (1.29) merges and interpolates the same project; what it resolves
    for each service is what the generator's docker-stack says."""
    compose = shutil.which("docker-compose")
    assert compose, "docker-compose is installed by scripts/setup"
    device = shop
    root = project(tmp_path / "proj", "1.0", "yes")
    env = {**os.environ, "WEB_TAG": "7", "MODE": "test"}
    env.pop("RELEASE", None)
    reference = yaml.safe_load(run([compose, "-p", "shop", "-f", "compose.yaml", "-f", "compose.override.yaml",
                                    "config"], env=env, cwd=root, timeout=120).stdout)["services"]
    reference = unescape(reference)
    generate_env = {**device.dockerd.env, "WEB_TAG": "7", "MODE": "test"}
    bench.make_busybox_image(device.dockerd, "shop/web:7")
    result = run([str(device.rust_binary(*GENERATOR)), "-n", "ref", "-t", device.sandbox.device_type,
                  "--compose", "compose.yaml", "--compose", "compose.override.yaml", "--project-name", "shop",
                  "--inline", "-o", str(device.workdir / "ref.mender")],
                 env={**os.environ, **generate_env, "SOURCE_DATE_EPOCH": str(EPOCH)}, cwd=root, timeout=300)
    assert result.returncode == 0
    ours = meta_data(device.workdir / "ref.mender")["docker-stack"]["containers"]
    assert sorted(ours) == sorted(f"shop-{s}-1" for s in reference)
    for service, ref in reference.items():
        c = ours[f"shop-{service}-1"]
        assert c.get("env", {}) == {k: str(v) for k, v in (ref.get("environment") or {}).items()}, service
        assert c["command"] == (ref["command"] if isinstance(ref["command"], list) else ref["command"].split())
        if "image" in ref:
            assert c["image"].startswith(ref["image"] + "@sha256:"), (c["image"], ref["image"])
        conditions = {f"shop-{d}-1": v["condition"] for d, v in (ref.get("depends_on") or {}).items()}
        assert c.get("depends_on", {}) == conditions, service
        assert c.get("labels", {}) == (ref.get("labels") or {}), service
        assert c["network_mode"] == ref["network_mode"]
        assert c["restart"] == ref["restart"]
        assert c.get("sysctls", {}) == {k: str(v) for k, v in (ref.get("sysctls") or {}).items()}
        if "healthcheck" in ref:
            test = ref["healthcheck"]["test"]
            assert c["healthcheck"]["test"] == (["CMD-SHELL", test] if isinstance(test, str) else test)
    # The variables it was given.
    assert ours["shop-web-1"]["env"]["MODE"] == "test"


# -- stack networks, on an engine with bridge networking ----------------------------------------------

NETWORKED = """\
services:
  db:
    image: shop/db:1
    command: ["sh", "-c", "sleep 1; touch /tmp/ready; exec httpd -f -p 5432 -h /www"]
    healthcheck: {test: test -f /tmp/ready, interval: 1s, retries: 30}
    networks: [back]
  api:
    image: shop/api:${API_TAG}
    command: ["httpd", "-f", "-p", "${API_PORT:-8080}", "-h", "/www"]
    depends_on:
      db: {condition: service_healthy}
    networks:
      back: {aliases: [backend]}
      default:
    healthcheck:
      test: wget -q -O /dev/null http://db:5432/ && wget -q -O /dev/null http://localhost:8080/
      interval: 1s
      retries: 5
  web:
    image: shop/web:1
    command: ["httpd", "-f", "-p", "80", "-h", "/www"]
    ports: ["127.0.0.1:8080:80"]
    depends_on: [api]
    healthcheck:
      test: ["CMD", "wget", "-q", "-O", "/dev/null", "http://api:8080/"]
      interval: 1s
      retries: 5
networks:
  back: {internal: "${BACK_INTERNAL}"}
"""


@pytest.fixture
def bridged(sandbox, bridged_dockerd, registry, rust_binary, tmp_path):
    from docker_helpers import MODULE_BINARY, MODULE_PACKAGE, DockerDevice
    d = DockerDevice(sandbox, bridged_dockerd, registry, tmp_path / "work")
    d.install_module(rust_binary(MODULE_PACKAGE, MODULE_BINARY))
    d.configure(health_timeout=30)
    d.rust_binary = rust_binary
    for name, version in (("db", "1"), ("api", "1"), ("api", "2"), ("web", "1")):
        bench.make_busybox_image(bridged_dockerd, f"shop/{name}:{version}",
                                 extra_files={"/www/index.html": f"{name} {version}\n"})
    return d


def networked_artifact(device, root: Path, name: str, **env: str) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "compose.yaml").write_text(NETWORKED)
    run([str(device.rust_binary(*GENERATOR)), "-n", name, "-t", device.sandbox.device_type,
         "--compose", "compose.yaml", "--project-name", "shop", "--software-version", name, "--inline",
         "-o", str(device.workdir / f"{name}.mender")],
        env={**os.environ, **device.dockerd.env, "SOURCE_DATE_EPOCH": str(EPOCH), **env}, cwd=root, timeout=300)
    return device.workdir / f"{name}.mender"


def shop_networks(device) -> dict[str, bool]:
    """The engine's networks labelled as stack shop's: name -> internal."""
    names = device.dockerd.docker("network", "ls", "--filter", "label=io.mender.composable.stack=shop",
                                  "--format", "{{.Name}}").stdout.split()
    return {n: json.loads(device.dockerd.docker("network", "inspect", n).stdout)[0]["Internal"] for n in names}


def fetch_in(device, container: str, url: str) -> str:
    return device.dockerd.docker("exec", container, "wget", "-q", "-O", "-", url).stdout


def test_a_compose_stack_on_its_own_networks_finds_services_by_name_and_rolls_back_its_networks(bridged, tmp_path):
    device = bridged
    v1 = networked_artifact(device, tmp_path / "v1", "shop-1", API_TAG="1", BACK_INTERNAL="true")
    assert meta_data(v1)["docker-stack"]["networks"] == {"back": {"internal": True}, "default": {}}
    device.deploy(v1)
    assert shop_networks(device) == {"shop_back.internal": True, "shop_default": False}
    # Found by service name and by alias on the networks they share; published on the host side.
    assert fetch_in(device, "shop-web-1", "http://api:8080/") == "api 1\n"
    assert fetch_in(device, "shop-api-1", "http://db:5432/") == "db 1\n"
    assert fetch_in(device, "shop-db-1", "http://backend:8080/") == "api 1\n"
    assert device.dockerd.http_get_in_netns(8080) == (200, b"web 1\n")
    db = inspect(device, "shop-db-1")
    assert sorted(db["NetworkSettings"]["Networks"]) == ["shop_back.internal"]
    assert sorted(inspect(device, "shop-api-1")["NetworkSettings"]["Networks"]) == ["shop_back.internal", "shop_default"]
    before = device.snapshot()

    # 2.0 turns back into a routed network and moves api to a port its healthcheck does not ask:
    # api never turns healthy, and the rollback brings back the same containers on the same networks.
    v2_bad = networked_artifact(device, tmp_path / "v2-bad", "shop-2-bad", API_TAG="2", API_PORT="9090",
                                BACK_INTERNAL="false")
    result = device.install(v2_bad)
    assert result.returncode != 0
    assert {n: v[:2] for n, v in device.snapshot().containers.items()} == \
        {n: v[:2] for n, v in before.containers.items()}
    assert shop_networks(device) == {"shop_back.internal": True, "shop_default": False}
    assert fetch_in(device, "shop-web-1", "http://api:8080/") == "api 1\n"
    assert device.dockerd.http_get_in_netns(8080) == (200, b"web 1\n")

    # The same change done right commits, and the network only 1 used goes.
    device.deploy(networked_artifact(device, tmp_path / "v2", "shop-2", API_TAG="2", BACK_INTERNAL="false"))
    assert shop_networks(device) == {"shop_back": False, "shop_default": False}
    assert fetch_in(device, "shop-web-1", "http://api:8080/") == "api 2\n"
    assert fetch_in(device, "shop-db-1", "http://backend:8080/") == "api 2\n"
    assert device.dockerd.http_get_in_netns(8080) == (200, b"web 1\n")


def test_images_for_another_platform_are_refused_before_anything_is_written(shop, tmp_path):
    device = shop
    root = project(tmp_path / "proj", "1.0", "yes")
    host = json.loads(device.dockerd.docker("image", "inspect", "shop/web:1").stdout)[0]
    platform = f"{host['Os']}/{host['Architecture']}"
    other = "linux/arm64" if host["Architecture"] != "arm64" else "linux/amd64"
    out = device.workdir / "x.mender"
    env = {**os.environ, **device.dockerd.env, "WEB_TAG": "1"}
    args = [str(device.rust_binary(*GENERATOR)), "-n", "x", "-t", "qemux86-64", "--compose", "compose.yaml",
            "--project-name", "shop", "--inline", "-o", str(out)]
    refused = run([*args, "--platform", other], env=env, cwd=root, check=False, timeout=300)
    assert refused.returncode != 0
    assert f"image shop-api is {platform}, but the device is {other} (--platform)" in refused.stderr, refused.stderr
    assert not out.exists()
    assert run([*args, "--platform", platform], env=env, cwd=root, timeout=300).returncode == 0
