"""lib/mender_composable/rootfs_provides.py: rootfs-image.* provides derived from the packages an image
installs (classes/mender-composable-rootfs-provides.bbclass), without BitBake."""

import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent.parent
sys.path.insert(0, str(ROOT / "lib"))

from mender_composable import provides  # noqa: E402
from mender_composable import rootfs_provides as rp  # noqa: E402

CLASS = ROOT / "classes" / "mender-composable-rootfs-provides.bbclass"


def class_default_map():
    text = CLASS.read_text()
    m = re.search(r'^COMPOSABLE_ROOTFS_PROVIDES_MAP \?= "((?:[^"\\]|\\\n)*)"', text, re.M)
    return " ".join(m[1].replace("\\\n", " ").split())


DEFAULT_RULES, _ = rp.parse_map(class_default_map())

# The demo image at the pinned poky commit: python3 3.12.12 (meta/recipes-devtools/python/
# python3_3.12.12.bb), docker-moby 25.0.9 (meta-virtualization), the layer's module 0.1.0.
DEMO_IMAGE = {"python3": "3.12.12", "docker-moby": "25.0.9+git0+a926bec8fc",
              "persistent-app-update-module": "0.1.0"}
PRODUCT = ["rootfs-image.python.version:3.12", "rootfs-image.api.version:2.0",
           "rootfs-image.feature.docker:true", "rootfs-image.feature.persistent-app:true"]


def test_the_class_default_map_parses_to_the_three_rules_of_the_reference_setup():
    assert rp.parse_map(class_default_map()) == ([
        rp.Rule("python3", "rootfs-image.python.version", "{major}.{minor}"),
        rp.Rule("docker-moby", "rootfs-image.feature.docker", "true"),
        rp.Rule("persistent-app-update-module", "rootfs-image.feature.persistent-app", "true"),
    ], [])


def test_the_reference_configurations_four_provides_hold_for_the_demo_image_and_follow_from_it():
    kas = (ROOT / "kas" / "qemux86-64.yml").read_text()
    hand = re.search(r'^\s*MENDER_ARTIFACT_PROVIDES = "([^"]*)"', kas, re.M)[1]
    assert 'INHERIT += "mender-composable-rootfs-provides"' in kas
    final, problems = rp.reconcile(hand, DEFAULT_RULES, DEMO_IMAGE)
    assert problems == []
    assert final.split() == hand.split() == PRODUCT
    assert provides.rootfs_provides_problems(final) == []
    # Three of the four are the image's to state: written or not, the artifact says the same.
    final, problems = rp.reconcile("rootfs-image.api.version:2.0", DEFAULT_RULES, DEMO_IMAGE)
    assert problems == [] and sorted(final.split()) == sorted(PRODUCT)


@pytest.mark.parametrize("version, template, value", [
    ("3.12.12", "{major}.{minor}", "3.12"),
    ("3.12.12", "{version}", "3.12.12"),
    ("3.12.12", "{major}", "3"),
    ("3.12.12", "v{major}-{minor}-{patch}", "v3-12-12"),
    ("25.0.9+git0+a926bec8fc", "{major}.{minor}", "25.0"),
    ("1.2-r0", "{minor}", "2"),
    ("2024.04", "{major}.{minor}", "2024.04"),
    ("anything", "true", "true"),
])
def test_values_come_from_the_packages_version(version, template, value):
    assert rp.value_for(rp.Rule("p", "rootfs-image.p.version", template), version) == value


@pytest.mark.parametrize("version, template, missing", [
    ("3", "{major}.{minor}", "minor"),
    ("git", "{major}", "major"),
    ("1.2", "{patch}", "patch"),
])
def test_a_version_without_the_fields_its_template_needs_is_named(version, template, missing):
    with pytest.raises(ValueError) as e:
        rp.value_for(rp.Rule("libfoo", "rootfs-image.foo.version", template), version)
    assert f"needs {{{missing}}}" in str(e.value) and f"'{version}' of libfoo" in str(e.value)


def test_hand_written_entries_pass_through_and_derived_ones_follow_in_rule_order():
    final, problems = rp.reconcile("rootfs-image.api.version:2.0 rootfs-image.board.rev:b",
                                   DEFAULT_RULES, DEMO_IMAGE)
    assert problems == []
    assert final.split() == ["rootfs-image.api.version:2.0", "rootfs-image.board.rev:b",
                             "rootfs-image.python.version:3.12", "rootfs-image.feature.docker:true",
                             "rootfs-image.feature.persistent-app:true"]


def test_a_hand_written_entry_that_agrees_with_the_image_is_kept_once():
    final, problems = rp.reconcile(" ".join(PRODUCT), DEFAULT_RULES, DEMO_IMAGE)
    assert problems == []
    assert final.split() == PRODUCT


def test_a_hand_written_version_the_image_contradicts_stops_the_build_naming_both_values():
    final, problems = rp.reconcile("rootfs-image.python.version:3.11", DEFAULT_RULES, DEMO_IMAGE)
    assert problems == ["MENDER_ARTIFACT_PROVIDES says 'rootfs-image.python.version:3.11', but the image "
                        "installs python3 3.12.12, which gives 'rootfs-image.python.version:3.12'; correct or "
                        "remove the entry"]


