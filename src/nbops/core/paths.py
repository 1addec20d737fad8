"""Where things are: the store folder, its catalog, and the MLflow backend inside it.

Light on purpose (standard library only): the extension calls this at load.
"""

from __future__ import annotations

import os
import sys
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

STORE_DIRNAME = ".nbops"
HOME_ENV = "NBOPS_HOME"
TRACKING_DB = "mlflow.db"
#: Written by ``nbops migrate --runs-to``: where the store's runs went (``nbops.admin.migrate_runs``).
RUNS_MOVED_MARKER = "mlflow.json"
RUNS_MOVED_KEY = "tracking_database"
URI_ENV = "MLFLOW_TRACKING_URI"
#: Set beside MLFLOW_TRACKING_URI when nbops set it, so that a child process
#: (an exported pipeline, a test) knows the value is nbops' and not the user's.
MARKER_ENV = "NBOPS_MLFLOW_TRACKING_URI"
CATALOG_ENV = "NBOPS_CATALOG_URL"
#: The catalog setting that means "the SQLite file inside the store folder"
#: (the default; spelled out to override an inherited NBOPS_CATALOG_URL).
EMBEDDED_CATALOG = "embedded"


@dataclass(frozen=True)
class CatalogSetting:
    """A configured catalog and where the setting came from (for error messages).

    ``url`` may hold a password: never print it or store it; use
    :func:`nbops.core.catalog.public_url` or :func:`nbops.core.redact.redact_url`.
    """

    url: str
    source: str

    @property
    def embedded(self) -> bool:
        """Whether the setting asks for the SQLite file inside the store folder."""
        return self.url == EMBEDDED_CATALOG

    def __repr__(self) -> str:  # the URL may hold a password
        return f"CatalogSetting(source={self.source!r})"


def configured_catalog(
    explicit: str | None = None,
    start: str | os.PathLike[str] | None = None,
    environ: Mapping[str, str] | None = None,
) -> CatalogSetting | None:
    """The catalog asked for: ``catalog=``, else ``$NBOPS_CATALOG_URL``, else ``[tool.nbops] catalog``
    in the nearest ``pyproject.toml`` upward from ``start`` that has a ``[tool.nbops]`` table.

    None means nothing was configured: the store's own catalog (the embedded
    SQLite file of a new store). ``"embedded"`` asks for the SQLite file explicitly.
    """
    env = os.environ if environ is None else environ
    if explicit is not None:
        if not isinstance(explicit, str) or not explicit.strip():
            from nbops.errors import InvalidInputError

            raise InvalidInputError("catalog= must be a postgresql:// URL or 'embedded'")
        return CatalogSetting(explicit.strip(), "the catalog= argument")
    if env.get(CATALOG_ENV, "").strip():
        return CatalogSetting(env[CATALOG_ENV].strip(), f"${CATALOG_ENV}")
    here = Path(start if start is not None else os.getcwd()).resolve()
    for folder in (here, *here.parents):
        candidate = folder / "pyproject.toml"
        if not candidate.is_file():
            continue
        try:
            config = tomllib.loads(candidate.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
            continue  # not ours to judge: other tools report a broken pyproject.toml
        table = config.get("tool", {}).get("nbops")
        if not isinstance(table, dict):
            continue
        value = table.get("catalog")
        if value is None:
            return None
        source = f"[tool.nbops] catalog in {candidate}"
        if not isinstance(value, str) or not value.strip():
            from nbops.errors import StoreError

            raise StoreError(f"{source} must be a postgresql:// URL or 'embedded'")
        return CatalogSetting(value.strip(), source)
    return None


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


def without_password(uri: str) -> str:
    """``uri`` with its password and secret query values replaced by ``***``, for messages and files.

    See :func:`nbops.core.redact.redact_url` (``http://team:***@host``, ``?token=***``).
    """
    from nbops.core.redact import redact_url

    return redact_url(uri)


def runs_moved_to(root: Path) -> str | None:
    """Where ``nbops migrate --runs-to`` moved this store's runs, if it did (the URL, without password)."""
    from nbops.core import markers

    return markers.read(root, RUNS_MOVED_MARKER, RUNS_MOVED_KEY, "postgresql+psycopg://mlflow@db/mlflow")
