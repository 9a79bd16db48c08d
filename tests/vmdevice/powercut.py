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
from dataclasses import dataclass
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
                 f"tail -n 3 {GUEST_LOG} 2>/dev/null")
        deadline = time.monotonic() + timeout
        out = ""
        while time.monotonic() < deadline:
            _, out = self.vm.ssh(probe, timeout=60)
            if out.startswith("stopped"):
                return
            time.sleep(1)
        raise AssertionError(f"the module never stopped at {spec} within {timeout:.0f}s; last:\n{out}")

    def cut_and_boot(self) -> None:
        before = len(self.vm.boots)
        self.vm.power_cut()
        self.vm.wait_ready_after(before, timeout=1200)
        self.s.sh("systemctl is-system-running --wait", timeout=300)
        # What the modules' boot-time recovery units did before the client could run.
        recovered = self.s.sh("journalctl -b -o cat -u persistent-app-recover -u mender-docker-recover"
                              " | grep -v -e '^Starting' -e '^Finished' -e 'Deactivated successfully'")[1]
        for line in recovered.splitlines():
            self.say(f"    boot: {line}")
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

    def __init__(self, h: Harness, *, name: str, var: str, points: Dict[str, Tuple[str, Sequence[str]]],
                 old: str, new: str, key: str, observe: Callable[[], object], expect: Dict[str, object],
                 first_seen: Optional[Dict[str, str]] = None):
        self.h, self.name, self.var, self.points = h, name, var, points
        self.old, self.new, self.key = old, new, key
        # label -> an artifact of the new release whose content the device has never had, for the
        # cuts whose point is only passed when something is fetched (an inline load).
        self.first_seen = first_seen or {}
        self.observe, self.expect = observe, expect  # expect: {version: what observe() returns}

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
        # From the old release, as every cut starts: the points that replace something (a
        # container's stop, a tree's exchange) are only passed when there is something to replace.
        if self.release() != self.old_version and not self.deploy(self.old, self.old_version):
            raise AssertionError(f"{self.name}: could not deploy {self.old_version} before tracing the points")
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
            command = f"{mender} install {self._path(self.first_seen.get(label, self.new))}"
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
        self.h.say(f"# {self.name}: fault points of a clean install+rollback, install+commit: "
                   + ", ".join(f"{s}:{p}" for s, p in reached))
        cuts = []
        for label in labels or list(self.points):
            state, preferred = self.points[label]
            # A clean run of the new release from the old one fetches nothing the old one had, so
            # the fetch points of a first-seen artifact are named, not traced.
            spec = f"{state}:{preferred[0]}" if label in self.first_seen else first_point(reached, state, preferred)
            if spec is None:
                cuts.append(Cut(self.name, label, detail=f"no fault point reached in {state}"))
                continue
            cuts.append(self.cut(label, spec))
        return cuts


class RootfsDomain:
    """The OS: rootfs-image artifacts of the image's rootfs, the old one named and providing as the
    image, the new one composable-demo-2.0. Which partition holds which alternates with every
    update, so an OS is recognised by what it is: /etc/mender/artifact_info in the running rootfs
    and the rootfs-image.* the client shows. (artifact_name names the last artifact of any type.)"""

    def __init__(self, h: Harness, *, old: str, new: str, old_name: str, new_name: str,
                 old_provides: Dict[str, str], new_provides: Dict[str, str]):
        self.h = h
        self.arts = {old_name: old, new_name: new}
        self.provides = {old_name: old_provides, new_name: new_provides}
        self.old_name, self.new_name = old_name, new_name

    def running(self) -> Tuple[str, str]:
        """(root device, artifact name of the running rootfs)."""
        info = self.h.sh("cat /etc/mender/artifact_info")
        name = next((line.split("=", 1)[1].strip() for line in info.splitlines()
                     if line.startswith("artifact_name=")), "")
        return self.h.s.active_rootfs(), name

    def consistent(self) -> Tuple[bool, str]:
        """The running rootfs is one of the two OSes, the client's rootfs-image.* are that OS's, and
        the boot environment boots it with no update pending."""
        root, name = self.running()
        shown = sc.os_provides(self.h.s.provides())
        env = self.h.vm.bootenv()
        booted = env.get("mender_boot_part") == root[len("/dev/vda"):] and env.get("upgrade_available") == "0"
        ok = name in self.provides and shown == self.provides[name] and booted
        return ok, (f"running {name or '?'} from {root}; the client shows "
                    f"{'its' if shown == self.provides.get(name) else 'other'} rootfs-image.*; boot env "
                    f"mender_boot_part={env.get('mender_boot_part')} upgrade_available={env.get('upgrade_available')}")

    def deploy(self, name: str) -> bool:
        """Install `name`, reboot into it, commit."""
        h = self.h
        if h.client("install", h.s.push(self.arts[name])).status != 0:
            return False
        h.vm.reboot(timeout=1200)
        return h.client("commit").status == 0 and self.running()[1] == name and self.consistent()[0]

    def sectors_done(self, device: str) -> int:
        """Sectors read plus written on `device`. The Go client reads each block of the inactive
        partition and writes only those that differ (an update of the same rootfs changes a few
        MiB), so its progress through the partition shows in both."""
        fields = self.h.sh(f"cat /sys/class/block/{device}/stat").split()
        return int(fields[2]) + int(fields[6])

    def cut(self, label: str) -> Cut:
        h = self.h
        cut = Cut("rootfs", label)
        t0 = time.monotonic()
        if self.running()[1] != self.old_name and not self.deploy(self.old_name):
            cut.detail = f"could not start from {self.old_name}"
            return cut
        path = h.s.push(self.arts[self.new_name])
        h.say(f"# power cut: rootfs at {label}")
        if label == "write":
            inactive = "vda3" if self.running()[0] == "/dev/vda2" else "vda2"
            sectors = int(h.sh(f"cat /sys/class/block/{inactive}/size"))
            start = self.sectors_done(inactive)
            h.background(f"{h.s.client.command} install {shlex.quote(path)}", {})
            deadline = time.monotonic() + 900
            # A third of the partition gone through: mid-write.
            while self.sectors_done(inactive) - start < sectors // 3:
                if time.monotonic() > deadline:
                    cut.detail = "the write never got under way"
                    return cut
                time.sleep(0.5)
        elif label in ("before reboot", "after reboot"):
            if h.client("install", path).status != 0:
                cut.detail = "install failed"
                return cut
            if label == "after reboot":
                h.vm.reboot(timeout=1200)
        else:
            raise ValueError(label)
        h.cut_and_boot()
        # The client's recovery: an update the bootloader kept booting (upgrade_available=1 on its
        # new partition) is committed; anything else is rolled back (with no record the client
        # says so and does nothing).
        env = h.vm.bootenv()
        pending = env.get("upgrade_available") == "1"
        h.client("commit" if pending else "rollback")
        ok, cut.detail = self.consistent()
        cut.after_boot = ok
        # The next deployment: the OS the device is not running installs, boots and commits.
        other = self.new_name if self.running()[1] == self.old_name else self.old_name
        cut.after_next = self.deploy(other)
        cut.seconds = time.monotonic() - t0
        h.say(f"    {label}: {cut.detail}; next deployment ({other}) {'accepted' if cut.after_next else 'FAILED'}")
        return cut

    def run(self, labels: Optional[Sequence[str]] = None) -> List[Cut]:
        return [self.cut(label) for label in labels or ROOTFS_POINTS]


__all__ = ["APP_POINTS", "Cut", "DOCKER_POINTS", "Harness", "ModuleDomain", "ROOTFS_POINTS", "RootfsDomain",
           "first_point", "table"]
