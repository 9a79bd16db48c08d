"""A tiny stand-in device disk to test the launcher with (the real image comes from image.py).

GPT: p1 "boot" (unused), p2 rootfs A, p3 rootfs B, p4 data; p2 and p3 are ext4 with /boot/vmlinuz-<ver>
and /boot/initrd.img-<ver> from Debian 12's kernel package, and /name ("A" or "B"). The initramfs is
busybox-static plus the modules for virtio disks, virtio-net and ext4, the guest tools from
rootfs-overlay, and an /init that prints the kernel command line, mounts root= read-write and does what the command line's
`tiny.p<N>=ACTION` (else the root filesystem's /action file, else "stay") says:

  stay      start sshd (dropbear), print "TINY: ready", then wait forever (until QEMU is killed)
  poweroff  poweroff -f           reboot   reboot -f          panic   exit init (kernel panic)
  hang      wait forever without ssh or saying ready (for the watchdog)
  commit    fw_setenv upgrade_available 0 (the guest's own tools on /dev/vdb), then as stay
  once-reboot  the first boot of this partition reboots, later ones stay (a counter in /count on root)

Once ready, root can log in over ssh (dropbear, key workdir/tiny-key; sftp for scp; a systemctl that can
reboot and poweroff). Markers on the serial console: "TINY: cmdline: ...", "TINY: root=/dev/vdaN name=X action=Y boot#=K",
"TINY: ready".

build(workdir) needs: dpkg-deb, busybox (static), ldd, ssh-keygen, the packages SSH_PACKAGES (apt-get download), sfdisk, mkfs.ext4 and the kernel package
(downloaded with `apt-get download` into workdir when not there). No root, no loop devices.
"""

from __future__ import annotations

import glob
import gzip
import hashlib
import json
import os
import re
import shutil
import stat
import subprocess
from pathlib import Path

KERNEL_PACKAGE = "linux-image-6.1.0-57-amd64"
MODULES = ["virtio_pci", "virtio_blk", "ext4", "crc32c_generic", "virtio_net"]
SSH_PACKAGES = ["dropbear-bin", "libtomcrypt1", "libtommath1", "openssh-sftp-server"]
SSH_BINARIES = {"usr/sbin/dropbear": "usr/sbin/dropbear", "usr/lib/openssh/sftp-server": "usr/lib/sftp-server"}
SYSTEMCTL = """#!/bin/sh
# the tiny guest's systemctl: reboot and poweroff only (a second later, so that ssh returns first)
case "$1" in
reboot) setsid sh -c 'sleep 1; sync; reboot -f' >/dev/null 2>&1 </dev/null & ;;
poweroff) setsid sh -c 'sleep 1; sync; poweroff -f' >/dev/null 2>&1 </dev/null & ;;
*) echo "tiny systemctl: $1 is not supported" >&2; exit 1 ;;
esac
"""
MiB = 1024 * 1024
LAYOUT = [("boot", 4), ("rootfs-a", 48), ("rootfs-b", 48), ("data", 4)]  # MiB

