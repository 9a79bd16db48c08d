"""bootenv.py (format, decide) and the guest's fw_printenv/fw_setenv shell tools, on temp files."""

from __future__ import annotations

import hashlib
import itertools
import os
import random
import subprocess
from pathlib import Path

import pytest

from vmdevice import bootenv
from vmdevice.bootenv import COPY_SIZE, Decision, decide

OVERLAY = Path(__file__).resolve().parent / "rootfs-overlay"
PRINTENV = OVERLAY / "usr/bin/fw_printenv"
SETENV = OVERLAY / "usr/bin/fw_setenv"


# --- the format ------------------------------------------------------------------------------------


def test_format_read_write_update(tmp_path):
    disk = tmp_path / "bootenv.raw"
    bootenv.format_disk(disk, bootenv.default_env())
    assert disk.stat().st_size == 1024 * 1024
    assert bootenv.read(disk) == {"mender_boot_part": "2", "mender_boot_part_hex": "2",
                                  "upgrade_available": "0", "bootcount": "0", "bootlimit": "1"}
    copies = bootenv.read_copies(disk)
    assert copies[0][0] == 1 and copies[1] is None
    bootenv.write(disk, {"a": "1"})
    assert bootenv.read(disk) == {"a": "1"}
    assert [c[0] for c in bootenv.read_copies(disk)] == [1, 2]
    assert bootenv.update(disk, {"a": "", "b": "x y=z"}) == {"b": "x y=z"}
    assert bootenv.read(disk) == {"b": "x y=z"}
    assert [c[0] for c in bootenv.read_copies(disk)] == [3, 2]  # writes alternate between the copies


def test_copy_layout_is_the_documented_one():
    data = bootenv.encode_copy({"b": "2", "a": "1"}, 7)
    assert len(data) == COPY_SIZE
    body = b"a=1\nb=2\n"
    assert data.rstrip(b"\0") == (b"mender-bootenv v1 seq=7 sha256=" + hashlib.sha256(body).hexdigest().encode()
                                  + b"\n" + body)
    assert bootenv.decode_copy(data) == (7, {"a": "1", "b": "2"})


@pytest.mark.parametrize("mutate", [
    lambda d: d[:40] + bytes([d[40] ^ 1]) + d[41:],  # header's hash
    lambda d: d.replace(b"a=1", b"a=2"),  # body no longer matches the hash
    lambda d: d[:-1] + b"x",  # garbage after the padding starts
    lambda d: d.replace(b"mender-bootenv v1", b"mender-bootenv v2"),
    lambda d: b"\0" * COPY_SIZE,
    lambda d: d.split(b"\n")[0] + b"\0" * (COPY_SIZE - len(d.split(b"\n")[0])),  # torn after the header
    lambda d: d[:100] + b"\0" * (COPY_SIZE - 100),  # torn in the middle of the body
], ids=["hash", "body", "tail", "magic", "zeros", "no-newline", "torn"])
def test_invalid_copies_are_rejected(mutate):
    data = bootenv.encode_copy({"a": "1", "long": "x" * 200}, 3)
    assert bootenv.decode_copy(data) is not None
    assert bootenv.decode_copy(mutate(data)) is None


def _copy_with_body(body: bytes, seq=1) -> bytes:
    data = f"mender-bootenv v1 seq={seq} sha256={hashlib.sha256(body).hexdigest()}\n".encode() + body
    return data.ljust(COPY_SIZE, b"\0")


@pytest.mark.parametrize("body", [b"a=1\na=2\n", b"novalue\n", b"=x\n", b"a b=1\n", b"a=1", b"a=1\r\n"],
                         ids=["duplicate", "no-equals", "empty-name", "space-in-name", "no-final-newline", "cr"])
def test_bodies_with_a_valid_hash_but_bad_lines_are_rejected(body):
    assert bootenv.decode_copy(_copy_with_body(body)) is None


def test_bad_names_values_and_sizes_are_refused(tmp_path):
    disk = tmp_path / "e.raw"
    bootenv.format_disk(disk, {})
    for bad in ({"a=b": "1"}, {"": "1"}, {"a b": "1"}, {"a": "x\ny"}):
        with pytest.raises(bootenv.BootEnvError):
            bootenv.write(disk, bad)
    with pytest.raises(bootenv.BootEnvError, match="too large"):
        bootenv.write(disk, {"big": "x" * COPY_SIZE})
    assert bootenv.read(disk) == {}


