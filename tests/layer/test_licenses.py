"""LICENSE of the cargo recipes: derived from what each binary links (scripts/update-crates-inc)."""

import itertools
import random
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from .test_layer import ROOT, load_script

gen = load_script("update-crates-inc")
LicenseError = gen.LicenseError
WORKSPACE = ROOT / "rust"
# A scarthgap poky checkout, for the cross-checks against BitBake's own files (tools/yocto-parse).


def combine(*spdx, crate="crate x 1.0"):
    return gen.bitbake_license([gen.bitbake_names(gen.parse_spdx(e), crate) for e in spdx])


def licenses_of(pn):
    """(LICENSE, {crate: (version, licence, license files)}, NO_GENERIC_LICENSE flags) of a committed .inc."""
    inc = next(ROOT.glob(f"recipes-*/*/{pn}-licenses.inc")).read_text()
    license = re.search(r'^LICENSE = "([^"]*)"$', inc, re.M)[1]
    header, *rows = inc[inc.index("\n# crate ") + 1:].splitlines()
    cols = [header.index(h) for h in ("version", "license (Cargo.toml)", "license files")]
    crates = {}
    for row in rows:
        name, version, lic, files = (row[a:b].strip() for a, b in zip([2] + cols, cols + [None]))
        crates[name] = (version, lic, files)
    return license, crates, dict(re.findall(r'^NO_GENERIC_LICENSE\[([^\]]+)\] = "([^"]*)"$', inc, re.M))


# ------------------------------------------------------------------ expressions

def test_spdx_or_and_with_and_parentheses_parse_with_spdx_precedence():
    assert gen.parse_spdx("MIT OR Apache-2.0") == ("or", ["MIT", "Apache-2.0"])
    assert gen.parse_spdx("MIT/Apache-2.0") == ("or", ["MIT", "Apache-2.0"])
    assert gen.parse_spdx("MIT or Apache-2.0") == ("or", ["MIT", "Apache-2.0"])
    assert gen.parse_spdx("Apache-2.0 WITH LLVM-exception OR MIT") == \
        ("or", [("with", "Apache-2.0", "LLVM-exception"), "MIT"])
    assert gen.parse_spdx("MIT OR Apache-2.0 AND Zlib") == ("or", ["MIT", ("and", ["Apache-2.0", "Zlib"])])
    assert gen.parse_spdx("(MIT OR Apache-2.0) AND Unicode-DFS-2016") == \
        ("and", [("or", ["MIT", "Apache-2.0"]), "Unicode-DFS-2016"])


@pytest.mark.parametrize("bad", ["", "MIT OR", "(MIT OR Apache-2.0", "MIT Apache-2.0", "MIT AND OR Zlib",
                                 "MIT)", "Apache-2.0 WITH", "MIT, Apache-2.0"])
def test_a_malformed_spdx_expression_is_refused(bad):
    with pytest.raises(LicenseError):
        gen.parse_spdx(bad)


def test_or_becomes_bar_and_becomes_ampersand_and_names_are_sorted():
    assert combine("MIT OR Apache-2.0") == "Apache-2.0 | MIT"
    assert combine("MIT/Apache-2.0") == "Apache-2.0 | MIT"
    assert combine("Zlib AND MIT") == "MIT & Zlib"
    assert combine("(MIT OR Apache-2.0) AND Unicode-DFS-2016") == "Unicode-DFS-2016 & (Apache-2.0 | MIT)"
    assert combine("ISC OR MIT AND Zlib") == "ISC | (MIT & Zlib)"


def test_with_becomes_the_common_licenses_name():
    assert combine("Apache-2.0 WITH LLVM-exception OR MIT", "Zlib") == \
        "Zlib & (Apache-2.0-with-LLVM-exception | MIT)"


def test_an_unknown_with_exception_fails_naming_the_crate():
    with pytest.raises(LicenseError, match=r"crate javaish 2\.1.*GPL-2\.0-only WITH Classpath-exception-2\.0"):
        combine("GPL-2.0-only WITH Classpath-exception-2.0", crate="crate javaish 2.1")


def test_a_licence_without_known_text_fails_naming_the_crate():
    with pytest.raises(LicenseError, match=r"crate odd 0\.1: licence 'LicenseRef-odd'"):
        combine("MIT OR LicenseRef-odd", crate="crate odd 0.1")


