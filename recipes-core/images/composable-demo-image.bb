# nooelint: oelint.var.suggestedvar.CVE_PRODUCT,oelint.var.suggestedvar.SECTION - an image: no upstream product, no package section
SUMMARY = "Demo image of composable Mender updates: rootfs, persistent apps, containers"
DESCRIPTION = "A minimal Mender image with docker-moby (data-root on /data/docker) \
               and the persistent-app Update Module, for the three update \
               domains: the rootfs A/B, apps under /data/apps, containers. \
               Built for qemux86-64 by kas/qemux86-64.yml; it needs \
               INHERIT += \"mender-full\" and the distro features systemd, \
               virtualization and composable-docker."
# nooelint: oelint.vars.homepageping - checked by hand; CI has no network to ping it
HOMEPAGE = "https://github.com/meta-mender-composable/meta-mender-composable"
BUGTRACKER = "https://github.com/meta-mender-composable/meta-mender-composable/issues"
LICENSE = "MIT"

inherit core-image features_check mender-composable-provides-check

# Without composable-docker, Docker would keep images and containers in the
# rootfs, which every OS update replaces.
REQUIRED_DISTRO_FEATURES = "systemd virtualization composable-docker"

# The Mender client (mender-update, mender-auth) comes with mender-full.
IMAGE_INSTALL = "\
    packagegroup-core-boot \
    docker-moby \
    ${COMPOSABLE_DOCKER_KERNEL_MODULES} \
    persistent-app-update-module \
    docker-update-module \
    python3 \
    ${CORE_IMAGE_EXTRA_INSTALL} \
"

# python3: the reference configuration states rootfs-image.python.version:3.12,
# which mender-composable-rootfs-provides holds against the image (scarthgap
# ships python3 3.12).

# The kernel modules dockerd needs for its defaults (bridge network with
# iptables NAT, published ports, overlay2) where qemux86-64's linux-yocto 6.6
# builds them as modules (=m) with DISTRO_FEATURES virtualization; veth,
# bridge, br_netfilter, overlay and nf_conntrack are built in there. They
# arrive today only as recommendations of docker-moby and iptables, which
# NO_RECOMMENDATIONS or BAD_RECOMMENDATIONS drop silently; dockerd then fails
# to set up its bridge network. Their dependencies (ip_tables, x_tables,
# nf_nat) come with them. README.md, "Kernel modules for Docker", has the
# derivation; another kernel needs its own list.
COMPOSABLE_DOCKER_KERNEL_MODULES = ""
COMPOSABLE_DOCKER_KERNEL_MODULES:qemux86-64 = "\
    kernel-module-iptable-filter \
    kernel-module-iptable-nat \
    kernel-module-nf-conntrack-netlink \
    kernel-module-xt-addrtype \
    kernel-module-xt-conntrack \
    kernel-module-xt-masquerade \
    kernel-module-xt-nat \
    kernel-module-xt-tcpudp \
"

# testimage and the demo log in over ssh.
IMAGE_FEATURES += "ssh-server-openssh"

IMAGE_LINGUAS = ""

# No IMAGE_ROOTFS_SIZE: meta-mender sizes the rootfs to its partition, from
# MENDER_STORAGE_TOTAL_SIZE_MB and MENDER_DATA_PART_SIZE_MB (kas/qemux86-64.yml:
# about 2 GB each for rootfs A and B, enough for docker-moby).

# Building the image also deploys the artifacts its runtime tests install
# (demo-app-1.0.mender, demo-app-2.0.mender, cuda-depends.mender, and
# demo-stack-1.0.mender and demo-stack-2.0.mender with the
# composable-demo-container image inline).
# They are artifacts, not packages: task dependencies, not IMAGE_INSTALL.
COMPOSABLE_DEMO_ARTIFACTS = "demo-app-v1:do_deploy demo-app-v2:do_deploy cuda-depends-artifact:do_deploy \
                             demo-stack-v1:do_deploy demo-stack-v2:do_deploy"
do_build[depends] += "${COMPOSABLE_DEMO_ARTIFACTS}"

# do_testimage runs after whatever its own dependencies name, and nothing
# else: the image may come from sstate, with rm_work, or into a fresh TMPDIR.
# So it names everything the runtime tests use besides the image:
# - the demo artifacts the scenarios install;
# - mender-artifact, which writes the OS stand-in artifacts: a populate_sysroot
#   dependency makes do_testimage stage it into this recipe's native sysroot
#   (staging.bbclass gives such tasks extend_recipe_sysroot), where the case
#   looks for it;
# - OVMF's firmware (ovmf.qcow2 in DEPLOY_DIR_IMAGE), which runqemu needs to
#   boot the uefiimg when QEMU_USE_OVMF is set; do_build brings it only
#   through its recursive dependencies, which do_testimage does not wait for.
do_testimage[depends] += "${COMPOSABLE_DEMO_ARTIFACTS} mender-artifact-native:do_populate_sysroot \
                          ${@'ovmf:do_deploy' if d.getVar('QEMU_USE_OVMF') == '1' else ''}"
