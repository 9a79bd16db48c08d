"""The bench proves itself: real engine, registry and Go client, isolated from the machine."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

import bench
from bench.system import mounts_under, pid_alive, processes_referencing

pytestmark = pytest.mark.bench

TRIVIAL_MODULE = """#!/bin/sh
# Logs every state it is called for; installs nothing.
echo "$1" >> /data/trivial-states.log
case "$1" in
    SupportsRollback) echo Yes ;;
    NeedsArtifactReboot) echo No ;;
esac
exit 0
"""


def _trivial_artifact(tmp_path: Path, *, name: str, version: str, depends=None) -> Path:
    payload = tmp_path / "payload.txt"
    payload.write_text(f"payload of {name}\n")
    return bench.mender_artifact_write_module(
        tmp_path / f"{name}.mender", type="trivial", name=name, device_type="qemux86-64", files=[payload],
        software_filesystem="data-partition", software_name="demo", software_version=version,
        clears=["data-partition.demo.*"], depends=depends,
    )


def _install_trivial_module(sandbox: bench.DeviceSandbox, tmp_path: Path) -> None:
    module = tmp_path / "trivial"
    module.write_text(TRIVIAL_MODULE)
    sandbox.install_module("trivial", module)


def test_private_daemon_runs_busybox_container_without_network(dockerd):
    image_id = bench.make_busybox_image(dockerd, "bench/hello:1", cmd=["echo", "hello from busybox"])

    assert image_id.startswith("sha256:")
    assert dockerd.run_container("bench/hello:1").stdout == "hello from busybox\n"
    info = json.loads(dockerd.docker("info", "--format", "{{json .}}").stdout)
    assert info["DockerRootDir"] == str(dockerd.data_root)
    assert info["Driver"] == dockerd.storage_driver


def test_busybox_image_carries_env_extra_files_and_runs_with_host_network(dockerd):
    bench.make_busybox_image(dockerd, "bench/app:1", env={"GREETING": "hi there"},
                             extra_files={"/etc/app-version": "1.0\n"})
    bench.make_busybox_image(dockerd, "bench/app:2", extra_files={"/etc/app-version": "2.0\n"})

    out = dockerd.run_container("bench/app:1", "sh", "-c", 'echo "$GREETING"; cat /etc/app-version',
                                network="host").stdout
    assert out == "hi there\n1.0\n"
    assert dockerd.run_container("bench/app:2", "cat", "/etc/app-version").stdout == "2.0\n"
    ids = {dockerd.docker("image", "inspect", "--format", "{{.Id}}", ref).stdout for ref in ("bench/app:1", "bench/app:2")}
    assert len(ids) == 2


def test_pushed_image_pulls_back_by_digest_into_a_fresh_daemon(dockerd, registry, dockerd_factory):
    bench.make_busybox_image(dockerd, "bench/app:1", extra_files={"/etc/app-version": "1.0\n"})

    digest = bench.push(dockerd, registry, "bench/app:1", "stacks/app", "v1")

    status, manifest = registry.get("/v2/stacks/app/manifests/v1",
                                    headers={"Accept": "application/vnd.docker.distribution.manifest.v2+json"})
    assert status == 200
    assert digest == "sha256:" + hashlib.sha256(manifest).hexdigest()
    fresh = dockerd_factory()
    assert fresh.ids("images", "-aq") == []
    fresh.docker("pull", f"{registry.addr}/stacks/app@{digest}")
    assert fresh.run_container(f"{registry.addr}/stacks/app@{digest}", "cat", "/etc/app-version").stdout == "1.0\n"


def test_registry_with_htpasswd_refuses_anonymous_and_accepts_login(dockerd, registry_factory):
    secured = registry_factory(user="fleet", password="s3cret")
    bench.make_busybox_image(dockerd, "bench/app:1")

    digest = bench.push(dockerd, secured, "bench/app:1", "private/app", "v1")

    assert secured.get("/v2/", auth=False)[0] == 401
    assert secured.get(f"/v2/private/app/manifests/{digest}",
                       headers={"Accept": "application/vnd.docker.distribution.manifest.v2+json"})[0] == 200


def test_device_sees_sandbox_paths_and_reaches_the_private_daemon(sandbox, dockerd):
    out = sandbox.run(["sh", "-c", "cat /etc/mender/artifact_info /var/lib/mender/device_type; "
                                   "ls /usr/share/mender/modules/v3 | wc -l; readlink /var/lib/mender; pwd"],
                      cwd=sandbox.dir).stdout
    assert out.splitlines() == ["artifact_name=initial", "device_type=qemux86-64", "0", "/data/mender",
                                str(sandbox.dir)]
    version = sandbox.run(["docker", "-H", dockerd.host, "version", "--format", "{{.Server.Version}}"]).stdout
    assert version.strip().startswith("20.10")


def test_sandboxed_install_and_commit_leave_host_device_paths_untouched(sandbox, tmp_path):
    before = bench.host_device_paths_snapshot()
    _install_trivial_module(sandbox, tmp_path)
    artifact = _trivial_artifact(tmp_path, name="demo-1.0", version="1.0")
    assert sandbox.artifact_name() == "initial"

    install = sandbox.mender("install", str(artifact))
    commit = sandbox.mender("commit")

    assert install.returncode == 0, install.stderr
    assert commit.returncode == 0, commit.stderr
    assert sandbox.provides() == {"artifact_name": "demo-1.0", "data-partition.demo.version": "1.0"}
    assert sandbox.artifact_name() == "demo-1.0"
    states = sandbox.host_path("/data/trivial-states.log").read_text().split()
    assert states == ["Download", "SupportsRollback", "ArtifactInstall", "NeedsArtifactReboot",
                      "ArtifactCommit", "Cleanup"]
    assert bench.host_device_paths_snapshot() == before
    if before["/data"] == "absent":
        assert not os.path.lexists("/data")


def test_unmet_depends_is_refused_before_any_module_state(sandbox, tmp_path):
    _install_trivial_module(sandbox, tmp_path)
    artifact = _trivial_artifact(tmp_path, name="demo-2.0", version="2.0",
                                 depends={"rootfs-image.cuda.version": "11.8"})

    result = sandbox.mender("install", str(artifact))

    assert result.returncode == 1
    match = bench.DEPENDS_UNMET_RE.search(result.stderr)
    assert match and "rootfs-image.cuda.version" in match.group(0), result.stderr
    assert r"(11.8 != <nil>)" in result.stderr
    assert not sandbox.host_path("/data/trivial-states.log").exists()
    assert sandbox.mender("commit").returncode == 2


def test_seeded_provides_show_up_and_survive_a_data_partition_install(sandbox, tmp_path):
    sandbox.seed_provides({"rootfs-image.python.version": "3.12", "rootfs-image.api.version": "2.0"},
                          artifact_name="composable-demo-1.0")
    _install_trivial_module(sandbox, tmp_path)

    assert sandbox.provides() == {"artifact_name": "composable-demo-1.0",
                                  "rootfs-image.python.version": "3.12", "rootfs-image.api.version": "2.0"}
    assert sandbox.mender("install", str(_trivial_artifact(tmp_path, name="demo-1.0", version="1.0"))).returncode == 0
    assert sandbox.mender("commit").returncode == 0
    assert sandbox.provides() == {"artifact_name": "demo-1.0", "data-partition.demo.version": "1.0",
                                  "rootfs-image.python.version": "3.12", "rootfs-image.api.version": "2.0"}


def test_teardown_leaves_no_mounts_and_no_processes(tmp_path):
    with bench.Dockerd() as daemon, bench.Registry(tmp_path / "registry") as reg:
        bench.make_busybox_image(daemon, "bench/sleeper:1")
        daemon.docker("run", "-d", "--label", bench.LABEL, "--network", "none", "bench/sleeper:1", "sleep", "300")
        device = bench.DeviceSandbox(tmp_path / "device")
        device.run(["sh", "-c", "sleep 300 >/dev/null 2>&1 &"])
        pids = processes_referencing(daemon.run_dir) + [reg.pid] + processes_referencing(device.dir / "root")
        assert len(pids) >= 4  # dockerd, containerd, registry, the device's sleep
        assert mounts_under(daemon.run_dir), "a running container should have mounts to clean up"
        device.close()

    assert mounts_under(daemon.run_dir) == [] and mounts_under(tmp_path) == []
    assert [pid for pid in pids if pid_alive(pid)] == []
    assert not daemon.run_dir.exists() and not reg.run_dir.exists()


def test_teardown_runs_when_the_test_body_fails():
    with pytest.raises(RuntimeError, match="boom"):
        with bench.Dockerd() as daemon:
            bench.make_busybox_image(daemon, "bench/sleeper:1")
            daemon.docker("run", "-d", "--network", "none", "bench/sleeper:1", "sleep", "300")
            pids = processes_referencing(daemon.run_dir)
            raise RuntimeError("boom")

    assert mounts_under(daemon.run_dir) == []
    assert [pid for pid in pids if pid_alive(pid)] == []
    assert not daemon.run_dir.exists()


def test_daemon_that_cannot_start_reports_its_log():
    daemon = bench.Dockerd(storage_driver="no-such-driver", start_timeout=20)
    with pytest.raises(bench.BenchError, match=r"(?s)did not start.*no-such-driver"):
        with daemon:
            pass
    assert mounts_under(daemon.run_dir) == [] and not daemon.run_dir.exists()


def test_storage_driver_falls_back_to_vfs_where_overlay2_cannot_work():
    # overlay2 cannot stack on overlayfs: a run dir on one is what a CI container would give us.
    # A short dir of our own, not tmp_path, keeps containerd's socket paths within bounds.
    top = Path(tempfile.mkdtemp(prefix="bench-ovl-"))
    layers = {name: top / name for name in ("lower", "upper", "work", "m")}
    for path in layers.values():
        path.mkdir()
    subprocess.run(["mount", "-t", "overlay", "overlay", "-o",
                    f"lowerdir={layers['lower']},upperdir={layers['upper']},workdir={layers['work']}",
                    str(layers["m"])], check=True)
    try:
        with bench.Dockerd(layers["m"] / "dockerd") as daemon:
            assert daemon.storage_driver == "vfs"
            bench.make_busybox_image(daemon, "bench/hello:1")
            assert daemon.run_container("bench/hello:1", "echo", "ok").stdout == "ok\n"
    finally:
        subprocess.run(["umount", str(layers["m"])], check=True)
        shutil.rmtree(top)
    assert mounts_under(top) == []
