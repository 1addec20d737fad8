"""Shared fixtures: a real store in ``tmp_path``, a frame with many dtypes, store state capture.

Every test runs without ``NBOPS_HOME`` so that a developer's own store is
never found, opened or written by the suite.
"""

from __future__ import annotations

import atexit
import contextlib
import gc
import hashlib
import sqlite3
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

import nbops
from nbops.store import Store

#: Catalog tables whose rows define what a store holds.
CATALOG_TABLES = ("alembic_version", "datasets", "objects", "snapshots", "snapshot_columns")
#: SQLite's own files change on reads and checkpoints; they are not store content.
_SQLITE_FILES = ("catalog.db", "catalog.db-wal", "catalog.db-shm", "catalog.db-journal")

StoreState = dict[str, Any]


@pytest.fixture(scope="session", autouse=True)
def _shells_close_once() -> Iterator[None]:
    """Close the suite's IPython shells together at the end.

    Each ``InteractiveShell`` registers an ``atexit`` handler that resets it
    (a full ``gc.collect()``) and ends its history session: with hundreds of
    test shells the interpreter's exit took minutes.  Their history threads are
    stopped and their handlers dropped here; nothing of theirs is needed later.
    """
    yield
    module = sys.modules.get("IPython.core.interactiveshell")
    if module is None:
        return
    for shell in [o for o in gc.get_objects() if isinstance(o, module.InteractiveShell)]:
        atexit.unregister(shell.atexit_operations)
        thread = getattr(shell.history_manager, "save_thread", None)
        if thread is not None:
            thread.stop()


@pytest.fixture(autouse=True)
def _no_nbops_home(monkeypatch: pytest.MonkeyPatch) -> None:
    """Store discovery must not see the environment of whoever runs the tests."""
    for name in ("NBOPS_HOME", "NBOPS_CATALOG_URL", "NBOPS_ONLINE_URL", "NBOPS_READONLY", "NBOPS_IDENTITY"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    """A new, empty store in ``tmp_path/.nbops`` (real SQLite catalog, real Parquet objects)."""
    s = nbops.open(tmp_path / ".nbops")
    try:
        yield s
    finally:
        s.close()


@pytest.fixture
def sample_df() -> pd.DataFrame:
    """Four rows covering the dtypes notebooks produce, each with a missing value where it can have one."""
    return pd.DataFrame(
        {
            "int_na": pd.array([1, None, -3, 2**40], dtype="Int64"),
            "str_na": pd.Series(["a", None, "", "ünï"], dtype="str"),
            "obj_str_na": pd.Series(["x", None, "", "y z"], dtype=object),
            "cat_ordered": pd.Categorical(
                ["low", "high", None, "low"], categories=["low", "mid", "high"], ordered=True
            ),
            "ts_paris": pd.to_datetime(
                ["2024-03-31 01:30:00", None, "2024-10-27 03:30:00", "2000-01-01 00:00:00.000001"],
                format="ISO8601",
            ).tz_localize("Europe/Paris"),
            "ts_naive": pd.to_datetime(
                ["2024-01-01 00:00:00", "1970-01-01 00:00:00", None, "2262-01-01 12:00:00.5"],
                format="ISO8601",
            ),
            "flag": [True, False, True, False],
            "flag_na": pd.array([True, None, False, True], dtype="boolean"),
            "float_nan": [1.5, np.nan, -0.0, 1e300],
            "u8": np.array([0, 255, 7, 128], dtype="uint8"),
        }
    )


def _file_fingerprint(path: Path) -> tuple[int, int, str]:
    st = path.stat()
    return st.st_size, st.st_mtime_ns, hashlib.sha256(path.read_bytes()).hexdigest()


def capture_state(store: Store) -> StoreState:
    """Every catalog row and every file (size, mtime, content hash) of a store."""
    files = {
        str(p.relative_to(store.root)): _file_fingerprint(p)
        for p in sorted(store.root.rglob("*"))
        if p.is_file() and p.name not in _SQLITE_FILES
    }
    conn = sqlite3.connect(f"file:{store.root / 'catalog.db'}?mode=ro", uri=True)
    try:
        rows = {t: sorted(conn.execute(f"SELECT * FROM {t}").fetchall(), key=repr) for t in CATALOG_TABLES}
    finally:
        conn.close()
    return {"files": files, "catalog": rows}


@pytest.fixture
def store_state() -> Callable[[Store], StoreState]:
    """``store_state(store)`` captures catalog rows and files, to show an operation changed nothing."""
    return capture_state


def object_files(store: Store) -> set[Path]:
    return set((store.root / "objects").rglob("*.parquet"))


@pytest.fixture
def objects_of() -> Callable[[Store], set[Path]]:
    """``objects_of(store)`` lists the object files on disk."""
    return object_files


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
            from mlflowstate import reset_mlflow

            reset_mlflow()
