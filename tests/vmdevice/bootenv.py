"""The test device's boot environment (a stand-in for U-Boot's), and the bootloader's boot decision.

On-disk format ("mender-bootenv v1"), on a small raw disk (bootenv.raw, 1 MiB, the VM's second virtio
disk, /dev/vdb in the guest):

* Two redundant copies of COPY_SIZE (4096) bytes, at offsets 0 and 4096 (see rootfs-overlay/etc/fw_env.config).
* Each copy is text: one header line

      mender-bootenv v1 seq=<n> sha256=<64 lowercase hex digits of the body>\\n

  then the body, lines `name=value\\n` (sorted by name, byte order), then NUL bytes up to the copy's end.
  A name is non-empty and has no '=', space, tab, newline or NUL; a value has no newline or NUL.
* A copy is valid when its header matches exactly, its bytes up to the first NUL are the header and a
  body whose sha256 matches, every byte after that first NUL is NUL, and every body line is `name=value`
  with a valid, not repeated, name.
* The valid copy with the highest seq wins (copy 0 on a tie). No valid copy: the environment is empty
  (like U-Boot's "Bad CRC, using default environment"; the bootloader then falls back to rootfs A).
* A write goes to the copy that did not win, with seq = winner's seq + 1, and is fsynced. A torn write
  (power cut in the middle) leaves that copy invalid, so the previous environment still wins.

The guest's fw_printenv/fw_setenv (rootfs-overlay/usr/bin/fw_printenv, POSIX sh) implement the same
format; tests/vmdevice/test_bootenv.py checks that both sides agree.

decide() is the bootloader's logic (meta-mender's U-Boot integration: CONFIG_BOOTCOUNT_ENV, bootlimit,
altbootcmd; its GRUB integration behaves the same with bootlimit=1).
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import re

COPY_SIZE = 4096
COPY_OFFSETS = (0, COPY_SIZE)
DISK_SIZE = 1024 * 1024
MAGIC = "mender-bootenv v1"

_HEADER = re.compile(rb"mender-bootenv v1 seq=(0|[1-9][0-9]{0,17}) sha256=([0-9a-f]{64})")
_BAD_NAME = re.compile(r"[=\x00 \t\n\v\f\r]")  # as [=[:space:]] in the C locale, and NUL


class BootEnvError(Exception):
    pass


def _check(vars: dict) -> None:
    for name, value in vars.items():
        if not isinstance(name, str) or not name or _BAD_NAME.search(name):
            raise BootEnvError(f"bad variable name {name!r}")
        if not isinstance(value, str) or "\n" in value or "\r" in value or "\x00" in value:
            raise BootEnvError(f"bad value for {name}: {value!r}")


def _raw(text: str) -> bytes:
    return text.encode("utf-8", "surrogateescape")


def encode_body(vars: dict) -> bytes:
    _check(vars)
    return "".join(f"{name}={vars[name]}\n" for name in sorted(vars, key=_raw)).encode("utf-8", "surrogateescape")


def encode_copy(vars: dict, seq: int) -> bytes:
    """One copy's COPY_SIZE bytes."""
    body = encode_body(vars)
    data = f"{MAGIC} seq={seq} sha256={hashlib.sha256(body).hexdigest()}\n".encode() + body
    if len(data) > COPY_SIZE:
        raise BootEnvError(f"environment too large: {len(data)} bytes, a copy holds {COPY_SIZE}")
    return data + b"\0" * (COPY_SIZE - len(data))


def decode_copy(data: bytes) -> tuple[int, dict] | None:
    """(seq, vars) of a valid copy, None for an invalid one."""
    nul = data.find(b"\0")
    text, rest = (data, b"") if nul < 0 else (data[:nul], data[nul:])
    if rest.strip(b"\0"):
        return None
    header, newline, body = text.partition(b"\n")
    if not newline:
        return None
    match = _HEADER.fullmatch(header)
    if not match or hashlib.sha256(body).hexdigest() != match.group(2).decode():
        return None
    vars: dict = {}
    lines = body.decode("utf-8", "surrogateescape").split("\n")
    if lines.pop() != "":  # a body is empty or ends with a newline
        return None
    for line in lines:
        name, eq, value = line.partition("=")
        if not eq or not name or _BAD_NAME.search(name) or name in vars or "\r" in value:
            return None
        vars[name] = value
    return int(match.group(1)), vars


