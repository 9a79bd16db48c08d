"""The docker Update Module's end-to-end bench: the module binary installed as `docker` in a sandboxed
device driven by the real Mender client, talking to the bench's private dockerd through the device
configuration file, pulling from the bench's registry.

What the device sees: /etc/mender/docker-module.conf (written by `DockerDevice.configure`) names the
private daemon's socket; the journal lives in the sandbox's /data. The daemon runs outside the
sandbox, so anything it mounts (binds) is a host path.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import tarfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Sequence

import pytest

import bench
from bench.rust import fault_build
from bench.system import run

RUST_DIR = Path(__file__).resolve().parents[2] / "rust"
TARGET_DIR = RUST_DIR.parent / "target"

MODULE_PACKAGE = "docker-module"
MODULE_BINARY = "mender-docker-module"
STATE_DIR = "/data/mender-composable/docker"
OLD_GENERATOR = Path("/usr/share/doc/mender-client/examples/docker-artifact-gen")

# The module's own labels.
STACK_LABEL = "io.mender.composable.stack"
RELEASE_LABEL = "io.mender.composable.release"

def fault_binary() -> Path:
    """The module built with the fault-injection feature (bench.rust.fault_build)."""
    return fault_build(MODULE_PACKAGE, MODULE_BINARY)


@dataclass
class Snapshot:
    """What `docker ps -a` shows, by name: (id, running, image id, labels)."""

    containers: dict[str, tuple[str, bool, str, dict[str, str]]]
    images: set[str]

    def running(self) -> set[str]:
        return {name for name, c in self.containers.items() if c[1]}

    def ids(self) -> dict[str, str]:
        return {name: c[0] for name, c in self.containers.items()}


@dataclass
class DockerDevice:
    sandbox: bench.DeviceSandbox
    dockerd: bench.Dockerd
    registry: bench.Registry
    workdir: Path
    env: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        # Its own lock file: the default under /run/lock is the host's.
        self.env["DOCKER_MODULE_LOCK"] = str(self.sandbox.dir / "docker-module.lock")

    # -- device setup ------------------------------------------------------------------------

    def install_module(self, binary: os.PathLike) -> None:
        self.sandbox.install_module("docker", binary)

    def configure(self, *, registries: Mapping[str, Mapping[str, str]] | None = None,
                  health_timeout: int = 20, settle: int = 1, stop_timeout: int = 0,
                  mode: int = 0o600, **extra) -> Path:
        conf = {
            "socket": str(self.dockerd.socket),
            "state_dir": STATE_DIR,
            "health_timeout_seconds": health_timeout,
            "settle_seconds": settle,
            # busybox as PID 1 ignores SIGTERM: any stop timeout would be waited out in full.
            "stop_timeout_seconds": stop_timeout,
            **extra,
        }
        if registries:
            conf["registries"] = dict(registries)
        path = self.sandbox.etc_mender / "docker-module.conf"
        path.write_text(json.dumps(conf, indent=2) + "\n")
        path.chmod(mode)
        return path

    # -- images --------------------------------------------------------------------------------

    def image(self, repo: str, version: str, *, cmd: Sequence[str] = ("sleep", "3600"),
              registry: bench.Registry | None = None, keep_local: bool = False) -> str:
        """A busybox image pushed as REGISTRY/repo and removed locally (so the module must pull
        it); returns the pinned reference REGISTRY/repo@sha256:…."""
        registry = registry or self.registry
        local = f"local/{repo}:{version}"
        image_id = bench.make_busybox_image(self.dockerd, local, cmd=list(cmd),
                                            extra_files={"/etc/version": f"{repo} {version}\n"})
        digest = bench.push(self.dockerd, registry, local, repo, version)
        if not keep_local:
            self.dockerd.docker("image", "rm", "-f", image_id)
        return f"{registry.addr}/{repo}@{digest}"

    def image_present(self, pinned: str) -> bool:
        return self.dockerd.docker("image", "inspect", pinned, check=False).returncode == 0

    # -- artifacts -----------------------------------------------------------------------------

    def artifact(self, name: str, meta: Mapping | str | os.PathLike, *, software_name: str | None = None,
                 version: str | None = None) -> Path:
        """A docker module-image artifact with `meta` as its meta-data; the version lands in
        data-partition.<software_name>.version when a software name is given."""
        kwargs = {}
        if software_name is not None:
            kwargs = {"software_filesystem": "data-partition", "software_name": software_name,
                      "software_version": version or name}
        return bench.mender_artifact_write_module(
            self.workdir / f"{name}.mender", type="docker", name=name, device_type=self.sandbox.device_type,
            files=[], meta_data=meta, **kwargs)

    # -- client --------------------------------------------------------------------------------

    def mender(self, *args: str, env: Mapping[str, str] | None = None,
               timeout: float = 180) -> subprocess.CompletedProcess:
        return self.sandbox.mender(*args, env={**self.env, **(env or {})}, timeout=timeout)

    def install(self, artifact: os.PathLike, **kwargs) -> subprocess.CompletedProcess:
        return self.mender("install", str(artifact), **kwargs)

    def deploy(self, artifact: os.PathLike) -> None:
        """Install and commit; fails the test with the client's output otherwise."""
        for args in (("install", str(artifact)), ("commit",)):
            result = self.mender(*args)
            assert result.returncode == 0, f"mender {' '.join(args)}:\n{result.stderr}"

    # -- observation ---------------------------------------------------------------------------

    def snapshot(self) -> Snapshot:
        ids = self.dockerd.ids("ps", "-aq")
        containers = {}
        if ids:
            for c in json.loads(self.dockerd.docker("inspect", *ids).stdout):
                containers[c["Name"].lstrip("/")] = (
                    c["Id"], c["State"]["Running"], c["Image"], c["Config"]["Labels"] or {})
        images = set(self.dockerd.ids("images", "-aq", "--no-trunc"))
        return Snapshot(containers, images)

    def journal(self, stack: str) -> dict | None:
        path = self.sandbox.host_path(f"{STATE_DIR}/{stack}.json")
        return json.loads(path.read_text()) if path.exists() else None

    def run_foreign(self, name: str, image: str, *args: str) -> str:
        """A container started by hand, without the module's labels."""
        return self.dockerd.docker("run", "-d", "--name", name, "--label", bench.LABEL, "--network", "none",
                                   *args, image, "sleep", "3600").stdout.strip()


