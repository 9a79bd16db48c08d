"""A bootable Debian 12 (bookworm) Mender device disk for QEMU (x86_64), built from scratch and cached.

Usage (from tests/):

    python3 -m vmdevice.image build [--binaries DIR] [--cache DIR]
    python3 -m vmdevice.image check [--binaries DIR] [--cache DIR]   # build (cached), boot, verify over ssh

Two cache levels under the cache dir (env VMDEVICE_CACHE, default /var/tmp/meta-mender-composable/vm):

* ``base-<key>/rootfs``: debootstrap (minbase) + packages + shrinking + generic configuration
  (overlay, sshd, networkd, mender.conf, ...). Keyed by the suite, the package list, BASE_VERSION,
  the base stage's source code and the overlay tree.
* ``disk-<key>/``: disk.raw, rootfs.ext4, id_ed25519(.pub), manifest.json. Keyed by the base key,
  the layer's files and binaries installed into the image, the kas provides and FINAL_VERSION.

Both are built in a ``.work-*`` directory and renamed into place, so an interrupted build never leaves a
half entry. Debian .debs are kept in ``debs/`` (debootstrap --cache-dir, apt archives).

No loop mounts: filesystems are made with ``mkfs.ext4 -d`` and put into the GPT disk file with dd.
"""

from __future__ import annotations

import argparse
import hashlib
import inspect
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, List, Mapping, Optional, Sequence

HERE = Path(__file__).resolve().parent
REPO_ROOT = HERE.parents[1]
OVERLAY = HERE / "rootfs-overlay"
DEFAULT_CACHE = Path("/var/tmp/meta-mender-composable/vm")

SUITE = "bookworm"
MIRROR = "http://deb.debian.org/debian"
# Bump to force a new base tree (the base stage's source is hashed as well).
BASE_VERSION = "2"
# Bump to force new disks from the same base.
FINAL_VERSION = "1"

# Installed by one `chroot apt-get install` after a minbase debootstrap (debootstrap's own resolver
# does not handle the alternatives docker.io and the kernel pull in).
PACKAGES = sorted([
    # apparmor: Debian's kernel enables AppArmor, and dockerd refuses to run containers without
    # apparmor_parser to load its docker-default profile.
    "systemd-sysv", "dbus", "apparmor", "udev", "linux-image-amd64", "initramfs-tools", "openssh-server",
    "docker.io",
    "mender-client", "iproute2", "kmod", "e2fsprogs", "procps", "util-linux",
])

HOSTNAME = "qemux86-64"
DEVICE_TYPE = "qemux86-64"
MENDER_CONF = {
    "RootfsPartA": "/dev/vda2",
    "RootfsPartB": "/dev/vda3",
    "InventoryPollIntervalSeconds": 28800,
    "UpdatePollIntervalSeconds": 1800,
    "RetryPollIntervalSeconds": 300,
}

MiB = 1024 * 1024
SECTOR = 512
BOOT_PART_BYTES = 16 * MiB
DATA_PART_MIN_BYTES = 2048 * MiB
ALIGN = 1 * MiB

# The layer's files, installed where the recipes put them (relative to the repo / binaries dir).
LAYER_FILES = {  # repo path -> image path
    "recipes-containers/docker/files/daemon.json": "/etc/docker/daemon.json",
    "recipes-containers/docker-update-module/files/mender-docker-recover.service":
        "/lib/systemd/system/mender-docker-recover.service",
    "recipes-mender/persistent-app/files/persistent-app-recover.service":
        "/lib/systemd/system/persistent-app-recover.service",
}
# Enabled as the recipes' SYSTEMD_SERVICE are (systemd.bbclass: `systemctl enable` at image build).
UNITS = ("mender-docker-recover.service", "persistent-app-recover.service")
BINARIES = {  # cargo binary -> image path (docker-update-module_0.1.0.bb, persistent-app-update-module_0.1.0.bb)
    "mender-docker-module": "/usr/share/mender/modules/v3/docker",
    "mender-inventory-docker": "/usr/share/mender/inventory/mender-inventory-docker",
    "persistent-app": "/usr/share/mender/modules/v3/persistent-app",
}

Log = Callable[[str], None]


class ImageError(Exception):
    """One line: what failed and what to do."""


@dataclass
class Partition:
    number: int
    name: str
    start: int  # bytes
    size: int  # bytes

    def as_dict(self) -> dict:
        return {"number": self.number, "name": self.name, "start": self.start, "size": self.size,
                "device": f"/dev/vda{self.number}"}


@dataclass
class Image:
    dir: Path
    disk: Path
    rootfs: Path
    key: Path
    manifest: dict
    partitions: List[Partition] = field(default_factory=list)


# -- small helpers -----------------------------------------------------------------------------------


