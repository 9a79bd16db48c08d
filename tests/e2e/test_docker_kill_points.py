"""Every (state, fault point) pair the docker module reaches, killed with SIGKILL and recovered.

Each scenario runs once on a clean device with DOCKER_MODULE_FAULT_TRACE, which lists every point each
state process passes (`State:point:pid`). Then, for every (state, point) pair, the scenario runs again
with DOCKER_MODULE_FAULT=<State>:<point>:<n> for the first and the last time one process passes it.
Scenarios: install+commit, install+rollback, an install that fails its health gate, an inline-archive
install+commit, an inline archive that Download refuses after loading it, and a stack started along
its depends_on (install+rollback). The real Go client
drives the module, so what follows a kill is the client's own error path (Cleanup after a Download;
ArtifactRollback, ArtifactFailure and Cleanup, as far as they apply, after the others), each state in
a fresh process. A killed Cleanup is run again in a fresh process, as a client restarted after a
power cut runs it (the Go client leaves it to the next deployment; test_docker_crash.py covers that).

After each kill and its recovery the device must be exactly on one release, the one the client
reports: the old one with the same containers (ids), states, images, tags, volumes and journal, or
the new one as a clean run leaves it; no update left in the journal. A pair is only killed in the
first scenario that reaches it unless a later one is about that state (the rollback scenario kills
every ArtifactRollback pair again). The inline scenarios do not kill their Download again before the
load: the Go client 3.4 sometimes waits forever for a module that died before it opened the payload
stream (a power cut takes the client down too, so only this test can meet that).

A Download killed while the client streams the payload can hang the Go client 3.4 too (see
docker_helpers.ClientHung): the client's race, not the module's. Such a client is SIGKILLed after
CLIENT_TIMEOUT, a power cut in all but name, and the device is recovered as a restarted one would be:
the module's `recover` (the boot unit), then Cleanup in a fresh process (what a client that recorded
the Download runs). It must then be exactly on the old release like any other kill; the hangs are
counted and printed.

With $KILL_POINTS_REPORT set, the pairs reached and killed and the number of kills are written there
as JSON (scripts/reliability-report prints them).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import pytest

import bench
from docker_helpers import (
    CLIENT_TIMEOUT,
    RUST_DIR,
    STATE_DIR,
    ClientHung,
    DockerDevice,
    container,
    fault_binary,
    fault_fired,
    install_or_hang,
    recover_after_restart,
    rerun_cleanup,
    stack_meta,
)

pytestmark = pytest.mark.bench


# Points no scenario here reaches, and why.
UNREACHED: dict[str, str] = {
    "after-retag": "the archive filter strips every tag before the engine sees the archive, so no load moves "
                   "or adds a tag for the module to put back (test_docker_load_safety.py proves the stripping)",
}


def fault_points() -> list[str]:
    """docker_module::fault::POINTS, read from its source."""
    text = (RUST_DIR / "docker-module" / "src" / "fault.rs").read_text()
    body = text.split("pub const POINTS: &[&str] = &[", 1)[1].split("];", 1)[0]
    return re.findall(r'^\s*"([a-z-]+)",', body, re.M)


def tags(device: DockerDevice) -> dict[str, str]:
    out = device.dockerd.docker("images", "--no-trunc", "--format", "{{.Repository}}:{{.Tag}} {{.ID}}").stdout
    return dict(line.split() for line in out.splitlines() if line and "<none>" not in line)


def volumes(device: DockerDevice) -> set[str]:
    return set(device.dockerd.ids("volume", "ls", "-q"))


@dataclass
class State:
    """What a user of the device sees: containers, images, tags, volumes, the journal."""

    containers: dict[str, tuple[str, bool, str, str]]  # name -> (id, running, image id, release label)
    images: set[str]
    tags: dict[str, str]
    volumes: set[str]
    journal: dict | None
    artifact: str
    # The module's state directory: journals only, no spare or temporary file left.
    files: list[str]

    @staticmethod
    def of(device: DockerDevice, stack: str) -> "State":
        snap = device.snapshot()
        containers = {n: (c[0], c[1], c[2], c[3].get("io.mender.composable.release", ""))
                      for n, c in snap.containers.items()}
        state_dir = device.sandbox.host_path(STATE_DIR)
        files = sorted(p.name for p in state_dir.iterdir()) if state_dir.exists() else []
        return State(containers, snap.images, tags(device), volumes(device), device.journal(stack),
                     device.sandbox.artifact_name(), files)

    def differences(self, want: "State", *, exact_ids: bool) -> list[str]:
        out = []
        mine = {n: c if exact_ids else c[1:] for n, c in self.containers.items()}
        theirs = {n: c if exact_ids else c[1:] for n, c in want.containers.items()}
        if mine != theirs:
            out.append(f"containers {mine} != {theirs}")
        if self.images != want.images:
            out.append(f"images added {sorted(self.images - want.images)}, gone {sorted(want.images - self.images)}")
        if self.tags != want.tags:
            out.append(f"tags {self.tags} != {want.tags}")
        if exact_ids and self.volumes != want.volumes or len(self.volumes) != len(want.volumes):
            out.append(f"volumes {sorted(self.volumes)} != {sorted(want.volumes)}")
        if self.files != want.files:
            out.append(f"state directory {self.files} != {want.files}")
        journal = self.journal or {}
        if journal.get("update") is not None:
            out.append(f"an update is left in the journal: {journal['update']}")
        wanted = want.journal or {}
        for key in ("current", "previous"):
            if (journal.get(key) or {}).get("artifact") != (wanted.get(key) or {}).get("artifact"):
                out.append(f"journal {key} {journal.get(key)} != {wanted.get(key)}")
        # A rollback or failure state that dies makes the Go client record "<name>_INCONSISTENT": its
        # own bookkeeping, not the device's.
        if not self.artifact.endswith("_INCONSISTENT") and self.artifact != want.artifact:
            out.append(f"the client records {self.artifact}, not {want.artifact}")
        return out


@dataclass
class Scenario:
    name: str
    stack: str
    # Puts the device on the old release (after an engine reset); returns the new release's artifact.
    setup: Callable[[DockerDevice], Path]
    # The client's command after "install": "commit" or "rollback"; "" for an install that fails.
    finish: str
    # States whose pairs are killed again even when an earlier scenario killed them.
    focus: tuple[str, ...] = ()
    artifact: Path | None = None
    images: dict[str, str] = field(default_factory=dict)


def reset(device: DockerDevice, scenario: Scenario) -> State:
    """The old release, freshly deployed on an empty engine, and what it looks like."""
    device.dockerd.reset()
    state_dir = device.sandbox.host_path(STATE_DIR)
    if state_dir.exists():
        shutil.rmtree(state_dir)
    scenario.artifact = scenario.setup(device)
    return State.of(device, scenario.stack)


# -- scenarios -----------------------------------------------------------------------------------

def registry_images(device: DockerDevice, images: dict[str, str]) -> None:
    if not images:
        images["v1"] = device.image("kp/app", "1")
        images["v2"] = device.image("kp/app", "2")
        images["tools"] = device.image("kp/tools", "1")
        images["broken"] = device.image("kp/app", "3", cmd=["sh", "-c", "exit 3"])


def web_release(device: DockerDevice) -> Path:
    """web-1 (web with a purged cache volume, worker) running beside a hand-started container `legacy`;
    web-2 replaces legacy, changes web and worker and adds api."""
    images = SCENARIOS[0].images
    registry_images(device, images)
    device.dockerd.docker("pull", images["tools"])
    device.run_foreign("legacy", images["tools"])
    v1, v2 = images["v1"], images["v2"]
    web = {"volumes": ["cache:/cache"]}
    device.deploy(device.artifact("web-1", stack_meta(
        "web", [container("web", v1, **web), container("worker", v1)], purge_on_deploy=["cache"])))
    return device.artifact("web-2", stack_meta(
        "web", [container("web", v2, **web), container("worker", v2), container("api", v2)],
        replaces=["legacy"], purge_on_deploy=["cache"]))


def broken_release(device: DockerDevice) -> Path:
    """web-1 as above; web-3's web exits at once, so its install fails the health gate and the client
    runs ArtifactRollback, ArtifactFailure and Cleanup by itself."""
    web_release(device)
    broken = SCENARIOS[0].images["broken"]
    return device.artifact("web-3", stack_meta("web", [container("web", broken, volumes=["cache:/cache"])],
                                               replaces=["legacy"], purge_on_deploy=["cache"]))


def _inline_archives(device: DockerDevice) -> dict[str, str]:
    """Made once, so that image IDs stay the same across resets: edge-1 and edge-2 from inline
    archives, a local image of the user's holding the tag demo/app:2 that edge-2's archive carries,
    and edge-3, whose archive also holds an image its meta-data does not list (refused after the
    load, which must then remove both)."""
    from test_docker_inline import hand_made, local_image

    made = SCENARIOS[3].images
    if made:
        return made
    work = device.workdir
    v1 = local_image(device, "demo/app:1", "1")
    # Large enough that a kill inside the load finds the client still writing the payload: the Go
    # client notices a dead module by a failed write, and waits forever for one that died after
    # reading a whole small payload.
    v2 = bench.make_busybox_image(device.dockerd, "demo/app:2", cmd=["sleep", "3600"],
                                  extra_files={"/blob": os.urandom(24 << 20)})
    extra = bench.make_busybox_image(device.dockerd, "demo/extra:1", cmd=["sleep", "3600"],
                                     extra_files={"/blob": os.urandom(4 << 20)})
    one, two, three, holder = (work / f"{n}.tar" for n in ("one", "two", "three", "holder"))
    device.dockerd.docker("save", "-o", str(one), "demo/app:1")
    device.dockerd.docker("save", "-o", str(two), "demo/app:2")
    device.dockerd.docker("save", "-o", str(three), "demo/app:2", "demo/extra:1")
    device.dockerd.docker("image", "rm", "-f", v1, v2, extra)
    local_image(device, "demo/app:2", "the user's own")
    device.dockerd.docker("save", "-o", str(holder), "demo/app:2")
    made.update({
        "holder": str(holder),
        "edge-1": str(hand_made(device, "edge-1", one, v1)),
        "edge-2": str(hand_made(device, "edge-2", two, v2)),
        "edge-3": str(hand_made(device, "edge-3", three, v2)),
    })
    return made


def inline_release(device: DockerDevice, new: str = "edge-2") -> Path:
    """edge-1 installed from an inline archive, the user's demo/app:2 beside it."""
    made = _inline_archives(device)
    if "demo/app:2" not in tags(device):
        device.dockerd.docker("load", "-i", made["holder"])
    device.deploy(Path(made["edge-1"]))
    return Path(made[new])


