"""The three-domain acceptance scenarios of meta-mender-composable, written once.

They drive a device through a small interface, so the same code runs

* in testimage (``lib/oeqa/runtime/cases/composable.py``): the booted image over ssh
  (``self.target.run`` / ``self.target.copyTo``), artifacts from the build's DEPLOY_DIR_IMAGE;
* on a workstation (``tests/scenarios/three_domains.py``, ``tests/e2e/test_three_domains.py``,
  ``scripts/demo``): the test bench's sandboxed device with the real Go Mender client, artifacts
  written by the workspace's generators.

What differs between the two is given, not guessed:

* :class:`Target` -- ``run(command) -> (status, output)`` with stderr folded into the output (what
  oeqa's ssh target returns), and ``copy_to(local, remote)``;
* :class:`Profile` -- what the device should look like: the image's MENDER_ARTIFACT_NAME and
  MENDER_ARTIFACT_PROVIDES, Docker's data root (``/data/docker`` on the image, the private
  engine's data root on the bench) and how to call ``docker``;
* an :class:`ArtifactSource` -- where the artifacts come from.

The client is the one the profile pins (:attr:`Profile.client`), or else the one the device has:
``mender-update`` (C++ 4.x/5.x) or ``mender`` (Go 3.x). Both spell the commands the same
(``install FILE``, ``commit``, ``rollback``, ``show-provides``) and log module output and unmet
depends differently (:data:`DEPENDS_UNMET_RE`, :func:`depends_unmet_key`, :func:`module_lines`).

Each scenario returns an :class:`Outcome` (checks, each ok or not) and narrates what it does through
``say``; it never raises for a failed check, so a report can show every scenario. A scenario that
cannot run -- an artifact, a tool or the client missing -- fails with the reason: there is no
"skipped", because a test that skips has not shown anything. Plain Python 3.8: no BitBake, no
pytest.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import tempfile
import traceback
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Sequence, Tuple

from . import artifact as mender_artifact
from . import provides as provides_rules

try:  # typing.Protocol is 3.8+; only documentation here.
    from typing import Protocol
except ImportError:  # pragma: no cover
    Protocol = object  # type: ignore

Say = Callable[[str], None]

# Go 3.x:  Artifact dependency "KEY" not satisfied by currently installed artifact (WANT != HAVE).
#          (inside logrus' msg="…", so the quotes arrive escaped)
# C++ 4.x/5.x: Missing 'KEY' in provides, required by artifact depends
DEPENDS_UNMET_RE = re.compile(
    r'Artifact dependency \\?"(?P<go_key>[^"\\]+)\\?" not satisfied by currently installed artifact'
    r"[^\n]*?\)"
    r"|Missing '(?P<cpp_key>[^']+)' in provides, required by artifact depends"
)


def depends_unmet_key(output: str) -> Optional[str]:
    """The provide key a client names when it refuses an artifact for unmet depends, in either
    client's wording; None when the output has no such refusal."""
    m = DEPENDS_UNMET_RE.search(output)
    return (m.group("go_key") or m.group("cpp_key")) if m else None


# Module stderr as the clients log it:
#   Go 3.x:  … msg="Output (stderr) from command \"/usr/share/mender/modules/v3/NAME\": LINE"
#   C++:     … msg="Update Module output (stderr): LINE"
_MODULE_LINE_RES = (
    re.compile(r'Output \(stderr\) from command \\"[^"]*?/(?P<module>[^/"\\]+)\\": (?P<line>.*)$'),
    re.compile(r"Update Module output \(stderr\): (?P<line>.*)$"),
)

STACK_LABEL = "io.mender.composable.stack"
RELEASE_LABEL = "io.mender.composable.release"

# The OS stand-in: a rootfs update needs a reboot into the other partition, which neither the
# bench nor a testimage run does. What an OS update does to the provides -- clear rootfs-image.*,
# provide the new OS's rootfs-image.* -- is carried by a module-image artifact of this no-op
# module instead; data-partition.* surviving it is what the scenarios check.
OS_STAND_IN_TYPE = "composable-os-stand-in"
OS_STAND_IN_MODULE = """#!/bin/sh
# composable-os-stand-in: installs nothing. Its artifacts carry an OS update's effect on the
# provides (clears rootfs-image.*, provides the new OS's rootfs-image.*); installed by the
# three-domain scenarios of meta-mender-composable and removed after them.
case "$1" in
    SupportsRollback) echo Yes ;;
    NeedsArtifactReboot) echo No ;;
esac
exit 0
"""
# The next OS of the reference setup, as far as the provides go.
NEXT_OS_NAME = "composable-demo-2.0"
NEXT_OS_PROVIDES = {
    "rootfs-image.python.version": "3.13",
    "rootfs-image.api.version": "3.0",
    "rootfs-image.feature.docker": "true",
    "rootfs-image.feature.persistent-app": "true",
}

OS_UPDATE_STAND_IN = "stand-in"
OS_UPDATE_ROOTFS = "rootfs-image"
OS_UPDATES = (OS_UPDATE_STAND_IN, OS_UPDATE_ROOTFS)

# Provides that mender-artifact writes itself into every rootfs-image artifact (and meta-mender
# into an image's): not capabilities of the OS, so the scenarios compare rootfs-image.* without them.
GENERATED_PROVIDES = ("rootfs-image.version", "rootfs-image.checksum")
GENERATED_PREFIX = "rootfs-image.update-module."


