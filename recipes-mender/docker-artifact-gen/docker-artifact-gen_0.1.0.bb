SUMMARY = "Generator of Mender artifacts for the docker Update Module"
DESCRIPTION = "docker-artifact-gen: drop-in for the old generator's command \
               line that pins images by digest through the local engine, \
               accepts a docker-stack spec and defaults the provides to \
               data-partition.<stack>.* so OS updates do not clear them."
# LICENSE, LIC_FILES_CHKSUM: every crate the binaries link (scripts/update-crates-inc)
require ${BPN}-licenses.inc

require recipes-mender/mender-composable/mender-composable-rust.inc
require ${BPN}-crates.inc

CARGO_PACKAGE = "docker-artifact-gen"

do_install() {
    install -d ${D}${bindir}
    install -m 0755 ${CARGO_BUILD_DIR}/docker-artifact-gen ${D}${bindir}/docker-artifact-gen
}

RDEPENDS:${PN} = "mender-artifact"

BBCLASSEXTEND = "native nativesdk"
