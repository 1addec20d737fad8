"""A commit reads only the history its event times can touch, and its statistics when first asked for.

What a commit writes (``inserted``, ``updated``, ``total_rows``, unchanged or
not) is checked against an oracle that merges every row in pandas; what it
reads is shown by damaging the history it must not need (it still commits)
and the history it does need (it refuses, and stores nothing).
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import nbops
from nbops.core import columns
from nbops.errors import CorruptDataError
from nbops.featurestore.stats import feature_statistics

T0 = pd.Timestamp("2026-01-01", tz="UTC")


@pytest.fixture
def fs(tmp_path: Path) -> Iterator[nbops.Store]:
    with nbops.open(tmp_path / ".nbops") as store:
        yield store


@pytest.fixture
def small_row_groups(monkeypatch: pytest.MonkeyPatch) -> int:
    """Objects cut into row groups of 8 rows, so that small frames span many."""
    monkeypatch.setattr(columns, "ROW_GROUP_ROWS", 8)
    return 8


def frame(hours: list[int], cards: list[int], values: list[float]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "cc_num": np.array(cards, dtype=np.int64),
            "ts": T0 + pd.to_timedelta(np.array(hours, dtype=np.int64), unit="h"),
            "amount": np.array(values, dtype=np.float64),
        }
    )


def hourly(first: int, n: int, value: float = 1.0) -> pd.DataFrame:
    hours = list(range(first, first + n))
    return frame(hours, [h % 5 for h in hours], [value + h for h in hours])


def commit_objects(store: nbops.Store, commit: int, group: str = "tx") -> dict[str, Path]:
    """The object file of each column of commit ``commit`` of ``group``'s latest version."""
    db = sqlite3.connect(store.root / "catalog.db")
    try:
        rows = db.execute(
            "SELECT cc.name, cc.object_digest FROM feature_commit_columns cc "
            "JOIN feature_commits c ON c.id = cc.commit_id "
            "JOIN feature_group_versions v ON v.id = c.group_version_id "
            "JOIN feature_groups g ON g.id = v.group_id WHERE g.name = ? AND c.commit_no = ?",
            (group, commit),
        ).fetchall()
    finally:
        db.close()
    return {name: store.objects.path(digest) for name, digest in rows}


def catalog_rows(store: nbops.Store, sql: str) -> list[tuple[object, ...]]:
    db = sqlite3.connect(store.root / "catalog.db")
    try:
        return db.execute(sql).fetchall()
    finally:
        db.close()


