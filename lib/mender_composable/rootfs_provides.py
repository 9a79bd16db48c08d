"""rootfs-image.* provides derived from what an image really installs.

``COMPOSABLE_ROOTFS_PROVIDES_MAP`` holds rules ``PACKAGE=KEY:VALUE``: when the image installs
PACKAGE, its rootfs artifact provides ``KEY:VALUE``. VALUE is a fixed string (``true``) or a template
of the package's version, ``{version}``, ``{major}``, ``{minor}``, ``{patch}``::

    python3=rootfs-image.python.version:{major}.{minor}
    docker-moby=rootfs-image.feature.docker:true

A key a rule derives is the image's to state: when MENDER_ARTIFACT_PROVIDES also writes it by hand,
the two must agree, or the build stops naming both values. Keys no rule derives (an API version,
say) pass through as written.

classes/mender-composable-rootfs-provides.bbclass does the I/O (the image's package manifest,
pkgdata) and calls these functions; they are pure so that tests/layer checks them without BitBake.
Plain Python 3.8.
"""

import re

from . import provides as rules_of_provides

VARIABLE = "COMPOSABLE_ROOTFS_PROVIDES_MAP"
_PACKAGE = re.compile(r"[a-z0-9][a-z0-9+.-]*\Z")
_FIELD = re.compile(r"\{([a-z]+)\}")
FIELDS = ("version", "major", "minor", "patch")
_VERSION = re.compile(r"(\d+)(?:\.(\d+))?(?:\.(\d+))?")

EXAMPLE = "python3=rootfs-image.python.version:{major}.{minor}"


class Rule:
    """One PACKAGE=KEY:VALUE rule."""

    def __init__(self, package, key, template):
        self.package = package
        self.key = key
        self.template = template

    @property
    def fixed(self):
        """The value when it does not depend on the version, else None."""
        return None if _FIELD.search(self.template) else self.template

    def __eq__(self, other):
        return (self.package, self.key, self.template) == (other.package, other.key, other.template)

    def __repr__(self):
        return "Rule(%r, %r, %r)" % (self.package, self.key, self.template)


def parse_map(value):
    """(rules, problems) of COMPOSABLE_ROOTFS_PROVIDES_MAP; each problem is one line."""
    rules, problems = [], []
    owners = {}
    for entry in (value or "").split():
        package, eq, provide = entry.partition("=")
        key, colon, template = provide.partition(":")
        if not eq or not colon or not package or not template:
            problems.append("%s: '%s' is not PACKAGE=KEY:VALUE, e.g. '%s'" % (VARIABLE, entry, EXAMPLE))
            continue
        if not _PACKAGE.match(package):
            problems.append("%s: '%s' names the package '%s', which is not a package name (lower case "
                            "letters, digits, + . -)" % (VARIABLE, entry, package))
            continue
        problem = rules_of_provides.entry_problem("%s:%s" % (key, _FIELD.sub("0", template)), VARIABLE)
        if problem:
            problems.append(problem.replace("'%s:%s'" % (key, _FIELD.sub("0", template)), "'%s'" % entry))
            continue
        unknown = [f for f in _FIELD.findall(template) if f not in FIELDS]
        if unknown:
            problems.append("%s: '%s' uses {%s}; a value may use %s" % (
                VARIABLE, entry, unknown[0], ", ".join("{%s}" % f for f in FIELDS)))
            continue
        if key in owners:
            problems.append("%s: '%s' derives '%s' again (already from %s); one package per key"
                            % (VARIABLE, entry, key, owners[key]))
            continue
        owners[key] = package
        rules.append(Rule(package, key, template))
    return rules, problems


def value_for(rule, version):
    """The rule's value for the package at `version` (its PKGV), or raise ValueError saying why not."""
    m = _VERSION.match(version or "")
    fields = {"version": version}
    if m:
        fields.update(major=m.group(1), minor=m.group(2), patch=m.group(3))
    needed = _FIELD.findall(rule.template)
    missing = [f for f in needed if not fields.get(f)]
    if missing:
        raise ValueError("%s: '%s=%s:%s' needs {%s}, which the version '%s' of %s does not have"
                         % (VARIABLE, rule.package, rule.key, rule.template, missing[0], version, rule.package))
    return _FIELD.sub(lambda m: fields[m.group(1)], rule.template)


