# nooelint: oelint.bbclass.underscores - no EXPORT_FUNCTIONS here; named like meta-mender's classes (mender-full)
# Builds a Mender artifact for the docker Update Module from a recipe, with
# the container images inside it: OCI images that this build makes with
# meta-virtualization's image-oci class travel in the artifact as payloads,
# so the device loads them without a registry. The stack's version lands in
# data-partition.<DOCKER_ARTIFACT_STACK>.version, which OS updates keep.
#
# do_deploy runs docker-artifact-gen (native, with mender-artifact) with
# --inline and puts ${DOCKER_ARTIFACT} into ${DEPLOY_DIR_IMAGE}. No Docker
# Engine is involved: every image of the stack is an OCI archive built by
# this build.
#
# Reproducibility. What this class and the generator write is reproducible:
# BitBake exports SOURCE_DATE_EPOCH to the task, and docker-artifact-gen
# rewrites each OCI archive as a normalised tar (members sorted, every mtime
# SOURCE_DATE_EPOCH, owner 0:0 without names, fixed modes, only the blobs
# index.json reaches) around byte-for-byte copies of the blobs, so the same
# OCI image gives a byte-identical artifact however the archive was tarred.
# The images themselves are not reproducible in scarthgap, and the
# generator cannot change that without changing what the engine verifies:
# - the image config: image-oci-umoci.inc runs `umoci new`, `umoci repack`
#   and `umoci config` without --created/--history.created, and umoci
#   ignores SOURCE_DATE_EPOCH, so the config's "created" and each "history"
#   entry hold the build's wall-clock time; the image ID is the config's
#   digest;
# - the layer: its "." entry (the bundle's rootfs directory, recreated by
#   `cp -r -a`) carries a wall-clock mtime, and the engine checks each layer
#   against its diff ID in the config.
# Two builds of one image recipe therefore give two image IDs, and two
# artifacts that differ in those blobs and in the meta-data naming them.
#
# Examples:
#
#   # One container per image; options as for the old generator's run_args.
#   inherit docker-artifact nopackages
#   DOCKER_ARTIFACT_OCI_IMAGES = "my-container"
#   DOCKER_ARTIFACT_RUN_ARGS = "--name web --restart unless-stopped -p 8080:80"
#
#   # A docker-stack file (rust/docker-spec/FORMAT.md) naming the archives
#   # as "image": "oci-archive:@my-container@".
#   SRC_URI = "file://stack.json"
#   inherit docker-artifact nopackages
#   DOCKER_ARTIFACT_OCI_IMAGES = "my-container"
#   DOCKER_ARTIFACT_SPEC = "${WORKDIR}/stack.json"
#
# An image recipe for DOCKER_ARTIFACT_OCI_IMAGES inherits image and image-oci
# with IMAGE_FSTYPES = "container oci" (see
# recipes-containers/composable-demo-container).

