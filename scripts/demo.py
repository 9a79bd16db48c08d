"""scripts/demo's report: runs the scenarios on fresh sandboxed devices and prints what happened."""

import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

import bench  # noqa: E402
from scenarios import persistent_app  # noqa: E402
from scenarios.smoke import APP as SMOKE_APP, run_smoke  # noqa: E402

RELEASE = ROOT / "target" / "release"
ROOTFS_PROVIDES = {
    "rootfs-image.python.version": "3.12",
    "rootfs-image.api.version": "2.0",
    "rootfs-image.feature.docker": "true",
    "rootfs-image.feature.persistent-app": "true",
}


def heading(text: str) -> None:
    print(f"\n=== {text} ===")


def main() -> int:
    problems = bench.missing_components()
    if problems:
        print("demo: cannot run here:\n  - " + "\n  - ".join(problems), file=sys.stderr)
        return 1
    before = bench.host_device_paths_snapshot()
    checks = {}
    with tempfile.TemporaryDirectory(prefix="composable-demo-") as tmp:
        tmp = Path(tmp)

        heading("Bench smoke: a module from the workspace under the real Mender client")
        with bench.DeviceSandbox(tmp / "smoke", artifact_name="composable-demo-1.0") as device:
            run = run_smoke(device, RELEASE / "smoke-module", tmp / "smoke-work", say=print)
        checks["smoke deployment rolled back to 1.0"] = (
            all(s.returncode == 0 for s in run.steps)
            and run.step("rollback").provides.get(f"data-partition.{SMOKE_APP}.version") == "1.0")

        heading("Persistent apps: demo-app through the persistent-app module")
        with bench.DeviceSandbox(tmp / "apps", artifact_name="composable-demo-1.0") as device:
            # The rootfs provides of the reference image (MENDER_ARTIFACT_PROVIDES); the Go client
            # does not read bootstrap artifacts standalone, so they are recorded by an install.
            device.seed_provides(ROOTFS_PROVIDES, artifact_name="composable-demo-1.0")
            provides = device.provides()
            print("$ mender show-provides")
            for key, value in sorted(provides.items()):
                print(f"    {key}={value}")
            checks["show-provides lists the four rootfs-image provides"] = all(
                provides.get(k) == v for k, v in ROOTFS_PROVIDES.items())
            app = persistent_app.deploy_rollback_commit(
                device, RELEASE / "persistent-app", RELEASE / "persistent-app-artifact-gen",
                tmp / "apps-work", "stream", say=print)
        key = f"data-partition.{persistent_app.APP}.version"
        checks["demo-app 1.0 deployed: data-partition.demo-app.version=1.0"] = (
            app.step("commit 1.0").provides.get(key) == "1.0")
        checks["rollback of 2.0 restored 1.0 exactly"] = (
            app.step("rollback 2.0").tree == app.step("commit 1.0").tree)
        checks["data-partition.demo-app.version survived an OS update clearing rootfs-image.*"] = (
            app.steps[-1].provides.get(key) == "2.0")

        heading("Unmet depends: an artifact needing rootfs-image.cuda.version:11.8")
        with bench.DeviceSandbox(tmp / "depends", artifact_name="composable-demo-1.0") as device:
            refused = persistent_app.refused_before_install(
                device, RELEASE / "persistent-app", RELEASE / "persistent-app-artifact-gen",
                tmp / "depends-work", "stream", say=print)
        cuda = next(s for s in refused.steps if "cuda" in s.command)
        reason = bench.DEPENDS_UNMET_RE.search(cuda.stderr)
        if reason:
            print(f"\nThe client refused the cuda artifact before any module state: "
                  f"{reason.group(0).replace(chr(92), '')}")
        checks["cuda artifact refused before any module state, /data/apps unchanged"] = (
            cuda.returncode != 0 and reason is not None and cuda.states == []
            and cuda.tree == refused.step("commit 1.0").tree)

    checks["this machine's /data, /etc/mender and module directory untouched"] = (
        bench.host_device_paths_snapshot() == before)
    heading("Outcomes")
    for name, ok in checks.items():
        print(f"  [{'ok' if ok else 'FAILED'}] {name}")
    ok = all(checks.values())
    print("RESULT: " + ("PASS" if ok else "FAIL"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
