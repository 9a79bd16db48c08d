"""What an inline archive can do to the engine's tags and images, through the real Mender client and
the bench's real engine (Docker 20.10): the engine's loader extracts the whole tar with Go's
archive/tar (PAX `path` and `size`, GNU long names, `./` and `..` cleaned, a later member replacing
an earlier one, symlinked directories followed) and then reads `manifest.json` and tags what its
`RepoTags` say. A load must never move or remove a tag, whatever the encoding, and a refused load
must leave no image behind.

The archives are the engine's own `docker save` output, re-encoded member by member, with a decoy
`manifest.json` the module's filter can see and a second, tagged one the engine would read."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import bench
from docker_helpers import MODULE_BINARY, MODULE_PACKAGE, DockerDevice, container, module_errors, stack_meta
from tar_craft import (directory, end, gnu_long_name, header, huge_record, member, members_of, pax, reencode,
                       symlink, write)
from test_docker_inline import STACK, hand_made, local_image, save, tags

pytestmark = pytest.mark.bench

VICTIM_TAG = "postgres:15"


@pytest.fixture
def airgapped(sandbox, dockerd, rust_binary, tmp_path) -> DockerDevice:
    d = DockerDevice(sandbox, dockerd, None, tmp_path / "work")
    d.install_module(rust_binary(MODULE_PACKAGE, MODULE_BINARY))
    d.configure()
    return d


def _pieces(good: Path) -> tuple[list[bytes], dict, dict]:
    """The archive's members except manifest.json and repositories (re-encoded), and its manifest
    without tags (the decoy) and with the victim's tag (what the attacker wants loaded)."""
    others, manifest = [], None
    for info, data in members_of(good):
        if info.name == "manifest.json":
            manifest = json.loads(data)
        elif info.name != "repositories":
            others.append(reencode(info, data))
    decoy = [{k: v for k, v in m.items() if k != "RepoTags"} for m in manifest]
    tagged = [{**m, "RepoTags": [VICTIM_TAG]} for m in manifest]
    return others, decoy, tagged


def tricks(good: Path) -> dict[str, list[bytes]]:
    """Archive bodies (without the end marker) whose tagged manifest.json is hidden from a reader
    that does not read names as the engine does."""
    others, decoy, tagged = _pieces(good)
    plain = json.dumps(decoy).encode()
    evil = json.dumps(tagged).encode()
    inner = member("manifest.json", evil)
    return {
        "renamed by a PAX path record": [
            *others, member("manifest.json", plain), pax({"path": "manifest.json"}), member("innocent.json", evil)],
        "renamed by a GNU long-name record": [
            *others, member("manifest.json", plain), gnu_long_name("manifest.json"), member("innocent.json", evil)],
        "a later ./manifest.json": [*others, member("manifest.json", plain), member("./manifest.json", evil)],
        "a later x/../manifest.json": [*others, member("manifest.json", plain), member("x/../manifest.json", evil)],
        "a later /manifest.json": [*others, member("manifest.json", plain), member("/manifest.json", evil)],
        "a ustar prefix of '.'": [*others, member("manifest.json", plain), member("manifest.json", evil, prefix=".")],
        "manifest.json replaced by a symlink": [
            *others, member("manifest.json", plain), member("evil.json", evil), symlink("manifest.json", "evil.json")],
        "written through a symlinked directory": [
            *others, member("manifest.json", plain), symlink("d", "."), member("d/manifest.json", evil)],
        "hidden in data by a PAX size record": [
            *others, member("manifest.json", plain), pax({"size": "0"}), header("cover", len(inner)), inner],
        # Go reads no data after a link, directory or device header, whatever its size field says.
        "hidden after a symlink header that claims data": [
            *others, member("manifest.json", plain),
            header("cover", len(inner), kind=b"2", linkname="manifest.json", mode=0o777), inner],
        "ordinary nested directories (control)": [
            *others, member("manifest.json", plain), directory("sub"), member("sub/m", evil)],
    }


def test_no_archive_encoding_moves_a_tag_and_a_refused_load_leaves_no_image(airgapped):
    device = airgapped
    v2 = local_image(device, "demo/app:2", "2")
    good = save(device, "demo/app:2", device.workdir / "good.tar")
    device.dockerd.docker("image", "rm", "-f", v2)
    holder = local_image(device, VICTIM_TAG, "the user's own")
    tags_before = tags(device)
    before = device.snapshot()
    assert tags_before[VICTIM_TAG] == holder
    problems = []

    cases = tricks(good)
    del cases["ordinary nested directories (control)"]  # a control: see below
    for n, (what, body) in enumerate(cases.items()):
        archive = write(device.workdir / f"trick-{n}.tar", [*body, end()])
        install = device.install(hand_made(device, f"{STACK}-trick-{n}", archive, v2))

        errors = module_errors(install.stderr)
        after = device.snapshot()
        if install.returncode == 0:
            problems.append(f"{what}: installed")
            device.mender("rollback")
        elif len(errors) != 1 or "Download" not in errors[0]:
            problems.append(f"{what}: want one Download error, got {errors}")
        for line in errors:
            if len(line) > 300 or not line.isprintable():
                problems.append(f"{what}: error line of {len(line)} bytes or unprintable: {line[:400]!r}")
        if after.containers != before.containers:
            problems.append(f"{what}: containers changed")
        if tags(device) != tags_before or after.images != before.images:
            problems.append(f"{what}: tags {tags(device)} (before: {tags_before}); images added "
                            f"{sorted(after.images - before.images)}, removed {sorted(before.images - after.images)}")
            # Put the device back so that the next case starts from the same state.
            for image in after.images - before.images:
                device.dockerd.docker("image", "rm", "-f", image, check=False)
            device.dockerd.docker("tag", holder, VICTIM_TAG)

    assert not problems, "\n".join(problems)


