# nooelint: oelint.var.bbclassextend - makes a device artifact; no native or SDK variant
SUMMARY = "Demo artifact that depends on a capability the demo OS lacks"
DESCRIPTION = "A trivial persistent app whose artifact depends on \
               rootfs-image.cuda.version:11.8. The demo image does not provide \
               it, so the Mender client must refuse the artifact before \
               installing anything."
# nooelint: oelint.vars.homepageping - checked by hand; CI has no network to ping it
HOMEPAGE = "https://github.com/meta-mender-composable/meta-mender-composable"
BUGTRACKER = "https://github.com/meta-mender-composable/meta-mender-composable/issues"
SECTION = "examples"
LICENSE = "MIT"
# nooelint: oelint.var.licenseremotefile - the demo files are part of this layer, under its MIT licence
LIC_FILES_CHKSUM = "file://${COMMON_LICENSE_DIR}/MIT;md5=0835ade698e0bcf8506ecda2f7b4f302"

SRC_URI = "file://app;subdir=${BP}"

inherit persistent-app-artifact nopackages

# A demo of this layer, not an upstream product: nothing to match against CVEs.
CVE_PRODUCT = ""

PERSISTENT_APP_NAME = "cuda-demo"
PERSISTENT_APP_ARTIFACT = "cuda-depends.mender"
PERSISTENT_APP_EXTRA_ARGS = "--depends rootfs-image.cuda.version:11.8"
