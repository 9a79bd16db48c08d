"""The device binaries fit the flash budget the product promises (docs in README, "Footprint").

Measured as Yocto ships them: the release profile, then stripped (the recipes' do_install
leaves stripping to the packaging, which strips every ELF file).
"""

import shutil
import subprocess

import pytest

# (package, binary, stripped size limit in bytes)
BUDGET = [
    ("docker-module", "mender-docker-module", 2 * 1024 * 1024),
    ("persistent-app", "persistent-app", 1024 * 1024),
]


@pytest.mark.parametrize("package,binary,limit", BUDGET, ids=[b for _, b, _ in BUDGET])
def test_the_stripped_release_binary_fits_its_budget(rust_binary, tmp_path, package, binary, limit):
    copy = tmp_path / binary
    shutil.copy(rust_binary(package, binary), copy)
    subprocess.run(["strip", str(copy)], check=True)
    size = copy.stat().st_size
    print(f"{binary}: {size} bytes stripped ({size / 1024:.0f} KiB of {limit // 1024} KiB)")
    assert size <= limit, (
        f"{binary} is {size} bytes stripped, over its budget of {limit}: find what grew with "
        f"`cargo bloat` or `cargo tree -e normal -p {package}` before raising the budget"
    )
