"""The bench's smoke deployment: a module built from the workspace on the protocol crate, an artifact
written by the real mender-artifact, installed, committed and rolled back by the real client."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from bench import DeviceSandbox, mender_artifact_write_module

APP = "smoke-app"
DEST = "/data/smoke/smoke-app"


@dataclass
class Step:
    command: str
    returncode: int
    states: list[str]
    provides: dict[str, str]
    files: dict[str, str]
    stderr: str = ""


@dataclass
class SmokeRun:
    steps: list[Step] = field(default_factory=list)

    def step(self, command: str) -> Step:
        return next(s for s in self.steps if s.command == command)


def _artifact(workdir: Path, sandbox: DeviceSandbox, version: str, files: dict[str, str]) -> Path:
    payload_dir = workdir / f"payload-{version}"
    payload_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, content in files.items():
        (payload_dir / name).write_text(content)
        paths.append(payload_dir / name)
    return mender_artifact_write_module(
        workdir / f"{APP}-{version}.mender", type="smoke", name=f"{APP}-{version}",
        device_type=sandbox.device_type, files=paths, software_filesystem="data-partition",
        software_name=APP, software_version=version, meta_data={"dest": DEST},
    )


def run_smoke(sandbox: DeviceSandbox, module: os.PathLike, workdir: Path,
              say: Callable[[str], None] = lambda _: None) -> SmokeRun:
    """Install 1.0 and commit, install 2.0 and roll back; record what the device shows after each."""
    sandbox.install_module("smoke", module)
    states_log = sandbox.host_path(DEST + ".states")
    dest = sandbox.host_path(DEST)
    result = SmokeRun()

    def observe(command: str, returncode: int, stderr: str) -> None:
        states = states_log.read_text().split() if states_log.exists() else []
        states_log.unlink(missing_ok=True)
        files = {p.name: p.read_text() for p in sorted(dest.iterdir())} if dest.is_dir() else {}
        step = Step(command, returncode, states, sandbox.provides(), files, stderr)
        result.steps.append(step)
        say(f"$ mender {command}  -> exit {returncode}")
        say(f"    module states: {' -> '.join(states) or '(none)'}")
        say(f"    {DEST}: {files}")
        say("    provides: " + (", ".join(f"{k}={v}" for k, v in sorted(step.provides.items())) or "(none recorded yet)"))

    v1 = _artifact(workdir, sandbox, "1.0", {"version": "1.0\n", "config.json": '{"level": 1}\n'})
    v2 = _artifact(workdir, sandbox, "2.0", {"version": "2.0\n", "new-in-2": "x\n"})
    for command, argv in (
        ("install smoke-app-1.0.mender", ("install", str(v1))),
        ("commit", ("commit",)),
        ("install smoke-app-2.0.mender", ("install", str(v2))),
        ("rollback", ("rollback",)),
    ):
        proc = sandbox.mender(*argv)
        observe(command, proc.returncode, proc.stderr)
    return result