# The stack: the device's data-partition.<stack>.* namespace, and the stack
# the module deploys (a --spec file's "stack" must be the same).
DOCKER_ARTIFACT_STACK ?= "${BPN}"
DOCKER_ARTIFACT_VERSION ?= "${PV}"
DOCKER_ARTIFACT_NAME ?= "${DOCKER_ARTIFACT_STACK}-${DOCKER_ARTIFACT_VERSION}"
# File name in DEPLOY_DIR_IMAGE.
DOCKER_ARTIFACT ?= "${DOCKER_ARTIFACT_NAME}.mender"
# Device types the artifact is for: those of the image's rootfs artifact.
DOCKER_ARTIFACT_DEVICE_TYPES ?= "${@d.getVar('MENDER_DEVICE_TYPES_COMPATIBLE') or d.getVar('MENDER_DEVICE_TYPE') or ''}"
# Image recipes (image-oci) whose OCI archives go into the artifact, in
# container order. "mc:<multiconfig>:<recipe>" takes one from another
# multiconfig (then point DOCKER_ARTIFACT_OCI_DEPLOY_DIR at its deploy dir).
DOCKER_ARTIFACT_OCI_IMAGES ?= ""
# The images' OCI_IMAGE_TAG: image-oci links the archive as
# <recipe>-<tag>-oci.tar (":" in the tag becomes "_").
DOCKER_ARTIFACT_OCI_TAG ?= "latest"
DOCKER_ARTIFACT_OCI_DEPLOY_DIR ?= "${DEPLOY_DIR_IMAGE}"
# Without a spec: `docker run` options for every container (the legacy
# run_args rules of rust/docker-spec/FORMAT.md; --name for one image only).
DOCKER_ARTIFACT_RUN_ARGS ?= ""
# A docker-stack file instead of RUN_ARGS; "oci-archive:@<recipe>@" stands
# for the archive of <recipe> from DOCKER_ARTIFACT_OCI_IMAGES.
DOCKER_ARTIFACT_SPEC ?= ""
# key:value capabilities the device must provide, e.g. rootfs-image.feature.docker:true.
DOCKER_ARTIFACT_DEPENDS ?= ""
# Signed like the rootfs artifact when meta-mender signs that one.
DOCKER_ARTIFACT_SIGNING_KEY ?= "${@d.getVar('MENDER_ARTIFACT_SIGNING_KEY') or ''}"
# Passed to mender-artifact after "--" (split like a shell would, unexpanded).
DOCKER_ARTIFACT_EXTRA_ARGS ?= ""
# An earlier release's artifact of this stack (a copy kept outside TMPDIR,
# e.g. from the release server): do_deploy then also writes
# ${DOCKER_ARTIFACT_DELTA}, which carries only the image layers the base
# lacks and depends on the base's data-partition.<stack>.version. The full
# artifact is still written, for devices at any other version.
DOCKER_ARTIFACT_BASE ?= ""
DOCKER_ARTIFACT_DELTA ?= "${DOCKER_ARTIFACT_NAME}-delta.mender"

inherit deploy

# The artifact names device types, which differ between machines.
PACKAGE_ARCH = "${MACHINE_ARCH}"

def docker_artifact_oci_images(d):
    """[(multiconfig, recipe)] of DOCKER_ARTIFACT_OCI_IMAGES; '' is this multiconfig."""
    images = []
    for item in (d.getVar('DOCKER_ARTIFACT_OCI_IMAGES') or '').split():
        parts = item.split(':')
        if len(parts) == 1:
            images.append(('', item))
        elif len(parts) == 3 and parts[0] == 'mc' and parts[1] and parts[2]:
            images.append((parts[1], parts[2]))
        else:
            bb.fatal("DOCKER_ARTIFACT_OCI_IMAGES: '%s' is neither a recipe name nor mc:<multiconfig>:<recipe>" % item)
    return images

def docker_artifact_depends(d):
    """The image tasks of this multiconfig that write the OCI archives."""
    return ' '.join('%s:do_image_complete' % recipe for mc, recipe in docker_artifact_oci_images(d) if not mc)

def docker_artifact_mcdepends(d):
    """The image tasks of other multiconfigs that write the OCI archives."""
    this_mc = d.getVar('BB_CURRENT_MC')
    this_mc = '' if this_mc == 'default' else this_mc
    return ' '.join('mc:%s:%s:%s:do_image_complete' % (this_mc, mc, recipe)
                    for mc, recipe in docker_artifact_oci_images(d) if mc)

def docker_artifact_archive(d, recipe):
    """The OCI archive image-oci deploys for recipe (its stable link)."""
    tag = (d.getVar('DOCKER_ARTIFACT_OCI_TAG') or '').replace(':', '_')
    return os.path.join(d.getVar('DOCKER_ARTIFACT_OCI_DEPLOY_DIR'), '%s-%s-oci.tar' % (recipe, tag))