def test_torn_write_keeps_the_previous_environment(tmp_path):
    disk = tmp_path / "e.raw"
    bootenv.format_disk(disk, {"mender_boot_part": "2"})
    bootenv.update(disk, {"mender_boot_part": "3", "upgrade_available": "1"})  # copy 1, seq 2
    bootenv.update(disk, {"bootcount": "1"})  # copy 0, seq 3
    # A power cut in the middle of the next write (to copy 1): only its first 60 bytes made it.
    new = bootenv.encode_copy({"mender_boot_part": "2"}, 4)
    with open(disk, "r+b") as f:
        f.seek(COPY_SIZE)
        old = f.read(COPY_SIZE)
        f.seek(COPY_SIZE)
        f.write(new[:60] + old[60:])
    assert bootenv.read(disk) == {"mender_boot_part": "3", "upgrade_available": "1", "bootcount": "1"}
    # The next write goes over the torn copy again, with seq 4.
    bootenv.update(disk, {"bootcount": "2"})
    assert [c and c[0] for c in bootenv.read_copies(disk)] == [3, 4]


def test_no_valid_copy_reads_as_empty(tmp_path):
    disk = tmp_path / "e.raw"
    disk.write_bytes(b"\0" * 8192)
    assert bootenv.read(disk) == {}
    with pytest.raises(bootenv.BootEnvError):
        bootenv.read(disk, missing_ok=False)
    bootenv.update(disk, {"x": "1"})
    assert bootenv.read_copies(disk)[0] == (1, {"x": "1"})


# --- decide(): the bootloader ------------------------------------------------------------------------


def _reference(env, parts, bootlimit):
    """An independent model of meta-mender's U-Boot integration, step by step."""
    env = dict(env)
    a, b = parts
    if env.get("mender_boot_part") not in (a, b):
        env["mender_boot_part"] = a
        env["mender_boot_part_hex"] = format(int(a), "x")
    if env.get("upgrade_available") == "1":  # bootcount_inc(): only during an upgrade
        raw = env.get("bootcount") or ""
        digits = ""
        for ch in raw:
            if not ch.isdigit():
                break
            digits += ch
        env["bootcount"] = str(int(digits or "0") + 1)
        if bootlimit != 0 and int(env["bootcount"]) > bootlimit:  # run altbootcmd
            other = b if env["mender_boot_part"] == a else a
            env["mender_boot_part"] = other
            env["mender_boot_part_hex"] = format(int(other), "x")
            env["upgrade_available"] = "0"
    return env["mender_boot_part"], env


PARTS = [None, "2", "3", "", "4", "garbage", "02"]
UPGRADE = [None, "0", "1", "", "yes", "2"]
COUNTS = [None, "0", "1", "2", "7", "", "junk", "1x"]
HEX = [None, "2", "3", "zz"]


@pytest.mark.parametrize("bootlimit", [0, 1, 2])
@pytest.mark.parametrize("parts", [("2", "3"), ("5", "10")])
def test_decide_exhaustively_against_a_reference_model(bootlimit, parts):
    seen_reasons = set()
    for part, upgrade, count, hexpart, extra in itertools.product(PARTS, UPGRADE, COUNTS, HEX, [None, "v"]):
        env = {k: v for k, v in (("mender_boot_part", part), ("upgrade_available", upgrade), ("bootcount", count),
                                 ("mender_boot_part_hex", hexpart), ("other", extra)) if v is not None}
        decision = decide(env, parts=parts, bootlimit=bootlimit)
        expect_part, expect_env = _reference(env, parts, bootlimit)
        assert (decision.partition, decision.env_after) == (expect_part, expect_env), env
        assert decision.partition in parts
        assert decision.env_after["mender_boot_part"] == decision.partition
        if env.get("upgrade_available") != "1":
            assert decision.env_after.get("bootcount") == env.get("bootcount")
            assert decision.env_after.get("upgrade_available") == env.get("upgrade_available")
        assert env == {k: v for k, v in (("mender_boot_part", part), ("upgrade_available", upgrade),
                                         ("bootcount", count), ("mender_boot_part_hex", hexpart),
                                         ("other", extra)) if v is not None}, "decide() changed its input"
        seen_reasons.add(decision.reason.split(":")[0].split(",")[0])
    assert len(seen_reasons) >= 3


