"""Experiment tracking: runs, the model registry and the MLflow backend each store owns (:mod:`nbops.tracking.experiments`).

``nbops.tracking`` was one module before the layered layout; its names still
resolve here (``from nbops.tracking import Run``), with a DeprecationWarning.
"""

from __future__ import annotations

from typing import Any


def __getattr__(name: str) -> Any:
    import importlib

    runs = importlib.import_module("nbops.tracking.experiments")
    if name.startswith("__") or not hasattr(runs, name):
        raise AttributeError(f"module 'nbops.tracking' has no attribute {name!r}")
    from nbops._compat import deprecated

    deprecated(f"nbops.tracking.{name}", f"nbops.tracking.experiments.{name}")
    return getattr(runs, name)
