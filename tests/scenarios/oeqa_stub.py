"""Stand-ins for the few names of poky's oeqa that lib/oeqa/runtime/cases/composable.py imports, so
the case module loads and runs without BitBake: OERuntimeTestCase is a unittest.TestCase with the
attributes oeqa's loader sets (td, target, logger, tc); OETestDepends, OETimeout and OEHasPackage
record their arguments on the test function (``func.oeqa``) and change nothing else."""

from __future__ import annotations

import contextlib
import importlib.util
import sys
import types
import unittest
from pathlib import Path

CASE = Path(__file__).resolve().parents[2] / "lib" / "oeqa" / "runtime" / "cases" / "composable.py"


class _Decorator:
    def __init__(self, *args):
        self.args = args

    def __call__(self, func):
        func.__dict__.setdefault("oeqa", []).append((type(self).__name__, self.args))
        return func


class OERuntimeTestCase(unittest.TestCase):
    td = None
    target = None
    logger = None
    tc = None


_MODULES = {
    "oeqa": {},
    "oeqa.core": {},
    "oeqa.core.decorator": {},
    "oeqa.core.decorator.depends": {"OETestDepends": type("OETestDepends", (_Decorator,), {})},
    "oeqa.core.decorator.oetimeout": {"OETimeout": type("OETimeout", (_Decorator,), {})},
    "oeqa.runtime": {},
    "oeqa.runtime.case": {"OERuntimeTestCase": OERuntimeTestCase},
    "oeqa.runtime.decorator": {},
    "oeqa.runtime.decorator.package": {"OEHasPackage": type("OEHasPackage", (_Decorator,), {})},
}


@contextlib.contextmanager
def case_module():
    """The case module, loaded as testimage's discovery does (top-level name "composable"), with the
    stand-ins in sys.modules while the block runs."""
    saved = {name: sys.modules.get(name) for name in _MODULES}
    try:
        for name, attrs in _MODULES.items():
            mod = types.ModuleType(name)
            mod.__dict__.update(attrs)
            sys.modules[name] = mod
        spec = importlib.util.spec_from_file_location("composable", CASE)
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        yield mod
    finally:
        for name, previous in saved.items():
            if previous is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = previous
