"""The booted VM device (tests/vmdevice): its image, built once per session and cached by its inputs
across sessions, and one VM per test module, booted from a fresh copy of that image."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest

from vmdevice import image as vm_image_mod
from vmdevice.session import boot_copy

ROOT = Path(__file__).resolve().parents[2]
# Big sparse disk copies: not under pytest's tmp_path, which keeps the last runs' directories.
SCRATCH = Path("/var/tmp/meta-mender-composable")


@pytest.fixture(scope="session")
def vm_image(bench_prerequisites, rust_binary):
    # The binaries the image installs, built from this workspace (release, as the recipes build).
    rust_binary("docker-module", "mender-docker-module")
    rust_binary("docker-module", "mender-inventory-docker")
    binary = rust_binary("persistent-app")
    try:
        return vm_image_mod.build(ROOT, binary.parent, log=print)
    except vm_image_mod.ImageError as e:
        pytest.fail(f"the VM device image could not be built: {e}", pytrace=False)


@pytest.fixture(scope="module")
def vm(vm_image):
    SCRATCH.mkdir(parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix="vm-", dir=SCRATCH))
    device = boot_copy(vm_image, workdir)
    try:
        device.start()
        device.wait_ssh(timeout=600)
        yield device
    finally:
        device.stop()
        # Keep the consoles of a failed run for the report; the disks are large.
        for big in ("disk.raw", "bootenv.raw"):
            (workdir / big).unlink(missing_ok=True)