def os_provides(provides: Dict[str, str]) -> Dict[str, str]:
    """The rootfs-image.* capabilities in `provides`, without the generated ones."""
    return {k: v for k, v in provides.items()
            if k.startswith(provides_rules.ROOTFS_NAMESPACE) and k not in GENERATED_PROVIDES
            and not k.startswith(GENERATED_PREFIX)}


# Limits in seconds for one command on the device: a client install (which streams the artifact
# through the module and may load images into the engine), and anything else. They are explicit
# because a target's own default differs between runs (oeqa's ssh target: 300 s).
INSTALL_TIMEOUT = 1200
COMMAND_TIMEOUT = 300


class MissingRequirement(Exception):
    """An artifact, tool or client the scenario needs does not exist here: the scenario fails."""


class _Stop(Exception):
    """A required check failed: the rest of the scenario would only repeat the failure."""


class Target(Protocol):
    def run(self, command: str, timeout: Optional[int] = None) -> Tuple[int, str]:
        """Run a shell command on the device: exit status and stdout+stderr."""

    def copy_to(self, local: str, remote: str) -> None:
        """Copy a local file to a path on the device."""

    # Only for Profile.os_update "rootfs-image":
    # def reboot(self, timeout: Optional[int] = None) -> None:
    #     """Reboot the device and return once it answers again."""


@dataclass
class Profile:
    """What the device is expected to be."""

    description: str
    # MENDER_ARTIFACT_NAME and MENDER_ARTIFACT_PROVIDES of the image.
    artifact_name: str
    rootfs_provides: Dict[str, str]
    # Docker's data root (DockerRootDir) and how to call the docker CLI on the device.
    docker_root: str = "/data/docker"
    docker: str = "docker"
    # Where artifacts are copied to on the device (the data partition has the room).
    work_dir: str = "/data/mender-composable-test"
    modules_dir: str = "/usr/share/mender/modules/v3"
    # Stop the client's systemd service while the scenarios run (a booted image runs it; a
    # sandbox on a workstation runs none, and must not stop the workstation's).
    stop_client_service: bool = True
    # The client to drive ("mender" or "mender-update"); None: the one the device has. A test
    # bench pins the client it starts, so that another client on the machine's PATH changes nothing.
    client: Optional[str] = None
    # How the scenarios update the OS: "stand-in" (a module-image artifact that carries only an OS
    # update's effect on the provides, see OS_STAND_IN_MODULE) or "rootfs-image" (the real thing:
    # a rootfs-image artifact written to the inactive partition, a reboot into it, a commit; needs
    # a target with reboot() and an artifact source with rootfs_image()).
    os_update: str = OS_UPDATE_STAND_IN

    @staticmethod
    def parse_provides(value: str) -> Dict[str, str]:
        """MENDER_ARTIFACT_PROVIDES ("key:value key:value") as a dict."""
        return {k: v for k, v in map(provides_rules.split_entry, provides_rules.entries(value)) if v is not None}


class ArtifactSource:
    """Where artifacts come from. Subclasses return local paths or raise :class:`MissingRequirement`."""

    # argv prefix of a mender-artifact, for the OS stand-in artifacts; None when there is none.
    mender_artifact: Optional[List[str]] = None

    def __init__(self, workdir: str):
        self.workdir = workdir
        os.makedirs(workdir, exist_ok=True)

    def demo_app(self, version: str) -> str:
        """The demo-app persistent-app artifact of that version (recipes-core/demo-apps/demo-app)."""
        raise NotImplementedError

    def cuda_depends(self) -> str:
        """The artifact depending on rootfs-image.cuda.version:11.8 (recipes-core/demo-apps/cuda-depends-artifact)."""
        raise NotImplementedError

    def docker_stack(self, version: str) -> str:
        """A docker-stack artifact of the demo stack carrying its images inline."""
        raise NotImplementedError

    def rootfs_image(self, name: str, provides: Dict[str, str]) -> str:
        """A rootfs-image artifact of the device's own rootfs named `name`, providing `provides`
        (for Profile.os_update "rootfs-image")."""
        raise MissingRequirement(f"{type(self).__name__} writes no rootfs-image artifacts: "
                                 "the real OS update needs an artifact source that has the device's rootfs")

    def os_stand_in(self, name: str, device_types: Sequence[str], provides: Dict[str, str]) -> str:
        if not self.mender_artifact:
            raise MissingRequirement("no mender-artifact to write the OS stand-in artifact with")
        out = os.path.join(self.workdir, f"{name}.os-stand-in.mender")
        return mender_artifact.write_module_image(
            self.mender_artifact, out, type=OS_STAND_IN_TYPE, name=name, device_types=device_types,
            files=[], provides=provides, clears=["rootfs-image.*"])


