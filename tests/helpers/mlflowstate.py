"""One way for tests to leave MLflow as they found it."""

from __future__ import annotations

import mlflow

from nbops import api


def reset_mlflow() -> None:
    """End any MLflow or nbops run this process left open and forget MLflow's cached URI.

    ``mlflow.set_tracking_uri(None)`` also unsets ``MLFLOW_TRACKING_URI``, which
    MLflow (and ``nbops.open``) set themselves.
    """
    for run in api.active_runs():
        api.stop(run)
    while mlflow.active_run() is not None:
        mlflow.end_run()
    mlflow.set_tracking_uri(None)
