"""scripts/composable-qemu, the mender-qemu route's boot helper, with the real QEMU.

A build environment is stood in for by small stubs (bitbake, bitbake-getvar, bitbake-layers, ssh,
and a mender-qemu that starts QEMU the way meta-mender-qemu's script does: $QEMU_SYSTEM, -m
$QEMU_MEMORY, the disk image as a raw IDE drive, -nographic, then the caller's arguments). QEMU is
the machine's qemu-system-x86_64, paused (-S) so no firmware is needed. What the tests check is what
a CI run depends on: QEMU comes from the build's staged sysroot, the deployed disk image is opened
read-only and left byte-for-byte unchanged, and QEMU keeps running when the caller sits in a
background job of an interactive shell (it used to stop there on SIGTTOU).
"""

import hashlib
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent.parent
SCRIPT = ROOT / "scripts" / "composable-qemu"
QEMU = shutil.which("qemu-system-x86_64")



def _exe(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(0o755)


@pytest.fixture
def build(tmp_path):
    """A stand-in build environment; returns (env, disk image path, bitbake call log)."""
    assert QEMU, "qemu-system-x86_64 is missing: scripts/setup installs it (qemu-system-x86)"
    bindir = tmp_path / "stubs"
    staged = tmp_path / "qemu-helper-native" / "recipe-sysroot-native" / "usr" / "bin"
    disk = tmp_path / "deploy" / "composable-demo-image-qemux86-64.uefiimg"
    disk.parent.mkdir(parents=True)
    disk.write_bytes(os.urandom(1 << 20) * 4)
    calls = tmp_path / "bitbake.calls"
    # `bitbake -c addto_recipe_sysroot` is what puts qemu-system-native into the sysroot.
    _exe(bindir / "bitbake", f"""#!/bin/sh
echo "$*" >> {calls}
case "$*" in *"qemu-helper-native -c addto_recipe_sysroot"*)
    mkdir -p {staged}
    printf '#!/bin/sh\\nexec {QEMU} "$@"\\n' > {staged}/qemu-system-x86_64
    chmod 755 {staged}/qemu-system-x86_64 ;;
esac
""")
    _exe(bindir / "bitbake-getvar", f"#!/bin/sh\necho \"$*\" >> {calls}\necho {staged}\n")
    _exe(bindir / "bitbake-layers", f"#!/bin/sh\necho 'layer path priority'\n"
                                    f"echo 'meta-mender-qemu {tmp_path}/meta-mender-qemu 6'\n")
    # ssh "connects" once the VM process exists.
    _exe(bindir / "ssh", f"#!/bin/sh\npgrep -f '^{QEMU}.*file={disk}' >/dev/null\n")
    _exe(tmp_path / "meta-mender-qemu" / "scripts" / "mender-qemu", f"""#!/bin/sh
# Starts QEMU as meta-mender-qemu's script does (its QEMU_SYSTEM, QEMU_MEMORY, raw IDE disk, -nographic).
set -e
shift  # the image name
exec $QEMU_SYSTEM -S -m "$QEMU_MEMORY" -drive file={disk},if=ide,format=raw -net none -nographic "$@"
""")
    env = {**os.environ, "PATH": f"{bindir}:{os.environ['PATH']}", "BUILDDIR": str(tmp_path / "build"),
           "BOOT_TIMEOUT": "60"}
    (tmp_path / "build").mkdir()
    yield env, disk, calls
    subprocess.run([str(SCRIPT), "stop"], env=env, capture_output=True)


def _qemu_pid(disk):
    out = subprocess.run(["pgrep", "-f", f"^{QEMU}.*file={disk}"], capture_output=True, text=True).stdout.split()
    return int(out[0]) if out else None


def _disk_fd_flags(pid, disk):
    """open(2) flags of QEMU's descriptor for the disk image, once QEMU has opened it."""
    for _ in range(100):
        for fd in os.listdir(f"/proc/{pid}/fd"):
            try:
                if os.readlink(f"/proc/{pid}/fd/{fd}") == str(disk):
                    return int(Path(f"/proc/{pid}/fdinfo/{fd}").read_text().split("flags:")[1].split()[0], 8)
            except FileNotFoundError:
                continue
        time.sleep(0.1)
    pytest.fail("QEMU does not hold the disk image open")


def _sha(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_start_boots_with_the_builds_qemu_read_only_and_stop_ends_it(build):
    env, disk, calls = build
    before = _sha(disk)
    out = subprocess.run([str(SCRIPT), "start", "composable-demo-image"], env=env, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    assert "composable-demo-image is up" in out.stdout
    assert "qemu-helper-native -c addto_recipe_sysroot" in calls.read_text()
    pid = _qemu_pid(disk)
    assert pid is not None
    cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    assert b"-snapshot" in cmdline
    assert Path(f"/proc/{pid}/exe").resolve() == Path(QEMU).resolve()
    # The build's QEMU: the staged wrapper exec'd it (mender-qemu adds --cpu after QEMU_SYSTEM).
    assert b"2048M" in cmdline
    # The disk image is open read-only; the guest's writes would go to QEMU's temporary overlay.
    assert _disk_fd_flags(pid, disk) & os.O_ACCMODE == os.O_RDONLY
    # Its own session: no controlling terminal to be stopped by.
    assert os.getsid(pid) != os.getsid(0)
    out = subprocess.run([str(SCRIPT), "stop"], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    time.sleep(0.5)
    assert _qemu_pid(disk) is None
    assert _sha(disk) == before


def _state_in_a_background_job_of_a_terminal(command, env, disk, state):
    """Run `command &` in an interactive shell on a pseudo-terminal and return the VM's process
    state and the shell's job list, read while that shell still runs: once it exits, the kernel
    sends an orphaned, stopped job SIGCONT and the evidence is gone."""
    shell = (f"{command} & "
             f"for i in $(seq 1 60); do pgrep -f \"^{QEMU}.*file={disk}\" >/dev/null && break; sleep 1; done; "
             f"sleep 3; ps -o stat= -p $(pgrep -f \"^{QEMU}.*file={disk}\") > {state}; jobs -l >> {state}; exit 0")
    subprocess.run(["script", "-qec", f"bash --norc -i -c '{shell}'", "/dev/null"], env=env,
                   capture_output=True, timeout=120)
    return state.read_text()


def test_qemu_keeps_running_when_started_from_a_background_job_of_an_interactive_shell(build, tmp_path):
    """`kas shell … -c 'mender-qemu …' &` from a terminal, as the README used to say: the
    -nographic QEMU in that job has the terminal as stdin and stops on SIGTTOU. Started by
    composable-qemu in the same place, it runs."""
    env, disk, _ = build
    mender_qemu = tmp_path / "meta-mender-qemu" / "scripts" / "mender-qemu"
    old = _state_in_a_background_job_of_a_terminal(
        f"QEMU_SYSTEM={QEMU} QEMU_MEMORY=64M {mender_qemu} composable-demo-image", env, disk, tmp_path / "old")
    assert old.startswith("T") and "Stopped (tty output)" in old, old
    subprocess.run(["pkill", "-KILL", "-f", f"file={disk}"])
    time.sleep(0.5)
    ours = _state_in_a_background_job_of_a_terminal(
        f"{SCRIPT} start composable-demo-image >/dev/null 2>&1", env, disk, tmp_path / "ours")
    assert not ours.startswith("T") and "Stopped" not in ours, ours


def test_start_without_a_build_environment_or_mender_qemu_says_what_is_missing(build, tmp_path):
    env, _, _ = build
    no_build = {k: v for k, v in env.items() if k != "BUILDDIR"}
    out = subprocess.run([str(SCRIPT), "start"], env=no_build, capture_output=True, text=True)
    assert out.returncode == 1
    assert out.stderr.strip().splitlines() == [
        "composable-qemu: BUILDDIR is not set: run inside the build environment "
        "(kas shell CONFIG -c '...' or oe-init-build-env)"]
    shutil.rmtree(tmp_path / "meta-mender-qemu")
    out = subprocess.run([str(SCRIPT), "start"], env=env, capture_output=True, text=True)
    assert out.returncode == 1
    assert "meta-mender-qemu is not in BBLAYERS" in out.stderr