class DeployedArtifacts(ArtifactSource):
    """Artifacts of a build: what composable-demo-image deploys to DEPLOY_DIR_IMAGE."""

    DEMO_APP = "demo-app-{version}.mender"      # recipes-core/demo-apps/demo-app/demo-app-v<N>_<version>.bb
    CUDA_DEPENDS = "cuda-depends.mender"        # recipes-core/demo-apps/cuda-depends-artifact
    DOCKER_STACK = "demo-stack-{version}.mender"  # an inline docker-stack artifact of stack demo-stack

    def __init__(self, deploy_dir: str, workdir: str, tool_dirs: Sequence[str] = ()):
        super().__init__(workdir)
        self.deploy_dir = deploy_dir
        found = shutil.which("mender-artifact", path=os.pathsep.join([d for d in tool_dirs if d]
                                                                     + [os.environ.get("PATH", "")]))
        self.mender_artifact = [found] if found else None

    def _deployed(self, name: str, made_by: str) -> str:
        path = os.path.join(self.deploy_dir, name)
        if not os.path.isfile(path):
            raise MissingRequirement(f"{name} is not in DEPLOY_DIR_IMAGE ({self.deploy_dir}); {made_by}")
        return path

    def demo_app(self, version: str) -> str:
        return self._deployed(self.DEMO_APP.format(version=version),
                              "composable-demo-image deploys it (demo-app-v1, demo-app-v2)")

    def cuda_depends(self) -> str:
        return self._deployed(self.CUDA_DEPENDS, "composable-demo-image deploys it (cuda-depends-artifact)")

    def docker_stack(self, version: str) -> str:
        return self._deployed(self.DOCKER_STACK.format(version=version),
                              "composable-demo-image deploys it (demo-stack-v1, demo-stack-v2)")


# -- the client --------------------------------------------------------------------------------------


@dataclass
class Client:
    command: str      # how to call it, e.g. "mender --no-syslog"
    name: str         # "mender-update" or "mender"
    flavour: str      # for the report
    version: str
    service: str      # its systemd unit, stopped while the scenarios run


CLIENTS = ("mender-update", "mender")


def detect_client(target: Target, pinned: Optional[str] = None) -> Client:
    """The client to drive: `pinned` ("mender" or "mender-update") if given, else the C++ client
    when the device has it, else the Go client."""
    if pinned is not None:
        if pinned not in CLIENTS:
            raise ValueError(f"unknown Mender client {pinned!r}: expected one of {', '.join(CLIENTS)}")
        status, _ = target.run(f"command -v {pinned} >/dev/null 2>&1", timeout=COMMAND_TIMEOUT)
        if status != 0:
            raise MissingRequirement(f"{pinned}, the client this run is pinned to, is not on the device's PATH")
        name = pinned
    else:
        _, out = target.run(
            "if command -v mender-update >/dev/null 2>&1; then echo mender-update; "
            "elif command -v mender >/dev/null 2>&1; then echo mender; fi", timeout=COMMAND_TIMEOUT)
        name = out.strip().splitlines()[-1] if out.strip() else ""
    if name == "mender-update":
        _, version = target.run("mender-update --version 2>/dev/null", timeout=COMMAND_TIMEOUT)
        return Client("mender-update", name, "C++ client", version.strip().splitlines()[0] if version.strip() else "?",
                      "mender-updated")
    if name == "mender":
        _, version = target.run("mender --version 2>/dev/null", timeout=COMMAND_TIMEOUT)
        version = version.strip().split()[0] if version.strip() else "?"
        if not re.match(r"[3-9]\.", version):
            raise MissingRequirement(f"mender {version} on the device: the scenarios need the Go client 3.x "
                                     "(`mender install`) or the C++ client (`mender-update install`)")
        # --no-syslog: standalone runs log to stderr, where the module's lines are read from.
        return Client("mender --no-syslog", name, "Go client", version, "mender-client")
    raise MissingRequirement("neither mender-update (C++ client) nor mender (Go client) is on the device's PATH")


def module_lines(output: str) -> List[str]:
    """The Update Modules' stderr lines in a client's output, in order."""
    lines = []
    for raw in output.splitlines():
        for regex in _MODULE_LINE_RES:
            m = regex.search(raw)
            if m:
                line = m.group("line")
                if line.endswith('"'):
                    line = line[:-1]
                lines.append(line.replace('\\"', '"').replace("\\\\", "\\"))
                break
    return lines


def parse_provides(output: str) -> Dict[str, str]:
    return dict(line.split("=", 1) for line in output.splitlines() if "=" in line and not line.startswith(" "))


# -- outcomes ------------------------------------------------------------------------------------------


@dataclass
class Check:
    name: str
    ok: bool
    detail: str = ""


@dataclass
class Step:
    label: str
    status: int
    output: str
    module_lines: List[str]


@dataclass
class Outcome:
    key: str
    title: str
    checks: List[Check] = field(default_factory=list)
    steps: List[Step] = field(default_factory=list)
    error: Optional[str] = None

    @property
    def ok(self) -> bool:
        return self.error is None and bool(self.checks) and all(c.ok for c in self.checks)

    @property
    def status(self) -> str:
        return "PASS" if self.ok else "FAIL"

    def failures(self) -> str:
        """Why it did not pass, for a test's failure message."""
        lines = [f"{c.name}: {c.detail}" if c.detail else c.name for c in self.checks if not c.ok]
        if self.error:
            lines.append(self.error)
        for step in self.steps:
            if step.status != 0 or any(": error:" in m for m in step.module_lines):
                lines.append(f"--- {step.label} (exit {step.status}) ---\n{step.output.strip()[-3000:]}")
        return "\n".join(lines)


# -- the session ---------------------------------------------------------------------------------------


