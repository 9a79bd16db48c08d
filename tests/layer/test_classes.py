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


def test_bitbake_imports_the_modules_the_classes_call_through_bbimports():
    assert mender_composable.BBIMPORTS == ["provides", "rootfs_provides"]
    classes = " ".join(p.read_text() for p in (ROOT / "classes").glob("*.bbclass"))
    called = set(re.findall(r"mender_composable\.([a-z_]+)\.", classes))
    assert called == set(mender_composable.BBIMPORTS)


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


# ---------------------------------------------------------------------------
# classes/docker-artifact.bbclass: its Python (the def functions and the body
# of do_deploy) run here against a small stand-in for BitBake's datastore, and
# a stand-in docker-artifact-gen records the command line the task runs.

import os  # noqa: E402
import re  # noqa: E402
import stat  # noqa: E402
import textwrap  # noqa: E402

DOCKER_CLASS = ROOT / "classes" / "docker-artifact.bbclass"


class BBFatal(Exception):
    pass


class FakeBB:
    def __init__(self):
        self.warnings, self.notes = [], []

    def fatal(self, msg):
        raise BBFatal(msg)

    def warn(self, msg):
        self.warnings.append(msg)

    def note(self, msg):
        self.notes.append(msg)


class FakeData:
    """getVar of already expanded values; None for unset ones, as BitBake returns."""

    def __init__(self, values):
        self.values = dict(values)

    def getVar(self, name, expand=True):
        return self.values.get(name)


def class_namespace(bb):
    """The class's def functions and do_deploy body, compiled as BitBake would run them."""
    text = DOCKER_CLASS.read_text()
    defs = re.findall(r"^def .*?(?=^\S)", text, re.MULTILINE | re.DOTALL)
    assert {re.match(r"def (\w+)", d)[1] for d in defs} >= {
        "docker_artifact_oci_images", "docker_artifact_depends", "docker_artifact_mcdepends",
        "docker_artifact_archive", "docker_artifact_command"}
    body = re.search(r"^python do_deploy\(\) \{\n(.*?)^\}", text, re.MULTILINE | re.DOTALL)[1]
    ns = {"bb": bb, "os": os, "mender_composable": mender_composable}
    exec("\n".join(defs), ns)  # noqa: S102 - the layer's own class code
    ns["do_deploy"] = compile("def do_deploy(d):\n" + textwrap.indent(textwrap.dedent(body), "    "),
                              str(DOCKER_CLASS), "exec")
    exec(ns["do_deploy"], ns)  # noqa: S102
    return ns


def class_defaults():
    """The class's ?= defaults, as written (before expansion)."""
    return dict(re.findall(r'^(DOCKER_ARTIFACT\w*) \?= "(.*)"$', DOCKER_CLASS.read_text(), re.MULTILINE))


