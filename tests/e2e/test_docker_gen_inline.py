"""docker-artifact-gen --inline against the bench's private engine: images carried in the artifact as
payload files (the engine's export, `docker save` archives, OCI image layouts), checked with the real
mender-artifact and loaded into a fresh engine, which must report exactly the image IDs the
meta-data names."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import subprocess
import tarfile
from pathlib import Path

import pytest

import bench
from bench.system import run
from docker_helpers import device  # noqa: F401  (fixture)

pytestmark = pytest.mark.bench

GENERATOR = ("docker-artifact-gen", "docker-artifact-gen")
DEVICE_TYPE = "qemux86-64"


EPOCH = 1700000000


def generate(dockerd, rust_binary, workdir: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    env = {**os.environ, **dockerd.env, "SOURCE_DATE_EPOCH": str(EPOCH)}
    return run([str(rust_binary(*GENERATOR)), *args], env=env, cwd=workdir, check=check, timeout=300)


def artifact_info(path: Path) -> str:
    return run(["mender-artifact", "read", str(path)], timeout=60).stdout


def meta_data(path: Path) -> dict:
    """The update's meta-data as stored (`mender-artifact read` cannot show nested objects)."""
    with tarfile.open(path) as outer:
        header = outer.extractfile("header.tar.gz").read()
    with tarfile.open(fileobj=io.BytesIO(header), mode="r:gz") as inner:
        return json.loads(inner.extractfile("headers/0000/meta-data").read())


def extract_payloads(path: Path, into: Path) -> dict[str, Path]:
    """The payload files of the artifact's first update, written to `into`: {name: path}."""
    into.mkdir(parents=True, exist_ok=True)
    files = {}
    with tarfile.open(path) as outer:
        data = outer.extractfile("data/0000.tar.gz")
        with tarfile.open(fileobj=data, mode="r|gz") as inner:
            for member in inner:
                target = into / member.name
                with inner.extractfile(member) as src, open(target, "wb") as dst:
                    while chunk := src.read(1 << 20):
                        dst.write(chunk)
                files[member.name] = target
    return files


def load_into_fresh_engine(dockerd_factory, archive: Path) -> tuple[str, list[str]]:
    """`docker load` into an engine that has never seen the image: (its output, every image ID it has)."""
    fresh = dockerd_factory()
    loaded = fresh.docker("load", "-i", str(archive), timeout=300).stdout
    ids = fresh.docker("image", "ls", "-aq", "--no-trunc").stdout.split()
    return loaded, sorted(set(ids))


def assert_normalised(payload: Path) -> None:
    """The payload is the generator's normalised tar: sorted ustar members stamped with
    SOURCE_DATE_EPOCH, owned by 0:0 without names, modes 0644/0755/0777."""
    raw = payload.read_bytes()
    with tarfile.open(payload) as tar:
        members = tar.getmembers()
    names = [m.name for m in members]
    assert names == sorted(names), names
    for m in members:
        assert raw[m.offset + 257:m.offset + 265] == b"ustar\x0000", f"{m.name}: not a ustar header"
        assert (m.mtime, m.uid, m.gid, m.uname, m.gname) == (EPOCH, 0, 0, "", ""), m.get_info()
        assert m.mode == (0o755 if m.isdir() else 0o777 if m.issym() else 0o644), m.get_info()


def members(archive: Path) -> dict[str, bytes | str | None]:
    """{name without ./ or a trailing /: file content, symlink target, or None for a directory}."""
    out: dict[str, bytes | str | None] = {}
    with tarfile.open(archive) as tar:
        for m in tar:
            name = "/".join(c for c in m.name.split("/") if c not in ("", "."))
            if m.isdir():
                out[name] = None
            elif m.issym():
                out[name] = m.linkname
            else:
                out[name] = tar.extractfile(m).read()
    out.pop("", None)
    return out