class Session:
    """One device, its client and where artifacts come from; the scenarios run in it in any order
    and leave the device's rootfs-image.* provides as they found them."""

    def __init__(self, target: Target, profile: Profile, artifacts: ArtifactSource, say: Say = print):
        self.target = target
        self.profile = profile
        self.artifacts = artifacts
        self.say = say
        if profile.os_update not in OS_UPDATES:
            raise ValueError(f"unknown OS update mode {profile.os_update!r}: expected one of {', '.join(OS_UPDATES)}")
        if profile.os_update == OS_UPDATE_ROOTFS and not callable(getattr(target, "reboot", None)):
            raise MissingRequirement(f"{type(target).__name__} cannot reboot the device, which a rootfs-image OS update needs")
        self.client = detect_client(target, profile.client)
        status, out = target.run("cat /var/lib/mender/device_type 2>/dev/null || cat /data/mender/device_type",
                                 timeout=COMMAND_TIMEOUT)
        m = re.search(r"device_type=(\S+)", out)
        if status != 0 or not m:
            raise MissingRequirement(f"cannot read the device type from /var/lib/mender/device_type: {out.strip()}")
        self.device_type = m.group(1)
        self._local = tempfile.mkdtemp(prefix="composable-scenarios-")
        self._pushed: Dict[str, str] = {}
        self._service_was_active = False
        self._outcome: Optional[Outcome] = None
        # Real OS updates: the image's OS (name, rootfs-image.*) and whether the device runs NEXT_OS.
        self._image_os: Optional[Tuple[str, Dict[str, str]]] = None
        self._on_next_os = False

    # -- plumbing ------------------------------------------------------------------------------

    def sh(self, command: str, timeout: Optional[int] = None) -> Tuple[int, str]:
        return self.target.run(command, timeout=timeout or COMMAND_TIMEOUT)

    def sh_ok(self, command: str, timeout: Optional[int] = None) -> str:
        status, out = self.sh(command, timeout)
        if status != 0:
            raise _Stop(f"`{command}` exited {status} on the device: {out.strip()[-2000:]}")
        return out

    def start(self) -> None:
        """Stop the client's daemon: standalone commands must not race it."""
        if self.profile.stop_client_service:
            status, _ = self.sh(f"systemctl is-active --quiet {self.client.service}")
            self._service_was_active = status == 0
        if self._service_was_active:
            self.sh(f"systemctl stop {self.client.service}")
        self.sh(f"mkdir -p {shlex.quote(self.profile.work_dir)}")

    def close(self) -> None:
        if self._on_next_os:
            self._outcome = Outcome("close", "back to the image's OS")
            try:
                self.ensure_image_os()
            except _Stop as e:
                self.say(f"    FAILED: could not go back to the image's OS: {e}")
            finally:
                self._outcome = None
        self.sh(f"rm -rf {shlex.quote(self.profile.work_dir)}")
        if self._service_was_active:
            self.sh(f"systemctl start {self.client.service}")
        shutil.rmtree(self._local, ignore_errors=True)

    def push(self, local: str) -> str:
        """Copy an artifact to the device's work dir (once) and return its path there."""
        if local not in self._pushed:
            remote = f"{self.profile.work_dir}/{os.path.basename(local)}"
            self.sh(f"mkdir -p {shlex.quote(self.profile.work_dir)}")
            self.target.copy_to(local, remote)
            self._pushed[local] = remote
        return self._pushed[local]

    def client_step(self, label: str, *args: str, timeout: int = INSTALL_TIMEOUT) -> Step:
        command = " ".join([self.client.command] + [shlex.quote(a) for a in args])
        status, out = self.sh(command, timeout=timeout)
        step = Step(label, status, out, module_lines(out))
        if self._outcome is not None:
            self._outcome.steps.append(step)
        self.say(f"$ {self.client.name} {label}  -> exit {status}")
        for line in step.module_lines:
            self.say(f"    module: {line}")
        return step

    def install(self, path: str) -> Step:
        return self.client_step(f"install {os.path.basename(path)}", "install", self.push(path))

    def provides(self) -> Dict[str, str]:
        status, out = self.sh(f"{self.client.command} show-provides 2>/dev/null")
        if status != 0:
            raise _Stop(f"`{self.client.name} show-provides` exited {status}: {out.strip()}")
        return parse_provides(out)

    def say_provides(self, provides: Dict[str, str], prefix: str = "    provides: ") -> None:
        self.say(prefix + (", ".join(f"{k}={v}" for k, v in sorted(provides.items())) or "(none)"))

    # -- checks ----------------------------------------------------------------------------------

    def check(self, name: str, ok: bool, detail: str = "", quiet: bool = False) -> bool:
        """Record a check; print it (a passed `quiet` one is not: its step line said enough)."""
        assert self._outcome is not None
        self._outcome.checks.append(Check(name, bool(ok), "" if ok else detail))
        if not (ok and quiet):
            self.say(f"    [{'ok' if ok else 'FAILED'}] {name}" + ("" if ok or not detail else f": {detail}"))
        return bool(ok)

    def require(self, name: str, ok: bool, detail: str = "", quiet: bool = False) -> None:
        if not self.check(name, ok, detail, quiet):
            raise _Stop(f"stopped after: {name}")

    def require_step(self, step: Step) -> None:
        errors = [m for m in step.module_lines if ": error:" in m]
        self.require(f"{self.client.name} {step.label} succeeded", step.status == 0 and not errors,
                     f"exit {step.status}; " + (errors[0] if errors else step.output.strip()[-600:]), quiet=True)

    def scenario(self, key: str, title: str, body: Callable[["Session", Outcome], None]) -> Outcome:
        outcome = Outcome(key, title)
        self._outcome = outcome
        self.say(f"\n=== {title} ===")
        try:
            body(self, outcome)
        except MissingRequirement as e:
            outcome.error = f"cannot run: {e}"
            self.say(f"    FAILED: cannot run: {e}")
        except _Stop as e:
            outcome.error = str(e)
        except Exception as e:  # a scenario bug or a broken device: reported, not raised
            outcome.error = f"{type(e).__name__}: {e}\n{traceback.format_exc()}"
            self.say(f"    ERROR: {type(e).__name__}: {e}")
        finally:
            self._outcome = None
        return outcome

    # -- device observations -----------------------------------------------------------------------

    def tree(self, dest: str) -> Dict[str, str]:
        """``{relative path: sha256}`` of the regular files below dest: exactly the payload's, as the
        module writes nothing of its own into an app's tree."""
        q = shlex.quote(dest)
        status, out = self.sh(f"cd {q} 2>/dev/null && find . -type f -exec sha256sum {{}} \\;")
        if status != 0:
            return {}
        out_tree = {}
        for line in out.splitlines():
            parts = line.split(None, 1)
            if len(parts) == 2 and re.fullmatch(r"[0-9a-f]{64}", parts[0]):
                name = parts[1].strip()
                out_tree[name[2:] if name.startswith("./") else name] = parts[0]
        return out_tree

    def snapshot(self, paths: Sequence[str]) -> List[str]:
        """Every entry below `paths`: sha256 and name of files, the name of anything else."""
        quoted = " ".join(shlex.quote(p) for p in paths)
        _, out = self.sh(f"find {quoted} -type f -exec sha256sum {{}} \\; -o -print 2>/dev/null")
        return sorted(out.splitlines())

    def docker(self, args: str, timeout: Optional[int] = None) -> Tuple[int, str]:
        return self.sh(f"{self.profile.docker} {args}", timeout=timeout)

    # -- the OS stand-in ---------------------------------------------------------------------------

    def active_rootfs(self) -> str:
        """The device the running rootfs was mounted from (e.g. /dev/vda2)."""
        out = self.sh_ok("findmnt -n -o SOURCE /")
        return out.strip().splitlines()[-1] if out.strip() else ""

    def os_update(self, art: str) -> Step:
        """Install and commit an OS update: the real one (install, reboot into the other rootfs,
        commit) or the stand-in, as the profile says."""
        if self.profile.os_update == OS_UPDATE_ROOTFS:
            return self.rootfs_update(art)
        return self.os_stand_in_update(art)

    def rootfs_update(self, art: str) -> Step:
        """A rootfs-image artifact: the client writes the inactive partition and points the boot
        environment at it; the device reboots into it; the commit makes it permanent."""
        before = self.active_rootfs()
        self.require_step(self.install(art))
        self.say("$ reboot")
        self.target.reboot(timeout=INSTALL_TIMEOUT)  # type: ignore[attr-defined]
        after = self.active_rootfs()
        self.say(f"    running from {after} (was {before})")
        self.require(f"rebooted into the other rootfs partition ({before} -> {after})",
                     bool(after) and after != before, f"still running from {after!r}")
        commit = self.client_step("commit", "commit")
        self.require_step(commit)
        return commit

    def os_stand_in_update(self, art: str) -> Step:
        """Install and commit an OS stand-in artifact (see OS_STAND_IN_MODULE)."""
        module = os.path.join(self._local, OS_STAND_IN_TYPE)
        with open(module, "w") as f:
            f.write(OS_STAND_IN_MODULE)
        remote_module = f"{self.profile.modules_dir}/{OS_STAND_IN_TYPE}"
        self.target.copy_to(module, remote_module)
        self.sh_ok(f"chmod 0755 {shlex.quote(remote_module)}")
        try:
            self.require_step(self.install(art))
            commit = self.client_step("commit", "commit")
            self.require_step(commit)
        finally:
            self.sh(f"rm -f {shlex.quote(remote_module)}")
        return commit

    def _os_swap(self, outcome_check: Optional[Callable[[Dict[str, str]], None]]) -> None:
        """One real OS update to the OS the device is not running (see os_clear_and_restore)."""
        if self._image_os is None:
            self._image_os = (self.profile.artifact_name, os_provides(self.provides()))
        if self._on_next_os:
            name, provides = self._image_os
        else:
            name, provides = NEXT_OS_NAME, NEXT_OS_PROVIDES
        art = self._os_artifact(name, provides)
        self.say(f"# OS update (rootfs-image, A/B) to {name}: clears rootfs-image.*, provides "
                 + ", ".join(f"{k}={v}" for k, v in sorted(provides.items())))
        self.os_update(art)
        self._on_next_os = not self._on_next_os
        after = self.provides()
        self.say_provides(after)
        self.check("rootfs-image.* replaced by the new OS's provides", os_provides(after) == provides,
                   f"rootfs-image.* after: {os_provides(after)}")
        self.check(f"artifact_name={name}", after.get("artifact_name") == name,
                   f"the device shows {after.get('artifact_name')!r}")
        if outcome_check is not None:
            outcome_check(after)

    def ensure_image_os(self) -> None:
        """Back to the image's own OS if a real OS update left the device on NEXT_OS."""
        if self._on_next_os:
            self.say(f"# back to the image's OS {self.profile.artifact_name}")
            self._os_swap(None)

    def _os_artifact(self, name: str, provides: Dict[str, str]) -> str:
        if self.profile.os_update == OS_UPDATE_ROOTFS:
            return self.artifacts.rootfs_image(name, provides)
        return self.artifacts.os_stand_in(name, [self.device_type], provides)

    def os_clear_and_restore(self, outcome_check: Callable[[Dict[str, str]], None]) -> None:
        """An OS update to NEXT_OS, `outcome_check(provides)`, then back to the image's OS.

        With real OS updates each update is an A/B swap with a reboot, minutes on a slow device, so
        the way back is not taken at once: this OS update goes to the other OS (NEXT_OS, or back to
        the image's own when the device is on NEXT_OS), `outcome_check` runs after it, and the
        device returns to the image's OS when a scenario needs it (the rootfs provides) and when
        the session closes (:meth:`ensure_image_os`). Every swap is checked the same way."""
        if self.profile.os_update == OS_UPDATE_ROOTFS:
            self._os_swap(outcome_check)
            return
        before = self.provides()
        rootfs_before = os_provides(before)
        what = "OS stand-in"
        # Both artifacts first: a missing mender-artifact must not leave the device on the next OS.
        next_os = self._os_artifact(NEXT_OS_NAME, NEXT_OS_PROVIDES)
        back = self._os_artifact(self.profile.artifact_name, rootfs_before)
        self.say(f"# {what} {NEXT_OS_NAME}: clears rootfs-image.*, provides "
                 + ", ".join(f"{k}={v}" for k, v in sorted(NEXT_OS_PROVIDES.items())))
        self.os_update(next_os)
        try:
            after = self.provides()
            self.say_provides(after)
            rootfs_after = os_provides(after)
            self.check("rootfs-image.* replaced by the new OS's provides", rootfs_after == NEXT_OS_PROVIDES,
                       f"rootfs-image.* after: {rootfs_after}")
            self.check(f"artifact_name={NEXT_OS_NAME}", after.get("artifact_name") == NEXT_OS_NAME,
                       f"the device shows {after.get('artifact_name')!r}")
            outcome_check(after)
        finally:
            self.say(f"# {what} back to {self.profile.artifact_name} with its rootfs-image.* "
                     "(so that the scenarios can run again)")
            self.os_update(back)
            restored = self.provides()
            self.check("rootfs-image.* and the artifact name restored",
                       os_provides(restored) == rootfs_before
                       and restored.get("artifact_name") == self.profile.artifact_name,
                       f"after restoring: {restored}")


