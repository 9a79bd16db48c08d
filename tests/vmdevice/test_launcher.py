"""launcher.py: its pure parts, then real QEMU (TCG) boots of the tiny stand-in disk (tinyimage.py).

The "vm" tests boot a Debian 12 kernel with a busybox initramfs (about 8 s a boot here); all of them
take about 1.5 minutes. They need qemu-system-x86_64, debugfs, sfdisk, mkfs.ext4, busybox (static) and
the kernel package (apt-get download, cached in $VMDEVICE_TINY_DIR, default /var/tmp/vmdevice-tiny).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from vmdevice import bootenv, launcher, tinyimage
from vmdevice.launcher import (GUEST_PANIC, GUEST_POWEROFF, GUEST_REBOOT, NO_KERNEL, POWER_CUT, QEMU_EXIT, STOP,
                               WATCHDOG, LauncherError, VmDevice)

SFDISK_JSON = """{
   "partitiontable": {
      "label": "gpt", "id": "8705A4EF-F215-754C-A67B-FE5566269DA5", "device": "tiny-disk.raw", "unit": "sectors",
      "firstlba": 2048, "lastlba": 217054, "sectorsize": 512,
      "partitions": [
         {"node": "tiny-disk.raw1", "start": 2048, "size": 8192, "type": "0FC63DAF", "name": "boot"},
         {"node": "tiny-disk.raw2", "start": 10240, "size": 98304, "type": "0FC63DAF", "name": "rootfs-a"},
         {"node": "tiny-disk.raw3", "start": 108544, "size": 98304, "type": "0FC63DAF", "name": "rootfs-b"},
         {"node": "tiny-disk.raw4", "start": 206848, "size": 8192, "type": "0FC63DAF", "name": "data"}
      ]
   }
}"""

DEBUGFS_LS = """/12/040755/0/0/.//
/2/040755/0/0/..//
/13/100644/0/0/config-6.1.0-57-amd64/15/
/14/100644/0/0/initrd.img-6.1.0-57-amd64/1845097/
/15/100644/0/0/vmlinuz-6.1.0-57-amd64/8247232/
/16/120777/0/0/vmlinuz/22/
/17/040755/0/0/grub//
"""


# --- pure parts -----------------------------------------------------------------------------------------


def test_partition_extent():
    assert launcher.partition_extent(SFDISK_JSON, 2) == (10240 * 512, 98304 * 512)
    assert launcher.partition_extent(json.loads(SFDISK_JSON), 3) == (108544 * 512, 98304 * 512)
    table = json.loads(SFDISK_JSON)
    table["partitiontable"]["sectorsize"] = 4096
    table["partitiontable"]["partitions"][1]["node"] = "/dev/loop7p2"
    assert launcher.partition_extent(table, 2) == (10240 * 4096, 98304 * 4096)
    with pytest.raises(LauncherError, match="no partition 5"):
        launcher.partition_extent(SFDISK_JSON, 5)


def test_parse_debugfs_ls_keeps_regular_files():
    assert launcher.parse_debugfs_ls(DEBUGFS_LS) == [
        "config-6.1.0-57-amd64", "initrd.img-6.1.0-57-amd64", "vmlinuz-6.1.0-57-amd64"]


def test_choose_kernel():
    assert launcher.choose_kernel(launcher.parse_debugfs_ls(DEBUGFS_LS)) == (
        "vmlinuz-6.1.0-57-amd64", "initrd.img-6.1.0-57-amd64")
    # the highest version that has both; numbers compare as numbers
    names = ["vmlinuz-6.1.0-9-amd64", "initrd.img-6.1.0-9-amd64", "vmlinuz-6.1.0-10-amd64",
             "initrd.img-6.1.0-10-amd64", "vmlinuz-6.1.0-11-amd64", "System.map-6.1.0-11-amd64",
             "vmlinuz-6.1.0-12-amd64.old", "initrd.img-6.1.0-12-amd64.old"]
    assert launcher.choose_kernel(names) == ("vmlinuz-6.1.0-10-amd64", "initrd.img-6.1.0-10-amd64")
    for bad in ([], ["vmlinuz-1"], ["initrd.img-1"], ["vmlinuz-1", "initrd.img-2"]):
        with pytest.raises(LauncherError, match="no vmlinuz"):
            launcher.choose_kernel(bad)


def test_qemu_command():
    assert launcher.qemu_command(qemu="qemu-system-x86_64", kernel="/w/boot-1.kernel", initrd="/w/boot-1.initrd",
                                 partition="3", disk="/d/disk.raw", bootenv_disk="/d/bootenv.raw", memory_mb=1024,
                                 smp=2, ssh_port=2222, extra_append=" quiet ") == [
        "qemu-system-x86_64", "-accel", "tcg,thread=multi", "-smp", "2", "-m", "1024", "-nographic", "-no-reboot",
        "-kernel", "/w/boot-1.kernel", "-initrd", "/w/boot-1.initrd",
        "-append", "root=/dev/vda3 rw console=ttyS0 panic=5 quiet",
        "-drive", "file=/d/disk.raw,format=raw,if=virtio,cache=writeback",
        "-drive", "file=/d/bootenv.raw,format=raw,if=virtio",
        "-netdev", "user,id=n0,restrict=on,hostfwd=tcp:127.0.0.1:2222-:22",
        "-device", "virtio-net-pci,netdev=n0"]
    command = launcher.qemu_command(qemu="q", kernel="k", initrd="i", partition="2", disk="d", bootenv_disk="e",
                                    memory_mb=256, smp=1, ssh_port=1)
    assert command[command.index("-append") + 1] == "root=/dev/vda2 rw console=ttyS0 panic=5"


def test_classify_end():
    assert launcher.classify_end("[    3.3] reboot: Restarting system\n") == GUEST_REBOOT
    assert launcher.classify_end("[    3.3] reboot: Power down\n") == GUEST_POWEROFF
    assert launcher.classify_end("Kernel panic - not syncing: Attempted to kill init!\nRebooting in 5 seconds..\n"
                                 "reboot: Restarting system\n") == GUEST_PANIC
    assert launcher.classify_end("qemu-system-x86_64: cannot open disk\n") == QEMU_EXIT
    assert launcher.classify_end("reboot: Power down\n...\nreboot: Restarting system\n") == GUEST_REBOOT


def test_ssh_options_and_failures():
    assert launcher.ssh_options(2222, "/k") == [
        "-i", "/k", "-p", "2222", "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
        "-o", "LogLevel=ERROR", "-o", "ConnectTimeout=5", "-o", "BatchMode=yes"]
    assert "-i" not in launcher.ssh_options(22)
    assert launcher.ssh_never_connected("Connection timed out during banner exchange\r\n")
    assert launcher.ssh_never_connected("ssh: connect to host 127.0.0.1 port 2222: Connection refused\r\n")
    assert not launcher.ssh_never_connected("Connection to 127.0.0.1 closed by remote host.\r\n")


def test_free_port():
    port = launcher.free_port()
    assert 1024 < port < 65536


# --- the monitor with a fake QEMU (no VM: a script that "boots" and exits as told) -------------------------

FAKE_QEMU = """#!/bin/sh
# fake qemu: prints its -append, then behaves as $FAKE_<partition> says (reboot|poweroff|panic|ready|hang)
while [ $# -gt 0 ]; do [ "$1" = -append ] && append=$2; shift; done
echo "FAKE: $append"
part=${append#root=/dev/vda}; part=${part%% *}
eval "action=\\${FAKE_$part:-ready}"
case "$action" in
reboot) echo "reboot: Restarting system"; exit 0 ;;
poweroff) echo "reboot: Power down"; exit 0 ;;
panic) echo "Kernel panic - not syncing: test"; exit 0 ;;
ready) echo "FAKE: ready"; exec sleep 600 ;;
hang) exec sleep 600 ;;
esac
"""


@pytest.fixture
def fake_disk(tmp_path):
    """A GPT disk with ext4 p2 (with a "kernel") and p3 (with one, or none when asked)."""
    def make(p3_kernel=True):
        disk = tmp_path / "fake.raw"
        with open(disk, "wb") as f:
            f.truncate(24 * 1024 * 1024)
        subprocess.run(["sfdisk", "--quiet", str(disk)], input="label: gpt\nsize=1MiB\nsize=10MiB\nsize=10MiB\n",
                       text=True, check=True)
        table = json.loads(subprocess.run(["sfdisk", "--json", str(disk)], capture_output=True, text=True,
                                          check=True).stdout)
        for number, with_kernel in ((2, True), (3, p3_kernel)):
            tree = tmp_path / f"tree{number}"
            (tree / "boot").mkdir(parents=True)
            if with_kernel:
                (tree / "boot/vmlinuz-1.0").write_text(f"kernel of {number}\n")
                (tree / "boot/initrd.img-1.0").write_text(f"initrd of {number}\n")
            offset, size = launcher.partition_extent(table, number)
            subprocess.run(["mkfs.ext4", "-q", "-F", "-d", str(tree), "-E", f"offset={offset}", str(disk),
                            f"{size // 1024}k"], check=True, capture_output=True)
        qemu = tmp_path / "fake-qemu"
        qemu.write_text(FAKE_QEMU)
        qemu.chmod(0o755)
        env = tmp_path / "bootenv.raw"
        return disk, env, qemu
    return make


def _fake_device(tmp_path, disk, env, qemu, **kwargs):
    return VmDevice(disk, env, tmp_path / "work", qemu=str(qemu), poweroff_via_ssh=False,
                    ready_probe=lambda d: "FAKE: ready" in d.current.log_text(), **kwargs)


def test_monitor_rolls_back_reboots_and_cuts_power(tmp_path, fake_disk, monkeypatch):
    disk, env, qemu = fake_disk()
    bootenv.format_disk(env, {**bootenv.default_env("3"), "upgrade_available": "1"})
    monkeypatch.setenv("FAKE_3", "reboot")
    with _fake_device(tmp_path, disk, env, qemu, boot_timeout=30) as device:
        second = device.wait_boot(2, 30)
        first = device.boots[0]
        assert (first.partition, first.end, first.exit_status) == ("3", GUEST_REBOOT, 0)
        assert first.env_after["bootcount"] == "1" and "trial boot" in first.reason
        assert second.partition == "2" and "altbootcmd" in second.reason
        assert device.bootenv() == second.env_after
        assert second.env_after["upgrade_available"] == "0"
        assert (tmp_path / "work/boot-2.kernel").read_text() == "kernel of 2\n"
        assert "FAKE: root=/dev/vda2 rw console=ttyS0 panic=5" in second.log.read_text()
        device.power_cut()
        assert device.wait_boot(3, 30).partition == "2"
        assert second.end == POWER_CUT and second.exit_status == -9
        device.power_cut(restart=False)
        time.sleep(1.5)
        assert len(device.boots) == 3 and device.current.end == POWER_CUT
        device.power_on()
        assert device.wait_boot(4, 30).partition == "2"
    assert device.boots[3].end == STOP
    assert [b.index for b in device.boots] == [1, 2, 3, 4]


def test_monitor_watchdog_and_missing_kernel(tmp_path, fake_disk, monkeypatch):
    disk, env, qemu = fake_disk(p3_kernel=False)
    # p3 has no kernel: the "bootloader" fails there like a failed boot, bootcount rolls it back
    bootenv.format_disk(env, {**bootenv.default_env("3"), "upgrade_available": "1"})
    monkeypatch.setenv("FAKE_2", "hang")
    with _fake_device(tmp_path, disk, env, qemu, boot_timeout=2) as device:
        device.wait_end(3, 30)
        assert [(b.partition, b.end) for b in device.boots[:3]] == [("3", NO_KERNEL), ("2", WATCHDOG),
                                                                     ("2", WATCHDOG)]
        assert "no vmlinuz" in device.boots[0].log.read_text()
        assert device.boots[1].exit_status == -9
        assert 2 <= device.boots[1].ended - device.boots[1].started < 5


def test_monitor_reports_a_dead_end(tmp_path, fake_disk):
    disk, env, qemu = fake_disk(p3_kernel=False)
    bootenv.format_disk(env, bootenv.default_env("3"))  # no upgrade: it keeps trying p3
    device = _fake_device(tmp_path, disk, env, qemu, max_failed_starts=2)
    with pytest.raises(LauncherError, match="no kernel"):
        with device:
            device.wait_ssh(30)


def test_monitor_gives_up_when_qemu_itself_fails(tmp_path, fake_disk, monkeypatch):
    disk, env, qemu = fake_disk()
    bootenv.format_disk(env, bootenv.default_env("2"))
    qemu.write_text("#!/bin/sh\necho 'qemu-system-x86_64: -netdev user: could not set up host forwarding rule' >&2\n"
                    "exit 1\n")
    device = _fake_device(tmp_path, disk, env, qemu, max_failed_starts=3)
    with pytest.raises(LauncherError, match="QEMU failed 3 times in a row .status 1.: .*host forwarding"):
        with device:
            device.wait_ssh(30)
    assert [(b.end, b.exit_status) for b in device.boots] == [(QEMU_EXIT, 1)] * 3


def test_guest_poweroff_can_leave_it_off(tmp_path, fake_disk, monkeypatch):
    disk, env, qemu = fake_disk()
    bootenv.format_disk(env, bootenv.default_env("2"))
    monkeypatch.setenv("FAKE_2", "poweroff")
    with _fake_device(tmp_path, disk, env, qemu, restart_on_poweroff=False) as device:
        assert device.wait_end(1, 30).end == GUEST_POWEROFF
        time.sleep(1.5)
        assert len(device.boots) == 1


# --- real boots of the tiny disk ----------------------------------------------------------------------


@pytest.fixture(scope="session")
def tiny_disk():
    if shutil.which("qemu-system-x86_64") is None:
        pytest.skip("no qemu-system-x86_64")
    return tinyimage.build(Path(os.environ.get("VMDEVICE_TINY_DIR", "/var/tmp/vmdevice-tiny")))


@pytest.fixture
def tiny(tiny_disk, tmp_path):
    """tiny(env_vars, append) -> a started VmDevice on a private copy of the tiny disk (ssh as root works)."""
    devices = []

    def make(env: dict, append: str = "", **kwargs):
        disk = tmp_path / "disk.raw"
        subprocess.run(["cp", "--sparse=always", str(tiny_disk), str(disk)], check=True)
        env_disk = tmp_path / "bootenv.raw"
        bootenv.format_disk(env_disk, env)
        kwargs.setdefault("boot_timeout", 60)
        device = VmDevice(disk, env_disk, tmp_path / "work", memory_mb=256, ssh_key=tiny_disk.parent / "tiny-key",
                          extra_append=f"quiet {append}", **kwargs)
        devices.append(device)
        return device.start()

    yield make
    for device in devices:
        device.stop()
    for device in devices:
        for record in device.boots:
            ready = "never ssh-ready" if record.ready is None else f"ssh-ready after {record.boot_seconds:.1f}s"
            print(f"boot {record.index}: partition {record.partition}, {record.end}, {ready}; {record.reason}")


@pytest.mark.vm
def test_vm_guest_reboot_boots_again(tiny):
    device = tiny(bootenv.default_env("2"), "tiny.p2=once-reboot")
    second = device.wait_boot(2, 90)
    power_cut_restarts = device.power_cut()
    assert power_cut_restarts is second and second.end == POWER_CUT
    assert device.wait_boot(3, 60).partition == "2"
    first = device.boots[0]
    assert first.end == GUEST_REBOOT and first.exit_status == 0
    assert "reboot: Restarting system" in first.log.read_text()
    assert second.partition == "2" and "boot#=2" in second.log.read_text()


@pytest.mark.vm
def test_vm_failing_trial_boot_falls_back(tiny):
    """An update to B whose kernel panics: trial boot, panic, panic=5 reboot, altbootcmd rolls back to A."""
    device = tiny({**bootenv.default_env("3"), "upgrade_available": "1", "bootcount": "0"}, "tiny.p3=panic")
    second = device.wait_boot(2, 90)
    first = device.boots[0]
    assert (first.partition, first.end) == ("3", GUEST_PANIC)
    assert "Kernel panic" in first.log.read_text()
    assert first.env_after["bootcount"] == "1"
    assert second.partition == "2" and "name=A" in second.log.read_text()
    assert device.bootenv() == {**bootenv.default_env("2"), "bootcount": "2"}


@pytest.mark.vm
def test_vm_committed_update_stays_across_power_cycles(tiny):
    """Boots the env's partition (B, trial); B commits with the guest's own fw_setenv on /dev/vdb;
    power cut without restart stays off; power_on boots B again."""
    device = tiny({**bootenv.default_env("3"), "upgrade_available": "1", "bootcount": "0"}, "tiny.p3=commit")
    first = device.wait_ssh(60)
    log = first.log.read_text()
    assert "TINY: cmdline: root=/dev/vda3 rw console=ttyS0 panic=5 quiet" in log
    assert "name=B" in log and first.partition == "3" and "trial boot of 3" in first.reason
    assert first.env_after == {**bootenv.default_env("3"), "upgrade_available": "1", "bootcount": "1"}
    assert "TINY: committed: upgrade_available=0 mender_boot_part=3" in log
    assert device.bootenv() == {**bootenv.default_env("3"), "bootcount": "1"}
    assert [c and c[0] for c in bootenv.read_copies(device.bootenv_disk)] == [3, 2]  # launcher, then guest
    device.power_cut(restart=False)
    time.sleep(2)
    assert len(device.boots) == 1 and (first.end, first.exit_status) == (POWER_CUT, -9)
    device.power_on()
    second = device.wait_ssh(60)
    assert (second.index, second.partition, second.reason) == (2, "3", "boot mender_boot_part=3")
    assert second.env_before == second.env_after  # nothing for the bootloader to save
    assert "boot#=2" in second.log.read_text()  # the guest's write to its root survived the power cut


@pytest.mark.vm
def test_vm_ssh_copy_to_and_reboot(tiny, tmp_path):
    """ssh, copy_to, the Go client's fw_setenv sequence inside the guest, reboot() into the new partition."""
    device = tiny(bootenv.default_env("2"))
    first = device.wait_ssh(60)
    assert device.ssh("cat /proc/cmdline; echo err >&2; exit 3", 30) == (
        3, "root=/dev/vda2 rw console=ttyS0 panic=5 quiet\nerr\n")
    payload = tmp_path / "payload"
    payload.write_text("hello\n")
    device.copy_to(payload, "/tmp/payload")
    assert device.ssh("cat /tmp/payload") == (0, "hello\n")
    # what mender 3.4's install does: probe the separator, then switch to B for a trial boot
    script = ("printf 'mender_uboot_separator 1\\n' | fw_setenv -s - && fw_printenv mender_uboot_separator && "
              "printf 'mender_uboot_separator \\n' | fw_setenv -s - && "
              "printf 'upgrade_available 1\\nmender_boot_part 3\\nmender_boot_part_hex 3\\nbootcount 0\\n'"
              " | fw_setenv -s - && fw_printenv upgrade_available mender_boot_part")
    assert device.ssh(script) == (0, "mender_uboot_separator=1\nupgrade_available=1\nmender_boot_part=3\n")
    assert device.bootenv() == {**bootenv.default_env("3"), "upgrade_available": "1"}
    second = device.reboot(90)
    assert first.end == GUEST_REBOOT
    assert (second.index, second.partition) == (2, "3") and "trial boot of 3" in second.reason
    assert device.ssh("fw_printenv bootcount") == (0, "bootcount=1\n")
    device.stop()
    assert second.end == STOP and second.exit_status == 0  # powered off over ssh, not killed


@pytest.mark.vm
def test_vm_watchdog_reboots_a_hung_boot(tiny):
    # Long enough for TCG to reach the guest's init on a loaded 2-core machine (SeaBIOS alone took
    # over 10 s once while a BitBake parse ran beside the tests), short enough to keep the test quick.
    device = tiny(bootenv.default_env("2"), "tiny.p2=hang", boot_timeout=25)
    first = device.wait_end(1, 60)
    assert first.end == WATCHDOG and first.exit_status == -9
    assert "action=hang" in first.log.read_text()
    device.wait_boot(2, 30, ready=False)
