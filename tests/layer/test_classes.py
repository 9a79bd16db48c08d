"""The Python behind the layer's classes (lib/mender_composable), without BitBake."""

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent.parent
sys.path.insert(0, str(ROOT / "lib"))

from mender_composable import provides  # noqa: E402
import mender_composable  # noqa: E402

PRODUCT_PROVIDES = ("rootfs-image.python.version:3.12 rootfs-image.api.version:2.0 "
                    "rootfs-image.feature.docker:true rootfs-image.feature.persistent-app:true")


def only_problem(value, bootstrap=""):
    problems = provides.rootfs_provides_problems(value, bootstrap)
    assert len(problems) == 1, problems
    assert "\n" not in problems[0]
    return problems[0]


def test_bitbake_imports_the_provides_module_through_bbimports():
    assert mender_composable.BBIMPORTS == ["provides"]


@pytest.mark.parametrize("value", [
    "",
    "   ",
    PRODUCT_PROVIDES,
    "rootfs-image.cuda.version:11.8",
    "rootfs-image.x_y-z.v2:1.0-rc1+git~3",
    "rootfs-image.time:12:30",           # everything after the first ':' is the value
    "rootfs-image.a:1\trootfs-image.b:2\n rootfs-image.c:3",
])
def test_well_formed_rootfs_provides_pass(value):
    assert provides.rootfs_provides_problems(value) == []


def test_the_products_provides_pass_with_bootstrap_extras():
    assert provides.rootfs_provides_problems(PRODUCT_PROVIDES, "rootfs-image.bootstrap.seeded:yes") == []


def test_an_entry_without_a_colon_is_named_with_the_right_form():
    msg = only_problem("rootfs-image.python.version")
    assert "'rootfs-image.python.version'" in msg and "key:value" in msg
    assert msg.startswith("MENDER_ARTIFACT_PROVIDES: ")


def test_an_empty_value_is_refused():
    msg = only_problem("rootfs-image.api.version:")
    assert "'rootfs-image.api.version:'" in msg and "empty value" in msg
    assert "rootfs-image.api.version:1.0" in msg


@pytest.mark.parametrize("entry, key", [
    (":3.12", ""),
    ("rootfs-image..version:1", "rootfs-image..version"),
    (".rootfs-image.version2:1", ".rootfs-image.version2"),
    ("rootfs-image.python.:1", "rootfs-image.python."),
    ("rootfs-image.py/thon:3", "rootfs-image.py/thon"),
    ("rootfs-image.pythön:3", "rootfs-image.pythön"),
])
def test_keys_that_are_not_dot_separated_words_are_refused(entry, key):
    msg = only_problem(entry)
    assert f"'{entry}'" in msg and f"key '{key}'" in msg and "dot-separated words" in msg


@pytest.mark.parametrize("entry", [
    "rootfs-image.x:$(reboot)",
    "rootfs-image.x:1;2",
    "rootfs-image.x:*",
    "rootfs-image.x:'1'",
    'rootfs-image.x:"1"',
    "rootfs-image.x:a|b",
])
def test_values_the_shell_would_mangle_are_refused(entry):
    msg = only_problem(entry)
    assert f"'{entry}'" in msg and "shell" in msg


def test_a_repeated_key_is_refused_even_with_the_same_value():
    msg = only_problem("rootfs-image.api.version:2.0 rootfs-image.python.version:3.12 rootfs-image.api.version:2.0")
    assert "repeats key 'rootfs-image.api.version'" in msg
    assert "'rootfs-image.api.version:2.0'" in msg


def test_a_key_repeated_in_the_bootstrap_provides_names_both_variables():
    msg = only_problem(PRODUCT_PROVIDES, "rootfs-image.api.version:3.0")
    assert msg.startswith("MENDER_ARTIFACT_PROVIDES_BOOTSTRAP: 'rootfs-image.api.version:3.0'")
    assert "in MENDER_ARTIFACT_PROVIDES" in msg


def test_data_partition_provides_belong_to_app_and_container_artifacts():
    msg = only_problem(PRODUCT_PROVIDES + " data-partition.demo-app.version:1.0")
    assert "'data-partition.demo-app.version:1.0'" in msg
    assert "persistent-app" in msg and "docker" in msg
    assert "'rootfs-image.demo-app.version:1.0'" in msg


@pytest.mark.parametrize("entry, right", [
    ("python.version:3.12", "rootfs-image.python.version:3.12"),
    ("feature.docker:true", "rootfs-image.feature.docker:true"),
    ("rootfs-image:1", "rootfs-image.<capability>:1"),
])
def test_capabilities_outside_rootfs_image_are_refused_with_the_right_key(entry, right):
    msg = only_problem(entry)
    assert f"'{entry}'" in msg and "rootfs-image.*" in msg and f"'{right}'" in msg


@pytest.mark.parametrize("entry", [
    "artifact_name:composable-demo-1.0",
    "artifact_group:demo",
    "rootfs-image.version:composable-demo-1.0",
    "rootfs-image.checksum:0123abcd",
    "rootfs-image.update-module.persistent-app.version:1",
])
def test_keys_mender_artifact_or_meta_mender_write_are_refused(entry):
    msg = only_problem(entry)
    assert f"'{entry}'" in msg and "remove it" in msg


def test_every_bad_entry_is_reported_on_its_own_line():
    problems = provides.rootfs_provides_problems(
        "rootfs-image.ok:1 broken data-partition.app.version:1 rootfs-image.ok:2")
    assert len(problems) == 3
    assert ["'broken'" in problems[0], "'data-partition.app.version:1'" in problems[1],
            "repeats key 'rootfs-image.ok'" in problems[2]] == [True, True, True]


def test_the_provides_check_class_acts_only_in_images_and_through_the_module():
    text = (ROOT / "classes" / "mender-composable-provides-check.bbclass").read_text()
    assert "bb.data.inherits_class('image', d)" in text
    assert "mender_composable.provides.rootfs_provides_problems(" in text
    assert "bb.fatal(" in text
    # Nothing assigned: a build that inherits it keeps every task signature.
    assigned = [line for line in text.splitlines()
                if line and not line.startswith((" ", "#", "python", "}")) and "=" in line]
    assert assigned == []


def test_layer_conf_lets_bitbake_import_the_helpers():
    assert "addpylib ${LAYERDIR}/lib mender_composable" in (ROOT / "conf" / "layer.conf").read_text()
