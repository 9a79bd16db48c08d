"""The persistent-app domain through the real Mender client: app trees made here, artifacts written by
our generator (persistent-app-artifact-gen, driving the real mender-artifact), installed, committed and
rolled back by `mender` in the device sandbox, with the module streaming its payload or letting the
client store it (`"download": "store"` in /etc/mender/persistent-app.conf).

Each scenario returns what the device showed after every client command; the tests assert on it and
a demo can print it."""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import shutil
import stat
import tarfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

from bench import DEPENDS_UNMET_RE, DeviceSandbox, mender_artifact_write_module
from bench.system import run

APP = "demo-app"
APPS = "/data/apps"
DEST = f"{APPS}/{APP}"
STATE_DIR = "/data/mender-composable/persistent-app"
JOURNAL = f"{STATE_DIR}/{APP}.json"
MODES = ("stream", "store")

# The Go client copies each stderr line of a module into its log:
#   level=info msg="Output (stderr) from command \"/usr/share/mender/modules/v3/persistent-app\": LINE"
_MODULE_LINE_RE = re.compile(r'Output \(stderr\) from command \\"[^"\\]*/persistent-app\\": (?P<line>.*)"$')

Say = Callable[[str], None]


def _quiet(_: str) -> None:
    pass


# -- app trees and manifests -------------------------------------------------------------------------


def _write(path: Path, content: bytes, mode: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    path.chmod(mode)


def _settle_mtimes(root: Path, base: int) -> None:
    """Whole-second mtimes, deepest first so a directory keeps its own; symlinks themselves."""
    paths = sorted((p for p in root.rglob("*")), key=lambda p: (-len(p.parts), str(p)))
    for i, p in enumerate(paths + [root]):
        t = base + 60 * i
        os.utime(p, (t, t), follow_symlinks=False)


def make_v1(root: Path) -> Path:
    """1.0: files of several modes, an executable, a subdirectory, a symlink, a binary file."""
    _write(root / "bin/demo", b"#!/bin/sh\necho demo 1.0\n", 0o755)
    _write(root / "etc/demo.conf", b"level=1\n", 0o644)
    _write(root / "README", b"demo app\n", 0o644)
    _write(root / "share/model/weights.bin", bytes(i * 7 % 251 for i in range(200_000)), 0o640)
    _write(root / "lib/libdemo.so.1", b"libdemo one", 0o755)
    os.symlink("libdemo.so.1", root / "lib/libdemo.so")
    _settle_mtimes(root, 1_600_000_000)
    return root


def make_v2(v1: Path, root: Path) -> Path:
    """2.0 from 1.0: one file changed, one added, one deleted, one mode changed."""
    shutil.copytree(v1, root, symlinks=True)
    _write(root / "etc/demo.conf", b"level=2\n", 0o644)
    _write(root / "share/new-in-2.txt", b"added by 2.0\n", 0o644)
    (root / "README").unlink()
    (root / "bin/demo").chmod(0o700)
    _settle_mtimes(root, 1_700_000_000)
    return root


def manifest(root: Path) -> dict[str, tuple]:
    """Every entry below `root` (and `.` for root itself): type, mode, mtime, size, sha256, link target."""
    if not root.is_dir():
        return {}
    out: dict[str, tuple] = {}
    for path in [root, *sorted(root.rglob("*"))]:
        st = path.lstat()
        rel = str(path.relative_to(root)) if path != root else "."
        mode = stat.S_IMODE(st.st_mode)
        if stat.S_ISLNK(st.st_mode):
            out[rel] = ("link", mode, st.st_mtime_ns, 0, "", os.readlink(path))
        elif stat.S_ISDIR(st.st_mode):
            out[rel] = ("dir", mode, st.st_mtime_ns, 0, "", "")
        else:
            digest = hashlib.sha256(path.read_bytes()).hexdigest()
            out[rel] = ("file", mode, st.st_mtime_ns, st.st_size, digest, "")
    return out


def content(m: dict[str, tuple]) -> dict[str, tuple]:
    """What a source tree and its installed copy share: all but the tree root (the module writes
    nothing into the tree, so a release marker of older module versions would show as a difference)."""
    return {k: v for k, v in m.items() if k != "."}


# -- artifacts -----------------------------------------------------------------------------------------


def generate(generator: os.PathLike, out: Path, version: str, src: Path, device_type: str,
             mender_artifact_args: Sequence[str] = (), service: str | None = None) -> Path:
    """`persistent-app-artifact-gen` as a user runs it; everything after `--` goes to mender-artifact."""
    argv = [str(generator), "-n", f"{APP}-{version}", "-t", device_type, "-d", DEST,
            "--software-name", APP, "--software-version", version, "-o", str(out), str(src)]
    if service:
        argv[1:1] = ["--service", service]
    if mender_artifact_args:
        argv += ["--", *mender_artifact_args]
    run(argv)
    return out


def evil_artifact(workdir: Path, device_type: str, dest: str = DEST) -> Path:
    """Our format, written with mender-artifact directly: a hand-made tar with a `../evil` member and
    meta-data that matches it, so only the member's path is wrong."""
    work = workdir / "evil"
    work.mkdir(parents=True, exist_ok=True)
    tar = work / "app.tar"
    members = (("ok.txt", b"fine\n"), ("../evil", b"escaped\n"))
    with tarfile.open(tar, "w", format=tarfile.GNU_FORMAT) as t:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), 0o644, 1_600_000_000
            t.addfile(info, io.BytesIO(data))
    meta = {"persistent-app": {"format": 1, "name": APP, "dest": dest, "archive": "app.tar",
                               "unpacked_size": sum(len(d) for _, d in members), "entries": len(members)}}
    return mender_artifact_write_module(
        workdir / f"{APP}-evil.mender", type="persistent-app", name=f"{APP}-evil", device_type=device_type,
        files=[tar], software_filesystem="data-partition", software_name=APP, software_version="evil",
        meta_data=meta, clears=[f"data-partition.{APP}.*"])


