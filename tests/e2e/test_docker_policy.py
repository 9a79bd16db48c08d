"""The device's policy in /etc/mender/docker-module.conf through the real client and engine: the
default runs what the old module ran; a tightened one refuses in Download, with one line naming the
artifact's key and the rule, before anything on the device changes (no pull, no container)."""

from __future__ import annotations

import pytest

from docker_helpers import container, device, module_errors, stack_meta  # noqa: F401  (fixture)

pytestmark = pytest.mark.bench

TIGHT = {
    "allow_privileged": False,
    "allowed_capabilities": ["NET_ADMIN"],
    "allowed_devices": ["/dev/null"],
    "allowed_bind_prefixes": ["/data/apps"],
    "allow_engine_socket": False,
    "allow_host_network": False,
}


def test_the_default_policy_runs_what_the_old_module_ran(device):
    image = device.image("stacks/web", "1")
    socket = str(device.dockerd.socket)

    device.deploy(device.artifact("web-1", stack_meta("web", [
        container("web", image, network_mode="host", cap_add=["NET_ADMIN"], devices=["/dev/null:/dev/x"],
                  binds=["/etc:/host-etc:ro", f"{socket}:/var/run/docker.sock"])])))

    assert device.snapshot().running() == {"web"}
    # Privileged mode passes the policy too; the engine on this machine cannot start such a
    # container ("unable to apply caps: operation not permitted"), so only Download is checked.
    privileged = device.install(device.artifact("web-2", stack_meta("web", [
        container("web", image, privileged=True, cap_add=["ALL"])])))
    lines = "\n".join(module_errors(privileged.stderr))
    assert "release web-2 of stack web: 1 container(s), 1 image(s) ready" in privileged.stderr
    assert "policy" not in lines, lines


def test_a_tightened_policy_refuses_in_download_with_one_line_and_nothing_changed(device):
    v1 = device.image("stacks/web", "1")
    v2 = device.image("stacks/web", "2")
    device.deploy(device.artifact("web-1", stack_meta("web", [container("web", v1)])))
    device.configure(policy=TIGHT)
    socket = str(device.dockerd.socket)
    cases = [
        ("privileged", stack_meta("web", [container("web", v2, privileged=True)]),
         "at docker-stack.containers.web.privileged asks for privileged mode", "policy.allow_privileged is false"),
        ("cap_add ALL", stack_meta("web", [container("web", v2, cap_add=["NET_ADMIN", "ALL"])]),
         "at docker-stack.containers.web.cap_add[1] asks for capability ALL",
         "policy.allowed_capabilities does not list it"),
        ("/dev/mem", stack_meta("web", [container("web", v2, devices=["/dev/mem:/dev/mem"])]),
         "at docker-stack.containers.web.devices[0] asks for host device /dev/mem",
         "policy.allowed_devices does not list it"),
        ("a bind of /", stack_meta("web", [container("web", v2, binds=["/:/host:ro"])]),
         "at docker-stack.containers.web.binds[0] asks for a bind of / that exposes the engine's socket",
         "policy.allow_engine_socket is false"),
        ("the engine's socket", stack_meta("web", [container("web", v2, binds=[f"{socket}:/var/run/docker.sock"])]),
         "asks for a bind of", "policy.allow_engine_socket is false"),
        ("a bind outside the prefixes", stack_meta("web", [container("web", v2, binds=["/etc:/e:ro"])]),
         "at docker-stack.containers.web.binds[0] asks for a bind of host path /etc",
         "it is not below any of policy.allowed_bind_prefixes"),
        ("host network", stack_meta("web", [container("web", v2, network_mode="host")]),
         "at docker-stack.containers.web.network_mode asks for the host's network",
         "policy.allow_host_network is false"),
        ("legacy run_args", {"containers": [v2], "run_args": "--network none --privileged"},
         "at run_args (--privileged) asks for privileged mode", "policy.allow_privileged is false"),
    ]
    before = device.snapshot()
    journal = device.journal("web")
    problems = []

    for what, meta, where, rule in cases:
        result = device.install(device.artifact(f"bad-{what.replace(' ', '-').replace('/', '')}", meta))

        errors = module_errors(result.stderr)
        if result.returncode == 0:
            problems.append(f"{what}: installed")
        elif (len(errors) != 1 or not errors[0].startswith("docker: error: Download: ")
              or where not in errors[0] or rule not in errors[0]):
            problems.append(f"{what}: want one Download line with {where!r} and {rule!r}, got {errors}")
        after = device.snapshot()
        if (after.ids(), after.running(), after.images) != (before.ids(), before.running(), before.images):
            problems.append(f"{what}: the engine's containers or images changed")
        if device.journal("web") != journal:
            problems.append(f"{what}: the journal changed")

    assert device.sandbox.artifact_name() == "web-1"
    assert not device.image_present(v2), "nothing was pulled"
    assert not problems, "\n".join(problems)
