"""Lineage: what each artifact was made from and what was made from it (:mod:`.graph`).

Every writer records its edges, and frames carry their provenance, through
:mod:`nbops.core.lineage`, in the write's own transaction.  ``nbops.lineage``
was that module before the layered layout; its names still resolve here, with
a DeprecationWarning.
"""

from __future__ import annotations

from typing import Any


def __getattr__(name: str) -> Any:
    import importlib

    recorded = importlib.import_module("nbops.core.lineage")
    if name.startswith("__") or not hasattr(recorded, name):
        raise AttributeError(f"module 'nbops.lineage' has no attribute {name!r}")
    from nbops._compat import deprecated

    deprecated(f"nbops.lineage.{name}", f"nbops.core.lineage.{name}")
    return getattr(recorded, name)