def _run(argv: Sequence[str], *, log: Optional[Log] = None, timeout: float = 3600, cwd=None,
         env: Optional[Mapping[str, str]] = None, what: Optional[str] = None) -> str:
    full_env = {**os.environ, "LC_ALL": "C", **(env or {})}
    try:
        proc = subprocess.run(list(map(str, argv)), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              timeout=timeout, cwd=cwd, env=full_env, stdin=subprocess.DEVNULL)
    except FileNotFoundError:
        raise ImageError(f"{argv[0]} not found: apt-get install -y --no-install-recommends "
                         "debootstrap e2fsprogs fdisk qemu-system-x86") from None
    except subprocess.TimeoutExpired:
        raise ImageError(f"{what or argv[0]} timed out after {timeout:.0f} s") from None
    if proc.returncode != 0:
        fd, log_path = tempfile.mkstemp(prefix="vmdevice-error-", suffix=".log")
        with os.fdopen(fd, "w") as f:
            f.write(f"$ {' '.join(map(str, argv))}\n{proc.stdout}")
        last = (proc.stdout.strip().splitlines() or ["(no output)"])[-1][:200]
        raise ImageError(f"{what or ' '.join(map(str, argv[:3]))} failed (exit {proc.returncode}): {last} "
                         f"-- full output in {log_path}")
    return proc.stdout


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def tree_hash(root: Path) -> str:
    """sha256 over names, modes, symlink targets and contents of a tree (empty tree: stable value)."""
    h = hashlib.sha256()
    if root.exists():
        for path in sorted(root.rglob("*")):
            rel = path.relative_to(root).as_posix()
            if path.is_symlink():
                h.update(f"L {rel} {os.readlink(path)}\n".encode())
            elif path.is_dir():
                h.update(f"D {rel}\n".encode())
            else:
                h.update(f"F {rel} {path.stat().st_mode & 0o777:o} {_sha256_file(path)}\n".encode())
    return h.hexdigest()


def _round_up(n: int, unit: int) -> int:
    return (n + unit - 1) // unit * unit


def _du_bytes(path: Path) -> int:
    out = subprocess.run(["du", "-s", "-B1", "-x", str(path)], stdout=subprocess.PIPE, text=True, check=True)
    return int(out.stdout.split()[0])


def _count_inodes(path: Path) -> int:
    return sum(1 + len(dirs) + len(files) for _, dirs, files in os.walk(path))


# -- inputs and keys -----------------------------------------------------------------------------------


def kas_settings(repo_root: Path) -> tuple:
    """(artifact_name, rootfs provides) of kas/qemux86-64.yml, parsed by the scenarios' image_settings()."""
    from scenarios.three_domains import image_settings
    return image_settings(Path(repo_root) / "kas" / "qemux86-64.yml")


def base_inputs(overlay: Path = OVERLAY) -> dict:
    source = "".join(inspect.getsource(f) for f in _BASE_STAGE)
    return {
        "suite": SUITE,
        "mirror": MIRROR,
        "packages": PACKAGES,
        "base_version": BASE_VERSION,
        "base_code_sha256": hashlib.sha256(source.encode()).hexdigest(),
        "overlay_sha256": tree_hash(overlay),
    }


def final_inputs(repo_root: Path, binaries_dir: Path, base_key: str) -> dict:
    repo_root, binaries_dir = Path(repo_root), Path(binaries_dir)
    files = {}
    for rel in LAYER_FILES:
        p = repo_root / rel
        if not p.is_file():
            raise ImageError(f"layer file {p} is missing: is {repo_root} a checkout of meta-mender-composable?")
        files[rel] = _sha256_file(p)
    binaries = {}
    for name in BINARIES:
        p = binaries_dir / name
        if not p.is_file():
            raise ImageError(f"binary {p} is missing: build it with `cd rust && cargo build --workspace --release "
                             f"--locked` or pass the directory holding it (--binaries)")
        binaries[name] = _sha256_file(p)
    artifact_name, provides = kas_settings(repo_root)
    source = "".join(inspect.getsource(f) for f in _FINAL_STAGE)
    return {
        "base_key": base_key,
        "final_version": FINAL_VERSION,
        "final_code_sha256": hashlib.sha256(source.encode()).hexdigest(),
        "layer_files": files,
        "binaries": binaries,
        "artifact_name": artifact_name,
        "provides": provides,
    }


def key_of(inputs: Mapping) -> str:
    return hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()[:16]


# -- partition table -------------------------------------------------------------------------------------


def partition_table(rootfs_image_bytes: int, data_image_bytes: int) -> tuple:
    """GPT layout like meta-mender's: boot (placeholder), rootfs A, rootfs B, data.

    Rootfs partitions get the rootfs image + ~20 % (so a same-size rootfs-image update fits), all
    aligned to 1 MiB. Returns (partitions, total disk bytes incl. the backup GPT).
    """
    rootfs_part = _round_up(int(rootfs_image_bytes * 1.2), ALIGN)
    data_part = _round_up(max(data_image_bytes, DATA_PART_MIN_BYTES), ALIGN)
    parts = []
    start = ALIGN
    for number, name, size in ((1, "boot", BOOT_PART_BYTES), (2, "primary", rootfs_part),
                               (3, "secondary", rootfs_part), (4, "data", data_part)):
        parts.append(Partition(number, name, start, size))
        start += size
    total = start + ALIGN  # room for the backup GPT
    return parts, total


def sfdisk_script(parts: Sequence[Partition]) -> str:
    linux = "0FC63DAF-8483-4772-8E79-3D69D8477DE4"
    lines = ["label: gpt", "unit: sectors", ""]
    for p in parts:
        lines.append(f"start={p.start // SECTOR}, size={p.size // SECTOR}, type={linux}, name={p.name}")
    return "\n".join(lines) + "\n"


# -- base stage --------------------------------------------------------------------------------------------


