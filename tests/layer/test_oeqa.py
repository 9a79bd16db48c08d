"""The layer's testimage case (lib/oeqa/runtime/cases/composable.py) and the scenario code it shares
with the workstation (lib/mender_composable/scenarios.py), checked without BitBake: the case
module compiles and imports against stand-ins of poky's oeqa API, exposes one test per scenario,
and finds the artifacts under the names the recipes deploy; the client differences the bench's Go
client cannot show (C++ mender-update's messages) are checked on recorded output."""

import ast
import py_compile
import re
import subprocess
import sys
import types
import unittest
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent.parent
LIB = ROOT / "lib"
CASES = LIB / "oeqa" / "runtime" / "cases"
sys.path.insert(0, str(LIB))

from mender_composable import scenarios  # noqa: E402
from scenarios import oeqa_stub  # noqa: E402  (tests/, on sys.path by tests/conftest.py)

# What testimage's get_runtime_paths() looks for in every layer of BBLAYERS.
CASE = CASES / "composable.py"
assert CASE == oeqa_stub.CASE

PRODUCT_PROVIDES = {"rootfs-image.python.version": "3.12", "rootfs-image.api.version": "2.0",
                    "rootfs-image.feature.docker": "true", "rootfs-image.feature.persistent-app": "true"}


def test_every_module_under_lib_oeqa_compiles(tmp_path):
    files = sorted((LIB / "oeqa").rglob("*.py"))
    assert CASE in files
    for f in files:
        py_compile.compile(str(f), cfile=str(tmp_path / (f.name + "c")), doraise=True)


def test_lib_oeqa_has_no_package_markers_that_would_shadow_poky_oeqa():
    # poky's meta/lib/oeqa, oeqa/runtime and oeqa/runtime/cases are namespace packages (no
    # __init__.py); an __init__.py here would hide poky's modules behind this layer's.
    assert list((LIB / "oeqa").rglob("__init__.py")) == []


