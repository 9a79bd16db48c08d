"""Our docker-artifact-gen against the bench's private engine and registry, the artifact installed
by the real Mender client in a sandboxed device, and the device's inventory script reading back what
runs."""

from __future__ import annotations

import io
import json
import os
import subprocess
import tarfile

import pytest

import bench
from bench.system import run
from docker_helpers import MODULE_PACKAGE, container, device, stack_meta  # noqa: F401  (fixture)

pytestmark = pytest.mark.bench

GENERATOR = ("docker-artifact-gen", "docker-artifact-gen")
INVENTORY = (MODULE_PACKAGE, "mender-inventory-docker")


def generate(device, rust_binary, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    env = {**os.environ, **device.dockerd.env, "SOURCE_DATE_EPOCH": "1700000000"}
    return run([str(rust_binary(*GENERATOR)), *args], env=env, cwd=device.workdir, check=check, timeout=120)


def artifact_info(path) -> str:
    return run(["mender-artifact", "read", str(path)], timeout=60).stdout


def meta_data(path) -> dict:
    """The update's meta-data as stored (`mender-artifact read` cannot show nested objects)."""
    with tarfile.open(path) as outer:
        header = outer.extractfile("header.tar.gz").read()
    with tarfile.open(fileobj=io.BytesIO(header), mode="r:gz") as inner:
        return json.loads(inner.extractfile("headers/0000/meta-data").read())


def inventory(device, rust_binary) -> tuple[dict[str, list[str]], subprocess.CompletedProcess]:
    result = device.sandbox.run([str(rust_binary(*INVENTORY))], check=False, env=device.env, timeout=30)
    attrs: dict[str, list[str]] = {}
    for line in result.stdout.splitlines():
        key, sep, value = line.partition("=")
        assert sep, f"not a key=value line: {line!r}"
        attrs.setdefault(key, []).append(value)
    return attrs, result


def test_generated_stack_installs_and_shows_in_the_inventory(device, rust_binary, tmp_path):
    # web only as a local tag (the generator must find its digest); worker already pinned.
    web = device.image("gen/web", "1", keep_local=True)
    worker = device.image("gen/worker", "1")
    web_tag = f"{device.registry.addr}/gen/web:1"
    spec = tmp_path / "web.json"
    spec.write_text(json.dumps(stack_meta("web", [container("web", web_tag), container("worker", worker)])))
    out = device.workdir / "web-1.mender"

    generate(device, rust_binary, "-n", "web-1", "-t", device.sandbox.device_type, "--software-version", "1.0",
             "--spec", str(spec), "-o", str(out))

    info = artifact_info(out)
    assert "data-partition.web.version: 1.0" in info, info
    assert "data-partition.web.*" in info, info
    assert "Invalid metadata" not in info, "valid artifact meta-data (no objects inside lists)"
    stack = meta_data(out)["docker-stack"]
    images = [stack["containers"][name]["image"] for name in stack["start_order"]]
    assert images == [web.replace("/gen/web@", "/gen/web:1@"), worker], "the tag kept, both pinned"

    device.deploy(out)
    assert device.sandbox.provides()["data-partition.web.version"] == "1.0"
    assert device.snapshot().running() == {"web", "worker"}

    attrs, result = inventory(device, rust_binary)

    assert result.returncode == 0, result.stderr
    assert attrs["docker_stacks"] == ["web"]
    assert attrs["docker_stack_web_version"] == ["web-1"]
    assert attrs["docker_stack_web_state"] == ["running"]
    assert attrs["docker_stack_web_containers"] == ["web", "worker"]
    assert attrs["docker_stack_web_images"] == [web, worker]


def test_legacy_command_line_defaults_to_the_data_partition(device, rust_binary):
    app = device.image("gen/app", "2", keep_local=True)
    out = device.workdir / "app-2.mender"

    generate(device, rust_binary, "-n", "app-2", "-t", device.sandbox.device_type, "--run-args",
             "--network none", "-o", str(out), f"{device.registry.addr}/gen/app:2", "--", "--provides",
             "extra.key:x")

    info = artifact_info(out)
    assert "data-partition.docker.version: app-2" in info, info
    assert "data-partition.docker.*" in info, info
    assert "extra.key: x" in info, "arguments after -- reach mender-artifact:\n" + info
    assert meta_data(out) == {"containers": [app], "run_args": "--network none"}

    # A tag that never reached a registry: one line saying to push it.
    bench.make_busybox_image(device.dockerd, "local/unpushed:1")
    bad = generate(device, rust_binary, "-n", "x", "-t", "t", "-o", str(device.workdir / "x.mender"),
                   "local/unpushed:1", check=False)
    assert bad.returncode != 0
    lines = bad.stderr.strip().splitlines()
    assert len(lines) == 1 and "push it to a registry first" in lines[0], bad.stderr


def test_inventory_reports_an_unreachable_engine_on_stderr(device, rust_binary):
    device.configure(socket=str(device.workdir / "no-such.sock"))

    attrs, result = inventory(device, rust_binary)

    assert result.returncode == 1
    assert attrs == {}
    assert len(result.stderr.strip().splitlines()) == 1 and "unreachable" in result.stderr, result.stderr