# -- the device ----------------------------------------------------------------------------------------


@dataclass
class Step:
    command: str
    returncode: int
    stdout: str
    stderr: str
    provides: dict[str, str]
    tree: dict[str, tuple]
    apps: list[str]
    journal: dict | None
    module_lines: list[str] = field(default_factory=list)
    states: list[str] = field(default_factory=list)

    @property
    def module_errors(self) -> list[str]:
        return [line for line in self.module_lines if line.startswith("persistent-app: error:")]


@dataclass
class Run:
    mode: str
    sources: dict[str, dict[str, tuple]] = field(default_factory=dict)
    steps: list[Step] = field(default_factory=list)

    def step(self, command: str) -> Step:
        return next(s for s in self.steps if s.command == command)


class Device:
    """The sandboxed device with the persistent-app module set up in one download mode."""

    def __init__(self, sandbox: DeviceSandbox, module: os.PathLike, mode: str, say: Say = _quiet,
                 log_states: bool = False, policy: dict | None = None):
        if mode not in MODES:
            raise ValueError(f"download mode {mode!r} is not one of {MODES}")
        self.sandbox = sandbox
        self.mode = mode
        self.say = say
        self.states_log = sandbox.dir / "module-states.log"
        if log_states:
            # A wrapper that records each state (and query) before running the real module, to show
            # which states the client ran. The binary stays outside the device paths.
            real = sandbox.dir / "bin" / "persistent-app"
            real.parent.mkdir(exist_ok=True)
            shutil.copyfile(module, real)
            real.chmod(0o755)
            wrapper = sandbox.dir / "bin" / "persistent-app-logging"
            wrapper.write_text(f'#!/bin/sh\necho "$1" >> {self.states_log}\nexec {real} "$@"\n')
            sandbox.install_module("persistent-app", wrapper)
        else:
            sandbox.install_module("persistent-app", module)
        conf = {"download": mode, **(policy or {})}
        (sandbox.etc_mender / "persistent-app.conf").write_text(json.dumps(conf) + "\n")
        # The module's lock lives in /run/lock on a device; here /run is the host's own.
        self.env = {"PERSISTENT_APP_LOCK": str(sandbox.dir / "persistent-app.lock")}
        self.result = Run(mode)

    def observe(self, command: str, proc) -> Step:
        sb = self.sandbox
        states = self.states_log.read_text().split() if self.states_log.exists() else []
        self.states_log.unlink(missing_ok=True)
        journal_path = sb.host_path(JOURNAL)
        journal = json.loads(journal_path.read_text()) if journal_path.exists() else None
        apps = sb.host_path(APPS)
        step = Step(
            command=command, returncode=proc.returncode, stdout=proc.stdout, stderr=proc.stderr,
            provides=sb.provides(), tree=manifest(sb.host_path(DEST)),
            apps=sorted(p.name for p in apps.iterdir()) if apps.is_dir() else [],
            journal=journal, states=states,
            module_lines=[m.group("line").replace('\\"', '"') for m in map(_MODULE_LINE_RE.search,
                                                                             proc.stderr.splitlines()) if m])
        self.result.steps.append(step)
        self.say(f"$ mender {command}  -> exit {proc.returncode}")
        for line in step.module_lines:
            self.say(f"    module: {line}")
        if states:
            self.say(f"    module states: {' -> '.join(states)}")
        self.say(f"    {APPS}: {step.apps}; journal: {journal['phase'] if journal else '(none)'}")
        self.say("    provides: " + (", ".join(f"{k}={v}" for k, v in sorted(step.provides.items()))
                                   or "(none recorded yet)"))
        return step

    def mender(self, command: str, *args: str) -> Step:
        proc = self.sandbox.mender(*args, env=self.env)
        return self.observe(command, proc)

    def install(self, label: str, artifact: Path) -> Step:
        return self.mender(f"install {label}", "install", str(artifact))

    def os_update(self) -> Step:
        """A stand-in OS update: an artifact that clears rootfs-image.* and provides a new OS version."""
        self.sandbox.seed_provides({"rootfs-image.os.version": "2"}, artifact_name="os-2",
                                   clears=["rootfs-image.*"])
        return self.observe("os update (clears rootfs-image.*)", _Completed(0))