def stack_meta(stack: str, containers: Sequence[Mapping], *, graph: bool = False, **options) -> dict:
    """A docker-stack document from containers written as {"name": …, …} in start order (the format
    keys them by name and lists the order separately: artifact meta-data cannot hold lists of objects).
    With `graph`, no start order: the containers start along their depends_on."""
    by_name = {}
    for c in containers:
        fields = dict(c)
        by_name[fields.pop("name")] = fields
    doc = {"format": 1, "stack": stack, **options, "containers": by_name}
    if len(by_name) > 1 and not graph:
        doc.setdefault("start_order", list(by_name))
    return {"docker-stack": doc}


def container(name: str, image: str, **fields) -> dict:
    return {"name": name, "image": image, "network_mode": "none", **fields}


def module_lines(stderr: str) -> list[str]:
    """The module's own lines as the Go client logs them (`docker: …`, `docker: error: …`)."""
    lines = []
    for line in stderr.splitlines():
        at = line.find("docker: ")
        if at >= 0:
            lines.append(line[at:].rstrip('"').replace('\\"', '"'))
    return lines


def fault_fired(stderr: str) -> bool:
    """Whether a fault point killed the module (module_kit::fault says so on stderr first)."""
    return "fault injected at " in stderr


# One client command of the crash scenarios takes a few seconds (under 20 on a loaded machine).
CLIENT_TIMEOUT = 120
MODULE_IN_DEVICE = "/usr/share/mender/modules/v3/docker"