def graph_release(device: DockerDevice) -> Path:
    """shop-1 as a graph (no start order): db and worker together, then api once db is healthy;
    shop-2 changes all three. Its starts, stops, waits and their restore are the graph's own code."""
    images = SCENARIOS[0].images
    registry_images(device, images)
    health = {"healthcheck": {"test": ["CMD", "true"], "interval_seconds": 1}}

    def release(name: str, image: str) -> Path:
        return device.artifact(name, stack_meta("shop", [
            container("db", image, **health), container("worker", image),
            container("api", image, depends_on={"db": "service_healthy"})], graph=True))

    device.deploy(release("shop-1", images["v1"]))
    return release("shop-2", images["v2"])


SCENARIOS = [
    Scenario("install, commit", "web", web_release, "commit"),
    Scenario("install, rollback", "web", web_release, "rollback", focus=("ArtifactRollback",)),
    Scenario("install that fails its health gate", "web", broken_release, "", focus=("ArtifactFailure",)),
    Scenario("inline archive install, commit", "edge", inline_release, "commit"),
    # The archive also holds an image the meta-data does not list: Download refuses it after the load.
    Scenario("inline archive refused after its load", "edge", lambda d: inline_release(d, "edge-3"), ""),
    # Started along depends_on: every install and rollback pair again, through the graph's code.
    Scenario("graph install, rollback", "shop", graph_release, "rollback",
             focus=("ArtifactInstall", "ArtifactRollback")),
]


