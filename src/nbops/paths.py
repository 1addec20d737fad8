"""Where things are: the store folder, and the MLflow backend inside it.

Light on purpose (standard library only): the extension calls this at load.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

STORE_DIRNAME = ".nbops"
HOME_ENV = "NBOPS_HOME"
TRACKING_DB = "mlflow.db"
URI_ENV = "MLFLOW_TRACKING_URI"
#: Set beside MLFLOW_TRACKING_URI when nbops set it, so that a child process
#: (an exported pipeline, a test) knows the value is nbops' and not the user's.
MARKER_ENV = "NBOPS_MLFLOW_TRACKING_URI"


def find_store_root(start: str | os.PathLike[str] | None = None, environ: Mapping[str, str] | None = None) -> Path:
    """Where the store is: ``$NBOPS_HOME``, else the nearest ``.nbops/`` upward, else ``./.nbops``."""
    env = os.environ if environ is None else environ
    if env.get(HOME_ENV):
        return Path(env[HOME_ENV]).expanduser().resolve()
    here = Path(start if start is not None else os.getcwd()).resolve()
    for folder in (here, *here.parents):
        candidate = folder / STORE_DIRNAME
        if candidate.is_dir():
            return candidate
    return here / STORE_DIRNAME


def store_tracking_uri(store: Any) -> str:
    """The store's MLflow backend: ``sqlite:///<store>/mlflow.db``."""
    root = store if isinstance(store, Path) else store.root
    return f"sqlite:///{root / TRACKING_DB}"


def user_set_uri() -> bool:
    """True when MLFLOW_TRACKING_URI was set by someone other than nbops."""
    value = os.environ.get(URI_ENV)
    return bool(value) and value != os.environ.get(MARKER_ENV)


def point_mlflow_at(store: Any) -> str:
    """Make MLflow's own API use the store's backend, unless the user chose one.

    Sets ``MLFLOW_TRACKING_URI`` (MLflow's documented switch) without
    importing MLflow; if MLflow is already imported, tells it too.
    """
    if user_set_uri():
        return os.environ[URI_ENV]
    uri = store_tracking_uri(store)
    os.environ[URI_ENV] = os.environ[MARKER_ENV] = uri
    if "mlflow" in sys.modules:  # MLflow caches the URI once it has read it
        sys.modules["mlflow"].set_tracking_uri(uri)
    return uri


def release_mlflow() -> None:
    """Undo :func:`point_mlflow_at` (extension unload)."""
    if not user_set_uri():
        os.environ.pop(URI_ENV, None)
    os.environ.pop(MARKER_ENV, None)
