"""The feature benchmark's data (spine and groups) and the operations compared: ours, raw DuckDB, merge_asof."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa

import nbops

KEY = "cc_num"
TIME = "ts"
LABEL = "label"
#: Feature columns of each group: name -> kind ("f" float64, "i" int64).
GROUPS: dict[str, dict[str, str]] = {
    "g1": {"amount_mean": "f", "amount_max": "f", "n_tx": "i"},
    "g2": {"risk_score": "f", "n_declines": "i"},
}
REFS = [f"{g}.*" for g in GROUPS]
ONLINE_GROUP = "tx_online"
ONLINE_REFS = [f"{ONLINE_GROUP}.amount_mean", f"{ONLINE_GROUP}.n_tx"]
START = np.datetime64("2024-01-01T00:00:00", "us")


# -- data ----------------------------------------------------------------------
def _times(rng: np.random.Generator, rows: int, days: int, unit: str) -> np.ndarray:
    offsets = rng.integers(0, days * 86_400_000_000, rows)  # microseconds
    times = START + offsets.astype("timedelta64[us]")
    return times.astype(f"datetime64[{unit}]")


def make_spine(rows: int, keys: int, days: int, seed: int, unit: str) -> pd.DataFrame:
    rng = np.random.default_rng([seed, 0])
    return pd.DataFrame(
        {
            KEY: rng.integers(0, keys, rows, dtype=np.int64),
            TIME: _times(rng, rows, days, unit),
            LABEL: rng.random(rows) < 0.05,
        }
    )


def make_group(name: str, rows: int, keys: int, days: int, seed: int, unit: str) -> tuple[pd.DataFrame, int]:
    """A group's frame and how many duplicate (key, time) rows were dropped."""
    rng = np.random.default_rng([seed, 1 + list(GROUPS).index(name)])
    columns: dict[str, Any] = {
        KEY: rng.integers(0, keys, rows, dtype=np.int64),
        TIME: _times(rng, rows, days, unit),
    }
    for feature, kind in GROUPS[name].items():
        if kind == "f":
            columns[feature] = np.round(rng.lognormal(3.0, 1.0, rows), 2)
        else:
            columns[feature] = rng.integers(0, 200, rows, dtype=np.int64)
    frame = pd.DataFrame(columns)
    deduped = frame.drop_duplicates(subset=[KEY, TIME], keep="last").reset_index(drop=True)
    return deduped, rows - len(deduped)


def register_groups(store: nbops.Store, groups: dict[str, pd.DataFrame], commits: int) -> dict[str, float]:
    """Register each group (in ``commits`` slices of its rows); seconds per group."""
    seconds = {}
    for name, frame in groups.items():
        t0 = time.perf_counter()
        for part in np.array_split(np.arange(len(frame)), max(1, commits)):
            store.register_features(frame.iloc[part], name, keys=[KEY], event_time=TIME)
        seconds[name] = time.perf_counter() - t0
    return seconds


# -- the operations compared -------------------------------------------------------
def ours(store: nbops.Store, spine: pd.DataFrame) -> pd.DataFrame:
    return store.training_data(spine, REFS, event_time=TIME)


def _duckdb_query(spine_columns: Sequence[str], order: bool = True) -> str:
    select = [f's."{c}"' for c in spine_columns]
    joins = []
    for i, (name, features) in enumerate(GROUPS.items(), 1):
        select += [f'f{i}."{f}"' for f in features]
        joins.append(f"ASOF LEFT JOIN {name} AS f{i} ON s.{KEY} = f{i}.{KEY} AND s.{TIME} >= f{i}.{TIME}")
    query = f"SELECT {', '.join(select)} FROM spine AS s {' '.join(joins)}"
    return query + (" ORDER BY s.__rn" if order else "")


def duckdb_pandas(spine: pd.DataFrame, groups: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """Raw DuckDB, pandas frames in, ``.df()`` out."""
    connection = duckdb.connect()
    try:
        connection.register("spine", spine.assign(__rn=np.arange(len(spine), dtype=np.int64)))
        for name, frame in groups.items():
            connection.register(name, frame)
        return connection.sql(_duckdb_query(list(spine.columns))).df()
    finally:
        connection.close()


def duckdb_arrow(spine: pd.DataFrame, groups: dict[str, pa.Table], order: bool = True) -> pd.DataFrame:
    """Raw DuckDB, Arrow tables in (the spine converted inside the time), Arrow out, then pandas."""
    connection = duckdb.connect()
    try:
        table = pa.Table.from_pandas(spine, preserve_index=False)
        table = table.append_column("__rn", pa.array(np.arange(len(spine), dtype=np.int64)))
        connection.register("spine", table)
        for name, group in groups.items():
            connection.register(name, group)
        return connection.sql(_duckdb_query(list(spine.columns), order)).to_arrow_table().to_pandas()
    finally:
        connection.close()


def merge_asof(spine: pd.DataFrame, groups: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """pandas.merge_asof, sorts and the restore of spine order included."""
    order = np.argsort(spine[TIME].to_numpy(), kind="stable")
    left = spine.take(order)
    for frame in groups.values():
        right = frame.sort_values(TIME, kind="stable")
        left = pd.merge_asof(left, right, on=TIME, by=KEY, direction="backward")
    result = left.take(np.argsort(order, kind="stable"))
    result.index = spine.index
    return result


def feature_names() -> list[str]:
    return [f for features in GROUPS.values() for f in features]


def mismatches(spine: pd.DataFrame, ours_frame: pd.DataFrame, other: pd.DataFrame) -> int:
    """Differing values (NaN/NA equal), or -1 when rows or spine columns differ."""
    if len(other) != len(spine) or len(ours_frame) != len(spine):
        return -1
    for c in spine.columns:
        if not np.array_equal(other[c].to_numpy(), spine[c].to_numpy()):
            return -1
    bad = 0
    for c in feature_names():
        a = ours_frame[c].astype("float64").to_numpy(na_value=np.nan)
        b = other[c].astype("float64").to_numpy(na_value=np.nan)
        bad += int((~((a == b) | (np.isnan(a) & np.isnan(b)))).sum())
    return bad
