"""A private dockerd with bridge networking in a network namespace of its own: user-defined networks,
aliases and published ports work, and the host's network configuration never changes."""

from __future__ import annotations

import errno
import json
import os
import shutil
import socket
import subprocess

import pytest

import bench
from bench.dockerd import host_network_snapshot, netns_holders, netns_inode
from bench.system import CommandError, free_port, pid_alive, processes_referencing, wait_until

pytestmark = pytest.mark.bench

STACK_LABEL = "io.meta-mender-composable.stack"

# Serves $NAME on port 80 until stopped.
SERVE_NAME = 'mkdir -p /www && echo "$NAME" > /www/index.html && exec httpd -f -p 80 -h /www'


def _serve(daemon: bench.Dockerd, image: str, network: str, name: str, *args: str) -> str:
    return daemon.docker("run", "-d", "--name", name, "--label", bench.LABEL, "--label", f"{STACK_LABEL}=demo",
                         "--network", network, "--network-alias", name, "-e", f"NAME={name}", *args,
                         image, "sh", "-c", SERVE_NAME).stdout.strip()


def _get_in_netns(daemon: bench.Dockerd, port: int) -> tuple[int, bytes]:
    """GET the published port from inside the daemon's namespace, waiting for the server to come up."""
    answer: list[tuple[int, bytes]] = []
    errors: list[str] = []

    def answered() -> bool:
        try:
            answer.append(daemon.http_get_in_netns(port, timeout=2))
            return True
        except CommandError as e:
            errors.append(e.stderr.strip().splitlines()[-1] if e.stderr.strip() else str(e))
            return False

    assert wait_until(answered, timeout=15, interval=0.1), f"127.0.0.1:{port} never answered: {errors[-3:]}"
    return answer[0]


def _host_refuses(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(2)
        return s.connect_ex(("127.0.0.1", port)) == errno.ECONNREFUSED


def test_user_defined_network_with_aliases_and_a_published_port(bridged_dockerd):
    daemon = bridged_dockerd
    bench.make_busybox_image(daemon, "bench/web:1")
    daemon.docker("network", "create", "--driver", "bridge", "--label", f"{bench.LABEL}=1",
                  "--label", f"{STACK_LABEL}=demo", "demo_default")
    port = free_port()  # free on the host now; published in the daemon's namespace only

    _serve(daemon, "bench/web:1", "demo_default", "api")
    _serve(daemon, "bench/web:1", "demo_default", "web", "-p", f"{port}:80")

    network = json.loads(daemon.docker("network", "inspect", "demo_default").stdout)[0]
    assert network["Driver"] == "bridge"
    assert network["Labels"] == {bench.LABEL: "1", STACK_LABEL: "demo"}
    assert sorted(c["Name"] for c in network["Containers"].values()) == ["api", "web"]
    assert _get_in_netns(daemon, port) == (200, b"web\n")
    # Each reaches the other by its alias, through the engine's DNS on the user-defined network.
    # (No `wget -T`: busybox-static 1.35's wget segfaults with it.)
    assert daemon.docker("exec", "web", "wget", "-q", "-O", "-", "http://api/").stdout == "api\n"
    assert daemon.docker("exec", "api", "wget", "-q", "-O", "-", "http://web/").stdout == "web\n"
    assert daemon.run_container("bench/web:1", "wget", "-q", "-O", "-", "http://api/",
                                network="demo_default").stdout == "api\n"
    # The namespace's iptables isolate networks: from another one, api's address does not answer.
    api_ip = next(c["IPv4Address"] for c in network["Containers"].values() if c["Name"] == "api").split("/")[0]
    assert daemon.run_container("bench/web:1", "nc", "-w", "1", api_ip, "80", network="demo_default").returncode == 0
    daemon.docker("network", "create", "--label", f"{bench.LABEL}=1", "other_default")
    isolated = daemon.run_container("bench/web:1", "nc", "-w", "1", api_ip, "80", network="other_default",
                                    check=False)
    assert isolated.returncode != 0 and "timed out" in isolated.stderr
    assert _host_refuses(port), f"127.0.0.1:{port} answered on the host: the port was published there"


def test_namespace_and_everything_in_it_vanish_on_stop_and_the_host_never_changes():
    before = host_network_snapshot()
    with bench.Dockerd(network_namespace=True) as daemon:
        bench.make_busybox_image(daemon, "bench/web:1")
        daemon.docker("network", "create", "--label", f"{bench.LABEL}=1", "demo_default")
        _serve(daemon, "bench/web:1", "demo_default", "web", "-p", "8080:80")
        assert _get_in_netns(daemon, 8080) == (200, b"web\n")
        inode = daemon.netns_inode
        assert inode != netns_inode()
        links = daemon.netns_run(["ip", "-o", "link", "show"]).stdout
        rules = daemon.netns_run(["iptables-save"]).stdout
        forwarding = daemon.netns_run(["cat", "/proc/sys/net/ipv4/ip_forward"]).stdout
        # A stray process in the namespace whose command line names nothing of the daemon's, as an
        # orphaned docker-proxy would be: stop() must end it, or the namespace would live on.
        stray = subprocess.Popen([shutil.which("nsenter"), f"--net={daemon.netns_path}", "--", "sleep", "300"],
                                 start_new_session=True)
        assert wait_until(lambda: netns_inode(stray.pid) == inode, timeout=5)
        pids = processes_referencing(daemon.run_dir) + [stray.pid]
        during = host_network_snapshot()

    after = host_network_snapshot()
    # What the daemon made existed, but only inside its namespace.
    assert " docker0:" in links and " br-" in links and " veth" in links, links
    assert "-A DOCKER" in rules and "--dport 8080" in rules and "MASQUERADE" in rules, rules
    assert forwarding.strip() == "1"
    assert during == before
    assert after == before
    assert netns_holders(inode) == []
    assert [pid for pid in pids if pid_alive(pid)] == []
    stray.wait(timeout=5)
    assert not daemon.run_dir.exists()


def test_default_daemon_still_shares_the_host_namespace_without_a_bridge(dockerd):
    assert dockerd.network_namespace is False
    assert os.stat(f"/proc/{dockerd.pid}/ns/net").st_ino == netns_inode()
    networks = dockerd.docker("network", "ls", "--format", "{{.Name}}").stdout.split()
    assert "bridge" not in networks
    with pytest.raises(bench.BenchError, match="network_namespace=True"):
        dockerd.netns_run(["true"])
