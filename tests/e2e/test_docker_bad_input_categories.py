"""Every category of bad input the docker module can be handed, through the real client: each is
refused in Download with one short printable line that names what is wrong, and nothing changes on
the device (the engine's containers, their states, images, tags and volumes; the module's state
directory, byte for byte; the artifact the client records).

The cases share one device (web-1 deployed, a hand-started container `api`, a local image holding
the tag demo/app:2 that inline archives carry): a refusal leaves it as it was, so the next case
starts from the same state. With $BAD_INPUTS_REPORT set, each category refused as it should be is
appended there as `docker: <category>` (scripts/reliability-report counts them)."""

from __future__ import annotations

import gzip
import hashlib
import os
from pathlib import Path

import pytest

import bench
from docker_helpers import (
    MODULE_BINARY,
    MODULE_PACKAGE,
    STATE_DIR,
    DockerDevice,
    container,
    module_errors,
    stack_meta,
)
from test_docker_bad_input import _with_raw_meta_data
from tar_craft import end, gnu_long_name, member, members_of, reencode, symlink, write

pytestmark = pytest.mark.bench

INLINE_STACK = "edge"
# "Short": the longest refusals name the key, the value and what would be right (the supported
# run_args flags, how to print a digest); none needs more.
MAX_LINE = 512


@pytest.fixture(scope="module")
def shared(bench_prerequisites, _session_dockerd, rust_binary, tmp_path_factory):
    """One device for every case (a refusal changes nothing, which each case checks)."""
    dockerd = _session_dockerd
    dockerd.reset()
    base = tmp_path_factory.mktemp("bad-input")
    with bench.Registry(base / "registry") as registry, bench.DeviceSandbox(base / "device") as sandbox:
        device = DockerDevice(sandbox, dockerd, registry, base / "work")
        device.install_module(rust_binary(MODULE_PACKAGE, MODULE_BINARY))
        device.configure(policy={"allow_privileged": False, "allowed_bind_prefixes": ["/data/apps"]})
        v1 = device.image("stacks/web", "1")
        v2 = device.image("stacks/web", "2")
        tools = device.image("other/tools", "1", keep_local=True)
        device.run_foreign("api", tools)
        device.deploy(device.artifact("web-1", stack_meta("web", [container("web", v1)])))
        app = bench.make_busybox_image(dockerd, "demo/app:2", cmd=["sleep", "3600"],
                                       extra_files={"/etc/version": "inline 2\n"})
        good = device.workdir / "good.tar"
        dockerd.docker("save", "-o", str(good), "demo/app:2")
        dockerd.docker("image", "rm", "-f", app)
        bench.make_busybox_image(dockerd, "demo/app:2", cmd=["sleep", "3600"],
                                 extra_files={"/etc/version": "the user's own\n"})
        yield {"device": device, "v2": v2, "app": app, "good": good}
        dockerd.reset()


def _state_dir(device: DockerDevice) -> dict[str, str]:
    root = device.sandbox.host_path(STATE_DIR)
    out = {}
    for path in sorted(root.rglob("*")) if root.exists() else []:
        out[str(path.relative_to(root))] = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else "dir"
    return out


def _device_state(device: DockerDevice):
    snap = device.snapshot()
    out = device.dockerd.docker("images", "--no-trunc", "--format", "{{.Repository}}:{{.Tag}} {{.ID}}").stdout
    volumes = device.dockerd.ids("volume", "ls", "-q")
    return {
        "containers": {n: c[:3] for n, c in snap.containers.items()},
        "images": snap.images,
        "tags": sorted(out.splitlines()),
        "volumes": sorted(volumes),
        "state dir": _state_dir(device),
    }


# -- the categories --------------------------------------------------------------------------------

def _stack(v2: str, *containers, **options) -> dict:
    return stack_meta("web", list(containers) or [container("web", v2)], **options)