@dataclass
class _Completed:
    returncode: int
    stdout: str = ""
    stderr: str = ""


def _sources(workdir: Path) -> tuple[Path, Path]:
    v1 = make_v1(workdir / "src-1.0")
    v2 = make_v2(v1, workdir / "src-2.0")
    return v1, v2


def deploy_rollback_commit(sandbox: DeviceSandbox, module: os.PathLike, generator: os.PathLike,
                           workdir: Path, mode: str, say: Say = _quiet) -> Run:
    """1.0 + commit; 2.0 + rollback; 2.0 + commit; then an OS update that clears rootfs-image.*."""
    dev = Device(sandbox, module, mode, say)
    v1, v2 = _sources(workdir)
    dev.result.sources = {"1.0": manifest(v1), "2.0": manifest(v2)}
    a1 = generate(generator, workdir / f"{APP}-1.0.mender", "1.0", v1, sandbox.device_type)
    a2 = generate(generator, workdir / f"{APP}-2.0.mender", "2.0", v2, sandbox.device_type)
    dev.install(f"{APP}-1.0", a1)
    dev.mender("commit 1.0", "commit")
    dev.install(f"{APP}-2.0", a2)
    dev.mender("rollback 2.0", "rollback")
    dev.install(f"{APP}-2.0 again", a2)
    dev.mender("commit 2.0", "commit")
    dev.os_update()
    return dev.result


