#
# SPDX-License-Identifier: MIT
#
"""meta-mender-composable's runtime tests: the three update domains on the booted image.

Enabled with ``TEST_SUITES = "ping ssh composable"`` (kas/qemux86-64-testimage.yml). testimage
finds this module because it looks in ``<layer>/lib/oeqa/runtime/cases`` of every layer in
BBLAYERS; the scenarios themselves are ``mender_composable.scenarios`` (lib/mender_composable,
importable because conf/layer.conf has ``addpylib ${LAYERDIR}/lib mender_composable``), the same
code that tests/e2e/test_three_domains.py and scripts/demo run against the workstation's
sandboxed device.

Here the device is the image under test, reached over ssh (``self.target.run`` /
``self.target.copyTo``). The expected rootfs provides are those of the rootfs artifact the build
deployed (``${IMAGE_LINK_NAME}.mender``: what MENDER_ARTIFACT_PROVIDES and
mender-composable-rootfs-provides put into it, and what the bootstrap artifact seeded the device
with); the other artifacts come from DEPLOY_DIR_IMAGE, where composable-demo-image deploys them. The
OS stand-in artifacts are written with mender-artifact from this recipe's native sysroot, which
do_testimage stages (composable-demo-image: do_testimage[depends]).

Nothing here skips. A missing artifact, tool, package or client fails the test with what is
missing and where it should come from: oeqa counts a skip as a success, and a suite that passes
without running its scenarios has shown nothing.
"""

import os

from oeqa.core.decorator.depends import OETestDepends
from oeqa.core.decorator.oetimeout import OETimeout
from oeqa.runtime.case import OERuntimeTestCase

from mender_composable import artifact as mender_artifact
from mender_composable import scenarios

# Per-test limits, in seconds, for a run under QEMU without KVM (the slowest case: TCG on the
# CI runner). Each test's commands have their own limits inside (scenarios.COMMAND_TIMEOUT,
# scenarios.INSTALL_TIMEOUT); these bound the whole scenario. Their sum, 7200 s, stays below
# TEST_OVERALL_TIMEOUT in kas/qemux86-64-testimage.yml, so a hung scenario fails alone.
TIMEOUTS = {
    "rootfs_provides": 600,
    "persistent_app": 2400,
    "unmet_depends": 1500,
    "containers": 2700,
}

# The packages each scenario exercises; an image without them cannot pass the scenario.
PACKAGES = {
    "rootfs_provides": (),
    "persistent_app": ("persistent-app-update-module",),
    "unmet_depends": ("persistent-app-update-module",),
    "containers": ("docker-update-module", "docker-moby"),
}



class OeqaTarget:
    """The scenarios' target interface over an oeqa target (ssh)."""

    def __init__(self, target):
        self._target = target

    def run(self, command, timeout=None):
        return self._target.run(command, timeout=timeout)

    def copy_to(self, local, remote):
        self._target.copyTo(local, remote)


class Unusable(Exception):
    """What the tests need from the build is not there; the message says what and why."""


def rootfs_artifact_provides(td):
    """(artifact name, {key: value}) of the rootfs artifact the image deployed, without the
    provides mender-artifact and meta-mender generate."""
    path = os.path.join(td["DEPLOY_DIR_IMAGE"], "%s.mender" % (td.get("IMAGE_LINK_NAME") or ""))
    if not os.path.isfile(path):
        raise Unusable("the rootfs artifact %s is missing: the image's do_image_mender writes it "
                       "(INHERIT += \"mender-full\")" % path)
    try:
        art = mender_artifact.read(path)
    except mender_artifact.ArtifactError as e:
        raise Unusable(str(e))
    provides = {}
    for payload in art.payloads:
        # Without what mender-artifact and meta-mender generate: the scenarios check the
        # capabilities the build states.
        provides.update(scenarios.os_provides(payload.provides))
    return art.name, provides


def native_tool_dirs(td):
    """Where do_testimage's native sysroot has its tools (testdata.json keeps paths below TOPDIR
    relative, except TESTIMAGE_UPDATE_VARS such as WORKDIR)."""
    dirs = []
    native = td.get("STAGING_BINDIR_NATIVE") or ""
    if native:
        dirs.append(native if os.path.isabs(native) else os.path.join(td.get("TOPDIR") or "", native))
    if td.get("WORKDIR"):
        dirs.append(os.path.join(td["WORKDIR"], "recipe-sysroot-native", "usr", "bin"))
    return dirs


