"""scripts/demo's report: the three-domain scenarios on a fresh device, and the product's outcomes
they prove.

The scenarios are lib/mender_composable/scenarios.py, the code testimage runs on the built image
(lib/oeqa/runtime/cases/composable.py). By default the device is the test bench's sandbox with the
real Go Mender client, the modules and generators built from this workspace, and a private dockerd;
the OS update is a stand-in that only changes the provides. With --vm the device is a booted Debian
12 VM (tests/vmdevice: systemd, Docker on /data, the layer's files, the real client, ssh only) and
the OS update is real: a rootfs-image artifact written to the other partition and booted by the
launcher's bootloader stand-in.
"""

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

import bench  # noqa: E402
from scenarios.three_domains import image_settings, local_session, scenarios  # noqa: E402

RELEASE = ROOT / "target" / "release"


def ready() -> bool:
    """The bench can run here; otherwise says what is missing."""
    problems = bench.missing_components()
    if problems:
        print("demo: cannot run here:\n  - " + "\n  - ".join(problems), file=sys.stderr)
    return not problems


def report(outcomes, untouched: bool) -> int:
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


def main_vm() -> int:
    from vmdevice import image as vm_image
    from vmdevice.session import boot_copy, vm_session

    if not ready():
        return 1
    before = bench.host_device_paths_snapshot()
    print("meta-mender-composable: the three update domains on a booted device")
    print("The scenarios testimage runs on composable-demo-image (lib/mender_composable/scenarios.py), on a")
    print("Debian 12 VM under QEMU (TCG) reached over ssh only: systemd, dockerd with the layer's daemon.json")
    print("(/data/docker), the layer's modules, the real Go Mender client; OS updates are real A/B rootfs")
    print("updates that the launcher's bootloader stand-in boots (tests/vmdevice).")
    t0 = time.monotonic()
    image = vm_image.build(ROOT, RELEASE, log=print)
    scratch = Path("/var/tmp/meta-mender-composable")
    scratch.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="composable-demo-vm-", dir=scratch) as tmp, bench.Dockerd() as dockerd:
        device = boot_copy(image, Path(tmp) / "vm")
        with device:
            record = device.wait_ssh(timeout=900)
            print(f"booted rootfs partition {record.partition} in {record.boot_seconds:.0f} s (ssh on 127.0.0.1:{device.ssh_port})")
            session = vm_session(device, image, Path(tmp) / "artifacts", dockerd=dockerd,
                                 app_generator=RELEASE / "persistent-app-artifact-gen",
                                 docker_generator=RELEASE / "docker-artifact-gen", say=print)
            try:
                outcomes = scenarios.run_all(session)
            finally:
                session.close()
            print("\n=== Boots (the launcher's record) ===")
            for b in device.boots:
                took = f"{b.boot_seconds:.0f} s" if b.boot_seconds is not None else "-"
                print(f"  boot {b.index}: partition {b.partition}, {b.reason}; ready in {took}; ended: {b.end or 'running'}")
    print(f"(VM demo: {time.monotonic() - t0:.0f} s)")
    return report(outcomes, bench.host_device_paths_snapshot() == before)


def main() -> int:
    parser = argparse.ArgumentParser(prog="scripts/demo", description=__doc__.split("\n\n")[0])
    parser.add_argument("--vm", action="store_true",
                        help="run the scenarios on the booted VM device with real A/B OS updates (minutes)")
    if parser.parse_args().vm:
        return main_vm()
    if not ready():
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
    return report(outcomes, bench.host_device_paths_snapshot() == before)


if __name__ == "__main__":
    sys.exit(main())
