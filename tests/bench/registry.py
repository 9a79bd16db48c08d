"""A private Docker registry (distribution 2.x, Debian's docker-registry) on 127.0.0.1."""

from __future__ import annotations

import base64
import os
import secrets
import shutil
import subprocess
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

from .system import BenchError, file_tail, free_port, remove_tree, run, terminate, wait_until

# Never send the bench's loopback traffic through a proxy from the environment.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class Registry:
    """`docker-registry serve` with filesystem storage under `run_dir`, optionally behind htpasswd.

    The engine treats 127.0.0.0/8 registries as insecure by default, so plain HTTP push and pull
    work without daemon configuration. On exit the registry is stopped and `run_dir` deleted.
    """

    def __init__(self, run_dir: str | os.PathLike | None = None, *, user: str | None = None,
                 password: str | None = None, start_timeout: float = 30):
        if (user is None) != (password is None):
            raise ValueError("give both user and password for an authenticated registry, or neither")
        self.run_dir = Path(run_dir or tempfile.mkdtemp(prefix="bench-registry-")).resolve()
        self.user = user
        self.password = password
        self.start_timeout = start_timeout
        self.storage = self.run_dir / "storage"
        self.config_path = self.run_dir / "config.yml"
        self.log_path = self.run_dir / "registry.log"
        self.port: int | None = None
        self._proc: subprocess.Popen | None = None

    @property
    def addr(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.addr}"

    def __enter__(self) -> "Registry":
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def start(self) -> None:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.storage.mkdir(exist_ok=True)
        auth = ""
        if self.user is not None:
            htpasswd = self.run_dir / "htpasswd"
            run(["htpasswd", "-B", "-b", "-c", str(htpasswd), self.user, self.password])
            auth = f"auth:\n  htpasswd:\n    realm: bench\n    path: {htpasswd}\n"
        # A port picked by the kernel can be taken by someone else before the registry binds it.
        for _ in range(3):
            self.port = free_port()
            self.config_path.write_text(
                "version: 0.1\n"
                "log:\n  level: warn\n  accesslog:\n    disabled: true\n"
                "storage:\n"
                f"  filesystem:\n    rootdirectory: {self.storage}\n"
                "  delete:\n    enabled: true\n"
                f"http:\n  addr: {self.addr}\n  secret: {secrets.token_hex(16)}\n"
                + auth
            )
            with open(self.log_path, "ab") as log:
                self._proc = subprocess.Popen(
                    [shutil.which("docker-registry") or "/usr/bin/docker-registry", "serve", str(self.config_path)],
                    stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True,
                )
            wait_until(lambda: self._proc.poll() is not None or self._answers(), timeout=self.start_timeout)
            if self._proc.poll() is None and self._answers():
                return
            if self._proc.poll() is None or "address already in use" not in file_tail(self.log_path):
                break
        raise BenchError(
            f"docker-registry on {self.addr} did not answer GET /v2/ within {self.start_timeout}s; "
            f"log tail:\n{file_tail(self.log_path)}"
        )

    def _answers(self) -> bool:
        # 401 is the expected answer of a registry with auth; either way it is serving.
        return self.get("/v2/", auth=False)[0] in (200, 401)

    def get(self, path: str, *, auth: bool = True, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
        """GET from the registry API; (status, body), status 0 when nothing answered."""
        request = urllib.request.Request(self.url + path, headers=headers or {})
        if auth and self.user is not None:
            token = base64.b64encode(f"{self.user}:{self.password}".encode()).decode()
            request.add_header("Authorization", f"Basic {token}")
        try:
            with _OPENER.open(request, timeout=5) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as e:
            return e.code, e.read()
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            return 0, b""

    def stop(self) -> None:
        if self._proc is not None:
            if self._proc.poll() is None:
                terminate(self._proc.pid, grace=10)
            self._proc.wait()
            self._proc = None
        remove_tree(self.run_dir)

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None and self._proc.poll() is None else None