def oci_layout_from_docker_save(saved: bytes, out: Path, prefix: str, tag: str | None, *,
                                fmt: int = tarfile.GNU_FORMAT, mtime: int = 0, owner: tuple[int, str] = (0, ""),
                                mode: int = 0o644, dirs: bool = True, reverse: bool = False,
                                leftovers: tuple[bytes, ...] = ()) -> str:
    """An OCI image layout tar made from a `docker save` archive, as umoci/meta-virtualization write
    them: gzip layers, config/manifest/index blobs named by digest, every member under `prefix`
    (`./` for `tar -C layout -cf x.tar .`, `NAME/` for `tar -cf x.tar NAME`). Returns the config
    digest, which is the image ID. The keywords vary only the tar around the image: header format,
    mtimes, owner, file mode, directory entries, member order, and blobs no manifest names (umoci
    keeps the configs and manifests each `umoci config` replaces)."""
    blobs: dict[str, bytes] = {}

    def blob(data: bytes) -> str:
        digest = hashlib.sha256(data).hexdigest()
        blobs[digest] = data
        return digest

    with tarfile.open(fileobj=io.BytesIO(saved)) as src:
        (image,) = json.loads(src.extractfile("manifest.json").read())
        config = blob(src.extractfile(image["Config"]).read())
        layers = []
        for layer in image["Layers"]:
            gz = gzip.compress(src.extractfile(layer).read(), mtime=0)
            layers.append({"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                           "digest": f"sha256:{blob(gz)}", "size": len(gz)})
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": f"sha256:{config}",
                   "size": len(blobs[config])},
        "layers": layers}).encode()
    entry = {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": f"sha256:{blob(manifest)}",
             "size": len(manifest)}
    if tag is not None:
        entry["annotations"] = {"org.opencontainers.image.ref.name": tag}
    index = json.dumps({"schemaVersion": 2, "manifests": [entry]}).encode()
    for data in leftovers:
        blob(data)

    entries: list[tuple[str, bytes | None]] = []
    if dirs:
        entries += [("", None), ("blobs/", None), ("blobs/sha256/", None)]
    entries += [(f"blobs/sha256/{digest}", data) for digest, data in blobs.items()]
    entries += [("index.json", index), ("oci-layout", b'{"imageLayoutVersion":"1.0.0"}')]
    if reverse:
        entries.reverse()
    with tarfile.open(out, "w", format=fmt) as tar:
        for name, data in entries:
            info = tarfile.TarInfo(prefix + name)
            info.mtime, (info.uid, info.uname) = mtime, owner
            info.gid, info.gname = info.uid, info.uname
            if data is None:
                info.type = tarfile.DIRTYPE
                info.mode = mode | 0o111
                tar.addfile(info)
            else:
                info.size = len(data)
                info.mode = mode
                tar.addfile(info, io.BytesIO(data))
    names = tarfile.open(out).getnames()
    assert all(n.startswith(prefix.rstrip("/")) for n in names), names
    return f"sha256:{config}"


def test_a_local_image_travels_as_images_tar_and_loads_with_its_id(dockerd, dockerd_factory, rust_binary,
                                                                   tmp_path):
    image_id = bench.make_busybox_image(dockerd, "demo/web:1.0", cmd=["sleep", "3600"])
    spec = tmp_path / "web.json"
    spec.write_text(json.dumps({"docker-stack": {"format": 1, "stack": "web", "start_order": ["web", "web-2"],
                                                 "containers": {
        "web": {"image": "demo/web:1.0", "network_mode": "none"},
        "web-2": {"image": image_id[7:19], "network_mode": "none"},  # a short ID
    }}}))
    out = tmp_path / "web-1.mender"

    result = generate(dockerd, rust_binary, tmp_path, "-n", "web-1", "-t", DEVICE_TYPE, "--inline",
                      "--software-version", "1.0", "--spec", str(spec), "-o", str(out))

    # Not a terminal: no progress, only the summary line.
    assert "MiB/s" not in result.stderr, result.stderr
    info = artifact_info(out)
    assert "Invalid metadata" not in info, info
    assert "images.tar" in info, info
    assert "data-partition.web.version: 1.0" in info, info
    assert "data-partition.web.*" in info, info
    stack = meta_data(out)["docker-stack"]
    images = [c["image"] for c in stack["containers"].values()]
    assert images == [f"demo/web:1.0@{image_id}", f"demo/web:1.0@{image_id}"], "named by image ID"
    payloads = extract_payloads(out, tmp_path / "payloads")
    assert list(payloads) == ["images.tar"]
    assert stack["inline"] == {"images.tar": {"images": [image_id], "size": payloads["images.tar"].stat().st_size}}

    assert_normalised(payloads["images.tar"])
    loaded, ids = load_into_fresh_engine(dockerd_factory, payloads["images.tar"])
    assert ids == [image_id], loaded


