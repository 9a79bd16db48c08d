# nooelint: oelint.var.bbclassextend - a device-side Update Module; the host side is persistent-app-artifact-gen
SUMMARY = "Mender Update Module for persistent applications under /data/apps"
DESCRIPTION = "Installs an application tree to /data/apps/<name> from a \
               persistent-app artifact: streamed into a staging directory, \
               swapped in atomically, the previous version kept until commit, \
               crash-safe rollback. Versions live in data-partition.<name>.* \
               and survive rootfs updates."
# LICENSE, LIC_FILES_CHKSUM: every crate the binaries link (scripts/update-crates-inc)
require ${BPN}-licenses.inc

require recipes-mender/mender-composable/mender-composable-rust.inc
require ${BPN}-crates.inc

SRC_URI += "file://persistent-app-recover.service"

inherit systemd

# At boot, before the client: puts back what a power cut inside
# ArtifactInstall left half done (the module's README, "Power cuts").
SYSTEMD_SERVICE:${PN} = "persistent-app-recover.service"

CARGO_PACKAGE = "persistent-app"

do_install() {
    install -d ${D}${datadir}/mender/modules/v3
    install -m 0755 ${CARGO_BUILD_DIR}/persistent-app ${D}${datadir}/mender/modules/v3/persistent-app
    if ${@bb.utils.contains('DISTRO_FEATURES', 'systemd', 'true', 'false', d)}; then
        install -d ${D}${systemd_system_unitdir}
        install -m 0644 ${WORKDIR}/persistent-app-recover.service ${D}${systemd_system_unitdir}/persistent-app-recover.service
    fi
}

FILES:${PN} += "${datadir}/mender/modules/v3/persistent-app"
