"""Widget panels over the store: snapshots, feature groups, runs, lineage, drift and monitoring.

Each panel is an ipywidgets ``VBox`` built from the plain data in
:mod:`nbops.widgets.data`; the magics ``%snapshots``, ``%features``,
``%runs``, ``%lineage``, ``%drift`` and ``%monitor`` return them.  Panels read the store
when made and when their Refresh button is pressed.
"""

from __future__ import annotations

from typing import Any

__all__ = ["DriftPanel", "FeaturesPanel", "LineagePanel", "MonitorPanel", "RunsPanel", "SnapshotsPanel"]

_PLACES = {
    "DriftPanel": "nbops.widgets.drift",
    "FeaturesPanel": "nbops.widgets.features",
    "LineagePanel": "nbops.widgets.lineage",
    "MonitorPanel": "nbops.widgets.monitor",
    "RunsPanel": "nbops.widgets.runs",
    "SnapshotsPanel": "nbops.widgets.snapshots",
}


def __getattr__(name: str) -> Any:
    if name in _PLACES:
        import importlib

        return getattr(importlib.import_module(_PLACES[name]), name)
    raise AttributeError(f"module 'nbops.widgets' has no attribute {name!r}")
