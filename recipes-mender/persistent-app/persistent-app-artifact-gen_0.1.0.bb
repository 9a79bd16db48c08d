SUMMARY = "Generator of persistent-app Mender artifacts"
DESCRIPTION = "persistent-app-artifact-gen packs files and directories into a \
               Mender artifact for the persistent-app Update Module (format 3, \
               data-partition provides, reproducible with SOURCE_DATE_EPOCH)."
# LICENSE, LIC_FILES_CHKSUM: every crate the binaries link (scripts/update-crates-inc)
require ${BPN}-licenses.inc

require recipes-mender/mender-composable/mender-composable-rust.inc
require ${BPN}-crates.inc

CARGO_PACKAGE = "persistent-app-gen"

do_install() {
    install -d ${D}${bindir}
    install -m 0755 ${CARGO_BUILD_DIR}/persistent-app-artifact-gen ${D}${bindir}/persistent-app-artifact-gen
}

RDEPENDS:${PN} = "mender-artifact"

BBCLASSEXTEND = "native nativesdk"