# -- running -------------------------------------------------------------------------------------

def run_scenario(device: DockerDevice, scenario: Scenario, env: dict[str, str]) -> list[str]:
    """The client's commands; returns the output of the one a fault killed, if any."""
    killed = []
    result = install_or_hang(device, scenario.artifact, env)
    if fault_fired(result.stderr):
        killed.append(result.stderr)
    elif scenario.finish:
        assert result.returncode == 0, result.stderr
        result = device.mender(scenario.finish, env=env, timeout=CLIENT_TIMEOUT)
        if fault_fired(result.stderr):
            killed.append(result.stderr)
    return killed


def trace(device: DockerDevice, scenario: Scenario) -> dict[tuple[str, str], int]:
    """(state, point) -> the most times one process of that state passed the point."""
    file = device.workdir / "trace"
    if file.exists():
        file.unlink()
    run_scenario(device, scenario, {"DOCKER_MODULE_FAULT_TRACE": str(file)})
    per_process: dict[tuple[str, str, str], int] = {}
    for line in file.read_text().splitlines():
        state, point, pid = line.split(":")
        per_process[(state, point, pid)] = per_process.get((state, point, pid), 0) + 1
    most: dict[tuple[str, str], int] = {}
    for (state, point, _), n in per_process.items():
        most[(state, point)] = max(most.get((state, point), 0), n)
    return most


