"""scripts/demo's report: runs the scenarios on a fresh sandboxed device and prints what happened."""

import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

import bench  # noqa: E402
from scenarios.smoke import APP, run_smoke  # noqa: E402


def main() -> int:
    problems = bench.missing_components()
    if problems:
        print("demo: cannot run here:\n  - " + "\n  - ".join(problems), file=sys.stderr)
        return 1
    module = ROOT / "target" / "release" / "smoke-module"
    before = bench.host_device_paths_snapshot()
    with tempfile.TemporaryDirectory(prefix="composable-demo-") as tmp:
        with bench.DeviceSandbox(Path(tmp) / "device", artifact_name="composable-demo-1.0") as device:
            print(f"Device sandbox: {device.dir} (its /data, /etc/mender and modules dir)")
            print("Smoke deployment: module 'smoke' from the workspace, real mender-artifact, real mender client\n")
            run = run_smoke(device, module, Path(tmp), say=print)
    untouched = bench.host_device_paths_snapshot() == before
    ok = (
        all(step.returncode == 0 for step in run.steps)
        and run.step("rollback").provides.get(f"data-partition.{APP}.version") == "1.0"
        and untouched
    )
    print(f"\nThis machine's /data, /etc/mender and module directory untouched: {'yes' if untouched else 'NO'}")
    print("RESULT: " + ("PASS" if ok else "FAIL"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
