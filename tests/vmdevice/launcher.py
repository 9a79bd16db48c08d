"""The test device's "bootloader": boots a Mender A/B disk image under QEMU (TCG) with the boot
environment on a second disk (bootenv.py), again and again, the way meta-mender's U-Boot would.

Before each boot: read the boot environment from the host side of the bootenv disk, decide() (bootcount,
bootlimit, altbootcmd rollback), write the environment back (saveenv), find the chosen partition in the
disk's GPT (sfdisk --json), copy /boot/vmlinuz-<v> and /boot/initrd.img-<v> out of its ext4 with debugfs,
and start QEMU with -kernel/-initrd and root=/dev/vda<N>. QEMU runs with -no-reboot, so a guest reboot
(or panic=5 after a panic) ends the QEMU process; a monitor thread then boots again. A boot watchdog
kills a boot that is not reachable over ssh after boot_timeout seconds and boots again.

Pure helpers (qemu_command, partition_extent, choose_kernel, parse_debugfs_ls, classify_end,
ssh_options) are unit-tested in test_launcher.py without QEMU.
"""

from __future__ import annotations

import atexit
import dataclasses
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import threading
import time
import weakref
from pathlib import Path

from vmdevice import bootenv

# How a boot ended (BootRecord.end):
GUEST_REBOOT = "guest-reboot"  # QEMU exited by itself after the kernel's "reboot: Restarting system"
GUEST_POWEROFF = "guest-poweroff"  # ... after "reboot: Power down"
GUEST_PANIC = "guest-panic"  # ... after "Kernel panic" (panic=5 reboots)
QEMU_EXIT = "qemu-exit"  # QEMU exited by itself, the log says nothing of the above
POWER_CUT = "power-cut"  # power_cut(): SIGKILL
WATCHDOG = "watchdog"  # not ssh-ready after boot_timeout: SIGKILL
STOP = "stop"  # stop() / power_off(): poweroff over ssh, SIGKILL after the grace period
NO_KERNEL = "no-kernel"  # the chosen partition had no usable kernel/initrd: QEMU never started


class LauncherError(Exception):
    pass


# --- pure parts -------------------------------------------------------------------------------------


def partition_extent(sfdisk_json, number: int) -> tuple[int, int]:
    """(offset, size) in bytes of partition number (1-based, as in /dev/vdaN) in `sfdisk --json` output."""
    table = json.loads(sfdisk_json) if isinstance(sfdisk_json, (str, bytes)) else sfdisk_json
    table = table["partitiontable"]
    sector = int(table.get("sectorsize", 512))
    for part in table.get("partitions", []):
        match = re.search(r"(\d+)$", part["node"])
        if match and int(match.group(1)) == int(number):
            return int(part["start"]) * sector, int(part["size"]) * sector
    raise LauncherError(f"no partition {number} in the partition table "
                        f"({[p['node'] for p in table.get('partitions', [])]})")


def parse_debugfs_ls(output: str) -> list[str]:
    """Regular files' names in the output of debugfs `ls -p DIR` (lines /ino/mode/uid/gid/name/size/)."""
    names = []
    for line in output.splitlines():
        fields = line.split("/")
        if len(fields) >= 7 and fields[0] == "" and fields[2].startswith("10"):  # 10xxxx: regular file
            names.append("/".join(fields[5:-2]))
    return names


def _version_key(version: str):
    return [(0, int(p), "") if p.isdigit() else (1, 0, p) for p in re.findall(r"\d+|[^\d]+", version)]


def choose_kernel(names) -> tuple[str, str]:
    """(vmlinuz-V, initrd.img-V) for the highest version V that has both, from a /boot listing."""
    names = set(names)
    versions = [n[len("vmlinuz-"):] for n in names
                if n.startswith("vmlinuz-") and f"initrd.img-{n[len('vmlinuz-'):]}" in names
                and not n.endswith((".old", ".bak", ".dpkg-tmp", ".dpkg-new"))]
    if not versions:
        raise LauncherError(f"no vmlinuz-V with an initrd.img-V in /boot: {sorted(names)}")
    version = max(versions, key=_version_key)
    return f"vmlinuz-{version}", f"initrd.img-{version}"