class ClientHung(Exception):
    """The Go client did not return after a Download the fault killed, and was SIGKILLed itself.

    A module killed while that client (3.4) streams a payload, or between two payloads, can hang it:
    its downloadProcessLoop (installer/modules.go) gets two errors, the module's exit and the failed
    write or the next hand-over, for an unbuffered `status` channel that only one caller reads; the
    loop blocks on the second send while the caller blocks handing over a payload or finishing. A
    module that fails on its own avoids that (the protocol crate's end_of_failed_download); a killed
    one cannot. A trivial shell module that dies mid-stream hangs that client about once in eight
    installs. On a device the power cut that killed the module takes the client down too."""


def install_or_hang(device: DockerDevice, artifact: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    """`mender install` with a fault; a client that hangs on the Download the fault killed raises
    ClientHung. Any other hang is a problem and raises as it is."""
    try:
        return device.install(artifact, env=env, timeout=CLIENT_TIMEOUT)
    except bench.BenchError as e:
        if "did not finish within" in str(e) and env.get("DOCKER_MODULE_FAULT", "").startswith("Download:") \
                and fault_fired(str(e)):
            raise ClientHung(str(e)) from None
        raise


def artifact_meta_data(artifact: Path) -> dict:
    with tarfile.open(artifact) as outer:
        header = outer.extractfile("header.tar.gz").read()
    with tarfile.open(fileobj=io.BytesIO(header), mode="r:gz") as h:
        return json.loads(h.extractfile("headers/0000/meta-data").read())


def rerun_cleanup(device: DockerDevice, artifact: Path) -> None:
    """Cleanup in a fresh process, on a payload tree like the client's."""
    tree = device.sandbox.data / "rerun-cleanup-tree"
    if tree.exists():
        shutil.rmtree(tree)
    header = tree / "header"
    header.mkdir(parents=True)
    (tree / "version").write_text("3")
    (tree / "tmp").mkdir()
    (header / "artifact_name").write_text(artifact.stem)
    (header / "payload_type").write_text("docker")
    (header / "header-info").write_text("{}")
    (header / "type-info").write_text('{"type": "docker"}')
    (header / "meta-data").write_text(json.dumps(artifact_meta_data(artifact)))
    result = device.sandbox.run([MODULE_IN_DEVICE, "Cleanup", "/data/rerun-cleanup-tree"], check=False,
                                env=device.env)
    assert result.returncode == 0, f"Cleanup run again: {result.stderr}"
    shutil.rmtree(tree)


def recover_after_restart(device: DockerDevice, artifact: Path) -> None:
    """What a device whose client was killed in Download runs after it restarts: the boot unit's
    `recover`, then the client's Cleanup for the Download it had recorded."""
    result = device.sandbox.run([MODULE_IN_DEVICE, "recover"], check=False, env=device.env)
    assert result.returncode == 0, f"recover after the client was killed: {result.stderr}"
    rerun_cleanup(device, artifact)


def module_errors(stderr: str) -> list[str]:
    return [line for line in module_lines(stderr) if line.startswith("docker: error:")]


def run_old_generator(device: DockerDevice, *, name: str, images: Sequence[str], run_args: str,
                      extra: Sequence[str] = ()) -> Path:
    """The real docker-artifact-gen of the Debian package, against the bench's daemon."""
    out = device.workdir / f"{name}.mender"
    gen_dir = device.workdir / f"gen-{name}"
    gen_dir.mkdir(exist_ok=True)
    argv = ["bash", str(OLD_GENERATOR), "-n", name, "-t", device.sandbox.device_type, "--run-args", run_args,
            "-o", str(out), *images]
    if extra:
        argv += ["--", *extra]
    run(argv, env={**os.environ, **device.dockerd.env}, cwd=gen_dir, timeout=300)
    return out


@pytest.fixture
def device(sandbox, dockerd, registry, rust_binary, tmp_path) -> DockerDevice:
    """A sandboxed device with the shipped module binary and a configuration naming the bench's daemon."""
    d = DockerDevice(sandbox, dockerd, registry, tmp_path / "work")
    d.install_module(rust_binary(MODULE_PACKAGE, MODULE_BINARY))
    d.configure()
    return d
