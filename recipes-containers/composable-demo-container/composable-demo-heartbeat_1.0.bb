# nooelint: oelint.var.bbclassextend - the process of a demo container image; no native or SDK variant
SUMMARY = "The long-running process of the demo container"
DESCRIPTION = "A shell script that prints a numbered heartbeat line every ten \
               seconds and ends at once on SIGTERM, so that the docker Update \
               Module's stop and rollback of the demo stack are quick. It is \
               the entrypoint of composable-demo-container."
# nooelint: oelint.vars.homepageping - checked by hand; CI has no network to ping it
HOMEPAGE = "https://github.com/meta-mender-composable/meta-mender-composable"
BUGTRACKER = "https://github.com/meta-mender-composable/meta-mender-composable/issues"
SECTION = "examples"
LICENSE = "MIT"
# nooelint: oelint.var.licenseremotefile - the demo files are part of this layer, under its MIT licence
LIC_FILES_CHKSUM = "file://${COMMON_LICENSE_DIR}/MIT;md5=0835ade698e0bcf8506ecda2f7b4f302"

SRC_URI = "file://composable-demo-heartbeat;subdir=${BP}"

inherit allarch

# A demo of this layer, not an upstream product: nothing to match against CVEs.
CVE_PRODUCT = ""

do_install() {
    install -d ${D}${bindir}
    install -m 0755 ${S}/composable-demo-heartbeat ${D}${bindir}/composable-demo-heartbeat
}