def test_an_archive_with_ordinary_directories_still_loads(airgapped):
    """The control: directories and nested members are normal in `docker save` archives."""
    device = airgapped
    v2 = local_image(device, "demo/app:2", "2")
    good = save(device, "demo/app:2", device.workdir / "good.tar")
    device.dockerd.docker("image", "rm", "-f", v2)
    holder = local_image(device, VICTIM_TAG, "the user's own")
    body = tricks(good)["ordinary nested directories (control)"]
    archive = write(device.workdir / "dirs.tar", [*body, end()])

    install = device.install(hand_made(device, f"{STACK}-dirs", archive, v2))

    assert install.returncode == 0, install.stderr
    assert device.snapshot().containers["app"][2] == v2
    assert tags(device) == {VICTIM_TAG: holder}


def test_the_engine_ignores_oci_index_annotations_and_the_module_strips_them(airgapped):
    """Docker 20.10's loader reads only manifest.json; Docker 25+ with the containerd image store
    names images after index.json's annotations. The module strips those too, so the load tags
    nothing on either."""
    device = airgapped
    v2 = local_image(device, "demo/app:2", "2")
    good = save(device, "demo/app:2", device.workdir / "good.tar")
    device.dockerd.docker("image", "rm", "-f", v2)
    holder = local_image(device, VICTIM_TAG, "the user's own")
    others, decoy, _ = _pieces(good)
    index = {"schemaVersion": 2, "manifests": [{
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "digest": "sha256:" + "0" * 64, "size": 1,
        "annotations": {"org.opencontainers.image.ref.name": "15",
                        "io.containerd.image.name": f"docker.io/library/{VICTIM_TAG}"}}]}
    archive = write(device.workdir / "oci.tar", [
        *others, member("index.json", json.dumps(index).encode()),
        member("manifest.json", json.dumps(decoy).encode()), end()])

    install = device.install(hand_made(device, f"{STACK}-oci", archive, v2))

    assert install.returncode == 0, install.stderr
    assert tags(device) == {VICTIM_TAG: holder}


def test_a_gigabyte_tar_record_is_refused_at_its_header_with_flat_memory(airgapped, tmp_path):
    """A 1 GiB GNU long-name record, and a 1 GiB PAX header, through the real client: the module
    refuses at the header with one short line and its peak RSS (measured by /usr/bin/time around
    the release binary) stays that of a small process. The client still streams the whole payload,
    which the module reads to its end so that the Go client does not hang."""
    device = airgapped
    v2 = local_image(device, "demo/app:2", "2")
    device.dockerd.docker("image", "rm", "-f", v2)
    module = device.sandbox.dir / "modules" / "docker"
    real = tmp_path / "mender-docker-module"
    real.write_bytes(module.read_bytes())
    real.chmod(0o755)
    times = tmp_path / "time"
    times.mkdir()
    module.write_text(f'#!/bin/sh\nexec /usr/bin/time -v -o {times}/"$1".txt {real} "$@"\n')
    module.chmod(0o755)
    before = device.snapshot()
    results = {}

    for kind in (b"L", b"x"):
        name = f"{STACK}-huge-{kind.decode()}"
        (tmp_path / name).mkdir()
        # NUL bytes: the artifact compresses to almost nothing; the module never looks at them.
        payload = write(tmp_path / name / "images.tar", [huge_record(kind, 1 << 30, fill=b"\0")])
        meta = stack_meta(STACK, [container("app", f"demo/app:x@{v2}")], inline={"images.tar": {"images": [v2]}})
        artifact = bench.mender_artifact_write_module(
            tmp_path / f"{name}.mender", type="docker", name=name, device_type=device.sandbox.device_type,
            files=[payload], meta_data=meta, software_filesystem="data-partition", software_name=STACK,
            software_version=name)
        payload.unlink()

        install = device.install(artifact, timeout=600)

        errors = module_errors(install.stderr)
        assert install.returncode != 0
        assert len(errors) == 1 and "of 1073741824 bytes" in errors[0], errors
        assert len(errors[0]) <= 300 and errors[0].isprintable(), errors[0]
        report = (times / "Download.txt").read_text()
        rss_kib = int(next(line for line in report.splitlines() if "Maximum resident set size" in line)
                      .rsplit(":", 1)[1])
        elapsed = next(line for line in report.splitlines() if "Elapsed (wall clock)" in line).rsplit(" ", 1)[1]
        results[kind.decode()] = (rss_kib, elapsed, errors[0])
        assert rss_kib < 32 * 1024, report
        assert device.snapshot().images == before.images
        artifact.unlink()
    print(results)