INIT = r"""#!/bin/sh
export PATH=/bin:/sbin:/usr/bin:/usr/sbin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
for m in $(cat /modules.order); do insmod /modules/$m.ko 2>/dev/null; done
echo "TINY: cmdline: $(cat /proc/cmdline)"
root=
for word in $(cat /proc/cmdline); do
    case "$word" in root=*) root=${word#root=} ;; esac
done
n=0
while [ ! -b "$root" ] && [ $n -lt 100 ]; do sleep 0.1; n=$((n + 1)); done
mkdir -p /sysroot
mount -t ext4 -o rw "$root" /sysroot || { echo "TINY: cannot mount $root"; exit 1; }
part=${root#/dev/vda}
action=
for word in $(cat /proc/cmdline); do
    case "$word" in tiny.p$part=*) action=${word#tiny.p$part=} ;; esac
done
[ -n "$action" ] || action=$(cat /sysroot/action 2>/dev/null)
[ -n "$action" ] || action=stay
count=$(( $(cat /sysroot/count 2>/dev/null || echo 0) + 1 ))
echo $count > /sysroot/count
sync
echo "TINY: root=$root name=$(cat /sysroot/name) action=$action boot#=$count"
stay() {
    if [ -x /usr/sbin/dropbear ]; then
        ip link set lo up
        ip link set eth0 up && ip addr add 10.0.2.15/24 dev eth0 && ip route add default via 10.0.2.2
        mkdir -p /etc/dropbear /run
        dropbear -R -E -p 22 -P /run/dropbear.pid || echo "TINY: dropbear failed"
    fi
    echo "TINY: ready"
    while true; do sleep 3600; done
}
case "$action" in
stay) stay ;;
hang) while true; do sleep 3600; done ;;
poweroff) umount /sysroot; poweroff -f ;;
reboot) umount /sysroot; reboot -f ;;
panic) echo "TINY: exiting init"; exit 1 ;;
commit)
    fw_setenv upgrade_available 0 && echo "TINY: committed: $(fw_printenv upgrade_available mender_boot_part | tr '\n' ' ')"
    stay ;;
once-reboot)
    if [ "$count" -le 1 ]; then umount /sysroot; reboot -f; else stay; fi ;;
*) echo "TINY: unknown action $action"; stay ;;
esac
"""


def _modinfo(ko: Path) -> tuple[str, list[str]]:
    data = ko.read_bytes()
    name = re.search(rb"\0name=([^\0]+)\0", data).group(1).decode()
    deps = re.search(rb"\0depends=([^\0]*)\0", data).group(1).decode()
    return name, [d for d in deps.split(",") if d]


def module_order(moddir: Path, wanted) -> list[tuple[str, Path]]:
    """wanted modules and their dependencies (from each .ko's modinfo), dependencies first."""
    by_name = {}
    for ko in moddir.rglob("*.ko"):
        by_name[ko.name[:-3].replace("-", "_")] = ko
    order: list[tuple[str, Path]] = []
    seen = set()

    def visit(name):
        name = name.replace("-", "_")
        if name in seen:
            return
        seen.add(name)
        ko = by_name[name]
        for dep in _modinfo(ko)[1]:
            visit(dep)
        order.append((name, ko))

    for name in wanted:
        visit(name)
    return order


def _run(cmd, **kwargs):
    return subprocess.run(cmd, check=True, capture_output=True, text=True, **kwargs)


def kernel_tree(workdir: Path) -> Path:
    """The kernel package unpacked in workdir/kernel (downloaded when there is no .deb in workdir)."""
    tree = workdir / "kernel"
    if (tree / "boot").is_dir():
        return tree
    debs = sorted(glob.glob(str(workdir / f"{KERNEL_PACKAGE}_*.deb")))
    if not debs:
        _run(["apt-get", "download", KERNEL_PACKAGE], cwd=workdir)
        debs = sorted(glob.glob(str(workdir / f"{KERNEL_PACKAGE}_*.deb")))
    partial = workdir / "kernel.partial"
    shutil.rmtree(partial, ignore_errors=True)
    _run(["dpkg-deb", "-x", debs[-1], str(partial)])
    partial.rename(tree)
    return tree


def newc_archive(root: Path, names) -> bytes:
    """An initramfs cpio archive ("newc") of root's entries names (relative paths, parents first)."""
    out = bytearray()

    def entry(name: str, mode: int, data: bytes, ino: int, nlink: int = 1):
        encoded = name.encode() + b"\0"
        fields = [ino, mode, 0, 0, nlink, 0, len(data), 0, 0, 0, 0, len(encoded), 0]
        out.extend(b"070701" + b"".join(b"%08X" % v for v in fields) + encoded)
        out.extend(b"\0" * (-len(out) % 4))
        out.extend(data)
        out.extend(b"\0" * (-len(out) % 4))

    for ino, name in enumerate(names, start=1):
        path = root / name
        st = path.lstat()
        if stat.S_ISLNK(st.st_mode):
            data = os.readlink(path).encode()
        elif stat.S_ISREG(st.st_mode):
            data = path.read_bytes()
        else:
            data = b""
        entry(name, st.st_mode, data, ino, 2 if stat.S_ISDIR(st.st_mode) else 1)
    entry("TRAILER!!!", 0, b"", 0)
    return bytes(out)


