"""Inline images through the real Mender client with no registry running: the archives travel in the
artifact and the docker module streams them into the bench's real engine during Download.

The good artifacts come from our generator (`docker-artifact-gen --inline`); the damaged ones are
written by hand with mender-artifact around an archive cut short or altered, as a broken download or
an attacker would leave it (the artifact's own checksums match: only the module can notice)."""

from __future__ import annotations

import io
import json
import os
import subprocess
import tarfile
from pathlib import Path

import pytest

import bench
from docker_helpers import (
    MODULE_BINARY,
    MODULE_PACKAGE,
    STACK_LABEL,
    DockerDevice,
    container,
    module_errors,
    module_lines,
    stack_meta,
)

pytestmark = pytest.mark.bench

GENERATOR = ("docker-artifact-gen", "docker-artifact-gen")
STACK = "edge"


@pytest.fixture
def airgapped(sandbox, dockerd, rust_binary, tmp_path) -> DockerDevice:
    """A device whose engine can reach no registry: none runs for this test, and the module's
    configuration names none."""
    d = DockerDevice(sandbox, dockerd, None, tmp_path / "work")
    d.install_module(rust_binary(MODULE_PACKAGE, MODULE_BINARY))
    d.configure()
    return d


def local_image(device: DockerDevice, ref: str, version: str) -> str:
    """A busybox image only in the local engine, never pushed anywhere; returns its ID."""
    return bench.make_busybox_image(device.dockerd, ref, cmd=["sleep", "3600"],
                                    extra_files={"/etc/version": f"{ref} {version}\n"})


def generate(device: DockerDevice, rust_binary, name: str, spec: dict, *extra: str) -> Path:
    """Our generator with --inline against the bench's engine."""
    spec_path = device.workdir / f"{name}.json"
    spec_path.write_text(json.dumps(spec))
    out = device.workdir / f"{name}.mender"
    result = subprocess.run(
        [str(rust_binary(*GENERATOR)), "-n", name, "-t", device.sandbox.device_type, "--inline",
         "--spec", str(spec_path), "--software-version", name.rsplit("-", 1)[-1], "-o", str(out), *extra],
        capture_output=True, text=True, timeout=600,
        env={**os.environ, "DOCKER_HOST": f"unix://{device.dockerd.socket}"})
    assert result.returncode == 0, result.stderr
    return out


def stack_spec(image: str) -> dict:
    return stack_meta(STACK, [container("app", image)])


def save(device: DockerDevice, ref: str, path: Path) -> Path:
    device.dockerd.docker("save", "-o", str(path), ref)
    return path


def hand_made(device: DockerDevice, name: str, archive: Path, image_id: str, *,
              size: int | None = None) -> Path:
    """An artifact around `archive` whose meta-data lists `image_id` (and `size`, if given)."""
    entry = {"images": [image_id]}
    if size is not None:
        entry["size"] = size
    meta = stack_meta(STACK, [container("app", f"demo/app:x@{image_id}")], inline={"images.tar": entry})
    payload = device.workdir / name / "images.tar"
    payload.parent.mkdir(parents=True, exist_ok=True)
    payload.write_bytes(archive.read_bytes())
    return bench.mender_artifact_write_module(
        device.workdir / f"{name}.mender", type="docker", name=name, device_type=device.sandbox.device_type,
        files=[payload], meta_data=meta, software_filesystem="data-partition", software_name=STACK,
        software_version=name)


def rewrite_member(archive: Path, out: Path, pick, change) -> Path:
    """A copy of a tar archive with one member's bytes changed (its header follows the new length)."""
    with tarfile.open(archive) as src, tarfile.open(out, "w", format=tarfile.GNU_FORMAT) as dst:
        for member in src.getmembers():
            data = src.extractfile(member).read() if member.isfile() else None
            if data is not None and pick(member.name):
                data = change(data)
                member.size = len(data)
            dst.addfile(member, io.BytesIO(data) if data is not None else None)
    return out


def tags(device: DockerDevice) -> dict[str, str]:
    """repo:tag → image ID, everything the engine lists."""
    out = device.dockerd.docker("images", "--no-trunc", "--format", "{{.Repository}}:{{.Tag}} {{.ID}}").stdout
    return dict(line.split() for line in out.splitlines() if line and "<none>" not in line)


