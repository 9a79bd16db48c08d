"""scripts/check-msrv: the guard that keeps the workspace buildable by Rust 1.75."""

import importlib.machinery
import importlib.util
import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts" / "check-msrv"


def load_checker():
    loader = importlib.machinery.SourceFileLoader("check_msrv", str(SCRIPT))
    spec = importlib.util.spec_from_loader("check_msrv", loader)
    mod = importlib.util.module_from_spec(spec)
    loader.exec_module(mod)
    return mod


def pkg(name, version, rust_version="1.70", edition="2021", member=False):
    pid = f"path+file:///ws/{name}#{version}" if member else f"registry+crates.io#{name}@{version}"
    return {"id": pid, "name": name, "version": version, "rust_version": rust_version, "edition": edition}


def metadata(*pkgs):
    return {"packages": list(pkgs), "workspace_members": [p["id"] for p in pkgs if p["id"].startswith("path+")]}


LOCK3 = "# generated\nversion = 3\n"


def test_a_clean_lock_passes_and_lists_undeclared_crates():
    check = load_checker().check
    problems, undeclared = check(
        metadata(pkg("ours", "0.1.0", "1.75", member=True), pkg("old", "1.0.0", None), pkg("fine", "2.0.0", "1.75.0")),
        LOCK3,
    )
    assert problems == []
    assert undeclared == ["old 1.0.0"]


def test_a_crate_above_1_75_fails_with_its_name_and_the_fix():
    check = load_checker().check
    problems, _ = check(metadata(pkg("ours", "0.1.0", "1.75", member=True), pkg("newer", "3.1.0", "1.80")), LOCK3)
    assert len(problems) == 1
    assert "newer 3.1.0 declares rust-version 1.80 > 1.75" in problems[0]
    assert "--precise" in problems[0]


def test_edition_2024_and_lock_v4_and_member_rust_version_fail():
    check = load_checker().check
    problems, _ = check(
        metadata(pkg("ours", "0.1.0", "1.80", member=True), pkg("modern", "1.0.0", "1.75", edition="2024")),
        "version = 4\n",
    )
    text = "\n".join(problems)
    assert "lock-file version 4" in text
    assert "modern 1.0.0 uses edition 2024" in text
    assert "workspace member ours 0.1.0 declares rust-version 1.80" in text


def test_patch_level_rust_versions_compare_numerically():
    check = load_checker().check
    problems, _ = check(metadata(pkg("a", "1.0.0", "1.75.1"), pkg("b", "1.0.0", "1.9")), LOCK3)
    assert [p.split(" declares")[0] for p in problems] == ["a 1.0.0"]


def test_the_committed_workspace_passes():
    out = subprocess.run([str(SCRIPT)], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "fit Rust 1.75" in out.stdout


def test_locking_a_real_crate_that_needs_rust_1_77_fails_the_check(tmp_path):
    # thiserror 2.0.21 declares rust-version 1.77; the fallback resolver chose
    # 2.0.20 for us. Force the newer one, as a careless `cargo update --precise`
    # would, and the check must catch it.
    ws = tmp_path / "rust"
    shutil.copytree(ROOT / "rust", ws, ignore=shutil.ignore_patterns("target"))
    pin = subprocess.run(
        ["cargo", "update", "--manifest-path", str(ws / "Cargo.toml"), "-p", "thiserror", "--precise", "2.0.21"],
        capture_output=True, text=True,
    )
    assert pin.returncode == 0, pin.stderr
    out = subprocess.run([str(SCRIPT), "--manifest-path", str(ws / "Cargo.toml")], capture_output=True, text=True)
    assert out.returncode == 1
    assert "thiserror 2.0.21 declares rust-version 1.77 > 1.75" in out.stderr