# -- the scenarios -------------------------------------------------------------------------------------


def _rootfs_provides(s: Session, outcome: Outcome) -> None:
    s.ensure_image_os()
    s.say(f"device: {s.profile.description}; client: {s.client.name} {s.client.version} ({s.client.flavour}); "
          f"device type {s.device_type}")
    provides = s.provides()
    s.say(f"$ {s.client.name} show-provides")
    for key, value in sorted(provides.items()):
        s.say(f"    {key}={value}")
    for key, value in s.profile.rootfs_provides.items():
        s.check(f"{key}={value}", provides.get(key) == value, f"the device shows {provides.get(key)!r}")
    s.check(f"artifact_name={s.profile.artifact_name}", provides.get("artifact_name") == s.profile.artifact_name,
            f"the device shows {provides.get('artifact_name')!r}")


def _persistent_app_expectations(path: str) -> Tuple[str, str, str, Dict[str, str]]:
    """(software name, version, destination, {file: sha256}) of a persistent-app artifact."""
    art = mender_artifact.read(path)
    payload = art.payload
    meta = (payload.meta_data or {}).get("persistent-app") or {}
    if payload.type != "persistent-app" or not meta:
        raise _Stop(f"{path} is a {payload.type!r} artifact without persistent-app meta-data")
    key, version = next(((k, v) for k, v in payload.provides.items() if k.startswith("data-partition.")),
                        (None, None))
    if key is None:
        raise _Stop(f"{path} provides no data-partition.* version: {payload.provides}")
    files = mender_artifact.payload_files(path)
    return key, version, meta["dest"], mender_artifact.tree_digests(files[meta["archive"]])