class _Chroot:
    """/proc, /sys, a private /dev and /dev/pts in the tree while packages install; undone on exit.

    /dev is a small tmpfs with the usual nodes, never a bind of the host's: removing a work dir whose
    unmount failed must not be able to delete the machine's device nodes.
    """

    DEVICES = {"null": (1, 3), "zero": (1, 5), "full": (1, 7), "random": (1, 8), "urandom": (1, 9),
               "tty": (5, 0)}

    def __init__(self, root: Path):
        self.root = root
        self.mounted: List[Path] = []

    def _mount(self, args: List[str], src: str, dst: str) -> Path:
        target = self.root / dst
        target.mkdir(parents=True, exist_ok=True)
        _run(["mount", *args, src, target], what=f"mount {dst} into the chroot")
        self.mounted.append(target)
        return target

    def __enter__(self):
        try:
            self._mount(["-t", "proc"], "proc", "proc")
            self._mount(["-t", "sysfs"], "sysfs", "sys")
            dev = self._mount(["-t", "tmpfs", "-o", "mode=0755,size=16m"], "vmdevice-dev", "dev")
            for name, (major, minor) in self.DEVICES.items():
                os.mknod(dev / name, 0o666 | 0o020000, os.makedev(major, minor))
            self._mount(["-t", "devpts", "-o", "newinstance,ptmxmode=0666"], "devpts", "dev/pts")
            (dev / "ptmx").symlink_to("pts/ptmx")
            (dev / "shm").mkdir()
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc):
        for target in reversed(self.mounted):
            subprocess.run(["umount", "-l", str(target)], check=False)
        self.mounted.clear()


def _unmount_under(path: Path) -> None:
    """Lazily unmount whatever a killed build left mounted under `path` (deepest first)."""
    prefix = str(Path(path).resolve()) + "/"
    with open("/proc/self/mounts") as f:
        targets = [line.split()[1].replace("\\040", " ") for line in f]
    for target in sorted((t for t in targets if t.startswith(prefix)), key=len, reverse=True):
        subprocess.run(["umount", "-l", target], check=False)


def _remove_tree(path: Path) -> None:
    """rm -rf that first unmounts anything below `path` and refuses to cross a mount it could not undo."""
    if not path.exists():
        return
    _unmount_under(path)
    prefix = str(Path(path).resolve()) + "/"
    with open("/proc/self/mounts") as f:
        if any(line.split()[1].startswith(prefix) for line in f):
            raise ImageError(f"{path} still has mounts below it; unmount them (umount -l) and remove it by hand")
    for _ in range(3):  # processes of a killed build (dpkg in the chroot) may still be writing into it
        shutil.rmtree(path, ignore_errors=True)
        if not path.exists():
            return
        time.sleep(1)
    # Still there: a later build removes it (_remove_stale_work); it is never taken for a cache entry.


def _chroot(root: Path, script: str, log: Log, what: str, timeout: float = 3600) -> str:
    env = {"DEBIAN_FRONTEND": "noninteractive", "PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL": "C",
           "LANG": "C"}
    return _run(["chroot", root, "/bin/sh", "-ec", script], env=env, what=what, timeout=timeout)


def _debootstrap(rootfs: Path, debs: Path, log: Log) -> None:
    debs.mkdir(parents=True, exist_ok=True)
    _run(["debootstrap", "--variant=minbase", f"--cache-dir={debs}", SUITE, rootfs, MIRROR],
         what="debootstrap", timeout=3600)


def _install_packages(rootfs: Path, debs: Path, log: Log) -> None:
    policy = rootfs / "usr/sbin/policy-rc.d"
    policy.write_text("#!/bin/sh\nexit 101\n")
    policy.chmod(0o755)
    (rootfs / "etc/apt/apt.conf.d/90vmdevice").write_text(
        'APT::Install-Recommends "false";\nAPT::Install-Suggests "false";\n')
    archives = rootfs / "var/cache/apt/archives"
    archives.mkdir(parents=True, exist_ok=True)
    for deb in debs.glob("*.deb"):  # reuse what earlier builds downloaded
        target = archives / deb.name
        if not target.exists():
            os.link(deb, target)
    # Docker's and the kernel's postinsts must not try to start anything, nor build a huge initrd
    # twice: the initrd is rebuilt once after the modules are pruned.
    with _Chroot(rootfs):
        _chroot(rootfs, "apt-get update -q", log, "apt-get update in the chroot", timeout=1800)
        _chroot(rootfs, "apt-get install -y -q " + " ".join(PACKAGES), log,
                "apt-get install in the chroot", timeout=3600)
    for deb in archives.glob("*.deb"):
        target = debs / deb.name
        if not target.exists():
            shutil.copy2(deb, target)
    policy.unlink()


KEEP_DRIVERS = {"block", "net", "virtio", "char", "watchdog", "scsi", "md", "virt", "firmware", "input",
                "vhost", "acpi", "nvdimm"}
DROP_NET_DRIVERS = {"wireless", "ethernet", "usb", "wwan", "can", "ieee802154", "hamradio", "arcnet", "fddi",
                    "plip", "wan", "dsa", "thunderbolt", "hyperv", "fjes", "slip", "appletalk"}
DROP_NET_PROTOCOLS = {"wireless", "mac80211", "bluetooth", "nfc", "ieee802154", "mac802154", "6lowpan", "can",
                      "atm"}
KEEP_SCSI = {"virtio_scsi.ko", "sd_mod.ko", "scsi_mod.ko", "scsi_common.ko", "sg.ko"}
KEEP_CHAR = {"hw_random", "virtio_console.ko", "tpm"}
KEEP_WATCHDOG = {"i6300esb.ko"}


