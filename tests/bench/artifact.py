"""Writing Mender artifacts with the real mender-artifact (3.9 on Debian 12)."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Mapping, Sequence

from .system import run


def mender_artifact_write_module(
    out: str | os.PathLike,
    *,
    type: str,
    name: str,
    device_type: str | Sequence[str],
    files: Sequence[str | os.PathLike],
    software_name: str | None = None,
    software_version: str | None = None,
    software_filesystem: str | None = None,
    provides: Mapping[str, str] | None = None,
    depends: Mapping[str, str] | None = None,
    clears: Sequence[str] | None = None,
    meta_data: Mapping | str | os.PathLike | None = None,
    extra_args: Sequence[str] = (),
) -> Path:
    """`mender-artifact write module-image` and return the artifact's path.

    device_type may list several types (3.9 spells the flag -t, newer versions -c). `meta_data` is
    either a JSON-able mapping or a path to a JSON file. Clears must be explicit whenever provides
    are given: the C++ client treats an artifact without a clears list as clearing everything,
    and mender-artifact adds its own default clear (<filesystem>.<software name>.*) to the list.
    """
    if provides and clears is None:
        raise ValueError(
            f"artifact {name}: provides {dict(provides)} given without clears; pass clears=[...] "
            "(e.g. the provided keys) so the artifact's clears list is what the test intends"
        )
    out = Path(out)
    argv = ["mender-artifact", "write", "module-image", "-T", type, "-n", name, "-o", str(out)]
    for dt in [device_type] if isinstance(device_type, str) else device_type:
        argv += ["-t", dt]
    for f in files:
        argv += ["-f", str(f)]
    if software_filesystem is not None:
        argv += ["--software-filesystem", software_filesystem]
    if software_name is not None:
        argv += ["--software-name", software_name]
    if software_version is not None:
        argv += ["--software-version", software_version]
    for key, value in (provides or {}).items():
        argv += ["--provides", f"{key}:{value}"]
    for key, value in (depends or {}).items():
        argv += ["--depends", f"{key}:{value}"]
    for clear in clears or ():
        argv += ["--clears-provides", clear]
    with tempfile.TemporaryDirectory(prefix="bench-artifact-") as tmp:
        if meta_data is not None:
            if isinstance(meta_data, Mapping):
                meta_path = Path(tmp, "meta-data.json")
                meta_path.write_text(json.dumps(meta_data))
            else:
                meta_path = Path(meta_data)
            argv += ["--meta-data", str(meta_path)]
        argv += list(extra_args)
        run(argv)
    return out
