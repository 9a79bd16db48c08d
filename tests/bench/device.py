"""A per-test Mender device: the real Go client 3.4 sees /data, /etc/mender and the modules dir of
the test, never the machine's.

What the Go client 3.4 does standalone (found by running it here):
- `{}` is a mender.conf it accepts. Every command warns "No server URL(s) specified in mender
  configuration." and "Server entry 1 has no associated server URL."; harmless. Without
  `--no-syslog` it also warns that it cannot reach syslog, so the bench always passes it.
- Before the first install, `show-provides` prints nothing at all (not even artifact_name) and
  `show-artifact` falls back to /etc/mender/artifact_info with a warning on stderr.
- It does not install /data/mender/bootstrap.mender in standalone mode (`show-provides` ignores it,
  `install` of a bootstrap artifact fails with "Artifact reader returned an unknown installer
  type"), so provides such as MENDER_ARTIFACT_PROVIDES are seeded with a no-op module artifact
  (DeviceSandbox.seed_provides).
- `install` runs Download → SupportsRollback → ArtifactInstall → NeedsArtifactReboot and exits 0;
  `commit` runs ArtifactCommit → Cleanup; `commit`/`rollback` with nothing pending exit 2.
- An unmet depends makes `install` exit 1 before any module state runs, with this on stderr
  (logrus, level=error, printed twice; quotes escaped inside msg="…"):
      Artifact dependency "rootfs-image.cuda.version" not satisfied by currently installed artifact (11.8 != <nil>).
  The first value is the artifact's requirement, the second the device's provide (`<nil>` when it
  has none), e.g. `(2.0 != 1.0)`; for --artifact-name-depends: `"artifact_name" … ([nope] != app-1)`.
  A wrong device type gives "image (device types [other]) not compatible with device qemux86-64".
  DEPENDS_UNMET_RE matches the Go message and the C++ client's.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Mapping, Sequence

from .artifact import mender_artifact_write_module
from .system import BenchError, kill_processes_under, run, sha256_tree

DEVICE_SANDBOX = Path(__file__).resolve().parent / "device-sandbox"

# The machine's device paths; a test that touched any of them would break the host or other tests.
HOST_DEVICE_PATHS = (Path("/data"), Path("/etc/mender"), Path("/var/lib/mender"), Path("/usr/share/mender/modules/v3"))

# Both clients' unmet-depends messages (Go 3.4 and C++ 5.x), from the layer's Python library, which
# the testimage cases share: one place knows the clients' wording.
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "lib"))
from mender_composable.scenarios import DEPENDS_UNMET_RE  # noqa: E402

_NOOP_MODULE = """#!/bin/sh
# Installs nothing: lets the bench record provides in the client's database.
case "$1" in
    SupportsRollback) echo Yes ;;
    NeedsArtifactReboot) echo No ;;
esac
exit 0
"""


def host_device_paths_snapshot() -> dict[str, str]:
    """Names and sha256 of everything at the machine's device paths ('absent' where nothing is)."""
    snapshot = {}
    for path in HOST_DEVICE_PATHS:
        if path.is_symlink():
            # Following /var/lib/mender -> /data/mender would read the host's (absent) /data.
            snapshot[str(path)] = f"symlink -> {os.readlink(path)}"
        else:
            snapshot.update(sha256_tree([path]))
    return snapshot


