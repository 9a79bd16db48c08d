"""The docker Update Module through the real Mender client, the bench's real engine and registry:
what a user of the device sees after each command."""

from __future__ import annotations

import json
import time

import pytest

import bench
from docker_helpers import (  # noqa: F401  (fixture)
    RELEASE_LABEL,
    STACK_LABEL,
    container,
    device,
    module_errors,
    module_lines,
    run_old_generator,
    stack_meta,
)

pytestmark = pytest.mark.bench


def test_install_from_the_registry_and_commit_leaves_the_foreign_container_alone(device):
    worker = device.image("stacks/worker", "1")
    web = device.image("stacks/web", "1")
    foreign_image = device.image("other/monitor", "1", keep_local=True)
    foreign_id = device.run_foreign("monitor", foreign_image)
    meta = stack_meta("web", [container("worker", worker, env={"ROLE": "worker"}),
                              container("web", web, restart="unless-stopped",
                                        healthcheck={"test": ["CMD", "true"], "interval_seconds": 1})])
    artifact = device.artifact("web-1", meta, software_name="web", version="1")

    install = device.install(artifact)

    assert install.returncode == 0, install.stderr
    snap = device.snapshot()
    assert snap.running() == {"web", "worker", "monitor"}
    for name in ("web", "worker"):
        labels = snap.containers[name][3]
        assert labels[STACK_LABEL] == "web" and labels[RELEASE_LABEL] == "web-1"
    assert snap.ids()["monitor"] == foreign_id
    assert any("health gate passed" in line for line in module_lines(install.stderr))
    env = device.dockerd.docker("inspect", "--format", "{{json .Config.Env}}", "worker").stdout
    assert "ROLE=worker" in env

    commit = device.mender("commit")

    assert commit.returncode == 0, commit.stderr
    assert device.sandbox.provides()["data-partition.web.version"] == "1"
    journal = device.journal("web")
    assert journal["update"] is None and journal["current"]["artifact"] == "web-1"
    assert device.snapshot().running() == {"web", "worker", "monitor"}


def test_install_then_rollback_brings_back_the_previous_set(device):
    v1 = device.image("stacks/web", "1")
    v2 = device.image("stacks/web", "2")
    legacy = device.image("old/legacy", "1", keep_local=True)
    device.run_foreign("legacy-web", legacy)
    device.deploy(device.artifact("web-1", stack_meta("web", [container("web", v1)])))
    before = device.snapshot()
    meta2 = stack_meta("web", [container("web", v2), container("api", v2)], replaces=["legacy-web"])

    install = device.install(device.artifact("web-2", meta2))

    assert install.returncode == 0, install.stderr
    during = device.snapshot()
    assert during.running() == {"web", "api"}
    assert during.containers["web"][3][RELEASE_LABEL] == "web-2"
    assert "legacy-web" in during.containers, "a replaced container stays until commit"

    rollback = device.mender("rollback")

    assert rollback.returncode == 0, rollback.stderr
    after = device.snapshot()
    assert after.ids() == before.ids(), "the same containers under the same names"
    assert after.running() == before.running() == {"web", "legacy-web"}
    assert not device.image_present(v2), "the rolled-back release's image is gone"
    assert device.journal("web")["update"] is None


def test_a_container_that_exits_at_once_rolls_back_automatically(device):
    v1 = device.image("stacks/web", "1")
    broken = device.image("stacks/web", "2", cmd=["sh", "-c", "exit 3"])
    monitor = device.image("other/monitor", "1", keep_local=True)
    device.run_foreign("monitor", monitor)
    device.deploy(device.artifact("web-1", stack_meta("web", [container("web", v1)])))
    before = device.snapshot()

    install = device.install(device.artifact("web-2", stack_meta("web", [container("web", broken)])))

    assert install.returncode != 0
    errors = module_errors(install.stderr)
    assert errors and "health gate: container web exited with code 3" in errors[0], install.stderr
    after = device.snapshot()
    assert after.ids() == before.ids()
    assert after.running() == {"web", "monitor"}
    assert not device.image_present(broken)
    assert device.journal("web")["update"] is None
    assert device.sandbox.artifact_name() == "web-1"


def test_a_restarting_container_fails_the_gate_too(device):
    v1 = device.image("stacks/web", "1")
    crashing = device.image("stacks/web", "2", cmd=["sh", "-c", "sleep 0.2; exit 1"])
    device.deploy(device.artifact("web-1", stack_meta("web", [container("web", v1)])))
    before = device.snapshot()

    install = device.install(device.artifact("web-2", stack_meta("web", [container("web", crashing, restart="always")])))

    assert install.returncode != 0
    assert "health gate: container web" in module_errors(install.stderr)[0]
    assert device.snapshot().ids() == before.ids()
    assert device.snapshot().running() == {"web"}


