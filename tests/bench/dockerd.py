"""A private Docker Engine that a test run owns from start to teardown."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
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

# What network_namespace=True needs on the host, with the Debian package that ships it.
NETNS_COMMANDS = {
    "unshare": "util-linux",
    "nsenter": "util-linux",
    "ip": "iproute2",
    "iptables": "iptables",
    "docker-proxy": "docker.io",
}

# Fetch a URL and print `STATUS\nBODY`; run with the bench's python under nsenter (see http_get_in_netns).
_HTTP_GET = """
import sys, urllib.error, urllib.request
opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # never an http_proxy from the env
try:
    with opener.open(sys.argv[1], timeout=float(sys.argv[2])) as r:
        status, body = r.status, r.read()
except urllib.error.HTTPError as e:
    status, body = e.code, e.read()
sys.stdout.buffer.write(b"%d\\n" % status + body)
"""


def _which(cmd: str) -> str | None:
    found = shutil.which(cmd)
    if found is None:
        for directory in ("/usr/sbin", "/sbin", "/usr/bin"):
            if os.access(Path(directory, cmd), os.X_OK):
                return str(Path(directory, cmd))
    return found


def netns_inode(pid: int | str = "self") -> int | None:
    """Inode of the network namespace `pid` lives in (what /proc/PID/ns/net points at); None if gone."""
    try:
        return os.stat(f"/proc/{pid}/ns/net").st_ino
    except OSError:
        return None


def netns_holders(inode: int) -> list[str]:
    """What keeps network namespace `inode` alive: processes in it, open fds on it, nsfs mounts of it.

    Empty means the kernel has destroyed it, and with it every bridge, veth and iptables rule inside.
    """
    link = f"net:[{inode}]"
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        if netns_inode(entry.name) == inode:
            found.append(f"process {entry.name} ({_cmdline(entry)}) lives in it")
        try:
            fds = list((entry / "fd").iterdir())
        except OSError:
            continue
        for fd in fds:
            try:
                if os.readlink(fd) == link:
                    found.append(f"process {entry.name} ({_cmdline(entry)}) holds it open as fd {fd.name}")
            except OSError:
                pass
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        if link in line.split()[3]:
            found.append(f"mounted at {line.split()[4]}")
    return found


def _cmdline(proc_dir: Path) -> str:
    try:
        return proc_dir.joinpath("cmdline").read_bytes().replace(b"\0", b" ").decode("utf-8", "replace").strip()
    except OSError:
        return "?"


def host_network_snapshot() -> dict[str, str]:
    """The host's network configuration as text, to compare before and after a bridged daemon ran.

    Links, addresses, routes and policy rules; every iptables table (nft and legacy backends, IPv4 and
    IPv6; the -save tools only read, they never instantiate a table) and the whole nft ruleset when
    `nft` is installed; the forwarding, route_localnet and br_netfilter sysctls; named namespaces.
    Packet counters are blanked: traffic on the host changes them and says nothing about configuration.
    """
    commands = {
        "links": ["ip", "-d", "link", "show"],
        "addresses": ["ip", "addr", "show"],
        "routes4": ["ip", "-4", "route", "show", "table", "all"],
        "routes6": ["ip", "-6", "route", "show", "table", "all"],
        "rules4": ["ip", "-4", "rule", "show"],
        "rules6": ["ip", "-6", "rule", "show"],
        "netns": ["ip", "netns", "list"],
        "iptables-nft": ["iptables-nft-save"],
        "ip6tables-nft": ["ip6tables-nft-save"],
        "iptables-legacy": ["iptables-legacy-save"],
        "ip6tables-legacy": ["ip6tables-legacy-save"],
        "nft": ["nft", "list", "ruleset"],
    }
    snapshot = {}
    for name, argv in commands.items():
        tool = _which(argv[0])
        if tool is None:
            snapshot[name] = f"({argv[0]} not installed)"
            continue
        result = subprocess.run([tool, *argv[1:]], capture_output=True, text=True, timeout=30)
        text = result.stdout + (f"\n(exit {result.returncode}) {result.stderr}" if result.returncode else "")
        text = "\n".join(line for line in text.splitlines() if not line.startswith("#"))  # -save timestamps
        text = re.sub(r"\[\d+:\d+\]", "[-:-]", text)
        text = re.sub(r"(expires|used) \d+sec", r"\1 -sec", text)
        snapshot[name] = text
    sysctls = ["net/ipv4/ip_forward", "net/ipv4/conf/all/forwarding", "net/ipv4/conf/all/route_localnet",
               "net/ipv6/conf/all/forwarding", "net/ipv6/conf/all/disable_ipv6"]
    bridge = Path("/proc/sys/net/bridge")
    sysctls += sorted(f"net/bridge/{p.name}" for p in bridge.iterdir()) if bridge.is_dir() else []
    for key in sysctls:
        try:
            snapshot[f"sysctl {key}"] = Path("/proc/sys", key).read_text().strip()
        except OSError:
            snapshot[f"sysctl {key}"] = "(absent)"
    return snapshot


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

    network_namespace: False (the default) runs the daemon in the host's network namespace with no
    bridge and no iptables, so containers get only `--network none` or `host`. True runs it in a new
    network namespace of its own (`unshare --net`, loopback up) with bridge networking, iptables,
    IP forwarding, masquerading and the userland proxy all enabled there: user-defined networks,
    aliases and published ports work, and every bridge, veth, iptables rule and sysctl the daemon
    touches lives in that namespace, which the kernel destroys when its last process is gone. The API
    socket is a file, so clients on the host reach it as usual; to reach a published port, run the
    client inside the namespace: `netns_run([...])` or `http_get_in_netns(port)`.
    """

    def __init__(self, run_dir: str | os.PathLike | None = None, *, storage_driver: str | None = None,
                 start_timeout: float = 60, network_namespace: bool = False):
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
        self.network_namespace = network_namespace
        # Inodes of the namespaces the daemon ran in (one per start attempt); stop() checks them gone.
        self._netns_inodes: list[int] = []
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
        if self.network_namespace:
            missing = [f"'{cmd}' (Debian package {pkg})" for cmd, pkg in NETNS_COMMANDS.items() if _which(cmd) is None]
            if missing:
                raise BenchError("a private dockerd in its own network namespace needs " + ", ".join(missing)
                                 + "; run scripts/setup")
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
            self._end_netns_processes()
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
        ]
        env = None
        if self.network_namespace:
            # Bridge, NAT and forwarding in the daemon's own network namespace only. The userland proxy
            # makes a published port answer on 127.0.0.1 inside the namespace without route_localnet.
            argv += ["--iptables=true", "--ip6tables=false", "--ip-forward=true", "--ip-masq=true",
                     "--userland-proxy=true", "--userland-proxy-path", _which("docker-proxy")]
            # With firewalld running, dockerd would hand its rules to firewalld over the system bus,
            # and firewalld would apply them to the host. An unreachable bus makes it use iptables here.
            env = {**os.environ, "DBUS_SYSTEM_BUS_ADDRESS": f"unix:path={self.run_dir}/no-system-bus"}
            # `unshare --net` without --fork execs: sh, then dockerd, keep the PID Popen returns.
            argv = [_which("unshare"), "--net", "--", "/bin/sh", "-c",
                    f'"{_which("ip")}" link set lo up && exec "$@"', "dockerd-in-netns", *argv]
        else:
            # No bridge and no firewall or sysctl changes: the host's network stays untouched.
            argv += ["--bridge=none", "--iptables=false", "--ip6tables=false", "--ip-forward=false",
                     "--ip-masq=false", "--userland-proxy=false"]
        log = open(self.log_path, "ab")
        try:
            log.write(f"\n=== starting: {' '.join(argv)}\n".encode())
            log.flush()
            self._proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                          start_new_session=True, env=env)
        finally:
            log.close()

        def answers() -> bool:
            if self._proc.poll() is not None:
                return True
            if self.network_namespace:
                self._note_netns()
            return self._version_ok()

        wait_until(answers, timeout=self.start_timeout, interval=0.1)
        if self.network_namespace:
            self._note_netns()
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

    def _note_netns(self) -> None:
        """Remember the daemon's own namespace once it has left the host's (unshare runs right after exec)."""
        inode = netns_inode(self._proc.pid) if self._proc is not None else None
        if inode is not None and inode != netns_inode() and inode not in self._netns_inodes:
            self._netns_inodes.append(inode)

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
            # So may docker-proxy, whose command line does not name the run dir.
            self._end_netns_processes()
            remove_tree(self.run_dir)
        held = {inode: netns_holders(inode) for inode in self._netns_inodes}
        held = {inode: holders for inode, holders in held.items() if holders}
        if held:
            raise BenchError(f"the network namespace of the dockerd under {self.run_dir} outlived it: {held}")
        self._netns_inodes = []

    def _end_netns_processes(self) -> None:
        """Terminate whatever still runs in the daemon's namespace; never anything in the host's."""
        host = netns_inode()
        for inode in self._netns_inodes:
            if inode == host:
                continue
            for entry in Path("/proc").iterdir():
                if entry.name.isdigit() and int(entry.name) != os.getpid() and netns_inode(entry.name) == inode:
                    terminate(int(entry.name), grace=5)

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

    # -- its network namespace (network_namespace=True) -----------------------------------------

    @property
    def netns_inode(self) -> int:
        """Inode of the daemon's network namespace (compare with /proc/PID/ns/net, `netns_holders`)."""
        self._require_netns()
        return self._netns_inodes[-1]

    @property
    def netns_path(self) -> str:
        """/proc/PID/ns/net of the running daemon: what `nsenter --net=` and `ip netns attach` take."""
        self._require_netns()
        pid = self.pid
        if pid is None or netns_inode(pid) != self._netns_inodes[-1]:
            raise BenchError(f"the dockerd under {self.run_dir} is not running; its network namespace is gone")
        return f"/proc/{pid}/ns/net"

    def _require_netns(self) -> None:
        if not self.network_namespace:
            raise BenchError("this dockerd shares the host's network namespace; start it with network_namespace=True")
        if not self._netns_inodes:
            raise BenchError(f"the dockerd under {self.run_dir} has not entered its network namespace (not started?)")

    def netns_run(self, argv: Sequence[str], *, check: bool = True, timeout: float = 60,
                  input: str | bytes | None = None, text: bool = True) -> subprocess.CompletedProcess:
        """Run a host command inside the daemon's network namespace (and only that: same files, PIDs)."""
        return run([_which("nsenter"), f"--net={self.netns_path}", "--", *argv], check=check, timeout=timeout,
                   input=input, text=text)

    def http_get_in_netns(self, port: int, path: str = "/", *, host: str = "127.0.0.1",
                          timeout: float = 5) -> tuple[int, bytes]:
        """GET http://host:port/path from inside the namespace, e.g. a published port; (status, body).

        Raises CommandError when nothing answers (connection refused, timeout).
        """
        url = f"http://{host}:{port}{path}"
        out = self.netns_run([sys.executable, "-c", _HTTP_GET, url, str(timeout)], timeout=timeout + 30,
                             text=False).stdout
        status, _, body = out.partition(b"\n")
        return int(status), body

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
        # A built image's parents (the builder's intermediate images) refuse removal while their
        # child is there, even forced: a few passes, children first by the engine's own refusals.
        left = self.ids("images", "-aq")
        for _ in range(4):
            if not left:
                break
            self.docker("rmi", "-f", *sorted(set(left)), check=False)
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
