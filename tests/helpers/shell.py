"""The suite's one way to get a real IPython shell with the extension loaded."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest


@contextlib.contextmanager
def nbops_shell(home: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """A fresh real IPython shell with the extension loaded, working on the store at ``home``; MLflow is reset after."""
    from IPython.core.interactiveshell import InteractiveShell

    monkeypatch.setenv("NBOPS_HOME", str(home))
    InteractiveShell.clear_instance()
    ip = InteractiveShell.instance()
    ip.extension_manager.load_extension("nbops")
    try:
        yield ip
    finally:
        ip.extension_manager.unload_extension("nbops")
        InteractiveShell.clear_instance()
        if "mlflow" in sys.modules:  # a run the shell started, or the tracking URI it set, must not leak
            from helpers.mlflowstate import reset_mlflow

            reset_mlflow()
