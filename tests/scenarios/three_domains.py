"""The three-domain scenarios of lib/mender_composable/scenarios.py on this machine.

The scenario code is the one testimage runs (lib/oeqa/runtime/cases/composable.py); this module
supplies what the workstation has instead of a booted image:

* the target: the bench's sandboxed device (tests/bench DeviceSandbox) with the real Go Mender 3.4
  client, chrooted over private /data, /etc/mender and modules directories; ``run`` is
  ``sh -c`` inside the sandbox with stderr folded into stdout (as oeqa's ssh target returns it),
  ``copy_to`` copies into the sandbox's directory behind the device path;
* the image's state: the device gets the modules the image installs (persistent-app, docker), and
  the rootfs provides of kas/qemux86-64.yml (MENDER_ARTIFACT_NAME, MENDER_ARTIFACT_PROVIDES),
  recorded with ``seed_provides`` because the Go client ignores the bootstrap artifact standalone;
* Docker: the bench's private dockerd; its data root is what DockerRootDir must be (on the image,
  /data/docker), its socket is named in /etc/mender/docker-module.conf and to the docker CLI;
* the artifacts: written by the workspace's generators from the same inputs as the recipes in
  recipes-core/demo-apps and recipes-containers (payload trees, names, versions, run args, extra
  mender-artifact arguments), the demo stack's image made in the private engine
  stack whose busybox image travels inline.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
from pathlib import Path
from typing import Callable, Optional, Tuple

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT / "lib") not in sys.path:
    sys.path.insert(0, str(ROOT / "lib"))

import bench  # noqa: E402
from bench.dockerd import docker_cli  # noqa: E402
from bench.system import BenchError, run  # noqa: E402
from mender_composable import scenarios  # noqa: E402
from mender_composable.scenarios import ArtifactSource, MissingRequirement, Profile, Session  # noqa: E402

KAS_CONFIG = ROOT / "kas" / "qemux86-64.yml"
RECIPES_DEMO = ROOT / "recipes-core" / "demo-apps"
RECIPES_CONTAINERS = ROOT / "recipes-containers"
SOURCE_DATE_EPOCH = "1700000000"


def image_settings(kas_config: Path = KAS_CONFIG) -> Tuple[str, dict]:
    """MENDER_ARTIFACT_NAME and MENDER_ARTIFACT_PROVIDES of the reference image (kas config)."""
    text = kas_config.read_text()
    name = re.search(r'^\s*MENDER_ARTIFACT_NAME\s*=\s*"([^"]*)"', text, re.M)
    provides = re.search(r'^\s*MENDER_ARTIFACT_PROVIDES\s*=\s*"([^"]*)"', text, re.M)
    if not name or not provides:
        raise ValueError(f"{kas_config} sets no MENDER_ARTIFACT_NAME / MENDER_ARTIFACT_PROVIDES")
    return name.group(1), Profile.parse_provides(provides.group(1))


def _bb_var(path: Path, var: str) -> Optional[str]:
    m = re.search(rf'^{re.escape(var)}\s*\??=\s*"([^"]*)"', path.read_text(), re.M)
    return m.group(1) if m else None


class SandboxTarget:
    """The scenarios' target interface over a DeviceSandbox."""

    def __init__(self, device: bench.DeviceSandbox, env: dict):
        self.device = device
        self.env = env

    def run(self, command: str, timeout: Optional[int] = None) -> Tuple[int, str]:
        try:
            proc = self.device.run(["sh", "-c", "exec 2>&1\n" + command], check=False, env=self.env,
                                   timeout=timeout or 300)
        except BenchError as e:  # timed out: what a killed ssh command looks like to oeqa
            return -15, str(e)
        return proc.returncode, proc.stdout.rstrip("\n")

    def copy_to(self, local: str, remote: str) -> None:
        dest = self.device.host_path(remote)
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(local, dest)


