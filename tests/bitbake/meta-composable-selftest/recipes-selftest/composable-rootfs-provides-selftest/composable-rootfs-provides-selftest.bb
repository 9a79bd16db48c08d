SUMMARY = "Runs mender-composable-rootfs-provides' image-time code under BitBake"
DESCRIPTION = "do_selftest has the prefunc the class gives do_image_mender and \
               do_image_bootstrap_artifact, over a recorded image manifest and \
               pkgdata, and prints MENDER_ARTIFACT_PROVIDES as a shell task \
               expands it after the prefunc."
LICENSE = "MIT"
LIC_FILES_CHKSUM = "file://${COMMON_LICENSE_DIR}/MIT;md5=0835ade698e0bcf8506ecda2f7b4f302"

inherit mender-composable-rootfs-provides nopackages

# The demo image's packages, as do_rootfs records them, and their pkgdata.
IMAGE_MANIFEST = "${THISDIR}/files/image.manifest"
PKGDATA_DIR = "${THISDIR}/files/pkgdata"
MENDER_ARTIFACT_PROVIDES ?= "rootfs-image.api.version:2.0"

do_selftest[nostamp] = "1"
do_selftest[prefuncs] += "mender_composable_rootfs_provides"
do_selftest() {
    bbplain "selftest: MENDER_ARTIFACT_PROVIDES=${MENDER_ARTIFACT_PROVIDES}"
}
addtask selftest