def test_decide_named_cases():
    # A settled device boots its partition and touches nothing.
    env = {"mender_boot_part": "3", "mender_boot_part_hex": "3", "upgrade_available": "0", "bootcount": "5"}
    assert decide(env) == Decision("3", env, "boot mender_boot_part=3")
    # The first boot after an install: trial boot of the new partition, bootcount 1.
    env = {"mender_boot_part": "3", "mender_boot_part_hex": "3", "upgrade_available": "1", "bootcount": "0"}
    d = decide(env)
    assert d.partition == "3" and d.env_after["bootcount"] == "1" and "trial boot" in d.reason
    # The new system did not commit and rebooted: roll back to 2.
    d2 = decide(d.env_after)
    assert d2.partition == "2"
    assert d2.env_after == {"mender_boot_part": "2", "mender_boot_part_hex": "2", "upgrade_available": "0",
                            "bootcount": "2"}
    assert "altbootcmd" in d2.reason
    # And after the rollback it stays on 2.
    assert decide(d2.env_after).partition == "2" and decide(d2.env_after).env_after == d2.env_after
    # An empty (bad CRC) environment boots A and stores it.
    d = decide({})
    assert d.partition == "2" and d.env_after == {"mender_boot_part": "2", "mender_boot_part_hex": "2"}
    assert "falling back to A" in d.reason


# --- the shell tools ---------------------------------------------------------------------------------


@pytest.fixture
def envdisk(tmp_path):
    disk = tmp_path / "bootenv.raw"
    bootenv.format_disk(disk, bootenv.default_env())
    config = tmp_path / "fw_env.config"
    config.write_text(f"# test\n{disk} 0x0000 0x1000\n\n{disk} 0x1000 0x1000\n")
    return disk, config


SHELL = []  # the interpreter for run(); the shell fixture sets it (empty: the #! line's /bin/sh)


@pytest.fixture(params=["sh", "busybox-sh"])
def shell(request):
    """Run the test with the tools under /bin/sh (dash on Debian) and under busybox's ash."""
    SHELL[:] = [] if request.param == "sh" else ["busybox", "sh"]
    yield request.param
    SHELL[:] = []


def run(tool, config, *args, stdin="", env_config=False):
    env = dict(os.environ)
    env.pop("FW_ENV_CONFIG", None)
    if env_config:
        env["FW_ENV_CONFIG"] = str(config)
    else:
        args = ("-c", str(config)) + args
    result = subprocess.run([*SHELL, str(tool), *args], input=stdin, capture_output=True, text=True, env=env,
                            timeout=30)
    return result.returncode, result.stdout, result.stderr


def go_client_read(config, *names):
    """What the Go client's getEnvironmentVariable makes of fw_printenv's output."""
    status, out, err = run(PRINTENV, config, *names)
    if status != 0:
        return None, err
    vars = {}
    for line in out.splitlines():
        if line == "":
            continue
        parts = line.split("=")
        assert len(parts) == 2, f"the Go client would reject {line!r}"
        vars[parts[0]] = parts[1]
    return vars, err


def test_printenv_all_and_by_name(shell, envdisk):
    disk, config = envdisk
    status, out, err = run(PRINTENV, config)
    assert (status, err) == (0, "")
    assert out == "bootcount=0\nbootlimit=1\nmender_boot_part=2\nmender_boot_part_hex=2\nupgrade_available=0\n"
    assert run(PRINTENV, config, "upgrade_available", "mender_boot_part") == (
        0, "upgrade_available=0\nmender_boot_part=2\n", "")
    assert run(PRINTENV, config, "-n", "mender_boot_part") == (0, "2\n", "")
    assert run(PRINTENV, config, "mender_boot_part", env_config=True) == (0, "mender_boot_part=2\n", "")


def test_printenv_missing_name(shell, envdisk):
    disk, config = envdisk
    assert run(PRINTENV, config, "nope") == (1, "", '## Error: "nope" not defined\n')
    # the names that exist are still printed
    assert run(PRINTENV, config, "bootcount", "nope", "mender_boot_part") == (
        1, "bootcount=0\nmender_boot_part=2\n", '## Error: "nope" not defined\n')
    # a prefix of a name is not that name
    assert run(PRINTENV, config, "mender_boot")[0] == 1


def test_setenv_arguments_and_deletion(shell, envdisk):
    disk, config = envdisk
    assert run(SETENV, config, "foo", "bar", "baz") == (0, "", "")
    assert bootenv.read(disk)["foo"] == "bar baz"
    assert run(SETENV, config, "foo")[0] == 0
    assert "foo" not in bootenv.read(disk)
    assert run(SETENV, config, "-s", "-", stdin="bootcount=\nbootlimit \n")[0] == 0
    assert bootenv.read(disk) == {"mender_boot_part": "2", "mender_boot_part_hex": "2", "upgrade_available": "0"}
    # deleting what is not there is fine
    assert run(SETENV, config, "never")[0] == 0