def test_every_state_and_fault_point_reached_is_killed_and_recovered(sandbox, dockerd, registry, tmp_path):
    started = time.monotonic()
    device = DockerDevice(sandbox, dockerd, registry, tmp_path / "work")
    device.install_module(fault_binary())
    device.configure()
    reached: set[tuple[str, str]] = set()
    killed: set[tuple[str, str]] = set()
    kills = 0
    hangs: list[str] = []
    problems: list[str] = []

    for scenario in SCENARIOS:
        old = reset(device, scenario)
        hits = trace(device, scenario)
        new = State.of(device, scenario.stack)
        if scenario.finish != "commit":
            # A rollback or a failed install without any kill: the old release, exactly.
            problems += [f"{scenario.name} (no kill): {d}" for d in new.differences(old, exact_ids=True)]
            new = old
        elif new.artifact != scenario.artifact.stem:
            problems.append(f"{scenario.name}: the clean run ended on {new.artifact}")
        dirty = scenario.finish == "commit"
        for (state, point), count in sorted(hits.items()):
            reached.add((state, point))
            if (state, point) in killed and state not in scenario.focus:
                continue
            for n in sorted({1, count}):
                if dirty:
                    old = reset(device, scenario)
                why = f"{scenario.name}: {state}:{point}:{n}"
                try:
                    fired = run_scenario(device, scenario, {"DOCKER_MODULE_FAULT": f"{state}:{point}:{n}"})
                except ClientHung:
                    hangs.append(why)
                    print(f"kill points: {why}: the Go client hung on the dead module; SIGKILLed it, "
                          "recovering as after a power cut", flush=True)
                    recover_after_restart(device, scenario.artifact)
                    fired = ["the client, killed"]
                except bench.BenchError as e:
                    problems.append(f"{why}: {str(e).splitlines()[0]}")
                    print(f"kill points: PROBLEM {problems[-1]}", flush=True)
                    dirty = True
                    continue
                kills += 1
                if not fired:
                    problems.append(f"{why}: the traced point was not reached again")
                    dirty = True
                    continue
                if state == "Cleanup":
                    rerun_cleanup(device, scenario.artifact)
                now = State.of(device, scenario.stack)
                # Only a Cleanup after a completed commit ends on the new release.
                want_new = scenario.finish == "commit" and state == "Cleanup"
                diff = now.differences(new if want_new else old, exact_ids=not want_new)
                if diff:
                    problems.append(f"{why}: " + "; ".join(diff))
                    print(f"kill points: PROBLEM {problems[-1]}", flush=True)
                    dirty = True
                else:
                    killed.add((state, point))
                    dirty = want_new

    points = {p for _, p in reached}
    for point in fault_points():
        if point not in points and point not in UNREACHED:
            problems.append(f"no scenario reaches the fault point {point}")
    print(f"kill points: {len(killed)}/{len(reached)} (state, point) pairs, {kills} kills "
          f"({len(hangs)} hung the Go client and were recovered as power cuts), "
          f"{time.monotonic() - started:.0f} s")
    report = os.environ.get("KILL_POINTS_REPORT")
    if report:
        Path(report).write_text(json.dumps({
            "module": "docker",
            "reached": sorted(f"{s}:{p}" for s, p in reached),
            "killed": sorted(f"{s}:{p}" for s, p in killed),
            "kills": kills,
            "client_hangs": hangs,
        }))
    assert not problems, "\n".join(problems)
    assert killed == reached
