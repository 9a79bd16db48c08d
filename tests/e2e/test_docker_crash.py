"""Crash safety through the real client: a module built with fault injection kills itself with
SIGKILL at a named point of a state (DOCKER_MODULE_FAULT=<State>:<point>[:<n>]); the client then
runs its recovery path (Cleanup after Download; ArtifactRollback, ArtifactFailure, Cleanup after the
others), each in a new process. Every time, the device must be back on the previous set: the same
containers running under the same names, nothing of the failed release left, the journal clear."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

import bench

from docker_helpers import (
    ClientHung,
    DockerDevice,
    container,
    fault_binary,
    fault_fired,
    install_or_hang,
    recover_after_restart,
    stack_meta,
)

pytestmark = pytest.mark.bench

# v2 over v1 creates web.mender-new, worker.mender-new and api, stops legacy, worker and web, renames
# four times and starts three containers: these points hit the start, the middle and the end of
# each kind of step.
FAULTS = [
    "Download:journal-download",
    "Download:mid-pull",
    "Download:after-pull",
    "ArtifactInstall:journal-install",
    "ArtifactInstall:after-create:1",
    "ArtifactInstall:after-create:3",
    "ArtifactInstall:after-stop:1",
    "ArtifactInstall:after-stop:3",
    "ArtifactInstall:after-rename:1",
    "ArtifactInstall:after-rename:3",
    "ArtifactInstall:after-start:1",
    "ArtifactInstall:after-start:3",
    "ArtifactInstall:journal-installed",
    "ArtifactCommit:journal-commit",
]

# The install fails by itself (a container exits at once); the fault hits the recovery.
RECOVERY_FAULTS = [
    "ArtifactRollback:after-remove:1",
    "ArtifactRollback:after-rename:1",
    "ArtifactFailure:journal-dropped-pulled",
]


@pytest.fixture
def crash_device(sandbox, dockerd, registry, tmp_path) -> DockerDevice:
    d = DockerDevice(sandbox, dockerd, registry, tmp_path / "work")
    d.install_module(fault_binary())
    d.configure()
    return d


def _baseline(device: DockerDevice):
    v1 = device.image("stacks/app", "1")
    v2 = device.image("stacks/app", "2")
    broken = device.image("stacks/app", "3", cmd=["sh", "-c", "exit 3"])
    foreign = device.image("other/tools", "1", keep_local=True)
    device.run_foreign("legacy", foreign)
    device.run_foreign("monitor", foreign)
    device.deploy(device.artifact("web-1", stack_meta("web", [container("web", v1), container("worker", v1)])))
    new_set = [container("web", v2), container("worker", v2), container("api", v2)]
    good = device.artifact("web-2", stack_meta("web", new_set, replaces=["legacy"]))
    bad = device.artifact("web-3", stack_meta("web", [container("web", broken)], replaces=["legacy"]))
    return v2, broken, good, bad


def _assert_previous_set(device: DockerDevice, before, new_images, fault: str, problems: list[str],
                         client_consistent: bool = True) -> None:
    after = device.snapshot()
    checks = [
        (after.ids() == before.ids(), f"containers {sorted(after.ids())} != {sorted(before.ids())}"),
        (after.running() == before.running(), f"running {sorted(after.running())}"),
        (not any(device.image_present(i) for i in new_images), "an image of the failed release is left"),
        ((device.journal("web") or {}).get("update") is None, f"journal {device.journal('web')}"),
    ]
    if client_consistent:
        checks.append((device.sandbox.artifact_name() == "web-1", "the client records another artifact"))
    for ok, what in checks:
        if not ok:
            problems.append(f"{fault}: {what}")


def test_sigkill_at_every_point_of_an_install_returns_to_the_previous_set(crash_device):
    device = crash_device
    v2, _, good, _ = _baseline(device)
    before = device.snapshot()
    assert before.running() == {"web", "worker", "legacy", "monitor"}
    problems: list[str] = []

    for fault in FAULTS:
        env = {"DOCKER_MODULE_FAULT": fault}
        result = device.install(good, env=env)
        if fault.startswith("ArtifactCommit:"):
            assert result.returncode == 0, result.stderr
            result = device.mender("commit", env=env)
        fired = fault_fired(result.stderr)
        if result.returncode == 0 or not fired:
            problems.append(f"{fault}: the fault did not fire or the client did not fail (exit {result.returncode})")
        _assert_previous_set(device, before, [v2], fault, problems)

    assert not problems, "\n".join(problems)


# Inside the switch, before the Go client 3.4 standalone records the install: the old containers
# stopped, the new ones created, started, on their way through the health gate.
LOST_FAULTS = [
    "ArtifactInstall:journal-install",
    "ArtifactInstall:after-stop:2",
    "ArtifactInstall:after-rename:3",
    "ArtifactInstall:after-start:2",
]


def _power_cut(device: DockerDevice, artifact: Path, fault: str, trace: Path) -> None:
    """`mender install` stopped at `fault` (SIGSTOP), then the client and the module killed at once:
    what a power cut leaves, with no recovery state run by the client, which has recorded nothing."""
    trace.unlink(missing_ok=True)
    env = {**os.environ, **device.env, "DOCKER_MODULE_FAULT": fault, "DOCKER_MODULE_FAULT_ACTION": "stop",
           "DOCKER_MODULE_FAULT_TRACE": str(trace)}
    client = subprocess.Popen(["bash", str(bench.DEVICE_SANDBOX), str(device.sandbox.dir), "--", "mender",
                               "--no-syslog", "install", str(artifact)],
                              env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, start_new_session=True)
    state = fault.split(":")[0]
    deadline = time.monotonic() + 120
    stopped = None
    while stopped is None:
        assert client.poll() is None, f"{fault}: the install ended (exit {client.returncode}) before the fault"
        assert time.monotonic() < deadline, f"{fault}: the module never stopped there"
        lines = trace.read_text().splitlines() if trace.exists() else []
        for pid in {int(line.split(":")[2]) for line in lines if line.startswith(state + ":")}:
            try:
                if Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "T":
                    stopped = pid
            except (FileNotFoundError, IndexError):
                pass
        time.sleep(0.1)
    os.kill(stopped, signal.SIGKILL)
    os.killpg(client.pid, signal.SIGKILL)
    client.wait()


def test_a_switch_cut_short_with_no_client_record_is_restored_at_boot_or_by_the_next_download(
        crash_device, tmp_path):
    """The module's `recover` (mender-docker-recover.service at boot) puts the previous set back;
    without it, the next deployment's Download does; either way that deployment then goes in."""
    device = crash_device
    _baseline(device)
    current = "web-1"
    problems: list[str] = []
    for i, (fault, at_boot) in enumerate((f, b) for f in LOST_FAULTS for b in (True, False)):
        image = device.image("stacks/app", f"n{i}")
        name = f"web-n{i}"
        new = device.artifact(name, stack_meta("web", [container(c, image) for c in ("web", "worker", "api")]))
        before = device.snapshot()
        _power_cut(device, new, fault, tmp_path / "trace")
        what = f"{fault} {'recover' if at_boot else 'next Download'}"
        assert device.sandbox.artifact_name() == current, f"{what}: the client recorded the cut install"
        assert device.journal("web")["update"]["phase"] == "install", what
        if at_boot:
            result = device.sandbox.run(["/usr/share/mender/modules/v3/docker", "recover"], env=device.env,
                                        check=False)
            assert result.returncode == 0, result.stderr
            assert "restoring the previous set" in result.stderr, result.stderr
            _assert_previous_set(device, before, [image], what, problems, client_consistent=False)
            again = device.sandbox.run(["/usr/share/mender/modules/v3/docker", "recover"], env=device.env,
                                       check=False)
            assert again.returncode == 0 and again.stderr == "", again.stderr
        # The next deployment of the same artifact is accepted and committed.
        device.deploy(new)
        after = device.snapshot()
        if not {"web", "worker", "api"} <= after.running():
            problems.append(f"{what}: the next deployment runs {sorted(after.running())}")
        current = name
    assert not problems, "\n".join(problems)