def test_setenv_script_file_and_formats(shell, envdisk, tmp_path):
    disk, config = envdisk
    script = tmp_path / "script"
    script.write_text("# comment\n\nmender_boot_part 3\nmender_boot_part_hex\t3\nupgrade_available=1\n"
                      "weird=a=b c\nspaced    x y\nlast 9")  # no final newline
    assert run(SETENV, config, "-s", str(script)) == (0, "", "")
    assert bootenv.read(disk) == {"mender_boot_part": "3", "mender_boot_part_hex": "3", "upgrade_available": "1",
                                  "bootcount": "0", "bootlimit": "1", "weird": "a=b c", "spaced": "x y", "last": "9"}


def test_go_client_separator_probe_then_write(shell, envdisk):
    """The exact sequence of mender 3.4's UBootEnv.WriteEnv (probeSeparator, then writeEnvImpl)."""
    disk, config = envdisk
    # ReadEnv's canary check first: fw_printenv mender_check_saveenv_canary (missing: an error, ignored)
    vars, err = go_client_read(config, "mender_check_saveenv_canary")
    assert vars is None and err == '## Error: "mender_check_saveenv_canary" not defined\n'
    # probeSeparator: write with the legacy separator, "fw_setenv -s -" with "name value\n" lines
    assert run(SETENV, config, "-s", "-", stdin="mender_uboot_separator 1\n") == (0, "", "")
    vars, _ = go_client_read(config, "mender_uboot_separator")
    assert vars == {"mender_uboot_separator": "1"}  # so the client keeps the legacy separator " "
    assert run(SETENV, config, "-s", "-", stdin="mender_uboot_separator \n") == (0, "", "")
    assert run(PRINTENV, config, "mender_uboot_separator")[0] == 1
    # InstallUpdate's WriteEnv, with " ": Go map order is random, so any order must do
    lines = ["upgrade_available 1\n", "mender_boot_part 3\n", "mender_boot_part_hex 3\n", "bootcount 0\n"]
    random.Random(1).shuffle(lines)
    assert run(SETENV, config, "-s", "-", stdin="".join(lines)) == (0, "", "")
    assert bootenv.read(disk) == {"mender_boot_part": "3", "mender_boot_part_hex": "3", "upgrade_available": "1",
                                  "bootcount": "0", "bootlimit": "1"}
    vars, _ = go_client_read(config, "upgrade_available")
    assert vars == {"upgrade_available": "1"}
    # the bootloader's trial boot, then the client's commit (upgrade_available 0)
    bootenv.write(disk, decide(bootenv.read(disk)).env_after)
    assert go_client_read(config, "mender_boot_part", "bootcount")[0] == {"mender_boot_part": "3", "bootcount": "1"}
    assert run(SETENV, config, "-s", "-", stdin="upgrade_available 0\n")[0] == 0
    assert decide(bootenv.read(disk)).partition == "3"


def _random_env(rng):
    alphabet = "abcxyz_-.0189AZ"
    vals = "abc 019=-_./:,;'\"$`\\*?[]{}~!#%&()<>|é"
    return {"".join(rng.choice(alphabet) for _ in range(rng.randint(1, 12))):
            "".join(rng.choice(vals) for _ in range(rng.randint(0, 30))) or "v"
            for _ in range(rng.randint(0, 25))}


def test_shell_and_python_agree_byte_for_byte(tmp_path):
    rng = random.Random(42)
    for round in range(15):
        env = _random_env(rng)
        start = _random_env(rng)
        a, b = tmp_path / f"a{round}.raw", tmp_path / f"b{round}.raw"
        for disk in (a, b):
            bootenv.format_disk(disk, start)
        bootenv.write(a, env)  # python writes the whole env...
        config = tmp_path / f"b{round}.config"
        config.write_text(f"{b} 0 4096\n{b} 4096 4096\n")
        # ...the shell deletes every old name and sets every new one
        # ("name value" drops the value's leading blanks, as U-Boot's fw_setenv does: use "=" for those)
        script = "".join(f"{name}=\n" for name in start) + "".join(
            f"{n}={v}\n" if v[0] == " " or rng.random() < 0.5 else f"{n} {v}\n" for n, v in env.items())
        status, out, err = run(SETENV, config, "-s", "-", stdin=script)
        assert (status, err) == (0, "")
        assert a.read_bytes() == b.read_bytes(), (start, env)
        status, out, err = run(PRINTENV, config)
        assert out == "".join(f"{n}={env[n]}\n" for n in sorted(env, key=lambda n: n.encode()))
        for name, value in env.items():
            assert run(PRINTENV, config, "-n", "--", name) == (0, value + "\n", "")