def test_equal_choices_count_once_whatever_their_order():
    assert combine("Apache-2.0 OR MIT", "MIT OR Apache-2.0", "MIT/Apache-2.0") == "Apache-2.0 | MIT"


def test_a_choice_offering_a_licence_required_anyway_is_dropped():
    assert combine("MIT", "MIT OR Apache-2.0") == "MIT"
    assert combine("Apache-2.0", "MIT", "Unicode-3.0", "Unlicense OR MIT", "Apache-2.0 OR BSL-1.0",
                   "MIT OR Apache-2.0") == "Apache-2.0 & MIT & Unicode-3.0"
    # A licence the choice needs besides one required anyway stays: only the required part is fulfilled.
    assert combine("MIT", "Apache-2.0 AND MIT OR BSL-1.0") == "MIT & (Apache-2.0 | BSL-1.0)"


def test_a_choice_that_no_required_licence_fulfils_stays():
    assert combine("MIT", "Apache-2.0 OR BSL-1.0") == "MIT & (Apache-2.0 | BSL-1.0)"


def test_a_choice_implied_by_a_narrower_choice_is_dropped():
    assert combine("MIT OR Apache-2.0", "MIT OR Apache-2.0 OR Zlib") == "Apache-2.0 | MIT"
    assert combine("MIT OR Zlib", "Apache-2.0 OR ISC") == "(Apache-2.0 | ISC) & (MIT | Zlib)"


def _holds(tree, accepted):
    if isinstance(tree, str):
        return tree in accepted
    values = [_holds(t, accepted) for t in tree[1]]
    return all(values) if tree[0] == "and" else any(values)


def _random_expression(rng, names, depth=2):
    if depth == 0 or rng.random() < 0.35:
        return rng.choice(names)
    op = rng.choice([" OR ", " AND "])
    return "(" + op.join(_random_expression(rng, names, depth - 1) for _ in range(rng.randint(2, 3))) + ")"


def test_the_simplified_license_allows_exactly_the_choices_of_the_plain_and():
    """Absorption is an equivalence: for every set of accepted licences, the simplified LICENSE
    holds exactly when every crate's expression holds (400 random crate sets over 5 licences)."""
    rng = random.Random(10)
    names = ["Apache-2.0", "BSL-1.0", "MIT", "Unlicense", "Zlib"]
    for _ in range(400):
        crates = [_random_expression(rng, names) for _ in range(rng.randint(1, 4))]
        trees = [gen.parse_spdx(c) for c in crates]
        result = gen.bitbake_license(trees)
        back = gen.parse_spdx(result.replace("&", "AND").replace("|", "OR"))
        for accepted in itertools.chain.from_iterable(itertools.combinations(names, k) for k in range(6)):
            assert _holds(back, set(accepted)) == all(_holds(t, set(accepted)) for t in trees), (crates, result)
        assert gen.bitbake_license(reversed(trees)) == result, crates


# ------------------------------------------------------------------ the real dependency graph

