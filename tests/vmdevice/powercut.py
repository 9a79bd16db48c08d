"""Power cuts of the VM device at named points of each update domain, and what the device looks
like after it boots again.

A cut is a SIGKILL of QEMU (VmDevice.power_cut): whatever the guest had not written to its disks is
gone, as when the power goes. Where it lands:

* persistent-app and docker: at a fault point of the module (module-kit's fault points). The
  device runs the modules built with the fault-injection feature for the duration of the cut
  tests; `<VAR>=<State>:<point>` with `<VAR>_ACTION=stop` stops the module there (SIGSTOP), the
  harness sees the stopped process (`<VAR>_TRACE`, `ps`) and cuts the power while it is stopped.
* rootfs: while the client writes the inactive partition (the partition's written-sectors counter
  passes a third of the image), after `install` returned and before the reboot, and after the
  reboot into the new partition before the commit.

After the cut the device boots again (the bootloader stand-in decides from its environment, as
after any power loss), the client runs what it has for recovery, and the domain must be exactly
on the old or exactly on the new release, with the provides saying which; then the next
deployment must be accepted. The Go client 3.4 standalone records an install only once
ArtifactInstall has finished: a cut before that leaves the client nothing to recover, and the
module's journal is what the next deployment recovers from. The matrix reports both moments.
"""

from __future__ import annotations

import shlex
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

from mender_composable import scenarios as sc

GUEST_TRACE = "/run/composable-cut.trace"
GUEST_LOG = "/run/composable-cut.log"
MODULES = "/usr/share/mender/modules/v3"


@dataclass
class Cut:
    domain: str
    point: str
    # Consistent right after the reboot and the client's recovery; then after the next deployment.
    after_boot: Optional[bool] = None
    after_next: Optional[bool] = None
    detail: str = ""
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.after_boot is not False and bool(self.after_next)


def table(cuts: Sequence[Cut]) -> str:
    """The matrix, one row per (domain, point)."""
    def mark(v: Optional[bool]) -> str:
        return "-" if v is None else ("consistent" if v else "NOT consistent")
    rows = [("domain", "cut at", "after reboot + client recovery", "next deployment", "s")]
    rows += [(c.domain, c.point, mark(c.after_boot), mark(c.after_next), f"{c.seconds:.0f}") for c in cuts]
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(r, widths)).rstrip() for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


class Harness:
    """Runs cuts on a VM (vmdevice.launcher.VmDevice) through a scenario Session on it."""

    def __init__(self, session: sc.Session, vm, say: Callable[[str], None] = print):
        self.s = session
        self.vm = vm
        self.say = say

    # -- plumbing ----------------------------------------------------------------------------------

    def sh(self, command: str, timeout: int = 300) -> str:
        return self.s.sh_ok(command, timeout=timeout)

    def client(self, *args: str, timeout: int = sc.INSTALL_TIMEOUT) -> sc.Step:
        return self.s.client_step(" ".join(a if not a.startswith("/") else Path(a).name for a in args), *args,
                                  timeout=timeout)

    def background(self, command: str, env: Dict[str, str]) -> None:
        """Start `command` on the device detached from the ssh session, its output in GUEST_LOG."""
        assignments = " ".join(f"{k}={shlex.quote(v)}" for k, v in env.items())
        self.sh(f"rm -f {GUEST_TRACE} {GUEST_LOG}; {assignments} nohup {command} >{GUEST_LOG} 2>&1 </dev/null &")

    def wait_stopped(self, spec: str, timeout: float = 900) -> None:
        """Until a process is stopped at the fault point (its trace line written, its state T)."""
        probe = (f"for p in $(cut -d: -f3 {GUEST_TRACE} 2>/dev/null | sort -u); do "
                 f"ps -o stat= -p $p 2>/dev/null; done | grep -q '^T' && echo stopped; "
                 f"grep -c . {GUEST_TRACE} 2>/dev/null; tail -n 3 {GUEST_LOG} 2>/dev/null")
        deadline = time.monotonic() + timeout
        out = ""
        while time.monotonic() < deadline:
            status, out = self.vm.ssh(probe, timeout=60)
            if out.startswith("stopped"):
                return
            if status == 0 and "exited" in out:
                break
            time.sleep(1)
        raise AssertionError(f"the module never stopped at {spec} within {timeout:.0f}s; last:\n{out}")

    def cut_and_boot(self) -> None:
        before = len(self.vm.boots)
        self.vm.power_cut()
        self.vm.wait_ready_after(before, timeout=1200)
        self.s.sh("systemctl is-system-running --wait", timeout=300)
        # Artifacts copied before the cut may not have reached the disk: copy them again.
        self.s._pushed.clear()

    def install_module(self, name: str, binary: Path) -> None:
        self.vm.copy_to(str(binary), f"{MODULES}/{name}.new")
        self.sh(f"chmod 0755 {MODULES}/{name}.new && mv {MODULES}/{name}.new {MODULES}/{name} && sync")

    def points_reached(self, var: str, commands: Sequence[str]) -> List[Tuple[str, str]]:
        """(state, point) pairs in the order a clean run of `commands` passes them."""
        self.sh(f"rm -f {GUEST_TRACE}")
        for command in commands:
            self.sh(f"{var}_TRACE={GUEST_TRACE} {command}", timeout=sc.INSTALL_TIMEOUT)
        out = self.s.sh(f"cat {GUEST_TRACE}")[1]
        seen: List[Tuple[str, str]] = []
        for line in out.splitlines():
            parts = line.split(":")
            if len(parts) == 3 and (parts[0], parts[1]) not in seen:
                seen.append((parts[0], parts[1]))
        return seen


