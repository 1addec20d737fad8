"""Experiment tracking: runs, the model registry and the MLflow backend each store owns (:mod:`nbops.tracking.experiments`).

``nbops.tracking`` was one module before the layered layout; its names still
resolve here (``from nbops.tracking import Run``), with a DeprecationWarning.
"""

from nbops._compat import forwarding

__getattr__ = forwarding(__name__, "nbops.tracking.experiments")
