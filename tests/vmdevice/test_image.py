"""The pure parts of vmdevice.image: cache keys, the partition table, the provides parse. No debootstrap."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from vmdevice import image
from vmdevice.image import MiB

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def fake_repo(tmp_path):
    """A repo with the layer files and kas config of this checkout, and a binaries dir of stand-ins."""
    repo = tmp_path / "repo"
    for rel in [*image.LAYER_FILES, "kas/qemux86-64.yml"]:
        (repo / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(REPO / rel, repo / rel)
    binaries = tmp_path / "bin"
    binaries.mkdir()
    for name in image.BINARIES:
        (binaries / name).write_bytes(f"binary {name}\n".encode())
    return repo, binaries


def _final_key(repo, binaries, base_key="base0"):
    return image.key_of(image.final_inputs(repo, binaries, base_key))


def test_final_key_is_stable(fake_repo):
    repo, binaries = fake_repo
    assert _final_key(repo, binaries) == _final_key(repo, binaries)
    # Unrelated files do not count.
    (repo / "README.md").write_text("changed\n")
    (binaries / "smoke-module").write_text("other\n")
    assert _final_key(repo, binaries) == _final_key(repo, binaries)


@pytest.mark.parametrize("name", sorted(image.BINARIES))
def test_final_key_changes_with_each_binary(fake_repo, name):
    repo, binaries = fake_repo
    before = _final_key(repo, binaries)
    (binaries / name).write_bytes(b"rebuilt\n")
    assert _final_key(repo, binaries) != before


def test_final_key_changes_with_layer_file_provides_and_base(fake_repo):
    repo, binaries = fake_repo
    before = _final_key(repo, binaries)
    daemon = repo / "recipes-containers/docker/files/daemon.json"
    daemon.write_text(daemon.read_text().replace("overlay2", "vfs"))
    after_daemon = _final_key(repo, binaries)
    assert after_daemon != before
    kas = repo / "kas/qemux86-64.yml"
    kas.write_text(kas.read_text().replace("rootfs-image.api.version:2.0", "rootfs-image.api.version:3.0"))
    assert _final_key(repo, binaries) != after_daemon
    assert _final_key(repo, binaries, "base1") != _final_key(repo, binaries, "base0")


def test_missing_binary_is_one_clear_error(fake_repo):
    repo, binaries = fake_repo
    (binaries / "persistent-app").unlink()
    with pytest.raises(image.ImageError, match=r"persistent-app is missing: build it with .*cargo build"):
        image.final_inputs(repo, binaries, "base0")


def test_base_key_follows_the_overlay_not_the_layer(tmp_path):
    overlay = tmp_path / "overlay"
    (overlay / "etc").mkdir(parents=True)
    (overlay / "etc/x.conf").write_text("a\n")
    before = image.key_of(image.base_inputs(overlay))
    assert image.key_of(image.base_inputs(overlay)) == before
    (overlay / "etc/x.conf").write_text("b\n")
    assert image.key_of(image.base_inputs(overlay)) != before
    (overlay / "etc/x.conf").write_text("a\n")
    assert image.key_of(image.base_inputs(overlay)) == before
    (overlay / "etc/x.conf").chmod(0o755)
    assert image.key_of(image.base_inputs(overlay)) != before


def test_base_key_covers_suite_packages_and_code():
    inputs = image.base_inputs()
    assert inputs["suite"] == "bookworm"
    assert {"docker.io", "mender-client", "linux-image-amd64", "openssh-server"} <= set(inputs["packages"])
    assert len(inputs["base_code_sha256"]) == 64


def test_partition_table():
    rootfs = 800 * MiB + 12345
    parts, total = image.partition_table(rootfs, 2048 * MiB)
    assert [(p.number, p.name) for p in parts] == [(1, "boot"), (2, "primary"), (3, "secondary"), (4, "data")]
    assert parts[0].start == MiB and parts[0].size == 16 * MiB
    assert parts[1].size == parts[2].size >= rootfs * 1.2
    assert parts[3].size >= 2048 * MiB
    for p in parts:
        assert p.start % MiB == 0 and p.size % MiB == 0
    for a, b in zip(parts, parts[1:]):
        assert b.start == a.start + a.size
    assert total >= parts[-1].start + parts[-1].size + 33 * 512  # backup GPT
    # A small data image still gets the 2 GiB minimum.
    assert image.partition_table(rootfs, 10 * MiB)[0][3].size == 2048 * MiB


def test_sfdisk_script():
    parts, _ = image.partition_table(100 * MiB, 2048 * MiB)
    script = image.sfdisk_script(parts)
    assert script.startswith("label: gpt\n")
    assert f"start={MiB // 512}, size={16 * MiB // 512}," in script
    assert "name=data" in script and script.count("start=") == 4


def test_kas_provides_parse():
    name, provides = image.kas_settings(REPO)
    assert name == "composable-demo-1.0"
    assert provides == {
        "rootfs-image.python.version": "3.12",
        "rootfs-image.api.version": "2.0",
        "rootfs-image.feature.docker": "true",
        "rootfs-image.feature.persistent-app": "true",
    }


def test_tree_hash_of_missing_dir_is_stable(tmp_path):
    assert image.tree_hash(tmp_path / "nope") == image.tree_hash(tmp_path / "nope2")


def test_bootenv_hook_calls_format_disk_when_importable(tmp_path, monkeypatch):
    import sys
    import types

    calls = []
    fake = types.ModuleType("vmdevice.bootenv")
    fake.format_disk = lambda path, env: calls.append((path, env)) or Path(path).write_bytes(b"env")
    monkeypatch.setitem(sys.modules, "vmdevice.bootenv", fake)
    monkeypatch.setattr("vmdevice.bootenv", fake, raising=False)
    path = image._write_bootenv(tmp_path, lambda m: None)
    assert path == tmp_path / "bootenv.raw" and path.read_bytes() == b"env"
    assert calls == [(tmp_path / "bootenv.raw", {"mender_boot_part": "2", "mender_boot_part_hex": "2",
                                                  "upgrade_available": "0", "bootcount": "0"})]
