"""persistent-app file deltas end to end under the real Mender client (Go 3.4) in the device sandbox:
artifacts from `persistent-app-artifact-gen --base`, installed over the release they were built
against, rolled back and committed; refused by depends on a device at another release; refused in
Download, with the device as it was, when a base file was edited or removed by hand or a shipped file
differs from the manifest."""

import pytest

from bench import DEPENDS_UNMET_RE, host_device_paths_snapshot
from scenarios.persistent_app import APP, DEST, MODES, content, delta_deploy, delta_refused
from test_persistent_app import assert_ok, tools  # noqa: F401  (tools: the fixture)

pytestmark = pytest.mark.bench

VERSION_KEY = f"data-partition.{APP}.version"
PREVIOUS = f".{APP}.previous"


@pytest.mark.parametrize("mode", MODES)
def test_real_client_installs_a_delta_on_its_base_rolls_it_back_and_refuses_it_on_another_release(
        sandbox, tools, tmp_path, mode):
    before = host_device_paths_snapshot()
    module, generator = tools

    run = delta_deploy(sandbox, module, generator, tmp_path, mode, say=print)
    v1, v2 = run.sources["1.0"], run.sources["2.0"]
    commit1 = run.step("commit 1.0")
    assert_ok(commit1)

    install = run.step(f"install {APP}-2.0 delta")
    assert_ok(install)
    assert content(install.tree) == content(v2), "the whole 2.0 tree, from 1.0's files and the delta's"
    assert install.apps == [PREVIOUS, APP]
    assert any("took 3 files from the installed release 1.0" in line for line in install.module_lines), \
        install.module_lines

    rollback = run.step("rollback 2.0")
    assert_ok(rollback)
    assert rollback.tree == commit1.tree, "exactly the committed 1.0 tree"
    assert content(rollback.tree) == content(v1)
    assert rollback.provides[VERSION_KEY] == "1.0"

    commit2 = run.step("commit 2.0")
    assert_ok(commit2)
    assert content(commit2.tree) == content(v2)
    assert commit2.provides[VERSION_KEY] == "2.0"
    assert commit2.apps == [APP]

    wrong_base = run.step(f"install {APP}-3.0 delta against 1.0")
    assert wrong_base.returncode != 0
    match = DEPENDS_UNMET_RE.search(wrong_base.stderr)
    assert match and (match["go_key"] or match["cpp_key"]) == VERSION_KEY, wrong_base.stderr
    assert wrong_base.states == [], "the client refused before running any module state"
    assert wrong_base.tree == commit2.tree and wrong_base.apps == [APP]
    assert wrong_base.provides == commit2.provides

    assert host_device_paths_snapshot() == before


@pytest.mark.parametrize("mode", MODES)
def test_real_client_refuses_a_delta_whose_base_was_changed_by_hand_or_whose_content_was_altered(
        sandbox, tools, tmp_path, mode):
    before = host_device_paths_snapshot()
    module, generator = tools

    # say=print: the captured run is shown with a failure, and in the README.
    run = delta_refused(sandbox, module, generator, tmp_path, mode, say=print)
    committed = run.step("commit 1.0")
    assert_ok(committed)
    dest = DEST  # as the module sees it inside the device sandbox
    failing = {"stream": "Download", "store": "ArtifactInstall"}[mode]
    cases = {
        f"install {APP}-2.0 delta (base file edited by hand)":
            f"persistent-app: error: {failing}: delta {APP}-2.0 refused: \"{dest}/share/model/weights.bin\" has "
            f"sha256 ",
        f"install {APP}-2.0 delta (base file removed by hand)":
            f"persistent-app: error: {failing}: delta {APP}-2.0 refused: \"{dest}/lib/libdemo.so.1\" is missing, "
            f"so the installed tree is not release 1.0 of {APP}",
        f"install {APP}-2.0 delta (shipped file changed)":
            f"persistent-app: error: {failing}: payload app.tar: member \"etc/demo.conf\" refused: its content "
            f"does not match the delta's manifest (has sha256 ",
    }
    for label, want in cases.items():
        step = run.step(label)
        assert step.returncode != 0, label
        assert len(step.module_errors) == 1 and step.module_errors[0].startswith(want), (label, step.module_lines)
        if "by hand" in label:
            assert step.module_errors[0].endswith("deploy the full artifact of this release instead"), step.module_errors
        assert step.apps == [APP], "no staging tree left"
        assert step.provides == committed.provides
        assert step.journal is None
        if mode == "stream":
            assert step.states == ["Download", "Cleanup"], step.states
    # The hand edits were undone between the attempts, so the tree is 1.0's again, exactly.
    assert run.steps[-1].tree == committed.tree

    assert host_device_paths_snapshot() == before