@pytest.mark.parametrize("prefix", ["./", "web-worker-oci/"], ids=["dot-prefix", "top-level-dir"])
def test_an_oci_layout_with_gzip_layers_loads_with_its_config_digest(dockerd, dockerd_factory, rust_binary,
                                                                     tmp_path, prefix):
    image_id = bench.make_busybox_image(dockerd, "build/worker:2", extra_files={"/etc/role": "worker"})
    saved = dockerd.docker("save", "build/worker:2", text=False).stdout
    dockerd.docker("rmi", "build/worker:2")  # the generator must take it from the file
    layout = tmp_path / "web-worker-oci.tar"
    config_digest = oci_layout_from_docker_save(saved, layout, prefix, tag="latest")
    assert config_digest == image_id
    out = tmp_path / "worker-2.mender"

    generate(dockerd, rust_binary, tmp_path, "-n", "worker-2", "-t", DEVICE_TYPE, "--inline",
             "--run-args", "--network none", "-o", str(out), f"oci-archive:{layout.name}")

    stack = meta_data(out)["docker-stack"]
    assert {name: c["image"] for name, c in stack["containers"].items()} == {
        "web-worker-oci": f"web-worker-oci:latest@{image_id}"}
    payloads = extract_payloads(out, tmp_path / "payloads")
    assert stack["inline"] == {"web-worker-oci.tar": {"images": [image_id],
                                                      "size": payloads["web-worker-oci.tar"].stat().st_size}}
    payload = payloads["web-worker-oci.tar"]
    assert_normalised(payload)
    carried = members(payload)
    added = json.loads(carried.pop("manifest.json"))
    original = members(layout)
    layout_files = {name.removeprefix("web-worker-oci/"): data for name, data in original.items()
                    if name != "web-worker-oci"}
    assert carried == layout_files, "the layout at the top, every blob byte for byte"
    assert added[0]["RepoTags"] == ["web-worker-oci:latest"]
    assert added[0]["Config"] == f"blobs/sha256/{image_id.removeprefix('sha256:')}"

    loaded, ids = load_into_fresh_engine(dockerd_factory, payloads["web-worker-oci.tar"])
    assert ids == [image_id], loaded


def umoci_like(saved: bytes, out: Path, prefix: str, tag: str) -> str:
    """An OCI layout tar of the image in `saved` whose container differs in everything a build
    host leaves in it (as umoci and GNU tar do): PAX headers, wall-clock mtimes, the build user,
    group-writable modes, no directory entries, reverse member order, and a stale config blob that
    no manifest names. Returns the image ID."""
    stale = json.dumps({"created": "2024-05-06T07:08:09.123456789Z", "architecture": "amd64",
                        "os": "linux", "rootfs": {"type": "layers", "diff_ids": []}}).encode()
    return oci_layout_from_docker_save(saved, out, prefix, tag, fmt=tarfile.PAX_FORMAT, mtime=1712345678,
                                       owner=(1000, "builder"), mode=0o664, dirs=False, reverse=True,
                                       leftovers=(stale,))


