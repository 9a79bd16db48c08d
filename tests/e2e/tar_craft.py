"""Tar archives written byte by byte, for the encodings an attacker can choose and Python's tarfile
will not produce on request: a member renamed by a PAX `path` record or a GNU long-name record
that holds a short name, a PAX `size` that disagrees with the header, ustar prefixes, symlinked
directories, and headers whose data is far larger than anything a reader should buffer (written
lazily, never held in memory).

Every helper returns bytes (or, for the huge ones, an iterator of chunks), so tests compose an
archive as a list of pieces."""

from __future__ import annotations

import tarfile
from pathlib import Path
from typing import Iterable, Iterator

BLOCK = 512


def _octal(value: int, width: int) -> bytes:
    return (b"%0*o" % (width - 1, value)) + b"\0"


def header(name: bytes | str, size: int = 0, *, kind: bytes = b"0", linkname: bytes | str = b"",
           prefix: bytes | str = b"", magic: bytes = b"ustar\x0000", mode: int = 0o644) -> bytes:
    """One 512-byte header block with a valid checksum. `magic` is the 8 bytes at offset 257
    (`ustar\\0` + `00` for POSIX, `ustar  \\0` for GNU)."""
    name = name.encode() if isinstance(name, str) else name
    linkname = linkname.encode() if isinstance(linkname, str) else linkname
    prefix = prefix.encode() if isinstance(prefix, str) else prefix
    if len(name) > 100 or len(linkname) > 100 or len(prefix) > 155:
        raise ValueError("field too long for a ustar header; use gnu_long_name or pax")
    h = bytearray(BLOCK)
    h[0:len(name)] = name
    h[100:108] = _octal(mode, 8)
    h[108:116] = _octal(0, 8)
    h[116:124] = _octal(0, 8)
    h[124:136] = _octal(size, 12)
    h[136:148] = _octal(0, 12)
    h[148:156] = b" " * 8
    h[156:157] = kind
    h[157:157 + len(linkname)] = linkname
    h[257:265] = magic
    h[345:345 + len(prefix)] = prefix
    h[148:156] = b"%06o\0 " % sum(h)
    return bytes(h)


def pad(data: bytes) -> bytes:
    return data + b"\0" * (-len(data) % BLOCK)


def member(name: bytes | str, data: bytes = b"", **kwargs) -> bytes:
    return header(name, len(data), **kwargs) + pad(data)


def symlink(name: str, target: str) -> bytes:
    return header(name, 0, kind=b"2", linkname=target, mode=0o777)


def directory(name: str) -> bytes:
    return header(name, 0, kind=b"5", mode=0o755)


def pax(records: dict[str, str | bytes], *, kind: bytes = b"x") -> bytes:
    """A PAX extended header ('x', or 'g' for a global one) with these records."""
    body = b""
    for key, value in records.items():
        value = value.encode() if isinstance(value, str) else value
        text = b" " + key.encode() + b"=" + value + b"\n"
        length = len(text) + 1
        while len(str(length).encode()) + len(text) != length:
            length = len(str(length).encode()) + len(text)
        body += str(length).encode() + text
    return member("PaxHeaders/x", body, kind=kind)


def gnu_long_name(name: str | bytes) -> bytes:
    """A GNU long-name record ('L') naming the member that follows."""
    name = name.encode() if isinstance(name, str) else name
    return member("././@LongLink", name + b"\0", kind=b"L", magic=b"ustar  \0")


def end() -> bytes:
    return b"\0" * (2 * BLOCK)


def huge_record(kind: bytes, size: int, fill: bytes = b"a") -> Iterator[bytes]:
    """A GNU long-name ('L') or PAX ('x') header announcing `size` bytes, then those bytes, made as
    they are read: a 1 GiB record never exists in memory. For 'x', the data is one syntactically
    valid record (`<size> comment=aaaa…\\n`)."""
    name = "././@LongLink" if kind == b"L" else "PaxHeaders/huge"
    magic = b"ustar  \0" if kind == b"L" else b"ustar\x0000"
    yield header(name, size, kind=kind, magic=magic)
    if kind == b"x":
        lead = b"%d comment=" % size
        yield lead
        left = size - len(lead) - 1
    else:
        left = size - 1
    chunk = fill * (1 << 20)
    while left > 0:
        n = min(left, len(chunk))
        yield chunk[:n]
        left -= n
    yield b"\n" if kind == b"x" else b"\0"
    yield b"\0" * (-size % BLOCK)


def write(path: Path, pieces: Iterable[bytes | Iterable[bytes]]) -> Path:
    """Writes the pieces (bytes, or iterators of chunks) to `path` as they come."""
    with open(path, "wb") as out:
        for piece in pieces:
            if isinstance(piece, (bytes, bytearray)):
                out.write(piece)
            else:
                for chunk in piece:
                    out.write(chunk)
    return path


def members_of(archive: Path) -> list[tuple[tarfile.TarInfo, bytes | None]]:
    """The members of a real archive (e.g. `docker save` output) with their data."""
    with tarfile.open(archive) as tar:
        return [(m, tar.extractfile(m).read() if m.isfile() else None) for m in tar.getmembers()]


def reencode(info: tarfile.TarInfo, data: bytes | None) -> bytes:
    """One member of a real archive as plain ustar/GNU bytes (Python's own encoder)."""
    head = info.tobuf(tarfile.GNU_FORMAT, "utf-8", "surrogateescape")
    return head + (pad(data) if data else b"")
