"""The three-domain scenarios on the booted VM device.

The scenario code is lib/mender_composable/scenarios.py, unchanged; here the target is the VM
(tests/vmdevice/launcher.py) over ssh, as oeqa's ssh target reaches a booted image, and the OS
update is real: a rootfs-image artifact of the VM's own rootfs, written by the guest's Mender
client to the inactive partition, booted by the launcher's bootloader stand-in, committed.

Artifacts for the persistent-app and docker domains are the workstation's (tests/scenarios
three_domains.LocalArtifacts: the workspace's generators, the demo recipes' inputs); rootfs-image
artifacts are made from the image's rootfs.ext4 with mender-artifact, the way meta-mender's
do_image_mender writes them, after editing /etc/mender/artifact_info inside the filesystem image
with debugfs (no mount needed).
"""

from __future__ import annotations

import shlex
import shutil
from pathlib import Path
from typing import Callable, Dict, Optional, Sequence, Tuple

from bench.system import BenchError, run
from scenarios.three_domains import LocalArtifacts, image_settings
from mender_composable.scenarios import OS_UPDATE_ROOTFS, Profile, Session

# What a rootfs that cannot boot has: an init that exits at once. The kernel panics ("Attempted
# to kill init!"), panic=5 on the command line reboots it, QEMU's -no-reboot ends the boot, and the
# launcher's bootloader stand-in counts a failed boot of the new partition.
BROKEN_INIT = "#!/bin/sh\necho 'composable test: this rootfs cannot boot (init exits)' >/dev/console\nexit 1\n"


class VmTarget:
    """The scenarios' target interface over the VM: ssh and scp, like oeqa's SSHTarget, plus reboot."""

    def __init__(self, device):
        self.device = device

    def run(self, command: str, timeout: Optional[int] = None) -> Tuple[int, str]:
        return self.device.ssh(command, timeout=timeout or 300)

    def copy_to(self, local: str, remote: str) -> None:
        self.device.copy_to(local, remote, timeout=900)
        # On the device's disk before anything uses it: a power cut must not leave half a copy
        # that the harness believes whole.
        self.device.ssh(f"sync {shlex.quote(remote)}", timeout=300)

    def reboot(self, timeout: Optional[int] = None) -> None:
        self.device.reboot(timeout=timeout or 900)


def debugfs_write(fs: Path, files: Dict[str, Tuple[bytes, int]]) -> None:
    """Replace files (or symlinks) inside an ext4 image, without mounting it: {path: (content, mode)}."""
    staging = fs.parent / (fs.name + ".files")
    staging.mkdir(exist_ok=True)
    commands = []
    for i, (path, (content, mode)) in enumerate(sorted(files.items())):
        local = staging / str(i)
        local.write_bytes(content)
        commands += [f"rm {path}", f"write {local} {path}", f"sif {path} mode 0{0o100000 | mode:o}"]
    script = staging / "commands"
    script.write_text("\n".join(commands) + "\n")
    # debugfs reports a failed command on stderr and still exits 0 ("rm" of a path that is not
    # there is one such), so the result is checked instead.
    run(["debugfs", "-w", "-f", str(script), str(fs)], timeout=120)
    for path, (content, _) in files.items():
        got = run(["debugfs", "-R", f"cat {path}", str(fs)], timeout=60, text=False).stdout
        if got != content:
            raise BenchError(f"debugfs could not write {path} into {fs}")
    shutil.rmtree(staging)


