"""Online lookups on the embedded store: the fast path answers exactly as before, and never from a stale plan.

``online_features`` caches what a list of references resolves to (the plan)
and builds its frame without the generic constructor's per-call costs; these
tests hold it to the frame the straightforward route builds (one ``json.loads``
per row, an Arrow array per feature, ``pd.DataFrame(dict)``), for every
feature type with and without missing keys, and show that a commit or a new
group version made by another process is seen by the very next lookup.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

import nbops
from nbops.featurestore import serving

KEYS = [1, 2, 3, 4]


@pytest.fixture
def store(tmp_path: Path) -> Iterator[nbops.Store]:
    with nbops.open(tmp_path / ".nbops") as opened:
        yield opened


def typed_frame() -> pd.DataFrame:
    """One row per key, a feature column of each kind, missing values in most."""
    return pd.DataFrame(
        {
            "cc_num": KEYS,
            "ts": pd.to_datetime(["2026-01-01", "2026-01-02", "2026-01-03", "2026-01-04"], utc=True),
            "f64": [1.5, np.nan, -0.0, 1e300],
            "f32": np.array([1.5, 2.25, np.nan, 4.0], dtype=np.float32),
            "i64": np.array([1, -2, 2**62, 4], dtype=np.int64),
            "i32": np.array([1, 2, 3, 4], dtype=np.int32),
            "u8": np.array([0, 255, 3, 4], dtype=np.uint8),
            "flag": [True, False, True, False],
            "nullable_int": pd.array([1, None, 3, 4], dtype="Int64"),
            "text": ["a", None, "ü", "d"],
            "kind": pd.Categorical(["x", "y", "x", None]),
            "when": pd.to_datetime(["2026-05-01 10:00", None, "2026-05-03 00:00", "2026-05-04 00:00"], utc=True),
            "naive": pd.to_datetime(
                [
                    "2026-05-01 10:00:00.000000001",
                    "2026-05-02 00:00:00.000000000",
                    None,
                    "2026-05-04 00:00:00.000000000",
                ]
            ),
        }
    )


def straightforward(store: nbops.Store, refs: Sequence[str], keys: dict[str, list[Any]]) -> pd.DataFrame:
    """The lookup as it was built before the fast path: the oracle for dtypes, values and missing keys."""
    reader = store.online_reader()
    columns: dict[str, Any] = dict(keys)
    for group_plan in serving.plan(reader, list(refs), frozenset(keys)):
        entity_keys = serving._entity_keys(group_plan, keys)
        found = reader.fetch(group_plan, entity_keys)
        rows = [json.loads(found[e]) if e in found else None for e in entity_keys]
        for feature, output in group_plan.outputs.items():
            i = group_plan.positions[feature]
            array = pa.array([r[i] if r is not None else None for r in rows], type=group_plan.stored_types[feature])
            if array.type != group_plan.types[feature]:
                array = array.cast(group_plan.types[feature])
            series = serving._to_series(array)
            series.index = pd.RangeIndex(len(series))
            columns[output] = series
    return pd.DataFrame(columns)


def assert_identical(got: pd.DataFrame, expected: pd.DataFrame) -> None:
    pd.testing.assert_frame_equal(got, expected, check_exact=True, check_column_type=True, check_index_type=True)
    assert list(got.dtypes) == list(expected.dtypes)
    assert got.columns.dtype == expected.columns.dtype and got.columns.name is None
    assert isinstance(got.index, pd.RangeIndex)


@pytest.mark.parametrize(
    "asked",
    [[3], [4, 1, 2, 3], [99], [3, 99, 1, 3], [], [2] * 3],
    ids=["one", "all", "absent", "some-absent-and-repeated", "none", "repeated"],
)
def test_online_frames_are_the_straightforward_frames(store: nbops.Store, asked: list[int]) -> None:
    store.register_features(typed_frame(), "typed", keys="cc_num", event_time="ts", online=True)
    for refs in (["typed.*"], ["typed.f64", "typed.i64"], ["typed.flag", "typed.text", "typed.when"]):
        got = store.online_features(refs, keys={"cc_num": asked})
        assert_identical(got, straightforward(store, refs, {"cc_num": list(asked)}))


def test_integer_features_become_nullable_only_when_a_key_is_missing(store: nbops.Store) -> None:
    store.register_features(typed_frame(), "typed", keys="cc_num", event_time="ts", online=True)
    present = store.online_features(["typed.i64", "typed.f64", "typed.flag"], keys={"cc_num": [2, 1]})
    assert [str(t) for t in present.dtypes] == ["int64", "int64", "float64", "bool"]
    assert present["i64"].tolist() == [-2, 1] and present["f64"].isna().tolist() == [True, False]
    missing = store.online_features(["typed.i64", "typed.f64", "typed.flag"], keys={"cc_num": [2, 7]})
    assert [str(t) for t in missing.dtypes] == ["int64", "Int64", "float64", "boolean"]
    assert missing["i64"].isna().tolist() == [False, True] and missing["f64"].isna().all()


def test_each_frame_has_labels_of_its_own(store: nbops.Store) -> None:
    store.register_features(typed_frame(), "typed", keys="cc_num", event_time="ts", online=True)
    first = store.online_features(["typed.f64"], keys={"cc_num": [1]})
    first.columns.name = "renamed in place"
    first["extra"] = 1.0
    second = store.online_features(["typed.f64"], keys={"cc_num": [1]})
    assert second.columns.name is None and list(second.columns) == ["cc_num", "f64"]


COMMIT_FROM_ANOTHER_PROCESS = """
import sys
import pandas as pd
import nbops