def test_every_licenses_inc_matches_the_crates_its_binaries_link():
    out = subprocess.run([str(ROOT / "scripts" / "update-crates-inc"), "--check"], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert re.search(r"\b4 licenses \.inc file\(s\) match the crates their binaries link", out.stdout), out.stdout


def test_every_cargo_recipe_takes_its_license_from_its_generated_inc_only():
    for bb, pn in gen.cargo_recipes():
        text = bb.read_text()
        assert re.search(r'^DESCRIPTION = [^=]*?\."\n#[^\n]*\nrequire \$\{BPN\}-licenses\.inc$', text, re.M | re.S), bb
        shared = (ROOT / "recipes-mender/mender-composable/mender-composable-rust.inc").read_text()
        for own in (text, shared):
            assert not re.search(r"^(LICENSE|LIC_FILES_CHKSUM)\s*[?:+.]*=", own, re.M), bb


def test_docker_update_module_is_apache_2_for_bollard_and_unicode_3_for_the_icu_crates():
    license, crates, no_generic = licenses_of("docker-update-module")
    assert license == "Apache-2.0 & MIT & Unicode-3.0"
    assert crates["bollard"][1:] == ("Apache-2.0", "LICENSE [LICENSE.0]")
    assert crates["bollard-stubs"][1:] == \
        ("Apache-2.0", "(no license file in the crate; generic text from common-licenses)")
    icu = [name for name in crates if name.startswith("icu_")]
    assert len(icu) >= 5 and all(crates[n][1] == "Unicode-3.0" and crates[n][2].startswith("LICENSE [") for n in icu)
    # Unicode-3.0 is not in scarthgap's common-licenses: the text is an icu crate's own file.
    assert no_generic == {"Unicode-3.0": f"../cargo_home/bitbake/icu_collections-{crates['icu_collections'][0]}/LICENSE"}


def test_the_unicode_text_named_by_no_generic_license_is_the_unicode_licence():
    crates = gen.linked_crates(WORKSPACE, "docker-module")
    icu = next(c for c in crates if c.name == "icu_collections")
    assert icu.files[0][2].read_text().startswith("UNICODE LICENSE V3")


def test_proc_macros_build_and_dev_dependencies_are_not_in_the_manifest():
    for pn, package in (("docker-update-module", "docker-module"), ("persistent-app-update-module", "persistent-app")):
        _, crates, _ = licenses_of(pn)
        # The package's graph with every edge kind: the left-out crates are really in it.
        everything = subprocess.run(
            ["cargo", "tree", "-p", package, "-e", "all", "--target", "x86_64-unknown-linux-gnu", "--prefix", "none",
             "-f", "{p}", "--locked", "--offline"], cwd=WORKSPACE, capture_output=True, text=True, check=True)
        for left_out in ("serde_derive", "thiserror-impl", "syn", "proc-macro2", "quote",  # proc-macros
                         "cfg_aliases",  # nix's build-dependency
                         "mender-module-driver"):  # dev-dependency
            assert left_out not in crates, (pn, left_out)
            assert re.search(rf"^{left_out} v", everything.stdout, re.M), (package, left_out)
    # tar is docker-module's dev-dependency but persistent-app's normal one.
    assert "tar" not in licenses_of("docker-update-module")[1]
    assert "tar" in licenses_of("persistent-app-update-module")[1]


def test_the_generators_and_modules_have_their_own_sets():
    assert licenses_of("docker-artifact-gen")[0] == "Apache-2.0 & MIT & Unicode-3.0"
    for pn in ("persistent-app-update-module", "persistent-app-artifact-gen"):
        license, crates, no_generic = licenses_of(pn)
        assert license == "MIT" and no_generic == {}
        assert "bollard" not in crates and "memchr" in crates  # memchr: Unlicense OR MIT, MIT chosen
    assert "clap" in licenses_of("persistent-app-artifact-gen")[1]
    assert "clap" not in licenses_of("persistent-app-update-module")[1]


def test_every_license_file_is_in_a_crate_the_recipe_fetches():
    for bb, pn in gen.cargo_recipes():
        uris, _ = gen.crates_and_sums((bb.parent / f"{pn}-crates.inc").read_text())
        fetched = {"/".join(u.split("/")[-2:]).replace("/", "-") for u in uris}
        inc = (bb.parent / f"{pn}-licenses.inc").read_text()
        paths = re.findall(r"file://(\S+);md5=[0-9a-f]{32}", inc)
        assert paths[0] == "LICENSE" and len(paths) == len(set(paths)) > 10
        for path in paths[1:]:
            assert path.split("/")[:3] == ["..", "cargo_home", "bitbake"] and path.split("/")[3] in fetched, path


def test_license_files_of_a_crate_are_found_by_their_usual_names(tmp_path):
    for name in ("LICENSE-MIT", "LICENSE.txt", "licence", "COPYING", "UNLICENSE", "COPYRIGHT", "NOTICE",
                 "README.md", "Cargo.toml", "src"):
        (tmp_path / name).write_text(name) if name != "src" else (tmp_path / name).mkdir()
    (tmp_path / "LICENSES").mkdir()
    (tmp_path / "LICENSES" / "Apache-2.0.txt").write_text("apache")
    found = [p.relative_to(tmp_path).as_posix() for p in gen.crate_license_files(tmp_path)]
    assert found == ["COPYING", "COPYRIGHT", "LICENSE-MIT", "LICENSE.txt", "LICENSES/Apache-2.0.txt", "NOTICE",
                     "UNLICENSE", "licence"]


def test_the_manifest_gives_the_name_populate_lic_deploys_each_file_under():
    # Checked against a real do_populate_lic of the four recipes (README, "Licenses of the Rust recipes").
    names = gen.deployed_names([("LICENSE", "a"), ("../cargo_home/bitbake/x-1/LICENSE", "b"),
                                ("../cargo_home/bitbake/y-1/LICENSE", "a"), ("../cargo_home/bitbake/z-1/COPYING", "c")])
    assert names == {"../cargo_home/bitbake/x-1/LICENSE": "LICENSE.0", "../cargo_home/bitbake/y-1/LICENSE": "LICENSE.1",
                     "LICENSE": "LICENSE.1", "../cargo_home/bitbake/z-1/COPYING": "COPYING"}
    _, crates, _ = licenses_of("docker-update-module")
    assert crates["docker-module"][2] == crates["docker-spec"][2] == "rust/LICENSE [LICENSE.15] (workspace member)"
    assert crates["memchr"][2] == "COPYING [COPYING] LICENSE-MIT [LICENSE-MIT.13] UNLICENSE [UNLICENSE]"


def test_a_licence_without_generic_text_and_without_a_crate_file_for_it_fails():
    crates = [gen.Crate("odd", "1.0.0", "Unicode-3.0", [], False)]
    with pytest.raises(LicenseError, match="Unicode-3.0 is not in scarthgap's common-licenses"):
        gen.recipe_license(crates, "some-recipe")


# ------------------------------------------------------------------ staleness

@pytest.fixture
def layer_copy(tmp_path):
    """The layer's recipes and Rust workspace in a scratch directory."""
    for top in ("recipes-containers", "recipes-core", "recipes-mender", "rust"):
        shutil.copytree(ROOT / top, tmp_path / top, ignore=shutil.ignore_patterns("target"))
    return tmp_path


def check(root, capsys):
    rc = gen.main(["--check"], root=root)
    return rc, capsys.readouterr().err


def test_a_new_dependency_makes_the_licenses_inc_stale_and_check_says_how_to_regenerate(layer_copy, capsys):
    # The format crate is linked by both the module and the generator, so both recipes go stale.
    manifest = layer_copy / "rust" / "persistent-app-format" / "Cargo.toml"
    manifest.write_text(manifest.read_text().replace("[dependencies]\n", '[dependencies]\nryu = "1"\n', 1))
    # The lock takes the new edge offline (ryu is locked already for the docker crates).
    subprocess.run(["cargo", "metadata", "--offline", "--format-version", "1"], cwd=layer_copy / "rust",
                   capture_output=True, check=True)
    assert gen.crates_inc(layer_copy / "rust" / "Cargo.lock", "x") == gen.crates_inc(gen.LOCK, "x")
    rc, err = check(layer_copy, capsys)
    assert rc == 1
    for pn in ("persistent-app-update-module", "persistent-app-artifact-gen"):
        assert f"recipes-mender/persistent-app/{pn}-licenses.inc does not match the crates" in err
    assert "run (cd rust && cargo fetch --locked) && scripts/update-crates-inc" in err
    assert "docker-update-module-licenses.inc" not in err and "crates.inc" not in err
    assert '+LICENSE = "MIT & (Apache-2.0 | BSL-1.0)"' in err
    # Regenerating makes the check pass again.
    assert gen.main([], root=layer_copy) == 0
    capsys.readouterr()
    assert check(layer_copy, capsys) == (0, "")


def test_a_changed_license_field_makes_the_licenses_inc_stale(layer_copy, capsys):
    manifest = layer_copy / "rust" / "Cargo.toml"
    manifest.write_text(manifest.read_text().replace('license = "MIT"', 'license = "BSD-3-Clause"', 1))
    rc, err = check(layer_copy, capsys)
    assert rc == 1
    assert err.count("-licenses.inc does not match the crates") == 4
    assert '+LICENSE = "BSD-3-Clause & MIT"' in err


def test_a_lock_change_is_detected(layer_copy, capsys):
    lock = layer_copy / "rust" / "Cargo.lock"
    lock.write_text(lock.read_text().replace('name = "ryu"\nversion = "1.0.23"', 'name = "ryu"\nversion = "1.0.22"'))
    rc, err = check(layer_copy, capsys)
    assert rc != 0
    assert "docker-update-module-crates.inc does not match rust/Cargo.lock" in err