def ssh_tree(workdir: Path) -> Path:
    """SSH_PACKAGES unpacked in workdir/ssh (downloaded with apt-get download when missing)."""
    tree = workdir / "ssh"
    if (tree / "usr/sbin/dropbear").exists():
        return tree
    debs = workdir / "ssh-debs"
    debs.mkdir(exist_ok=True)
    for package in SSH_PACKAGES:
        if not glob.glob(str(debs / f"{package}_*.deb")):
            _run(["apt-get", "download", package], cwd=debs)
    partial = workdir / "ssh.partial"
    shutil.rmtree(partial, ignore_errors=True)
    for deb in sorted(debs.glob("*.deb")):
        _run(["dpkg-deb", "-x", str(deb), str(partial)])
    shutil.rmtree(tree, ignore_errors=True)
    partial.rename(tree)
    return tree


def _libraries(binary: Path, extra_dir: Path) -> list[Path]:
    """The shared libraries binary needs (ldd, with extra_dir searched first)."""
    out = _run(["ldd", str(binary)], env={**os.environ, "LD_LIBRARY_PATH": str(extra_dir)}).stdout
    libs = []
    for line in out.splitlines():
        match = re.search(r"(?:=>\s*)?(/\S+|\S+/\S+)\s+\(0x", line)
        if match:
            libs.append(Path(match.group(1)))
    return libs


def add_ssh(root: Path, ssh: Path, public_key: str) -> None:
    libdir = ssh / "usr/lib/x86_64-linux-gnu"
    for source, target in SSH_BINARIES.items():
        (root / target).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ssh / source, root / target)
        for lib in _libraries(ssh / source, libdir):
            real = lib.resolve() if lib.is_absolute() else (Path.cwd() / lib).resolve()
            if str(real).startswith(str(ssh.resolve())):
                dest = root / "usr/lib/x86_64-linux-gnu" / lib.name
            else:
                dest = root / str(lib).lstrip("/")
            dest.parent.mkdir(parents=True, exist_ok=True)
            if not dest.exists():
                shutil.copyfile(real, dest)
                dest.chmod(0o755)
    (root / "lib64").mkdir(exist_ok=True)
    (root / "etc/passwd").write_text("root:x:0:0:root:/root:/bin/sh\n")
    (root / "etc/group").write_text("root:x:0:\n")
    (root / "etc/shells").write_text("/bin/sh\n")
    (root / "root/.ssh").mkdir(parents=True, exist_ok=True)
    (root / "root/.ssh").chmod(0o700)
    (root / "root/.ssh/authorized_keys").write_text(public_key)
    (root / "root/.ssh/authorized_keys").chmod(0o600)
    (root / "root").chmod(0o700)
    (root / "bin/systemctl").write_text(SYSTEMCTL)
    (root / "bin/systemctl").chmod(0o755)


