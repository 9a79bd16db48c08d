"""The power-cut matrix on the VM device: the domains of tests/vmdevice/powercut.py set up with the
scenarios' artifacts, and `python3 -m vmdevice.matrix` (scripts/vm-powercuts), which boots a VM,
runs every cut and prints the table."""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from bench.rust import fault_build
from bench.system import run
from mender_composable import scenarios as sc
from scenarios import persistent_app as app_trees
from vmdevice import powercut

ROOT = Path(__file__).resolve().parents[2]
RUST_DIR = ROOT / "rust"
TARGET = ROOT / "target"


def app_domain(h: powercut.Harness) -> powercut.ModuleDomain:
    """cut-app 1.0 and 2.0 (the persistent-app scenario's trees: files of several modes, a symlink,
    one file changed, one added, one deleted, one mode changed)."""
    work = Path(h.s.artifacts.workdir) / "cut-app"
    arts = {}
    for version in ("1.0", "2.0"):
        tree = work / f"tree-{version}"
        if not tree.exists():
            if version == "1.0":
                app_trees.make_v1(tree)
            else:
                app_trees.make_v2(work / "tree-1.0", tree)
        arts[version] = h.s.artifacts._persistent_app(work / f"cut-app-{version}.mender", name="cut-app",
                                                      version=version, payload=tree)
    expect = {}
    dest = ""
    for version, art in arts.items():
        key, _, dest, tree = sc._persistent_app_expectations(art)
        expect[version] = tree
    return powercut.ModuleDomain(h, name="persistent-app", var="PERSISTENT_APP_FAULT",
                                 points=powercut.APP_POINTS, old=arts["1.0"], new=arts["2.0"], key=key,
                                 observe=lambda: h.s.tree(dest), expect=expect)


def docker_domain(h: powercut.Harness) -> powercut.ModuleDomain:
    """The demo stack 1.0 and 2.0, images inline."""
    arts = {v: h.s.artifacts.docker_stack(v) for v in ("1.0", "2.0")}
    expect = {}
    for version, art in arts.items():
        stack, key, _, names, _ = sc._stack_expectations(art)
        release = sc.mender_artifact.read(art).name
        expect[version] = {n: ("running", release) for n in names}
    # The demo stack's releases share one image, which the device has once 1.0 runs: a cut in the
    # inline load needs a 2.0 whose image it has never loaded.
    first_seen = {"inline load": h.s.artifacts.docker_stack("2.0", variant="first-seen")}
    return powercut.ModuleDomain(h, name="docker", var="DOCKER_MODULE_FAULT",
                                 points=powercut.DOCKER_POINTS, old=arts["1.0"], new=arts["2.0"], key=key,
                                 observe=lambda: sc._stack_containers(h.s, stack), expect=expect,
                                 first_seen=first_seen)


def rootfs_domain(h: powercut.Harness) -> powercut.RootfsDomain:
    """The image's OS (A) and composable-demo-2.0 (the same rootfs, its provides changed)."""
    old_provides = sc.os_provides(h.s.provides())
    name = h.s.profile.artifact_name
    return powercut.RootfsDomain(
        h, old=h.s.artifacts.rootfs_image(name, old_provides),
        new=h.s.artifacts.rootfs_image(sc.NEXT_OS_NAME, sc.NEXT_OS_PROVIDES),
        old_name=name, new_name=sc.NEXT_OS_NAME, old_provides=old_provides, new_provides=sc.NEXT_OS_PROVIDES)


DOMAINS = {"persistent-app": app_domain, "docker": docker_domain, "rootfs": rootfs_domain}


def install_fault_modules(h: powercut.Harness) -> None:
    h.install_module("persistent-app", fault_build("persistent-app", "persistent-app"))
    h.install_module("docker", fault_build("docker-module", "mender-docker-module"))


def main(argv=None) -> int:
    import bench
    from vmdevice import image as vm_image
    from vmdevice.session import boot_copy, vm_session

    parser = argparse.ArgumentParser(prog="scripts/vm-powercuts", description=__doc__.split("\n\n")[0])
    parser.add_argument("--domain", action="append", choices=sorted(DOMAINS),
                        help="only this domain (repeatable; default: all)")
    args = parser.parse_args(argv)
    release = TARGET / "release"
    for package, binary in (("docker-module", None), ("persistent-app", None),
                            ("persistent-app-gen", "persistent-app-artifact-gen"), ("docker-artifact-gen", None)):
        cmd = ["cargo", "build", "--release", "--locked", "--quiet", "-p", package]
        run(cmd + (["--bin", binary] if binary else []), cwd=RUST_DIR, timeout=3600)
    image = vm_image.build(ROOT, release, log=print)
    scratch = Path("/var/tmp/meta-mender-composable")
    scratch.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    cuts = []
    with tempfile.TemporaryDirectory(prefix="vm-matrix-", dir=scratch) as tmp, bench.Dockerd() as dockerd:
        work = Path(tmp)
        device = boot_copy(image, work)
        with device:
            device.wait_ssh(timeout=900)
            s = vm_session(device, image, work / "artifacts", dockerd=dockerd,
                           app_generator=release / "persistent-app-artifact-gen",
                           docker_generator=release / "docker-artifact-gen", say=print)
            h = powercut.Harness(s, device)
            install_fault_modules(h)
            for name in args.domain or list(DOMAINS):
                cuts += DOMAINS[name](h).run()
            s.close()
    print(f"\n=== Power cuts ({len(cuts)}, {time.monotonic() - t0:.0f} s) ===")
    print(powercut.table(cuts))
    for cut in cuts:
        if not cut.ok:
            print(f"  {cut.domain} at {cut.point}: {cut.detail}")
    return 0 if all(c.ok for c in cuts) else 1


if __name__ == "__main__":
    sys.exit(main())