def test_a_hand_written_key_whose_package_the_image_lacks_stops_the_build():
    no_python = {k: v for k, v in DEMO_IMAGE.items() if k != "python3"}
    final, problems = rp.reconcile(" ".join(PRODUCT), DEFAULT_RULES, no_python)
    assert problems == ["MENDER_ARTIFACT_PROVIDES says 'rootfs-image.python.version:3.12', but the image does "
                        "not install python3, from which COMPOSABLE_ROOTFS_PROVIDES_MAP derives "
                        "rootfs-image.python.version; remove the entry or install python3"]


def test_an_image_without_a_mapped_package_simply_lacks_its_provide():
    final, problems = rp.reconcile("rootfs-image.api.version:2.0", DEFAULT_RULES, {"python3": "3.12.12"})
    assert problems == []
    assert final.split() == ["rootfs-image.api.version:2.0", "rootfs-image.python.version:3.12"]


@pytest.mark.parametrize("value, problem", [
    ("python3", "is not PACKAGE=KEY:VALUE"),
    ("python3=rootfs-image.python.version", "is not PACKAGE=KEY:VALUE"),
    ("=rootfs-image.x:1", "is not PACKAGE=KEY:VALUE"),
    ("Python3=rootfs-image.python.version:{major}", "is not a package name"),
    ("python3=python.version:{major}", "outside rootfs-image.*"),
    ("python3=data-partition.python.version:{major}", "is a data-partition provide"),
    ("python3=rootfs-image.version:{version}", "which mender-artifact writes itself"),
    ("python3=rootfs-image.python.version:{build}", "uses {build}"),
    ("python3=rootfs-image.python.version:$(id)", "meta-mender's shell would expand"),
    ("a=rootfs-image.x:1 b=rootfs-image.x:1", "derives 'rootfs-image.x' again (already from a)"),
])
def test_a_malformed_map_is_refused_with_one_line_naming_the_entry(value, problem):
    rules, problems = rp.parse_map(value)
    assert len(problems) == 1 and problem in problems[0], problems
    assert problems[0].startswith(("COMPOSABLE_ROOTFS_PROVIDES_MAP: ", "COMPOSABLE_ROOTFS_PROVIDES_MAP: '"))
    assert "\n" not in problems[0]


def test_at_parse_time_only_a_contradicted_fixed_value_is_refused():
    assert rp.parse_time_problems(class_default_map(), " ".join(PRODUCT)) == []
    # A version can only be judged once the image is built.
    assert rp.parse_time_problems(class_default_map(), "rootfs-image.python.version:2.7") == []
    assert rp.parse_time_problems(class_default_map(), "rootfs-image.feature.docker:false") == [
        "MENDER_ARTIFACT_PROVIDES says 'rootfs-image.feature.docker:false', but COMPOSABLE_ROOTFS_PROVIDES_MAP "
        "derives rootfs-image.feature.docker from the image: 'rootfs-image.feature.docker:true' when it installs "
        "docker-moby, nothing otherwise; remove the entry"]
    assert rp.parse_time_problems("python3", "") != []


def test_installed_packages_come_from_the_manifest_and_pkgdata_also_when_renamed():
    manifest = rp.parse_manifest("busybox core2_64 1.36.1\npython3 core2_64 3.12.12\n"
                                 "libfoo2 core2_64 2.4.1\ndocker-moby core2_64 25.0.9+git0+a926bec8fc\n")
    pkgdata = {
        "python3": "PN: python3\nPV: 3.12.12\nPKGV: 3.12.12\nPKG:python3: python3\n",
        # debian.bbclass renamed libfoo to libfoo2 in the image; the rule names the package.
        "libfoo": "PN: foo\nPV: 2.4.1\nPKGV: 2.4.1\nPKG:libfoo: libfoo2\n",
        # Built, but not in this image.
        "persistent-app-update-module": "PN: persistent-app-update-module\nPKGV: 0.1.0\n",
    }
    rules, _ = rp.parse_map(class_default_map() + " libfoo=rootfs-image.foo.version:{major}")
    assert rp.installed_packages(rules, manifest, pkgdata) == {
        "python3": "3.12.12", "docker-moby": "25.0.9+git0+a926bec8fc", "libfoo": "2.4.1"}


def test_the_class_hooks_both_artifact_tasks_and_keeps_the_signature():
    text = CLASS.read_text()
    for cmd in ("mender", "bootstrap-artifact"):
        assert f'IMAGE_CMD:{cmd}[vardepsexclude] += "MENDER_ARTIFACT_PROVIDES"' in text
    for task in ("do_image_mender", "do_image_bootstrap_artifact"):
        assert f'{task}[prefuncs] += "mender_composable_rootfs_provides"' in text
        assert f'{task}[vardeps] += "COMPOSABLE_ROOTFS_PROVIDES_INPUTS"' in text
    assert 'COMPOSABLE_ROOTFS_PROVIDES_INPUTS = "${MENDER_ARTIFACT_PROVIDES} ${COMPOSABLE_ROOTFS_PROVIDES_MAP}"' in text