def _prune_modules(rootfs: Path, log: Log) -> str:
    versions = sorted(p.name for p in (rootfs / "lib/modules").iterdir())
    if len(versions) != 1:
        raise ImageError(f"expected one kernel in the rootfs, found {versions}: bump BASE_VERSION and rebuild")
    kver = versions[0]
    kernel = rootfs / "lib/modules" / kver / "kernel"
    for entry in kernel.iterdir():
        if entry.name not in {"fs", "net", "lib", "crypto", "arch", "drivers", "mm", "block", "virt"}:
            shutil.rmtree(entry)
    drivers = kernel / "drivers"
    for entry in drivers.iterdir():
        if entry.name not in KEEP_DRIVERS:
            shutil.rmtree(entry) if entry.is_dir() else entry.unlink()

    def keep_only(directory: Path, keep: set) -> None:
        for entry in directory.iterdir():
            if entry.name.replace(".ko.xz", ".ko").replace(".ko.zst", ".ko") not in keep:
                shutil.rmtree(entry) if entry.is_dir() else entry.unlink()

    for sub, keep in ((drivers / "scsi", KEEP_SCSI), (drivers / "char", KEEP_CHAR),
                      (drivers / "watchdog", KEEP_WATCHDOG)):
        if sub.is_dir():
            keep_only(sub, keep)
    for name in DROP_NET_DRIVERS:
        if (drivers / "net" / name).exists():
            shutil.rmtree(drivers / "net" / name)
    for name in DROP_NET_PROTOCOLS:  # radios and buses a virtio guest has none of (cfg80211 even loads)
        if (kernel / "net" / name).exists():
            shutil.rmtree(kernel / "net" / name)
    _chroot(rootfs, f"depmod -a {kver}", log, "depmod in the chroot")
    return kver


def _shrink(rootfs: Path, log: Log) -> None:
    for rel in ("usr/share/doc", "usr/share/man", "usr/share/info", "usr/share/lintian", "usr/share/linda",
                "var/cache/apt", "var/lib/apt/lists", "var/cache/debconf/templates.dat-old",
                "var/cache/man", "var/log/apt", "var/log/dpkg.log", "var/log/alternatives.log",
                "var/log/bootstrap.log"):
        p = rootfs / rel
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p)
        elif p.exists() or p.is_symlink():
            p.unlink()
    # Tools docker.io and containerd ship that the engine never runs (dockerd 20.10 starts
    # containers through containerd-shim-runc-v2): 70 MB less to write at every A/B update.
    for rel in ("usr/bin/ctr", "usr/bin/dnet", "usr/sbin/ovrouter", "usr/bin/containerd-shim",
                "usr/bin/containerd-shim-runc-v1"):
        p = rootfs / rel
        if p.exists():
            p.unlink()
    (rootfs / "var/lib/apt/lists/partial").mkdir(parents=True, exist_ok=True)
    (rootfs / "var/cache/apt/archives/partial").mkdir(parents=True, exist_ok=True)
    locales = rootfs / "usr/share/locale"
    if locales.is_dir():
        for entry in locales.iterdir():
            if entry.name not in {"C", "C.UTF-8", "locale.alias"}:
                shutil.rmtree(entry) if entry.is_dir() else entry.unlink()
    # What dpkg must not bring back on a later apt-get install in the device (docs, man pages, locales).
    (rootfs / "etc/dpkg/dpkg.cfg.d/90vmdevice-nodoc").write_text(
        "path-exclude=/usr/share/doc/*\npath-exclude=/usr/share/man/*\npath-exclude=/usr/share/info/*\n"
        "path-exclude=/usr/share/locale/*\npath-include=/usr/share/locale/locale.alias\n")


def _configure_base(rootfs: Path, overlay: Path, log: Log) -> None:
    (rootfs / "etc/hostname").write_text(HOSTNAME + "\n")
    (rootfs / "etc/hosts").write_text(f"127.0.0.1\tlocalhost\n127.0.1.1\t{HOSTNAME}\n::1\tlocalhost ip6-localhost\n")
    (rootfs / "etc/systemd/network").mkdir(parents=True, exist_ok=True)
    (rootfs / "etc/systemd/network/20-wired.network").write_text(
        "[Match]\nName=en* eth*\n\n[Network]\nDHCP=yes\n\n[DHCPv4]\nUseDomains=yes\n")
    (rootfs / "etc/fstab").write_text(
        "# Root comes from the kernel command line (root=/dev/vda2 or /dev/vda3).\n"
        "proc /proc proc defaults 0 0\n"
        "/dev/vda4 /data ext4 defaults,noatime 0 2\n")
    (rootfs / "data").mkdir(exist_ok=True)
    sshd = rootfs / "etc/ssh/sshd_config.d"
    sshd.mkdir(parents=True, exist_ok=True)
    (sshd / "vmdevice.conf").write_text(
        "PermitRootLogin prohibit-password\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n"
        "UseDNS no\n")
    # Mender: the datastore lives on /data.
    var_lib_mender = rootfs / "var/lib/mender"
    if var_lib_mender.is_dir() and not var_lib_mender.is_symlink():
        shutil.rmtree(var_lib_mender)
    elif var_lib_mender.is_symlink():
        var_lib_mender.unlink()
    var_lib_mender.symlink_to("/data/mender")
    (rootfs / "etc/mender").mkdir(parents=True, exist_ok=True)
    (rootfs / "etc/mender/mender.conf").write_text(json.dumps(MENDER_CONF, indent=2) + "\n")
    # Debian's mender-client ships an old shell docker module where the layer's binary goes. Diverted
    # out of modules/v3: the default name (docker.distrib) would sit there as a module of its own.
    _chroot(rootfs, "mkdir -p /usr/share/mender/modules-diverted && dpkg-divert --local --rename "
            "--divert /usr/share/mender/modules-diverted/docker --add /usr/share/mender/modules/v3/docker",
            log, "dpkg-divert of the mender-client docker module")
    # Serial console without delays; journald kept in memory-friendly size.
    (rootfs / "etc/systemd/journald.conf.d").mkdir(parents=True, exist_ok=True)
    (rootfs / "etc/systemd/journald.conf.d/vmdevice.conf").write_text("[Journal]\nSystemMaxUse=32M\n")
    if overlay.is_dir():
        _run(["cp", "-a", "--no-preserve=ownership", f"{overlay}/.", rootfs], what="copy the rootfs overlay")
    script = """
ssh-keygen -A
systemctl enable systemd-networkd.service ssh.service docker.service containerd.service serial-getty@ttyS0.service
systemctl disable mender-client.service || true
systemctl mask systemd-networkd-wait-online.service
systemctl mask apt-daily.timer apt-daily-upgrade.timer e2scrub_all.timer e2scrub_reap.service || true
passwd -d root
: > /etc/machine-id
"""
    _chroot(rootfs, script, log, "service configuration in the chroot")
    # Resolver: networkd's DHCP DNS is not needed by the tests; leave a static one for docker.
    resolv = rootfs / "etc/resolv.conf"
    if resolv.is_symlink() or resolv.exists():
        resolv.unlink()
    resolv.write_text("nameserver 10.0.2.3\n")