class LocalArtifacts(ArtifactSource):
    """Artifacts written here by the workspace's generators, from the demo recipes' inputs."""

    def __init__(self, workdir: Path, *, app_generator: Path, docker_generator: Path, device_type: str,
                 dockerd: bench.Dockerd):
        super().__init__(str(workdir))
        self.app_generator = app_generator
        self.docker_generator = docker_generator
        self.device_type = device_type
        self.dockerd = dockerd
        self.mender_artifact = ["mender-artifact"]
        self._made: dict = {}

    def _env(self) -> dict:
        return {**os.environ, "SOURCE_DATE_EPOCH": SOURCE_DATE_EPOCH}

    def _persistent_app(self, out: Path, *, name: str, version: str, payload: Path, extra=(),
                        service: Optional[str] = None) -> str:
        """What classes/persistent-app-artifact.bbclass runs, with this machine's generator."""
        if str(out) not in self._made:
            argv = [str(self.app_generator), "-n", f"{name}-{version}", "-t", self.device_type,
                    "-d", f"/data/apps/{name}", "--software-name", name, "--software-version", version,
                    "-o", str(out), str(payload)]
            if service:
                argv[1:1] = ["--service", service]
            if extra:
                argv += ["--", *extra]
            run(argv, env=self._env())
            self._made[str(out)] = str(out)
        return self._made[str(out)]

    def demo_app(self, version: str) -> str:
        recipe = next(RECIPES_DEMO.glob(f"demo-app/demo-app-v*_{version}.bb"))
        name = _bb_var(RECIPES_DEMO / "demo-app" / "demo-app.inc", "PERSISTENT_APP_NAME")
        payload = recipe.parent / recipe.name.split("_")[0] / "app"
        return self._persistent_app(Path(self.workdir) / f"{name}-{version}.mender", name=name,
                                    version=version, payload=payload)

    def cuda_depends(self) -> str:
        recipe = next(RECIPES_DEMO.glob("cuda-depends-artifact/cuda-depends-artifact_*.bb"))
        version = recipe.stem.split("_")[1]
        return self._persistent_app(
            Path(self.workdir) / _bb_var(recipe, "PERSISTENT_APP_ARTIFACT"),
            name=_bb_var(recipe, "PERSISTENT_APP_NAME"), version=version, payload=recipe.parent / "files" / "app",
            extra=_bb_var(recipe, "PERSISTENT_APP_EXTRA_ARGS").split())

    def docker_stack(self, version: str, variant: str = "") -> str:
        """`variant` (tests only): the release's image gets a file naming it, so it is an image the
        device has never seen, which its Download must load."""
        recipe = next(RECIPES_CONTAINERS.glob(f"demo-stack/demo-stack-v*_{version}.bb"), None)
        if recipe is None:
            raise MissingRequirement(f"no demo-stack recipe of version {version} in {RECIPES_CONTAINERS}/demo-stack")
        inc = recipe.parent / "demo-stack.inc"
        stack = _bb_var(inc, "DOCKER_ARTIFACT_STACK")
        out = Path(self.workdir) / f"{stack}-{version}{'.' + variant if variant else ''}.mender"
        if str(out) not in self._made:
            self._made[str(out)] = str(self._write_stack(out, recipe, inc, stack, version, variant))
        return self._made[str(out)]

    def _demo_container_archive(self, variant: str = "") -> Path:
        """What recipes-containers/composable-demo-container builds, as a busybox image made in the
        private engine: the same heartbeat script as its entrypoint, saved with `docker save` and
        removed from the engine again (so the module has to load it). One image for every release
        of the stack, as the build makes one."""
        archive = Path(self.workdir) / f"composable-demo-container{'.' + variant if variant else ''}.tar"
        if not archive.exists():
            heartbeat = RECIPES_CONTAINERS / "composable-demo-container" / "files" / "composable-demo-heartbeat"
            ref = "composable-demo-container:latest"
            extra = {"/bin/composable-demo-heartbeat": heartbeat.read_text()}
            if variant:
                extra["/etc/variant"] = variant + "\n"
            bench.make_busybox_image(self.dockerd, ref, cmd=["/bin/composable-demo-heartbeat"], extra_files=extra)
            self.dockerd.docker("save", "-o", str(archive), ref)
            self.dockerd.docker("image", "rm", ref)
        return archive

    def _write_stack(self, out: Path, recipe: Path, inc: Path, stack: str, version: str, variant: str = "") -> Path:
        """What recipes-containers/demo-stack builds: docker-artifact-gen --inline with the recipe's
        run args and depends (classes/docker-artifact.bbclass's command line)."""
        work = Path(self.workdir) / f"stack-{version}{'.' + variant if variant else ''}"
        work.mkdir(parents=True, exist_ok=True)
        archive = self._demo_container_archive(variant)
        argv = [str(self.docker_generator), "-n", f"{stack}-{version}", "-t", self.device_type, "-o", str(out),
                "--inline", "--software-name", stack, "--software-version", version]
        run_args = _bb_var(recipe, "DOCKER_ARTIFACT_RUN_ARGS").replace(
            "${DEMO_STACK_RUN_ARGS}", _bb_var(inc, "DEMO_STACK_RUN_ARGS"))
        argv.append(f"--run-args={run_args}")
        argv.append(f"docker-archive:{archive}")
        depends = (_bb_var(inc, "DOCKER_ARTIFACT_DEPENDS") or "").split()
        if depends:
            argv.append("--")
            for entry in depends:
                argv += ["--depends", entry]
        run(argv, env=self._env(), cwd=work, timeout=300)
        return out