def _persistent_app(s: Session, outcome: Outcome) -> None:
    a1, a2 = s.artifacts.demo_app("1.0"), s.artifacts.demo_app("2.0")
    key, v1, dest, tree1 = _persistent_app_expectations(a1)
    key2, v2, dest2, tree2 = _persistent_app_expectations(a2)
    s.say(f"artifacts: {os.path.basename(a1)} ({key}={v1}, {len(tree1)} files), "
          f"{os.path.basename(a2)} ({key2}={v2}, {len(tree2)} files) -> {dest}")

    s.require_step(s.install(a1))
    s.require_step(s.client_step("commit", "commit"))
    provides = s.provides()
    s.say_provides(provides)
    s.check(f"{key}={v1}", provides.get(key) == v1, f"the device shows {provides.get(key)!r}")
    s.check(f"{dest} holds {v1}'s files", s.tree(dest) == tree1, f"{sorted(s.tree(dest))} vs {sorted(tree1)}")
    _show_app(s, dest)

    s.require_step(s.install(a2))
    s.check(f"{dest} holds {v2}'s files before commit", s.tree(dest) == tree2)
    s.require_step(s.client_step("rollback", "rollback"))
    s.check(f"rollback restored {v1}'s files", s.tree(dest) == tree1, f"{sorted(s.tree(dest))}")
    provides = s.provides()
    s.check(f"{key}={v1} after the rollback", provides.get(key) == v1, f"{provides.get(key)!r}")

    s.require_step(s.install(a2))
    s.require_step(s.client_step("commit", "commit"))
    provides = s.provides()
    s.say_provides(provides)
    s.check(f"{key2}={v2}", provides.get(key2) == v2, f"the device shows {provides.get(key2)!r}")
    s.check(f"{dest} holds {v2}'s files", s.tree(dest) == tree2, f"{sorted(s.tree(dest))}")
    _show_app(s, dest)

    def survived(after: Dict[str, str]) -> None:
        s.check(f"{key2}={v2} survived the OS update", after.get(key2) == v2, f"{after.get(key2)!r}")
        s.check(f"{dest} untouched by the OS update", s.tree(dest) == tree2)

    s.os_clear_and_restore(survived)