def docker_artifact_check_depends(d):
    """The --depends entries; stops on a malformed one, warns where this build's images lack one."""
    import re
    provided = {}
    # What mender-composable-rootfs-provides derives with a fixed value counts
    # as provided; a version it derives is only known once the image is built.
    rules, _ = mender_composable.rootfs_provides.parse_map(d.getVar('COMPOSABLE_ROOTFS_PROVIDES_MAP') or '')
    for rule in rules:
        provided[rule.key] = rule.fixed
    for entry in mender_composable.provides.entries(d.getVar('MENDER_ARTIFACT_PROVIDES')):
        key, value = mender_composable.provides.split_entry(entry)
        provided[key] = value
    depends = mender_composable.provides.entries(d.getVar('DOCKER_ARTIFACT_DEPENDS'))
    for entry in depends:
        key, value = mender_composable.provides.split_entry(entry)
        if not value or not re.fullmatch(r'[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*', key):
            bb.fatal("DOCKER_ARTIFACT_DEPENDS: '%s' is not key:value with a key of dot-separated words, "
                     "e.g. 'rootfs-image.feature.docker:true'" % entry)
        if provided and key.startswith('rootfs-image.') and provided.get(key, '') not in (value, None):
            have = "has '%s:%s'" % (key, provided[key]) if key in provided else "lacks '%s'" % key
            bb.warn("DOCKER_ARTIFACT_DEPENDS: '%s': MENDER_ARTIFACT_PROVIDES of this build %s, so devices "
                    "running its images refuse %s" % (entry, have, d.getVar('DOCKER_ARTIFACT')))
    return depends

def docker_artifact_spec(d, images):
    """The spec file with each oci-archive:@<recipe>@ replaced by the archive's path."""
    import json
    import re
    path = d.getVar('DOCKER_ARTIFACT_SPEC')
    if not os.path.isfile(path):
        bb.fatal("DOCKER_ARTIFACT_SPEC names %s, which is not a file; add it to SRC_URI and name it "
                 "under ${WORKDIR}" % path)
    with open(path) as f:
        text = f.read()
    for mc, recipe in images:
        text = text.replace('oci-archive:@%s@' % recipe, 'oci-archive:' + docker_artifact_archive(d, recipe))
    left = re.findall(r'oci-archive:@([^@"]*)@', text)
    if left:
        bb.fatal("DOCKER_ARTIFACT_SPEC: %s names oci-archive:@%s@, but %s is not in DOCKER_ARTIFACT_OCI_IMAGES "
                 "(\"%s\"); add it there so that the build makes it first"
                 % (path, left[0], left[0], d.getVar('DOCKER_ARTIFACT_OCI_IMAGES')))
    try:
        stack = json.loads(text).get('docker-stack', {}).get('stack')
    except ValueError as e:
        bb.fatal("DOCKER_ARTIFACT_SPEC: %s is not valid JSON: %s" % (path, e))
    if stack is not None and stack != d.getVar('DOCKER_ARTIFACT_STACK'):
        bb.fatal("DOCKER_ARTIFACT_SPEC: %s deploys the stack '%s' but DOCKER_ARTIFACT_STACK is '%s'; the device "
                 "would report the version under another name: make them the same" % (path, stack, d.getVar('DOCKER_ARTIFACT_STACK')))
    out = os.path.join(d.getVar('WORKDIR'), 'docker-artifact-spec.json')
    with open(out, 'w') as f:
        f.write(text)
    return out

def docker_artifact_base(d):
    """The base artifact's path, checked, or '' without DOCKER_ARTIFACT_BASE."""
    base = d.getVar('DOCKER_ARTIFACT_BASE') or ''
    if base and not os.path.isfile(base):
        bb.fatal("DOCKER_ARTIFACT_BASE names %s, which is not a file; point it at the artifact of the release "
                 "the devices run (a copy kept outside TMPDIR), or leave it empty" % base)
    if base and os.path.basename(base) == d.getVar('DOCKER_ARTIFACT_DELTA'):
        bb.fatal("DOCKER_ARTIFACT_BASE names %s, the delta this build writes; name the full artifact of the "
                 "devices' release instead" % base)
    return base

def docker_artifact_base_checksum(d):
    """A changed base artifact makes a new delta."""
    base = d.getVar('DOCKER_ARTIFACT_BASE') or ''
    return '%s:True' % base if base else ''

