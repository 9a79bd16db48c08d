"""Bad artifacts and bad device configuration through the real client: each is refused in Download
with one line that says what and where, and the device is exactly as before (same containers, same
states, same images, same journal, same recorded artifact). The artifact categories are in
test_docker_bad_input_categories.py."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from pathlib import Path

import pytest

from docker_helpers import container, device, module_errors, stack_meta  # noqa: F401  (fixture)

pytestmark = pytest.mark.bench


def _with_raw_meta_data(artifact: Path, raw: bytes) -> Path:
    """The artifact with its meta-data replaced by `raw` bytes (mender-artifact refuses to write
    invalid JSON) and the manifest's checksum of the header updated, so the client accepts it."""
    with tarfile.open(artifact) as outer:
        members = [(m, outer.extractfile(m).read()) for m in outer.getmembers()]
    files = {m.name: data for m, data in members}
    with tarfile.open(fileobj=io.BytesIO(files["header.tar.gz"]), mode="r:gz") as header:
        parts = [(m, header.extractfile(m).read() if m.isfile() else None) for m in header.getmembers()]
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as header:
        for m, data in parts:
            if m.name == "headers/0000/meta-data":
                data = raw
                m.size = len(raw)
            header.addfile(m, io.BytesIO(data) if data is not None else None)
    files["header.tar.gz"] = buf.getvalue()
    manifest = []
    for line in files["manifest"].decode().splitlines():
        digest, name = line.split()
        if name == "header.tar.gz":
            digest = hashlib.sha256(files[name]).hexdigest()
        manifest.append(f"{digest}  {name}")
    files["manifest"] = ("\n".join(manifest) + "\n").encode()
    out = artifact.with_name(artifact.stem + "-raw.mender")
    with tarfile.open(out, "w") as outer:
        for m, _ in members:
            m.size = len(files[m.name])
            outer.addfile(m, io.BytesIO(files[m.name]))
    return out


def test_meta_data_that_is_not_json_is_refused_by_the_client_before_the_module_runs(device):
    """The Go client parses the meta-data itself and refuses it before any module state runs (the
    module's own categories of bad input are in test_docker_bad_input_categories.py; its message for
    unparsable meta-data is covered by the protocol tests)."""
    v1 = device.image("stacks/web", "1")
    device.deploy(device.artifact("web-1", stack_meta("web", [container("web", v1)])))
    before = device.snapshot()
    journal = device.journal("web")

    artifact = _with_raw_meta_data(device.artifact("bad-json", {"placeholder": 1}), b'{"docker-stack": {"format": 1,')
    result = device.install(artifact)

    assert result.returncode != 0
    assert "error reading meta-data" in result.stderr
    assert not module_errors(result.stderr)
    after = device.snapshot()
    assert (after.ids(), after.running(), after.images) == (before.ids(), before.running(), before.images)
    assert device.journal("web") == journal
    assert device.sandbox.artifact_name() == "web-1"


def test_credentials_in_a_configuration_others_can_read_are_refused(device):
    image = device.image("stacks/web", "1")
    device.configure(registries={"fleet": {"address": device.registry.addr, "username": "u",
                                           "password": "do-not-print"}}, mode=0o644)
    before = device.snapshot()

    result = device.install(device.artifact("web-1", stack_meta("web", [container("web", image)])))

    assert result.returncode != 0
    errors = module_errors(result.stderr)
    assert len(errors) == 1 and "holds registry credentials but its mode 0644 lets group or others read it" in errors[0]
    assert "chmod 600" in errors[0]
    assert "do-not-print" not in result.stderr + result.stdout
    assert device.snapshot().images == before.images and not device.snapshot().containers


SECRET = "Sup3r-S3cret-pa55"
NUMERIC_SECRET = "31415926535897"


def _malformed_configurations(device) -> dict[str, tuple[str, str, str]]:
    """Device configurations that are wrong in a way that a careless parser echoes: the text, the
    secret it holds, and the key path the error must name."""
    socket = json.dumps(str(device.dockerd.socket))
    reg = json.dumps(device.registry.addr)
    return {
        "a password that is a number": (
            f'{{"socket": {socket}, "registries": {{"fleet": {{"address": {reg}, "username": "u", '
            f'"password": {NUMERIC_SECRET}}}}}}}', NUMERIC_SECRET, "registries.fleet.password"),
        "a registry written as a string": (
            f'{{"socket": {socket}, "registries": {{"fleet": "u:{SECRET}@{device.registry.addr}"}}}}',
            SECRET, "registries.fleet"),
        "a password in a list": (
            f'{{"socket": {socket}, "registries": {{"fleet": {{"address": {reg}, "username": "u", '
            f'"password": ["{SECRET}"]}}}}}}', SECRET, "registries.fleet.password"),
        "a secret where a number belongs": (
            f'{{"socket": {socket}, "settle_seconds": "{SECRET}"}}', SECRET, "settle_seconds"),
        "a secret as the download mode": (
            f'{{"socket": {socket}, "download": "{SECRET}"}}', SECRET, "download"),
        "a secret as a relative socket path": (f'{{"socket": "{SECRET}"}}', SECRET, "socket"),
        "a syntax error after the password": (
            f'{{"socket": {socket}, "registries": {{"fleet": {{"address": {reg}, "username": "u", '
            f'"password": "{SECRET}" "oops": 1}}}}}}', SECRET, "line 1"),
    }


def test_a_malformed_configuration_is_reported_once_without_any_value(device):
    image = device.image("stacks/web", "1")
    artifact = device.artifact("web-1", stack_meta("web", [container("web", image)]))
    conf = device.sandbox.etc_mender / "docker-module.conf"
    problems = []

    for what, (text, secret, where) in _malformed_configurations(device).items():
        conf.write_text(text)
        conf.chmod(0o600)

        result = device.install(artifact)

        output = result.stdout + result.stderr
        about_conf = [line for line in module_errors(result.stderr) if "docker-module.conf" in line]
        if result.returncode == 0:
            problems.append(f"{what}: installed")
        if secret in output:
            problems.append(f"{what}: the client's output shows the secret {output.count(secret)} time(s)")
        # A file that is not JSON at all hides where the journal is, so the recovery state cannot
        # look for an update to undo and fails too (without any value); any other mistake is in a
        # key that Cleanup does not need, and is reported once.
        lines = 2 if "syntax" in what else 1
        if len(about_conf) != lines or not all(where in line for line in about_conf):
            problems.append(f"{what}: want {lines} error line(s) naming {where!r}, got {about_conf}")
        if device.snapshot().containers:
            problems.append(f"{what}: the engine's state changed")

    assert not problems, "\n".join(problems)