def meta_cases(v2: str) -> dict[str, tuple[dict, str]]:
    """category -> (meta-data, what the one error line must contain)."""
    ok = container("web", v2)
    doc = _stack(v2)["docker-stack"]
    unpinned = v2.split("@")[0] + ":2"
    return {
        "meta-data missing": (None, "artifact meta-data is missing"),
        "unknown top-level key": ({**_stack(v2), "extra": 1}, 'at extra: unknown key "extra"'),
        "unknown container key": (_stack(v2, {**ok, "imagee": v2}),
                                  'at docker-stack.containers.web.imagee: unknown key "imagee"'),
        "unsupported format version": ({"docker-stack": {**doc, "format": 2}}, "format 2 is not supported"),
        "image not pinned by digest": (_stack(v2, container("web", unpinned)), "is not pinned by digest"),
        "malformed digest": (_stack(v2, container("web", v2[:-3])), "64 lower-case hex digits"),
        "malformed image repository": (_stack(v2, container("web", "Stacks/WEB@" + v2.split("@")[1])),
                                       "docker-stack.containers.web.image"),
        "containers as a list": ({"docker-stack": {**doc, "containers": [ok]}},
                                 "docker-stack.containers: must be an object"),
        "start order missing a container": (_stack(v2, ok, container("api2", v2), start_order=["web"]),
                                            'docker-stack.start_order: does not list container "api2"'),
        "duplicate container name in the start order": (
            _stack(v2, ok, container("api2", v2), start_order=["web", "api2", "web"]), '"web" is listed twice'),
        "control characters in a container name": (_stack(v2, container("we\u0007b", v2)),
                                                    "is not valid: 2 to 64 characters"),
        "invalid stack name": (stack_meta("web stack", [ok]), "stack name \"web stack\" is not valid"),
        "bad duration": ({"docker-stack": {**doc, "health_timeout_seconds": "30s"}},
                         "docker-stack.health_timeout_seconds"),
        "zero duration": ({"docker-stack": {**doc, "health_timeout_seconds": 0}}, "must be at least 1 second"),
        "negative limit": (_stack(v2, {**ok, "memory_bytes": -1}), "docker-stack.containers.web.memory_bytes"),
        "memory limit below the engine's minimum": (_stack(v2, {**ok, "memory_bytes": 4096}),
                                                    "below the engine's minimum"),
        "huge limit": (_stack(v2, {**ok, "cpus": 1e12}), "is not a positive number"),
        "reserved label": (_stack(v2, {**ok, "labels": {"io.mender.composable.stack": "x"}}),
                           "reserves for its own bookkeeping"),
        "bad port": (_stack(v2, {**ok, "ports": ["99999:80"]}), "containers.web.ports[0]"),
        "relative bind source": (_stack(v2, {**ok, "binds": ["data:/data"]}), "must start with an absolute host path"),
        "two mounts on one target": (_stack(v2, {**ok, "binds": ["/data/apps/a:/x"], "volumes": ["vol:/x"]}),
                                     'two mounts target "/x"'),
        "purge of a volume no container mounts": (_stack(v2, ok, purge_on_deploy=["nothing"]),
                                                  'volume "nothing" is mounted by no container'),
        "unknown strategy": ({"docker-stack": {**doc, "strategy": "blue-green"}}, '"blue-green" is not a strategy'),
        "unsupported run_args flag": ({"containers": [v2], "run_args": "--network none --pid host"},
                                      "at run_args: flag --pid is not supported"),
        "env-file in run_args": ({"containers": [v2], "run_args": "--env-file /etc/app.env"},
                                 "flag --env-file is not supported"),
        "registry the device does not configure": (_stack(v2, registry="fleet"),
                                                   "the release pulls through registry \"fleet\""),
        "container name held by a foreign container": (_stack(v2, ok, container("api", v2)),
                                                       "container name api is already used by container api"),
        "not enough disk space": (_stack(v2, {**ok, "size": 1 << 60}), "not enough disk space"),
        "env variable name with =": (_stack(v2, {**ok, "env": {"A=B": "x"}}), "docker-stack.containers.web.env"),
        "unknown healthcheck test": (_stack(v2, {**ok, "healthcheck": {"test": ["BOGUS"]}}),
                                     "docker-stack.containers.web.healthcheck"),
        "relative device path": (_stack(v2, {**ok, "devices": ["ttyUSB0"]}), "docker-stack.containers.web.devices"),
        "unknown capability": (_stack(v2, {**ok, "cap_add": ["NOT_A_CAP"]}), "docker-stack.containers.web.cap_add"),
        "replaces listing a container twice": (_stack(v2, replaces=["legacy", "legacy"]), '"legacy" is listed twice'),
        "inline payload name with a path": (
            _stack(v2, container("web", "demo/app:x@sha256:" + "a" * 64),
                   inline={"../images.tar": {"images": ["sha256:" + "a" * 64]}}), "docker-stack.inline"),
        "malformed inline image ID": (
            _stack(v2, container("web", "demo/app:x@sha256:" + "a" * 64),
                   inline={"images.tar": {"images": ["sha256:xyz"]}}), "docker-stack.inline"),
        "policy: privileged container": (_stack(v2, {**ok, "privileged": True}), "privileged"),
        "policy: bind outside the allowed prefixes": (_stack(v2, {**ok, "binds": ["/etc:/host-etc"]}),
                                                      "docker-stack.containers.web.binds"),
    }


