"""The layer's testimage case (lib/oeqa/runtime/cases/composable.py) and the scenario code it shares
with the workstation (lib/mender_composable/scenarios.py), checked without BitBake: the case
module compiles and imports against stand-ins of poky's oeqa API, exposes one test per scenario,
and finds the artifacts under the names the recipes deploy; the client differences the bench's Go
client cannot show (C++ mender-update's messages) are checked on recorded output."""

import ast
import py_compile
import re
import sys
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
    assert ("OEHasPackage", (["docker-update-module"],)) in cls.test_container_stack_inline.oeqa
    assert ("OEHasPackage", (["docker-moby"],)) in cls.test_container_stack_inline.oeqa
    assert ("OEHasPackage", (["persistent-app-update-module"],)) in \
        cls.test_persistent_app_survives_os_update.oeqa


def test_each_runtime_test_runs_its_scenario_and_fails_or_skips_with_it(case_module, monkeypatch):
    mod, _ = case_module
    ran = []

    def fake_run(session, key):
        ran.append(key)
        outcome = scenarios.Outcome(key, key, checks=[scenarios.Check("x", key != "unmet_depends", "why")])
        if key == "containers":
            outcome.skipped = "no stack artifact"
        return outcome

    monkeypatch.setattr(mod.scenarios, "run", fake_run)
    monkeypatch.setattr(mod.ComposableTest, "session", lambda self: object())
    results = {}
    for name in ("test_rootfs_provides_listed", "test_persistent_app_survives_os_update",
                 "test_unmet_depends_refused", "test_container_stack_inline"):
        result = unittest.TestResult()
        mod.ComposableTest(name).run(result)
        results[name] = result
    assert ran == ["rootfs_provides", "persistent_app", "unmet_depends", "containers"]
    assert sorted(ran) == sorted(key for key, _, _ in scenarios.SCENARIOS)
    assert results["test_rootfs_provides_listed"].wasSuccessful()
    assert "x: why" in results["test_unmet_depends_refused"].failures[0][1]
    assert results["test_container_stack_inline"].skipped[0][1] == "no stack artifact"


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


def test_a_go_client_is_called_as_mender_and_a_device_without_a_client_is_a_skip():
    go = FakeTarget([(r"command -v mender-update", (0, "mender")), (r"mender --version", (0, "3.4.0 runtime: go"))])
    assert scenarios.detect_client(go).command == "mender --no-syslog"
    with pytest.raises(scenarios.Unavailable, match="neither mender-update"):
        scenarios.detect_client(FakeTarget([]))


def test_both_clients_unmet_depends_messages_and_module_lines_are_understood():
    go = ('time="…" level=error msg="Artifact dependency \\"rootfs-image.cuda.version\\" not satisfied by '
          'currently installed artifact (11.8 != <nil>)."')
    cpp = ("record_id=1 severity=error msg=\"Missing 'rootfs-image.cuda.version' in provides, required by "
           "artifact depends\"")
    assert scenarios.DEPENDS_UNMET_RE.search(go)["go_key"] == "rootfs-image.cuda.version"
    assert scenarios.DEPENDS_UNMET_RE.search(cpp)["cpp_key"] == "rootfs-image.cuda.version"
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
    demo = ROOT / "recipes-demo" / "demo-app"
    app = _var(demo / "demo-app.inc", "PERSISTENT_APP_NAME")
    versions = sorted(p.stem.split("_")[1] for p in demo.glob("demo-app-v*_*.bb"))
    assert versions == ["1.0", "2.0"]
    for version in versions:  # persistent-app-artifact.bbclass: ${PERSISTENT_APP_NAME}-${PERSISTENT_APP_VERSION}.mender
        assert scenarios.DeployedArtifacts.DEMO_APP.format(version=version) == f"{app}-{version}.mender"
    cuda = next((ROOT / "recipes-demo" / "cuda-depends-artifact").glob("*.bb"))
    assert _var(cuda, "PERSISTENT_APP_ARTIFACT") == scenarios.DeployedArtifacts.CUDA_DEPENDS
    stack = next((ROOT / "dynamic-layers" / "virtualization-layer" / "recipes-demo" / "demo-stack").glob("*.bb"))
    bpn, pv = stack.stem.split("_")
    assert _var(stack, "DOCKER_ARTIFACT") is None and _var(stack, "DOCKER_ARTIFACT_STACK") is None
    # docker-artifact.bbclass: ${DOCKER_ARTIFACT_STACK}-${DOCKER_ARTIFACT_VERSION}.mender, stack = BPN.
    assert scenarios.DeployedArtifacts.DOCKER_STACK.format(version=pv) == f"{bpn}-{pv}.mender"
    image = ROOT / "dynamic-layers" / "virtualization-layer" / "recipes-core" / "images" / "composable-demo-image.bb"
    deps = re.search(r'COMPOSABLE_DEMO_ARTIFACTS = "([^"]*)"', image.read_text().replace("\\\n", " ")).group(1)
    for recipe in ("demo-app-v1", "demo-app-v2", "cuda-depends-artifact", bpn):
        assert f"{recipe}:do_deploy" in deps.split(), "testimage must depend on what it installs"


def test_a_missing_deployed_artifact_skips_its_scenario_with_the_reason(tmp_path):
    source = scenarios.DeployedArtifacts(str(tmp_path), str(tmp_path / "work"), tool_dirs=[str(tmp_path)])
    (tmp_path / "demo-app-1.0.mender").write_bytes(b"")
    assert source.demo_app("1.0") == str(tmp_path / "demo-app-1.0.mender")
    with pytest.raises(scenarios.Unavailable, match=r"demo-stack-1\.0\.mender is not in DEPLOY_DIR_IMAGE"):
        source.docker_stack("1.0")