def _imports(path):
    tree = ast.parse(path.read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def test_shared_scenario_code_needs_neither_bitbake_nor_pytest():
    stdlib = set(sys.stdlib_module_names)
    for path in (LIB / "mender_composable" / "scenarios.py", LIB / "mender_composable" / "artifact.py"):
        assert _imports(path) <= stdlib | {"__future__"}, path
    assert _imports(CASE) <= stdlib | {"oeqa", "mender_composable"}


# -- the case module against stand-ins of poky's oeqa API (tests/scenarios/oeqa_stub.py) -------------


@pytest.fixture
def case_module():
    with oeqa_stub.case_module() as mod:
        yield mod, oeqa_stub.OERuntimeTestCase


def test_case_module_imports_without_bitbake_and_has_one_runtime_test_per_scenario(case_module):
    mod, base = case_module
    cls = mod.ComposableTest
    assert issubclass(cls, base)
    tests = sorted(n for n in dir(cls) if n.startswith("test_"))
    assert tests == ["test_container_stack_inline", "test_persistent_app_survives_os_update",
                     "test_rootfs_provides_listed", "test_unmet_depends_refused"]
    for name in tests:
        decorations = getattr(cls, name).oeqa
        assert ("OETestDepends", (["ssh.SSHTest.test_ssh"],)) in decorations, name
        # Every test has an explicit limit, and none is left to skip on a missing package.
        assert [args for kind, args in decorations if kind == "OETimeout"], name
        assert not [kind for kind, _ in decorations if kind == "OEHasPackage"], name
    assert set(mod.TIMEOUTS) == set(mod.PACKAGES) == {key for key, _, _ in scenarios.SCENARIOS}


def test_the_case_and_the_scenarios_have_no_way_to_skip():
    for path in (CASE, LIB / "mender_composable" / "scenarios.py"):
        text = path.read_text()
        assert "skipTest" not in text and "SkipTest" not in text and "skipUnless" not in text, path


def test_the_per_test_limits_fit_in_the_overall_testimage_limit(case_module):
    mod, _ = case_module
    import yaml
    conf = yaml.safe_load((ROOT / "kas" / "qemux86-64-testimage.yml").read_text())["local_conf_header"]
    text = "\n".join(conf.values())
    overall = int(re.search(r'^TEST_OVERALL_TIMEOUT = "(\d+)"', text, re.M)[1])
    assert sum(mod.TIMEOUTS.values()) < overall
    decorated = {name: dict(getattr(mod.ComposableTest, name).oeqa)["OETimeout"][0]
                 for name in dir(mod.ComposableTest) if name.startswith("test_")}
    assert sorted(decorated.values()) == sorted(mod.TIMEOUTS.values())
    # One install may not take longer than the scenario that runs it.
    assert scenarios.INSTALL_TIMEOUT < min(v for k, v in mod.TIMEOUTS.items() if k != "rootfs_provides")


def _run_case(mod, names=None):
    results = {}
    for name in names or sorted(n for n in dir(mod.ComposableTest) if n.startswith("test_")):
        result = unittest.TestResult()
        mod.ComposableTest(name).run(result)
        results[name] = result
    return results


ALL_PACKAGES = {"persistent-app-update-module", "docker-update-module", "docker-moby"}


def test_each_runtime_test_runs_its_scenario_and_fails_with_it(case_module, monkeypatch):
    mod, _ = case_module
    ran = []

    def fake_run(session, key):
        ran.append(key)
        outcome = scenarios.Outcome(key, key, checks=[scenarios.Check("x", key != "unmet_depends", "why")])
        if key == "containers":
            outcome.error = "cannot run: demo-stack-2.0.mender is not in DEPLOY_DIR_IMAGE"
        return outcome

    monkeypatch.setattr(mod.scenarios, "run", fake_run)
    monkeypatch.setattr(mod.ComposableTest, "session", lambda self: object())
    monkeypatch.setattr(mod.ComposableTest, "tc", types.SimpleNamespace(image_packages=ALL_PACKAGES), raising=False)
    results = _run_case(mod, ["test_rootfs_provides_listed", "test_persistent_app_survives_os_update",
                              "test_unmet_depends_refused", "test_container_stack_inline"])
    assert ran == ["rootfs_provides", "persistent_app", "unmet_depends", "containers"]
    assert sorted(ran) == sorted(key for key, _, _ in scenarios.SCENARIOS)
    assert results["test_rootfs_provides_listed"].wasSuccessful()
    assert "x: why" in results["test_unmet_depends_refused"].failures[0][1]
    assert "demo-stack-2.0.mender is not in DEPLOY_DIR_IMAGE" in results["test_container_stack_inline"].failures[0][1]
    assert all(r.skipped == [] for r in results.values())


def test_an_image_without_the_module_a_scenario_exercises_fails_that_test(case_module, monkeypatch):
    mod, _ = case_module
    monkeypatch.setattr(mod.scenarios, "run", lambda session, key: pytest.fail("must not run"))
    monkeypatch.setattr(mod.ComposableTest, "session", lambda self: object())
    monkeypatch.setattr(mod.ComposableTest, "tc", types.SimpleNamespace(image_packages={"docker-moby"}), raising=False)
    results = _run_case(mod, ["test_container_stack_inline"])
    (failure,) = results["test_container_stack_inline"].failures
    assert "does not install docker-update-module" in failure[1]
    assert results["test_container_stack_inline"].skipped == []


class FakeTarget:
    """Answers commands by pattern, records what ran and what was copied."""

    def __init__(self, answers):
        self.answers = answers
        self.commands = []
        self.copied = []

    def run(self, command, timeout=None):
        self.commands.append(command)
        for pattern, answer in self.answers:
            if re.search(pattern, command):
                return answer
        return 0, ""

    def copy_to(self, local, remote):
        self.copied.append((local, remote))


CPP_DEVICE = [
    (r"command -v mender-update", (0, "mender-update")),
    (r"mender-update --version", (0, "5.1.0")),
    (r"device_type", (0, "device_type=qemux86-64")),
    (r"systemctl is-active", (0, "")),
]


def test_session_on_a_cpp_client_image_uses_mender_update_and_stops_its_daemon(case_module, tmp_path):
    mod, _ = case_module
    target = FakeTarget(CPP_DEVICE)
    profile = scenarios.Profile("image", "composable-demo-1.0", PRODUCT_PROVIDES)
    session = scenarios.Session(mod.OeqaTarget(target), profile,
                                scenarios.DeployedArtifacts(str(tmp_path), str(tmp_path / "w")), say=lambda _: None)
    assert (session.client.name, session.client.command, session.device_type) == \
        ("mender-update", "mender-update", "qemux86-64")
    session.start()
    assert "systemctl stop mender-updated" in target.commands
    session.close()
    assert target.commands[-1] == "systemctl start mender-updated"


def test_a_go_client_is_called_as_mender_and_a_device_without_a_client_cannot_run():
    go = FakeTarget([(r"command -v mender-update", (0, "mender")), (r"mender --version", (0, "3.4.0 runtime: go"))])
    assert scenarios.detect_client(go).command == "mender --no-syslog"
    with pytest.raises(scenarios.MissingRequirement, match="neither mender-update"):
        scenarios.detect_client(FakeTarget([]))


def test_a_pinned_client_is_used_even_where_the_device_also_has_the_other():
    both = FakeTarget([(r"command -v (mender-update|mender) >/dev/null 2>&1$", (0, "")),
                       (r"command -v mender-update", (0, "mender-update")),
                       (r"mender --version", (0, "3.4.0 runtime: go")), (r"mender-update --version", (0, "5.1.0"))])
    assert scenarios.detect_client(both).name == "mender-update"
    assert scenarios.detect_client(both, "mender").command == "mender --no-syslog"
    absent = FakeTarget([(r"command -v mender-update >/dev/null 2>&1$", (1, ""))])
    with pytest.raises(scenarios.MissingRequirement, match="mender-update, the client this run is pinned to"):
        scenarios.detect_client(absent, "mender-update")


def test_both_clients_unmet_depends_messages_and_module_lines_are_understood():
    go = ('time="…" level=error msg="Artifact dependency \\"rootfs-image.cuda.version\\" not satisfied by '
          'currently installed artifact (11.8 != <nil>)."')
    cpp = ("record_id=1 severity=error msg=\"Missing 'rootfs-image.cuda.version' in provides, required by "
           "artifact depends\"")
    assert scenarios.depends_unmet_key(go) == scenarios.depends_unmet_key(cpp) == "rootfs-image.cuda.version"
    assert scenarios.depends_unmet_key("Installed, but not committed.") is None
    output = "\n".join([
        'level=info msg="Output (stderr) from command \\"/usr/share/mender/modules/v3/docker\\": '
        'docker: started \\"web\\""',
        'record_id=7 severity=info msg="Update Module output (stderr): docker: health gate passed"',
        "Installed, but not committed.",
    ])
    assert scenarios.module_lines(output) == ['docker: started "web"', "docker: health gate passed"]


def test_expected_rootfs_provides_come_from_the_kas_configs_mender_artifact_provides():
    text = (ROOT / "kas" / "qemux86-64.yml").read_text()
    value = re.search(r'MENDER_ARTIFACT_PROVIDES = "([^"]*)"', text).group(1)
    assert scenarios.Profile.parse_provides(value) == PRODUCT_PROVIDES


def _var(path, name):
    m = re.search(rf'^{name}\s*\??=\s*"([^"]*)"', path.read_text(), re.M)
    return m.group(1) if m else None


def test_deployed_artifact_names_are_those_the_demo_recipes_deploy(tmp_path):
    demo = ROOT / "recipes-core" / "demo-apps" / "demo-app"
    app = _var(demo / "demo-app.inc", "PERSISTENT_APP_NAME")
    versions = sorted(p.stem.split("_")[1] for p in demo.glob("demo-app-v*_*.bb"))
    assert versions == ["1.0", "2.0"]
    for version in versions:  # persistent-app-artifact.bbclass: ${PERSISTENT_APP_NAME}-${PERSISTENT_APP_VERSION}.mender
        assert scenarios.DeployedArtifacts.DEMO_APP.format(version=version) == f"{app}-{version}.mender"
    cuda = next((ROOT / "recipes-core" / "demo-apps" / "cuda-depends-artifact").glob("*.bb"))
    assert _var(cuda, "PERSISTENT_APP_ARTIFACT") == scenarios.DeployedArtifacts.CUDA_DEPENDS
    stacks = ROOT / "recipes-containers" / "demo-stack"
    versions = sorted(p.stem.split("_")[1] for p in stacks.glob("demo-stack-v*_*.bb"))
    assert versions == ["1.0", "2.0"]
    stack = _var(stacks / "demo-stack.inc", "DOCKER_ARTIFACT_STACK")
    assert _var(stacks / "demo-stack.inc", "DOCKER_ARTIFACT") is None
    for version in versions:  # docker-artifact.bbclass: ${DOCKER_ARTIFACT_STACK}-${DOCKER_ARTIFACT_VERSION}.mender
        assert scenarios.DeployedArtifacts.DOCKER_STACK.format(version=version) == f"{stack}-{version}.mender"
    image = ROOT / "recipes-core" / "images" / "composable-demo-image.bb"
    deps = re.search(r'COMPOSABLE_DEMO_ARTIFACTS = "([^"]*)"', image.read_text().replace("\\\n", " ")).group(1)
    for recipe in ("demo-app-v1", "demo-app-v2", "cuda-depends-artifact", "demo-stack-v1", "demo-stack-v2"):
        assert f"{recipe}:do_deploy" in deps.split(), "testimage must depend on what it installs"


def test_a_missing_deployed_artifact_is_a_missing_requirement_with_the_reason(tmp_path):
    source = scenarios.DeployedArtifacts(str(tmp_path), str(tmp_path / "work"), tool_dirs=[str(tmp_path)])
    (tmp_path / "demo-app-1.0.mender").write_bytes(b"")
    assert source.demo_app("1.0") == str(tmp_path / "demo-app-1.0.mender")
    with pytest.raises(scenarios.MissingRequirement, match=r"demo-stack-1\.0\.mender is not in DEPLOY_DIR_IMAGE"):
        source.docker_stack("1.0")


# -- the case against a build's outputs: a missing tool or artifact fails, never skips ---------------


def _rootfs_artifact(deploy, link_name, provides, name="composable-demo-1.0"):
    """A rootfs artifact as meta-mender deploys it (${IMAGE_LINK_NAME}.mender), written by the real
    mender-artifact over a small ext4 image."""
    fs = deploy / "rootfs.ext4"
    subprocess.run(["truncate", "-s", "4M", str(fs)], check=True)
    subprocess.run(["mkfs.ext4", "-q", "-F", str(fs)], check=True)
    argv = ["mender-artifact", "write", "rootfs-image", "-f", str(fs), "-n", name, "-t", "qemux86-64",
            "-o", str(deploy / f"{link_name}.mender")]
    for key, value in provides.items():
        argv += ["--provides", f"{key}:{value}"]
    argv += ["--provides", f"rootfs-image.update-module.docker.version:{name}"]
    subprocess.run(argv, check=True, capture_output=True)


def _testimage_td(tmp_path, deploy):
    return {"MACHINE": "qemux86-64", "PN": "composable-demo-image", "DEPLOY_DIR_IMAGE": str(deploy),
            "IMAGE_LINK_NAME": "composable-demo-image-qemux86-64", "WORKDIR": str(tmp_path / "workdir"),
            "TOPDIR": str(tmp_path), "STAGING_BINDIR_NATIVE": "tmp/work/recipe-sysroot-native/usr/bin"}


def _case_with(mod, monkeypatch, td, target, packages=ALL_PACKAGES):
    import logging
    cls = mod.ComposableTest
    monkeypatch.setattr(cls, "td", td, raising=False)
    monkeypatch.setattr(cls, "target", target, raising=False)
    monkeypatch.setattr(cls, "logger", logging.getLogger("composable-test"), raising=False)
    monkeypatch.setattr(cls, "tc", types.SimpleNamespace(image_packages=packages), raising=False)
    monkeypatch.setattr(cls, "_session", None)
    monkeypatch.setattr(cls, "_session_error", None)


class OeqaFakeTarget(FakeTarget):
    def copyTo(self, local, remote):  # noqa: N802 - oeqa's name
        self.copy_to(local, remote)


def test_expected_provides_are_the_deployed_rootfs_artifacts_without_the_generated_ones(case_module, tmp_path):
    mod, _ = case_module
    deploy = tmp_path / "deploy"
    deploy.mkdir()
    _rootfs_artifact(deploy, "composable-demo-image-qemux86-64", PRODUCT_PROVIDES)
    name, provides = mod.rootfs_artifact_provides(_testimage_td(tmp_path, deploy))
    assert (name, provides) == ("composable-demo-1.0", PRODUCT_PROVIDES)


def test_without_mender_artifact_in_the_native_sysroot_every_test_fails_and_none_skips(
        case_module, monkeypatch, tmp_path):
    """The OS stand-in needs mender-artifact; do_testimage stages it (composable-demo-image). Where
    it is absent -- an image from sstate without that dependency -- the case must fail."""
    mod, _ = case_module
    deploy = tmp_path / "deploy"
    deploy.mkdir()
    _rootfs_artifact(deploy, "composable-demo-image-qemux86-64", PRODUCT_PROVIDES)
    empty = tmp_path / "no-tools"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    _case_with(mod, monkeypatch, _testimage_td(tmp_path, deploy), OeqaFakeTarget(CPP_DEVICE))
    results = _run_case(mod)
    assert len(results) == 4
    for name, result in results.items():
        assert result.skipped == [], name
        (failure,) = result.failures
        assert "mender-artifact is neither in" in failure[1] and "mender-artifact-native:do_populate_sysroot" \
            in failure[1], name
    assert str(tmp_path / "tmp/work/recipe-sysroot-native/usr/bin") in failure[1]


def test_without_the_rootfs_artifact_the_case_fails_naming_it(case_module, monkeypatch, tmp_path):
    mod, _ = case_module
    _case_with(mod, monkeypatch, _testimage_td(tmp_path, tmp_path), OeqaFakeTarget(CPP_DEVICE))
    results = _run_case(mod, ["test_rootfs_provides_listed"])
    (failure,) = results["test_rootfs_provides_listed"].failures
    assert "composable-demo-image-qemux86-64.mender is missing" in failure[1]


def test_a_missing_demo_artifact_fails_its_test_naming_the_recipe(case_module, monkeypatch, tmp_path):
    mod, _ = case_module
    deploy = tmp_path / "deploy"
    deploy.mkdir()
    _rootfs_artifact(deploy, "composable-demo-image-qemux86-64", PRODUCT_PROVIDES)
    _case_with(mod, monkeypatch, _testimage_td(tmp_path, deploy), OeqaFakeTarget(CPP_DEVICE))
    results = _run_case(mod, ["test_persistent_app_survives_os_update"])
    result = results["test_persistent_app_survives_os_update"]
    assert result.skipped == []
    (failure,) = result.failures
    assert "demo-app-1.0.mender is not in DEPLOY_DIR_IMAGE" in failure[1]
    assert "demo-app-v1, demo-app-v2" in failure[1]
