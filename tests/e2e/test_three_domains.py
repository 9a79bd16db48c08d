"""The three-domain scenarios that testimage runs on the image (lib/oeqa/runtime/cases/composable.py),
run here unchanged against the sandboxed device with the real Go Mender client, the modules and
generators built from this workspace and the bench's private Docker Engine. Each test starts from
a fresh device set up like composable-demo-image."""

import dataclasses
import logging
import os
import shutil
import subprocess
import types
import unittest

import pytest

from bench import host_device_paths_snapshot
from scenarios import oeqa_stub
from scenarios.three_domains import SandboxTarget, image_settings, local_session, scenarios

pytestmark = pytest.mark.bench


@pytest.fixture
def session(sandbox_factory, dockerd, rust_binary, tmp_path):
    before = host_device_paths_snapshot()
    device = sandbox_factory(artifact_name=image_settings()[0])
    s = local_session(
        device, tmp_path / "artifacts", dockerd=dockerd,
        module=rust_binary("persistent-app"),
        docker_module=rust_binary("docker-module", "mender-docker-module"),
        app_generator=rust_binary("persistent-app-gen", "persistent-app-artifact-gen"),
        docker_generator=rust_binary("docker-artifact-gen"))
    yield s
    s.close()
    assert host_device_paths_snapshot() == before, "the machine's own device paths changed"


def run(session, key):
    outcome = scenarios.run(session, key)
    assert outcome.ok, outcome.failures()
    return outcome


def names(outcome):
    return [c.name for c in outcome.checks]


def test_show_provides_lists_the_images_four_rootfs_provides(session):
    outcome = run(session, "rootfs_provides")
    assert "rootfs-image.python.version=3.12" in names(outcome)
    assert len(outcome.checks) == 5  # four provides and the artifact name


def test_demo_app_deploys_rolls_back_and_survives_an_os_update_clearing_rootfs_image(session):
    outcome = run(session, "persistent_app")
    assert "data-partition.demo-app.version=1.0" in names(outcome)
    assert "data-partition.demo-app.version=2.0 survived the OS update" in names(outcome)
    assert "rootfs-image.* replaced by the new OS's provides" in names(outcome)
    labels = [step.label for step in outcome.steps]
    assert labels[:6] == ["install demo-app-1.0.mender", "commit", "install demo-app-2.0.mender", "rollback",
                          "install demo-app-2.0.mender", "commit"]
    # The stand-in OS update and the way back: install + commit each.
    assert labels[6:] == ["install composable-demo-2.0.os-stand-in.mender", "commit",
                          "install composable-demo-1.0.os-stand-in.mender", "commit"]


def test_cuda_depends_artifact_is_refused_before_install_with_nothing_modified(session):
    outcome = run(session, "unmet_depends")
    (install,) = outcome.steps
    assert install.status != 0
    assert scenarios.depends_unmet_key(install.output) == "rootfs-image.cuda.version"
    assert "/data/apps/cuda-demo not created" in names(outcome)


def test_docker_stack_from_an_inline_artifact_runs_under_the_engines_data_root(session):
    outcome = run(session, "containers")
    assert "after commit: demo-heartbeat running from demo-stack-1.0" in names(outcome)
    assert "after the rollback: demo-heartbeat running from demo-stack-1.0" in names(outcome)
    assert "data-partition.demo-stack.version=1.0 survived the OS update" in names(outcome)


def test_a_cpp_client_on_the_machines_path_does_not_change_the_client_the_bench_drives(session, tmp_path):
    """The bench starts and seeds the Go client; a mender-update (C++) that a developer built and
    put on PATH is not this device's client, and the scenarios must not pick it up."""
    bin_dir = tmp_path / "cpp-client-bin"
    bin_dir.mkdir()
    (bin_dir / "mender-update").write_text("#!/bin/sh\necho 'mender-update: not this device client' >&2\nexit 3\n")
    (bin_dir / "mender-update").chmod(0o755)
    session.target.env["PATH"] = f"{bin_dir}{os.pathsep}{os.environ['PATH']}"
    unpinned = scenarios.Session(session.target, dataclasses.replace(session.profile, client=None),
                                 session.artifacts, say=lambda _: None)
    assert unpinned.client.name == "mender-update"  # what picking by PATH did before the pin
    pinned = scenarios.Session(session.target, session.profile, session.artifacts, say=lambda _: None)
    assert pinned.client.command == "mender --no-syslog"
    outcome = scenarios.run(pinned, "unmet_depends")
    assert outcome.ok, outcome.failures()
    assert scenarios.depends_unmet_key(outcome.steps[0].output) == "rootfs-image.cuda.version"