def qemu_command(*, qemu: str, kernel, initrd, partition: str, disk, bootenv_disk, memory_mb: int, smp: int,
                 ssh_port: int, extra_append: str = "") -> list[str]:
    append = f"root=/dev/vda{int(partition)} rw console=ttyS0 panic=5"
    if extra_append.strip():
        append += " " + extra_append.strip()
    return [qemu, "-accel", "tcg,thread=multi", "-smp", str(smp), "-m", str(memory_mb), "-nographic", "-no-reboot",
            "-kernel", str(kernel), "-initrd", str(initrd), "-append", append,
            "-drive", f"file={disk},format=raw,if=virtio,cache=writeback",
            "-drive", f"file={bootenv_disk},format=raw,if=virtio",
            "-netdev", f"user,id=n0,restrict=on,hostfwd=tcp:127.0.0.1:{ssh_port}-:22",
            "-device", "virtio-net-pci,netdev=n0"]


def classify_end(log_tail: str) -> str:
    """How a guest that made QEMU exit by itself went down, from the end of its serial log."""
    if "Kernel panic" in log_tail:
        return GUEST_PANIC
    reboot, poweroff = log_tail.rfind("reboot: Restarting system"), log_tail.rfind("reboot: Power down")
    if reboot > poweroff:
        return GUEST_REBOOT
    if poweroff >= 0:
        return GUEST_POWEROFF
    return QEMU_EXIT


def ssh_options(port: int, key=None) -> list[str]:
    options = ["-p", str(port), "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
               "-o", "LogLevel=ERROR", "-o", "ConnectTimeout=5", "-o", "BatchMode=yes"]
    if key:
        options = ["-i", str(key)] + options
    return options


_NO_SESSION = ("Connection refused", "Connection timed out", "banner exchange", "kex_exchange_identification",
               "Permission denied", "No route to host", "Could not resolve")


def ssh_never_connected(output: str) -> bool:
    """Whether ssh's (status 255) output says it never got a session (rather than losing one)."""
    return any(text in output for text in _NO_SESSION)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --- the device ----------------------------------------------------------------------------------------


@dataclasses.dataclass
class BootRecord:
    index: int  # 1, 2, ...
    partition: str | None  # "2" or "3"
    env_before: dict
    env_after: dict
    reason: str
    started: float  # time.time()
    log: Path  # the serial console (and QEMU's own messages)
    kernel: str | None = None
    initrd: str | None = None
    command: list | None = None
    pid: int | None = None
    ready: float | None = None  # when ssh (the ready probe) first answered
    ended: float | None = None
    exit_status: int | None = None  # QEMU's; negative: killed by that signal
    end: str | None = None  # GUEST_REBOOT, POWER_CUT, WATCHDOG, STOP, ...

    @property
    def boot_seconds(self) -> float | None:
        return None if self.ready is None else self.ready - self.started

    def log_text(self) -> str:
        try:
            return self.log.read_text(errors="replace")
        except FileNotFoundError:
            return ""


_live: "weakref.WeakSet[VmDevice]" = weakref.WeakSet()


@atexit.register
def _kill_all():
    for device in list(_live):
        device._kill_now()