def _inline_artifact(device: DockerDevice, name: str, archive: Path, image_id: str, *, size: int | None = None,
                     payload_name: str = "images.tar", listed_as: str = "images.tar") -> Path:
    entry: dict = {"images": [image_id]}
    if size is not None:
        entry["size"] = size
    meta = stack_meta(INLINE_STACK, [container("app", f"demo/app:x@{image_id}")], inline={listed_as: entry})
    payload = device.workdir / name / payload_name
    payload.parent.mkdir(parents=True, exist_ok=True)
    payload.write_bytes(archive.read_bytes())
    return bench.mender_artifact_write_module(
        device.workdir / f"{name}.mender", type="docker", name=name, device_type=device.sandbox.device_type,
        files=[payload], meta_data=meta)


def inline_cases(device: DockerDevice, good: Path, app: str) -> dict[str, tuple[Path, str]]:
    """category -> (artifact, what the one error line must contain)."""
    work = device.workdir
    parts = members_of(good)
    plain = [reencode(i, d) for i, d in parts]
    without = lambda pick: [reencode(i, d) for i, d in parts if not pick(i.name)]  # noqa: E731
    manifest = next(d for i, d in parts if i.name == "manifest.json")

    def archive(name: str, pieces) -> Path:
        return write(work / f"{name}.tar", pieces)

    truncated = work / "truncated.tar"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    gz = work / "compressed.tar"
    gz.write_bytes(gzip.compress(good.read_bytes()))
    other = bench.make_busybox_image(device.dockerd, "demo/other:1", cmd=["sleep", "3600"])
    other_tar = work / "other.tar"
    device.dockerd.docker("save", "-o", str(other_tar), other)
    device.dockerd.docker("image", "rm", "-f", other)
    cases = {
        "inline archive truncated": (truncated, {}, "truncated"),
        "inline archive longer than its stated size": (good, {"size": good.stat().st_size - 512},
                                                       "longer than the"),
        "inline archive shorter than its stated size": (good, {"size": good.stat().st_size + 512},
                                                        "but the artifact states"),
        "inline archive compressed": (gz, {}, "compressed"),
        "inline archive without manifest.json": (
            archive("no-manifest", [*without(lambda n: n in ("manifest.json", "repositories")), end()]),
            "has no manifest.json"),
        "inline manifest naming absent layers": (
            archive("no-layers", [*without(lambda n: n.endswith("layer.tar")), end()]), "images.tar"),
        "inline manifest.json that is not JSON": (
            archive("bad-manifest", [*without(lambda n: n == "manifest.json"), member("manifest.json", b"[{"),
                                     end()]), "manifest.json is not valid JSON"),
        "inline manifest.json as a symlink": (
            archive("symlinked", [*without(lambda n: n == "manifest.json"), member("evil.json", manifest),
                                  symlink("manifest.json", "evil.json"), end()]), "must be a regular file"),
        "inline member written through a symlinked directory": (
            archive("through-link", [*plain, symlink("d", "."), member("d/x", b"x"), end()]),
            "would be written through the symlink"),
        "inline member name climbing out with ..": (
            archive("climbing", [*plain, member("../escape", b"x"), end()]), "climbs out of the archive"),
        "inline oversized member-name header": (
            archive("long-name", [*plain, gnu_long_name("a" * 8192), member("x", b"x"), end()]),
            "a GNU long-name record of 8193 bytes"),
        "inline archive without the listed image": (other_tar, {}, "images.tar"),
    }
    out = {}
    for n, (what, case) in enumerate(cases.items()):
        path, extra, want = case if len(case) == 3 else (case[0], {}, case[1])
        out[what] = (_inline_artifact(device, f"edge-bad-{n}", path, app, **extra), want)
    out["inline payload the meta-data does not list"] = (
        _inline_artifact(device, "edge-bad-unlisted", good, app, payload_name="other.tar"),
        "the artifact has no payload file images.tar")
    return out


