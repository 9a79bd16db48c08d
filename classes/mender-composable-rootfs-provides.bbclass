# nooelint: oelint.bbclass.underscores - no EXPORT_FUNCTIONS here; named like meta-mender's classes (mender-full)
# Provides that cannot lie: derives rootfs-image.* provides from the packages
# an image really installs, and puts them into the rootfs artifact and the
# bootstrap artifact (which seeds a new device's provides).
#
# COMPOSABLE_ROOTFS_PROVIDES_MAP holds rules PACKAGE=KEY:VALUE. When the image
# installs PACKAGE, its artifacts provide KEY:VALUE; VALUE is fixed ("true")
# or a template of the package's version: {version}, {major}, {minor},
# {patch}. Entries of MENDER_ARTIFACT_PROVIDES for keys no rule derives pass
# through as written. One for a derived key must agree with the image, or
# the build stops naming both values:
#   - at parse time when it contradicts a fixed value (feature.docker:false);
#   - at image time otherwise (python.version:3.11 in an image with 3.12,
#     or any derived key whose package the image lacks).
#
# Enable it for every image of a build (INHERIT += "mender-composable-rootfs-provides",
# as kas/qemux86-64.yml does) or in an image recipe. It acts only in image
# recipes with meta-mender's mender and bootstrap-artifact image types. The
# rules live in lib/mender_composable/rootfs_provides.py.
#
# How the value reaches the artifacts: image.bbclass expands IMAGE_CMD:mender
# and IMAGE_CMD:bootstrap-artifact when it parses the image, before any
# package is built. This class keeps ${MENDER_ARTIFACT_PROVIDES} unexpanded
# there (vardepsexclude, which also takes the variable out of the tasks'
# signatures; COMPOSABLE_ROOTFS_PROVIDES_INPUTS puts it back), and a prefunc
# of both tasks sets it from the image's package manifest and pkgdata just
# before they run.

COMPOSABLE_ROOTFS_PROVIDES_MAP ?= "\
    python3=rootfs-image.python.version:{major}.{minor} \
    docker-moby=rootfs-image.feature.docker:true \
    persistent-app-update-module=rootfs-image.feature.persistent-app:true \
"

# What the derived provides depend on besides the packages themselves (whose
# changes reach the image tasks through do_rootfs).
# nooelint: oelint.vars.mispell.unknown - this class's own variable, named in the tasks' vardeps below
COMPOSABLE_ROOTFS_PROVIDES_INPUTS = "${MENDER_ARTIFACT_PROVIDES} ${COMPOSABLE_ROOTFS_PROVIDES_MAP}"

# nooelint: oelint.task.noanonpython - a contradiction that the parse can see stops the build at once
python () {
    if not bb.data.inherits_class('image', d):
        return
    problems = mender_composable.rootfs_provides.parse_time_problems(
        d.getVar('COMPOSABLE_ROOTFS_PROVIDES_MAP'), d.getVar('MENDER_ARTIFACT_PROVIDES'))
    if problems:
        bb.fatal('\n'.join(problems))
}

# nooelint: oelint.vars.mispell.unknown - flags of meta-mender's image commands and of the tasks image.bbclass makes from them
IMAGE_CMD:mender[vardepsexclude] += "MENDER_ARTIFACT_PROVIDES"
# nooelint: oelint.vars.mispell.unknown - see above
IMAGE_CMD:bootstrap-artifact[vardepsexclude] += "MENDER_ARTIFACT_PROVIDES"
# nooelint: oelint.vars.mispell.unknown - image.bbclass makes this task from IMAGE_CMD:mender
do_image_mender[prefuncs] += "mender_composable_rootfs_provides"
# nooelint: oelint.vars.mispell.unknown - see above
do_image_mender[vardeps] += "COMPOSABLE_ROOTFS_PROVIDES_INPUTS"
# nooelint: oelint.vars.mispell.unknown - image.bbclass makes this task from IMAGE_CMD:bootstrap-artifact
do_image_bootstrap_artifact[prefuncs] += "mender_composable_rootfs_provides"
# nooelint: oelint.vars.mispell.unknown - see above
do_image_bootstrap_artifact[vardeps] += "COMPOSABLE_ROOTFS_PROVIDES_INPUTS"

mender_composable_rootfs_provides[doc] = "Sets MENDER_ARTIFACT_PROVIDES from the image's packages (prefunc of the mender image types)"
python mender_composable_rootfs_provides() {
    rp = mender_composable.rootfs_provides
    rules, problems = rp.parse_map(d.getVar('COMPOSABLE_ROOTFS_PROVIDES_MAP'))
    if problems:
        bb.fatal('\n'.join(problems))
    manifest_path = d.getVar('IMAGE_MANIFEST')
    if not os.path.exists(manifest_path):
        # The link do_rootfs makes beside it, in case IMAGE_NAME's date moved on since.
        manifest_path = os.path.join(d.getVar('IMGDEPLOYDIR'), d.getVar('IMAGE_LINK_NAME') + '.manifest')
    try:
        with open(manifest_path) as f:
            manifest = rp.parse_manifest(f.read())
    except OSError as e:
        bb.fatal("mender-composable-rootfs-provides: cannot read the image's package manifest %s "
                 "(do_rootfs writes it): %s" % (manifest_path, e))
    pkgdata = {}
    for rule in rules:
        path = os.path.join(d.getVar('PKGDATA_DIR'), 'runtime', rule.package)
        if os.path.exists(path):
            with open(path) as f:
                pkgdata[rule.package] = f.read()
    installed = rp.installed_packages(rules, manifest, pkgdata)
    provides, problems = rp.reconcile(d.getVar('MENDER_ARTIFACT_PROVIDES') or '', rules, installed)
    if problems:
        bb.fatal('\n'.join(problems))
    bb.note("MENDER_ARTIFACT_PROVIDES from the image's packages (%s): %s"
            % (', '.join('%s %s' % (p, v) for p, v in sorted(installed.items())) or 'none mapped', provides))
    d.setVar('MENDER_ARTIFACT_PROVIDES', provides)
}
