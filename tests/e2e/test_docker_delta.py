"""Delta artifacts (`docker-artifact-gen --inline --base`) through the real Mender client, on a device
with no registry: each release's image is a shared base layer (busybox and a 2 MiB runtime) under a
small layer of its own, and each delta carries only that small layer. The client enforces the delta's
depends on the base version; the module refuses a delta whose base layers the engine lacks, in
Download, with nothing changed."""

from __future__ import annotations

import json
import os
import random
import subprocess
from pathlib import Path

import pytest

import bench
from docker_helpers import DockerDevice, container, module_errors, module_lines, stack_meta
from test_docker_inline import airgapped, rewrite_member  # noqa: F401  (airgapped: the fixture)

pytestmark = pytest.mark.bench

GENERATOR = ("docker-artifact-gen", "docker-artifact-gen")
STACK = "edge"
PROVIDE = f"data-partition.{STACK}.version"


def noise(n: int, seed: int) -> bytes:
    """Incompressible bytes, so artifact sizes show what travels."""
    return random.Random(seed).randbytes(n)


def release_images(device: DockerDevice) -> dict[int, str]:
    """demo/app:1…4 over one base; 4 exits at once, so its install fails. Returns version → image ID."""
    bench.make_busybox_image(device.dockerd, "demo/base:1", extra_files={"/opt/runtime.bin": noise(2 << 20, 0)})
    ids = {}
    for v in (1, 2, 3, 4):
        cmd = ("sh", "-c", "exit 3") if v == 4 else ("sleep", "3600")
        ids[v] = bench.make_layered_image(device.dockerd, f"demo/app:{v}", "demo/base:1",
                                          {"/opt/app.bin": noise(64 << 10, v)}, cmd=cmd)
    return ids


def generate(device: DockerDevice, rust_binary, version: int, *extra: str, name: str | None = None) -> Path:
    name = name or f"{STACK}-{version}"
    spec_path = device.workdir / f"{name}.json"
    spec_path.write_text(json.dumps(stack_meta(STACK, [container("app", f"demo/app:{version}")])))
    out = device.workdir / f"{name}.mender"
    result = subprocess.run(
        [str(rust_binary(*GENERATOR)), "-n", name, "-t", device.sandbox.device_type, "--inline",
         "--spec", str(spec_path), "--software-version", str(version), "-o", str(out), *extra],
        capture_output=True, text=True, timeout=600,
        env={**os.environ, "DOCKER_HOST": f"unix://{device.dockerd.socket}"})
    assert result.returncode == 0, result.stderr
    return out


@pytest.fixture
def releases(airgapped, rust_binary):  # noqa: F811
    """Full release 1, deltas 2 (base 1), 3 (base 2) and 4 (base 3), a full release 2; then the
    engine is emptied, so the device has only what artifacts bring."""
    device = airgapped
    ids = release_images(device)
    a = {1: generate(device, rust_binary, 1)}
    for v in (2, 3, 4):
        a[v] = generate(device, rust_binary, v, "--base", str(a[v - 1]))
    a["2-full"] = generate(device, rust_binary, 2, name=f"{STACK}-2-full")
    device.dockerd.docker("image", "rm", "-f", *ids.values(), "demo/base:1")
    assert device.snapshot().images == set()
    return device, ids, a


def running_image(device: DockerDevice) -> str:
    snap = device.snapshot()
    assert snap.running() == {"app"}, snap.containers
    return snap.containers["app"][2]