def test_sigkill_in_the_recovery_states_is_recovered_by_the_next_one(crash_device):
    device = crash_device
    _, broken, _, bad = _baseline(device)
    before = device.snapshot()
    problems: list[str] = []

    for fault in RECOVERY_FAULTS:
        result = device.install(bad, env={"DOCKER_MODULE_FAULT": fault})
        assert result.returncode != 0
        if not fault_fired(result.stderr):
            problems.append(f"{fault}: the fault did not fire")
        # A rollback or failure state that dies makes the Go client record the artifact as
        # "<name>_INCONSISTENT"; what matters here is that the device is back on the previous set.
        _assert_previous_set(device, before, [broken], fault, problems, client_consistent=False)

    assert not problems, "\n".join(problems)


def test_sigkill_in_cleanup_after_a_commit_is_finished_by_the_next_deployment(crash_device):
    device = crash_device
    v1 = device.image("stacks/app", "1")
    v2 = device.image("stacks/app", "2")
    v3 = device.image("stacks/app", "3")
    device.deploy(device.artifact("web-1", stack_meta("web", [container("web", v1)])))
    device.deploy(device.artifact("web-2", stack_meta("web", [container("web", v2)])))
    assert device.install(device.artifact("web-3", stack_meta("web", [container("web", v3)]))).returncode == 0

    device.mender("commit", env={"DOCKER_MODULE_FAULT": "Cleanup:after-remove:1"})

    assert device.snapshot().running() == {"web"}
    assert device.journal("web")["update"]["phase"] == "commit"
    assert device.sandbox.artifact_name() == "web-3"
    # The next state that opens the stack finishes the commit first.
    v4 = device.image("stacks/app", "4")
    device.deploy(device.artifact("web-4", stack_meta("web", [container("web", v4)])))
    assert device.snapshot().ids().keys() == {"web"}
    assert not device.image_present(v1) and not device.image_present(v2)
    assert device.image_present(v3) and device.image_present(v4)
    assert device.journal("web")["current"]["artifact"] == "web-4"
    assert device.journal("web")["previous"]["artifact"] == "web-3"