@pytest.mark.parametrize("how", ["registry-stopped", "unknown-digest"])
def test_an_unreachable_image_fails_download_and_the_old_set_keeps_running(device, how):
    v1 = device.image("stacks/web", "1")
    monitor = device.image("other/monitor", "1", keep_local=True)
    device.run_foreign("monitor", monitor)
    device.deploy(device.artifact("web-1", stack_meta("web", [container("web", v1)])))
    v2 = device.image("stacks/web", "2")
    if how == "unknown-digest":
        v2 = v2.rsplit("@", 1)[0] + "@sha256:" + "0" * 64
    artifact = device.artifact("web-2", stack_meta("web", [container("web", v2)]))
    before = device.snapshot()
    if how == "registry-stopped":
        device.registry.stop()

    install = device.install(artifact)

    assert install.returncode != 0
    errors = module_errors(install.stderr)
    assert len(errors) == 1 and "Download: container engine: cannot pull" in errors[0], install.stderr
    assert "ArtifactInstall" not in install.stderr.replace("ArtifactInstall_", "")
    after = device.snapshot()
    assert after.ids() == before.ids() and after.running() == {"web", "monitor"}
    assert after.images == before.images
    assert device.journal("web")["update"] is None
    assert device.sandbox.artifact_name() == "web-1"


def test_an_artifact_of_the_old_docker_artifact_gen_installs(device):
    for repo in ("legacy/app", "legacy/sidecar"):
        image_id = bench.make_busybox_image(device.dockerd, f"local/{repo}:1", cmd=["sleep", "3600"])
        bench.push(device.dockerd, device.registry, f"local/{repo}:1", repo, "1")
        device.dockerd.docker("image", "rm", "-f", image_id)
    images = [f"{device.registry.addr}/legacy/app:1", f"{device.registry.addr}/legacy/sidecar:1"]
    artifact = run_old_generator(device, name="legacy-1", images=images,
                                 run_args="--network none -e MODE=legacy --restart unless-stopped")
    # The generator pulled them; the device must pull them itself.
    for ref in images:
        device.dockerd.docker("image", "rm", "-f", ref)
    foreign = device.image("other/monitor", "1", keep_local=True)
    device.run_foreign("monitor", foreign)

    install = device.install(artifact)
    commit = device.mender("commit")

    assert install.returncode == 0, install.stderr
    assert commit.returncode == 0, commit.stderr
    snap = device.snapshot()
    assert snap.running() == {"app", "sidecar", "monitor"}
    assert snap.containers["app"][3][STACK_LABEL] == "docker"
    config = device.dockerd.docker("inspect", "--format", "{{.Config.Tty}} {{json .Config.Env}} "
                                   "{{.HostConfig.RestartPolicy.Name}}", "app").stdout
    assert config.startswith("true ") and "MODE=legacy" in config and "unless-stopped" in config


def test_installing_stack_b_leaves_stack_a_running(device):
    a = device.image("stacks/a", "1")
    b = device.image("stacks/b", "1")
    device.deploy(device.artifact("a-1", stack_meta("a", [container("a-web", a)])))
    before = device.snapshot()

    device.deploy(device.artifact("b-1", stack_meta("b", [container("b-web", b)])))

    after = device.snapshot()
    assert after.ids()["a-web"] == before.ids()["a-web"] and "a-web" in after.running()
    assert after.running() == {"a-web", "b-web"}
    assert device.journal("a")["current"]["artifact"] == "a-1"
    assert device.journal("b")["current"]["artifact"] == "b-1"


def test_commit_prunes_old_images_keeps_n_minus_1_and_images_of_foreign_containers(device):
    shared_v1 = device.image("stacks/shared", "1")
    web = [device.image("stacks/web", str(v)) for v in (1, 2, 3)]
    device.deploy(device.artifact("web-1", stack_meta("web", [container("web", web[0]),
                                                               container("tool", shared_v1)])))
    # Someone runs the v1 tool image by hand: it must survive every prune.
    device.run_foreign("by-hand", shared_v1)
    device.deploy(device.artifact("web-2", stack_meta("web", [container("web", web[1])])))
    assert device.image_present(web[0]), "n-1 is kept after the second commit"

    device.deploy(device.artifact("web-3", stack_meta("web", [container("web", web[2])])))

    assert not device.image_present(web[0]), "n-2 is pruned"
    assert device.image_present(web[1]), "n-1 is kept"
    assert device.image_present(web[2])
    assert device.image_present(shared_v1), "used by a container the module does not own"
    assert device.snapshot().running() == {"web", "by-hand"}


