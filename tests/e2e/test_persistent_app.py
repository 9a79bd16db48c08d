"""The persistent-app module end to end under the real Mender client (Go 3.4) in the device sandbox,
with artifacts from our generator, once with the module streaming the payload in Download and once
with the client storing it for ArtifactInstall (`"download": "store"`)."""

import pytest

from bench import DEPENDS_UNMET_RE, host_device_paths_snapshot
from scenarios.persistent_app import (APP, MODES, content, deploy_rollback_commit,
                                      refused_before_install, refused_by_policy)

pytestmark = pytest.mark.bench

VERSION_KEY = f"data-partition.{APP}.version"
PREVIOUS, STAGING = f".{APP}.previous", f".{APP}.staging"


@pytest.fixture
def tools(rust_binary):
    return rust_binary("persistent-app"), rust_binary("persistent-app-gen", "persistent-app-artifact-gen")


def assert_ok(step):
    assert step.returncode == 0, f"{step.command}:\n{step.stderr}"
    assert step.module_errors == [], step.module_errors


@pytest.mark.parametrize("mode", MODES)
def test_real_client_deploys_rolls_back_and_commits_app_versions_that_survive_an_os_update(
        sandbox, tools, tmp_path, mode):
    before = host_device_paths_snapshot()
    module, generator = tools

    run = deploy_rollback_commit(sandbox, module, generator, tmp_path, mode)
    v1, v2 = run.sources["1.0"], run.sources["2.0"]
    assert content(v1) != content(v2)

    install1 = run.step(f"install {APP}-1.0")
    assert_ok(install1)
    # The payload took the path the configuration asked for.
    where = {"stream": "from the client's stream",
             "store": "from the payloads the client stored under files/"}[mode]
    assert any("staged demo-app-1.0" in line and line.endswith(where) for line in install1.module_lines), \
        install1.module_lines
    assert (mode == "store") == any('download mode "store"' in line for line in install1.module_lines)

    commit1 = run.step("commit 1.0")
    assert_ok(commit1)
    assert commit1.provides[VERSION_KEY] == "1.0"
    assert commit1.provides["artifact_name"] == f"{APP}-1.0"
    assert content(commit1.tree) == content(v1)
    assert commit1.apps == [APP]

    install2 = run.step(f"install {APP}-2.0")
    assert_ok(install2)
    assert content(install2.tree) == content(v2)
    assert install2.apps == [PREVIOUS, APP], "1.0 is kept until commit"
    assert install2.journal["phase"] == "swapped"

    rollback = run.step("rollback 2.0")
    assert_ok(rollback)
    # Exactly the committed 1.0 tree: same entries, modes, mtimes, contents, links, even the root and
    # the release marker (the very directory came back).
    assert rollback.tree == commit1.tree
    assert content(rollback.tree) == content(v1)
    assert rollback.apps == [APP]
    assert rollback.journal is None
    assert rollback.provides[VERSION_KEY] == "1.0"

    commit2 = run.step("commit 2.0")
    assert_ok(commit2)
    assert content(commit2.tree) == content(v2)
    assert commit2.apps == [APP], "no previous version, no staging tree"
    # The journal is reduced to the commit's tombstone (artifact and token), which only refuses a
    # rollback of this artifact; the next Download removes it.
    assert commit2.journal["phase"] == "committed" and commit2.journal["artifact"] == f"{APP}-2.0"
    assert commit2.provides[VERSION_KEY] == "2.0"
    assert "README" not in commit2.tree and "share/new-in-2.txt" in commit2.tree
    assert commit2.tree["bin/demo"][1] == 0o700

    os_update = run.step("os update (clears rootfs-image.*)")
    assert os_update.provides["rootfs-image.os.version"] == "2"
    assert os_update.provides[VERSION_KEY] == "2.0"
    assert os_update.tree == commit2.tree

    assert host_device_paths_snapshot() == before


@pytest.mark.parametrize("mode", MODES)
def test_real_client_refuses_unmet_depends_and_escaping_archives_without_touching_the_device(
        sandbox, tools, tmp_path, mode):
    before = host_device_paths_snapshot()
    module, generator = tools

    run = refused_before_install(sandbox, module, generator, tmp_path, mode)
    committed = run.step("commit 1.0")
    assert_ok(committed)
    assert content(committed.tree) == content(run.sources["1.0"])

    depends = run.step(f"install {APP}-cuda (depends rootfs-image.cuda.version:11.8)")
    assert depends.returncode != 0
    match = DEPENDS_UNMET_RE.search(depends.stderr)
    assert match and (match["go_key"] or match["cpp_key"]) == "rootfs-image.cuda.version", depends.stderr
    assert depends.states == [], "the client refused before running any module state"
    assert depends.module_lines == []
    assert depends.tree == committed.tree and depends.apps == [APP]
    assert depends.journal == committed.journal, "only 1.0's commit tombstone, untouched"
    assert depends.provides == committed.provides

    evil = run.step(f"install {APP}-evil (../evil in the archive)")
    assert evil.returncode != 0
    failing = {"stream": "Download", "store": "ArtifactInstall"}[mode]
    assert evil.module_errors == [
        f"persistent-app: error: {failing}: payload app.tar: member \"../evil\" refused: '..' is not allowed"
    ], evil.module_lines
    assert evil.tree == committed.tree, "1.0 exactly as it was"
    assert evil.apps == [APP], "no staging tree, nothing written beside the app"
    for escaped in ("/data/apps/evil", "/data/evil"):
        assert not sandbox.host_path(escaped).exists(), escaped
    # Its Download settled what 1.0's deployment left (the commit's tombstone) before the archive was read.
    assert evil.journal is None
    assert evil.provides == committed.provides
    # Stream: Download fails, the client runs Cleanup only ("system not modified"). Store: the archive
    # is first read in ArtifactInstall, so the client takes the error path, where nothing was swapped.
    assert evil.states == {
        "stream": ["Download", "Cleanup"],
        "store": ["Download", "SupportsRollback", "ArtifactInstall", "SupportsRollback", "ArtifactRollback",
                  "ArtifactFailure", "Cleanup"],
    }[mode]

    assert host_device_paths_snapshot() == before


def test_real_client_refuses_services_the_device_policy_does_not_allow_in_download(sandbox, tools, tmp_path):
    before = host_device_paths_snapshot()
    module, generator = tools

    # say=print: the captured run is shown with a failure, and in the README.
    run = refused_by_policy(sandbox, module, generator, tmp_path, "stream", say=print)
    committed = run.step("commit 1.0")
    assert_ok(committed)
    refusals = {
        "sshd.service": f"persistent-app: error: Download: service sshd.service is not allowed on this device: "
                        f"allowed_services in /etc/mender/persistent-app.conf permits only {APP}*",
        "mender-updated.service": "persistent-app: error: Download: service mender-updated.service is the "
                                  "Mender client's own unit",
    }
    for label, service in ((f"install {APP}-sshd (service sshd.service)", "sshd.service"),
                           (f"install {APP}-client (service mender-updated.service)", "mender-updated.service")):
        step = run.step(label)
        assert step.returncode != 0, label
        assert len(step.module_errors) == 1, step.module_lines
        assert step.module_errors[0].startswith(refusals[service]), step.module_errors
        # Refused in Download: the client runs Cleanup only, and the device is as 1.0's commit left it.
        assert step.states == ["Download", "Cleanup"], step.states
        assert step.tree == committed.tree and step.apps == [APP]
        assert step.provides == committed.provides
    assert host_device_paths_snapshot() == before
