"""The workspace's binaries built with the fault-injection feature, for the tests that kill a module
at a named point (module-kit's fault points)."""

from __future__ import annotations

import functools
import shutil
from pathlib import Path

from .system import run

RUST_DIR = Path(__file__).resolve().parents[2] / "rust"
TARGET_DIR = RUST_DIR.parent / "target"


@functools.lru_cache(maxsize=None)
def fault_build(package: str, binary: str) -> Path:
    """`binary` of `package` built with the fault-injection feature, in the dev profile (it compiles
    much faster than the release profile's LTO and shares its dependencies with `cargo test`), copied
    to target/fault-injection/ so that nothing takes it for a shipped build (the release profile
    never has the feature), and without debug info: the dev profile's is ten times the code, and the
    VM device's rootfs is sized for the release binaries."""
    run(["cargo", "build", "--locked", "--quiet", "-p", package, "--bin", binary, "--features", "fault-injection"],
        cwd=RUST_DIR, timeout=1800)
    out = TARGET_DIR / "fault-injection"
    out.mkdir(parents=True, exist_ok=True)
    staged = out / f".{binary}.new"
    shutil.copy2(TARGET_DIR / "debug" / binary, staged)
    run(["strip", "--strip-debug", str(staged)], timeout=120)
    staged.replace(out / binary)
    return out / binary