def test_start_first_hands_over_and_an_unchanged_container_keeps_running(device):
    web1 = device.image("stacks/web", "1")
    web2 = device.image("stacks/web", "2")
    db = device.image("stacks/db", "1")
    device.deploy(device.artifact("web-1", stack_meta("web", [container("db", db), container("web", web1)])))
    db_id = device.snapshot().ids()["db"]

    install = device.install(device.artifact("web-2", stack_meta(
        "web", [container("db", db), container("web", web2)], strategy="start-first")))

    assert install.returncode == 0, install.stderr
    lines = module_lines(install.stderr)
    started = next(i for i, l in enumerate(lines) if l.startswith("docker: started web.mender-new"))
    stopped = next(i for i, l in enumerate(lines) if l.startswith("docker: stopped web"))
    assert started < stopped, "\n".join(lines)
    assert "docker: keeping db: unchanged and running" in lines
    assert device.snapshot().ids()["db"] == db_id
    assert device.mender("commit").returncode == 0
    assert device.snapshot().running() == {"db", "web"}


def test_credentials_from_the_device_configuration_pull_from_an_authenticated_registry(device, registry_factory):
    secured = registry_factory(user="fleet-device", password="s3cret-pw")
    image = device.image("private/web", "1", registry=secured)
    # The bench's own `docker login` must not be what makes the pull work.
    device.dockerd.docker("logout", secured.addr)
    device.configure(registries={"fleet": {"address": secured.addr, "username": "fleet-device",
                                           "password": "s3cret-pw"}})
    meta = stack_meta("web", [container("web", image)], registry="fleet")

    install = device.install(device.artifact("web-1", meta))

    assert install.returncode == 0, install.stderr
    assert "s3cret-pw" not in install.stderr + install.stdout
    assert "with the configured registry credentials" in install.stderr
    assert device.snapshot().running() == {"web"}


def test_compose_keys_reach_the_engine_and_the_modules_stop_waits_the_grace_period(device):
    v1 = device.image("stacks/web", "1")
    v2 = device.image("stacks/web", "2")
    # busybox `sleep` as PID 1 has no handler for SIGUSR1, so the kernel drops it: only the SIGKILL
    # at the end of the grace period stops this container. The device's stop_timeout_seconds is 0.
    device.deploy(device.artifact("web-1", stack_meta("web", [container(
        "web", v1, stop_signal="SIGUSR1", stop_grace_period_seconds=2,
        sysctls={"net.core.somaxconn": "1024"}, extra_hosts=["db.local=10.0.0.2", "v6.local:[fd00::2]"],
        dns=["10.0.0.53"], ulimits={"nofile": "1024:2048", "nproc": 512}, shm_size_bytes=16 << 20)])))
    old = json.loads(device.dockerd.docker("inspect", "web").stdout)[0]
    assert (old["Config"]["StopSignal"], old["Config"]["StopTimeout"]) == ("SIGUSR1", 2)
    host = old["HostConfig"]
    assert host["Sysctls"] == {"net.core.somaxconn": "1024"}
    assert host["ExtraHosts"] == ["db.local:10.0.0.2", "v6.local:fd00::2"]
    assert host["Dns"] == ["10.0.0.53"]
    assert host["Ulimits"] == [{"Name": "nofile", "Soft": 1024, "Hard": 2048},
                               {"Name": "nproc", "Soft": 512, "Hard": 512}]
    assert host["ShmSize"] == 16 << 20
    inside = device.dockerd.docker("exec", "web", "sh", "-c",
                                   "cat /proc/sys/net/core/somaxconn /etc/hosts /etc/resolv.conf "
                                   "/proc/self/limits /proc/self/mounts").stdout
    assert inside.startswith("1024\n"), inside
    assert "10.0.0.2\tdb.local" in inside and "fd00::2\tv6.local" in inside, inside
    assert "nameserver 10.0.0.53" in inside, inside
    assert any(line.startswith("Max open files") and line.split()[3:5] == ["1024", "2048"]
               for line in inside.splitlines()), inside
    assert any(" /dev/shm " in line and "size=16384k" in line for line in inside.splitlines()), inside

    since = time.time()
    install = device.install(device.artifact("web-2", stack_meta("web", [container("web", v2, init=True)])))

    assert install.returncode == 0, install.stderr
    events = device.dockerd.docker("events", "--since", f"{since:.3f}", "--until", f"{time.time():.3f}",
                                   "--filter", f"container={old['Id']}", "--filter", "event=kill",
                                   "--format", "{{json .}}").stdout
    kills = [(e["Actor"]["Attributes"]["signal"], e["timeNano"] / 1e9)
             for e in map(json.loads, events.splitlines())]
    assert [signal for signal, _ in kills] == ["10", "9"], kills  # SIGUSR1, then SIGKILL
    assert kills[1][1] - kills[0][1] >= 1.9, f"killed {kills[1][1] - kills[0][1]:.2f}s after the stop signal"
    new = json.loads(device.dockerd.docker("inspect", "web").stdout)[0]
    assert new["HostConfig"]["Init"] is True and new["Config"].get("StopTimeout") is None
    assert device.dockerd.docker("exec", "web", "cat", "/proc/1/comm").stdout.strip() == "docker-init"
