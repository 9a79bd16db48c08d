"""Reading what a Mender artifact (format version 3) says about itself, and writing the small
module-image artifacts the runtime scenarios make themselves with the real ``mender-artifact``.

An artifact is a tar: ``version``, ``manifest`` (sha256 of every other member), ``header.tar.gz``
(``header-info``, ``headers/NNNN/type-info`` with the payload's provides, depends and clears, and
``headers/NNNN/meta-data``), then ``data/NNNN.tar.gz`` with the payload files. The scenarios read
their expectations from the artifacts they install, so the same scenario checks an artifact built
by BitBake (demo-app from recipes-core/demo-apps) and one written locally by the generators.

Plain Python 3.8 (the oldest Python a scarthgap build host may have); no BitBake, no pytest.
"""

from __future__ import annotations

import hashlib
import io
import json
import lzma
import subprocess
import tarfile
from dataclasses import dataclass, field
from typing import Dict, List, Mapping, Optional, Sequence


class ArtifactError(ValueError):
    """The file is not a Mender artifact this reader understands; the message says why."""


@dataclass
class Payload:
    type: str
    provides: Dict[str, str] = field(default_factory=dict)
    depends: Dict[str, object] = field(default_factory=dict)
    clears: List[str] = field(default_factory=list)
    meta_data: Optional[dict] = None


@dataclass
class Artifact:
    path: str
    name: str
    device_types: List[str]
    depends: Dict[str, object]
    payloads: List[Payload]

    @property
    def payload(self) -> Payload:
        if len(self.payloads) != 1:
            raise ArtifactError(f"{self.path}: {len(self.payloads)} payloads, expected exactly one")
        return self.payloads[0]


def _open_compressed(name: str, data: bytes) -> tarfile.TarFile:
    if name.endswith(".gz"):
        return tarfile.open(fileobj=io.BytesIO(data), mode="r:gz")
    if name.endswith(".xz"):
        return tarfile.open(fileobj=io.BytesIO(lzma.decompress(data)), mode="r:")
    if name.endswith(".tar"):
        return tarfile.open(fileobj=io.BytesIO(data), mode="r:")
    raise ArtifactError(f"{name}: compression not readable here (gzip, xz and none are); "
                        "write the artifact with mender-artifact --compression gzip")


def _members(path: str) -> Dict[str, bytes]:
    """Every regular member of the artifact's outer tar, by name."""
    try:
        with tarfile.open(path, mode="r:") as outer:
            out = {}
            for member in outer:
                if member.isfile():
                    f = outer.extractfile(member)
                    out[member.name] = f.read() if f else b""
            return out
    except (tarfile.TarError, OSError) as e:
        raise ArtifactError(f"{path}: not a readable Mender artifact (an uncompressed tar): {e}") from e


def _one(members: Mapping[str, bytes], prefix: str, path: str) -> tuple:
    found = [(n, d) for n, d in members.items() if n.startswith(prefix)]
    if len(found) != 1:
        raise ArtifactError(f"{path}: expected one {prefix}* member, found {sorted(n for n, _ in found)}")
    return found[0]


def read(path: str) -> Artifact:
    """Name, device types and each payload's type, provides, depends, clears and meta-data."""
    members = _members(str(path))
    version = json.loads(members.get("version", b"{}") or b"{}")
    if version.get("format") != "mender" or version.get("version") != 3:
        raise ArtifactError(f"{path}: artifact format {version!r}, expected mender version 3")
    header_name, header_data = _one(members, "header.tar", str(path))
    headers: Dict[str, bytes] = {}
    with _open_compressed(header_name, header_data) as header:
        for member in header:
            if member.isfile():
                f = header.extractfile(member)
                headers[member.name] = f.read() if f else b""
    info = json.loads(headers["header-info"])
    payloads = []
    for i, entry in enumerate(info.get("payloads") or []):
        type_info = json.loads(headers.get(f"headers/{i:04d}/type-info", b"{}") or b"{}")
        meta_raw = headers.get(f"headers/{i:04d}/meta-data")
        payloads.append(Payload(
            type=type_info.get("type") or entry.get("type") or "",
            provides=dict(type_info.get("artifact_provides") or {}),
            depends=dict(type_info.get("artifact_depends") or {}),
            clears=list(type_info.get("clears_artifact_provides") or []),
            meta_data=json.loads(meta_raw) if meta_raw and meta_raw.strip() else None,
        ))
    depends = dict(info.get("artifact_depends") or {})
    device_types = depends.get("device_type") or []
    return Artifact(path=str(path), name=(info.get("artifact_provides") or {}).get("artifact_name", ""),
                    device_types=list(device_types), depends=depends, payloads=payloads)


def payload_files(path: str, index: int = 0) -> Dict[str, bytes]:
    """The payload files of payload `index` (``data/NNNN.tar*``), by name."""
    members = _members(str(path))
    name, data = _one(members, f"data/{index:04d}.tar", str(path))
    out = {}
    with _open_compressed(name, data) as files:
        for member in files:
            if member.isfile():
                f = files.extractfile(member)
                out[member.name] = f.read() if f else b""
    return out


def tree_digests(archive: bytes) -> Dict[str, str]:
    """``{relative path: sha256}`` of the regular files in an uncompressed tar (a persistent-app
    payload), which is what the device's tree must hold after installing it."""
    out = {}
    with tarfile.open(fileobj=io.BytesIO(archive), mode="r:") as tar:
        for member in tar:
            if member.isfile():
                f = tar.extractfile(member)
                name = member.name[2:] if member.name.startswith("./") else member.name
                out[name] = hashlib.sha256(f.read() if f else b"").hexdigest()
    return out


def write_module_image(mender_artifact: Sequence[str], out: str, *, type: str, name: str,
                       device_types: Sequence[str], files: Sequence[str],
                       provides: Mapping[str, str], clears: Sequence[str]) -> str:
    """``mender-artifact write module-image`` with exactly the given provides and clears (no
    default software version, no default clears), for the scenarios' stand-in artifacts."""
    argv = list(mender_artifact) + ["write", "module-image", "-T", type, "-n", name, "-o", str(out),
                                    "--no-default-software-version", "--no-default-clears-provides"]
    for device_type in device_types:
        argv += ["-t", device_type]
    for f in files:
        argv += ["-f", str(f)]
    for key, value in provides.items():
        argv += ["--provides", f"{key}:{value}"]
    for clear in clears:
        argv += ["--clears-provides", clear]
    proc = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True)
    if proc.returncode != 0:
        raise ArtifactError(f"`{' '.join(argv)}` exited {proc.returncode}:\n{proc.stdout}")
    return str(out)