class DeviceSandbox:
    """A device tree under `base_dir`; commands run through tests/bench/device-sandbox.

    Layout: data/ (/data; data/mender is the datastore /var/lib/mender points to), etc-mender/
    (/etc/mender with mender.conf and artifact_info), modules/ (/usr/share/mender/modules/v3).
    `mender_conf` entries are merged into the JSON mender.conf.
    """

    def __init__(self, base_dir: str | os.PathLike, *, artifact_name: str = "initial",
                 device_type: str = "qemux86-64", mender_conf: Mapping | None = None):
        self.dir = Path(base_dir).resolve()
        self.data = self.dir / "data"
        self.datastore = self.data / "mender"
        self.etc_mender = self.dir / "etc-mender"
        self.modules = self.dir / "modules"
        self.device_type = device_type
        self.datastore.mkdir(parents=True, exist_ok=True)
        self.etc_mender.mkdir(parents=True, exist_ok=True)
        self.modules.mkdir(parents=True, exist_ok=True)
        (self.etc_mender / "mender.conf").write_text(json.dumps(dict(mender_conf or {}), indent=2) + "\n")
        (self.etc_mender / "artifact_info").write_text(f"artifact_name={artifact_name}\n")
        (self.datastore / "device_type").write_text(f"device_type={device_type}\n")

    def __enter__(self) -> "DeviceSandbox":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """End whatever a test left running inside; the namespace and its mounts die with it."""
        kill_processes_under(self.dir / "root")

    def host_path(self, device_path: str) -> Path:
        """Where a device path lives on the host, e.g. /data/apps/x -> <dir>/data/apps/x."""
        p = "/" + device_path.lstrip("/")
        for device, host in (("/data", self.data), ("/var/lib/mender", self.datastore),
                             ("/etc/mender", self.etc_mender), ("/usr/share/mender/modules/v3", self.modules)):
            if p == device or p.startswith(device + "/"):
                return host / p[len(device):].lstrip("/")
        raise ValueError(f"{device_path} is not inside the device's sandboxed paths")

    def run(self, argv: Sequence[str], check: bool = True, env: Mapping[str, str] | None = None,
            timeout: float = 120, input: str | bytes | None = None,
            cwd: str | os.PathLike | None = None) -> subprocess.CompletedProcess:
        """Run argv as the device sees it; `env` is added to this process's environment."""
        full_env = {**os.environ, **(env or {})}
        return run(["bash", str(DEVICE_SANDBOX), str(self.dir), "--", *argv], check=check, env=full_env,
                   timeout=timeout, input=input, cwd=cwd)

    def install_module(self, name: str, path: str | os.PathLike) -> Path:
        target = self.modules / name
        shutil.copyfile(path, target)
        target.chmod(0o755)
        return target

    def mender(self, *args: str, timeout: float = 300, env: Mapping[str, str] | None = None) -> subprocess.CompletedProcess:
        """The real Go client (`install FILE`, `commit`, `rollback`, `show-provides`, …); never raises
        on a non-zero exit: tests assert on returncode/stdout/stderr."""
        return self.run(["mender", "--no-syslog", *args], check=False, timeout=timeout, env=env)

    def provides(self) -> dict[str, str]:
        result = self.mender("show-provides")
        if result.returncode != 0:
            raise BenchError(f"`mender show-provides` in {self.dir} exited {result.returncode}:\n{result.stderr}")
        pairs = (line.split("=", 1) for line in result.stdout.splitlines() if "=" in line)
        return {key: value for key, value in pairs}

    def artifact_name(self) -> str:
        result = self.mender("show-artifact")
        if result.returncode != 0:
            raise BenchError(f"`mender show-artifact` in {self.dir} exited {result.returncode}:\n{result.stderr}")
        return result.stdout.strip()

    def seed_provides(self, provides: Mapping[str, str], *, artifact_name: str = "bench-seed",
                      clears: Sequence[str] | None = None) -> None:
        """Record `provides` in the client's database as an installed artifact would.

        The Go client ignores bootstrap artifacts standalone; this installs and commits a no-op
        module artifact instead. `clears` defaults to the provided keys; pass ["rootfs-image.*"] to
        mimic an OS update.
        """
        work = self.dir / "seed"
        work.mkdir(exist_ok=True)
        module = work / "bench-noop"
        module.write_text(_NOOP_MODULE)
        self.install_module("bench-noop", module)
        payload = work / "empty"
        payload.write_bytes(b"")
        artifact = mender_artifact_write_module(
            work / f"{artifact_name}.mender", type="bench-noop", name=artifact_name,
            device_type=self.device_type, files=[payload], provides=provides,
            clears=list(clears) if clears is not None else list(provides),
            extra_args=["--no-default-software-version", "--no-default-clears-provides"],
        )
        for args in (("install", str(artifact)), ("commit",)):
            result = self.mender(*args)
            if result.returncode != 0:
                raise BenchError(f"seeding provides in {self.dir}: `mender {' '.join(args)}` exited "
                                 f"{result.returncode}:\n{result.stderr}")
        shutil.rmtree(work)
