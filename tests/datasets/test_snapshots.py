"""Snapshots against a real store: round trips, deduplication, history, refs, diffs, errors, verify and gc."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from nbops.core.hashing import column_digest, table_digest
from nbops.errors import IntegrityError, InvalidInputError, InvalidNameError, NbopsError, NotFoundError
from nbops.store import Store

StateOf = Callable[[Store], dict]
ObjectsOf = Callable[[Store], set[Path]]

SAMPLE_COLUMNS = [
    "int_na", "str_na", "obj_str_na", "cat_ordered", "ts_paris",
    "ts_naive", "flag", "flag_na", "float_nan", "u8",
]  # fmt: skip


def assert_exact(actual: pd.DataFrame, expected: pd.DataFrame) -> None:
    pd.testing.assert_frame_equal(
        actual, expected, check_exact=True, check_dtype=True, check_index_type=True, check_column_type=True
    )


# -- round trips -----------------------------------------------------------------------------
def test_sample_covers_every_parametrized_column(sample_df: pd.DataFrame) -> None:
    assert list(sample_df.columns) == SAMPLE_COLUMNS


def test_whole_sample_frame_round_trips_exactly(store: Store, sample_df: pd.DataFrame) -> None:
    ref = store.snapshot(sample_df, "sample")
    assert (ref.version, ref.rows, ref.columns, ref.new) == (1, 4, tuple(SAMPLE_COLUMNS), True)
    loaded = store.load("sample")
    assert_exact(loaded, sample_df)
    # missing values come back as the missing value of each dtype
    assert loaded["obj_str_na"][1] is None
    assert loaded["int_na"][1] is pd.NA and loaded["flag_na"][1] is pd.NA
    assert pd.isna(loaded["str_na"][1]) and loaded["ts_paris"][1] is pd.NaT
    assert np.signbit(loaded["float_nan"][2])  # -0.0 stays negative zero
    assert loaded["ts_paris"].dt.tz is not None and str(loaded["ts_paris"].dt.tz) == "Europe/Paris"
    assert loaded["cat_ordered"].cat.ordered and list(loaded["cat_ordered"].cat.categories) == ["low", "mid", "high"]


@pytest.mark.parametrize("column", SAMPLE_COLUMNS)
def test_each_dtype_round_trips_exactly_on_its_own(store: Store, sample_df: pd.DataFrame, column: str) -> None:
    frame = sample_df[[column]]
    store.snapshot(frame, "one")
    assert_exact(store.load("one"), frame)


def test_load_table_returns_the_arrow_table_that_was_stored(store: Store, sample_df: pd.DataFrame) -> None:
    expected = pa.Table.from_pandas(sample_df)  # before: the written frame then names its version in attrs
    store.snapshot(sample_df, "sample")
    table = store.load_table("sample")
    assert table.equals(expected, check_metadata=True)
    assert table_digest(table) == store.ref("sample").digest


def test_arrow_table_input_round_trips(store: Store) -> None:
    table = pa.table({"a": pa.array([1, None], pa.int32()), "b": pa.array(["x", None], pa.large_string())})
    store.snapshot(table, "arrow")
    assert store.load_table("arrow").equals(table, check_metadata=True)


def test_empty_frame_round_trips(store: Store) -> None:
    df = pd.DataFrame({"a": pd.Series([], dtype="Int64"), "b": pd.Series([], dtype=object)})
    ref = store.snapshot(df, "empty")
    assert ref.rows == 0
    assert_exact(store.load("empty"), df)


# -- index behaviour ---------------------------------------------------------------------------
def test_default_range_index_is_metadata_only_one_object_per_column(store: Store, objects_of: ObjectsOf) -> None:
    df = pd.DataFrame({"a": [1, 2, 3], "b": ["x", "y", "z"]})
    store.snapshot(df, "t")
    assert len(objects_of(store)) == 2
    loaded = store.load("t")
    assert isinstance(loaded.index, pd.RangeIndex) and loaded.index.equals(pd.RangeIndex(3))
    assert_exact(loaded, df)


def test_range_index_with_start_step_and_name_is_restored_as_range_index_without_extra_object(
    store: Store, objects_of: ObjectsOf
) -> None:
    df = pd.DataFrame({"a": [1, 2, 3]}, index=pd.RangeIndex(start=10, stop=40, step=10, name="r"))
    store.snapshot(df, "t")
    assert len(objects_of(store)) == 1
    loaded = store.load("t")
    assert isinstance(loaded.index, pd.RangeIndex)
    assert (loaded.index.start, loaded.index.stop, loaded.index.step, loaded.index.name) == (10, 40, 10, "r")
    assert_exact(loaded, df)


def test_named_index_is_stored_as_an_extra_column_and_restored(store: Store, objects_of: ObjectsOf) -> None:
    df = pd.DataFrame({"a": [1.0, 2.0, 3.0]}, index=pd.Index([30, 10, 20], name="key"))
    ref = store.snapshot(df, "t")
    assert len(objects_of(store)) == 2
    assert ref.columns == ("a", "key")  # the ref lists stored columns, index last
    assert_exact(store.load("t"), df)


def test_unnamed_non_range_index_is_stored_as_index_level_column_and_restored_unnamed(store: Store) -> None:
    df = pd.DataFrame({"a": [1, 2]}, index=pd.Index(["p", "q"]))
    ref = store.snapshot(df, "t")
    assert ref.columns == ("a", "__index_level_0__")
    loaded = store.load("t")
    assert loaded.index.name is None
    assert_exact(loaded, df)


def test_multiindex_levels_and_names_are_restored(store: Store, objects_of: ObjectsOf) -> None:
    index = pd.MultiIndex.from_tuples([("2024-01-01", 1), ("2024-01-01", 2), ("2024-01-02", 1)], names=["day", None])
    df = pd.DataFrame({"a": [1, 2, 3]}, index=index)
    store.snapshot(df, "t")
    assert len(objects_of(store)) == 3
    assert_exact(store.load("t"), df)


def test_tz_aware_datetime_index_is_restored_with_its_zone(store: Store) -> None:
    index = pd.DatetimeIndex(["2024-03-31 01:00", "2024-03-31 03:00"], name="at").tz_localize("Europe/Paris")
    df = pd.DataFrame({"a": [1, 2]}, index=index)
    store.snapshot(df, "t")
    assert_exact(store.load("t"), df)


def test_same_values_with_another_range_index_is_a_new_version(store: Store, objects_of: ObjectsOf) -> None:
    df = pd.DataFrame({"a": [1, 2, 3]})
    store.snapshot(df, "t")
    files = objects_of(store)
    ref = store.snapshot(df.set_axis(pd.RangeIndex(100, 103)), "t")
    assert (ref.version, ref.new, ref.bytes_written) == (2, True, 0)
    assert objects_of(store) == files
    assert store.load("t").index.start == 100


def test_object_dtype_index_round_trips_exactly(store: Store) -> None:
    df = pd.DataFrame({"a": [1, 2]}, index=pd.Index(["x", None], dtype=object, name="k"))
    store.snapshot(df, "t")
    loaded = store.load("t")
    assert loaded.index.dtype == object and loaded.index[1] is None


def test_object_dtype_column_with_integer_label_round_trips_exactly(store: Store) -> None:
    df = pd.DataFrame({0: pd.Series(["x", None], dtype=object), 1: [1, 2]})
    store.snapshot(df, "t")
    loaded = store.load("t")
    assert loaded[0].dtype == object and loaded[0][1] is None


# -- deduplication, versions, history ------------------------------------------------------
def test_same_content_twice_is_the_same_version_and_writes_nothing(
    store: Store, sample_df: pd.DataFrame, store_state: StateOf
) -> None:
    first = store.snapshot(sample_df, "s", message="first")
    before = store_state(store)
    again = store.snapshot(sample_df.copy(), "s", message="ignored: nothing new")
    assert again.new is False
    assert (again.version, again.digest, again.bytes_written) == (1, first.digest, 0)
    assert "unchanged" in again.summary()
    assert store_state(store) == before  # no file written or touched, no catalog row
    assert list(store.history("s")["version"]) == [1]


def test_changing_one_column_writes_exactly_one_new_object(
    store: Store, sample_df: pd.DataFrame, objects_of: ObjectsOf
) -> None:
    v1 = store.snapshot(sample_df, "s")
    files_v1 = objects_of(store)
    assert len(files_v1) == len(SAMPLE_COLUMNS)
    changed = sample_df.copy()
    changed.loc[2, "u8"] = 8
    v2 = store.snapshot(changed, "s")
    new_files = objects_of(store) - files_v1
    assert len(new_files) == 1
    (new_file,) = new_files
    assert (v2.version, v2.new) == (2, True)
    assert v2.bytes_written == new_file.stat().st_size
    assert v1.bytes_written == sum(p.stat().st_size for p in files_v1)
    assert new_file.name == column_digest(pa.array(changed["u8"])) + ".parquet"
    assert_exact(store.load("s", 1), sample_df)
    assert_exact(store.load("s", 2), changed)


def test_revert_to_old_content_is_a_new_version_that_writes_no_bytes(
    store: Store, sample_df: pd.DataFrame, objects_of: ObjectsOf
) -> None:
    v1 = store.snapshot(sample_df, "s")
    changed = sample_df.assign(flag=~sample_df["flag"])
    v2 = store.snapshot(changed, "s")
    files = objects_of(store)
    v3 = store.snapshot(sample_df, "s", message="revert")
    assert (v3.version, v3.new, v3.bytes_written) == (3, True, 0)
    assert v3.digest == v1.digest != v2.digest
    assert objects_of(store) == files
    assert_exact(store.load("s"), sample_df)


def test_same_content_under_two_names_shares_objects(store: Store, objects_of: ObjectsOf) -> None:
    df = pd.DataFrame({"a": [1, 2], "b": [3.0, 4.0]})
    store.snapshot(df, "one")
    files = objects_of(store)
    ref = store.snapshot(df, "two")
    assert (ref.version, ref.new, ref.bytes_written) == (1, True, 0)
    assert objects_of(store) == files


def test_history_lists_every_version_oldest_first(store: Store) -> None:
    frames = [pd.DataFrame({"a": list(range(n))}) for n in (1, 2, 3)]
    refs = [store.snapshot(f, "h", message=f"v{i}") for i, f in enumerate(frames, start=1)]
    hist = store.history("h")
    assert list(hist.columns) == [
        "version", "digest", "rows", "columns", "created", "message", "author", "bytes_written",
    ]  # fmt: skip
    assert list(hist["version"]) == [1, 2, 3]
    assert list(hist["digest"]) == [r.digest for r in refs]
    assert list(hist["rows"]) == [1, 2, 3]
    assert list(hist["message"]) == ["v1", "v2", "v3"]
    assert hist["created"].is_monotonic_increasing
    assert str(hist["created"].dt.tz) == "UTC"


def test_load_by_ref_string_and_by_version_argument_agree(store: Store) -> None:
    frames = [pd.DataFrame({"a": [i, i + 1]}) for i in (1, 2, 3)]
    for f in frames:
        store.snapshot(f, "r")
    assert_exact(store.load("r@2"), frames[1])
    assert_exact(store.load("r", 2), frames[1])
    assert_exact(store.load("r", "2"), frames[1])
    assert_exact(store.load("r@2", 2), frames[1])
    assert_exact(store.load("r@1"), frames[0])
    for latest in (store.load("r"), store.load("r@latest"), store.load("r@")):
        assert_exact(latest, frames[2])
    assert store.ref("r@2").ref == "r@2"
    assert store.ref("r").version == 3


def test_datasets_lists_each_name_with_its_latest_version(store: Store) -> None:
    store.snapshot(pd.DataFrame({"a": [1]}), "b_set")
    store.snapshot(pd.DataFrame({"a": [1, 2]}), "b_set")
    store.snapshot(pd.DataFrame({"a": [1], "b": [2]}), "a_set")
    listing = store.datasets()
    assert list(listing["name"]) == ["a_set", "b_set"]
    assert list(listing["versions"]) == [1, 2]
    assert list(listing["rows"]) == [1, 2]
    assert list(listing["columns"]) == [2, 1]


# -- diff ------------------------------------------------------------------------------------
@pytest.fixture
def diffed(store: Store) -> Store:
    """v1 -> v2: id 5 removed, id 6 added, id 2 edited; ids 1, 3, 4 untouched."""
    v1 = pd.DataFrame({"id": [1, 2, 3, 4, 5], "x": pd.array([10, 20, 30, 40, 50], dtype="Int64")})
    v2 = pd.DataFrame({"id": [1, 2, 3, 4, 6], "x": pd.array([10, 21, 30, 40, 60], dtype="Int64")})
    store.snapshot(v1, "d")
    store.snapshot(v2, "d")
    return store


def test_diff_without_keys_counts_an_edit_as_one_removed_and_one_added(diffed: Store) -> None:
    d = diffed.diff("d")
    assert (d.a, d.b, d.rows_a, d.rows_b) == (1, 2, 5, 5)
    assert (d.added, d.removed, d.changed, d.unchanged) == (2, 2, 0, 3)
    assert d.schema_changes == () and not d.identical
    assert d.summary() == "vs v1: +2 rows, -2 rows"


def test_diff_with_keys_counts_an_edit_as_changed(diffed: Store) -> None:
    d = diffed.diff("d", keys="id")
    assert (d.added, d.removed, d.changed, d.unchanged) == (1, 1, 1, 3)
    assert d.keys == ("id",)
    assert d.summary() == "vs v1: +1 rows, -1 rows, ~1 changed"
    assert diffed.diff("d", 1, 2, keys=["id"]) == d
    assert diffed.diff("d@2", keys=("id",)) == d


def test_diff_counts_value_to_null_and_null_to_value_as_changes(store: Store) -> None:
    v1 = pd.DataFrame({"id": [1, 2, 3], "x": pd.array([1, None, 3], dtype="Int64")})
    v2 = pd.DataFrame({"id": [1, 2, 3], "x": pd.array([None, 2, 3], dtype="Int64")})
    store.snapshot(v1, "n")
    store.snapshot(v2, "n")
    d = store.diff("n", keys="id")
    assert (d.added, d.removed, d.changed, d.unchanged) == (0, 0, 2, 1)
    d = store.diff("n")
    assert (d.added, d.removed, d.changed, d.unchanged) == (2, 2, 0, 1)


def test_diff_without_keys_treats_rows_as_a_multiset(store: Store) -> None:
    store.snapshot(pd.DataFrame({"a": [1, 1, 1, 2]}), "m")
    store.snapshot(pd.DataFrame({"a": [2, 1, 3, 3]}), "m")
    d = store.diff("m")
    assert (d.added, d.removed, d.unchanged) == (2, 2, 2)


def test_diff_reports_added_removed_and_retyped_columns(store: Store) -> None:
    store.snapshot(pd.DataFrame({"id": [1, 2], "gone": ["a", "b"], "n": [1, 2]}), "s")
    store.snapshot(pd.DataFrame({"id": [1, 2], "n": [1.0, 2.5], "new": [True, False]}), "s")
    d = store.diff("s", keys="id")
    changes = {(c.column, c.change, c.before, c.after) for c in d.schema_changes}
    assert changes == {
        ("gone", "removed", "large_string", None),  # pandas 3 str
        ("new", "added", None, "bool"),
        ("n", "type", "int64", "double"),
    }
    # with no shared value column left, matching keys count as unchanged rows
    assert (d.added, d.removed, d.changed, d.unchanged) == (0, 0, 0, 2)
    assert "columns -gone, +new, n int64->double" in d.summary()


def test_diff_of_identical_versions_is_identical(store: Store) -> None:
    df = pd.DataFrame({"a": [1, 2]})
    store.snapshot(df, "same")
    store.snapshot(pd.DataFrame({"a": [3]}), "same")
    store.snapshot(df, "same")
    d = store.diff("same", 1, 3)
    assert d.identical and d.summary() == "no changes against v1"


def test_diff_errors_name_the_problem_and_change_nothing(diffed: Store, store_state: StateOf) -> None:
    diffed.snapshot(pd.DataFrame({"a": [1]}), "single")
    before = store_state(diffed)
    with pytest.raises(InvalidInputError, match=r"key column 'nope' is not in both versions; columns in v1: id, x"):
        diffed.diff("d", keys="nope")
    with pytest.raises(NotFoundError, match=r"only version 1; there is nothing to compare with"):
        diffed.diff("single")
    with pytest.raises(NotFoundError, match=r"snapshot 'd' has no version 7; it has versions 1\.\.2"):
        diffed.diff("d", 7, 2)
    assert store_state(diffed) == before


# -- error paths -----------------------------------------------------------------------------
@pytest.fixture
def populated(store: Store) -> Store:
    store.snapshot(pd.DataFrame({"a": [1, 2]}), "alpha")
    store.snapshot(pd.DataFrame({"a": [1, 2, 3]}), "alpha")
    store.snapshot(pd.DataFrame({"b": ["x"]}), "beta")
    return store


def test_unknown_name_lists_the_known_names(populated: Store, store_state: StateOf) -> None:
    before = store_state(populated)
    for call in (populated.load, populated.load_table, populated.ref, populated.history, populated.diff):
        with pytest.raises(NotFoundError) as info:
            call("gamma")
        assert str(info.value) == "no snapshot named 'gamma'; known: alpha, beta"
    assert store_state(populated) == before


def test_unknown_name_in_an_empty_store_says_none_yet(store: Store) -> None:
    with pytest.raises(NotFoundError, match=r"^no snapshot named 'x'; known: none yet$"):
        store.load("x")


def test_unknown_version_states_the_versions_there_are(populated: Store, store_state: StateOf) -> None:
    before = store_state(populated)
    for args in (("alpha", 3), ("alpha@3",), ("alpha", "3")):
        with pytest.raises(NotFoundError, match=r"^snapshot 'alpha' has no version 3; it has versions 1\.\.2$"):
            populated.load(*args)
    assert store_state(populated) == before


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ([1, 2, 3], r"needs a pandas DataFrame or a pyarrow Table, not list$"),
        ({"a": [1, 2]}, r"needs a pandas DataFrame or a pyarrow Table, not dict$"),
        (pd.Series([1, 2], name="a"), r"not Series \(a Series: use series.to_frame\(\)\)$"),
        (None, r"not NoneType$"),
        (np.array([[1, 2]]), r"not ndarray$"),
    ],
    ids=["list", "dict", "Series", "None", "ndarray"],
)
def test_non_dataframe_input_is_rejected_and_changes_nothing(
    populated: Store, store_state: StateOf, data: object, message: str
) -> None:
    before = store_state(populated)
    with pytest.raises(InvalidInputError, match=message) as info:
        populated.snapshot(data, "alpha")  # type: ignore[arg-type]
    assert isinstance(info.value, NbopsError) and isinstance(info.value, TypeError)
    with pytest.raises(InvalidInputError):
        populated.snapshot(data, "brand_new")  # type: ignore[arg-type]
    assert store_state(populated) == before


def test_duplicate_column_names_are_rejected_and_change_nothing(populated: Store, store_state: StateOf) -> None:
    before = store_state(populated)
    df = pd.DataFrame([[1, 2, 3]], columns=["a", "b", "a"])
    with pytest.raises(InvalidInputError, match=r"^column names must be unique; repeated: a$"):
        populated.snapshot(df, "alpha")
    assert store_state(populated) == before


def test_mixed_type_object_column_is_rejected_with_a_hint(populated: Store, store_state: StateOf) -> None:
    before = store_state(populated)
    df = pd.DataFrame({"a": pd.Series([1, "x"], dtype=object)})
    with pytest.raises(InvalidInputError, match=r"cannot be stored as columns: .*astype\(str\)"):
        populated.snapshot(df, "alpha")
    assert store_state(populated) == before


def test_non_str_message_is_rejected(populated: Store, store_state: StateOf) -> None:
    before = store_state(populated)
    with pytest.raises(InvalidInputError, match=r"message must be a str, not int"):
        populated.snapshot(pd.DataFrame({"a": [9]}), "alpha", message=5)  # type: ignore[arg-type]
    assert store_state(populated) == before


@pytest.mark.parametrize("ref", ["@x", "alpha@x", "alpha@1.5", "alpha@-1", "alpha@v2"])
def test_bad_ref_names_the_version_rule(populated: Store, store_state: StateOf, ref: str) -> None:
    before = store_state(populated)
    with pytest.raises(InvalidNameError, match=r"the part after '@' must be a version number") as info:
        populated.load(ref)
    assert info.value.rule == "version"
    assert store_state(populated) == before


def test_ref_without_a_name_is_rejected_as_empty(populated: Store) -> None:
    with pytest.raises(InvalidNameError) as info:
        populated.load("@2")
    assert info.value.rule == "empty"


@pytest.mark.parametrize(("ref", "version"), [("alpha@0", None), ("alpha", 0), ("alpha", -1), ("alpha@1", 2)])
def test_impossible_version_is_an_nbops_error(populated: Store, ref: str, version: int | None) -> None:
    with pytest.raises(NbopsError, match="version"):
        populated.load(ref, version)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (pd.DataFrame(index=pd.RangeIndex(3)), "this DataFrame has no columns; a snapshot needs at least one"),
        (pd.DataFrame(), "this DataFrame has no columns"),
        (pa.table({}), "this table has no columns; a snapshot needs at least one"),
    ],
    ids=["rows-no-columns", "empty", "arrow"],
)
def test_frame_without_columns_is_rejected_and_changes_nothing(
    populated: Store, store_state: StateOf, data: object, message: str
) -> None:
    before = store_state(populated)
    with pytest.raises(InvalidInputError, match=message):
        populated.snapshot(data, "no_columns")  # type: ignore[arg-type]
    assert store_state(populated) == before


# -- verify ----------------------------------------------------------------------------------
def _version_objects(store: Store, name: str) -> list[Path]:
    import sqlite3

    conn = sqlite3.connect(store.root / "catalog.db")
    try:
        digests = [
            d
            for (d,) in conn.execute(
                "SELECT c.object_digest FROM snapshot_columns c JOIN snapshots s ON s.id = c.snapshot_id "
                "JOIN datasets d ON d.id = s.dataset_id WHERE d.name = ? ORDER BY s.version, c.position",
                (name,),
            )
        ]
    finally:
        conn.close()
    return [store.objects.path(d) for d in digests]


def test_verify_is_ok_on_a_good_store(store: Store, sample_df: pd.DataFrame) -> None:
    store.snapshot(sample_df, "s")
    store.snapshot(sample_df.assign(u8=sample_df["u8"] + 1), "s")
    store.snapshot(pd.DataFrame({"a": [1]}), "t")
    report = store.verify()
    assert report.ok
    assert (report.objects_checked, report.versions_checked) == (len(SAMPLE_COLUMNS) + 2, 3)
    assert report.text().startswith(f"checked {len(SAMPLE_COLUMNS) + 2} objects and 3 versions: OK")
    report.raise_for_problems()


def test_verify_reports_an_object_rewritten_with_other_valid_content(store: Store) -> None:
    store.snapshot(pd.DataFrame({"a": [1, 2, 3], "b": [4, 5, 6]}), "s")
    victim = _version_objects(store, "s")[0]
    pq.write_table(pa.table({"v": pa.array([1, 2, 4])}), victim)  # valid Parquet, wrong content
    report = store.verify()
    assert not report.ok
    assert len(report.mismatched_objects) == 1 and str(victim) in report.mismatched_objects[0]
    assert report.unreadable_objects == [] and report.missing_objects == []
    assert "object content does not match its digest" in report.text()
    with pytest.raises(IntegrityError, match="PROBLEMS FOUND"):
        report.raise_for_problems()


def test_verify_reports_a_truncated_object_as_unreadable(store: Store) -> None:
    store.snapshot(pd.DataFrame({"a": [1, 2, 3], "b": [4, 5, 6]}), "s")
    victim = _version_objects(store, "s")[1]
    data = victim.read_bytes()
    victim.write_bytes(data[: len(data) // 2])
    report = store.verify()
    assert not report.ok
    assert len(report.unreadable_objects) == 1 and report.unreadable_objects[0].startswith(str(victim))
    assert report.mismatched_objects == []
    assert "object cannot be read" in report.text()


def test_verify_reports_a_missing_object(store: Store) -> None:
    store.snapshot(pd.DataFrame({"a": [1, 2, 3]}), "s")
    victim = _version_objects(store, "s")[0]
    victim.unlink()
    report = store.verify()
    assert not report.ok and len(report.missing_objects) == 1 and victim.stem in report.missing_objects[0]


def test_verify_lists_orphans_and_tmp_files_without_failing(store: Store) -> None:
    store.snapshot(pd.DataFrame({"a": [1]}), "s")
    orphan = _write_orphan(store, pa.array([7, 8, 9]))
    tmp = _write_tmp(store)
    report = store.verify()
    assert report.ok
    assert report.orphans == [str(orphan)] and report.tmp_files == [str(tmp)]


# -- gc --------------------------------------------------------------------------------------
def _write_orphan(store: Store, values: pa.Array) -> Path:
    """An object file with no catalog row, as a writer killed before its commit leaves it."""
    path = store.objects.path(column_digest(values))
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table({"v": values}), path)
    return path


def _write_tmp(store: Store) -> Path:
    tmp = store.root / "tmp" / "0123.999.abcdef01.tmp"
    tmp.parent.mkdir(parents=True, exist_ok=True)
    tmp.write_bytes(b"half a parquet file")
    return tmp


def _age(path: Path, seconds: float) -> None:
    past = time.time() - seconds
    os.utime(path, (past, past))


def test_gc_keeps_recent_orphans_and_tmp_files_with_the_default_grace(store: Store, store_state: StateOf) -> None:
    df = pd.DataFrame({"a": [1, 2]})
    store.snapshot(df, "s")
    orphan, tmp = _write_orphan(store, pa.array([7, 8, 9])), _write_tmp(store)
    before = store_state(store)
    report = store.gc()
    assert sorted(report.kept_recent) == sorted([str(orphan), str(tmp)])
    assert report.removed_orphans == [] and report.removed_tmp == [] and report.bytes_freed == 0
    assert "kept 2 recent files" in report.text()
    assert store_state(store) == before


def test_gc_with_zero_grace_removes_orphans_and_tmp_files_and_keeps_referenced_objects(
    store: Store, objects_of: ObjectsOf
) -> None:
    df = pd.DataFrame({"a": [1, 2], "b": ["x", "y"]})
    store.snapshot(df, "s")
    referenced = objects_of(store)
    orphan, tmp = _write_orphan(store, pa.array([7, 8, 9])), _write_tmp(store)
    size = orphan.stat().st_size + tmp.stat().st_size

    dry = store.gc(grace_seconds=0, dry_run=True)
    assert (dry.removed_orphans, dry.removed_tmp, dry.bytes_freed) == ([str(orphan)], [str(tmp)], size)
    assert dry.text().startswith("would remove 1 orphan objects and 1 temporary files")
    assert orphan.exists() and tmp.exists()

    report = store.gc(grace_seconds=0)
    assert (report.removed_orphans, report.removed_tmp, report.bytes_freed) == ([str(orphan)], [str(tmp)], size)
    assert not orphan.exists() and not tmp.exists()
    assert objects_of(store) == referenced
    assert store.verify().ok
    assert_exact(store.load("s"), df)
    assert store.gc(grace_seconds=0).removed_orphans == []


def test_gc_with_default_grace_removes_old_orphans_only(store: Store) -> None:
    store.snapshot(pd.DataFrame({"a": [1]}), "s")
    old, recent = _write_orphan(store, pa.array([1, 2, 3])), _write_orphan(store, pa.array([4, 5, 6]))
    _age(old, 3600)
    report = store.gc()
    assert report.removed_orphans == [str(old)] and report.kept_recent == [str(recent)]
    assert not old.exists() and recent.exists()


def test_a_snapshot_that_reuses_an_orphan_object_registers_it(store: Store, objects_of: ObjectsOf) -> None:
    df = pd.DataFrame({"a": [7, 8, 9]})
    orphan = _write_orphan(store, pa.array(df["a"]))
    ref = store.snapshot(df, "s")
    assert ref.bytes_written == 0 and objects_of(store) == {orphan}
    assert store.gc(grace_seconds=0).removed_orphans == []
    assert store.verify().ok
    assert_exact(store.load("s"), df)


def test_reusing_an_old_orphan_refreshes_it_so_gc_grace_protects_the_writer(store: Store) -> None:
    """A writer that finds its object already on disk must renew it before committing,
    or a concurrent gc could delete it between the writer's check and its catalog commit."""
    df = pd.DataFrame({"a": [7, 8, 9]})
    orphan = _write_orphan(store, pa.array(df["a"]))
    _age(orphan, 3600)
    store.snapshot(df, "s")
    assert not store.objects.older_than(orphan, 60)
