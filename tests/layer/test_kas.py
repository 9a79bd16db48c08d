"""The kas configurations: valid for kas 5.5 (offline, its own schema) and saying what the product needs.

Each kas/*.yml is validated against the schema shipped in the kas package, merged with
its includes the way kas documents it (depth-first, in order, the including file last;
mappings merged key by key, anything else replaced), rendered into local.conf the way
kas writes it (entries sorted by key), and checked against the reference setup's facts.
Each fact is also shown to catch a wrong edit.
"""

import copy
import re
import sys
from pathlib import Path

import jsonschema
import kas
import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent.parent
KAS_DIR = ROOT / "kas"
sys.path.insert(0, str(ROOT / "lib"))

from mender_composable import provides  # noqa: E402

THIS_REPO = "meta-mender-composable"
BRANCH = "scarthgap"
PINS = {
    "poky": ("https://git.yoctoproject.org/poky", "1d54d1c4736a114e1cecbe85a0306e3814d5ce70",
             {"meta", "meta-poky"}),
    "meta-openembedded": ("https://git.openembedded.org/meta-openembedded", "bec755063a8b5da65df626f5749496aadaa4f4bb",
                          {"meta-oe", "meta-python", "meta-networking", "meta-filesystems"}),
    "meta-virtualization": ("https://git.yoctoproject.org/meta-virtualization",
                            "f980aefbc8b3eeafb8d144e7fdac3c3b701a4fea", None),
    "meta-mender": ("https://github.com/mendersoftware/meta-mender", "7412e59dd5da65f33ec853a42951097be0b62d7c",
                    {"meta-mender-core", "meta-mender-qemu"}),
}
PROVIDES = ["rootfs-image.python.version:3.12", "rootfs-image.api.version:2.0",
            "rootfs-image.feature.docker:true", "rootfs-image.feature.persistent-app:true"]

CONFIGS = sorted(KAS_DIR.glob("*.yml"))
TESTIMAGE_CONFIGS = [c for c in CONFIGS if "testimage" in c.name]


def load(path):
    return yaml.safe_load(path.read_text())