def damage_row_group(path: Path, group: int) -> None:
    """Flip the bytes of the last quarter of one row group's pages (page data), leaving the footer intact."""
    meta = pq.ParquetFile(path).metadata.row_group(group).column(0)
    start = meta.dictionary_page_offset or meta.data_page_offset
    end = start + meta.total_compressed_size
    data = bytearray(path.read_bytes())
    for at in range(end - meta.total_compressed_size // 4, end):
        data[at] ^= 0xFF
    path.chmod(0o644)
    path.write_bytes(bytes(data))


# -- what a commit writes equals the whole-history merge --------------------------------------
batches = st.lists(
    st.tuples(
        st.lists(st.tuples(st.integers(0, 40), st.integers(0, 2)), min_size=0, max_size=20, unique=True),
        st.integers(0, 3),  # value seed
        st.booleans(),  # register an earlier batch again instead
    ),
    min_size=1,
    max_size=6,
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(batches)
def test_counts_and_state_equal_a_full_merge(
    tmp_path_factory: pytest.TempPathFactory, small_row_groups: int, plan: list[tuple[list[tuple[int, int]], int, bool]]
) -> None:
    oracle: dict[tuple[int, pd.Timestamp], float] = {}
    sent: list[pd.DataFrame] = []
    with nbops.open(tmp_path_factory.mktemp("store") / ".nbops") as store:
        for pairs, seed, again in plan:
            if again and sent:
                batch = sent[seed % len(sent)]
            else:
                batch = frame([h for h, _ in pairs], [c for _, c in pairs], [float(seed * 100 + h) for h, _ in pairs])
                sent.append(batch)
            keys = list(zip(batch["cc_num"].tolist(), batch["ts"].tolist(), strict=True))
            replaced = sum(k in oracle for k in keys)
            changes = any(oracle.get(k) != v for k, v in zip(keys, batch["amount"].tolist(), strict=True))
            first = not oracle and not catalog_rows(store, "SELECT 1 FROM feature_commits")
            ref = store.register_features(batch, "tx", keys="cc_num", event_time="ts")
            if not first and not changes:
                assert ref.unchanged, (pairs, oracle)
                continue
            assert not ref.unchanged
            oracle.update(zip(keys, batch["amount"].tolist(), strict=True))
            assert (ref.updated, ref.inserted, ref.total_rows) == (replaced, len(keys) - replaced, len(oracle))
        if oracle:
            got = store.features("tx")
            pairs_got = zip(got["cc_num"].tolist(), got["ts"].tolist(), strict=True)
            assert dict(zip(pairs_got, got["amount"].tolist(), strict=True)) == oracle


def test_objects_are_written_in_row_groups_with_page_checksums(fs: nbops.Store, small_row_groups: int) -> None:
    fs.register_features(hourly(0, 50), "tx", keys="cc_num", event_time="ts")
    for path in commit_objects(fs, 1).values():
        file = pq.ParquetFile(path)
        assert [file.metadata.row_group(i).num_rows for i in range(file.num_row_groups)] == [8] * 6 + [2]
        assert file.metadata.metadata[b"nbops.pages"] == b"crc32"
    bounds = catalog_rows(fs, "SELECT time_min_us, time_max_us FROM feature_commits")
    start_us = T0.value // 1000
    assert bounds == [(start_us, start_us + 49 * 3_600_000_000)]


# -- what a commit reads -------------------------------------------------------------------
def test_a_commit_after_the_history_reads_none_of_it(fs: nbops.Store) -> None:
    fs.register_features(hourly(0, 100), "tx", keys="cc_num", event_time="ts")
    fs.register_features(hourly(100, 100), "tx", keys="cc_num", event_time="ts")
    # Commit 1's event times are gone from disk (its card column is commit 2's too, content-addressed):
    # a commit whose times cannot touch it does not notice.
    commit_objects(fs, 1)["ts"].unlink()

    later = fs.register_features(hourly(300, 10), "tx", keys="cc_num", event_time="ts")
    assert (later.commit, later.inserted, later.updated, later.total_rows) == (3, 10, 0, 210)
    overlapping = fs.register_features(hourly(150, 10, value=9.0), "tx", keys="cc_num", event_time="ts")
    assert (overlapping.commit, overlapping.updated, overlapping.total_rows) == (4, 10, 210)
    # Reading the whole state still needs commit 1, and says so.
    with pytest.raises(CorruptDataError, match="is missing"):
        fs.features("tx")


def test_a_commit_into_damaged_history_refuses_and_stores_nothing(fs: nbops.Store, small_row_groups: int) -> None:
    fs.register_features(hourly(0, 64), "tx", keys="cc_num", event_time="ts")  # 8 row groups of 8 hours
    time_object = commit_objects(fs, 1)["ts"]
    damage_row_group(time_object, 2)  # hours 16..23
    before = catalog_rows(fs, "SELECT commit_no, total_rows FROM feature_commits")

    with pytest.raises(CorruptDataError, match=r"cannot be read .*tx:1@1"):
        fs.register_features(hourly(18, 3, value=5.0), "tx", keys="cc_num", event_time="ts")
    assert catalog_rows(fs, "SELECT commit_no, total_rows FROM feature_commits") == before

    # Rows whose hours miss the damaged row group commit, with the right counts.
    ref = fs.register_features(hourly(40, 3, value=5.0), "tx", keys="cc_num", event_time="ts")
    assert (ref.commit, ref.updated, ref.inserted) == (2, 3, 0)
    # `nbops verify` still finds the damage.
    report = fs.verify()
    assert not report.ok
    assert any(time_object.stem in o for o in report.mismatched_objects + report.unreadable_objects)


def test_history_written_before_page_checksums_is_read_whole_and_verified(
    fs: nbops.Store, small_row_groups: int
) -> None:
    fs.register_features(hourly(0, 40), "tx", keys="cc_num", event_time="ts")
    for path in commit_objects(fs, 1).values():
        # Rewrite each object as an older nbops did: the same column, no checksums, one row group.
        column = pq.read_table(path).column("v")
        path.chmod(0o644)
        pq.write_table(pa.table({"v": column}), path, compression="zstd")
    db = sqlite3.connect(fs.root / "catalog.db")
    with db:
        db.execute("UPDATE feature_commits SET time_min_us = NULL, time_max_us = NULL")
    db.close()

    ref = fs.register_features(hourly(30, 20, value=7.0), "tx", keys="cc_num", event_time="ts")
    assert (ref.updated, ref.inserted, ref.total_rows) == (10, 10, 50)
    again = fs.register_features(hourly(30, 20, value=7.0), "tx", keys="cc_num", event_time="ts")
    assert again.unchanged and again.commit == 2
    # A damaged legacy object is found by its digest, not trusted.
    damage_row_group(commit_objects(fs, 1)["cc_num"], 0)
    with pytest.raises(CorruptDataError, match="tx:1@1"):
        fs.register_features(hourly(5, 2, value=3.0), "tx", keys="cc_num", event_time="ts")


def test_registering_an_earlier_batch_again_is_no_commit_and_a_changed_one_is(fs: nbops.Store) -> None:
    first = hourly(0, 30)
    fs.register_features(first, "tx", keys="cc_num", event_time="ts")
    fs.register_features(hourly(30, 30), "tx", keys="cc_num", event_time="ts")
    again = fs.register_features(first.iloc[5:15], "tx", keys="cc_num", event_time="ts")
    assert again.unchanged and again.commit == 2
    changed = first.iloc[5:15].copy()
    changed.loc[changed.index[-1], "amount"] += 0.5
    ref = fs.register_features(changed, "tx", keys="cc_num", event_time="ts")
    assert (ref.unchanged, ref.commit, ref.updated, ref.total_rows) == (False, 3, 10, 60)


def test_far_timestamps_commit_without_bounds_and_are_still_compared(fs: nbops.Store) -> None:
    far = pa.table(
        {
            "k": pa.array([1, 2], pa.int64()),
            "t": pa.array([-(10**13), 10**13], pa.timestamp("s")),  # ±317,000 years: beyond int64 microseconds
            "x": pa.array([1.0, 2.0]),
        }
    )
    ref = fs.register_features(far, "far", keys="k", event_time="t")
    assert catalog_rows(fs, "SELECT time_min_us, time_max_us FROM feature_commits") == [(None, None)]
    update = fs.register_features(far.set_column(2, "x", pa.array([1.0, 5.0])), "far", keys="k", event_time="t")
    assert (ref.commit, update.commit, update.updated, update.total_rows) == (1, 2, 2, 2)


# -- statistics: computed when first asked for ---------------------------------------------------
def test_statistics_are_computed_on_first_use_and_kept(fs: nbops.Store) -> None:
    ref1 = fs.register_features(hourly(0, 30), "tx", keys="cc_num", event_time="ts")
    ref2 = fs.register_features(hourly(20, 30, value=100.0), "tx", keys="cc_num", event_time="ts")
    assert catalog_rows(fs, "SELECT statistics FROM feature_commits") == [(None,), (None,)]

    expected_2 = json.loads(
        json.dumps(feature_statistics(columns.arrow_from_pandas(fs.features("tx"), preserve_index=False), ["amount"]))
    )
    assert ref2.statistics == expected_2
    assert ref2.statistics["amount"]["count"] == 50
    stored = catalog_rows(fs, "SELECT commit_no, statistics FROM feature_commits ORDER BY commit_no")
    assert stored[0][1] is None and json.loads(stored[1][1]) == expected_2

    # An earlier commit's statistics are of the group as of that commit.
    as_of_1 = fs.features("tx", as_of=1)
    assert fs.feature_statistics("tx", commit=1) == ref1.statistics
    assert ref1.statistics["amount"]["count"] == len(as_of_1) == 30
    assert "amount" in ref2._repr_html_() and "statistics" in ref2._repr_html_()


def test_a_read_only_process_computes_statistics_without_storing_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with nbops.open(tmp_path / ".nbops") as store:
        store.register_features(hourly(0, 30), "tx", keys="cc_num", event_time="ts")
    monkeypatch.setenv("NBOPS_READONLY", "1")
    with nbops.open(tmp_path / ".nbops") as store:
        assert store.feature_statistics("tx")["amount"]["count"] == 30
        assert catalog_rows(store, "SELECT statistics FROM feature_commits") == [(None,)]