class VmArtifacts(LocalArtifacts):
    """LocalArtifacts, plus rootfs-image artifacts of the VM image's own rootfs."""

    def __init__(self, workdir: Path, *, rootfs: Path, **kwargs):
        super().__init__(workdir, **kwargs)
        self.rootfs = Path(rootfs)

    def _rootfs_fs(self, name: str, extra: Optional[Dict[str, Tuple[bytes, int]]] = None) -> Path:
        fs = Path(self.workdir) / f"{name}.ext4"
        run(["cp", "--sparse=always", str(self.rootfs), str(fs)], timeout=300)
        files = {"/etc/mender/artifact_info": (f"artifact_name={name}\n".encode(), 0o644)}
        files.update(extra or {})
        debugfs_write(fs, files)
        return fs

    def _write_rootfs_artifact(self, out: Path, fs: Path, name: str, provides: Dict[str, str],
                               extra_args: Sequence[str] = ()) -> str:
        argv = ["mender-artifact", "write", "rootfs-image", "-f", str(fs), "-n", name,
                "-t", self.device_type, "-o", str(out), "--no-progress"]
        for key, value in sorted(provides.items()):
            argv += ["-p", f"{key}:{value}"]
        argv += list(extra_args)
        run(argv, timeout=900)
        fs.unlink()
        return str(out)

    def rootfs_image(self, name: str, provides: Dict[str, str]) -> str:
        out = Path(self.workdir) / f"{name}.rootfs.mender"
        key = ("rootfs", str(out), tuple(sorted(provides.items())))
        if key not in self._made:
            self._made[key] = self._write_rootfs_artifact(out, self._rootfs_fs(name), name, provides)
        return self._made[key]

    def unbootable_rootfs_image(self, name: str, provides: Dict[str, str]) -> str:
        """The same rootfs with an init that exits: the kernel panics on every boot of it."""
        out = Path(self.workdir) / f"{name}.unbootable.rootfs.mender"
        # /usr/sbin/init: Debian 12 has merged /usr, /sbin is a symlink (which debugfs does not follow).
        fs = self._rootfs_fs(name, {"/usr/sbin/init": (BROKEN_INIT.encode(), 0o755)})
        return self._write_rootfs_artifact(out, fs, name, provides)

    def failing_check_rootfs_image(self, name: str, provides: Dict[str, str], script: Path) -> str:
        """A bootable rootfs whose artifact carries a state script that fails after the reboot."""
        out = Path(self.workdir) / f"{name}.failing-check.rootfs.mender"
        return self._write_rootfs_artifact(out, self._rootfs_fs(name), name, provides,
                                           extra_args=["-s", str(script)])


def boot_copy(image, workdir: Path, **kwargs):
    """A VmDevice (not yet powered on) on fresh copies of the image's disk and boot environment."""
    from vmdevice.launcher import VmDevice

    workdir.mkdir(parents=True, exist_ok=True)
    disk, bootenv = workdir / "disk.raw", workdir / "bootenv.raw"
    run(["cp", "--sparse=always", str(image.disk), str(disk)], timeout=600)
    shutil.copyfile(image.dir / "bootenv.raw", bootenv)
    return VmDevice(disk, bootenv, workdir, ssh_key=image.key, **kwargs)


def vm_profile(description: str = "Debian 12 VM under QEMU (TCG) over ssh, real A/B rootfs updates") -> Profile:
    artifact_name, rootfs_provides = image_settings()
    return Profile(description=description, artifact_name=artifact_name, rootfs_provides=rootfs_provides,
                   docker_root="/data/docker", docker="docker", stop_client_service=True, client="mender",
                   os_update=OS_UPDATE_ROOTFS)


def vm_session(device, image, workdir: Path, *, dockerd, app_generator: Path, docker_generator: Path,
               say: Callable[[str], None] = lambda _: None) -> Session:
    """A scenario session on the booted VM `device` made from `image`; the caller closes it."""
    artifacts = VmArtifacts(workdir, rootfs=image.rootfs, app_generator=app_generator,
                            docker_generator=docker_generator, device_type="qemux86-64", dockerd=dockerd)
    session = Session(VmTarget(device), vm_profile(), artifacts, say=say)
    session.start()
    return session


__all__ = ["VmArtifacts", "VmTarget", "boot_copy", "debugfs_write", "vm_profile", "vm_session"]