def _build_base(cache: Path, key: str, overlay: Path, log: Log) -> Path:
    final = cache / f"base-{key}"
    if (final / "rootfs").is_dir():
        return final
    work = cache / f".work-base-{key}-{os.getpid()}"
    _remove_tree(work)
    work.mkdir(parents=True)
    rootfs = work / "rootfs"
    debs = cache / "debs"
    timings = {}
    try:
        t = time.monotonic()
        log(f"vmdevice: debootstrap {SUITE} (minbase) into {rootfs}")
        _debootstrap(rootfs, debs, log)
        timings["debootstrap"] = round(time.monotonic() - t, 1)
        t = time.monotonic()
        log(f"vmdevice: apt-get install {' '.join(PACKAGES)}")
        _install_packages(rootfs, debs, log)
        timings["apt_install"] = round(time.monotonic() - t, 1)
        before = _du_bytes(rootfs)
        t = time.monotonic()
        _configure_base(rootfs, overlay, log)
        log("vmdevice: shrinking (docs, locales, apt caches, kernel modules)")
        kver = _prune_modules(rootfs, log)
        _shrink(rootfs, log)
        _chroot(rootfs, f"update-initramfs -u -k {kver}", log, "update-initramfs in the chroot")
        timings["shrink_configure"] = round(time.monotonic() - t, 1)
        after = _du_bytes(rootfs)
        info = {"kernel": kver, "rootfs_bytes_before_shrink": before, "rootfs_bytes_after_shrink": after,
                "timings": timings, "inputs": base_inputs(overlay)}
        (work / "base.json").write_text(json.dumps(info, indent=2) + "\n")
        log(f"vmdevice: base rootfs {before / MiB:.0f} MiB -> {after / MiB:.0f} MiB after shrinking")
        if (final / "rootfs").is_dir():  # a concurrent build of the same key won: use its tree
            _remove_tree(work)
        else:
            os.rename(work, final)
    except BaseException:
        _remove_tree(work)
        raise
    return final


_BASE_STAGE = [_Chroot, _chroot, _debootstrap, _install_packages, _prune_modules, _shrink, _configure_base,
               _build_base]


# -- final stage ------------------------------------------------------------------------------------------


def _install_layer(rootfs: Path, repo_root: Path, binaries_dir: Path) -> None:
    for rel, dest in LAYER_FILES.items():
        target = rootfs / dest.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(repo_root / rel, target)
        target.chmod(0o644)
    for name, dest in BINARIES.items():
        target = rootfs / dest.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(binaries_dir / name, target)
        target.chmod(0o755)
    wants = rootfs / "etc/systemd/system/multi-user.target.wants"
    wants.mkdir(parents=True, exist_ok=True)
    for unit in UNITS:
        link = wants / unit
        if link.is_symlink():
            link.unlink()
        link.symlink_to(f"/lib/systemd/system/{unit}")


def _seed_data(work: Path, artifact_name: str, provides: Mapping[str, str], log: Log) -> Path:
    """The /data tree: mender/ (device_type, the client's database with the seeded provides), docker/."""
    import bench
    problems = bench.missing_components()
    if problems:
        raise ImageError("seeding provides needs the host's mender client and bench: " + "; ".join(problems)
                         + " (run scripts/setup)")
    sandbox_dir = work / "device"
    device = bench.DeviceSandbox(sandbox_dir, artifact_name=artifact_name, device_type=DEVICE_TYPE,
                                 mender_conf=MENDER_CONF)
    try:
        device.seed_provides(provides, artifact_name=artifact_name, clears=["rootfs-image.*"])
        shown = device.provides()
    except bench.BenchError as e:
        raise ImageError(f"seeding provides with the host's mender client failed: {e}") from None
    finally:
        device.close()
    for leftover in device.modules.iterdir():  # the no-op module is not the image's
        leftover.unlink()
    expected = {"artifact_name": artifact_name, **provides}
    wrong = {k: (v, shown.get(k)) for k, v in expected.items() if shown.get(k) != v}
    if wrong:
        raise ImageError(f"seeded provides are wrong (expected, shown): {wrong}")
    data = device.data
    (data / "mender/device_type").write_text(f"device_type={DEVICE_TYPE}\n")
    (data / "docker").mkdir(exist_ok=True)
    (data / "docker").chmod(0o710)
    return data


def _mkfs(tree: Path, image: Path, size: int, label: str, inodes: Optional[int] = None) -> None:
    if image.exists():
        image.unlink()
    argv = ["mkfs.ext4", "-q", "-F", "-L", label, "-E", "root_owner=0:0", "-d", tree]
    if inodes:
        argv += ["-N", str(inodes)]
    _run([*argv, image, f"{size // 1024}k"], what=f"mkfs.ext4 -d for {label}")


