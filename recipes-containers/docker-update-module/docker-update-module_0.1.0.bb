# nooelint: oelint.var.bbclassextend - a device-side Update Module needing a Docker engine on the device
SUMMARY = "Mender Update Module for Docker container stacks"
DESCRIPTION = "Deploys container stacks from Mender artifacts: images pulled \
               by digest before anything stops, only the stack's own \
               containers switched, a health gate, rollback to the exact \
               previous set and a journal on /data for power cuts. Accepts \
               the old docker module's metadata and a richer per-container \
               spec; versions live in data-partition.<stack>.*."
# LICENSE, LIC_FILES_CHKSUM: every crate the binaries link (scripts/update-crates-inc)
require ${BPN}-licenses.inc

require recipes-mender/mender-composable/mender-composable-rust.inc
require ${BPN}-crates.inc

SRC_URI += "file://mender-docker-recover.service"

inherit systemd

# At boot, before the client: puts back what a power cut inside
# ArtifactInstall left half done (the module's README, "Power cuts").
SYSTEMD_SERVICE:${PN} = "mender-docker-recover.service"

CARGO_PACKAGE = "docker-module"

do_install() {
    install -d ${D}${datadir}/mender/modules/v3
    install -m 0755 ${CARGO_BUILD_DIR}/mender-docker-module ${D}${datadir}/mender/modules/v3/docker
    # Inventory: managed stacks, versions, containers, image digests and states.
    install -d ${D}${datadir}/mender/inventory
    install -m 0755 ${CARGO_BUILD_DIR}/mender-inventory-docker ${D}${datadir}/mender/inventory/mender-inventory-docker
    if ${@bb.utils.contains('DISTRO_FEATURES', 'systemd', 'true', 'false', d)}; then
        install -d ${D}${systemd_system_unitdir}
        install -m 0644 ${WORKDIR}/mender-docker-recover.service ${D}${systemd_system_unitdir}/mender-docker-recover.service
    fi
}

FILES:${PN} += "${datadir}/mender/modules/v3/docker ${datadir}/mender/inventory/mender-inventory-docker"

# The module drives the engine over its socket; without dockerd it can only fail.
# "docker" is what docker-moby (and docker-ce) RPROVIDE.
# A Mender 4.x client with PACKAGECONFIG "modules" ships its own shell module at
# the same path: the image build then stops with a file conflict; see README.md
# ("A 4.x client's docker module") for the one-line fix.
RDEPENDS:${PN} = "docker"