def test_an_inline_artifact_installs_without_a_registry_commits_and_rolls_back(airgapped, rust_binary):
    device = airgapped
    v1 = local_image(device, "demo/app:1", "1")
    v2 = local_image(device, "demo/app:2", "2")
    a1 = generate(device, rust_binary, f"{STACK}-1", stack_spec("demo/app:1"))
    a2 = generate(device, rust_binary, f"{STACK}-2", stack_spec("demo/app:2"))
    # The device has neither image: the artifacts are all it gets.
    device.dockerd.docker("image", "rm", "-f", v1, v2)

    device.deploy(a1)

    snap = device.snapshot()
    assert snap.running() == {"app"}
    assert snap.containers["app"][2] == v1
    assert snap.containers["app"][3][STACK_LABEL] == STACK
    assert device.sandbox.provides()[f"data-partition.{STACK}.version"] == "1"
    assert tags(device) == {}, "loading tags nothing"
    first_id = snap.ids()["app"]

    install = device.install(a2)

    assert install.returncode == 0, install.stderr
    assert any(line.startswith("docker: loaded inline archive images.tar") for line in module_lines(install.stderr))
    assert device.snapshot().containers["app"][2] == v2

    rollback = device.mender("rollback")

    assert rollback.returncode == 0, rollback.stderr
    snap = device.snapshot()
    assert snap.running() == {"app"} and snap.ids()["app"] == first_id, "the same container is back"
    assert v2 not in snap.images, "what the failed update loaded is gone"
    assert device.sandbox.provides()[f"data-partition.{STACK}.version"] == "1"

    device.deploy(a2)

    assert device.snapshot().containers["app"][2] == v2
    assert device.sandbox.provides()[f"data-partition.{STACK}.version"] == "2"


def test_a_damaged_inline_archive_is_refused_in_download_with_nothing_changed(airgapped, rust_binary):
    device = airgapped
    v1 = local_image(device, "demo/app:1", "1")
    device.deploy(generate(device, rust_binary, f"{STACK}-1", stack_spec("demo/app:1")))
    v2 = local_image(device, "demo/app:2", "2")
    good = save(device, "demo/app:2", device.workdir / "good.tar")
    device.dockerd.docker("image", "rm", "-f", v2)
    # A local image holding the tag the archive carries: a load must not move it.
    holder = local_image(device, "demo/app:2", "holder")
    before = device.snapshot()
    tags_before = tags(device)
    assert tags_before["demo/app:2"] == holder

    truncated = device.workdir / "truncated.tar"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    layer = rewrite_member(good, device.workdir / "layer.tar", lambda n: n.endswith("/layer.tar"),
                           lambda d: d[:-1024] + bytes(b ^ 0xFF for b in d[-1024:]))
    config = rewrite_member(good, device.workdir / "config.tar",
                            lambda n: n.endswith(".json") and "/" not in n and n != "manifest.json",
                            lambda d: d.replace(b'"Cmd":["sleep","3600"]', b'"Cmd":["sleep","7200"]'))
    cases = {
        "truncated": (hand_made(device, f"{STACK}-cut", truncated, v2), "truncated"),
        "stated size": (hand_made(device, f"{STACK}-size", good, v2, size=good.stat().st_size + 1),
                        "but the artifact states"),
        "altered layer": (hand_made(device, f"{STACK}-layer", layer, v2), "was refused"),
        "altered config": (hand_made(device, f"{STACK}-config", config, v2),
                           "is not the archive the artifact's meta-data describes"),
    }
    for what, (artifact, want) in cases.items():
        install = device.install(artifact)

        assert install.returncode != 0, what
        errors = module_errors(install.stderr)
        assert errors and want in errors[0], f"{what}: {errors}\n{install.stderr[-3000:]}"
        assert "Download" in errors[0], f"{what}: refused in Download: {errors[0]}"
        after = device.snapshot()
        assert after.containers == before.containers, f"{what}: containers unchanged"
        assert after.images == before.images, f"{what}: images unchanged"
        assert tags(device) == tags_before, f"{what}: no tag moved"
        assert device.sandbox.provides()[f"data-partition.{STACK}.version"] == "1"
    assert v1 in device.snapshot().images


def test_stored_delivery_loads_in_artifact_install(airgapped, rust_binary):
    device = airgapped
    device.configure(download="store")
    v1 = local_image(device, "demo/app:1", "1")
    artifact = generate(device, rust_binary, f"{STACK}-1", stack_spec("demo/app:1"))
    device.dockerd.docker("image", "rm", "-f", v1)

    install = device.install(artifact)

    assert install.returncode == 0, install.stderr
    lines = module_lines(install.stderr)
    assert any("ArtifactInstall loads the 1 inline image(s)" in line for line in lines), lines
    assert device.snapshot().containers["app"][2] == v1
    assert device.mender("commit").returncode == 0
