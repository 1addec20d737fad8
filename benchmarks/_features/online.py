"""Online lookups: latency of ``store.online_features`` and of the same rows read with raw sqlite3."""

from __future__ import annotations

import argparse
import json
import sqlite3
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

import nbops
from _features.data import KEY, ONLINE_GROUP, ONLINE_REFS


# -- online ---------------------------------------------------------------------------
def latest_version_id(db: sqlite3.Connection, group: str) -> int:
    """The catalog id of ``group``'s latest version."""
    return int(
        db.execute(
            "SELECT v.id FROM feature_group_versions v JOIN feature_groups g ON g.id = v.group_id "
            "WHERE g.name = ? ORDER BY v.version DESC LIMIT 1",
            (group,),
        ).fetchone()[0]
    )


def batch_lookup(db: sqlite3.Connection, version_id: int) -> Callable[[list[int]], dict[str, Any]]:
    """The raw sqlite3 baseline for many int keys: ``entity_key IN (...)`` 500 keys at a time, ``json.loads`` per row."""

    def lookup(keys: list[int]) -> dict[str, Any]:
        found: dict[str, Any] = {}
        for start in range(0, len(keys), 500):
            chunk = [json.dumps([k]) for k in keys[start : start + 500]]
            rows = db.execute(
                "SELECT entity_key, feature_values FROM online_features WHERE group_version_id = ? "
                f"AND entity_key IN ({','.join('?' * len(chunk))})",
                (version_id, *chunk),
            ).fetchall()
            found.update((e, json.loads(v)) for e, v in rows)
        return found

    return lookup


def raw_online(store: nbops.Store) -> Callable[[list[int]], dict[str, Any]] | None:
    """The indexed query on the online table with plain sqlite3 (None if the layout is not as expected)."""
    try:
        db = sqlite3.connect(f"file:{store.root / 'catalog.db'}?mode=ro", uri=True, check_same_thread=False)
        lookup = batch_lookup(db, latest_version_id(db, ONLINE_GROUP))
        lookup([0])
        return lookup
    except (sqlite3.Error, TypeError, IndexError) as exc:
        print(f"      raw sqlite3 baseline unavailable: {exc}")
        return None


def _percentiles(ns: list[int]) -> dict[str, float]:
    a = np.asarray(ns, dtype=np.float64) / 1e9
    return {
        "p50": float(np.percentile(a, 50)),
        "p99": float(np.percentile(a, 99)),
        "mean": float(a.mean()),
        "max": float(a.max()),
    }


def online_latencies(
    store: nbops.Store,
    raw: Callable[[list[int]], dict[str, Any]] | None,
    latest: pd.DataFrame,
    args: argparse.Namespace,
) -> dict[str, dict[str, Any]]:
    rng = np.random.default_rng([args.seed, 9])
    keys = latest.index.to_numpy()
    out: dict[str, dict[str, Any]] = {}
    for size, calls in ((1, max(args.online_calls, 1)), (args.online_batch, max(args.online_batch_calls, 1))):
        size = min(size, len(keys))
        batches = [[int(k) for k in rng.choice(keys, size, replace=False)] for _ in range(calls)]
        for batch in batches[: min(50, calls)]:  # warm-up: plan cache, SQLite pages
            store.online_features(ONLINE_REFS, keys={KEY: batch})
        ours_ns: list[int] = []
        raw_ns: list[int] = []
        for batch in batches:
            t0 = time.perf_counter_ns()
            frame = store.online_features(ONLINE_REFS, keys={KEY: batch})
            ours_ns.append(time.perf_counter_ns() - t0)
            if raw is not None:
                t0 = time.perf_counter_ns()
                raw(batch)
                raw_ns.append(time.perf_counter_ns() - t0)
        # Untimed check of the last answer against the latest row per key of the frame.
        expected = latest.loc[batch]
        assert len(frame) == len(batch) and frame[KEY].tolist() == batch
        assert np.allclose(frame["amount_mean"].to_numpy(dtype=float), expected["amount_mean"].to_numpy())
        assert (frame["n_tx"].to_numpy(dtype="int64") == expected["n_tx"].to_numpy()).all()
        result: dict[str, Any] = {"keys_per_call": size, "calls": calls, **_percentiles(ours_ns)}
        if raw_ns:
            result.update({f"raw_{k}": v for k, v in _percentiles(raw_ns).items()})
        out[str(args.online_batch) if size != 1 else "1"] = result
    return out