root, amount, version, extra = sys.argv[1], float(sys.argv[2]), int(sys.argv[3]), sys.argv[4] == "extra"
frame = pd.DataFrame({"cc_num": [1, 2], "ts": pd.Timestamp("2030-01-01", tz="UTC"), "amount": [amount, amount + 1]})
if extra:
    frame["bonus"] = [10, 20]
with nbops.open(root) as store:
    store.register_features(frame, "tx", keys="cc_num", event_time="ts", online=True, version=version)
"""


def commit_elsewhere(store: nbops.Store, amount: float, version: int = 1, extra: bool = False) -> None:
    """Register a row per key in a separate Python process (its own catalog connections)."""
    command = [sys.executable, "-c", COMMIT_FROM_ANOTHER_PROCESS, str(store.root), str(amount), str(version)]
    done = subprocess.run([*command, "extra" if extra else "-"], capture_output=True, timeout=180, check=False)
    assert done.returncode == 0, done.stderr.decode()[-2000:]


def test_a_commit_from_another_process_is_seen_by_the_next_lookup(store: nbops.Store) -> None:
    first = pd.DataFrame({"cc_num": [1, 2], "ts": pd.Timestamp("2026-01-01", tz="UTC"), "amount": [1.0, 2.0]})
    store.register_features(first, "tx", keys="cc_num", event_time="ts", online=True)
    for _ in range(3):  # the plan is cached and reused
        assert store.online_features(["tx.amount"], keys={"cc_num": [1]})["amount"].tolist() == [1.0]
    assert len(store.online_reader().plans) == 1
    commit_elsewhere(store, 50.0)  # a later row for the same version: same plan, new data
    assert store.online_features(["tx.amount"], keys={"cc_num": [1, 2]})["amount"].tolist() == [50.0, 51.0]
    commit_elsewhere(store, 60.0)
    assert store.online_features(["tx.amount"], keys={"cc_num": [2]})["amount"].tolist() == [61.0]


def test_a_new_group_version_from_another_process_replaces_the_cached_plan(store: nbops.Store) -> None:
    first = pd.DataFrame({"cc_num": [1, 2], "ts": pd.Timestamp("2026-01-01", tz="UTC"), "amount": [1.0, 2.0]})
    store.register_features(first, "tx", keys="cc_num", event_time="ts", online=True)
    before = store.online_features("tx.*", keys={"cc_num": [2, 1]})
    assert list(before.columns) == ["cc_num", "amount"] and before["amount"].tolist() == [2.0, 1.0]
    commit_elsewhere(store, 70.0, version=2, extra=True)  # version 2 adds a column
    after = store.online_features("tx.*", keys={"cc_num": [2, 1]})
    assert list(after.columns) == ["cc_num", "amount", "bonus"]
    assert after["amount"].tolist() == [71.0, 70.0] and after["bonus"].tolist() == [20, 10]
    pinned = store.online_features(["tx:1.amount"], keys={"cc_num": [1]})
    assert pinned["amount"].tolist() == [1.0]  # the old version still serves its own rows


def test_a_new_group_version_in_this_process_replaces_the_cached_plan(store: nbops.Store) -> None:
    first = pd.DataFrame({"cc_num": [1], "ts": pd.Timestamp("2026-01-01", tz="UTC"), "amount": [1.0]})
    store.register_features(first, "tx", keys="cc_num", event_time="ts", online=True)
    assert store.online_features(["tx.amount"], keys={"cc_num": [1]})["amount"].tolist() == [1.0]
    second = first.assign(amount=np.array([5], dtype=np.int64))  # float -> int: a new version
    store.register_features(second, "tx", keys="cc_num", event_time="ts", online=True, version=2)
    got = store.online_features(["tx.amount"], keys={"cc_num": [1]})
    assert got["amount"].tolist() == [5] and str(got["amount"].dtype) == "int64"


@pytest.mark.parametrize("damage", ["[1.5],[9.9]", "[1.5", "[1.5, 2.5]", "7"])
def test_a_damaged_online_row_is_an_error_not_a_shift_of_the_rows_after_it(store: nbops.Store, damage: str) -> None:
    import sqlite3

    from nbops.errors import CorruptDataError

    frame = pd.DataFrame({"k": [1, 2, 3], "ts": pd.to_datetime(["2026-01-01"] * 3, utc=True), "x": [1.5, 2.5, 3.5]})
    store.register_features(frame, "g", keys="k", event_time="ts", online=True)
    assert store.online_features(["g.x"], keys={"k": [1, 2, 3]})["x"].tolist() == [1.5, 2.5, 3.5]
    db = sqlite3.connect(store.root / "catalog.db")
    with db:
        db.execute("UPDATE online_features SET feature_values = ? WHERE entity_key = ?", (damage, json.dumps([1])))
    changed = db.total_changes
    db.close()
    assert changed == 1
    with pytest.raises(CorruptDataError, match="online rows of g:1 are damaged"):
        store.online_features(["g.x"], keys={"k": [1, 2, 3]})


def test_date_time_and_duration_features_are_served_as_stored(store: nbops.Store) -> None:
    import datetime as dt

    table = pa.table(
        {
            "k": pa.array([1, 2, 1], pa.int64()),
            "ts": pa.array([dt.datetime(2026, 1, d, tzinfo=dt.UTC) for d in (1, 1, 2)], pa.timestamp("us", "UTC")),
            "day": pa.array([dt.date(2026, 3, 8), None, dt.date(1969, 12, 31)], pa.date32()),
            "day64": pa.array([dt.date(2026, 3, 8), dt.date(2000, 1, 1), None], pa.date64()),
            "opens": pa.array([dt.time(9, 30), dt.time(23, 59, 59), None], pa.time32("s")),
            "closes": pa.array([dt.time(17, 0, 0, 5), None, dt.time(0, 0)], pa.time64("us")),
            "wait": pa.array([dt.timedelta(seconds=90), None, dt.timedelta(days=-1)], pa.duration("ms")),
        }
    )
    store.register_features(table, "dates", keys="k", event_time="ts", online=True)
    features = ["day", "day64", "opens", "closes", "wait"]
    got = store.online_features([f"dates.{f}" for f in features], keys={"k": [1, 2, 3]})
    latest = store.features("dates").sort_values("ts").groupby("k").tail(1).set_index("k")
    for feature in features:
        pd.testing.assert_series_equal(
            got[feature].iloc[:2].reset_index(drop=True),
            latest.loc[[1, 2], feature].reset_index(drop=True),
            check_names=False,
            obj=feature,
        )
        assert pd.isna(got[feature].iloc[2])  # key 3 is unknown


def test_nanosecond_event_times_serve_the_latest_row_to_the_nanosecond(store: nbops.Store) -> None:
    # Rows one nanosecond apart, in either order, and before 1970 (where truncating would round up).
    frame = pd.DataFrame(
        {
            "k": [1, 1, 2, 2, 3],
            "ts": pd.to_datetime(
                [
                    "2026-03-01 00:00:00.000000001",
                    "2026-03-01 00:00:00.000000000",
                    "1960-01-01 00:00:00.000000998",
                    "1960-01-01 00:00:00.000000999",
                    "2026-03-01 00:00:00.000001999",
                ]
            ),
            "x": [1.0, 2.0, 3.0, 4.0, 5.0],
        }
    )
    store.register_features(frame, "nanos", keys="k", event_time="ts", online=True)
    assert store.online_features(["nanos.x"], keys={"k": [1, 2, 3]})["x"].tolist() == [1.0, 4.0, 5.0]
    assert store.features("nanos")["ts"].tolist() == frame["ts"].tolist()  # offline keeps the nanoseconds
    # A later commit wins with a row a nanosecond later, and loses with one a microsecond earlier.
    later = frame.iloc[[0]].assign(ts=pd.Timestamp("2026-03-01 00:00:00.000000002"), x=9.0)
    store.register_features(later, "nanos", keys="k", event_time="ts", online=True)
    assert store.online_features(["nanos.x"], keys={"k": [1]})["x"].tolist() == [9.0]
    older = frame.iloc[[4]].assign(ts=pd.Timestamp("2026-03-01 00:00:00.000000999"), x=7.0)
    store.register_features(older, "nanos", keys="k", event_time="ts", online=True)
    assert store.online_features(["nanos.x"], keys={"k": [3]})["x"].tolist() == [5.0]  # an older microsecond
