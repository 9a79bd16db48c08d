"""Checks of the provides that meta-mender writes into the rootfs artifact.

``MENDER_ARTIFACT_PROVIDES = "key:value key:value"`` becomes one
``mender-artifact write rootfs-image --provides key:value`` per entry, and the
same entries (plus ``MENDER_ARTIFACT_PROVIDES_BOOTSTRAP``) seed the device
through the bootstrap artifact. A rootfs artifact clears ``rootfs-image.*`` on
the device when it installs, so the capabilities of an OS belong under that
namespace; ``data-partition.*`` belongs to the persistent-app and docker
artifacts, whose versions must survive OS updates.

Used by classes/mender-composable-provides-check.bbclass; pure Python.
"""

import re

ROOTFS_NAMESPACE = "rootfs-image."
DATA_NAMESPACE = "data-partition."

# Dot-separated words of A-Z a-z 0-9 _ -.
_KEY = re.compile(r"[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*\Z")

# meta-mender expands the entries unquoted in a shell function: these
# characters would be globbed, expanded or end the command there.
_SHELL_UNSAFE = "\"'`$\\*?[;&|<>()"

# Keys that mender-artifact or meta-mender write themselves, and why.
_RESERVED = {
    "artifact_name": "is the artifact name, set by MENDER_ARTIFACT_NAME",
    "artifact_group": "is the artifact group, set by MENDER_ARTIFACT_PROVIDES_GROUP",
    "rootfs-image.version": "mender-artifact writes itself from MENDER_ARTIFACT_NAME",
    "rootfs-image.checksum": "mender-artifact computes itself from the filesystem image",
}
_RESERVED_PREFIX = "rootfs-image.update-module."

EXAMPLE = "rootfs-image.python.version:3.12"


def entries(value):
    """The whitespace-separated entries of a provides variable, in order."""
    return (value or "").split()


def split_entry(entry):
    """``(key, value)`` of one ``key:value`` entry; value is None without a colon."""
    key, colon, value = entry.partition(":")
    return key, (value if colon else None)


def _suggest_rootfs_key(key):
    """The rootfs capability an entry outside rootfs-image.* was probably meant to be."""
    if key.startswith(DATA_NAMESPACE):
        key = key[len(DATA_NAMESPACE):]
    if key == ROOTFS_NAMESPACE.rstrip("."):
        key = "<capability>"
    return ROOTFS_NAMESPACE + key


def entry_problem(entry, variable):
    """One line saying what is wrong with a single entry and what would be right, or None."""
    key, value = split_entry(entry)
    if value is None:
        return (f"{variable}: '{entry}' has no ':'; each entry is key:value, "
                f"e.g. '{EXAMPLE}'")
    if not _KEY.match(key):
        return (f"{variable}: '{entry}' has key '{key}', which is not dot-separated words "
                f"of A-Z a-z 0-9 _ -; e.g. '{EXAMPLE}'")
    if value == "":
        return f"{variable}: '{entry}' has an empty value; give one, e.g. '{key}:1.0'"
    unsafe = sorted({c for c in value if c in _SHELL_UNSAFE})
    if unsafe:
        return (f"{variable}: '{entry}' has {' '.join(unsafe)} in its value, which meta-mender's "
                f"shell would expand or cut; use letters, digits and . _ + - ~ : , / = @ %")
    if key in _RESERVED:
        return f"{variable}: '{entry}' sets '{key}', which {_RESERVED[key]}; remove it"
    if key.startswith(_RESERVED_PREFIX):
        return (f"{variable}: '{entry}' sets '{key}', which meta-mender writes for every Update Module "
                f"installed in the image; remove it")
    if key.startswith(DATA_NAMESPACE):
        return (f"{variable}: '{entry}' is a data-partition provide: those come from the persistent-app "
                f"and docker artifacts and outlive OS updates, a rootfs artifact must not set them; "
                f"remove it, or state an OS capability as '{_suggest_rootfs_key(key)}:{value}'")
    if not key.startswith(ROOTFS_NAMESPACE):
        return (f"{variable}: '{entry}' is outside {ROOTFS_NAMESPACE}*, which a rootfs update does not "
                f"clear, so it would outlive the OS that provides it; "
                f"write '{_suggest_rootfs_key(key)}:{value}'")
    return None


def rootfs_provides_problems(provides, bootstrap=""):
    """Everything wrong with MENDER_ARTIFACT_PROVIDES (and _BOOTSTRAP), one line each.

    meta-mender writes ``provides`` into the rootfs artifact and
    ``provides`` + ``bootstrap`` into the bootstrap artifact, so a key given
    twice anywhere in that sequence is reported too. Empty list: all good.
    """
    problems = []
    seen = {}
    for variable, value in (("MENDER_ARTIFACT_PROVIDES", provides),
                            ("MENDER_ARTIFACT_PROVIDES_BOOTSTRAP", bootstrap)):
        for entry in entries(value):
            problem = entry_problem(entry, variable)
            if problem:
                problems.append(problem)
                continue
            key, _ = split_entry(entry)
            if key in seen:
                first_variable, first_entry = seen[key]
                where = "" if first_variable == variable else f" in {first_variable}"
                problems.append(f"{variable}: '{entry}' repeats key '{key}' (already '{first_entry}'{where}); "
                                f"give each key once")
                continue
            seen[key] = (variable, entry)
    return problems
