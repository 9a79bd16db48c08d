"""Fixtures for tests that drive the real engine, registry and Mender client (see tests/bench)."""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench  # noqa: E402


def pytest_configure(config):
    config.addinivalue_line(
        "markers",
        "bench: needs the real test bench (root, dockerd, docker-registry, mender, mender-artifact); "
        "errors instead of skipping when it is missing",
    )


def pytest_collection_modifyitems(items):
    for item in items:
        if item.get_closest_marker("bench"):
            item.fixturenames.insert(0, "bench_prerequisites")


@pytest.fixture(scope="session")
def bench_prerequisites():
    """Fail, never skip, when the bench cannot run: CI must not go green on a machine without it."""
    problems = bench.missing_components()
    if problems:
        pytest.fail("the test bench cannot run here:\n  - " + "\n  - ".join(problems) + "\n" + bench.system.SETUP_HINT,
                    pytrace=False)


@pytest.fixture(scope="session")
def _session_dockerd(bench_prerequisites):
    # Not under tmp_path: its long names would overflow containerd's unix socket paths.
    with bench.Dockerd() as daemon:
        yield daemon


@pytest.fixture
def dockerd(_session_dockerd):
    """The session's private engine, emptied (containers, images, volumes, logins) for this test."""
    if _session_dockerd.pid is None:
        pytest.fail(f"the session's private dockerd under {_session_dockerd.run_dir} has died; "
                    "see its log there", pytrace=False)
    _session_dockerd.reset()
    yield _session_dockerd


@pytest.fixture
def dockerd_factory(bench_prerequisites):
    """Start extra fresh daemons for this test: `second = dockerd_factory()`; all stopped after it.

    Keywords go to bench.Dockerd, e.g. `dockerd_factory(network_namespace=True)` for bridge networking.
    """
    with contextlib.ExitStack() as stack:

        def start(**kwargs) -> bench.Dockerd:
            return stack.enter_context(bench.Dockerd(**kwargs))

        yield start


@pytest.fixture
def bridged_dockerd(dockerd_factory):
    """A fresh private engine with bridge networking, in a network namespace of its own.

    User-defined networks, aliases and published ports work; reach a published port with
    `bridged_dockerd.http_get_in_netns(port)` or `bridged_dockerd.netns_run([...])`. Stopped after the
    test, which destroys the namespace and everything the engine made in it.
    """
    return dockerd_factory(network_namespace=True)


@pytest.fixture
def registry_factory(bench_prerequisites, tmp_path):
    """Start registries for this test: `registry_factory(user="u", password="p")`."""
    with contextlib.ExitStack() as stack:
        counter = iter(range(1_000))

        def start(**kwargs) -> bench.Registry:
            return stack.enter_context(bench.Registry(tmp_path / f"registry-{next(counter)}", **kwargs))

        yield start


@pytest.fixture
def registry(registry_factory):
    """A fresh, empty registry without auth on 127.0.0.1."""
    return registry_factory()


@pytest.fixture
def sandbox_factory(bench_prerequisites, tmp_path):
    """Make devices with other settings: `sandbox_factory(artifact_name="v1", device_type="rpi4")`."""
    with contextlib.ExitStack() as stack:
        counter = iter(range(1_000))

        def make(**kwargs) -> bench.DeviceSandbox:
            return stack.enter_context(bench.DeviceSandbox(tmp_path / f"device-{next(counter)}", **kwargs))

        yield make


@pytest.fixture
def sandbox(sandbox_factory):
    """A fresh device (artifact_name=initial, device_type=qemux86-64) for this test."""
    return sandbox_factory()


RUST_DIR = Path(__file__).resolve().parent.parent / "rust"


@pytest.fixture(scope="session")
def rust_binary():
    """`rust_binary("smoke-module")`: path of that workspace binary, built once (release, locked)."""
    built: dict[str, Path] = {}

    def get(package: str, binary: str | None = None) -> Path:
        binary = binary or package
        if binary not in built:
            # From rust/, so rust/.cargo/config.toml applies (target dir: ../target).
            bench.system.run(["cargo", "build", "--release", "--locked", "--quiet", "-p", package, "--bin", binary],
                             cwd=RUST_DIR, timeout=1800)
            built[binary] = RUST_DIR.parent / "target" / "release" / binary
        return built[binary]

    return get
