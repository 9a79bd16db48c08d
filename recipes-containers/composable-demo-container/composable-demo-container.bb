# nooelint: oelint.var.suggestedvar.CVE_PRODUCT,oelint.var.suggestedvar.SECTION - an image: no upstream product, no package section
SUMMARY = "Demo container image of the docker Update Module, built as an OCI image"
DESCRIPTION = "busybox and a heartbeat script as an OCI image (meta-virtualization's \
               image-oci class). demo-stack carries it inline in a docker \
               artifact, so the demo device runs a container without a registry."
# nooelint: oelint.vars.homepageping - checked by hand; CI has no network to ping it
HOMEPAGE = "https://github.com/meta-mender-composable/meta-mender-composable"
BUGTRACKER = "https://github.com/meta-mender-composable/meta-mender-composable/issues"
LICENSE = "MIT"

IMAGE_FSTYPES = "container oci"

inherit image image-oci

IMAGE_FEATURES = ""
IMAGE_LINGUAS = ""
NO_RECOMMENDATIONS = "1"
IMAGE_INSTALL = "base-files base-passwd busybox composable-demo-heartbeat"

# mender-full adds the Mender client to every image, and an fstab entry for
# /data and the state-script version file to its rootfs; a container needs none.
IMAGE_INSTALL:remove = "mender-update mender-auth"
ROOTFS_POSTPROCESS_COMMAND:remove = "mender_update_fstab_file mender_create_scripts_version_file"

# Built in the device's own configuration, whose kernel is a real one: the
# container's rootfs installs no kernel, so linux-dummy is not needed (as in
# meta-virtualization's app-container).
# nooelint: oelint.vars.mispell.unknown - poky's image-container class reads it
IMAGE_CONTAINER_NO_DUMMY = "1"

# image-oci deploys composable-demo-container-latest-oci.tar (the tarred OCI
# layout) and the docker-artifact class reads it under that name.
# nooelint: oelint.vars.mispell.unknown - meta-virtualization's image-oci class reads it
OCI_IMAGE_TAG = "latest"
# nooelint: oelint.vars.mispell.unknown - meta-virtualization's image-oci class reads it
OCI_IMAGE_ENTRYPOINT = "${bindir}/composable-demo-heartbeat"

# A container rootfs does not boot: no testimage run after it, even where
# the configuration sets TESTIMAGE_AUTO for the device image.
TESTIMAGE_AUTO = "0"
