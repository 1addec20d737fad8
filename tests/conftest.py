"""Shared fixtures: a real store in ``tmp_path``, a frame with many dtypes, store state capture.

Helpers that are not fixtures (servers, the real shell, notebook builders)
are in ``helpers/``.

Every test runs without ``NBOPS_HOME`` so that a developer's own store is
never found, opened or written by the suite.
"""

from __future__ import annotations

import atexit
import gc
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

# Assertions in helpers/ report their values as the tests' do; registered before any helper is imported.
pytest.register_assert_rewrite("helpers")

import nbops
from helpers.stores import StoreState, capture_state, object_files
from nbops.store import Store

#: The PostgreSQL server's fixtures (``pg_server``, ``pg_database``, ``pg_url``), for every folder.
pytest_plugins = ["helpers.pgserver", "helpers.spark"]


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


@pytest.fixture
def store_state() -> Callable[[Store], StoreState]:
    """``store_state(store)`` captures catalog rows and files, to show an operation changed nothing."""
    return capture_state


@pytest.fixture
def objects_of() -> Callable[[Store], set[Path]]:
    """``objects_of(store)`` lists the object files on disk."""
    return object_files