# Around an inline load: the journal write before it, inside the upload (the engine has part of the
# archive), after the whole body went to the engine but before its answer (the engine finishes the
# load on its own after the module died), after the answer, after the removal of what the load
# added that the release does not list, and after the journal write that ends the load.
LOAD_FAULTS = [
    "Download:journal-load",
    "Download:mid-load",
    "Download:load-sent",
    "Download:after-load",
    "Download:after-remove-loaded",
    "Download:journal-loaded",
]


def test_sigkill_around_an_inline_load_leaves_no_image_and_no_tag_behind(sandbox, dockerd, tmp_path):
    """The archive holds the release's image and one more it does not list; both must be gone after
    the client's Cleanup in a fresh process, whichever point the load was killed at."""
    from test_docker_inline import STACK, hand_made, local_image, save, tags

    device = DockerDevice(sandbox, dockerd, None, tmp_path / "work")
    device.install_module(fault_binary())
    device.configure()
    v2 = local_image(device, "demo/app:2", "2")
    # Large enough that the engine is still registering it when the client starts Cleanup after a
    # kill at load-sent: the engine finishes a load whose client died.
    extra = bench.make_busybox_image(device.dockerd, "demo/extra:1", cmd=["sleep", "3600"],
                                     extra_files={"/blob": os.urandom(96 << 20)})
    archive = device.workdir / "two.tar"
    device.dockerd.docker("save", "-o", str(archive), "demo/app:2", "demo/extra:1")
    device.dockerd.docker("image", "rm", "-f", v2, extra)
    holder = local_image(device, "demo/app:2", "the user's own")
    artifact = hand_made(device, f"{STACK}-2", archive, v2)
    before = device.snapshot()
    tags_before = tags(device)
    problems: list[str] = []

    # With "download": "store" the client keeps the payload and ArtifactInstall loads it; its
    # failure path (ArtifactRollback, ArtifactFailure, Cleanup) must undo the load the same way.
    store_faults = ["ArtifactInstall:load-sent", "ArtifactInstall:after-load", "ArtifactInstall:journal-loaded"]
    hangs: list[str] = []
    for fault in LOAD_FAULTS + store_faults:
        if fault.startswith("ArtifactInstall:"):
            device.configure(download="store")
        try:
            result = install_or_hang(device, artifact, {"DOCKER_MODULE_FAULT": fault})
            fired = fault_fired(result.stderr)
            if result.returncode == 0 or not fired:
                problems.append(f"{fault}: the fault did not fire or the client did not fail (exit {result.returncode})")
        except ClientHung:
            # The client's own race (ClientHung); the device then restarts as after a power cut.
            hangs.append(fault)
            recover_after_restart(device, artifact)
        after = device.snapshot()
        if after.images != before.images or tags(device) != tags_before:
            problems.append(f"{fault}: images added {sorted(after.images - before.images)}, removed "
                            f"{sorted(before.images - after.images)}; tags {tags(device)} (before: {tags_before})")
            for image in after.images - before.images:
                device.dockerd.docker("image", "rm", "-f", image, check=False)
            device.dockerd.docker("tag", holder, "demo/app:2")
        if (device.journal(STACK) or {}).get("update") is not None:
            problems.append(f"{fault}: journal {device.journal(STACK)}")

    print(f"inline load kills: {len(hangs)} hung the Go client and were recovered as power cuts {hangs}")
    assert not problems, "\n".join(problems)