def first_point(reached: Sequence[Tuple[str, str]], state: str, preferred: Sequence[str] = ()) -> Optional[str]:
    """`State:point` for a cut in `state`: the first preferred point the state passes, else its first."""
    points = [p for s, p in reached if s == state]
    for p in preferred:
        if p in points:
            return f"{state}:{p}"
    return f"{state}:{points[0]}" if points else None


# -- the domains -----------------------------------------------------------------------------------------

# Which fault point stands for each named moment, by preference (the first one the state passes
# is taken when none of these is).
APP_POINTS = {
    "Download": ("Download", ("extract-entry",)),
    "swap": ("ArtifactInstall", ("exchange",)),
    "commit": ("ArtifactCommit", ("clear-journal",)),
    "rollback": ("ArtifactRollback", ("exchange",)),
}
DOCKER_POINTS = {
    "inline load": ("Download", ("mid-load", "load-sent", "after-load")),
    "switch": ("ArtifactInstall", ("after-stop",)),
    "health gate": ("ArtifactInstall", ("after-start",)),
    "commit": ("ArtifactCommit", ()),
}
ROOTFS_POINTS = ("write", "before reboot", "after reboot")


class ModuleDomain:
    """A module domain: two artifacts (old, new) and how to read the release on the device."""

    def __init__(self, h: Harness, *, name: str, module: str, var: str, points: Dict[str, Tuple[str, Sequence[str]]],
                 old: str, new: str, key: str, observe: Callable[[], object], expect: Dict[str, object]):
        self.h, self.name, self.module, self.var, self.points = h, name, module, var, points
        self.old, self.new, self.key = old, new, key
        self.observe, self.expect = observe, expect  # expect: {version: what observe() returns}
        self.remote: Dict[str, str] = {}

    def _path(self, art: str) -> str:
        return self.h.s.push(art)

    def release(self) -> Optional[str]:
        """The version the device is exactly on, provides and disk agreeing; None if neither."""
        version = self.h.s.provides().get(self.key)
        seen = self.observe()
        return version if version in self.expect and self.expect[version] == seen else None

    def deploy(self, art: str, version: str) -> bool:
        install = self.h.client("install", self._path(art))
        commit = self.h.client("commit")
        return install.status == 0 and commit.status == 0 and self.release() == version

    def reach(self) -> List[Tuple[str, str]]:
        """The (state, point) pairs of install+commit and install+rollback, from the old release."""
        mender = self.h.s.client.command
        reached = self.h.points_reached(self.var, [f"{mender} install {self._path(self.new)}", f"{mender} rollback",
                                                   f"{mender} install {self._path(self.new)}", f"{mender} commit"])
        if not self.deploy(self.old, self.old_version):
            raise AssertionError(f"{self.name}: could not go back to {self.old_version} after tracing the points")
        return reached

    @property
    def old_version(self) -> str:
        return sorted(self.expect)[0]

    @property
    def new_version(self) -> str:
        return sorted(self.expect)[-1]

    def cut(self, label: str, spec: str) -> Cut:
        h = self.h
        cut = Cut(self.name, label)
        t0 = time.monotonic()
        if self.release() != self.old_version and not self.deploy(self.old, self.old_version):
            cut.detail = f"could not start from {self.old_version}"
            return cut
        mender = h.s.client.command
        state = spec.split(":", 1)[0]
        if state in ("ArtifactCommit", "ArtifactRollback"):
            if h.client("install", self._path(self.new)).status != 0:
                cut.detail = "the install before the cut failed"
                return cut
            command = f"{mender} {'commit' if state == 'ArtifactCommit' else 'rollback'}"
        else:
            command = f"{mender} install {self._path(self.new)}"
        h.say(f"# power cut: {self.name} at {label} ({spec})")
        h.background(command, {self.var: spec, f"{self.var}_ACTION": "stop", f"{self.var}_TRACE": GUEST_TRACE})
        h.wait_stopped(spec)
        h.cut_and_boot()
        # What the client has after the reboot: it finishes a commit it had started, and rolls
        # back anything else it has a record of (with no record it says so and does nothing).
        h.client("commit" if state == "ArtifactCommit" else "rollback")
        release = self.release()
        cut.after_boot = release in (self.old_version, self.new_version)
        cut.detail = f"after the reboot: {release or 'neither release: ' + repr(self.observe())}"
        cut.after_next = self.deploy(self.new, self.new_version)
        cut.seconds = time.monotonic() - t0
        h.say(f"    {label}: {cut.detail}; next deployment {'accepted' if cut.after_next else 'FAILED'}")
        return cut

    def run(self, labels: Optional[Sequence[str]] = None) -> List[Cut]:
        reached = self.reach()
        cuts = []
        for label in labels or list(self.points):
            state, preferred = self.points[label]
            spec = first_point(reached, state, preferred)
            if spec is None:
                cuts.append(Cut(self.name, label, detail=f"no fault point reached in {state}"))
                continue
            cuts.append(self.cut(label, spec))
        return cuts