def test_deltas_carry_only_the_changed_layer_install_over_their_base_and_roll_back(releases):
    device, ids, a = releases
    full, delta = a["2-full"].stat().st_size, a[2].stat().st_size
    # The base layer (busybox and 2 MiB of noise) stays home; the 64 KiB layer and meta-data travel.
    assert full > 2 << 20 and delta < 200 << 10, (full, delta)
    out = subprocess.run(["mender-artifact", "read", str(a[2])], capture_output=True, text=True, check=True)
    assert f"{PROVIDE}: 1" in out.stdout.split("Depends:")[1].split("Clears")[0], out.stdout

    device.deploy(a[1])
    assert running_image(device) == ids[1]

    install = device.install(a[2])

    assert install.returncode == 0, install.stderr
    lines = module_lines(install.stderr)
    assert any("the 1 layer(s) the delta's inline archives leave out are on the device" in l for l in lines), lines
    assert any(l.startswith("docker: loaded inline archive images.tar") for l in lines), lines
    assert device.mender("commit").returncode == 0
    assert running_image(device) == ids[2]
    assert device.sandbox.provides()[PROVIDE] == "2"

    # Release 2's Cleanup pruned images; the committed release's image still holds the base, so
    # the next delta finds it.
    device.deploy(a[3])
    assert running_image(device) == ids[3]
    kept = device.snapshot()
    assert ids[1] not in kept.images, "the release before the committed one is pruned"

    install = device.install(a[4])  # its container exits at once

    assert install.returncode != 0, install.stderr
    after = device.snapshot()
    assert after.ids() == kept.ids() and running_image(device) == ids[3], "release 3's container is back"
    assert ids[4] not in after.images, "what the failed delta loaded is gone"
    assert device.sandbox.provides()[PROVIDE] == "3"


def test_a_delta_for_another_base_version_is_refused_by_the_client(releases):
    device, ids, a = releases
    device.deploy(a[1])
    before = device.snapshot()

    install = device.install(a[3])  # needs release 2

    assert install.returncode != 0
    assert PROVIDE in install.stderr and "depend" in install.stderr.lower(), install.stderr[-2000:]
    assert not module_lines(install.stderr), "the module never ran"
    assert device.snapshot().containers == before.containers
    assert device.sandbox.provides()[PROVIDE] == "1"


def test_a_delta_whose_base_layers_were_removed_by_hand_is_refused_in_download(releases):
    device, ids, a = releases
    device.deploy(a[1])
    # Someone cleared the engine by hand; the client still believes release 1 is there.
    device.dockerd.docker("rm", "-f", "app")
    device.dockerd.docker("image", "rm", "-f", ids[1])
    before = device.snapshot()
    assert before.images == set()

    install = device.install(a[2])

    assert install.returncode != 0
    errors = module_errors(install.stderr)
    assert errors and "Download" in errors[0], install.stderr[-3000:]
    assert "inline archive images.tar is a delta: it leaves out layer sha256:" in errors[0], errors[0]
    assert "deploy the full artifact" in errors[0] and "\n" not in errors[0], errors[0]
    assert device.snapshot() == before, "nothing loaded, nothing created"
    assert device.sandbox.provides()[PROVIDE] == "1"

    # What the message says to do works.
    device.deploy(a["2-full"])
    assert running_image(device) == ids[2]


def test_a_delta_with_altered_layer_bytes_is_refused_in_download_with_nothing_changed(releases):
    device, ids, a = releases
    device.deploy(a[1])
    before = device.snapshot()
    # The delta's own payload and meta-data, its carried layer altered, wrapped again with the same
    # depends: as a broken download or an attacker would leave it (the artifact's checksums match).
    dump = device.workdir / "dump"
    subprocess.run(["mender-artifact", "dump", "--files", str(dump / "files"), "--meta-data", str(dump / "meta"),
                    str(a[2])], check=True, capture_output=True)
    payload = dump / "files" / "images.tar"
    altered = rewrite_member(payload, device.workdir / "images.tar", lambda n: n.endswith("/layer.tar"),
                             lambda d: d[:-1024] + bytes(b ^ 0xFF for b in d[-1024:]))
    meta = json.loads((dump / "meta" / "0000.meta-data").read_text())
    assert meta["docker-stack"]["inline"]["images.tar"]["layers"][ids[2]]["on_device"], meta
    meta["docker-stack"]["inline"]["images.tar"]["size"] = altered.stat().st_size
    artifact = bench.mender_artifact_write_module(
        device.workdir / "altered.mender", type="docker", name=f"{STACK}-2", device_type=device.sandbox.device_type,
        files=[altered], meta_data=meta, software_filesystem="data-partition", software_name=STACK,
        software_version="2", depends={PROVIDE: "1"})

    install = device.install(artifact)

    assert install.returncode != 0
    errors = module_errors(install.stderr)
    assert errors and "Download" in errors[0] and "inline archive images.tar was refused" in errors[0], \
        install.stderr[-3000:]
    assert device.snapshot() == before, "nothing of the load is kept"
    assert device.sandbox.provides()[PROVIDE] == "1"
