# Docker's data-root on the data partition (/data/docker), so images and
# container state survive rootfs updates. Only where the distro opts in with
# DISTRO_FEATURES "composable-docker": without it this file includes nothing
# and no task signature of docker-moby changes (meta-virtualization gates its
# linux-%.bbappend the same way).
# nooelint: oelint.file.requireinclude - the include of an empty name is the opt-in gate
include ${@bb.utils.contains('DISTRO_FEATURES', 'composable-docker', 'docker-moby-data-root.inc', '', d)}