def _assemble_disk(disk: Path, parts: Sequence[Partition], total: int, images: Mapping[int, Path]) -> None:
    if disk.exists():
        disk.unlink()
    with open(disk, "wb") as f:
        f.truncate(total)
    proc = subprocess.run(["sfdisk", "--quiet", "--no-reread", "--no-tell-kernel", str(disk)],
                          input=sfdisk_script(parts), text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    if proc.returncode != 0:
        raise ImageError(f"sfdisk on {disk} failed: {proc.stdout.strip()}")
    for p in parts:
        img = images.get(p.number)
        if img is None:
            continue
        if img.stat().st_size > p.size:
            raise ImageError(f"{img.name} ({img.stat().st_size} B) does not fit partition {p.number} ({p.size} B)")
        _run(["dd", f"if={img}", f"of={disk}", "bs=1M", f"seek={p.start // MiB}", "conv=notrunc,sparse",
              "status=none"], what=f"dd {img.name} into partition {p.number}")


def _write_bootenv(out: Path, log: Log) -> Path:
    """The boot environment's disk (/dev/vdb, etc/fw_env.config), booting rootfs A with no update pending."""
    from vmdevice import bootenv

    path = out / "bootenv.raw"
    bootenv.format_disk(path, {"mender_boot_part": "2", "mender_boot_part_hex": "2", "upgrade_available": "0",
                               "bootcount": "0"})
    return path


def _build_final(cache: Path, key: str, base: Path, inputs: dict, repo_root: Path, binaries_dir: Path,
                 log: Log) -> Path:
    final = cache / f"disk-{key}"
    work = cache / f".work-disk-{key}-{os.getpid()}"
    _remove_tree(work)
    work.mkdir(parents=True)
    timings = {}
    try:
        t = time.monotonic()
        rootfs = work / "rootfs"
        _run(["cp", "-a", "--reflink=auto", base / "rootfs", rootfs], what="copy of the base rootfs")
        timings["copy_base"] = round(time.monotonic() - t, 1)
        t = time.monotonic()
        _install_layer(rootfs, repo_root, binaries_dir)
        (rootfs / "etc/mender/artifact_info").write_text(f"artifact_name={inputs['artifact_name']}\n")
        _run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "vmdevice", "-f", work / "id_ed25519"],
             what="ssh-keygen for the client key")
        ssh_dir = rootfs / "root/.ssh"
        ssh_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        (ssh_dir / "authorized_keys").write_text((work / "id_ed25519.pub").read_text())
        (ssh_dir / "authorized_keys").chmod(0o600)
        timings["install_layer"] = round(time.monotonic() - t, 1)
        t = time.monotonic()
        data = _seed_data(work, inputs["artifact_name"], inputs["provides"], log)
        timings["seed_provides"] = round(time.monotonic() - t, 1)
        t = time.monotonic()
        content = _du_bytes(rootfs)
        # Every A/B update writes the whole filesystem image (and gunzips and hashes it on the
        # device first): room for the journal, the reserved blocks and ~60 MiB free, not more.
        rootfs_size = _round_up(int(content * 1.15) + 64 * MiB, MiB)
        _mkfs(rootfs, work / "rootfs.ext4", rootfs_size, "rootfs", inodes=int(_count_inodes(rootfs) * 1.5) + 4096)
        data_size = _round_up(max(DATA_PART_MIN_BYTES, int(_du_bytes(data) * 1.25)), MiB)
        _mkfs(data, work / "data.ext4", data_size, "data")
        parts, total = partition_table(rootfs_size, data_size)
        _assemble_disk(work / "disk.raw", parts, total,
                       {2: work / "rootfs.ext4", 3: work / "rootfs.ext4", 4: work / "data.ext4"})
        timings["filesystems_disk"] = round(time.monotonic() - t, 1)
        bootenv = _write_bootenv(work, log)
        base_info = json.loads((base / "base.json").read_text())
        kver = base_info["kernel"]
        manifest = {
            "key": key,
            "kernel": kver,
            "kernel_path": f"/boot/vmlinuz-{kver}",
            "initrd_path": f"/boot/initrd.img-{kver}",
            "artifact_name": inputs["artifact_name"],
            "provides": inputs["provides"],
            "device_type": DEVICE_TYPE,
            "partitions": [p.as_dict() for p in parts],
            "disk_bytes": total,
            "rootfs_image_bytes": rootfs_size,
            "rootfs_content_bytes": content,
            "rootfs_bytes_before_shrink": base_info["rootfs_bytes_before_shrink"],
            "rootfs_bytes_after_shrink": base_info["rootfs_bytes_after_shrink"],
            "data_image_bytes": data_size,
            "bootenv": bootenv.name if bootenv else None,
            "timings": {"base": base_info["timings"], "final": timings},
            "inputs": {"base": base_info["inputs"], "final": inputs},
        }
        (work / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
        shutil.rmtree(rootfs)
        _remove_tree(work / "device")
        (work / "data.ext4").unlink()
        if final.exists():  # a stale entry with the same key (e.g. from a killed rename): replace it
            shutil.rmtree(final)
        os.rename(work, final)
    except BaseException:
        _remove_tree(work)
        raise
    return final


_FINAL_STAGE = [_install_layer, _seed_data, _mkfs, _assemble_disk, _write_bootenv, _build_final,
                partition_table, sfdisk_script]


def _remove_stale_work(cache: Path) -> None:
    """Work dirs of builds that were killed (their pid is gone): never a cache entry, safe to drop."""
    for work in cache.glob(".work-*"):
        pid = work.name.rsplit("-", 1)[-1]
        if pid.isdigit() and not Path(f"/proc/{pid}").exists():
            _remove_tree(work)


def _load(final: Path) -> Image:
    manifest = json.loads((final / "manifest.json").read_text())
    parts = [Partition(p["number"], p["name"], p["start"], p["size"]) for p in manifest["partitions"]]
    return Image(dir=final, disk=final / "disk.raw", rootfs=final / "rootfs.ext4", key=final / "id_ed25519",
                 manifest=manifest, partitions=parts)


def build(repo_root=REPO_ROOT, binaries_dir=None, cache_dir=None, log: Log = print) -> Image:
    """Build (or reuse from the cache) the device disk; see the module docstring."""
    t0 = time.monotonic()
    repo_root = Path(repo_root).resolve()
    binaries_dir = Path(binaries_dir) if binaries_dir else repo_root / "target" / "release"
    cache = Path(cache_dir or os.environ.get("VMDEVICE_CACHE") or DEFAULT_CACHE)
    if os.geteuid() != 0:
        raise ImageError("building the device image needs root (debootstrap, chroot, mount namespaces)")
    for tool in ("debootstrap", "mkfs.ext4", "sfdisk", "chroot", "dd"):
        if shutil.which(tool) is None and not Path("/usr/sbin", tool).exists():
            raise ImageError(f"{tool} not found: apt-get install -y --no-install-recommends debootstrap "
                             "e2fsprogs fdisk qemu-system-x86")
    cache.mkdir(parents=True, exist_ok=True)
    _remove_stale_work(cache)
    overlay = repo_root / "tests" / "vmdevice" / "rootfs-overlay"
    bkey = key_of(base_inputs(overlay))
    inputs = final_inputs(repo_root, binaries_dir, bkey)
    fkey = key_of(inputs)
    final = cache / f"disk-{fkey}"
    if (final / "manifest.json").is_file():
        log(f"vmdevice: cached image {final}")
        return _load(final)
    base = _build_base(cache, bkey, overlay, log)
    final = _build_final(cache, fkey, base, inputs, repo_root, binaries_dir, log)
    image = _load(final)
    image.manifest["timings"]["total_this_build"] = round(time.monotonic() - t0, 1)
    (final / "manifest.json").write_text(json.dumps(image.manifest, indent=2) + "\n")
    log(f"vmdevice: built {final} in {time.monotonic() - t0:.0f} s")
    return image


# -- boot check -------------------------------------------------------------------------------------------


def _debugfs_cat(disk: Path, offset: int, path: str, dest: Path) -> None:
    with open(dest, "wb") as f:
        proc = subprocess.run(["debugfs", "-R", f"cat {path}", f"{disk}?offset={offset}"], stdout=f,
                              stderr=subprocess.PIPE)
    if proc.returncode != 0 or dest.stat().st_size == 0:
        raise ImageError(f"debugfs could not read {path} from {disk}: {proc.stderr.decode().strip()}")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


CHECK_SCRIPT = r"""
echo "state=$(systemctl is-system-running)"
systemctl --failed --no-legend --plain | sed 's/^/failed: /'
echo "data=$(findmnt -n -o SOURCE /data)"
echo "dockerroot=$(docker info --format '{{.DockerRootDir}}')"
docker network ls --format 'network={{.Name}}/{{.Driver}}'
mender --no-syslog show-provides | sed 's/^/provides: /'
echo "varlibmender=$(readlink /var/lib/mender)"
ls /usr/share/mender/modules/v3 | sed 's/^/module: /'
sha256sum /usr/share/mender/modules/v3/docker /usr/share/mender/modules/v3/persistent-app \
    /usr/share/mender/inventory/mender-inventory-docker | sed 's/^/sha256: /'
dpkg-divert --list | sed 's/^/divert: /'
echo "hostname=$(hostname)"
if command -v fw_printenv >/dev/null; then fw_printenv 2>&1 | sed 's/^/bootenv: /'; fi
for u in mender-client docker containerd ssh systemd-networkd systemd-networkd-wait-online \
    mender-docker-recover persistent-app-recover; do
    echo "enabled: $u $(systemctl is-enabled $u.service 2>&1)"
done
echo "boot: $(systemd-analyze time 2>&1 | head -1)"
echo "rootfs: $(findmnt -n -o SOURCE,SIZE,USED / 2>/dev/null || df -h / | tail -1)"
echo "ip=$(ip -4 -o addr show scope global | awk '{print $4}')"
"""


DOCKER_BRIDGE_SCRIPT = r"""
tar -C /tmp/bb -c bin | docker import - vmdevice-bb:1 >/dev/null
docker run --rm --network bridge vmdevice-bb:1 /bin/busybox sh -c \
  '/bin/busybox ip -4 -o addr show eth0 | /bin/busybox awk "{print \"container_ip=\" \$4}";
   /bin/busybox ping -c1 -W2 172.17.0.1 >/dev/null && echo bridge_ping=ok || echo bridge_ping=FAILED'
docker rmi -f vmdevice-bb:1 >/dev/null
"""


def boot_check(image: Image, scratch_dir: Path, log: Log = print, timeout: float = 600) -> dict:
    """Boot a copy of the disk in QEMU (TCG), wait for ssh and run CHECK_SCRIPT; QEMU is ended after."""
    scratch_dir.mkdir(parents=True, exist_ok=True)
    scratch = scratch_dir / "scratch.raw"
    _run(["cp", "--sparse=always", image.disk, scratch], what="copy of disk.raw")
    p2 = next(p for p in image.partitions if p.number == 2)
    kernel, initrd = scratch_dir / "vmlinuz", scratch_dir / "initrd.img"
    _debugfs_cat(scratch, p2.start, image.manifest["kernel_path"], kernel)
    _debugfs_cat(scratch, p2.start, image.manifest["initrd_path"], initrd)
    bootenv_drive: List[str] = []
    if (image.dir / "bootenv.raw").is_file():  # the boot environment's disk (/dev/vdb, fw_env.config)
        shutil.copyfile(image.dir / "bootenv.raw", scratch_dir / "bootenv.raw")
        bootenv_drive = ["-drive", f"file={scratch_dir / 'bootenv.raw'},format=raw,if=virtio"]
    port = _free_port()
    console = scratch_dir / "console.log"
    argv = ["qemu-system-x86_64", "-accel", "tcg,thread=multi", "-smp", "2", "-m", "1024", "-nographic",
            "-no-reboot", "-kernel", kernel, "-initrd", initrd,
            "-append", "root=/dev/vda2 rw console=ttyS0 panic=5",
            "-drive", f"file={scratch},format=raw,if=virtio",
            *bootenv_drive,
            "-netdev", f"user,id=n0,restrict=on,hostfwd=tcp:127.0.0.1:{port}-:22",
            "-device", "virtio-net-pci,netdev=n0"]
    ssh = ["ssh", "-i", str(image.key), "-p", str(port), "-o", "StrictHostKeyChecking=no",
           "-o", "UserKnownHostsFile=/dev/null", "-o", "BatchMode=yes", "-o", "ConnectTimeout=5",
           "-o", "LogLevel=ERROR", "root@127.0.0.1"]
    t0 = time.monotonic()
    with open(console, "wb") as out:
        qemu = subprocess.Popen(list(map(str, argv)), stdin=subprocess.DEVNULL, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)
    try:
        ready = None
        while time.monotonic() - t0 < timeout:
            if qemu.poll() is not None:
                raise ImageError(f"QEMU exited ({qemu.returncode}) before ssh came up; see {console}")
            r = subprocess.run([*ssh, "true"], stdin=subprocess.DEVNULL, capture_output=True, timeout=30)
            if r.returncode == 0:
                ready = time.monotonic() - t0
                break
            time.sleep(2)
        if ready is None:
            raise ImageError(f"no ssh on port {port} after {timeout:.0f} s; see {console}")
        log(f"vmdevice: ssh ready after {ready:.0f} s")
        # Let the boot settle (docker, networkd) before judging the system state.
        subprocess.run([*ssh, "systemctl is-system-running --wait"], stdin=subprocess.DEVNULL,
                       capture_output=True, timeout=300)
        settled = time.monotonic() - t0
        r = subprocess.run([*ssh, CHECK_SCRIPT], stdin=subprocess.DEVNULL, capture_output=True, text=True,
                           timeout=300)
        output = r.stdout + r.stderr
        busybox = Path("/bin/busybox")
        if busybox.is_file():
            # Bridge networking end to end: a container made from the host's static busybox (no registry
            # needed) gets a veth on docker0 and reaches the bridge's address.
            with open(busybox, "rb") as f:
                subprocess.run([*ssh, "mkdir -p /tmp/bb/bin && cat > /tmp/bb/bin/busybox && chmod 755 /tmp/bb/bin/busybox"],
                               stdin=f, capture_output=True, timeout=120)
            r = subprocess.run([*ssh, DOCKER_BRIDGE_SCRIPT], stdin=subprocess.DEVNULL, capture_output=True,
                               text=True, timeout=300)
            output += r.stdout + r.stderr
        return {"ssh_ready_seconds": round(ready, 1), "settled_seconds": round(settled, 1), "port": port,
                "output": output, "console": str(console)}
    finally:
        try:
            os.killpg(qemu.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            qemu.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(qemu.pid, signal.SIGKILL)
            qemu.wait()


# -- CLI ----------------------------------------------------------------------------------------------------


def main(argv: Optional[Sequence[str]] = None) -> int:
    ap = argparse.ArgumentParser(prog="vmdevice.image", description=__doc__.split("\n\n")[0])
    ap.add_argument("command", choices=["build", "check", "key"],
                    help="build: make (or reuse) the disk; check: build, boot it in QEMU and verify over ssh; "
                         "key: print the cache key")
    ap.add_argument("--repo", default=str(REPO_ROOT), help="the meta-mender-composable checkout")
    ap.add_argument("--binaries", default=None, help="cargo release dir (default <repo>/target/release)")
    ap.add_argument("--cache", default=None, help="cache dir (default $VMDEVICE_CACHE or %s)" % DEFAULT_CACHE)
    args = ap.parse_args(argv)

    def terminate(*_):  # so that a killed build unmounts and removes its work dir
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, terminate)
    try:
        if args.command == "key":
            repo = Path(args.repo)
            bkey = key_of(base_inputs(repo / "tests/vmdevice/rootfs-overlay"))
            binaries = Path(args.binaries) if args.binaries else repo / "target/release"
            print(f"base-{bkey} disk-{key_of(final_inputs(repo, binaries, bkey))}")
            return 0
        image = build(args.repo, args.binaries, args.cache)
        print(f"disk: {image.disk}\nrootfs: {image.rootfs}\nkey: {image.key}")
        if args.command == "check":
            result = boot_check(image, image.dir.parent / f".check-{os.getpid()}")
            print(json.dumps({k: v for k, v in result.items() if k != "output"}, indent=2))
            print(result["output"])
            shutil.rmtree(image.dir.parent / f".check-{os.getpid()}", ignore_errors=True)
        return 0
    except ImageError as e:
        print(f"vmdevice.image: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("vmdevice.image: interrupted; nothing half-built was left in the cache", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.path.insert(0, str(HERE.parent))
    sys.exit(main())