class ComposableTest(OERuntimeTestCase):
    """Each test is one scenario; they share the device and leave its rootfs-image.* as found."""

    _session = None
    _session_error = None

    @classmethod
    def tearDownClass(cls):
        if cls._session is not None:
            cls._session.close()
            cls._session = None

    def _open_session(self):
        td = self.td
        artifact_name, rootfs_provides = rootfs_artifact_provides(td)
        profile = scenarios.Profile(
            description="%s %s over ssh (%s)" % (td.get("MACHINE"), td.get("IMAGE_BASENAME") or td.get("PN"),
                                                 type(self.target).__name__),
            artifact_name=artifact_name,
            rootfs_provides=rootfs_provides,
            # The docker-moby bbappend's daemon.json (distro feature composable-docker), or
            # meta-mender-extended's MENDER_DOCKER_DATA_ROOT where that layer sets it instead.
            docker_root=td.get("MENDER_DOCKER_DATA_ROOT") or "/data/docker",
        )
        workdir = os.path.join(td.get("WORKDIR") or td.get("T") or "/tmp", "testimage-composable")
        tool_dirs = native_tool_dirs(td)
        artifacts = scenarios.DeployedArtifacts(td["DEPLOY_DIR_IMAGE"], workdir, tool_dirs=tool_dirs)
        if artifacts.mender_artifact is None:
            raise Unusable("mender-artifact is neither in %s nor on PATH: composable-demo-image's "
                           "do_testimage depends on mender-artifact-native:do_populate_sysroot, which "
                           "stages it there; an image of your own that runs the composable suite needs "
                           "the same dependency" % " nor ".join(tool_dirs or ["the native sysroot"]))
        session = scenarios.Session(OeqaTarget(self.target), profile, artifacts, say=self.logger.info)
        session.start()
        return session

    def session(self):
        cls = type(self)
        if cls._session is None and cls._session_error is None:
            try:
                cls._session = self._open_session()
            except (Unusable, scenarios.MissingRequirement) as e:
                cls._session_error = str(e)
        if cls._session_error is not None:
            self.fail("cannot run the composable scenarios: %s" % cls._session_error)
        return cls._session

    def run_scenario(self, key):
        missing = [p for p in PACKAGES[key] if p not in (self.tc.image_packages or ())]
        if missing:
            self.fail("the image does not install %s, which the %s scenario exercises; add %s to "
                      "IMAGE_INSTALL or remove 'composable' from TEST_SUITES"
                      % (", ".join(missing), key, " ".join(missing)))
        outcome = scenarios.run(self.session(), key)
        self.assertTrue(outcome.ok, "scenario %s failed:\n%s" % (key, outcome.failures()))

    @OETestDepends(["ssh.SSHTest.test_ssh"])
    @OETimeout(TIMEOUTS["rootfs_provides"])
    def test_rootfs_provides_listed(self):
        """Outcome 1: show-provides lists the rootfs artifact's provides and its name."""
        self.run_scenario("rootfs_provides")

    @OETestDepends(["ssh.SSHTest.test_ssh"])
    @OETimeout(TIMEOUTS["persistent_app"])
    def test_persistent_app_survives_os_update(self):
        """Outcome 2: demo-app 1.0 then 2.0 (with a rollback), data-partition.demo-app.* kept
        through an update that clears rootfs-image.*."""
        self.run_scenario("persistent_app")

    @OETestDepends(["ssh.SSHTest.test_ssh"])
    @OETimeout(TIMEOUTS["unmet_depends"])
    def test_unmet_depends_refused(self):
        """Outcome 3: rootfs-image.cuda.version:11.8 missing, refused, nothing modified."""
        self.run_scenario("unmet_depends")

    @OETestDepends(["ssh.SSHTest.test_ssh"])
    @OETimeout(TIMEOUTS["containers"])
    def test_container_stack_inline(self):
        """The container domain: inline docker-stack artifacts 1.0 and 2.0 run under /data/docker,
        2.0 rolls back to 1.0, the stack survives an OS update."""
        self.run_scenario("containers")
