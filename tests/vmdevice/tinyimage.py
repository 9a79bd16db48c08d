"""A tiny stand-in device disk to test the launcher with (the real image comes from image.py).

GPT: p1 "boot" (unused), p2 rootfs A, p3 rootfs B, p4 data; p2 and p3 are ext4 with /boot/vmlinuz-<ver>
and /boot/initrd.img-<ver> from Debian 12's kernel package, and /name ("A" or "B"). The initramfs is
busybox-static plus the modules for virtio disks and ext4, the guest tools from rootfs-overlay, and an
/init that prints the kernel command line, mounts root= read-write and does what the command line's
`tiny.p<N>=ACTION` (else the root's /action file, else "stay") says:

  stay      print "TINY: ready", then wait forever (until QEMU is killed)
  poweroff  poweroff -f           reboot   reboot -f          panic   exit init (kernel panic)
  hang      wait forever without saying ready (for the watchdog)
  commit    fw_setenv upgrade_available 0 (the guest's own tools on /dev/vdb), then as stay
  once-reboot  the first boot of this partition reboots, later ones stay (a counter in /count on root)

Markers on the serial console: "TINY: cmdline: ...", "TINY: root=/dev/vdaN name=X action=Y boot#=K",
"TINY: ready".

build(workdir) needs: dpkg-deb, busybox (static), sfdisk, mkfs.ext4 and the kernel package
(downloaded with `apt-get download` into workdir when not there). No root, no loop devices.
"""

from __future__ import annotations

import glob
import gzip
import json
import os
import re
import shutil
import stat
import subprocess
from pathlib import Path

KERNEL_PACKAGE = "linux-image-6.1.0-57-amd64"
MODULES = ["virtio_pci", "virtio_blk", "ext4", "crc32c_generic"]
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
mkdir -p /root
mount -t ext4 -o rw "$root" /root || { echo "TINY: cannot mount $root"; exit 1; }
part=${root#/dev/vda}
action=
for word in $(cat /proc/cmdline); do
    case "$word" in tiny.p$part=*) action=${word#tiny.p$part=} ;; esac
done
[ -n "$action" ] || action=$(cat /root/action 2>/dev/null)
[ -n "$action" ] || action=stay
count=$(( $(cat /root/count 2>/dev/null || echo 0) + 1 ))
echo $count > /root/count
sync
echo "TINY: root=$root name=$(cat /root/name) action=$action boot#=$count"
stay() {
    echo "TINY: ready"
    while true; do sleep 3600; done
}
case "$action" in
stay) stay ;;
hang) while true; do sleep 3600; done ;;
poweroff) umount /root; poweroff -f ;;
reboot) umount /root; reboot -f ;;
panic) echo "TINY: exiting init"; exit 1 ;;
commit)
    fw_setenv upgrade_available 0 && echo "TINY: committed: $(fw_printenv upgrade_available mender_boot_part | tr '\n' ' ')"
    stay ;;
once-reboot)
    if [ "$count" -le 1 ]; then umount /root; reboot -f; else stay; fi ;;
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


def build_initramfs(kernel: Path, out: Path, overlay: Path) -> None:
    root = out.with_suffix(".d")
    shutil.rmtree(root, ignore_errors=True)
    for d in ("bin", "sbin", "usr/bin", "usr/sbin", "proc", "sys", "dev", "root", "modules", "etc", "tmp"):
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
    files = sorted(str(p.relative_to(root)) for p in root.rglob("*"))
    with gzip.open(out, "wb", compresslevel=1) as f:
        f.write(newc_archive(root, files))
    shutil.rmtree(root)


def build(workdir, overlay: Path | None = None, *, force: bool = False) -> Path:
    """workdir/tiny-disk.raw (built once; kept between runs unless force). Returns its path."""
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    disk = workdir / "tiny-disk.raw"
    if disk.exists() and not force:
        return disk
    overlay = overlay or Path(__file__).resolve().parent / "rootfs-overlay"
    kernel = kernel_tree(workdir)
    vmlinuz = next((kernel / "boot").glob("vmlinuz-*"))
    version = vmlinuz.name[len("vmlinuz-"):]
    initrd = workdir / f"initrd.img-{version}"
    build_initramfs(kernel, initrd, overlay)

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
    return disk
