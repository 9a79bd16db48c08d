"""The booted device: a Debian 12 VM (QEMU, TCG) with systemd, Docker on /data, the layer's modules
and the real Go Mender client, reached over ssh only; its OS updates are real A/B rootfs updates
that the launcher's bootloader stand-in boots (tests/vmdevice).

One VM for the module; the tests run in order and each leaves the device running a committed OS
with the scenarios' apps and stacks as the scenarios leave them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mender_composable import scenarios
from scenarios.three_domains import image_settings
from vmdevice import powercut
from vmdevice.matrix import app_domain, docker_domain, install_fault_modules, rootfs_domain
from vmdevice.session import vm_session

pytestmark = pytest.mark.bench

ROOT = Path(__file__).resolve().parents[2]


def sh(vm, command, timeout=300):
    status, out = vm.ssh(command, timeout=timeout)
    assert status == 0, f"`{command}` exited {status} on the VM:\n{out}"
    return out.strip()


@pytest.fixture(scope="module")
def session(vm, vm_image, _session_dockerd, rust_binary, tmp_path_factory):
    s = vm_session(vm, vm_image, tmp_path_factory.mktemp("vm-artifacts"), dockerd=_session_dockerd,
                   app_generator=rust_binary("persistent-app-gen", "persistent-app-artifact-gen"),
                   docker_generator=rust_binary("docker-artifact-gen"), say=print)
    yield s
    s.close()


def test_the_device_boots_rootfs_a_with_systemd_docker_on_data_and_the_layers_files(vm):
    assert vm.current.partition == "2"
    assert sh(vm, "findmnt -n -o SOURCE /") == "/dev/vda2"
    state = vm.ssh("systemctl is-system-running --wait", timeout=300)[1].strip()
    failed = sh(vm, "systemctl list-units --failed --plain --no-legend")
    assert state == "running", f"systemd is {state}; failed units:\n{failed}"
    # /data from fstab, and the client's datastore on it.
    assert sh(vm, "findmnt -n -o SOURCE,FSTYPE /data").split() == ["/dev/vda4", "ext4"]
    assert sh(vm, "readlink /var/lib/mender") == "/data/mender"
    # dockerd started by systemd with the docker-moby bbappend's daemon.json.
    assert sh(vm, "systemctl is-active docker") == "active"
    daemon_json = json.loads(sh(vm, "cat /etc/docker/daemon.json"))
    assert daemon_json == json.loads((ROOT / "recipes-containers/docker/files/daemon.json").read_text())
    assert sh(vm, "docker info --format '{{.DockerRootDir}} {{.Driver}}'") == "/data/docker overlay2"
    # The modules and the inventory script where the recipes install them.
    modules = sh(vm, "ls /usr/share/mender/modules/v3").split()
    assert {"docker", "persistent-app"} <= set(modules)
    assert sh(vm, "test -x /usr/share/mender/inventory/mender-inventory-docker && echo yes") == "yes"
    # The recipes' boot-time recovery units, enabled, run before the client, found nothing to do.
    for unit in ("mender-docker-recover", "persistent-app-recover"):
        assert sh(vm, f"systemctl is-enabled {unit}") == "enabled"
        assert sh(vm, f"systemctl show -p Result --value {unit}") == "success"
        assert "mender-client.service" in sh(vm, f"systemctl show -p Before --value {unit}")
    # What the image's first artifact gave it.
    name, provides = image_settings()
    shown = dict(line.split("=", 1) for line in sh(vm, "mender --no-syslog show-provides 2>/dev/null").splitlines()
                 if "=" in line)
    assert shown.get("artifact_name") == name
    assert {k: shown.get(k) for k in provides} == provides
    # The bootloader stand-in's environment, as the client reads it.
    env = dict(line.split("=", 1) for line in sh(vm, "fw_printenv").splitlines())
    assert env["mender_boot_part"] == "2" and env["upgrade_available"] == "0"


def run(session, key):
    outcome = scenarios.run(session, key)
    assert outcome.ok, outcome.failures()
    return outcome


def test_rootfs_provides(session):
    run(session, "rootfs_provides")


def test_unmet_depends_refused(session):
    run(session, "unmet_depends")


def test_persistent_app_survives_a_real_ab_os_update(session, vm):
    boots = len(vm.boots)
    outcome = run(session, "persistent_app")
    names = [c.name for c in outcome.checks]
    assert "data-partition.demo-app.version=2.0 survived the OS update" in names
    assert "artifact_name=composable-demo-2.0" in names
    assert any(n.startswith("rebooted into the other rootfs partition") for n in names)
    # One real swap: to composable-demo-2.0 on B (the containers scenario's OS update comes back).
    assert [b.partition for b in vm.boots[boots:]] == ["3"]


def test_container_stack_survives_a_real_ab_os_update_and_restarts_after_the_reboots(session, vm):
    boots = len(vm.boots)
    outcome = run(session, "containers")
    names = [c.name for c in outcome.checks]
    assert "after the OS update: demo-heartbeat running from demo-stack-1.0" in names, names
    # Back to the image's OS on A, with the app of the persistent-app scenario still there.
    assert "artifact_name=composable-demo-1.0" in names
    assert [b.partition for b in vm.boots[boots:]] == ["2"]
    assert session.provides().get("data-partition.demo-app.version") == "2.0"
    assert sh(vm, "docker inspect --format '{{.HostConfig.RestartPolicy.Name}}' demo-heartbeat") == "unless-stopped"


def client(session, *args, timeout=1200):
    return session.client_step(" ".join(args), *args, timeout=timeout)


def provides(session):
    return session.provides()


def test_an_os_update_whose_rootfs_cannot_boot_rolls_back_to_the_running_one_by_itself(session, vm):
    """The bootloader stand-in boots the new partition once (upgrade_available=1, bootcount 1);
    its init exits, the kernel panics and reboots; bootcount 2 exceeds bootlimit 1, so the boot
    falls back to the partition that was running and clears upgrade_available. The client then
    records the failure; provides, apps and stacks are as before."""
    before = provides(session)
    apps = session.tree("/data/apps")
    stack = sh(vm, "docker ps --format '{{.Names}} {{.Image}} {{.Label \"io.mender.composable.release\"}}' | sort")
    art = session.artifacts.unbootable_rootfs_image("composable-demo-2.0-broken", scenarios.NEXT_OS_PROVIDES)
    step = client(session, "install", session.push(art))
    assert step.status == 0, step.output
    env = vm.bootenv()
    assert (env["mender_boot_part"], env["upgrade_available"], env["bootcount"]) == ("3", "1", "0")
    boots = len(vm.boots)
    vm.reboot(timeout=1200)
    tried = [(b.partition, b.reason) for b in vm.boots[boots:]]
    assert [p for p, _ in tried] == ["3", "2"], tried
    assert sh(vm, "findmnt -n -o SOURCE /") == "/dev/vda2"
    assert "Attempted to kill init" in Path(vm.boots[boots].log).read_text(errors="replace")
    env = vm.bootenv()
    assert (env["mender_boot_part"], env["upgrade_available"]) == ("2", "0"), env
    # The client's record of the failed update: rollback finds nothing to switch back and cleans up.
    step = client(session, "rollback")
    assert step.status == 0, step.output
    assert provides(session) == before
    assert session.tree("/data/apps") == apps
    assert sh(vm, "docker ps --format '{{.Names}} {{.Image}} {{.Label \"io.mender.composable.release\"}}' | sort") == stack


def test_an_os_update_that_fails_its_check_after_the_reboot_is_rolled_back_by_the_client(session, vm, tmp_path):
    """The new rootfs boots, but the artifact's ArtifactCommit_Enter state script (a health check)
    fails: the client rolls back by itself (the boot environment points at the old partition again);
    the reboot that follows runs the old OS with apps and stacks intact."""
    before = provides(session)
    apps = session.tree("/data/apps")
    script = tmp_path / "ArtifactCommit_Enter_00_health"
    script.write_text("#!/bin/sh\necho 'composable health check: the new OS is not healthy' >&2\nexit 1\n")
    art = session.artifacts.failing_check_rootfs_image("composable-demo-2.0-unhealthy", scenarios.NEXT_OS_PROVIDES,
                                                       script)
    assert client(session, "install", session.push(art)).status == 0
    vm.reboot(timeout=1200)
    assert sh(vm, "findmnt -n -o SOURCE /") == "/dev/vda3"
    step = client(session, "commit")
    assert step.status != 0
    assert "ArtifactCommit_Enter" in step.output
    env = vm.bootenv()
    assert (env["mender_boot_part"], env["upgrade_available"]) == ("2", "0"), env
    vm.reboot(timeout=1200)
    assert sh(vm, "findmnt -n -o SOURCE /") == "/dev/vda2"
    assert provides(session) == before
    assert session.tree("/data/apps") == apps


SERVICE_UNIT = """[Unit]
Description=composable test app (persistent-app, /data/apps/svc-app)

