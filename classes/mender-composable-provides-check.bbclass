# nooelint: oelint.bbclass.underscores - no EXPORT_FUNCTIONS here; named like meta-mender's classes (mender-full)
# Refuses an image whose MENDER_ARTIFACT_PROVIDES would make a wrong rootfs
# artifact: entries that are not key:value, keys that are not dot-separated
# words, values meta-mender's shell would mangle, keys given twice (also across
# MENDER_ARTIFACT_PROVIDES_BOOTSTRAP), keys mender-artifact or meta-mender set
# themselves, and capabilities outside rootfs-image.* -- data-partition.* in
# particular, which belongs to the persistent-app and docker artifacts.
#
# Enable it in an image recipe (inherit mender-composable-provides-check) or
# for every image of a build (INHERIT += "mender-composable-provides-check").
# It acts only in image recipes, sets no variable and adds no task, so no task
# signature changes.
#
# The check runs at parse time: the value an image's IMAGE_CMD:mender will
# expand is final once the recipe is parsed, and a mistake then stops the
# build within seconds, with one line per bad entry, instead of after the
# rootfs has been built. The rules live in lib/mender_composable/provides.py.

# nooelint: oelint.task.noanonpython - the check must run at parse time (see above); it returns at once outside images
python () {
    if not bb.data.inherits_class('image', d):
        return
    problems = mender_composable.provides.rootfs_provides_problems(
        d.getVar('MENDER_ARTIFACT_PROVIDES') or '',
        d.getVar('MENDER_ARTIFACT_PROVIDES_BOOTSTRAP') or '')
    if problems:
        bb.fatal('\n'.join(problems))
}