@pytest.mark.parametrize("damage", ["newest-torn", "newest-hash", "both", "oldest-garbage-tail", "none"])
def test_shell_picks_the_same_copy_as_python(shell, envdisk, damage):
    disk, config = envdisk
    bootenv.update(disk, {"mender_boot_part": "3"})  # copy 1, seq 2
    bootenv.update(disk, {"bootcount": "4"})  # copy 0, seq 3
    with open(disk, "r+b") as f:
        if damage in ("newest-torn", "both"):
            f.seek(150)
            f.write(b"\0" * 100)
        if damage == "newest-hash":
            f.seek(50)
            f.write(b"0")
        if damage == "both":
            f.seek(COPY_SIZE + 10)
            f.write(b"X")
        if damage == "oldest-garbage-tail":
            f.seek(2 * COPY_SIZE - 1)
            f.write(b"!")
    status, out, err = run(PRINTENV, config)
    assert status == 0
    expected = bootenv.read(disk)
    assert out == "".join(f"{n}={expected[n]}\n" for n in sorted(expected))
    assert expected == {"none": {**bootenv.default_env(), "mender_boot_part": "3", "bootcount": "4"},
                        "newest-torn": {**bootenv.default_env(), "mender_boot_part": "3"},
                        "newest-hash": {**bootenv.default_env(), "mender_boot_part": "3"},
                        "oldest-garbage-tail": {**bootenv.default_env(), "mender_boot_part": "3", "bootcount": "4"},
                        "both": {}}[damage]
    if damage == "both":
        assert "no valid copy" in err


def test_shell_torn_write_then_write_again(shell, envdisk):
    """fw_setenv writes to the losing copy: a torn write there loses only that write."""
    disk, config = envdisk
    assert run(SETENV, config, "mender_boot_part", "3")[0] == 0  # copy 1, seq 2
    assert run(SETENV, config, "upgrade_available", "1")[0] == 0  # copy 0, seq 3
    # tear copy 0 (the newest): the environment before the last write wins
    with open(disk, "r+b") as f:
        f.seek(80)
        f.write(b"\0" * 20)
    assert run(PRINTENV, config, "upgrade_available") == (0, "upgrade_available=0\n", "")
    assert run(PRINTENV, config, "mender_boot_part") == (0, "mender_boot_part=3\n", "")
    # the next write goes over the torn copy, with seq 3
    assert run(SETENV, config, "bootcount", "1")[0] == 0
    assert [c and c[0] for c in bootenv.read_copies(disk)] == [3, 2]
    assert bootenv.read(disk)["bootcount"] == "1"


def test_shell_refuses_bad_input_and_leaves_the_env_alone(shell, envdisk):
    disk, config = envdisk
    before = disk.read_bytes()
    assert run(SETENV, config, "-s", "-", stdin="=x\n")[0] == 1
    assert run(SETENV, config, "big", "x" * 5000)[:2] == (1, "")
    assert "too large" in run(SETENV, config, "big", "x" * 5000)[2]
    assert run(SETENV, config)[0] == 1
    assert run(PRINTENV, config, "-z")[0] == 1
    assert disk.read_bytes() == before
    missing = config.parent / "missing.config"
    status, _, err = run(PRINTENV, missing)
    assert status == 1 and "missing.config" in err


def test_shell_tools_are_posix_sh_and_symlinked():
    assert PRINTENV.read_text().startswith("#!/bin/sh\n")
    assert SETENV.is_symlink() and os.readlink(SETENV) == "fw_printenv"
    assert os.access(PRINTENV, os.X_OK)
    config = (OVERLAY / "etc/fw_env.config").read_text().splitlines()
    assert [line.split() for line in config if line and not line.startswith("#")] == [
        ["/dev/vdb", "0x0000", "0x1000"], ["/dev/vdb", "0x1000", "0x1000"]]
    # busybox sh (ash) runs them too, should a guest lack dash
    subprocess.run(["busybox", "sh", "-n", str(PRINTENV)], check=True)
    subprocess.run(["dash", "-n", str(PRINTENV)], check=True)
