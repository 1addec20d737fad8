"""Fixtures of the export tests."""

from __future__ import annotations

import pytest


@pytest.fixture
def no_tracking_server(monkeypatch: pytest.MonkeyPatch) -> None:
    """No tracking server (or notebook session) from the environment reaches what export runs."""
    for name in ("MLFLOW_TRACKING_URI", "NBOPS_MLFLOW_TRACKING_URI", "JPY_SESSION_NAME"):
        monkeypatch.delenv(name, raising=False)
