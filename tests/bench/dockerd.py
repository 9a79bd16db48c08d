"""A private Docker Engine that a test run owns from start to teardown."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Sequence

from .system import (
    BenchError,
    file_tail,
    kill_processes_under,
    pid_alive,
    remove_tree,
    run,
    terminate,
    unmount_all_under,
    wait_until,
)

# Every container and image the bench makes carries this label, so leftovers can be found.
LABEL = "io.meta-mender-composable.bench"

# sun_path holds 107 characters plus NUL; containerd's longest socket sits below the exec root.
_MAX_SOCKET_PATH = 107

_STORAGE_DRIVERS = ("overlay2", "vfs")


def docker_cli() -> tuple[str, dict[str, str]]:
    """The docker client to use and the environment it needs to talk to docker.io's 20.10 engine.

    docker.io's own client is preferred: it speaks the daemon's API version natively. Any other
    (e.g. a newer client in /usr/local/bin) is pinned to API 1.41 so it never asks for features
    the 20.10 engine lacks.
    """
    if Path("/usr/bin/docker").exists():
        return "/usr/bin/docker", {}
    other = shutil.which("docker")
    if other is None:
        raise BenchError("no docker client found (Debian package docker.io); run scripts/setup")
    return other, {"DOCKER_API_VERSION": "1.41"}


class Dockerd:
    """Start a private dockerd under `run_dir`; on exit tear it down and delete `run_dir`, mounts and all.

    run_dir defaults to a new directory in TMPDIR: pytest's tmp_path is usually too long for the unix
    sockets containerd makes below the exec root.

    storage_driver: None tries overlay2 and falls back to vfs when the daemon cannot start with it
    (e.g. when run_dir is itself on overlayfs); BENCH_STORAGE_DRIVER overrides the choice.
    """

    def __init__(self, run_dir: str | os.PathLike | None = None, *, storage_driver: str | None = None,
                 start_timeout: float = 60):
        self.run_dir = Path(run_dir or tempfile.mkdtemp(prefix="bench-dockerd-")).resolve()
        self.socket = self.run_dir / "docker.sock"
        self.host = f"unix://{self.socket}"
        self.data_root = self.run_dir / "data"
        self.exec_root = self.run_dir / "exec"
        self.pidfile = self.run_dir / "dockerd.pid"
        self.log_path = self.run_dir / "dockerd.log"
        self.client_config = self.run_dir / "client-config"
        self.requested_driver = storage_driver or os.environ.get("BENCH_STORAGE_DRIVER") or None
        self.storage_driver: str | None = None
        self.start_timeout = start_timeout
        self._proc: subprocess.Popen | None = None
        self._cli, cli_env = docker_cli()
        # DOCKER_CONFIG keeps `docker login` and friends out of the host user's ~/.docker.
        self._cli_env = {**os.environ, **cli_env, "DOCKER_HOST": self.host,
                         "DOCKER_CONFIG": str(self.client_config)}

    # -- lifecycle ---------------------------------------------------------------------------

    def __enter__(self) -> "Dockerd":
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def start(self) -> None:
        if len(str(self.exec_root / "containerd" / "containerd-debug.sock")) > _MAX_SOCKET_PATH:
            raise BenchError(
                f"run dir {self.run_dir} is too long for the daemon's unix sockets (107 characters at "
                "most); give Dockerd a shorter run dir, or none to get one from TMPDIR"
            )
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.client_config.mkdir(exist_ok=True)
        drivers = [self.requested_driver] if self.requested_driver else list(_STORAGE_DRIVERS)
        failures = []
        for driver in drivers:
            error = self._start_with(driver)
            if error is None:
                self.storage_driver = driver
                return
            failures.append(f"--- with storage driver {driver} ---\n{error}")
            self._stop_daemon()
            self._wipe_state()
        raise BenchError(
            f"private dockerd under {self.run_dir} did not start; daemon log tail:\n" + "\n".join(failures)
        )

    def _start_with(self, driver: str) -> str | None:
        """Start the daemon; None when it answers, else what went wrong with the log's tail."""
        config = self.run_dir / "daemon.json"
        # Own config file so the host's /etc/docker/daemon.json never applies, and the libtrust
        # identity key lands here instead of in the host's /etc/docker.
        config.write_text(json.dumps({"deprecated-key-path": str(self.run_dir / "key.json")}))
        argv = [
            shutil.which("dockerd") or "/usr/sbin/dockerd",
            "--host", self.host,
            "--config-file", str(config),
            "--data-root", str(self.data_root),
            "--exec-root", str(self.exec_root),
            "--pidfile", str(self.pidfile),
            "--storage-driver", driver,
            # No bridge and no firewall or sysctl changes: the host's network stays untouched.
            "--bridge=none", "--iptables=false", "--ip6tables=false", "--ip-forward=false",
            "--ip-masq=false", "--userland-proxy=false",
        ]
        log = open(self.log_path, "ab")
        try:
            log.write(f"\n=== starting: {' '.join(argv)}\n".encode())
            log.flush()
            self._proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                          start_new_session=True)
        finally:
            log.close()

        def answers() -> bool:
            if self._proc.poll() is not None:
                return True
            return self._version_ok()

        wait_until(answers, timeout=self.start_timeout, interval=0.1)
        if self._proc.poll() is not None:
            return f"dockerd exited with {self._proc.returncode}\n{file_tail(self.log_path)}"
        if not self._version_ok():
            return f"no answer on {self.socket} within {self.start_timeout}s\n{file_tail(self.log_path)}"
        return None

    def _version_ok(self) -> bool:
        if not self.socket.exists():
            return False
        result = subprocess.run([self._cli, "version", "--format", "{{.Server.Version}}"],
                                env=self._cli_env, capture_output=True, timeout=10)
        return result.returncode == 0

    def stop(self) -> None:
        """Remove containers, stop the daemon, unmount and delete the run dir. Safe to call twice."""
        try:
            if self._proc is not None and self._proc.poll() is None and self.socket.exists():
                try:
                    self.remove_all_containers()
                except Exception:
                    pass  # the daemon is about to be killed anyway; its mounts are handled below
            self._stop_daemon()
        finally:
            # containerd and its shims are children dockerd may leave behind when killed.
            kill_processes_under(self.run_dir)
            remove_tree(self.run_dir)

    def _stop_daemon(self) -> None:
        if self._proc is None:
            return
        if self._proc.poll() is None:
            terminate(self._proc.pid, grace=20)
        self._proc.wait()
        self._proc = None

    def _wipe_state(self) -> None:
        """Drop what the daemon wrote, but keep its log for post-mortems."""
        unmount_all_under(self.run_dir)
        for path in (self.data_root, self.exec_root):
            if path.exists():
                remove_tree(path)
        for path in (self.socket, self.pidfile):
            path.unlink(missing_ok=True)

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None and pid_alive(self._proc.pid) else None

    # -- using it ----------------------------------------------------------------------------

    def docker(self, *args: str, check: bool = True, timeout: float = 120, input: str | bytes | None = None,
               text: bool = True) -> subprocess.CompletedProcess:
        """Run the docker CLI against this daemon (its own DOCKER_CONFIG too)."""
        return run([self._cli, *args], check=check, env=self._cli_env, timeout=timeout, input=input, text=text)

    @property
    def env(self) -> dict[str, str]:
        """Environment for any other client of this daemon (DOCKER_HOST, DOCKER_CONFIG)."""
        return {"DOCKER_HOST": self.host, "DOCKER_CONFIG": str(self.client_config)}

    def ids(self, *args: str) -> list[str]:
        return self.docker(*args).stdout.split()

    def remove_all_containers(self) -> None:
        containers = self.ids("ps", "-aq")
        if containers:
            self.docker("rm", "-f", "-v", *containers)

    def reset(self) -> None:
        """Give the next test an empty engine: no containers, images, volumes or custom networks."""
        self.remove_all_containers()
        images = self.ids("images", "-aq")
        if images:
            self.docker("rmi", "-f", *sorted(set(images)), check=False)
            left = self.ids("images", "-aq")
            if left:
                raise BenchError(f"images {left} survived `docker rmi -f` on {self.host}")
        self.docker("volume", "prune", "-f")
        self.docker("network", "prune", "-f")
        # Credentials from a previous test's `docker login` must not leak into the next one.
        for entry in self.client_config.iterdir():
            if entry.is_dir():
                shutil.rmtree(entry)
            else:
                entry.unlink()

    def run_container(self, image: str, *cmd: str, network: str = "none", args: Sequence[str] = (),
                      check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess:
        """`docker run --rm` a labelled container and return its output."""
        return self.docker("run", "--rm", "--label", LABEL, "--network", network, *args, image, *cmd,
                           check=check, timeout=timeout)