def test_oci_archives_that_differ_only_in_their_tar_give_byte_identical_artifacts(dockerd, dockerd_factory,
                                                                                   rust_binary, tmp_path):
    image_id = bench.make_busybox_image(dockerd, "build/worker:2", extra_files={"/etc/role": "worker"})
    diff_ids = json.loads(dockerd.docker("image", "inspect", "--format", "{{json .RootFS.Layers}}",
                                         image_id).stdout)
    saved = dockerd.docker("save", "build/worker:2", text=False).stdout
    dockerd.docker("rmi", "build/worker:2")
    # image-oci deploys both shapes: -oci.tar (members ./…) and -oci-dir.tar (members NAME/…).
    # The same file name in two directories: the payload and display names come from it.
    first, second = tmp_path / "a" / "web-worker-oci.tar", tmp_path / "b" / "web-worker-oci.tar"
    first.parent.mkdir()
    second.parent.mkdir()
    assert oci_layout_from_docker_save(saved, first, "./", tag="latest") == image_id
    assert umoci_like(saved, second, "web-worker-oci/", tag="latest") == image_id
    assert first.read_bytes() != second.read_bytes()

    artifacts = []
    for layout in (first, second):
        out = layout.parent / "worker-2.mender"
        generate(dockerd, rust_binary, layout.parent, "-n", "worker-2", "-t", DEVICE_TYPE, "--inline",
                 "--run-args", "--network none", "-o", out.name, f"oci-archive:{layout.name}")
        artifacts.append(out)

    assert artifacts[0].read_bytes() == artifacts[1].read_bytes(), "the same image gives the same artifact"
    payload = extract_payloads(artifacts[1], tmp_path / "payloads")["web-worker-oci.tar"]
    assert_normalised(payload)
    assert [n for n in members(payload) if n.startswith("blobs/sha256/")] == sorted(
        n.removeprefix("web-worker-oci/") for n in members(first) if n.startswith("blobs/sha256/")), \
        "the stale blob stays behind"
    fresh = dockerd_factory()
    fresh.docker("load", "-i", str(payload), timeout=300)
    assert sorted(set(fresh.ids("image", "ls", "-aq", "--no-trunc"))) == [image_id]
    loaded = json.loads(fresh.docker("image", "inspect", "--format", "{{json .RootFS.Layers}}", image_id).stdout)
    assert loaded == diff_ids, "the engine verified the image's own layers"


def test_legacy_arguments_with_inline_write_a_docker_stack_document(dockerd, rust_binary, tmp_path):
    app_id = bench.make_busybox_image(dockerd, "demo/app:2")
    sidecar_id = bench.make_busybox_image(dockerd, "tools/sidecar:1", extra_files={"/etc/sidecar": "1"})
    dockerd.docker("save", "-o", str(tmp_path / "sidecar.tar"), "tools/sidecar:1")
    dockerd.docker("rmi", "tools/sidecar:1")
    out = tmp_path / "app-2.mender"

    generate(dockerd, rust_binary, tmp_path, "-n", "app-2", "-t", DEVICE_TYPE, "--inline", "--run-args",
             "--network none --restart always -e MODE=prod", "-o", str(out), "demo/app:2",
             "docker-archive:sidecar.tar")

    again = tmp_path / "again.mender"
    generate(dockerd, rust_binary, tmp_path, "-n", "app-2", "-t", DEVICE_TYPE, "--inline", "--run-args",
             "--network none --restart always -e MODE=prod", "-o", str(again), "demo/app:2",
             "docker-archive:sidecar.tar")
    assert again.read_bytes() == out.read_bytes(), "SOURCE_DATE_EPOCH makes the artifact reproducible"
    info = artifact_info(out)
    assert "Invalid metadata" not in info, info
    assert "data-partition.docker.version: app-2" in info, info
    assert "data-partition.docker.*" in info, info
    meta = meta_data(out)
    payloads = extract_payloads(out, tmp_path / "payloads")
    sizes = {name: p.stat().st_size for name, p in payloads.items()}
    for payload in payloads.values():
        assert_normalised(payload)
    assert members(payloads["sidecar.tar"]) == members(tmp_path / "sidecar.tar"), \
        "a docker-archive keeps every member, byte for byte"
    common = {"network_mode": "none", "restart": "always", "env": {"MODE": "prod"}, "tty": True}
    assert meta == {"docker-stack": {
        "format": 1, "stack": "docker",
        "start_order": ["app", "sidecar"],
        "containers": {
            "app": {"image": f"demo/app:2@{app_id}", **common},
            "sidecar": {"image": f"tools/sidecar:1@{sidecar_id}", **common},
        },
        "inline": {
            "images.tar": {"images": [app_id], "size": sizes["images.tar"]},
            "sidecar.tar": {"images": [sidecar_id], "size": sizes["sidecar.tar"]},
        },
    }}