@pytest.fixture
def docker_class(tmp_path, monkeypatch):
    """(namespace, bb, datastore values, deploy dir, file with the generator's arguments)."""
    deploy_images = tmp_path / "deploy" / "images" / "qemux86-64"
    deploy_images.mkdir(parents=True)
    (deploy_images / "app-container-qemux86-64-20240101.rootfs-oci.tar").write_bytes(b"oci")
    (deploy_images / "app-container-latest-oci.tar").symlink_to("app-container-qemux86-64-20240101.rootfs-oci.tar")
    bindir = tmp_path / "bin"
    bindir.mkdir()
    argv_file = tmp_path / "argv"
    gen = bindir / "docker-artifact-gen"
    gen.write_text(textwrap.dedent(f"""\
        #!/bin/sh
        printf '%s\\n' "$@" > {argv_file}
        printf '%s\\n' "$@" -- END -- >> {argv_file}.all
        while [ $# -gt 0 ]; do [ "$1" = -o ] && echo artifact > "$2"; shift; done
        echo "docker-artifact-gen: wrote it"
        exit ${{FAKE_GEN_EXIT:-0}}
        """))
    gen.chmod(gen.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{bindir}:{os.environ['PATH']}")
    deploydir = tmp_path / "deploy-demo-stack"
    deploydir.mkdir()
    values = {
        "DOCKER_ARTIFACT_STACK": "demo-stack",
        "DOCKER_ARTIFACT_VERSION": "1.0",
        "DOCKER_ARTIFACT_NAME": "demo-stack-1.0",
        "DOCKER_ARTIFACT": "demo-stack-1.0.mender",
        "DOCKER_ARTIFACT_DEVICE_TYPES": "qemux86-64",
        "DOCKER_ARTIFACT_OCI_IMAGES": "app-container",
        "DOCKER_ARTIFACT_OCI_TAG": "latest",
        "DOCKER_ARTIFACT_OCI_DEPLOY_DIR": str(deploy_images),
        "DOCKER_ARTIFACT_RUN_ARGS": "--name web -e 'MSG=hello world' --restart unless-stopped",
        "DOCKER_ARTIFACT_SPEC": "",
        "DOCKER_ARTIFACT_DEPENDS": "",
        "DOCKER_ARTIFACT_SIGNING_KEY": "",
        "DOCKER_ARTIFACT_EXTRA_ARGS": "",
        "DOCKER_ARTIFACT_BASE": "",
        "DOCKER_ARTIFACT_DELTA": "demo-stack-1.0-delta.mender",
        "MENDER_ARTIFACT_PROVIDES": PRODUCT_PROVIDES,
        "BB_CURRENT_MC": "default",
        "DEPLOYDIR": str(deploydir),
        "WORKDIR": str(tmp_path),
    }
    bb = FakeBB()
    return class_namespace(bb), bb, values, deploy_images, argv_file


def run_deploy(docker_class, **changes):
    ns, bb, values, deploy_images, argv_file = docker_class
    values = dict(values, **changes)
    ns["do_deploy"](FakeData(values))
    return argv_file.read_text().splitlines()


def test_the_class_variables_live_in_its_own_namespace_and_default_from_meta_mender():
    text = DOCKER_CLASS.read_text()
    assigned = set(re.findall(r"^([A-Z][A-Z0-9_]*)\s*[?:+.]*=", text, re.MULTILINE))
    assert assigned - {"PACKAGE_ARCH"} <= set(class_defaults())
    assert not any(v.startswith("MENDER_") for v in assigned), "meta-mender warns about unknown MENDER_ variables"
    defaults = class_defaults()
    assert defaults["DOCKER_ARTIFACT_STACK"] == "${BPN}"
    assert defaults["DOCKER_ARTIFACT_VERSION"] == "${PV}"
    assert "MENDER_DEVICE_TYPES_COMPATIBLE" in defaults["DOCKER_ARTIFACT_DEVICE_TYPES"]
    assert "MENDER_ARTIFACT_SIGNING_KEY" in defaults["DOCKER_ARTIFACT_SIGNING_KEY"]
    assert defaults["DOCKER_ARTIFACT_OCI_DEPLOY_DIR"] == "${DEPLOY_DIR_IMAGE}"
    assert "inherit deploy" in text and "addtask deploy after do_install before do_build" in text


def test_the_task_needs_the_native_generator_and_mender_artifact():
    text = DOCKER_CLASS.read_text()
    flag = re.search(r'^do_deploy\[depends\] \+= "(.*?)"', text, re.MULTILINE | re.DOTALL)[1]
    assert {"docker-artifact-gen-native:do_populate_sysroot",
            "mender-artifact-native:do_populate_sysroot", "${@docker_artifact_depends(d)}"} <= set(flag.split())
    assert 'do_deploy[mcdepends] += "${@docker_artifact_mcdepends(d)}"' in text
    recipe = (ROOT / "recipes-mender" / "docker-artifact-gen" / "docker-artifact-gen_0.1.0.bb").read_text()
    assert re.search(r'^BBCLASSEXTEND = ".*\bnative\b.*"', recipe, re.MULTILINE)


def test_oci_images_become_image_complete_depends_here_and_mcdepends_across_multiconfigs(docker_class):
    ns = docker_class[0]
    d = FakeData({"DOCKER_ARTIFACT_OCI_IMAGES": "web mc:containers:db worker", "BB_CURRENT_MC": "default"})
    assert ns["docker_artifact_depends"](d) == "web:do_image_complete worker:do_image_complete"
    assert ns["docker_artifact_mcdepends"](d) == "mc::containers:db:do_image_complete"
    d = FakeData({"DOCKER_ARTIFACT_OCI_IMAGES": "mc:containers:db", "BB_CURRENT_MC": "device"})
    assert ns["docker_artifact_mcdepends"](d) == "mc:device:containers:db:do_image_complete"
    assert ns["docker_artifact_depends"](FakeData({})) == ""
    with pytest.raises(BBFatal, match="'mc:db' is neither a recipe name nor mc:<multiconfig>:<recipe>"):
        ns["docker_artifact_depends"](FakeData({"DOCKER_ARTIFACT_OCI_IMAGES": "mc:db"}))


def test_the_archive_is_the_link_image_oci_makes_from_recipe_and_tag(docker_class):
    ns = docker_class[0]
    d = FakeData({"DOCKER_ARTIFACT_OCI_TAG": "v1:2", "DOCKER_ARTIFACT_OCI_DEPLOY_DIR": "/deploy"})
    # image-oci: ln -sf "$image_name.tar" "${IMAGE_BASENAME}-$image_tag-oci.tar", ':' -> '_' in the tag
    assert ns["docker_artifact_archive"](d, "web") == "/deploy/web-v1_2-oci.tar"


def test_deploy_runs_the_generator_inline_with_the_stack_and_run_args_as_one_argument(docker_class):
    argv = run_deploy(docker_class)
    deploy_images, deploydir = docker_class[3], docker_class[2]["DEPLOYDIR"]
    assert argv == ["-n", "demo-stack-1.0", "-t", "qemux86-64", "-o", f"{deploydir}/demo-stack-1.0.mender",
                    "--inline", "--software-name", "demo-stack", "--software-version", "1.0",
                    "--run-args=--name web -e 'MSG=hello world' --restart unless-stopped",
                    f"oci-archive:{deploy_images}/app-container-latest-oci.tar"]
    assert (Path(deploydir) / "demo-stack-1.0.mender").read_text() == "artifact\n"
    assert any("docker-artifact-gen: wrote it" in n for n in docker_class[1].notes)


def test_every_device_type_signing_depends_and_extra_args_go_where_mender_artifact_takes_them(docker_class):
    argv = run_deploy(docker_class, DOCKER_ARTIFACT_DEVICE_TYPES="qemux86-64 raspberrypi4",
                      DOCKER_ARTIFACT_RUN_ARGS="", DOCKER_ARTIFACT_SIGNING_KEY="/keys/private.pem",
                      DOCKER_ARTIFACT_DEPENDS="rootfs-image.feature.docker:true rootfs-image.api.version:2.0",
                      DOCKER_ARTIFACT_EXTRA_ARGS="--provides 'data-partition.demo-stack.owner:team a'")
    assert argv[:4] == ["-n", "demo-stack-1.0", "-t", "qemux86-64"] and argv[4:6] == ["-t", "raspberrypi4"]
    assert not any(a.startswith("--run-args") for a in argv)
    assert argv[argv.index("--"):] == ["--", "-k", "/keys/private.pem",
                                       "--depends", "rootfs-image.feature.docker:true",
                                       "--depends", "rootfs-image.api.version:2.0",
                                       "--provides", "data-partition.demo-stack.owner:team a"]
    assert docker_class[1].warnings == []


def test_a_rootfs_depends_this_builds_images_do_not_provide_is_warned_about(docker_class):
    run_deploy(docker_class, DOCKER_ARTIFACT_DEPENDS="rootfs-image.feature.docker:yes rootfs-image.cuda.version:11.8")
    warnings = docker_class[1].warnings
    assert len(warnings) == 2
    assert "'rootfs-image.feature.docker:yes'" in warnings[0] and "has 'rootfs-image.feature.docker:true'" in warnings[0]
    assert "lacks 'rootfs-image.cuda.version'" in warnings[1] and "demo-stack-1.0.mender" in warnings[1]


def test_provides_that_mender_composable_rootfs_provides_derives_count_as_provided(docker_class):
    derived_map = ("python3=rootfs-image.python.version:{major}.{minor} "
                   "docker-moby=rootfs-image.feature.docker:true")
    run_deploy(docker_class, MENDER_ARTIFACT_PROVIDES="rootfs-image.api.version:2.0",
               COMPOSABLE_ROOTFS_PROVIDES_MAP=derived_map,
               DOCKER_ARTIFACT_DEPENDS="rootfs-image.feature.docker:true rootfs-image.python.version:3.12")
    assert docker_class[1].warnings == []
    run_deploy(docker_class, MENDER_ARTIFACT_PROVIDES="rootfs-image.api.version:2.0",
               COMPOSABLE_ROOTFS_PROVIDES_MAP=derived_map, DOCKER_ARTIFACT_DEPENDS="rootfs-image.feature.docker:yes")
    (warning,) = docker_class[1].warnings
    assert "has 'rootfs-image.feature.docker:true'" in warning


def test_without_rootfs_provides_in_the_build_nothing_is_warned(docker_class):
    run_deploy(docker_class, MENDER_ARTIFACT_PROVIDES=None, DOCKER_ARTIFACT_DEPENDS="rootfs-image.cuda.version:11.8")
    assert docker_class[1].warnings == []


@pytest.mark.parametrize("entry", ["rootfs-image.feature.docker", "rootfs-image.x:", ":1", "a..b:1"])
def test_a_malformed_depends_stops_the_task(docker_class, entry):
    with pytest.raises(BBFatal, match=re.escape(f"DOCKER_ARTIFACT_DEPENDS: '{entry}' is not key:value")):
        run_deploy(docker_class, DOCKER_ARTIFACT_DEPENDS=entry)


def test_a_spec_names_archives_by_recipe_and_gets_their_paths(docker_class, tmp_path):
    spec = tmp_path / "stack.json"
    spec.write_text('{"docker-stack": {"format": 1, "stack": "demo-stack", "containers": ['
                    '{"name": "web", "image": "oci-archive:@app-container@", "command": ["serve"]}]}}')
    argv = run_deploy(docker_class, DOCKER_ARTIFACT_RUN_ARGS="", DOCKER_ARTIFACT_SPEC=str(spec))
    written = Path(argv[argv.index("--spec") + 1])
    assert "--inline" in argv and not any(a.startswith("oci-archive:") for a in argv)
    assert f'"image": "oci-archive:{docker_class[3]}/app-container-latest-oci.tar"' in written.read_text()


def test_a_spec_naming_an_image_the_build_does_not_make_is_refused(docker_class, tmp_path):
    spec = tmp_path / "stack.json"
    spec.write_text('{"docker-stack": {"stack": "demo-stack", "containers": [{"image": "oci-archive:@other@"}]}}')
    with pytest.raises(BBFatal, match=r"oci-archive:@other@, but other is not in DOCKER_ARTIFACT_OCI_IMAGES"):
        run_deploy(docker_class, DOCKER_ARTIFACT_RUN_ARGS="", DOCKER_ARTIFACT_SPEC=str(spec))


def test_a_spec_for_another_stack_is_refused(docker_class, tmp_path):
    spec = tmp_path / "stack.json"
    spec.write_text('{"docker-stack": {"stack": "web", "containers": [{"image": "oci-archive:@app-container@"}]}}')
    with pytest.raises(BBFatal, match="deploys the stack 'web' but DOCKER_ARTIFACT_STACK is 'demo-stack'"):
        run_deploy(docker_class, DOCKER_ARTIFACT_RUN_ARGS="", DOCKER_ARTIFACT_SPEC=str(spec))


def test_with_a_base_the_full_artifact_and_a_delta_against_the_base_are_both_written(docker_class, tmp_path):
    base = tmp_path / "releases" / "demo-stack-0.9.mender"
    base.parent.mkdir()
    base.write_bytes(b"base")
    run_deploy(docker_class, DOCKER_ARTIFACT_BASE=str(base))
    deploydir = Path(docker_class[2]["DEPLOYDIR"])
    runs = (docker_class[4].parent / "argv.all").read_text().split("--\nEND\n--\n")[:-1]
    full, delta = (r.splitlines() for r in runs)
    assert "--base" not in full and full[full.index("-o") + 1] == f"{deploydir}/demo-stack-1.0.mender"
    assert delta[delta.index("-o") + 1] == f"{deploydir}/demo-stack-1.0-delta.mender"
    assert delta[delta.index("--base") + 1] == str(base)
    assert [a for a in delta if a not in (str(base), "--base")] == [
        a.replace("demo-stack-1.0.mender", "demo-stack-1.0-delta.mender") for a in full]
    assert {p.name for p in deploydir.iterdir()} == {"demo-stack-1.0.mender", "demo-stack-1.0-delta.mender"}
    ns = docker_class[0]
    assert ns["docker_artifact_base_checksum"](FakeData({"DOCKER_ARTIFACT_BASE": str(base)})) == f"{base}:True"
    assert ns["docker_artifact_base_checksum"](FakeData({"DOCKER_ARTIFACT_BASE": ""})) == ""
    assert 'do_deploy[file-checksums] += "${@docker_artifact_base_checksum(d)}"' in DOCKER_CLASS.read_text()
    assert class_defaults()["DOCKER_ARTIFACT_BASE"] == ""


@pytest.mark.parametrize("changes, message", [
    ({"DOCKER_ARTIFACT_BASE": "/nonexistent/web-0.9.mender"},
     "DOCKER_ARTIFACT_BASE names /nonexistent/web-0.9.mender, which is not a file"),
    ({"DOCKER_ARTIFACT_DEVICE_TYPES": ""}, "DOCKER_ARTIFACT_DEVICE_TYPES is empty: inherit mender-full"),
    ({"DOCKER_ARTIFACT_OCI_IMAGES": ""}, "DOCKER_ARTIFACT_OCI_IMAGES is empty"),
    ({"DOCKER_ARTIFACT_OCI_TAG": "1.0"}, "app-container from DOCKER_ARTIFACT_OCI_IMAGES did not deploy .*app-container-1.0-oci.tar"),
    ({"DOCKER_ARTIFACT_SPEC": "/nonexistent/stack.json"}, "RUN_ARGS and DOCKER_ARTIFACT_SPEC are both set"),
    ({"DOCKER_ARTIFACT_SPEC": "/nonexistent/stack.json", "DOCKER_ARTIFACT_RUN_ARGS": ""},
     "DOCKER_ARTIFACT_SPEC names /nonexistent/stack.json, which is not a file"),
])
def test_a_recipe_mistake_stops_the_task_with_what_to_change(docker_class, changes, message):
    with pytest.raises(BBFatal, match=message):
        run_deploy(docker_class, **changes)


def test_a_failing_generator_fails_the_task_with_its_output(docker_class, monkeypatch):
    monkeypatch.setenv("FAKE_GEN_EXIT", "1")
    with pytest.raises(BBFatal, match=r"docker-artifact-gen failed \(exit 1\):\ndocker-artifact-gen: wrote it"):
        run_deploy(docker_class)
