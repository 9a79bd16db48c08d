"""The project's test bench: a private Docker Engine, a private registry, locally made images and a
sandboxed Mender device driven by the real Go client, all torn down by the tests that made them."""

from .artifact import mender_artifact_write_module
from .device import DEPENDS_UNMET_RE, DEVICE_SANDBOX, DeviceSandbox, host_device_paths_snapshot
from .dockerd import LABEL, Dockerd
from .images import login, make_busybox_image, make_layered_image, push
from .registry import Registry
from .system import BenchError, CommandError, missing_components, mounts_under, require_components

__all__ = [
    "BenchError",
    "CommandError",
    "DEPENDS_UNMET_RE",
    "DEVICE_SANDBOX",
    "DeviceSandbox",
    "Dockerd",
    "LABEL",
    "Registry",
    "host_device_paths_snapshot",
    "login",
    "make_busybox_image",
    "make_layered_image",
    "mender_artifact_write_module",
    "missing_components",
    "mounts_under",
    "push",
    "require_components",
]
