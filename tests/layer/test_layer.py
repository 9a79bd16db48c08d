"""Checks of the layer that need no BitBake: lint, crates .inc in sync, layer.conf sanity."""

import importlib.machinery
import importlib.util
import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent


def load_script(name):
    loader = importlib.machinery.SourceFileLoader(name.replace("-", "_"), str(ROOT / "scripts" / name))
    spec = importlib.util.spec_from_loader(loader.name, loader)
    mod = importlib.util.module_from_spec(spec)
    loader.exec_module(mod)
    return mod


def metadata_files():
    out = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "*.bb", "*.bbappend", "*.inc",
                          "*.bbclass", "*.conf"], cwd=ROOT, capture_output=True, text=True, check=True)
    return [ROOT / f for f in out.stdout.split() if not f.startswith(("kas/", "tests/"))]


def test_recipes_are_lint_clean_under_oelint_adv_for_scarthgap():
    files = [str(f) for f in metadata_files() if f.suffix != ".conf"]
    assert files, "no recipes found"
    out = subprocess.run(["oelint-adv", "--release=scarthgap", "--quiet", *files],
                         cwd=ROOT, capture_output=True, text=True)
    findings = (out.stdout + out.stderr).strip()
    assert out.returncode == 0 and findings == "", findings


def test_every_crates_inc_matches_cargo_lock():
    out = subprocess.run([str(ROOT / "scripts" / "update-crates-inc"), "--check"], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert re.search(r"[1-9]\d* crates \.inc file\(s\) match", out.stdout), out.stdout


def test_crates_inc_sets_the_same_crates_and_checksums_as_bitbake_update_crates():
    gen = load_script("update-crates-inc")
    recipes = list(gen.cargo_recipes())
    assert recipes
    for bb, pn in recipes:
        ours = gen.crates_and_sums((bb.parent / f"{pn}-crates.inc").read_text())
        bitbake = gen.crates_and_sums(gen.bitbake_form(gen.LOCK, pn))
        assert ours == bitbake, bb
        uris, sums = ours
        assert len(uris) == len(sums) > 0
        # Every crate of the lock file is fetched, each with its checksum.
        assert all(f"{u.split('/')[-2]}-{u.split('/')[-1]}" in sums for u in uris)


def test_a_stale_crates_inc_is_detected(tmp_path):
    gen = load_script("update-crates-inc")
    lock = tmp_path / "Cargo.lock"
    text = gen.LOCK.read_text()
    first = re.search(r'name = "([^"]+)"\nversion = "([^"]+)"\nsource = "registry', text)
    lock.write_text(text.replace(f'name = "{first[1]}"\nversion = "{first[2]}"',
                                 f'name = "{first[1]}"\nversion = "{first[2]}-bumped"', 1))
    assert gen.crates_inc(lock, "x") != gen.crates_inc(gen.LOCK, "x")


def layer_conf():
    text = (ROOT / "conf" / "layer.conf").read_text()
    return text, dict(re.findall(r'^([A-Za-z0-9_:.${}-]+)\s*[?:+.]*=\s*"([^"]*)"', text, re.MULTILINE))


def test_layer_conf_declares_identity_and_dependencies():
    _, v = layer_conf()
    assert v["BBFILE_COLLECTIONS"] == "mender-composable"
    assert v["LAYERSERIES_COMPAT_mender-composable"] == "scarthgap"
    assert v["LAYERDEPENDS_mender-composable"].split() == ["core", "mender"]
    assert v["BBFILE_PATTERN_mender-composable"] == "^${LAYERDIR}/"


def test_layer_conf_changes_no_global_setting():
    text, _ = layer_conf()
    allowed = {"BBPATH", "BBFILES", "BBFILE_COLLECTIONS", "BBFILE_PATTERN_mender-composable",
               "BBFILE_PRIORITY_mender-composable", "LAYERVERSION_mender-composable",
               "LAYERSERIES_COMPAT_mender-composable", "LAYERDEPENDS_mender-composable",
               "LAYERRECOMMENDS_mender-composable", "BBFILES_DYNAMIC"}
    assigned = set(re.findall(r"^([A-Za-z0-9_:.${}-]+)\s*[?:+.]*=", text, re.MULTILINE))
    assert assigned <= allowed, f"layer.conf sets {assigned - allowed}: that would change other recipes"
    assert not re.search(r"^\s*(INHERIT|DISTRO_FEATURES|IMAGE_INSTALL|PREFERRED_)", text, re.MULTILINE)
