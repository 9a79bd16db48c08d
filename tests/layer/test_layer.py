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


def layer_globs():
    """(collection, pattern) of every BBFILES and BBFILES_DYNAMIC entry of layer.conf, the pattern
    relative to the layer root; collection None for BBFILES (always parsed)."""
    text, _ = layer_conf()
    joined = text.replace("\\\n", " ")
    globs = []
    for var in ("BBFILES", "BBFILES_DYNAMIC"):
        for value in re.findall(rf'^{var}\s*\+=\s*"([^"]*)"', joined, re.MULTILINE):
            for item in value.split():
                collection, path = item.split(":", 1) if var == "BBFILES_DYNAMIC" else (None, item)
                globs.append((collection, path.replace("${LAYERDIR}/", "")))
    return globs


def glob_matches(pattern, path):
    """Whether BitBake's glob of BBFILES would find path: `*` within one path component."""
    import fnmatch
    return fnmatch.fnmatchcase(path, pattern) and path.count("/") == pattern.count("/")


# The folder each recipe lives in says whether BitBake may always parse it (None: BBFILES) or only
# with meta-virtualization (BBFILES_DYNAMIC, collection virtualization-layer): the container recipes
# and the image that installs docker-moby need that layer's recipes.
INTENDED_COLLECTION = {
    "recipes-mender/": None,
    "recipes-core/demo-apps/": None,
    "recipes-containers/": "virtualization-layer",
    "recipes-core/images/": "virtualization-layer",
}


def intended_collection(path):
    owners = [folder for folder in INTENDED_COLLECTION if path.startswith(folder)]
    assert len(owners) == 1, f"{path} is in no folder of INTENDED_COLLECTION (or in two): say which glob is for it"
    return INTENDED_COLLECTION[owners[0]]


def test_every_recipe_and_append_is_matched_by_exactly_the_glob_meant_for_it():
    globs = layer_globs()
    files = [f.relative_to(ROOT).as_posix() for f in metadata_files() if f.suffix in (".bb", ".bbappend")]
    assert len(files) >= 12
    for path in files:
        matching = [(collection, pattern) for collection, pattern in globs if glob_matches(pattern, path)]
        assert len(matching) == 1, f"{path} is matched by {matching or 'no glob'}: exactly one glob must find it"
        assert matching[0][0] == intended_collection(path), \
            f"{path} is parsed {'always' if matching[0][0] is None else 'with ' + matching[0][0]}, " \
            f"but its folder is meant for {intended_collection(path) or 'always'}"


def test_the_glob_check_catches_a_container_recipe_that_the_static_bbfiles_would_parse():
    globs = layer_globs() + [(None, "recipes-*/*/*.bb")]
    path = "recipes-containers/docker-update-module/docker-update-module_0.1.0.bb"
    assert len([g for g in globs if glob_matches(g[1], path)]) == 2
    assert intended_collection(path) == "virtualization-layer"
    assert intended_collection("recipes-core/images/composable-demo-image.bb") == "virtualization-layer"
    assert intended_collection("recipes-core/demo-apps/demo-app/demo-app-v1_1.0.bb") is None


def test_the_top_level_is_the_layout_of_the_product_brief():
    tracked = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    top = {line.split("/", 1)[0] for line in tracked.split()}
    layer = {"conf", "classes", "recipes-containers", "recipes-core", "recipes-mender", "rust", "kas", "lib",
             "README.md", "COPYING.MIT"}
    project = {".ci", ".github", ".gitignore", ".oelint.cfg", "bench", "scripts", "tests"}
    assert top == layer | project, f"unexpected top-level entries: {sorted(top - layer - project)}"


def recipes():
    """{PN: text} of the layer's recipes (PN from the file name), with the files they require beside them."""
    out = {}
    for f in metadata_files():
        if f.suffix != ".bb":
            continue
        text = f.read_text()
        for inc in re.findall(r"^(?:require|include)\s+(\S+\.inc)$", text, re.MULTILINE):
            if (f.parent / inc).is_file():
                text += "\n" + (f.parent / inc).read_text()
        out[f.name.split("_")[0].removesuffix(".bb")] = text
    return out


def inherits(text):
    return set(" ".join(re.findall(r"^inherit\s+(.*)$", text, re.MULTILINE)).split())


def value(text, var, default=None):
    m = re.search(rf'^{var}\s*=\s*"((?:[^"\\]|\\\n)*)"', text, re.MULTILINE)
    return " ".join(m[1].replace("\\\n", " ").split()) if m else default


DEMO_IMAGE = "composable-demo-image"