def _show_app(s: Session, dest: str) -> None:
    app = f"{dest}/bin/demo-app"
    status, out = s.sh(f"test -f {shlex.quote(app)} && sh {shlex.quote(app)}")
    if status == 0:
        s.say(f"$ {app}")
        for line in out.strip().splitlines():
            s.say(f"    {line}")


def _unmet_depends(s: Session, outcome: Outcome) -> None:
    path = s.artifacts.cuda_depends()
    art = mender_artifact.read(path)
    payload = art.payload
    wanted = {k: v for k, v in payload.depends.items()}
    dest = ((payload.meta_data or {}).get("persistent-app") or {}).get("dest")
    s.say(f"artifact: {os.path.basename(path)} ({art.name}, {payload.type}), depends "
          + ", ".join(f"{k}:{v}" for k, v in sorted(wanted.items())))
    s.require("the artifact depends on rootfs-image.cuda.version:11.8",
              str(wanted.get("rootfs-image.cuda.version")) == "11.8", f"its depends: {wanted}")
    watched = ["/data/apps", "/data/mender-composable"]
    provides_before = s.provides()
    s.check("the device does not provide rootfs-image.cuda.version",
            "rootfs-image.cuda.version" not in provides_before, f"{provides_before}")
    before = s.snapshot(watched)

    step = s.install(path)
    m = DEPENDS_UNMET_RE.search(step.output)
    if m:
        s.say(f"    client: {m.group(0).replace(chr(92), '')}")
    s.check("install refused", step.status != 0, "the client installed it")
    s.check("the client names the missing provide rootfs-image.cuda.version",
            depends_unmet_key(step.output) == "rootfs-image.cuda.version",
            step.output.strip()[-600:])
    s.check("refused before any module state ran (no module output)", step.module_lines == [],
            "; ".join(step.module_lines))
    provides_after = s.provides()
    s.say_provides(provides_after)
    s.check("provides unchanged", provides_after == provides_before, f"{provides_after}")
    s.check(f"{' and '.join(watched)} unchanged", s.snapshot(watched) == before)
    if dest:
        status, _ = s.sh(f"test -e {shlex.quote(dest)}")
        s.check(f"{dest} not created", status != 0)


def _stack_expectations(path: str) -> Tuple[str, str, str, List[str], List[dict]]:
    """(stack, provide key, version, container names, inline archives) of a docker-stack artifact."""
    art = mender_artifact.read(path)
    payload = art.payload
    stack_doc = (payload.meta_data or {}).get("docker-stack")
    if payload.type != "docker" or not stack_doc:
        raise _Stop(f"{path}: a {payload.type!r} artifact without docker-stack meta-data")
    stack = stack_doc["stack"]
    key = f"data-partition.{stack}.version"
    if key not in payload.provides:
        raise _Stop(f"{path}: provides {payload.provides}, expected {key}")
    # Containers and inline archives are objects keyed by name (FORMAT.md: meta-data lists may
    # not hold objects); a list of objects with "name" / "payload" is read too.
    containers = stack_doc.get("containers") or {}
    names = sorted(containers) if isinstance(containers, dict) else [c["name"] for c in containers]
    inline = stack_doc.get("inline") or {}
    if isinstance(inline, dict):
        archives = [dict(v, payload=k) for k, v in sorted(inline.items())]
    else:
        archives = list(inline)
    return stack, key, payload.provides[key], names, archives


def _stack_containers(s: Session, stack: str) -> Dict[str, Tuple[str, str]]:
    """{name: (state, release)} of the stack's containers, as `docker ps -a` shows them."""
    fmt = "{{.Names}}|{{.State}}|{{.Label \"" + RELEASE_LABEL + "\"}}"
    status, out = s.docker(f"ps -a --filter label={STACK_LABEL}={stack} --format {shlex.quote(fmt)}")
    if status != 0:
        raise _Stop(f"docker ps failed: {out.strip()}")
    found = {}
    for line in out.splitlines():
        parts = line.split("|")
        if len(parts) == 3:
            found[parts[0]] = (parts[1], parts[2])
    return found


