"""One way for tests to leave MLflow as they found it, and to start without the tracking settings of anyone else."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import mlflow
import pytest

from nbops import api
from nbops.core.paths import MARKER_ENV, URI_ENV


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


def forget_tracking_uri(monkeypatch: pytest.MonkeyPatch) -> None:
    """Unset the tracking URI (and its marker) in the environment, and the one MLflow has cached."""
    monkeypatch.delenv(URI_ENV, raising=False)
    monkeypatch.delenv(MARKER_ENV, raising=False)
    mlflow.set_tracking_uri(None)


@contextlib.contextmanager
def untracked_setup() -> Iterator[None]:
    """For a module's one-off setup: no tracking URI on entry; MLflow reset and the environment restored on exit."""
    with pytest.MonkeyPatch.context() as mp:
        forget_tracking_uri(mp)
        yield
        reset_mlflow()
