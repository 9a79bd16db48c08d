# nooelint: oelint.var.bbclassextend,oelint.var.mandatoryvar.SRC_URI - makes a device artifact (no native or SDK variant) from another recipe's image (nothing to fetch)
SUMMARY = "Demo container stack for the docker Update Module, its image inline"
DESCRIPTION = "A docker artifact for the stack demo-stack: one container, \
               demo-heartbeat, running composable-demo-container, an OCI image \
               this build makes. The image travels in the artifact, so the \
               device needs no registry; it then reports \
               data-partition.demo-stack.version=${PV}."
# nooelint: oelint.vars.homepageping - checked by hand; CI has no network to ping it
HOMEPAGE = "https://github.com/meta-mender-composable/meta-mender-composable"
BUGTRACKER = "https://github.com/meta-mender-composable/meta-mender-composable/issues"
SECTION = "examples"
LICENSE = "MIT"
# nooelint: oelint.var.licenseremotefile - the demo files are part of this layer, under its MIT licence
LIC_FILES_CHKSUM = "file://${COMMON_LICENSE_DIR}/MIT;md5=0835ade698e0bcf8506ecda2f7b4f302"

inherit docker-artifact nopackages

# A demo of this layer, not an upstream product: nothing to match against CVEs.
CVE_PRODUCT = ""

# demo-stack-1.0.mender: stack demo-stack (the default, BPN), version 1.0.
DOCKER_ARTIFACT_OCI_IMAGES = "composable-demo-container"
# No network: the heartbeat needs none, and the demo then works without
# the engine's bridge and NAT rules.
DOCKER_ARTIFACT_RUN_ARGS = "--name demo-heartbeat --restart unless-stopped --network none"
# Only OS images with Docker (the reference setup's provides) accept it.
DOCKER_ARTIFACT_DEPENDS = "rootfs-image.feature.docker:true"