def _check_stack_running(s: Session, stack: str, names: List[str], release: str, when: str) -> None:
    containers = _stack_containers(s, stack)
    s.say(f"$ docker ps -a --filter label={STACK_LABEL}={stack}")
    for name, (state, rel) in sorted(containers.items()):
        s.say(f"    {name}: {state}, release {rel}")
    running = {n for n, (state, rel) in containers.items() if state == "running" and rel == release}
    s.check(f"{when}: {', '.join(names)} running from {release}", set(names) <= running,
            f"{containers}")


def _stored_under_root(s: Session, name: str) -> Tuple[bool, str]:
    """Whether the container's filesystem is in the engine's data root: the directories the storage
    driver reports (overlay2), or for drivers that report none (vfs) their directory there."""
    _, out = s.docker(f"inspect --format '{{{{.GraphDriver.Name}}}} {{{{json .GraphDriver.Data}}}}' "
                      f"{shlex.quote(name)}")
    driver, _, data = out.strip().partition(" ")
    root = s.profile.docker_root.rstrip("/") + "/"
    dirs = [d for value in re.findall(r'"(/[^"]+)"', data) for d in value.split(":")]
    if dirs:
        return all(d.startswith(root) for d in dirs), f"{driver}: {data}"
    status, _ = s.sh(f"test -d {shlex.quote(root + driver)}")
    return bool(driver) and status == 0, f"driver {driver!r} reports no directories and {root}{driver} is missing"


def _containers(s: Session, outcome: Outcome) -> None:
    a1 = s.artifacts.docker_stack("1.0")
    stack, key, v1, names, inline = _stack_expectations(a1)
    art1 = mender_artifact.read(a1).name
    s.say(f"artifact: {os.path.basename(a1)} (stack {stack}, {key}={v1}, containers {', '.join(names)}, "
          f"{sum(len(a.get('images') or []) for a in inline)} image(s) inline in "
          f"{', '.join(a['payload'] for a in inline) or 'no payload'})")
    s.check("the artifact carries its images inline (no registry)", bool(inline))

    status, root = s.docker("info --format '{{.DockerRootDir}}'", timeout=300)
    root = root.strip().splitlines()[-1] if root.strip() else ""
    s.say(f"$ docker info --format '{{{{.DockerRootDir}}}}'\n    {root}")
    s.check(f"the engine's data root is {s.profile.docker_root}", status == 0 and root == s.profile.docker_root,
            f"DockerRootDir is {root!r}")

    s.require_step(s.install(a1))
    _check_stack_running(s, stack, names, art1, "after install")
    s.require_step(s.client_step("commit", "commit"))
    provides = s.provides()
    s.say_provides(provides)
    s.check(f"{key}={v1}", provides.get(key) == v1, f"the device shows {provides.get(key)!r}")
    _check_stack_running(s, stack, names, art1, "after commit")
    for name in names:
        s.check(f"{name}'s filesystem lives under {s.profile.docker_root}", *_stored_under_root(s, name))

    a2 = s.artifacts.docker_stack("2.0")
    art2 = mender_artifact.read(a2).name
    s.require_step(s.install(a2))
    _check_stack_running(s, stack, names, art2, "after installing 2.0")
    s.require_step(s.client_step("rollback", "rollback"))
    _check_stack_running(s, stack, names, art1, "after the rollback")
    provides = s.provides()
    s.check(f"{key}={v1} after the rollback", provides.get(key) == v1, f"{provides.get(key)!r}")

    def survived(after: Dict[str, str]) -> None:
        s.check(f"{key}={v1} survived the OS update", after.get(key) == v1, f"{after.get(key)!r}")
        _check_stack_running(s, stack, names, art1, "after the OS update")

    s.os_clear_and_restore(survived)


SCENARIOS = (
    ("rootfs_provides", "Rootfs domain: show-provides lists the image's rootfs-image.* provides", _rootfs_provides),
    ("persistent_app", "Persistent apps: demo-app through the persistent-app module", _persistent_app),
    ("unmet_depends", "Unmet depends: an artifact needing rootfs-image.cuda.version:11.8", _unmet_depends),
    ("containers", "Containers: a docker stack from an inline artifact through the docker module", _containers),
)
_BY_KEY = {key: (title, body) for key, title, body in SCENARIOS}


def run(session: Session, key: str) -> Outcome:
    """Run one scenario by key (one of SCENARIOS)."""
    title, body = _BY_KEY[key]
    return session.scenario(key, title, body)


def run_all(session: Session) -> List[Outcome]:
    return [run(session, key) for key, _, _ in SCENARIOS]


# The product description's three outcomes, and the container domain beside them.
OUTCOMES = (
    ("rootfs_provides", "1. show-provides lists the four rootfs-image.* provides (and the artifact name)"),
    ("persistent_app", "2. demo-app 1.0 deploys (data-partition.demo-app.version=1.0), survives an OS update"),
    ("unmet_depends", "3. the rootfs-image.cuda.version:11.8 artifact is refused, nothing modified"),
    ("containers", "+  containers: an inline docker stack runs under the data root, survives an OS update"),
)


def summary(outcomes: Sequence[Outcome]) -> List[str]:
    """One line per product outcome: PASS or FAIL."""
    by_key = {o.key: o for o in outcomes}
    return [f"  {by_key[key].status:<4}  {text}" for key, text in OUTCOMES if key in by_key]