def refused_before_install(sandbox: DeviceSandbox, module: os.PathLike, generator: os.PathLike,
                           workdir: Path, mode: str, say: Say = _quiet) -> Run:
    """1.0 + commit, then two artifacts that must not change the device: one that depends on
    rootfs-image.cuda.version:11.8, which the device does not provide, and one whose archive has a
    `../evil` member. The module runs behind a wrapper that logs every state it is called for."""
    dev = Device(sandbox, module, mode, say, log_states=True)
    v1, _ = _sources(workdir)
    dev.result.sources = {"1.0": manifest(v1)}
    a1 = generate(generator, workdir / f"{APP}-1.0.mender", "1.0", v1, sandbox.device_type)
    cuda = generate(generator, workdir / f"{APP}-cuda.mender", "cuda", v1, sandbox.device_type,
                    ["--depends", "rootfs-image.cuda.version:11.8"])
    dev.install(f"{APP}-1.0", a1)
    dev.mender("commit 1.0", "commit")
    dev.install(f"{APP}-cuda (depends rootfs-image.cuda.version:11.8)", cuda)
    dev.install(f"{APP}-evil (../evil in the archive)", evil_artifact(workdir, sandbox.device_type))
    return dev.result


POLICY = {"allowed_services": [f"{APP}*"]}


def refused_by_policy(sandbox: DeviceSandbox, module: os.PathLike, generator: os.PathLike,
                      workdir: Path, mode: str, say: Say = _quiet) -> Run:
    """A device whose policy allows only its app's own units (POLICY): 1.0 + commit, then an
    artifact whose service is sshd.service and one whose service is the Mender client's own unit
    (refused whatever the policy says). The generator builds both: the policy is the device's."""
    dev = Device(sandbox, module, mode, say, log_states=True, policy=POLICY)
    v1, _ = _sources(workdir)
    dev.result.sources = {"1.0": manifest(v1)}
    a1 = generate(generator, workdir / f"{APP}-1.0.mender", "1.0", v1, sandbox.device_type)
    sshd = generate(generator, workdir / f"{APP}-sshd.mender", "sshd", v1, sandbox.device_type,
                    service="sshd.service")
    client = generate(generator, workdir / f"{APP}-client.mender", "client", v1, sandbox.device_type,
                      service="mender-updated.service")
    dev.install(f"{APP}-1.0", a1)
    dev.mender("commit 1.0", "commit")
    dev.install(f"{APP}-sshd (service sshd.service)", sshd)
    dev.install(f"{APP}-client (service mender-updated.service)", client)
    return dev.result


# -- file deltas -----------------------------------------------------------------------------------


def generate_delta(generator: os.PathLike, out: Path, version: str, src: Path, base: Path,
                   device_type: str) -> Path:
    """`persistent-app-artifact-gen --base BASE.mender` as a user runs it."""
    run([str(generator), "-n", f"{APP}-{version}", "-t", device_type, "-d", DEST, "--software-name", APP,
         "--software-version", version, "--base", str(base), "-o", str(out), str(src)])
    return out


def make_v3(v2: Path, root: Path) -> Path:
    """3.0 from 2.0: one file changed."""
    shutil.copytree(v2, root, symlinks=True)
    _write(root / "bin/demo", b"#!/bin/sh\necho demo 3.0\n", 0o700)
    _settle_mtimes(root, 1_750_000_000)
    return root


def repack_with_changed_file(artifact: Path, out: Path, member: str, content: bytes) -> Path:
    """The artifact re-written by mender-artifact with one member of app.tar replaced by `content` of the
    same size: the artifact's own checksums are right again, only the delta's manifest disagrees."""
    work = out.parent / f"{out.stem}-dump"
    meta, files = work / "meta", work / "files"
    meta.mkdir(parents=True)
    files.mkdir()
    dumped = run(["mender-artifact", "dump", "--meta-data", str(meta), "--files", str(files),
                  "--print0-cmdline", str(artifact)])
    argv = [a for a in dumped.stdout.split("\0") if a]
    tar_path = files / "app.tar"
    with tarfile.open(tar_path) as t:
        members = [(m, t.extractfile(m).read() if m.isfile() else None) for m in t.getmembers()]
    with tarfile.open(tar_path, "w", format=tarfile.GNU_FORMAT) as t:
        for m, data in members:
            if m.name == member:
                assert len(content) == m.size, "same size, so only the digest can tell"
                data = content
            t.addfile(m, io.BytesIO(data) if data is not None else None)
    # The dump was given absolute directories, so its command line names the files absolutely.
    run(["mender-artifact", *argv, "--output-path", str(out)])
    return out