def merge(dest, upd):
    out = dict(dest)
    for key, value in upd.items():
        if isinstance(out.get(key), dict) and isinstance(value, dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out


def merged(path):
    """The configuration kas builds from `path` and its includes (paths relative to the repository root)."""
    config = load(path)
    result, version = {}, config["header"]["version"]
    for include in config.get("header", {}).get("includes", []):
        assert isinstance(include, str), f"{path.name}: include from another repository needs a fetch: {include}"
        included = merged(ROOT / include)
        result, version = merge(result, included), max(version, included["header"]["version"])
    result = merge(result, config)
    result["header"] = dict(result["header"], version=version)  # kas keeps the highest version used
    return result


def local_conf(config):
    """conf/local.conf as kas writes it: the header entries sorted by key, then MACHINE and DISTRO."""
    text = "".join(f"# {key}\n{value}\n" for key, value in sorted(config.get("local_conf_header", {}).items()))
    return text + f'MACHINE ??= "{config.get("machine")}"\nDISTRO ??= "{config.get("distro")}"\n'


ASSIGNMENT = re.compile(r'^(?P<var>[A-Za-z0-9_${}/.-]+)(?P<ovr>(?::[A-Za-z0-9_${}/.-]+)*)\s*'
                        r'(?P<op>\?\?=|\?=|\+=|=\+|\.=|=\.|=)\s*"(?P<val>[^"]*)"\s*$')


def assignments(text):
    """[(variable, override suffix, operator, value)] of a local.conf; fails on anything it cannot read."""
    out = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        m = ASSIGNMENT.match(line)
        assert m, f"local.conf line this test cannot read (keep kas entries to one-line assignments): {line!r}"
        out.append((m["var"], m["ovr"], m["op"], m["val"]))
    return out


def values(text):
    """Each variable's value after the plain assignments and :append, in BitBake's order (appends last)."""
    val, appends = {}, {}
    for var, ovr, op, v in assignments(text):
        if ovr == ":append":
            appends[var] = appends.get(var, "") + v
        elif ovr:
            continue
        elif op == "=":
            val[var] = v
        elif op in ("?=", "??="):
            val.setdefault(var, v)
        elif op == "+=":
            val[var] = (val.get(var, "") + " " + v).strip()
        elif op == ".=":
            val[var] = val.get(var, "") + v
        else:
            pytest.fail(f"operator {op} for {var} not handled by this test")
    for var, v in appends.items():
        val[var] = val.get(var, "") + v
    return val


def words(vals, var):
    return (vals.get(var) or "").split()


def product_problems(config):
    """What the reference setup needs from a merged kas configuration, as a list of problems."""
    problems = []

    def expect(cond, what):
        if not cond:
            problems.append(what)

    expect(config.get("distro") == "poky", "distro must be poky (kas 5 defaults to nodistro)")
    expect(config.get("machine") == "qemux86-64", "machine must be qemux86-64")
    expect(config.get("target") == "composable-demo-image", "target must be composable-demo-image")
    expect(int(config["header"]["version"]) >= 14, "header version must be >= 14 for branch/commit")

    repos = config.get("repos", {})
    expect(THIS_REPO in repos and not (repos[THIS_REPO] or {}).get("url"),
           f"{THIS_REPO} must be the checkout kas runs from (no url)")
    for name, repo in repos.items():
        if name == THIS_REPO:
            continue
        repo = repo or {}
        expect(repo.get("branch") == BRANCH, f"{name}: branch must be {BRANCH}")
        expect(re.fullmatch(r"[0-9a-f]{40}", repo.get("commit") or "") is not None,
               f"{name}: must be pinned to a full 40-hex commit")
        expect("tag" not in repo and "refspec" not in repo, f"{name}: pin with branch + commit only")
    for name, (url, commit, layers) in PINS.items():
        repo = repos.get(name) or {}
        expect(repo.get("url") == url, f"{name}: url must be {url}")
        expect(repo.get("commit") == commit, f"{name}: commit must be {commit}")
        got = set((repo.get("layers") or {}).keys()) or None
        expect(got == layers, f"{name}: layers must be {sorted(layers) if layers else 'the repository root'}")
    expect(set(repos) == set(PINS) | {THIS_REPO}, f"repos must be exactly {sorted(set(PINS) | {THIS_REPO})}")

    conf = local_conf(config)
    vals = values(conf)
    expect(vals.get("INIT_MANAGER") == "systemd", 'INIT_MANAGER must be "systemd"')
    for feature in ("virtualization", "composable-docker"):
        expect(feature in words(vals, "DISTRO_FEATURES"), f"DISTRO_FEATURES must contain {feature}")
    expect("mender-full" in words(vals, "INHERIT"), 'INHERIT must contain "mender-full"')
    expect("mender-composable-provides-check" in words(vals, "INHERIT"),
           'INHERIT must contain "mender-composable-provides-check"')
    expect(vals.get("MENDER_ARTIFACT_NAME") == "composable-demo-1.0", 'MENDER_ARTIFACT_NAME must be "composable-demo-1.0"')
    expect(words(vals, "MENDER_ARTIFACT_PROVIDES") == PROVIDES, f"MENDER_ARTIFACT_PROVIDES must be {' '.join(PROVIDES)}")
    expect(provides.rootfs_provides_problems(vals.get("MENDER_ARTIFACT_PROVIDES", "")) == [],
           "MENDER_ARTIFACT_PROVIDES must pass the layer's provides check")
    expect(vals.get("MENDER_DATA_PART_SIZE_MB") == "4096", 'MENDER_DATA_PART_SIZE_MB must be "4096"')
    expect(vals.get("MENDER_STORAGE_TOTAL_SIZE_MB") == "8192", 'MENDER_STORAGE_TOTAL_SIZE_MB must be "8192"')

    # kas sorts the entries: a variable set with "=" in two entries would depend on key names.
    setters = {}
    for key, value in config.get("local_conf_header", {}).items():
        for var, ovr, op, _ in assignments(value):
            if op == "=" and not ovr:
                setters.setdefault(var, []).append(key)
    for var, keys in setters.items():
        expect(len(keys) == 1, f"{var} is set in several local_conf_header entries ({', '.join(keys)})")

    # Classes of this layer that the configuration names exist.
    for var in ("INHERIT", "IMAGE_CLASSES"):
        for cls in words(vals, var):
            if cls.startswith(("mender-composable-", "persistent-app-")):
                expect((ROOT / "classes" / f"{cls}.bbclass").is_file(), f"{var} names {cls}, which classes/ lacks")
    return problems


def problems_of_testimage(config):
    """What the testimage variants need, for either boot route."""
    problems = []

    def expect(cond, what):
        if not cond:
            problems.append(what)

    vals = values(local_conf(config))
    expect("testimage" in words(vals, "IMAGE_CLASSES"), 'IMAGE_CLASSES must contain "testimage"')
    expect(words(vals, "TEST_SUITES") == ["ping", "ssh", "composable"], 'TEST_SUITES must be "ping ssh composable"')
    expect(vals.get("TEST_RUNQEMUPARAMS") == "slirp", 'TEST_RUNQEMUPARAMS must be "slirp"')
    mem = re.fullmatch(r"-m (\d+)", vals.get("QB_MEM", ""))
    expect(mem is not None and int(mem[1]) >= 2048, 'QB_MEM must be "-m 2048" or more (Docker)')
    expect("/dev/kvm" in vals.get("QEMU_USE_KVM", ""), "QEMU_USE_KVM must depend on /dev/kvm")
    expect("TESTIMAGE_AUTO" in vals, "TESTIMAGE_AUTO must be set")
    expect("ssh-server-openssh" in (ROOT / "recipes-core/images/"
                                           "composable-demo-image.bb").read_text(),
           "the image must have an SSH server")
    if vals.get("TEST_TARGET", "qemu") == "qemu":
        expect(vals.get("QB_DEFAULT_FSTYPE") == "wic", 'qemu route: QB_DEFAULT_FSTYPE must be "wic"')
        expect(vals.get("QEMU_USE_OVMF") == "1", 'qemu route: QEMU_USE_OVMF must be "1"')
        expect(vals.get("QB_DRIVE_TYPE") == "/dev/sd", 'qemu route: QB_DRIVE_TYPE must be "/dev/sd" (/dev/sda)')
        expect("mender-composable-uefiimg-wic" in words(vals, "IMAGE_CLASSES"),
               "qemu route: IMAGE_CLASSES must contain mender-composable-uefiimg-wic")
        expect(vals.get("TESTIMAGE_AUTO") == "1", 'qemu route: TESTIMAGE_AUTO must be "1"')
    else:
        expect(vals.get("TEST_TARGET") == "simpleremote", 'TEST_TARGET must be "qemu" or "simpleremote"')
        expect(vals.get("TEST_TARGET_IP") == "127.0.0.1:8822", 'simpleremote: TEST_TARGET_IP must be "127.0.0.1:8822"')
        expect(bool(vals.get("TEST_SERVER_IP")), "simpleremote: testimage needs TEST_SERVER_IP")
        expect(vals.get("TESTIMAGE_AUTO") == "0", 'simpleremote: TESTIMAGE_AUTO must be "0" (mender-qemu runs apart)')
        expect("QB_DEFAULT_FSTYPE" not in vals and "mender-composable-uefiimg-wic" not in words(vals, "IMAGE_CLASSES"),
               "simpleremote: the qemu route's settings must be replaced, not mixed in")
    return problems


def test_the_reference_configurations_exist():
    names = {c.name for c in CONFIGS}
    assert {"qemux86-64.yml", "qemux86-64-testimage.yml"} <= names


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_each_file_is_valid_against_the_schema_of_kas(path):
    validator_class = jsonschema.validators.validator_for(kas.CONFIGSCHEMA)
    validator_class.check_schema(kas.CONFIGSCHEMA)
    errors = sorted(validator_class(kas.CONFIGSCHEMA).iter_errors(load(path)), key=str)
    assert not errors, "\n".join(f"{'/'.join(map(str, e.path))}: {e.message}" for e in errors)
    version = load(path)["header"]["version"]
    assert kas.__compatible_file_version__ <= version <= kas.__file_version__


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_each_configuration_with_its_includes_is_the_reference_setup(path):
    assert product_problems(merged(path)) == []


@pytest.mark.parametrize("path", TESTIMAGE_CONFIGS, ids=lambda p: p.name)
def test_testimage_configurations_boot_the_image_and_run_the_suites(path):
    assert problems_of_testimage(merged(path)) == []


def test_the_testimage_configuration_includes_the_base_and_both_boot_routes_exist():
    base = merged(KAS_DIR / "qemux86-64.yml")
    testimage = merged(KAS_DIR / "qemux86-64-testimage.yml")
    assert "kas/qemux86-64.yml" in load(KAS_DIR / "qemux86-64-testimage.yml")["header"]["includes"]
    for key, value in base["local_conf_header"].items():
        assert testimage["local_conf_header"][key] == value
    assert values(local_conf(testimage)).get("TEST_TARGET", "qemu") == "qemu"
    routes = {values(local_conf(merged(p))).get("TEST_TARGET", "qemu") for p in TESTIMAGE_CONFIGS}
    assert routes == {"qemu", "simpleremote"}


def test_local_conf_is_rendered_sorted_by_key_as_kas_writes_it():
    conf = local_conf(merged(KAS_DIR / "qemux86-64.yml"))
    keys = re.findall(r"^# (\S+)$", conf, re.MULTILINE)
    header_keys = [k for k in keys if k in merged(KAS_DIR / "qemux86-64.yml")["local_conf_header"]]
    assert header_keys == sorted(header_keys)


def _set_conf(config, var, value):
    """Replace var's assignment wherever it is in local_conf_header (keeping the entry)."""
    for key, text in config["local_conf_header"].items():
        new = re.sub(rf'^{var}\s*(\+?=)\s*"[^"]*"', f'{var} = "{value}"', text, flags=re.MULTILINE)
        if new != text:
            config["local_conf_header"][key] = new
            return config
    raise AssertionError(f"{var} not found")


WRONG_EDITS = {
    "distro nodistro": lambda c: c.update(distro="nodistro"),
    "poky on master": lambda c: c["repos"]["poky"].update(branch="master"),
    "meta-mender unpinned": lambda c: c["repos"]["meta-mender"].pop("commit"),
    "short commit": lambda c: c["repos"]["meta-virtualization"].update(commit="f980aef"),
    "layer missing": lambda c: c["repos"]["meta-openembedded"]["layers"].pop("meta-filesystems"),
    "extra repo unpinned": lambda c: c["repos"].update({"meta-foo": {"url": "https://example.org/meta-foo"}}),
    "sysvinit": lambda c: _set_conf(c, "INIT_MANAGER", "sysvinit"),
    "no composable-docker": lambda c: _set_conf(c, "DISTRO_FEATURES:append", " virtualization"),
    "no mender-full": lambda c: _set_conf(c, "INHERIT", "mender-composable-provides-check"),
    "artifact name": lambda c: _set_conf(c, "MENDER_ARTIFACT_NAME", "release-1"),
    "a provide missing": lambda c: _set_conf(c, "MENDER_ARTIFACT_PROVIDES", " ".join(PROVIDES[:3])),
    "data partition size": lambda c: _set_conf(c, "MENDER_DATA_PART_SIZE_MB", "128"),
    "storage size": lambda c: _set_conf(c, "MENDER_STORAGE_TOTAL_SIZE_MB", "1024"),
    "set twice": lambda c: c["local_conf_header"].update(zz="MENDER_DATA_PART_SIZE_MB = \"4096\""),
}


@pytest.mark.parametrize("edit", WRONG_EDITS, ids=list(WRONG_EDITS))
def test_a_wrong_edit_of_the_base_configuration_is_caught(edit):
    config = copy.deepcopy(merged(KAS_DIR / "qemux86-64.yml"))
    WRONG_EDITS[edit](config)
    assert product_problems(config), f"the edit '{edit}' went unnoticed"


TESTIMAGE_WRONG_EDITS = {
    "no testimage": lambda c: _set_conf(c, "TEST_SUITES", "ping ssh"),
    "small memory": lambda c: _set_conf(c, "QB_MEM", "-m 256"),
    "kvm always": lambda c: _set_conf(c, "QEMU_USE_KVM", "1"),
    "ext4 boot": lambda c: _set_conf(c, "QB_DEFAULT_FSTYPE", "ext4"),
    "no ovmf": lambda c: _set_conf(c, "QEMU_USE_OVMF", ""),
}


@pytest.mark.parametrize("edit", TESTIMAGE_WRONG_EDITS, ids=list(TESTIMAGE_WRONG_EDITS))
def test_a_wrong_edit_of_the_testimage_configuration_is_caught(edit):
    config = copy.deepcopy(merged(KAS_DIR / "qemux86-64-testimage.yml"))
    TESTIMAGE_WRONG_EDITS[edit](config)
    assert problems_of_testimage(config), f"the edit '{edit}' went unnoticed"


# ---------------------------------------------------------------------------
# .github/workflows/yocto.yml: the Yocto build and testimage on users' runners.

WORKFLOW = ROOT / ".github" / "workflows" / "yocto.yml"
KAS_REF = re.compile(r"kas/[A-Za-z0-9_.-]+\.yml")


def workflow():
    wf = yaml.safe_load(WORKFLOW.read_text())
    # YAML 1.1 (PyYAML) reads the key `on` as True.
    if True in wf:
        wf["on"] = wf.pop(True)
    return wf


def workflow_problems(wf):
    """What the CI workflow needs to build and test the reference setup, as a list of problems."""
    problems = []

    def expect(cond, what):
        if not cond:
            problems.append(what)

    triggers = wf.get("on") or {}
    expect("workflow_dispatch" in triggers, "the workflow must be startable by hand (workflow_dispatch)")
    jobs = wf.get("jobs") or {}
    expect(bool(jobs), "the workflow has no jobs")
    referenced, runs = set(), []
    for name, job in jobs.items():
        expect(bool(job.get("runs-on")), f"job {name}: runs-on must name the runner")
        expect("timeout-minutes" in job, f"job {name}: a Yocto build needs an explicit timeout-minutes")
        env = job.get("env") or {}
        for var in ("DL_DIR", "SSTATE_DIR"):
            expect(bool(env.get(var)), f"job {name}: {var} must be set (kas hands it to BitBake) for caching")
        for step in job.get("steps") or []:
            text = " ".join(str(step.get(k, "")) for k in ("run", "name", "if"))
            referenced |= set(KAS_REF.findall(text))
            runs.append(str(step.get("run", "")))
        for value in env.values():
            referenced |= set(KAS_REF.findall(str(value)))
    expect(bool(referenced), "the workflow references no kas configuration")
    for ref in sorted(referenced):
        expect((ROOT / ref).is_file(), f"the workflow references {ref}, which does not exist")
    expect(any(re.search(r"\bkas build \.\./meta-mender-composable/kas/qemux86-64\.yml\b", r) for r in runs),
           "a step must run `kas build` on kas/qemux86-64.yml")
    expect(any("kas build" in r and "TESTIMAGE_CONFIG" in r for r in runs),
           "a step must run `kas build` on a testimage configuration")
    for config in TESTIMAGE_CONFIGS:
        expect(f"kas/{config.name}" in referenced, f"the workflow does not run kas/{config.name}")
    pins = {r for r in runs for r in re.findall(r"kas==([0-9.]+)", r)}
    required = re.search(r"^kas==([0-9.]+)$", (ROOT / "tests" / "requirements.txt").read_text(), re.MULTILINE)[1]
    expect(pins == {required}, f"the workflow must install kas=={required}, the version the tests validate against")
    return problems


def test_the_ci_workflow_is_valid_yaml_and_builds_the_reference_and_testimage_configurations():
    assert workflow_problems(workflow()) == []


def test_the_ci_workflow_keeps_its_results():
    steps = next(iter(workflow()["jobs"].values()))["steps"]
    upload = [s for s in steps if str(s.get("uses", "")).startswith("actions/upload-artifact@")]
    assert upload and upload[0].get("if") == "always()"
    paths = upload[0]["with"]["path"]
    assert "*.mender" in paths and "oeqa" in paths


WORKFLOW_WRONG_EDITS = {
    "missing kas file": lambda wf: next(iter(wf["jobs"].values()))["steps"].append(
        {"run": "kas build ../meta-mender-composable/kas/qemuarm64.yml"}),
    "no base build": lambda wf: [s.update(run=s["run"].replace("kas/qemux86-64.yml", "kas/qemux86-64-testimage.yml"))
                                 for s in next(iter(wf["jobs"].values()))["steps"] if "run" in s],
    "no sstate dir": lambda wf: next(iter(wf["jobs"].values()))["env"].pop("SSTATE_DIR"),
    "no timeout": lambda wf: next(iter(wf["jobs"].values())).pop("timeout-minutes"),
    "other kas version": lambda wf: [s.update(run=s["run"].replace("kas==", "kas==4."))
                                     for s in next(iter(wf["jobs"].values()))["steps"] if "run" in s],
    "no manual start": lambda wf: wf["on"].pop("workflow_dispatch"),
}


@pytest.mark.parametrize("edit", WORKFLOW_WRONG_EDITS, ids=list(WORKFLOW_WRONG_EDITS))
def test_a_wrong_edit_of_the_ci_workflow_is_caught(edit):
    wf = copy.deepcopy(workflow())
    WORKFLOW_WRONG_EDITS[edit](wf)
    assert workflow_problems(wf), f"the edit '{edit}' went unnoticed"
