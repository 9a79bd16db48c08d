"""A stack started along its depends_on, through the real Go client and the bench's engine: each
container starts only once what it waits for is there (started, healthy, or exited 0), independent
containers start together, and a job that fails stops the install before its dependents start."""

from __future__ import annotations

import json
import time

import pytest

from docker_helpers import container, device, module_lines, stack_meta  # noqa: F401  (fixture)

pytestmark = pytest.mark.bench

# db turns healthy about 2 s after it starts; migrate is a job that runs 1 s.
DB = {"command": ["sh", "-c", "sleep 2; touch /tmp/ready; exec sleep 3600"],
      "healthcheck": {"test": ["CMD", "test", "-f", "/tmp/ready"], "interval_seconds": 1, "retries": 30}}


def graph_release(image: str, migrate_exit: int, version: str) -> dict:
    env = {"RELEASE": version}
    return stack_meta("shop", [
        container("db", image, env=env, **DB),
        container("cache", image, env=env),
        container("migrate", image, env=env, command=["sh", "-c", f"sleep 1; exit {migrate_exit}"],
                  depends_on={"db": "service_healthy"}),
        container("api", image, env=env,
                  depends_on={"db": "service_healthy", "migrate": "service_completed_successfully"}),
        container("web", image, env=env, depends_on={"api": "service_started", "cache": "service_started"}),
    ], graph=True)


def events(device, since: float) -> list[dict]:
    """The engine's container events since `since`, in order: (name, action, time in ns, exit code)."""
    out = device.dockerd.docker("events", "--since", f"{since:.3f}", "--until", f"{time.time():.3f}",
                                "--filter", "type=container", "--format", "{{json .}}").stdout
    found = []
    for line in out.splitlines():
        e = json.loads(line)
        attrs = e["Actor"]["Attributes"]
        found.append({"name": attrs.get("name", ""), "action": e["Action"], "t": e["timeNano"],
                      "release": attrs.get("io.mender.composable.release", ""),
                      "exit": attrs.get("exitCode")})
    return found


def first(evs: list[dict], release: str, logical: str, action: str) -> int:
    """When the release's container `logical` (under its final or its temporary name) first did `action`."""
    for e in evs:
        if e["release"] == release and e["name"].split(".mender-")[0] == logical and e["action"] == action:
            return e["t"]
    raise AssertionError(f"no {action} of {logical} ({release}) in {[(e['name'], e['action']) for e in evs]}")


def test_a_stack_starts_along_its_dependencies_and_a_failed_job_rolls_it_back(device):
    image = device.image("graph/app", "1")
    since = time.time()
    install = device.install(device.artifact("shop-1", graph_release(image, 0, "1")))
    assert install.returncode == 0, install.stderr
    evs = events(device, since)

    start = {n: first(evs, "shop-1", n, "start") for n in ("db", "cache", "migrate", "api", "web")}
    healthy = first(evs, "shop-1", "db", "health_status: healthy")
    migrated = first(evs, "shop-1", "migrate", "die")
    assert [e["exit"] for e in evs if e["action"] == "die" and e["name"] == "migrate"] == ["0"]
    # service_healthy: after db's health turned healthy; service_completed_successfully: after migrate died.
    assert start["migrate"] > healthy
    assert start["api"] > max(healthy, migrated)
    # service_started: after api's and cache's start.
    assert start["web"] > max(start["api"], start["cache"])
    # db and cache have nothing to wait for: one start for both, before anything that waits.
    assert max(start["db"], start["cache"]) < start["migrate"]
    lines = module_lines(install.stderr)
    assert any("started db" in line for line in lines) and any("started cache" in line for line in lines)
    assert any("waiting up to" in line and "migrate (service_completed_successfully)" in line for line in lines), lines

    commit = device.mender("commit")
    assert commit.returncode == 0, commit.stderr
    snap = device.snapshot()
    # The job ran to completion and stays exited; the health gate never waited for it to run.
    assert snap.running() == {"db", "cache", "api", "web"}
    before = snap.ids()

    # Release 2's job fails: nothing that waits for it starts, and the client's rollback brings
    # back release 1's containers (the same ones).
    since = time.time()
    failed = device.install(device.artifact("shop-2", graph_release(image, 3, "2")))
    assert failed.returncode != 0
    assert "container migrate exited with code 3" in failed.stderr.replace(".mender-new", ""), failed.stderr
    evs = events(device, since)
    started = {e["name"].split(".mender-")[0] for e in evs if e["release"] == "shop-2" and e["action"] == "start"}
    assert started == {"db", "cache", "migrate"}, started
    after = device.snapshot()
    assert after.running() == {"db", "cache", "api", "web"}
    assert {n: i for n, i in after.ids().items() if n in before} == before
    assert device.sandbox.artifact_name() == "shop-1", failed.stderr[-3000:]
    assert device.journal("shop")["update"] is None