def delta_deploy(sandbox: DeviceSandbox, module: os.PathLike, generator: os.PathLike, workdir: Path,
                 mode: str, say: Say = _quiet) -> Run:
    """1.0 + commit; the 2.0 delta (--base 1.0) + rollback; again + commit; then a 3.0 delta built
    against 1.0, which a device at 2.0 must refuse by depends."""
    dev = Device(sandbox, module, mode, say, log_states=True)
    v1, v2 = _sources(workdir)
    dev.result.sources = {"1.0": manifest(v1), "2.0": manifest(v2)}
    dt = sandbox.device_type
    a1 = generate(generator, workdir / f"{APP}-1.0.mender", "1.0", v1, dt)
    d2 = generate_delta(generator, workdir / f"{APP}-2.0-delta.mender", "2.0", v2, a1, dt)
    d3 = generate_delta(generator, workdir / f"{APP}-3.0-delta.mender", "3.0",
                        make_v3(v2, workdir / "src-3.0"), a1, dt)
    dev.install(f"{APP}-1.0", a1)
    dev.mender("commit 1.0", "commit")
    dev.install(f"{APP}-2.0 delta", d2)
    dev.mender("rollback 2.0", "rollback")
    dev.install(f"{APP}-2.0 delta again", d2)
    dev.mender("commit 2.0", "commit")
    refused = dev.install(f"{APP}-3.0 delta against 1.0", d3)
    # The client's reason, without the progress dots its download left on the same line.
    reason = next((line for line in refused.stderr.splitlines() if DEPENDS_UNMET_RE.search(line)), "")
    if reason:
        say(f"    client: {reason[reason.find('level='):] if 'level=' in reason else reason.strip()}")
    return dev.result


def delta_refused(sandbox: DeviceSandbox, module: os.PathLike, generator: os.PathLike, workdir: Path,
                  mode: str, say: Say = _quiet) -> Run:
    """1.0 + commit, then the 2.0 delta: with a base file edited by hand, with one removed by hand (each
    restored afterwards), and re-packed with a shipped file's content changed."""
    dev = Device(sandbox, module, mode, say, log_states=True)
    v1, v2 = _sources(workdir)
    dev.result.sources = {"1.0": manifest(v1), "2.0": manifest(v2)}
    dt = sandbox.device_type
    a1 = generate(generator, workdir / f"{APP}-1.0.mender", "1.0", v1, dt)
    d2 = generate_delta(generator, workdir / f"{APP}-2.0-delta.mender", "2.0", v2, a1, dt)
    dev.install(f"{APP}-1.0", a1)
    dev.mender("commit 1.0", "commit")
    dest = sandbox.host_path(DEST)
    weights = dest / "share/model/weights.bin"
    original = weights.read_bytes()
    st = weights.stat()
    weights.write_bytes(bytes([original[0] ^ 0xFF]) + original[1:])
    os.utime(weights, ns=(st.st_atime_ns, st.st_mtime_ns))
    dev.install(f"{APP}-2.0 delta (base file edited by hand)", d2)
    weights.write_bytes(original)
    os.utime(weights, ns=(st.st_atime_ns, st.st_mtime_ns))
    lib = dest / "lib/libdemo.so.1"
    kept = lib.read_bytes()
    lib_st, dir_st = lib.stat(), lib.parent.stat()
    lib.unlink()
    dev.install(f"{APP}-2.0 delta (base file removed by hand)", d2)
    lib.write_bytes(kept)
    os.chmod(lib, stat.S_IMODE(lib_st.st_mode))
    os.utime(lib, ns=(lib_st.st_atime_ns, lib_st.st_mtime_ns))
    os.utime(lib.parent, ns=(dir_st.st_atime_ns, dir_st.st_mtime_ns))
    tampered = repack_with_changed_file(d2, workdir / f"{APP}-2.0-tampered.mender", "etc/demo.conf",
                                        b"level=9\n")
    dev.install(f"{APP}-2.0 delta (shipped file changed)", tampered)
    return dev.result
