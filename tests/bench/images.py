"""Container images made locally (nothing can be pulled here) and pushed to the bench registry."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path
from typing import Mapping, Sequence

from .dockerd import LABEL, Dockerd
from .registry import Registry
from .system import BenchError

BUSYBOX = Path("/bin/busybox")

APPLETS = (
    "sh", "sleep", "echo", "cat", "ls", "true", "false", "wget", "nc", "httpd", "touch", "mkdir",
    "date", "env", "grep", "ps", "rm", "kill", "test", "[", "id", "hostname", "head", "tail",
    "printf", "pwd", "mv", "cp", "ln", "chmod", "wc", "sed", "seq", "stat", "uname",
)

# Fixed mtimes keep the layer, hence the image, identical for identical input.
_MTIME = 0


def _add_dir(tar: tarfile.TarFile, name: str, mode: int = 0o755) -> None:
    info = tarfile.TarInfo(name)
    info.type = tarfile.DIRTYPE
    info.mode = mode
    info.mtime = _MTIME
    tar.addfile(info)


def _add_file(tar: tarfile.TarFile, name: str, data: bytes, mode: int = 0o644) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = mode
    info.mtime = _MTIME
    tar.addfile(info, io.BytesIO(data))


def busybox_rootfs_tar(extra_files: Mapping[str, bytes | str] | None = None) -> bytes:
    """A root filesystem tar: static busybox, its applet links, and `extra_files` {path: content}."""
    if not BUSYBOX.exists():
        raise BenchError(f"{BUSYBOX} not found: install busybox-static (scripts/setup)")
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for d in ("bin", "etc", "tmp", "var", "root", "proc", "sys", "dev"):
            _add_dir(tar, d, 0o1777 if d == "tmp" else 0o755)
        _add_file(tar, "bin/busybox", BUSYBOX.read_bytes(), 0o755)
        for applet in APPLETS:
            link = tarfile.TarInfo(f"bin/{applet}")
            link.type = tarfile.SYMTYPE
            link.linkname = "busybox"
            link.mtime = _MTIME
            tar.addfile(link)
        # So that `id`, `ps` and user lookups inside containers name root instead of failing.
        _add_file(tar, "etc/passwd", b"root:x:0:0:root:/root:/bin/sh\n")
        _add_file(tar, "etc/group", b"root:x:0:\n")
        made = {"bin", "etc", "tmp", "var", "root", "proc", "sys", "dev"}
        for path, content in sorted((extra_files or {}).items()):
            rel = path.lstrip("/")
            if not rel:
                raise ValueError(f"extra_files path {path!r} names the root, not a file")
            parts = rel.split("/")[:-1]
            for i in range(1, len(parts) + 1):
                d = "/".join(parts[:i])
                if d not in made:
                    _add_dir(tar, d)
                    made.add(d)
            data = content.encode() if isinstance(content, str) else content
            _add_file(tar, rel, data, 0o755 if rel.startswith("bin/") else 0o644)
    return buf.getvalue()


def make_busybox_image(dockerd: Dockerd, ref: str, *, cmd: Sequence[str] | None = None,
                       extra_files: Mapping[str, bytes | str] | None = None,
                       env: Mapping[str, str] | None = None) -> str:
    """Import a tiny busybox image as `ref` and return its image ID (`sha256:…`).

    Use extra_files (e.g. {"/etc/app-version": "1.0"}) to make images that differ. Containers from
    it run with `--network none` or `--network host`; the bench's daemon has no bridge.
    """
    changes = [f"LABEL {LABEL}=1"]
    if cmd is not None:
        changes.append(f"CMD {json.dumps(list(cmd))}")
    for key, value in (env or {}).items():
        if "=" in key or not key:
            raise ValueError(f"env key {key!r} is not a valid variable name")
        changes.append(f"ENV {key}={json.dumps(value)}")
    args = ["import"]
    for change in changes:
        args += ["--change", change]
    result = dockerd.docker(*args, "-", ref, input=busybox_rootfs_tar(extra_files), text=False)
    image_id = result.stdout.decode().strip()
    if not image_id.startswith("sha256:"):
        raise BenchError(f"`docker import` of {ref} printed {image_id!r}, expected an image ID sha256:…")
    return image_id


def login(dockerd: Dockerd, registry: Registry) -> None:
    """`docker login` to an authenticated registry; the credentials stay in the daemon's DOCKER_CONFIG."""
    if registry.user is None:
        raise ValueError(f"registry {registry.addr} has no auth; there is nothing to log in to")
    dockerd.docker("login", "--username", registry.user, "--password-stdin", registry.addr, input=registry.password)


def push(dockerd: Dockerd, registry: Registry, local_ref: str, repo: str, tag: str) -> str:
    """Tag `local_ref` as REGISTRY/repo:tag, push it, and return the repo digest (`sha256:…`).

    For an authenticated registry, logs in first.
    """
    if registry.user is not None:
        login(dockerd, registry)
    remote = f"{registry.addr}/{repo}"
    dockerd.docker("tag", local_ref, f"{remote}:{tag}")
    dockerd.docker("push", f"{remote}:{tag}", timeout=300)
    digests = json.loads(dockerd.docker("image", "inspect", "--format", "{{json .RepoDigests}}",
                                        f"{remote}:{tag}").stdout)
    for entry in digests or []:
        name, _, digest = entry.partition("@")
        if name == remote and digest.startswith("sha256:"):
            return digest
    raise BenchError(f"after pushing {remote}:{tag} the engine reports no repo digest for {remote}: {digests}")


def make_layered_image(dockerd: Dockerd, ref: str, base: str, files: Mapping[str, bytes], *,
                       cmd: Sequence[str] = ("sleep", "3600")) -> str:
    """Build `ref` as `base` plus one layer holding `files` (path in the image → bytes), with the
    engine's own builder (no network: FROM a local image, COPY only); returns its image ID."""
    dockerfile = [f"FROM {base}"]
    context = io.BytesIO()
    with tarfile.open(fileobj=context, mode="w") as tar:
        for n, (path, data) in enumerate(sorted(files.items())):
            _add_file(tar, f"f{n}", data)
            dockerfile.append(f"COPY f{n} {path}")
        dockerfile.append(f"CMD {json.dumps(list(cmd))}")
        _add_file(tar, "Dockerfile", ("\n".join(dockerfile) + "\n").encode())
    dockerd.docker("build", "-q", "-t", ref, "-", input=context.getvalue(), text=False)
    image_id = dockerd.docker("image", "inspect", "--format", "{{.Id}}", ref).stdout.strip()
    if not image_id.startswith("sha256:"):
        raise BenchError(f"`docker build` of {ref} left no image ID (got {image_id!r})")
    return image_id