class RootfsDomain:
    """The OS: rootfs-image artifacts of the image's rootfs (old: the image's own name and provides)."""

    def __init__(self, h: Harness, *, old: str, new: str, old_name: str, new_name: str,
                 old_provides: Dict[str, str], new_provides: Dict[str, str]):
        self.h = h
        self.old, self.new = old, new
        self.expect = {"/dev/vda2": (old_name, old_provides), "/dev/vda3": (new_name, new_provides)}
        self.old_name, self.new_name = old_name, new_name

    def state(self) -> Tuple[str, str, Dict[str, str]]:
        provides = self.h.s.provides()
        return self.h.s.active_rootfs(), provides.get("artifact_name", ""), sc.os_provides(provides)

    def consistent(self) -> Tuple[bool, str]:
        """Running an OS whose name and provides the client shows, either the old one on A or the new one on B."""
        root, name, provides = self.state()
        ok = any((name, provides) == want for want in self.expect.values()) and             (name, provides) == self.expect.get(root, (None, None))
        return ok, f"running {root}, client shows {name}"

    def back_to_old(self) -> bool:
        root, name, _ = self.state()
        if root == "/dev/vda2" and name == self.old_name:
            return True
        if self.h.client("install", self.h.s.push(self.old)).status != 0:
            return False
        self.h.vm.reboot(timeout=1200)
        return self.h.client("commit").status == 0 and self.state()[0] == "/dev/vda2"

    def sectors_written(self) -> int:
        out = self.h.sh("cat /sys/block/vda/vda3/stat")
        return int(out.split()[6])

    def cut(self, label: str) -> Cut:
        h = self.h
        cut = Cut("rootfs", label)
        t0 = time.monotonic()
        if not self.back_to_old():
            cut.detail = "could not start from the old OS"
            return cut
        path = h.s.push(self.new)
        h.say(f"# power cut: rootfs at {label}")
        if label == "write":
            size = int(h.sh(f"stat -c %s {shlex.quote(path)}"))
            start = self.sectors_written()
            h.background(f"{h.s.client.command} install {shlex.quote(path)}", {})
            deadline = time.monotonic() + 900
            # A third of the artifact's size in sectors reached the partition: mid-write.
            while self.sectors_written() - start < size // 3 // 512:
                if time.monotonic() > deadline:
                    cut.detail = "the write never got under way"
                    return cut
                time.sleep(0.5)
            h.cut_and_boot()
        elif label == "before reboot":
            if h.client("install", path).status != 0:
                cut.detail = "install failed"
                return cut
            h.cut_and_boot()
        elif label == "after reboot":
            if h.client("install", path).status != 0:
                cut.detail = "install failed"
                return cut
            h.vm.reboot(timeout=1200)
            h.cut_and_boot()
        else:
            raise ValueError(label)
        # The client's recovery: an update that came up on its new partition is committed (the
        # boot environment kept it there); anything else is rolled back.
        root = h.s.active_rootfs()
        h.client("commit" if root == "/dev/vda3" else "rollback")
        ok, cut.detail = self.consistent()
        cut.after_boot = ok
        # The next deployment: the OS the device is not running installs, boots and commits.
        root = h.s.active_rootfs()
        other, other_root = (self.old, "/dev/vda2") if root == "/dev/vda3" else (self.new, "/dev/vda3")
        if h.client("install", h.s.push(other)).status == 0:
            h.vm.reboot(timeout=1200)
            cut.after_next = h.client("commit").status == 0 and self.state()[0] == other_root \
                and self.consistent()[0]
        else:
            cut.after_next = False
        cut.seconds = time.monotonic() - t0
        h.say(f"    {label}: {cut.detail}; next deployment {'accepted' if cut.after_next else 'FAILED'}")
        return cut

    def run(self, labels: Optional[Sequence[str]] = None) -> List[Cut]:
        return [self.cut(label) for label in labels or ROOTFS_POINTS]


__all__ = ["APP_POINTS", "Cut", "DOCKER_POINTS", "Harness", "ModuleDomain", "ROOTFS_POINTS", "RootfsDomain",
           "first_point", "table"]