META = list(meta_cases("registry/stacks/web@sha256:" + "0" * 64))
INLINE = ["inline archive truncated", "inline archive longer than its stated size",
          "inline archive shorter than its stated size", "inline archive compressed",
          "inline archive without manifest.json", "inline manifest naming absent layers",
          "inline manifest.json that is not JSON", "inline manifest.json as a symlink",
          "inline member written through a symlinked directory", "inline member name climbing out with ..",
          "inline oversized member-name header", "inline archive without the listed image",
          "inline payload the meta-data does not list"]


@pytest.fixture(scope="module")
def inline(shared):
    return inline_cases(shared["device"], shared["good"], shared["app"])


def _check(device: DockerDevice, category: str, artifact: Path, want: str) -> None:
    before = _device_state(device)
    result = device.install(artifact)
    errors = module_errors(result.stderr)
    after = _device_state(device)
    problems = []
    if result.returncode == 0:
        problems.append("installed")
        device.mender("rollback")
    if len(errors) != 1 or not errors[0].startswith("docker: error: Download: ") or want not in errors[0]:
        problems.append(f"want one Download error containing {want!r}, got {errors}")
    for line in errors:
        if len(line) > MAX_LINE or not line.isprintable():
            problems.append(f"error line of {len(line)} characters or unprintable: {line[:500]!r}")
    for key in before:
        if before[key] != after[key]:
            problems.append(f"{key} changed: {before[key]} -> {after[key]}")
    if device.sandbox.artifact_name() != "web-1":
        problems.append(f"the client records {device.sandbox.artifact_name()}")
    assert not problems, f"{category}: " + "; ".join(problems)
    report = os.environ.get("BAD_INPUTS_REPORT")
    if report:
        with open(report, "a") as f:
            f.write(f"docker: {category}\n")


@pytest.mark.parametrize("category", META)
def test_bad_meta_data_is_refused_in_download_in_one_line_and_changes_nothing(shared, category):
    device = shared["device"]
    meta, want = meta_cases(shared["v2"])[category]
    artifact = device.artifact(f"bad-{META.index(category)}", meta if meta is not None else {})
    if meta is None:
        artifact = _with_raw_meta_data(artifact, b"null")
    _check(device, category, artifact, want)


@pytest.mark.parametrize("category", INLINE)
def test_a_bad_inline_archive_is_refused_in_download_in_one_line_and_changes_nothing(shared, inline, category):
    artifact, want = inline[category]
    _check(shared["device"], category, artifact, want)


def test_the_categories_are_distinct_and_at_least_twenty():
    assert len(set(META) | set(INLINE)) == len(META) + len(INLINE) >= 20