[Service]
ExecStart=/bin/sh /data/apps/svc-app/bin/serve

[Install]
WantedBy=multi-user.target
"""


def svc_app(root: Path, version: str) -> Path:
    (root / "bin").mkdir(parents=True)
    # Says which version runs, then stays up; systemd's stop ends it with SIGTERM.
    (root / "bin" / "serve").write_text(
        "#!/bin/sh\n"
        f"echo \"svc-app {version} started as $$\" > /run/svc-app.running\n"
        "exec sleep infinity\n")
    (root / "VERSION").write_text(version + "\n")
    return root


def test_persistent_app_stops_and_starts_its_real_systemd_unit_around_the_swap(session, vm, tmp_path):
    unit = tmp_path / "composable-svc-app.service"
    unit.write_text(SERVICE_UNIT)
    vm.copy_to(str(unit), "/etc/systemd/system/composable-svc-app.service")
    sh(vm, "systemctl daemon-reload")
    arts = {version: session.artifacts._persistent_app(
        tmp_path / f"svc-app-{version}.mender", name="svc-app", version=version,
        payload=svc_app(tmp_path / f"tree-{version}", version), service="composable-svc-app.service")
        for version in ("1.0", "2.0")}

    def running():
        return sh(vm, "systemctl is-active composable-svc-app; cat /run/svc-app.running 2>/dev/null; "
                      "systemctl show -p InvocationID --value composable-svc-app").splitlines()

    assert client(session, "install", session.push(arts["1.0"])).status == 0
    assert client(session, "commit").status == 0
    sh(vm, "systemctl start composable-svc-app")
    first = running()
    assert first[0] == "active" and first[1].startswith("svc-app 1.0 started"), first
    step = client(session, "install", session.push(arts["2.0"]))
    assert step.status == 0, step.output
    second = running()
    assert second[0] == "active" and second[1].startswith("svc-app 2.0 started"), second
    assert second[2] != first[2], "the unit was not restarted (same InvocationID)"
    step = client(session, "rollback")
    assert step.status == 0, step.output
    third = running()
    assert third[0] == "active" and third[1].startswith("svc-app 1.0 started") and third[2] != second[2], third
    # systemd saw the module stop and start it each time (once per swap).
    journal = sh(vm, "journalctl -u composable-svc-app --no-pager -o cat")
    assert sum(line.startswith("Stopped ") for line in journal.splitlines()) >= 2, journal
    assert client(session, "install", session.push(arts["2.0"])).status == 0
    assert client(session, "commit").status == 0


def test_a_container_answers_on_its_published_port_over_the_bridge(session, vm, _session_dockerd, tmp_path):
    """Bridge networking under the layer's daemon.json: a container on Docker's default bridge with
    a published port, deployed by the docker module, answers from inside the VM on 127.0.0.1 and on
    its bridge address."""
    import bench
    from bench.system import run as host_run

    ref = "composable-web:1.0"
    bench.make_busybox_image(_session_dockerd, ref, cmd=["httpd", "-f", "-p", "80", "-h", "/www"],
                             extra_files={"/www/index.html": "composable web 1.0\n"})
    archive = tmp_path / "web.tar"
    _session_dockerd.docker("save", "-o", str(archive), ref)
    _session_dockerd.docker("image", "rm", ref)
    art = tmp_path / "web-1.0.mender"
    host_run([str(session.artifacts.docker_generator), "-n", "web-1.0", "-t", "qemux86-64", "-o", str(art),
              "--inline", "--software-name", "web", "--software-version", "1.0",
              "--run-args=--name composable-web -p 8080:80 --restart always", f"docker-archive:{archive}"],
             cwd=tmp_path, timeout=300)
    assert client(session, "install", session.push(str(art))).status == 0
    assert client(session, "commit").status == 0

    def fetch(host, port):
        return vm.ssh("bash -c 'exec 3<>/dev/tcp/%s/%d && printf \"GET / HTTP/1.0\\r\\n\\r\\n\" >&3 && cat <&3'"
                      % (host, port), timeout=60)

    network = json.loads(sh(vm, "docker inspect --format '{{json .NetworkSettings.Networks}}' composable-web"))
    assert list(network) == ["bridge"], network
    address = network["bridge"]["IPAddress"]
    assert address, network
    for host, port in (("127.0.0.1", 8080), (address, 80)):
        status, out = fetch(host, port)
        assert status == 0 and "composable web 1.0" in out, f"{host}:{port}: {out}"
    # Its restart policy after a reboot is the containers scenario's: demo-heartbeat runs again
    # after each OS update's reboot.


# -- power cuts (tests/vmdevice/powercut.py): one per domain here, the whole matrix in scripts/vm-powercuts

# One cut per domain here, each inside the state a power cut hurts most; the rest of the matrix on
# demand. The module cuts land inside ArtifactInstall, before the Go client 3.4 standalone records
# anything: the boot's recovery units put the old tree or set back, and the next deployment goes in.
CI_CUTS = {"persistent-app": ["swap"], "docker": ["switch"], "rootfs": ["write"]}


@pytest.fixture(scope="module")
def harness(session, vm):
    """The power cuts come last: they replace the device's modules by fault-injection builds."""
    h = powercut.Harness(session, vm)
    install_fault_modules(h)
    return h


def test_persistent_app_power_cut(harness):
    cuts = app_domain(harness).run(CI_CUTS["persistent-app"])
    print("\n" + powercut.table(cuts))
    assert all(c.ok for c in cuts), powercut.table(cuts) + "\n" + "\n".join(c.detail for c in cuts)


def test_docker_power_cut(harness):
    cuts = docker_domain(harness).run(CI_CUTS["docker"])
    print("\n" + powercut.table(cuts))
    assert all(c.ok for c in cuts), powercut.table(cuts) + "\n" + "\n".join(c.detail for c in cuts)


def test_rootfs_power_cut(harness):
    cuts = rootfs_domain(harness).run(CI_CUTS["rootfs"])
    print("\n" + powercut.table(cuts))
    assert all(c.ok for c in cuts), powercut.table(cuts) + "\n" + "\n".join(c.detail for c in cuts)

