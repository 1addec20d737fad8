"""Old module paths keep importing, with a DeprecationWarning naming the new one.

Before the layered layout every module sat directly in ``nbops/``; code that
imports ``nbops.features`` or ``nbops.online`` (an exported pipeline, a user's
script) gets the module's new home instead, which is the same module object.
``nbops.tracking`` and ``nbops.lineage`` are packages now: they forward the
names of the old modules the same way.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import sys
import warnings
from collections.abc import Callable, Sequence
from types import ModuleType
from typing import Any

#: Old module path -> where the module lives now.
MOVED = {
    "nbops._faults": "nbops.core._faults",
    "nbops._logs": "nbops.core._logs",
    "nbops._sqlite": "nbops.core._sqlite",
    "nbops.audit": "nbops.core.audit",
    "nbops.catalog": "nbops.core.catalog",
    "nbops.columns": "nbops.core.columns",
    "nbops.demo": "nbops.cli.demo",
    "nbops.drift": "nbops.featurestore.drift",
    "nbops.expectations": "nbops.featurestore.expectations",
    "nbops.features": "nbops.featurestore.groups",
    "nbops.gc": "nbops.maintenance.gc",
    "nbops.hashing": "nbops.core.hashing",
    "nbops.markers": "nbops.core.markers",
    "nbops.migrate": "nbops.admin.migrate",
    "nbops.migrate_runs": "nbops.admin.migrate_runs",
    "nbops.migrations": "nbops.core.catalog.migrations",
    "nbops.names": "nbops.core.names",
    "nbops.objects": "nbops.core.objects.local",
    "nbops.objects_remote": "nbops.core.objects.remote",
    "nbops.online": "nbops.featurestore.online",
    "nbops.online_redis": "nbops.featurestore.online.redis",
    "nbops.paths": "nbops.core.paths",
    "nbops.pit": "nbops.featurestore.pit",
    "nbops.redact": "nbops.core.redact",
    "nbops.refs": "nbops.core.refs",
    "nbops.repair": "nbops.maintenance.repair",
    "nbops.roundtrip": "nbops.core.roundtrip",
    "nbops.snapshots": "nbops.datasets.snapshots",
    "nbops.stats": "nbops.featurestore.stats",
    "nbops.verify": "nbops.maintenance.verify",
}


def deprecated(old: str, new: str) -> None:
    """Warn that ``old`` moved to ``new`` (the warning points at the importing line)."""
    warnings.warn(f"{old} moved to {new}; import it from there", DeprecationWarning, stacklevel=3)


def forwarding(package: str, home: str) -> Callable[[str], Any]:
    """A module ``__getattr__`` for ``package``: the names of the module ``home`` it used to be, with a warning."""

    def __getattr__(name: str) -> Any:
        module = importlib.import_module(home)
        if name.startswith("__") or not hasattr(module, name):
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        deprecated(f"{package}.{name}", f"{home}.{name}")
        return getattr(module, name)

    return __getattr__


class _MovedModules(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Finds each old path of :data:`MOVED` and loads it as the module at its new path."""

    def find_spec(
        self, fullname: str, path: Sequence[str] | None = None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname not in MOVED:
            return None
        return importlib.util.spec_from_loader(fullname, self)

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType:
        deprecated(spec.name, MOVED[spec.name])
        return importlib.import_module(MOVED[spec.name])

    def exec_module(self, module: ModuleType) -> None:
        """The module ran already, at its new path."""


def install() -> None:
    """Make the old paths importable (once per process)."""
    if not any(isinstance(finder, _MovedModules) for finder in sys.meta_path):
        sys.meta_path.append(_MovedModules())