class VmDevice:
    """A device booted from disk (A/B rootfs on p2/p3) with its boot environment on bootenv_disk.

    ready_probe: callable(device) -> bool, "is this boot up?" (default: `ssh ... true` succeeds); the
    watchdog, wait_ssh() and reboot() go by it. restart_on_poweroff: a guest poweroff boots again
    (like a reboot) unless False. poweroff_via_ssh=False: stop()/power_off() pull the plug at once.
    bootlimit: None takes the environment's bootlimit (1 when missing).
    """

    def __init__(self, disk, bootenv_disk, workdir, *, memory_mb=1024, smp=2, ssh_port=None, ssh_key=None,
                 qemu="qemu-system-x86_64", boot_timeout=300, extra_append="", parts=("2", "3"), bootlimit=None,
                 ready_probe=None, restart_on_poweroff=True, poweroff_via_ssh=True, max_failed_starts=10):
        self.disk = Path(disk).resolve()
        self.bootenv_disk = Path(bootenv_disk).resolve()
        self.workdir = Path(workdir).resolve()
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.memory_mb, self.smp, self.qemu = memory_mb, smp, qemu
        self.ssh_port = ssh_port or free_port()
        self.ssh_key = ssh_key
        self.boot_timeout = boot_timeout
        self.extra_append = extra_append
        self.parts = tuple(parts)
        self.bootlimit = bootlimit
        self.ready_probe = ready_probe or (lambda device: device._ssh_ready())
        self.restart_on_poweroff = restart_on_poweroff
        self.poweroff_via_ssh = poweroff_via_ssh
        self.max_failed_starts = max_failed_starts
        self.boots: list[BootRecord] = []
        self.error: BaseException | None = None
        self._cond = threading.Condition()
        self._proc: subprocess.Popen | None = None
        self._want_on = False
        self._closed = False
        self._kill_reason: str | None = None
        self._thread: threading.Thread | None = None
        _live.add(self)

    # --- public API ---------------------------------------------------------------------------------

    @property
    def current(self) -> BootRecord | None:
        return self.boots[-1] if self.boots else None

    def bootenv(self) -> dict:
        return bootenv.read(self.bootenv_disk)

    def start(self) -> "VmDevice":
        """Power on and keep the device running (the monitor thread). Returns at once."""
        self.power_on()
        return self

    def power_on(self) -> None:
        with self._cond:
            if self._closed:
                raise LauncherError("this VmDevice is closed")
            self._want_on = True
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._monitor, name=f"vmdevice-{self.ssh_port}", daemon=True)
                self._thread.start()
            self._cond.notify_all()

    def power_cut(self, restart: bool = True) -> BootRecord | None:
        """SIGKILL QEMU (the guest loses its page cache). restart=True: power comes back, it boots again."""
        with self._cond:
            record = self.current
            if not restart:
                self._want_on = False
            self._kill_locked(POWER_CUT)
            if record is not None:
                self._wait_locked(lambda: record.end is not None, 30, raise_error=False)
            return record

    def power_off(self, grace: float = 60) -> None:
        """Poweroff in the guest (over ssh), SIGKILL after grace seconds; the device stays off."""
        with self._cond:
            self._want_on = False
            record = self.current
            running = self._proc is not None
            ready = running and record.ready is not None and self.poweroff_via_ssh
            if running and self._kill_reason is None:
                self._kill_reason = STOP  # however it goes down now, it was stopped
        if ready:
            status, output = self.ssh("systemctl poweroff", timeout=15)
            if status == 255 and ssh_never_connected(output):
                ready = False  # no one to ask: pull the plug now
        with self._cond:
            if running and not self._wait_locked(lambda: record.end is not None, grace if ready else 0,
                                                 raise_error=False):
                self._kill_locked(STOP)
                self._wait_locked(lambda: record.end is not None, 30, raise_error=False)

    def stop(self, grace: float = 60) -> None:
        """power_off(), then end the monitor thread. Safe to call twice."""
        try:
            self.power_off(grace)
        finally:
            with self._cond:
                self._closed = True
                self._cond.notify_all()
                self._kill_locked(STOP)
            if self._thread is not None and self._thread is not threading.current_thread():
                self._thread.join(60)
            _live.discard(self)

    def wait_ssh(self, timeout: float = 300) -> BootRecord:
        """Wait until the current boot is ready (ssh answers); returns its record."""
        with self._cond:
            if not self._wait_locked(lambda: self.current is not None and self.current.ready is not None
                                     and self.current.end is None, timeout):
                raise LauncherError(f"not ssh-ready after {timeout}s: {self._describe()}")
            return self.current

    def wait_boot(self, index: int, timeout: float = 300, ready: bool = True) -> BootRecord:
        """Wait for boot number index to start (and, with ready, to be ready)."""
        def done():
            if len(self.boots) < index:
                return False
            record = self.boots[index - 1]
            return not ready or record.ready is not None
        with self._cond:
            if not self._wait_locked(done, timeout):
                raise LauncherError(f"boot {index} not {'ready' if ready else 'started'} after {timeout}s: "
                                    f"{self._describe()}")
            return self.boots[index - 1]

    def wait_end(self, index: int, timeout: float = 300) -> BootRecord:
        """Wait until boot number index has ended."""
        with self._cond:
            if not self._wait_locked(lambda: len(self.boots) >= index and self.boots[index - 1].end is not None,
                                     timeout):
                raise LauncherError(f"boot {index} still running after {timeout}s: {self._describe()}")
            return self.boots[index - 1]

    def ssh_command(self, command: str) -> list[str]:
        return ["ssh", *ssh_options(self.ssh_port, self.ssh_key), "root@127.0.0.1", command]

    def ssh(self, command: str, timeout: float = 60) -> tuple[int, str]:
        """(status, stdout+stderr) of command in the guest; status 255 is ssh's own failure."""
        try:
            result = subprocess.run(self.ssh_command(command), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                    stderr=subprocess.STDOUT, timeout=timeout)
        except subprocess.TimeoutExpired as e:
            return 124, (e.output or b"").decode(errors="replace") + f"\n[ssh timed out after {timeout}s]"
        return result.returncode, result.stdout.decode(errors="replace")

    def copy_to(self, local, remote: str, timeout: float = 300) -> None:
        options = ssh_options(self.ssh_port, self.ssh_key)
        options[options.index("-p")] = "-P"  # scp spells the port -P
        result = subprocess.run(["scp", "-q", *options, str(local), f"root@127.0.0.1:{remote}"],
                                stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout)
        if result.returncode:
            raise LauncherError(f"scp {local} -> {remote} failed ({result.returncode}): {result.stderr.strip()}")

    def reboot(self, timeout: float = 600) -> BootRecord:
        """`systemctl reboot` in the guest; waits until a later boot is ssh-ready and returns its record.
        That need not be the next boot: a new rootfs that fails to boot is tried, and the boot after
        it falls back to the other partition (bootcount > bootlimit)."""
        with self._cond:
            before = self.current
            if before is None or before.end is not None:
                raise LauncherError(f"reboot: no running boot ({self._describe()})")
        self.ssh("systemctl reboot", timeout=20)  # the connection may drop: ignore its status
        deadline = time.monotonic() + timeout
        self.wait_end(before.index, timeout)
        return self.wait_ready_after(before.index, max(1.0, deadline - time.monotonic()))

    def wait_ready_after(self, index: int, timeout: float = 300) -> BootRecord:
        """Wait until a boot after boot number `index` is ssh-ready; returns its record."""
        def done():
            return any(b.ready is not None and b.end is None for b in self.boots[index:])
        with self._cond:
            if not self._wait_locked(done, timeout):
                raise LauncherError(f"no boot after boot {index} ready within {timeout}s: {self._describe()}")
            return next(b for b in reversed(self.boots[index:]) if b.ready is not None)

    def __enter__(self) -> "VmDevice":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop(grace=10 if exc[0] else 60)

    # --- internals ----------------------------------------------------------------------------------

    def _describe(self) -> str:
        record = self.current
        if record is None:
            return "no boot yet" + (f"; monitor error: {self.error!r}" if self.error else "")
        text = (f"boot {record.index} of partition {record.partition} ({record.reason}), end={record.end}, "
                f"log {record.log}")
        if self.error:
            text += f"; monitor error: {self.error!r}"
        return text

    def _wait_locked(self, predicate, timeout, raise_error: bool = True) -> bool:
        deadline = time.monotonic() + timeout
        while not predicate():
            if raise_error and self.error is not None:
                raise LauncherError(f"the launcher failed: {self.error!r}") from self.error
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            self._cond.wait(min(left, 1.0))
        return True

    def _kill_locked(self, reason: str) -> None:
        if self._proc is not None and self._proc.poll() is None:
            if self._kill_reason is None:
                self._kill_reason = reason
            try:
                os.killpg(self._proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self._cond.notify_all()

    def _kill_now(self) -> None:
        proc = self._proc
        if proc is not None and proc.poll() is None:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(10)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                pass

    def _probe(self, record: BootRecord, proc) -> None:
        try:
            ok = self.ready_probe(self)
        except Exception:  # noqa: BLE001 - a failing probe is a "not yet"
            ok = False
        with self._cond:
            if ok and record.ready is None and record.end is None and proc.poll() is None:
                record.ready = time.time()
                self._cond.notify_all()

    def _ssh_ready(self) -> bool:
        try:
            return subprocess.run(self.ssh_command("true"), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL, timeout=15).returncode == 0
        except subprocess.TimeoutExpired:
            return False

    def _debugfs(self, request: str, offset: int) -> str:
        result = subprocess.run(["debugfs", "-R", request, f"{self.disk}?offset={offset}"], capture_output=True,
                                text=True, timeout=120)
        if result.returncode:
            raise LauncherError(f"debugfs -R {request!r} failed: {result.stderr.strip()}")
        return result.stdout

    def _extract_kernel(self, partition: str, record: BootRecord) -> tuple[Path, Path]:
        table = subprocess.run(["sfdisk", "--json", str(self.disk)], capture_output=True, text=True, timeout=60)
        if table.returncode:
            raise LauncherError(f"sfdisk --json {self.disk}: {table.stderr.strip()}")
        offset, _size = partition_extent(table.stdout, int(partition))
        names = parse_debugfs_ls(self._debugfs("ls -p /boot", offset))
        kernel_name, initrd_name = choose_kernel(names)
        record.kernel, record.initrd = kernel_name, initrd_name
        paths = []
        for name, kind in ((kernel_name, "kernel"), (initrd_name, "initrd")):
            out = self.workdir / f"boot-{record.index}.{kind}"
            out.unlink(missing_ok=True)
            self._debugfs(f"dump /boot/{name} {out}", offset)
            if not out.exists() or out.stat().st_size == 0:
                raise LauncherError(f"debugfs could not dump /boot/{name} from partition {partition}")
            paths.append(out)
        # keep only this boot's and the previous boot's copies
        stale = record.index - 2
        if stale >= 1:
            for kind in ("kernel", "initrd"):
                (self.workdir / f"boot-{stale}.{kind}").unlink(missing_ok=True)
        return paths[0], paths[1]

    def _start_boot(self) -> BootRecord:
        """The bootloader: decide, saveenv, load kernel and initrd, start QEMU. Lock held by the caller."""
        index = len(self.boots) + 1
        env = bootenv.read(self.bootenv_disk)
        bootlimit = self.bootlimit
        if bootlimit is None:
            bootlimit = bootenv._ulong(env["bootlimit"]) if "bootlimit" in env else 1
        decision = bootenv.decide(env, parts=self.parts, bootlimit=bootlimit)
        if decision.env_after != env:
            bootenv.write(self.bootenv_disk, decision.env_after)
        record = BootRecord(index=index, partition=decision.partition, env_before=env,
                            env_after=decision.env_after, reason=decision.reason, started=time.time(),
                            log=self.workdir / f"boot-{index}.log")
        self.boots.append(record)
        try:
            kernel, initrd = self._extract_kernel(decision.partition, record)
        except LauncherError as e:
            record.log.write_text(f"launcher: cannot boot partition {decision.partition}: {e}\n")
            record.ended, record.end = time.time(), NO_KERNEL
            return record
        record.command = qemu_command(qemu=self.qemu, kernel=kernel, initrd=initrd, partition=decision.partition,
                                      disk=self.disk, bootenv_disk=self.bootenv_disk, memory_mb=self.memory_mb,
                                      smp=self.smp, ssh_port=self.ssh_port, extra_append=self.extra_append)
        # its own session and process group (killpg), and SIGKILLed should this process die unannounced
        prefix = ["setpriv", "--pdeathsig", "KILL"] if shutil.which("setpriv") else []
        with open(record.log, "wb") as log:
            self._proc = subprocess.Popen(prefix + record.command, stdin=subprocess.DEVNULL, stdout=log,
                                          stderr=subprocess.STDOUT, start_new_session=True)
        record.pid = self._proc.pid
        record.started = time.time()
        self._kill_reason = None
        return record

    def _monitor(self) -> None:
        failed_starts = 0
        try:
            while True:
                with self._cond:
                    while not self._want_on and not self._closed:
                        self._cond.wait()
                    if self._closed:
                        return
                    record = self._start_boot()
                    self._cond.notify_all()
                    if record.end == NO_KERNEL:
                        failed_starts += 1
                        if failed_starts >= self.max_failed_starts:
                            raise LauncherError(f"{failed_starts} boots in a row found no kernel: "
                                                f"{record.log_text().strip()}")
                        self._cond.wait(1.0)
                        continue
                    proc = self._proc
                next_probe = time.monotonic() + 1
                probes: list[threading.Thread] = []
                while proc.poll() is None:
                    if record.ready is None:
                        if time.time() - record.started > self.boot_timeout:
                            with self._cond:
                                self._kill_locked(WATCHDOG)
                        elif time.monotonic() >= next_probe:
                            # a probe can take ConnectTimeout (5 s) before sshd listens: overlap them, so
                            # that readiness is seen within about a second
                            probes = [t for t in probes if t.is_alive()]
                            if len(probes) < 6:
                                probe = threading.Thread(target=self._probe, args=(record, proc), daemon=True)
                                probe.start()
                                probes.append(probe)
                            next_probe = time.monotonic() + 1
                    with self._cond:
                        if proc.poll() is None:
                            self._cond.wait(0.5)
                status = proc.wait()
                with self._cond:
                    record.ended, record.exit_status = time.time(), status
                    if self._kill_reason is not None:
                        record.end = self._kill_reason
                    else:
                        record.end = classify_end(record.log_text()[-20000:])
                        if record.end == GUEST_POWEROFF and not self.restart_on_poweroff:
                            self._want_on = False
                    self._proc, self._kill_reason = None, None
                    self._cond.notify_all()
                    if record.end == QEMU_EXIT and status != 0:  # QEMU itself failed (bad option, port taken)
                        failed_starts += 1
                        if failed_starts >= self.max_failed_starts:
                            raise LauncherError(f"QEMU failed {failed_starts} times in a row (status {status}): "
                                                f"{record.log_text()[-2000:].strip()}")
                        self._cond.wait(1.0)
                    else:
                        failed_starts = 0
        except BaseException as e:  # noqa: BLE001 - handed to the waiting test
            with self._cond:
                self.error = e
                self._kill_locked(STOP)
                self._cond.notify_all()
            self._kill_now()
            with self._cond:
                record = self.current
                if record is not None and record.end is None:
                    record.ended, record.end = time.time(), STOP
                self._proc = None
                self._cond.notify_all()