def derive(rules, installed):
    """({key: value}, problems) for the rules whose package is installed; `installed` maps each
    installed package (by its name before any renaming) to its version."""
    derived, problems = {}, []
    for rule in rules:
        if rule.package not in installed:
            continue
        try:
            derived[rule.key] = value_for(rule, installed[rule.package])
        except ValueError as e:
            problems.append(str(e))
    return derived, problems


def reconcile(provides, rules, installed):
    """(MENDER_ARTIFACT_PROVIDES for the artifacts, problems).

    `provides` is the hand-written MENDER_ARTIFACT_PROVIDES. Hand-written entries keep their
    order; derived ones follow in rule order. A hand-written entry for a derived key must have the
    derived value, and one for a key whose package the image lacks is refused."""
    derived, problems = derive(rules, installed)
    by_key = {rule.key: rule for rule in rules}
    out = []
    for entry in rules_of_provides.entries(provides):
        key, value = rules_of_provides.split_entry(entry)
        rule = by_key.get(key)
        if rule is not None:
            if key not in derived:
                if rule.package not in installed:
                    problems.append("MENDER_ARTIFACT_PROVIDES says '%s', but the image does not install %s, "
                                    "from which %s derives %s; remove the entry or install %s"
                                    % (entry, rule.package, VARIABLE, key, rule.package))
                continue
            if value != derived[key]:
                problems.append("MENDER_ARTIFACT_PROVIDES says '%s', but the image installs %s %s, which "
                                "gives '%s:%s'; correct or remove the entry"
                                % (entry, rule.package, installed[rule.package], key, derived[key]))
                continue
        out.append(entry)
    written = {rules_of_provides.split_entry(e)[0] for e in out}
    out += ["%s:%s" % (rule.key, derived[rule.key]) for rule in rules
            if rule.key in derived and rule.key not in written]
    return " ".join(out), problems


def parse_time_problems(map_value, provides):
    """What can be refused before any package is built: a malformed map, a derived key outside
    rootfs-image.*, and a hand-written entry that contradicts a fixed-value rule (the key is either
    that value, when the package is installed, or absent)."""
    rules, problems = parse_map(map_value)
    fixed = {rule.key: rule for rule in rules if rule.fixed is not None}
    for entry in rules_of_provides.entries(provides):
        key, value = rules_of_provides.split_entry(entry)
        rule = fixed.get(key)
        if rule is not None and value != rule.fixed:
            problems.append("MENDER_ARTIFACT_PROVIDES says '%s', but %s derives %s from the image: '%s:%s' "
                            "when it installs %s, nothing otherwise; remove the entry"
                            % (entry, VARIABLE, key, key, rule.fixed, rule.package))
    return problems


def parse_manifest(text):
    """{package: version} of an image manifest (``IMAGE_MANIFEST``: "name arch version" lines)."""
    out = {}
    for line in (text or "").splitlines():
        parts = line.split()
        if len(parts) >= 3:
            out[parts[0]] = parts[2]
    return out


def parse_pkgdata(text, package):
    """(name in the image, PKGV) of `package` from its pkgdata runtime file
    (``${PKGDATA_DIR}/runtime/<package>``: "PKG:<package>: <name>", "PKGV: <version>")."""
    fields = {}
    for line in (text or "").splitlines():
        key, sep, value = line.partition(": ")
        if sep:
            fields[key] = value.strip()
    name = fields.get("PKG:%s" % package) or fields.get("PKG") or package
    version = fields.get("PKGV:%s" % package) or fields.get("PKGV") or fields.get("PV")
    return name, version


def installed_packages(rules, manifest, pkgdata):
    """{package: version} of the rules' packages the image installs. `manifest` is parse_manifest's
    result; `pkgdata` maps a package to its pkgdata runtime text (None where the build made no such
    package). A package renamed by debian.bbclass is found under its name in the image."""
    out = {}
    for rule in rules:
        text = pkgdata.get(rule.package)
        name, version = parse_pkgdata(text, rule.package) if text is not None else (rule.package, None)
        if name in manifest:
            out[rule.package] = version or manifest[name]
    return out
