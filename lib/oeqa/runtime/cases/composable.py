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
``self.target.copyTo``); the expectations come from the image's datastore (MENDER_ARTIFACT_NAME,
MENDER_ARTIFACT_PROVIDES, Docker's data root), the artifacts from DEPLOY_DIR_IMAGE, where
composable-demo-image deploys them. The OS stand-in artifacts are written with the
mender-artifact that meta-mender put into the image's native sysroot.
"""

import os

from oeqa.core.decorator.depends import OETestDepends
from oeqa.core.decorator.oetimeout import OETimeout
from oeqa.runtime.case import OERuntimeTestCase
from oeqa.runtime.decorator.package import OEHasPackage

from mender_composable import scenarios


class OeqaTarget:
    """The scenarios' target interface over an oeqa target (ssh)."""

    def __init__(self, target):
        self._target = target

    def run(self, command, timeout=None):
        return self._target.run(command, timeout=timeout)

    def copy_to(self, local, remote):
        self._target.copyTo(local, remote)


class ComposableTest(OERuntimeTestCase):
    """Each test is one scenario; they share the device and leave its rootfs-image.* as found."""

    _session = None
    _session_error = None

    @classmethod
    def tearDownClass(cls):
        if cls._session is not None:
            cls._session.close()
            cls._session = None

    def session(self):
        cls = type(self)
        if cls._session is None and cls._session_error is None:
            td = self.td
            profile = scenarios.Profile(
                description="%s %s over ssh (%s)" % (td.get("MACHINE"), td.get("IMAGE_BASENAME") or td.get("PN"),
                                                     type(self.target).__name__),
                artifact_name=td.get("MENDER_ARTIFACT_NAME") or "",
                rootfs_provides=scenarios.Profile.parse_provides(td.get("MENDER_ARTIFACT_PROVIDES") or ""),
                # The docker-moby bbappend's daemon.json (distro feature composable-docker), or
                # meta-mender-extended's MENDER_DOCKER_DATA_ROOT where that layer sets it instead.
                docker_root=td.get("MENDER_DOCKER_DATA_ROOT") or "/data/docker",
            )
            workdir = os.path.join(td.get("WORKDIR") or td.get("T") or "/tmp", "testimage-composable")
            # mender-artifact: meta-mender's do_image_mender staged it into the image's native
            # sysroot (the task's PATH has that too). testdata.json stores paths relative to
            # TOPDIR except TESTIMAGE_UPDATE_VARS (WORKDIR, DEPLOY_DIR_IMAGE, ...).
            native = td.get("STAGING_BINDIR_NATIVE") or ""
            if native and not os.path.isabs(native):
                native = os.path.join(td.get("TOPDIR") or "", native)
            artifacts = scenarios.DeployedArtifacts(
                td["DEPLOY_DIR_IMAGE"], workdir,
                tool_dirs=[native, os.path.join(td.get("WORKDIR") or "", "recipe-sysroot-native", "usr", "bin")])
            try:
                session = scenarios.Session(OeqaTarget(self.target), profile, artifacts, say=self.logger.info)
                session.start()
                cls._session = session
            except scenarios.Unavailable as e:
                cls._session_error = str(e)
        if cls._session_error is not None:
            self.skipTest(cls._session_error)
        return cls._session

    def run_scenario(self, key):
        outcome = scenarios.run(self.session(), key)
        if outcome.skipped is not None:
            self.skipTest(outcome.skipped)
        self.assertTrue(outcome.ok, "scenario %s failed:\n%s" % (key, outcome.failures()))

    @OETestDepends(["ssh.SSHTest.test_ssh"])
    def test_rootfs_provides_listed(self):
        """Outcome 1: show-provides lists MENDER_ARTIFACT_PROVIDES and MENDER_ARTIFACT_NAME."""
        self.run_scenario("rootfs_provides")

    @OETestDepends(["ssh.SSHTest.test_ssh"])
    @OEHasPackage(["persistent-app-update-module"])
    @OETimeout(1800)
    def test_persistent_app_survives_os_update(self):
        """Outcome 2: demo-app 1.0 then 2.0 (with a rollback), data-partition.demo-app.* kept
        through an update that clears rootfs-image.*."""
        self.run_scenario("persistent_app")

    @OETestDepends(["ssh.SSHTest.test_ssh"])
    @OETimeout(1800)
    def test_unmet_depends_refused(self):
        """Outcome 3: rootfs-image.cuda.version:11.8 missing, refused, nothing modified."""
        self.run_scenario("unmet_depends")

    @OETestDepends(["ssh.SSHTest.test_ssh"])
    @OEHasPackage(["docker-update-module"])
    @OEHasPackage(["docker-moby"])
    @OETimeout(3600)
    def test_container_stack_inline(self):
        """The container domain: an inline docker-stack artifact runs under /data/docker."""
        self.run_scenario("containers")
