"""The bench works end to end: the real client installs, commits and rolls back a module built from
the workspace, inside the sandbox, and the machine's own device paths do not change."""

from bench import host_device_paths_snapshot
from scenarios.smoke import APP, run_smoke


def test_real_client_installs_commits_and_rolls_back_the_smoke_module(sandbox, rust_binary, tmp_path):
    before = host_device_paths_snapshot()

    run = run_smoke(sandbox, rust_binary("smoke-module"), tmp_path)

    install = run.step("install smoke-app-1.0.mender")
    assert install.returncode == 0, install.stderr
    # Go 3.4 standalone: Download, then ArtifactInstall (queries are not logged by the module).
    assert install.states == ["Download", "ArtifactInstall"]
    assert install.files == {"config.json": '{"level": 1}\n', "version": "1.0\n"}

    commit = run.step("commit")
    assert commit.returncode == 0, commit.stderr
    assert commit.states == ["ArtifactCommit", "Cleanup"]
    assert commit.provides[f"data-partition.{APP}.version"] == "1.0"
    assert commit.provides["artifact_name"] == f"{APP}-1.0"

    install2 = run.step("install smoke-app-2.0.mender")
    assert install2.returncode == 0, install2.stderr
    assert install2.files == {"new-in-2": "x\n", "version": "2.0\n"}

    rollback = run.step("rollback")
    assert rollback.returncode == 0, rollback.stderr
    assert rollback.states == ["ArtifactRollback", "Cleanup"]
    assert rollback.files == {"config.json": '{"level": 1}\n', "version": "1.0\n"}
    assert rollback.provides[f"data-partition.{APP}.version"] == "1.0"

    assert host_device_paths_snapshot() == before
