"""scripts/demo's report: the three-domain scenarios on a fresh sandboxed device, and the product's
outcomes they prove.

The scenarios are lib/mender_composable/scenarios.py, the code testimage runs on the built image
(lib/oeqa/runtime/cases/composable.py); here the device is the test bench's sandbox with the real
Go Mender client, the modules and generators built from this workspace, and a private dockerd.
"""

import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

import bench  # noqa: E402
from scenarios.three_domains import image_settings, local_session, scenarios  # noqa: E402

RELEASE = ROOT / "target" / "release"


def main() -> int:
    problems = bench.missing_components()
    if problems:
        print("demo: cannot run here:\n  - " + "\n  - ".join(problems), file=sys.stderr)
        return 1
    before = bench.host_device_paths_snapshot()
    artifact_name, _ = image_settings()
    print("meta-mender-composable: the three update domains through the real Mender client")
    print("The scenarios testimage runs on composable-demo-image (lib/mender_composable/scenarios.py),")
    print(f"here on a sandboxed device set up like that image (kas/qemux86-64.yml: {artifact_name}, its")
    print("MENDER_ARTIFACT_PROVIDES, the persistent-app and docker modules), with artifacts from this")
    print("workspace's generators and a private Docker Engine in place of the image's dockerd.")
    with tempfile.TemporaryDirectory(prefix="composable-demo-") as tmp, bench.Dockerd() as dockerd, \
            bench.DeviceSandbox(Path(tmp) / "device", artifact_name=artifact_name) as device:
        session = local_session(
            device, Path(tmp) / "artifacts", dockerd=dockerd,
            module=RELEASE / "persistent-app", docker_module=RELEASE / "mender-docker-module",
            app_generator=RELEASE / "persistent-app-artifact-gen",
            docker_generator=RELEASE / "docker-artifact-gen", say=print)
        try:
            outcomes = scenarios.run_all(session)
        finally:
            session.close()
    untouched = bench.host_device_paths_snapshot() == before

    print("\n=== Outcomes ===")
    for line in scenarios.summary(outcomes):
        print(line)
    print(f"  {'PASS' if untouched else 'FAIL':<4}  this machine's /data, /etc/mender and module directory untouched")
    for outcome in outcomes:
        if outcome.status == "FAIL":
            print(f"\n--- why {outcome.key} failed ---\n{outcome.failures()}")
    ok = untouched and all(o.ok for o in outcomes)
    print("RESULT: " + ("PASS" if ok else "FAIL"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
