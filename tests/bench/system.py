"""Process, mount and prerequisite helpers shared by the bench's components."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Iterable, Mapping, Sequence

SETUP_HINT = "run scripts/setup as root to install the bench's components"

# What each component of the bench needs on PATH.
REQUIRED_COMMANDS = {
    "dockerd": "docker.io",
    "docker": "docker.io",
    "docker-registry": "docker-registry",
    "mender": "mender-client",
    "mender-artifact": "mender-artifact",
    "busybox": "busybox-static",
    "htpasswd": "apache2-utils",
    "unshare": "util-linux",
    "mountpoint": "util-linux",
}


class BenchError(RuntimeError):
    """The bench itself could not do its job (a component missing, a daemon that did not start)."""


class CommandError(AssertionError):
    """A command run by a test exited non-zero although the test expected success."""

    def __init__(self, argv: Sequence[str], returncode: int, stdout: str, stderr: str):
        self.argv = list(argv)
        self.returncode = returncode
        self.stdout = stdout
        self.stderr = stderr
        super().__init__(
            f"command {self.argv} exited {returncode}\n"
            f"--- stdout (tail) ---\n{tail(stdout)}\n--- stderr (tail) ---\n{tail(stderr)}"
        )


def tail(text: str | bytes | None, lines: int = 30) -> str:
    if text is None:
        return ""
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    return "\n".join(text.splitlines()[-lines:])


def missing_components() -> list[str]:
    """Human-readable list of what keeps the bench from running here; empty when all is well."""
    problems = []
    if os.geteuid() != 0:
        problems.append("not running as root (dockerd, mount namespaces and bind mounts need it)")
    for cmd, package in REQUIRED_COMMANDS.items():
        if shutil.which(cmd) is None and not Path("/usr/sbin", cmd).exists():
            problems.append(f"'{cmd}' not found (Debian package {package})")
    if not Path("/bin/busybox").exists():
        problems.append("/bin/busybox not found (Debian package busybox-static)")
    return problems


def require_components() -> None:
    problems = missing_components()
    if problems:
        raise BenchError("the test bench cannot run here:\n  - " + "\n  - ".join(problems) + f"\n{SETUP_HINT}")


def run(
    argv: Sequence[str],
    *,
    check: bool = True,
    env: Mapping[str, str] | None = None,
    timeout: float = 120,
    input: str | bytes | None = None,
    text: bool = True,
    cwd: str | os.PathLike | None = None,
) -> subprocess.CompletedProcess:
    """Run argv in its own process group, so a timeout also ends whatever it started."""
    proc = subprocess.Popen(
        list(argv),
        stdin=subprocess.PIPE if input is not None else subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=dict(env) if env is not None else None,
        cwd=cwd,
        text=text,
        # Modules under test may print anything; a stray byte must not turn into a bench crash.
        encoding="utf-8" if text else None,
        errors="replace" if text else None,
        start_new_session=True,
    )
    try:
        stdout, stderr = proc.communicate(input=input, timeout=timeout)
    except subprocess.TimeoutExpired:
        kill_group(proc.pid)
        stdout, stderr = proc.communicate()
        raise BenchError(
            f"command {list(argv)} did not finish within {timeout}s and was killed\n"
            f"--- stdout (tail) ---\n{tail(stdout)}\n--- stderr (tail) ---\n{tail(stderr)}"
        ) from None
    if check and proc.returncode != 0:
        raise CommandError(argv, proc.returncode, _as_text(stdout), _as_text(stderr))
    return subprocess.CompletedProcess(list(argv), proc.returncode, stdout, stderr)


def _as_text(data: str | bytes | None) -> str:
    if isinstance(data, bytes):
        return data.decode("utf-8", "replace")
    return data or ""


def kill_group(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def pid_alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            # A zombie has finished; only its parent's wait() is missing.
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False


def terminate(pid: int, *, grace: float = 15) -> None:
    """SIGTERM, wait up to `grace` seconds, then SIGKILL."""
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5)):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            _reap(pid)
            if not pid_alive(pid):
                return
            time.sleep(0.05)


def _reap(pid: int) -> None:
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


def processes_referencing(path: Path) -> list[int]:
    """PIDs whose command line mentions `path` or whose root is under it: what a run dir started."""
    needle = str(path)
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode("utf-8", "replace")
            root = os.readlink(entry / "root")
        except OSError:
            continue
        if (needle in cmdline or root == needle or root.startswith(needle + "/")) and pid_alive(int(entry.name)):
            found.append(int(entry.name))
    return found


def kill_processes_under(path: Path) -> None:
    for pid in processes_referencing(path):
        terminate(pid, grace=5)


def _unescape_mountinfo(field: str) -> str:
    # mountinfo octal-escapes space, tab, newline and backslash.
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)


def mounts_under(path: Path, mountinfo: str = "/proc/self/mountinfo") -> list[str]:
    """Mount points at or below `path`, deepest first, as seen by this process."""
    prefix = str(path).rstrip("/")
    found = []
    for line in Path(mountinfo).read_text().splitlines():
        point = _unescape_mountinfo(line.split()[4])
        if point == prefix or point.startswith(prefix + "/"):
            found.append(point)
    return sorted(found, key=lambda p: p.count("/"), reverse=True)


def unmount_all_under(path: Path) -> None:
    """Unmount everything below `path`; lazily when busy, so teardown never leaves a mount behind."""
    for _ in range(5):
        points = mounts_under(path)
        if not points:
            return
        for point in points:
            if subprocess.run(["umount", point], capture_output=True).returncode != 0:
                subprocess.run(["umount", "--lazy", point], capture_output=True)
    left = mounts_under(path)
    if left:
        raise BenchError(f"could not unmount {left} under {path}; unmount them by hand before rerunning")


def remove_tree(path: Path) -> None:
    if not path.exists():
        return
    unmount_all_under(path)
    shutil.rmtree(path)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(predicate, *, timeout: float, interval: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)


def file_tail(path: Path, lines: int = 40) -> str:
    try:
        return tail(path.read_text(errors="replace"), lines)
    except FileNotFoundError:
        return f"({path} was never written)"


def sha256_tree(paths: Iterable[Path]) -> dict[str, str]:
    """{path: sha256 | 'dir' | 'symlink -> target'} for every entry below each path (for snapshots)."""
    snapshot = {}
    for top in paths:
        if not top.exists() and not top.is_symlink():
            snapshot[str(top)] = "absent"
            continue
        entries = [top] + (sorted(top.rglob("*")) if top.is_dir() and not top.is_symlink() else [])
        for p in entries:
            if p.is_symlink():
                snapshot[str(p)] = f"symlink -> {os.readlink(p)}"
            elif p.is_dir():
                snapshot[str(p)] = "dir"
            else:
                snapshot[str(p)] = hashlib.sha256(p.read_bytes()).hexdigest()
    return snapshot
