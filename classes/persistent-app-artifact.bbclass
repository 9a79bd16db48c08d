# nooelint: oelint.bbclass.underscores - no EXPORT_FUNCTIONS here; named like meta-mender's classes (mender-full)
# Builds a persistent-app Mender artifact from a recipe: the files and
# directories in PERSISTENT_APP_PAYLOAD become an artifact for the
# persistent-app Update Module, which installs them under PERSISTENT_APP_DEST
# on the device and reports data-partition.<PERSISTENT_APP_NAME>.version.
# A directory's contents land below the destination; a file lands by its name.
#
# do_deploy runs persistent-app-artifact-gen (native, with mender-artifact)
# and puts ${PERSISTENT_APP_ARTIFACT} into ${DEPLOY_DIR_IMAGE}. BitBake
# exports SOURCE_DATE_EPOCH to the task and the generator clamps every mtime
# to it, so the artifact is reproducible. Example:
#
#   SRC_URI = "file://app;subdir=${BP}"
#   inherit persistent-app-artifact
#   PERSISTENT_APP_EXTRA_ARGS = "--depends rootfs-image.feature.persistent-app:true"
#
# A recipe that only makes an artifact can also inherit nopackages.

# Software name: the device's data-partition.<name>.* namespace; it also
# names the app's journal entry on the device.
PERSISTENT_APP_NAME ?= "${BPN}"
PERSISTENT_APP_VERSION ?= "${PV}"
# Where the module installs the tree; the module accepts only destinations
# strictly below its allowed roots (/data/apps by default).
PERSISTENT_APP_DEST ?= "/data/apps/${PERSISTENT_APP_NAME}"
# Space-separated files and directories to pack.
PERSISTENT_APP_PAYLOAD ?= "${S}/app"
# systemd unit stopped before the new tree is swapped in and started after.
PERSISTENT_APP_SERVICE ?= ""
# Device types the artifact is for: those of the image's rootfs artifact.
PERSISTENT_APP_DEVICE_TYPES ?= "${@d.getVar('MENDER_DEVICE_TYPES_COMPATIBLE') or d.getVar('MENDER_DEVICE_TYPE') or ''}"
PERSISTENT_APP_ARTIFACT_NAME ?= "${PERSISTENT_APP_NAME}-${PERSISTENT_APP_VERSION}"
# File name in DEPLOY_DIR_IMAGE.
PERSISTENT_APP_ARTIFACT ?= "${PERSISTENT_APP_ARTIFACT_NAME}.mender"
# Signed like the rootfs artifact when meta-mender signs that one.
PERSISTENT_APP_SIGNING_KEY ?= "${@d.getVar('MENDER_ARTIFACT_SIGNING_KEY') or ''}"
# Passed to mender-artifact after "--", e.g. --depends, --provides, --script.
PERSISTENT_APP_EXTRA_ARGS ?= ""

inherit deploy

# The artifact names device types, which differ between machines.
PACKAGE_ARCH = "${MACHINE_ARCH}"

persistent_app_artifact_write[doc] = "Writes the persistent-app artifact to the path given as first argument"
persistent_app_artifact_write() {
    out="$1"
    if [ -z "${PERSISTENT_APP_DEVICE_TYPES}" ]; then
        bbfatal "PERSISTENT_APP_DEVICE_TYPES is empty: inherit mender-full (it sets MENDER_DEVICE_TYPES_COMPATIBLE) or set PERSISTENT_APP_DEVICE_TYPES to the device types the artifact is for"
    fi
    set --
    for type in ${PERSISTENT_APP_DEVICE_TYPES}; do
        set -- "$@" -t "$type"
    done
    if [ -n "${PERSISTENT_APP_SERVICE}" ]; then
        set -- "$@" --service "${PERSISTENT_APP_SERVICE}"
    fi
    if [ -z "${PERSISTENT_APP_PAYLOAD}" ]; then
        bbfatal "PERSISTENT_APP_PAYLOAD is empty: name the files and directories of the app"
    fi
    for payload in ${PERSISTENT_APP_PAYLOAD}; do
        if [ ! -e "$payload" ]; then
            bbfatal "PERSISTENT_APP_PAYLOAD names $payload, which does not exist; point it at the app's files and directories"
        fi
        set -- "$@" "$payload"
    done
    if [ -n "${PERSISTENT_APP_SIGNING_KEY}" ]; then
        set -- "$@" -- -k "${PERSISTENT_APP_SIGNING_KEY}" ${PERSISTENT_APP_EXTRA_ARGS}
    elif [ -n "${PERSISTENT_APP_EXTRA_ARGS}" ]; then
        set -- "$@" -- ${PERSISTENT_APP_EXTRA_ARGS}
    fi
    persistent-app-artifact-gen \
        -n "${PERSISTENT_APP_ARTIFACT_NAME}" \
        -d "${PERSISTENT_APP_DEST}" \
        --software-name "${PERSISTENT_APP_NAME}" \
        --software-version "${PERSISTENT_APP_VERSION}" \
        -o "$out" \
        "$@"
}

do_deploy[doc] = "Writes ${PERSISTENT_APP_ARTIFACT} and deploys it to DEPLOY_DIR_IMAGE"
do_deploy() {
    persistent_app_artifact_write "${DEPLOYDIR}/${PERSISTENT_APP_ARTIFACT}"
}
do_deploy[depends] += "persistent-app-artifact-gen-native:do_populate_sysroot mender-artifact-native:do_populate_sysroot"
addtask deploy after do_install before do_build