def test_the_demo_image_has_the_runtime_both_modules_and_ssh():
    image = recipes()[DEMO_IMAGE]
    assert {"docker-moby", "docker-update-module", "persistent-app-update-module"} <= set(value(image, "IMAGE_INSTALL").split())
    assert 'IMAGE_FEATURES += "ssh-server-openssh"' in image
    assert {"systemd", "virtualization", "composable-docker"} <= set(value(image, "REQUIRED_DISTRO_FEATURES").split())


def test_the_demo_image_deploys_every_artifact_recipe_for_build_and_testimage():
    all_recipes = recipes()
    image = all_recipes[DEMO_IMAGE]
    deployed = {dep.split(":")[0] for dep in value(image, "COMPOSABLE_DEMO_ARTIFACTS").split()}
    makers = {pn for pn, text in all_recipes.items() if inherits(text) & {"persistent-app-artifact", "docker-artifact"}}
    assert {"demo-stack-v1", "demo-stack-v2"} <= makers
    assert deployed == makers
    assert 'do_build[depends] += "${COMPOSABLE_DEMO_ARTIFACTS}"' in image
    testimage = re.search(r'^do_testimage\[depends\] \+= "((?:[^"\\]|\\\n)*)"', image, re.M)[1].split()
    # Everything the runtime case uses besides the image itself (see the recipe's comment).
    assert {"${COMPOSABLE_DEMO_ARTIFACTS}", "mender-artifact-native:do_populate_sysroot",
            "${@'ovmf:do_deploy'"} <= set(testimage)


def test_docker_artifacts_take_oci_images_that_the_layer_builds_with_the_tag_the_class_reads():
    all_recipes = recipes()
    class_tag = re.search(r'^DOCKER_ARTIFACT_OCI_TAG \?= "([^"]*)"',
                          (ROOT / "classes" / "docker-artifact.bbclass").read_text(), re.MULTILINE)[1]
    checked = 0
    for pn, text in all_recipes.items():
        if "docker-artifact" not in inherits(text):
            continue
        tag = value(text, "DOCKER_ARTIFACT_OCI_TAG", class_tag)
        for image in value(text, "DOCKER_ARTIFACT_OCI_IMAGES", "").split():
            assert image in all_recipes, f"{pn}: DOCKER_ARTIFACT_OCI_IMAGES names {image}, which the layer lacks"
            oci = all_recipes[image]
            assert {"image", "image-oci"} <= inherits(oci), f"{image} must inherit image and image-oci"
            assert value(oci, "IMAGE_FSTYPES").split() == ["container", "oci"]
            assert value(oci, "OCI_IMAGE_TAG", "latest") == tag
            checked += 1
    assert checked >= 1


def test_the_demo_container_runs_its_heartbeat_without_a_kernel_or_the_mender_client():
    all_recipes = recipes()
    container = all_recipes["composable-demo-container"]
    assert value(container, "IMAGE_CONTAINER_NO_DUMMY") == "1"
    assert set(value(container, "IMAGE_INSTALL:remove").split()) == {"mender-update", "mender-auth"}
    assert value(container, "TESTIMAGE_AUTO") == "0"
    assert value(container, "OCI_IMAGE_ENTRYPOINT") == "${bindir}/composable-demo-heartbeat"
    assert "composable-demo-heartbeat" in value(container, "IMAGE_INSTALL").split()
    for release in ("demo-stack-v1", "demo-stack-v2"):
        stack = all_recipes[release]
        assert value(stack, "DOCKER_ARTIFACT_STACK") == "demo-stack"
        assert value(stack, "DOCKER_ARTIFACT_DEPENDS") == "rootfs-image.feature.docker:true"
        assert value(stack, "DOCKER_ARTIFACT_RUN_ARGS").startswith("${DEMO_STACK_RUN_ARGS}")
    assert "--name demo-heartbeat" in value(all_recipes["demo-stack-v1"], "DEMO_STACK_RUN_ARGS")


def test_the_heartbeat_prints_and_stops_at_once_on_sigterm(tmp_path):
    import os
    import signal
    import time
    script = next(iter([ROOT / "recipes-containers/composable-demo-container/files/composable-demo-heartbeat"]))
    assert os.access(script, os.X_OK)
    proc = subprocess.Popen(["sh", str(script)], stdout=subprocess.PIPE, text=True,
                            env={"PATH": "/usr/bin:/bin", "HEARTBEAT_INTERVAL": "30"})
    try:
        assert "started" in proc.stdout.readline()
        assert proc.stdout.readline().strip() == "composable-demo-heartbeat: beat 1"
        start = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
        assert time.monotonic() - start < 5, "the heartbeat waited for its sleep instead of ending"
        assert "stopping" in proc.stdout.read()
    finally:
        proc.kill()