def docker_artifact_command(d, output, base=''):
    """The docker-artifact-gen command line that writes the artifact to output
    (a delta against base when one is given)."""
    import shlex
    types = (d.getVar('DOCKER_ARTIFACT_DEVICE_TYPES') or '').split()
    if not types:
        bb.fatal("DOCKER_ARTIFACT_DEVICE_TYPES is empty: inherit mender-full (it sets MENDER_DEVICE_TYPES_COMPATIBLE) "
                 "or set DOCKER_ARTIFACT_DEVICE_TYPES to the device types the artifact is for")
    images = docker_artifact_oci_images(d)
    if not images:
        bb.fatal("DOCKER_ARTIFACT_OCI_IMAGES is empty: name the image-oci recipes whose images the stack runs")
    for mc, recipe in images:
        archive = docker_artifact_archive(d, recipe)
        if not os.path.exists(archive):
            bb.fatal("%s from DOCKER_ARTIFACT_OCI_IMAGES did not deploy %s: it must inherit image-oci with "
                     "OCI_IMAGE_TAG \"%s\" (DOCKER_ARTIFACT_OCI_TAG) and OCI_IMAGE_TAR_OUTPUT enabled"
                     % (recipe, archive, d.getVar('DOCKER_ARTIFACT_OCI_TAG')))
    cmd = ['docker-artifact-gen', '-n', d.getVar('DOCKER_ARTIFACT_NAME')]
    for t in types:
        cmd += ['-t', t]
    cmd += ['-o', output, '--inline',
            '--software-name', d.getVar('DOCKER_ARTIFACT_STACK'),
            '--software-version', d.getVar('DOCKER_ARTIFACT_VERSION')]
    if base:
        cmd += ['--base', base]
    if d.getVar('DOCKER_ARTIFACT_SPEC'):
        if d.getVar('DOCKER_ARTIFACT_RUN_ARGS'):
            bb.fatal("DOCKER_ARTIFACT_RUN_ARGS and DOCKER_ARTIFACT_SPEC are both set: put the options into the spec's containers")
        cmd += ['--spec', docker_artifact_spec(d, images)]
    else:
        if d.getVar('DOCKER_ARTIFACT_RUN_ARGS'):
            cmd.append('--run-args=' + d.getVar('DOCKER_ARTIFACT_RUN_ARGS'))
        cmd += ['oci-archive:' + docker_artifact_archive(d, recipe) for mc, recipe in images]
    extra = []
    if d.getVar('DOCKER_ARTIFACT_SIGNING_KEY'):
        extra += ['-k', d.getVar('DOCKER_ARTIFACT_SIGNING_KEY')]
    for entry in docker_artifact_check_depends(d):
        extra += ['--depends', entry]
    extra += shlex.split(d.getVar('DOCKER_ARTIFACT_EXTRA_ARGS') or '')
    if extra:
        cmd += ['--'] + extra
    return cmd

do_deploy[doc] = "Writes ${DOCKER_ARTIFACT} with its images inline (and ${DOCKER_ARTIFACT_DELTA} with DOCKER_ARTIFACT_BASE) and deploys it to DEPLOY_DIR_IMAGE"
python do_deploy() {
    import shlex
    import subprocess
    deploydir = d.getVar('DEPLOYDIR')
    runs = [docker_artifact_command(d, os.path.join(deploydir, d.getVar('DOCKER_ARTIFACT')))]
    base = docker_artifact_base(d)
    if base:
        runs.append(docker_artifact_command(d, os.path.join(deploydir, d.getVar('DOCKER_ARTIFACT_DELTA')), base))
    for cmd in runs:
        bb.note('Running: ' + ' '.join(shlex.quote(arg) for arg in cmd))
        # PATH and SOURCE_DATE_EPOCH come from the task's environment.
        result = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        if result.stdout:
            bb.note(result.stdout.rstrip())
        if result.returncode != 0:
            bb.fatal('docker-artifact-gen failed (exit %d):\n%s' % (result.returncode, result.stdout.rstrip()))
}
do_deploy[depends] += "docker-artifact-gen-native:do_populate_sysroot mender-artifact-native:do_populate_sysroot \
                       ${@docker_artifact_depends(d)}"
do_deploy[mcdepends] += "${@docker_artifact_mcdepends(d)}"
do_deploy[file-checksums] += "${@docker_artifact_base_checksum(d)}"
# Read only for a warning: a change of the rootfs provides does not rebuild the artifact.
# nooelint: oelint.vars.mispell.unknown - a flag of the function defined above, not a variable
docker_artifact_check_depends[vardepsexclude] = "MENDER_ARTIFACT_PROVIDES COMPOSABLE_ROOTFS_PROVIDES_MAP"
addtask deploy after do_install before do_build