def build_initramfs(kernel: Path, out: Path, overlay: Path, ssh: tuple[Path, str] | None = None) -> None:
    root = out.with_suffix(".d")
    shutil.rmtree(root, ignore_errors=True)
    for d in ("bin", "sbin", "usr/bin", "usr/sbin", "proc", "sys", "dev", "root", "sysroot", "modules", "etc", "tmp"):
        (root / d).mkdir(parents=True)
    shutil.copy2(shutil.which("busybox"), root / "bin/busybox")
    applets = _run([str(root / "bin/busybox"), "--list"]).stdout.split()
    for applet in applets:
        if applet != "busybox" and not (root / "bin" / applet).exists():
            (root / "bin" / applet).symlink_to("busybox")
    moddir = next((kernel / "lib/modules").iterdir())
    order = module_order(moddir, MODULES)
    for name, ko in order:
        shutil.copy2(ko, root / "modules" / f"{name}.ko")
    (root / "modules.order").write_text("".join(f"{name}\n" for name, _ in order))
    (root / "init").write_text(INIT)
    (root / "init").chmod(0o755)
    shutil.copy2(overlay / "usr/bin/fw_printenv", root / "usr/bin/fw_printenv")
    (root / "usr/bin/fw_setenv").symlink_to("fw_printenv")
    shutil.copy2(overlay / "etc/fw_env.config", root / "etc/fw_env.config")
    if ssh is not None:
        add_ssh(root, *ssh)
    files = sorted(str(p.relative_to(root)) for p in root.rglob("*"))
    with gzip.open(out, "wb", compresslevel=1) as f:
        f.write(newc_archive(root, files))
    shutil.rmtree(root)


def build(workdir, overlay: Path | None = None, *, force: bool = False) -> Path:
    """workdir/tiny-disk.raw (built once, rebuilt when this file or the guest tools change, or with force).
    Returns its path; the ssh key for root is workdir/tiny-key."""
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    disk = workdir / "tiny-disk.raw"
    overlay = overlay or Path(__file__).resolve().parent / "rootfs-overlay"
    recipe = hashlib.sha256()
    for source in (Path(__file__), overlay / "usr/bin/fw_printenv", overlay / "etc/fw_env.config"):
        recipe.update(source.read_bytes())
    stamp = workdir / "tiny-disk.recipe"
    if disk.exists() and not force and stamp.exists() and stamp.read_text() == recipe.hexdigest():
        return disk
    stamp.unlink(missing_ok=True)
    kernel = kernel_tree(workdir)
    vmlinuz = next((kernel / "boot").glob("vmlinuz-*"))
    version = vmlinuz.name[len("vmlinuz-"):]
    initrd = workdir / f"initrd.img-{version}"
    key = workdir / "tiny-key"
    if not key.exists():
        _run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "vmdevice-tiny", "-f", str(key)])
    build_initramfs(kernel, initrd, overlay, (ssh_tree(workdir), (workdir / "tiny-key.pub").read_text()))

    partial = workdir / "tiny-disk.raw.partial"
    partial.unlink(missing_ok=True)
    total = (1 + sum(size for _, size in LAYOUT) + 1) * MiB
    with open(partial, "wb") as f:
        f.truncate(total)
    script = "label: gpt\n" + "".join(f"size={size}MiB, name={name}\n" for name, size in LAYOUT)
    _run(["sfdisk", "--quiet", str(partial)], input=script)
    table = json.loads(_run(["sfdisk", "--json", str(partial)]).stdout)["partitiontable"]
    sector = table.get("sectorsize", 512)
    for index, name in ((2, "A"), (3, "B")):
        part = table["partitions"][index - 1]
        tree = workdir / f"root-{name}"
        shutil.rmtree(tree, ignore_errors=True)
        (tree / "boot").mkdir(parents=True)
        shutil.copy2(vmlinuz, tree / "boot" / vmlinuz.name)
        shutil.copy2(initrd, tree / "boot" / initrd.name)
        (tree / "boot" / f"config-{version}").write_text("# not a kernel\n")
        (tree / "name").write_text(name + "\n")
        _run(["mkfs.ext4", "-q", "-F", "-L", f"rootfs-{name.lower()}", "-d", str(tree),
              "-E", f"offset={part['start'] * sector}", str(partial), f"{part['size'] * sector // 1024}k"])
        shutil.rmtree(tree)
    os.replace(partial, disk)
    stamp.write_text(recipe.hexdigest())
    return disk