def read_copies(path) -> list[tuple[int, dict] | None]:
    with open(path, "rb") as f:
        copies = []
        for offset in COPY_OFFSETS:
            f.seek(offset)
            copies.append(decode_copy(f.read(COPY_SIZE).ljust(COPY_SIZE, b"\0")))
    return copies


def _winner(copies) -> int | None:
    best = None
    for index, copy in enumerate(copies):
        if copy is not None and (best is None or copy[0] > copies[best][0]):
            best = index
    return best


def read(path, *, missing_ok: bool = True) -> dict:
    """The environment (the winning copy's variables); {} when no copy is valid, unless missing_ok=False."""
    copies = read_copies(path)
    best = _winner(copies)
    if best is None:
        if not missing_ok:
            raise BootEnvError(f"{path}: no valid copy of the boot environment")
        return {}
    return dict(copies[best][1])


def _write_copy(path, index: int, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY)
    try:
        os.pwrite(fd, data, COPY_OFFSETS[index])
        os.fsync(fd)
    finally:
        os.close(fd)


def write(path, vars: dict) -> None:
    """Replace the whole environment: written to the losing copy with seq+1, fsynced."""
    copies = read_copies(path)
    best = _winner(copies)
    if best is None:
        index, seq = 0, 1
    else:
        index, seq = 1 - best, copies[best][0] + 1
    _write_copy(path, index, encode_copy(dict(vars), seq))


def update(path, changes: dict) -> dict:
    """Set the variables in changes (an empty value deletes one); returns the new environment."""
    env = read(path)
    for name, value in changes.items():
        if value == "":
            env.pop(name, None)
        else:
            env[name] = value
    _check(env)
    write(path, env)
    return env


def format_disk(path, vars: dict, size: int = DISK_SIZE) -> None:
    """A fresh boot environment disk: copy 0 holds vars (seq=1), copy 1 is all NULs (invalid)."""
    data = encode_copy(dict(vars), 1) + b"\0" * COPY_SIZE
    with open(path, "wb") as f:
        f.write(data)
        f.truncate(size)
        f.flush()
        os.fsync(f.fileno())


def default_env(part: str = "2") -> dict:
    """The environment a freshly flashed device starts with (meta-mender's defaults)."""
    return {"mender_boot_part": part, "mender_boot_part_hex": format(int(part), "x"),
            "upgrade_available": "0", "bootcount": "0", "bootlimit": "1"}


# --- the bootloader's decision --------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Decision:
    partition: str  # decimal partition number to boot, e.g. "2"
    env_after: dict  # the environment after the bootloader's saveenv
    reason: str


def _ulong(value) -> int:
    """U-Boot's simple_strtoul for base 10: leading decimal digits, 0 when there are none."""
    match = re.match(r"[0-9]+", value or "")
    return int(match.group()) if match else 0


def decide(env: dict, parts=("2", "3"), bootlimit: int = 1) -> Decision:
    """What the bootloader boots with this environment, and the environment it saves before booting.

    * mender_boot_part not one of parts (missing, garbage): boot A (parts[0]) and store it (with its
      _hex), as a freshly defaulted environment would have it.
    * upgrade_available != "1": boot mender_boot_part; bootcount is left alone.
    * upgrade_available == "1": bootcount += 1 (U-Boot's bootcount_env); if bootlimit is not 0 and
      bootcount > bootlimit, run altbootcmd: mender_boot_part (and _hex) := the other partition,
      upgrade_available := 0, and boot that; otherwise boot mender_boot_part (the trial boot).
    """
    after = dict(env)
    a, b = parts
    part = env.get("mender_boot_part")
    notes = []
    if part not in parts:
        notes.append(f"mender_boot_part={part!r} is not one of {list(parts)}: falling back to A ({a})")
        part = a
        after["mender_boot_part"] = part
        after["mender_boot_part_hex"] = format(int(part), "x")
    if env.get("upgrade_available") == "1":
        count = _ulong(env.get("bootcount")) + 1
        after["bootcount"] = str(count)
        if bootlimit and count > bootlimit:
            other = b if part == a else a
            notes.append(f"upgrade_available=1, bootcount {count} > bootlimit {bootlimit}: "
                         f"altbootcmd rolls back from {part} to {other}")
            part = other
            after["mender_boot_part"] = part
            after["mender_boot_part_hex"] = format(int(part), "x")
            after["upgrade_available"] = "0"
        else:
            notes.append(f"upgrade_available=1, bootcount {count} <= bootlimit {bootlimit}: "
                         f"trial boot of {part}")
    else:
        notes.append(f"boot mender_boot_part={part}")
    return Decision(part, after, "; ".join(notes))