def local_session(device: bench.DeviceSandbox, workdir: Path, *, dockerd: bench.Dockerd, module: Path,
                  docker_module: Path, app_generator: Path, docker_generator: Path,
                  say: Callable[[str], None] = lambda _: None) -> Session:
    """Set `device` (a fresh sandbox whose artifact_name is the image's) up like
    composable-demo-image and open a scenario session on it; the caller closes both."""
    artifact_name, rootfs_provides = image_settings()
    # The modules the image installs (persistent-app-update-module, docker-update-module).
    device.install_module("persistent-app", module)
    device.install_module("docker", docker_module)
    conf = {"socket": str(dockerd.socket), "health_timeout_seconds": 20, "settle_seconds": 1,
            # busybox as PID 1 ignores SIGTERM: any stop timeout would be waited out in full.
            "stop_timeout_seconds": 0}
    (device.etc_mender / "docker-module.conf").write_text(json.dumps(conf, indent=2) + "\n")
    (device.etc_mender / "docker-module.conf").chmod(0o600)
    # MENDER_ARTIFACT_PROVIDES: what the bootstrap artifact gives a device on first boot.
    device.seed_provides(rootfs_provides, artifact_name=artifact_name)
    cli, cli_env = docker_cli()
    env = {
        # The modules' locks live in /run/lock on a device; here /run is the host's own.
        "PERSISTENT_APP_LOCK": str(device.dir / "persistent-app.lock"),
        "DOCKER_MODULE_LOCK": str(device.dir / "docker-module.lock"),
        **cli_env,
    }
    profile = Profile(
        description="sandboxed device (tests/bench)",
        artifact_name=artifact_name, rootfs_provides=rootfs_provides,
        docker_root=str(dockerd.data_root), docker=f"{cli} -H {dockerd.host}",
        # The bench installs and seeds the Go client (DeviceSandbox.mender); a C++ mender-update
        # that the machine may also have on its PATH is not this device's client.
        stop_client_service=False, client="mender")
    artifacts = LocalArtifacts(workdir, app_generator=app_generator, docker_generator=docker_generator,
                               device_type=device.device_type, dockerd=dockerd)
    session = Session(SandboxTarget(device, env), profile, artifacts, say=say)
    session.start()
    return session


__all__ = ["LocalArtifacts", "SandboxTarget", "image_settings", "local_session", "scenarios"]
