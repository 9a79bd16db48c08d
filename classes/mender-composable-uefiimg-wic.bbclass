# nooelint: oelint.bbclass.underscores - no EXPORT_FUNCTIONS here; named like meta-mender's classes (mender-full)
# Names a Mender .uefiimg also <image>.wic, so that testimage and runqemu,
# which boot ext4, wic and cpio images only, can boot the whole Mender disk
# (GPT, ESP with GRUB, rootfs A/B, data) the way they boot a wic disk image:
# with QB_DEFAULT_FSTYPE = "wic", QEMU_USE_OVMF = "1" and QB_DRIVE_TYPE =
# "/dev/sd" (the image's GRUB and fstab expect /dev/sda), as in
# kas/qemux86-64-testimage.yml.
#
# Enable it with IMAGE_CLASSES += "mender-composable-uefiimg-wic". It acts only
# on images that build a uefiimg (mender-full on qemux86-64) and adds two
# symlinks to their do_image_uefiimg output.

# nooelint: oelint.task.noanonpython - only the finished IMAGE_FSTYPES tells whether the image makes a uefiimg
python () {
    fstypes = (d.getVar('IMAGE_FSTYPES') or '').split()
    if 'uefiimg' not in fstypes:
        return
    if 'wic' in fstypes:
        bb.fatal("mender-composable-uefiimg-wic: IMAGE_FSTYPES has both uefiimg and wic, and this class "
                 "names the uefiimg <image>.wic; remove wic from IMAGE_FSTYPES or the class from IMAGE_CLASSES")
    d.appendVarFlag('do_image_uefiimg', 'postfuncs', ' mender_composable_uefiimg_as_wic')
}

mender_composable_uefiimg_as_wic[doc] = "Links <image>.wic to the uefiimg (postfunc of do_image_uefiimg)"
mender_composable_uefiimg_as_wic() {
    ln -sf ${IMAGE_NAME}.uefiimg ${IMGDEPLOYDIR}/${IMAGE_NAME}.wic
    if [ "${IMAGE_LINK_NAME}" != "${IMAGE_NAME}" ]; then
        ln -sf ${IMAGE_NAME}.wic ${IMGDEPLOYDIR}/${IMAGE_LINK_NAME}.wic
    fi
}