def test_an_inline_artifact_installs_where_the_image_never_was(device, rust_binary):
    image_id = bench.make_busybox_image(device.dockerd, "demo/offline:1", cmd=["sleep", "3600"])
    out = device.workdir / "offline-1.mender"
    generate(device.dockerd, rust_binary, device.workdir, "-n", "offline-1", "-t", device.sandbox.device_type,
             "--inline", "--software-name", "offline", "--run-args", "--network none", "-o", str(out),
             "demo/offline:1")
    device.dockerd.docker("rmi", "demo/offline:1")
    assert image_id not in device.snapshot().images

    device.deploy(out)

    snapshot = device.snapshot()
    assert snapshot.running() == {"offline"}
    assert snapshot.containers["offline"][2] == image_id
    assert device.sandbox.provides()["data-partition.offline.version"] == "offline-1"


def test_a_normalised_oci_archive_installs_where_the_image_never_was(device, rust_binary):
    image_id = bench.make_busybox_image(device.dockerd, "build/worker:3", cmd=["sleep", "3600"])
    saved = device.dockerd.docker("save", "build/worker:3", text=False).stdout
    device.dockerd.docker("rmi", "build/worker:3")
    layout = device.workdir / "worker-oci.tar"
    assert umoci_like(saved, layout, "worker-oci/", tag="3") == image_id
    out = device.workdir / "worker-3.mender"
    generate(device.dockerd, rust_binary, device.workdir, "-n", "worker-3", "-t", device.sandbox.device_type,
             "--inline", "--software-name", "worker", "--run-args", "--network none", "-o", str(out),
             f"oci-archive:{layout.name}")
    assert image_id not in device.snapshot().images

    device.deploy(out)

    snapshot = device.snapshot()
    assert snapshot.running() == {"worker-oci"}
    assert snapshot.containers["worker-oci"][2] == image_id
    assert device.sandbox.provides()["data-partition.worker.version"] == "worker-3"


def test_bad_inline_inputs_fail_with_one_line_and_leave_no_output(dockerd, rust_binary, tmp_path):
    plain = tmp_path / "plain.tar"
    with tarfile.open(plain, "w") as tar:
        info = tarfile.TarInfo("etc/hostname")
        info.size = 2
        tar.addfile(info, io.BytesIO(b"x\n"))
    (tmp_path / "layer.tar.gz").write_bytes(gzip.compress(plain.read_bytes()))
    out = tmp_path / "bad.mender"
    cases = [
        (["--inline", "nosuch/image:1"], "image nosuch/image:1 is not in the local engine"),
        (["--inline", "oci-archive:plain.tar"], "plain.tar is not an OCI image layout: it has no index.json"),
        (["--inline", "docker-archive:plain.tar"], "plain.tar is not a docker-archive: it has no manifest.json"),
        (["--inline", "docker-archive:missing.tar"], "cannot read missing.tar"),
        (["--inline", "docker-archive:layer.tar.gz"], "gzip-compressed"),
        (["docker-archive:plain.tar"], "needs --inline"),
    ]
    for args, expected in cases:
        result = generate(dockerd, rust_binary, tmp_path, "-n", "bad", "-t", DEVICE_TYPE, "-o", str(out), *args,
                          check=False)
        lines = result.stderr.strip().splitlines()
        assert result.returncode == 1, (args, result.stderr)
        assert len(lines) == 1 and expected in lines[0], (args, result.stderr)
        assert not out.exists(), args
        assert not [p for p in tmp_path.iterdir() if p.name.startswith(".bad.mender")], "scratch left behind"