def test_the_scenarios_leave_the_rootfs_provides_as_they_found_them(session):
    before = session.provides()
    for key in ("persistent_app", "unmet_depends", "rootfs_provides"):
        assert scenarios.run(session, key).ok
    after = session.provides()
    assert {k: v for k, v in after.items() if k.startswith("rootfs-image.")} == \
        {k: v for k, v in before.items() if k.startswith("rootfs-image.")}
    assert after["artifact_name"] == before["artifact_name"] == "composable-demo-1.0"
    assert after["data-partition.demo-app.version"] == "2.0"


class OeqaSshTargetStandIn:
    """What the testimage case gets as self.target (oeqa's ssh target: run, copyTo), over the
    sandbox; systemctl answers "inactive" so that the machine's own services are never touched."""

    def __init__(self, target):
        self._target = target

    def run(self, command, timeout=None):
        if command.startswith("systemctl "):
            return 3, "inactive"
        return self._target.run(command, timeout)

    def copyTo(self, local, remote):  # noqa: N802 - oeqa's name
        self._target.copy_to(local, remote)


def test_the_testimage_case_passes_against_the_sandbox_with_artifacts_deployed_like_the_build(
        sandbox_factory, dockerd, rust_binary, tmp_path):
    """lib/oeqa/runtime/cases/composable.py itself, its imports stubbed: expectations from a
    datastore like testimage's, artifacts under the names composable-demo-image deploys, the
    device's docker CLI reaching the engine via DOCKER_HOST. The case drives the client the device
    has; this device has the Go client only, so a C++ mender-update elsewhere on this machine's
    PATH is left out of the device's PATH."""
    before = host_device_paths_snapshot()
    artifact_name, rootfs_provides = image_settings()
    device = sandbox_factory(artifact_name=artifact_name)
    session = local_session(
        device, tmp_path / "artifacts", dockerd=dockerd, module=rust_binary("persistent-app"),
        docker_module=rust_binary("docker-module", "mender-docker-module"),
        app_generator=rust_binary("persistent-app-gen", "persistent-app-artifact-gen"),
        docker_generator=rust_binary("docker-artifact-gen"))
    deploy = tmp_path / "deploy"
    deploy.mkdir()
    for made in (session.artifacts.demo_app("1.0"), session.artifacts.demo_app("2.0"),
                 session.artifacts.cuda_depends(), session.artifacts.docker_stack("1.0"),
                 session.artifacts.docker_stack("2.0")):
        shutil.copy(made, deploy)
    session.close()
    # The rootfs artifact meta-mender deploys as ${IMAGE_LINK_NAME}.mender: the case reads the
    # expected rootfs provides from it (the bench seeded the device with the same ones).
    link_name = "composable-demo-image-qemux86-64"
    rootfs = tmp_path / "rootfs.ext4"
    subprocess.run(["truncate", "-s", "4M", str(rootfs)], check=True)
    subprocess.run(["mkfs.ext4", "-q", "-F", str(rootfs)], check=True)
    argv = ["mender-artifact", "write", "rootfs-image", "-f", str(rootfs), "-n", artifact_name,
            "-t", device.device_type, "-o", str(deploy / f"{link_name}.mender")]
    for key, value in rootfs_provides.items():
        argv += ["--provides", f"{key}:{value}"]
    subprocess.run(argv, check=True, capture_output=True)
    td = {"MACHINE": "qemux86-64", "PN": "composable-demo-image", "DEPLOY_DIR_IMAGE": str(deploy),
          "IMAGE_LINK_NAME": link_name, "WORKDIR": str(tmp_path / "workdir"), "TOPDIR": str(tmp_path),
          # The bench's engine in place of /data/docker (meta-mender-extended's variable names it).
          "MENDER_DOCKER_DATA_ROOT": str(dockerd.data_root)}
    path = os.pathsep.join(d for d in os.environ["PATH"].split(os.pathsep)
                           if not os.access(os.path.join(d, "mender-update"), os.X_OK))
    env = dict(session.target.env, DOCKER_HOST=dockerd.host, PATH=path)
    with oeqa_stub.case_module() as mod:
        cls = mod.ComposableTest
        cls.td, cls.logger = td, logging.getLogger("composable-test")
        cls.tc = types.SimpleNamespace(image_packages={"persistent-app-update-module", "docker-update-module",
                                                       "docker-moby"})
        cls.target = OeqaSshTargetStandIn(SandboxTarget(device, env))
        suite = unittest.TestSuite(cls(name) for name in sorted(n for n in dir(cls) if n.startswith("test_")))
        result = unittest.TestResult()
        suite.run(result)
    assert result.testsRun == 4
    assert not result.failures and not result.errors, result.failures + result.errors
    assert result.skipped == []
    assert host_device_paths_snapshot() == before
