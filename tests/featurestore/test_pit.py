"""Point-in-time joins: each promise by hand, then a property test against a brute-force oracle.

The oracle loops over spine rows in plain Python and picks, among feature rows
with equal (non-null) keys, the greatest event time at or before the spine
time (ties on the time: the last row of the table), within the ttl.  The
property test reports mismatches and leaked future values; both must be 0.
"""

from __future__ import annotations

import datetime
import doctest
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import nbops.featurestore.pit
from nbops.errors import InvalidInputError
from nbops.featurestore.pit import FeatureSource, point_in_time_join

DAY = datetime.timedelta(days=1)

#: Both ways the engine keeps ties deterministic: the row number inside a composite
#: order key (when it fits in 63 bits), or a GROUP BY first (forced by a limit of 0).
ROUTES = pytest.mark.parametrize(
    "order_key_limit", [nbops.featurestore.pit._ORDER_KEY_LIMIT, 0], ids=["composite-key", "group-by"]
)


@contextmanager
def route(order_key_limit: int) -> Iterator[None]:
    saved = nbops.featurestore.pit._ORDER_KEY_LIMIT
    nbops.featurestore.pit._ORDER_KEY_LIMIT = order_key_limit
    try:
        yield
    finally:
        nbops.featurestore.pit._ORDER_KEY_LIMIT = saved


def times(*values: str | None, tz: str | None = None, unit: str = "us") -> pd.DatetimeIndex:
    """Timestamps written as UTC wall times, shown in ``tz`` (naive when None), at ``unit``."""
    index = pd.to_datetime(list(values), utc=True, format="ISO8601").as_unit(unit)
    return index.tz_localize(None) if tz is None else index.tz_convert(tz)


def arrow_times(*values: str | None, tz: str | None = None, unit: str = "us") -> pa.Array:
    # Built from naive UTC then cast: a naive timestamp cast to a zone keeps its
    # integer, i.e. the same instant (and pyarrow warns on zoned pandas input).
    naive = pa.array(times(*values, unit=unit))
    return naive if tz is None else naive.cast(pa.timestamp(unit, tz))


def values(frame: pd.DataFrame, column: str) -> list[Any]:
    """A column as a list with every missing value as None."""
    return [None if pd.isna(v) else v for v in frame[column].tolist()]


@pytest.fixture
def clicks() -> pa.Table:
    """User 1 has rows on Jan 1 and Jan 3, user 2 on Jan 10 only."""
    return pa.table(
        {
            "user": [1, 1, 2],
            "ts": arrow_times("2024-01-01", "2024-01-03", "2024-01-10"),
            "n": [10, 30, 200],
        }
    )


def clicks_source(table: pa.Table, **kwargs: Any) -> FeatureSource:
    return FeatureSource(table, ("user",), "ts", {"n": "clicks"}, **kwargs)


# -- which row matches -----------------------------------------------------------
def test_each_spine_row_gets_the_latest_row_at_or_before_its_time(clicks: pa.Table) -> None:
    spine = pd.DataFrame(
        {
            "user": [1, 1, 1, 1, 2],
            "ts": times("2023-12-31", "2024-01-01", "2024-01-02", "2024-02-01", "2024-01-11"),
        }
    )
    out = point_in_time_join(spine, "ts", [clicks_source(clicks)])
    assert values(out, "clicks") == [None, 10, 10, 30, 200]


def test_a_feature_row_at_exactly_the_spine_time_counts(clicks: pa.Table) -> None:
    spine = pd.DataFrame({"user": [1, 2], "ts": times("2024-01-03", "2024-01-10")})
    out = point_in_time_join(spine, "ts", [clicks_source(clicks)])
    assert out["clicks"].tolist() == [30, 200]
    assert out["clicks"].dtype == np.dtype("int64")  # nothing missing: the dtype stays


@ROUTES
def test_the_last_row_matches_at_exactly_the_spine_time_whatever_the_table_size(
    order_key_limit: int,
) -> None:
    spine = pd.DataFrame({"user": [1], "ts": times("2024-01-02")})
    for size in range(1, 10):  # sizes 2, 4, 8 fill the row-number bits of an order key
        table = pa.table(
            {
                "user": [1] * size,
                "ts": arrow_times(*["2024-01-01"] * (size - 1), "2024-01-02"),
                "n": list(range(size)),
            }
        )
        with route(order_key_limit):
            out = point_in_time_join(spine, "ts", [clicks_source(table)])
        assert out["clicks"].tolist() == [size - 1], size


@ROUTES
def test_rows_tied_on_keys_and_time_resolve_to_the_last_row_of_the_table(
    order_key_limit: int,
) -> None:
    table = pa.table(
        {
            "user": [1, 1, 1, 2, 2],
            "ts": arrow_times("2024-01-01", "2024-01-01", "2024-01-01", "2024-01-01", "2024-01-01"),
            "n": [1, 2, 3, 4, 5],
        }
    )
    spine = pd.DataFrame({"user": [1, 2], "ts": times("2024-01-02", "2024-01-01")})
    for _ in range(5):  # the same answer every time, whatever the join's internal order
        with route(order_key_limit):
            out = point_in_time_join(spine, "ts", [clicks_source(table)])
        assert out["clicks"].tolist() == [3, 5]


@ROUTES
def test_ties_resolve_the_same_way_on_every_run_at_scale(order_key_limit: int) -> None:
    # DuckDB's own ASOF join takes whichever tied row its threads sorted last, so
    # the same query can answer differently run to run (duckdb/duckdb#25536).
    i = np.arange(200_000)
    table = pa.table({"user": i % 50, "ts": pa.array((i // 4) % 1000, pa.timestamp("s")), "n": i})
    j = np.arange(5_000)
    spine = pd.DataFrame({"user": j % 50, "ts": pd.to_datetime((j * 7) % 1000, unit="s").as_unit("s")})
    # Expected without a join engine: the last row of each (user, second), then
    # for each spine row the latest such second at or before its time.
    last = table.to_pandas().groupby(["user", "ts"])["n"].max()
    by_user = {
        user: (group.index.get_level_values("ts").to_numpy(), group.to_numpy())
        for user, group in last.groupby(level="user")
    }
    expected = []
    for user, when in zip(spine["user"], spine["ts"].to_numpy(), strict=True):
        seconds, rows = by_user[user]
        at = np.searchsorted(seconds, when, side="right") - 1
        expected.append(int(rows[at]) if at >= 0 else None)
    for _ in range(3):
        with route(order_key_limit):
            out = point_in_time_join(spine, "ts", [clicks_source(table)])
        assert values(out, "clicks") == expected


def test_keys_never_seen_or_seen_only_later_give_nulls_and_keep_the_row(clicks: pa.Table) -> None:
    spine = pd.DataFrame({"user": [3, 2, 1], "ts": times("2024-01-05", "2024-01-05", "2024-01-05")})
    out = point_in_time_join(spine, "ts", [clicks_source(clicks)])
    assert len(out) == 3
    assert values(out, "clicks") == [None, None, 30]
    assert out["clicks"].dtype == pd.Int64Dtype()  # an int that gained nulls: nullable, not float


def test_null_keys_and_null_spine_times_give_nulls(clicks: pa.Table) -> None:
    spine = pd.DataFrame(
        {
            "user": pd.array([None, 1, 1], dtype="Int64"),
            "ts": times("2024-01-05", None, "2024-01-05"),
        }
    )
    with_null_key = clicks.append_column("dummy", pa.array([0, 0, 0])).set_column(
        0, "user", pa.array([None, 1, 2], pa.int64())
    )
    out = point_in_time_join(spine, "ts", [clicks_source(with_null_key)])
    assert values(out, "clicks") == [
        None,
        None,
        30,
    ]  # a null feature key does not match a null spine key


def test_a_spine_key_column_that_is_all_null_gives_nulls(clicks: pa.Table) -> None:
    spine = pd.DataFrame({"user": [None, None], "ts": times("2024-01-05", "2024-01-05")})
    out = point_in_time_join(spine, "ts", [clicks_source(clicks)])
    assert values(out, "clicks") == [None, None]


def test_spine_order_index_duplicates_and_columns_are_kept(clicks: pa.Table) -> None:
    spine = pd.DataFrame(
        {
            "user": [2, 1, 1, 2, 1],
            "ts": times("2024-01-11", "2024-01-02", "2024-01-02", "2024-01-11", "2024-01-05"),
            "label": pd.array([True, None, False, True, False], dtype="boolean"),
            "note": pd.Series(["a", None, "c", "a", "e"], dtype="str"),
        },
        index=pd.Index(["x", "y", "y", "x", "z"], name="event"),
    )
    before = spine.copy(deep=True)
    out = point_in_time_join(spine, "ts", [clicks_source(clicks)])
    pd.testing.assert_frame_equal(spine, before)  # the input is not touched
    pd.testing.assert_frame_equal(out[list(spine.columns)], spine)  # values, dtypes, index
    assert list(out.columns) == [*spine.columns, "clicks"]
    assert out["clicks"].tolist() == [200, 10, 10, 200, 30]


@ROUTES
def test_ttl_drops_rows_older_than_spine_time_minus_ttl(clicks: pa.Table, order_key_limit: int) -> None:
    spine = pd.DataFrame(
        {
            "user": [1, 1, 1, 2],
            "ts": times("2024-01-04", "2024-01-05", "2024-01-05 00:00:01", "2024-01-10"),
        }
    )
    with route(order_key_limit):
        out = point_in_time_join(spine, "ts", [clicks_source(clicks, ttl=2 * DAY)])
        zero = point_in_time_join(spine, "ts", [clicks_source(clicks, ttl=0 * DAY)])
    # Jan 3 is 1 day, exactly 2 days, and 2 days + 1 s before the spine times.
    assert values(out, "clicks") == [30, 30, None, 200]
    assert values(zero, "clicks") == [None, None, None, 200]


@ROUTES
def test_times_at_the_ends_of_the_int64_range(order_key_limit: int) -> None:
    # ns timestamps span 1677..2262; differences across that range overflow int64.
    table = pa.table(
        {
            "user": [1, 1],
            "ts": arrow_times("1677-09-22", "2024-01-01", unit="ns"),
            "n": [1677, 2024],
        }
    )
    spine = pd.DataFrame(
        {
            "user": [1, 1, 1],
            "ts": times("1677-09-21 00:12:44", "2262-04-11", "2000-01-01", unit="ns"),
        }
    )
    with route(order_key_limit):
        out = point_in_time_join(spine, "ts", [clicks_source(table)])
        late = point_in_time_join(spine, "ts", [clicks_source(table.slice(1, 1))])
        # 1677 minus 2255 overflows int64 nanoseconds (and wraps to a small positive number).
        far = pa.table({"user": [1], "ts": arrow_times("2255-01-01", unit="ns"), "n": [2255]})
        far_out = point_in_time_join(spine, "ts", [clicks_source(far)])
        aged = point_in_time_join(spine, "ts", [clicks_source(table.slice(0, 1), ttl=datetime.timedelta.max)])
        seconds = point_in_time_join(
            spine.assign(ts=spine["ts"].dt.as_unit("s")),
            "ts",
            [clicks_source(table.slice(0, 1), ttl=datetime.timedelta(days=120_000))],
        )
    assert values(out, "clicks") == [None, 2024, 1677]
    assert values(late, "clicks") == [None, 2024, None]
    assert values(far_out, "clicks") == [None, 2255, None]
    assert values(aged, "clicks") == [None, 1677, 1677]
    assert values(seconds, "clicks") == [None, None, 1677]  # 2000 is 323 years on: < 328


@ROUTES
def test_ttl_keeps_nanosecond_precision(order_key_limit: int) -> None:
    table = pa.table({"user": [1], "ts": arrow_times("2024-01-01", unit="ns"), "n": [1]})
    spine = pd.DataFrame(
        {
            "user": [1, 1],
            "ts": times("2024-01-01 00:00:00.000000001", "2024-01-01 00:00:00.000000002", unit="ns"),
        }
    )
    with route(order_key_limit):
        out = point_in_time_join(spine, "ts", [clicks_source(table, ttl=pd.Timedelta(1, "ns"))])
    assert values(out, "clicks") == [1, None]


def test_coarse_or_narrow_times_take_the_composite_key_and_others_the_group_by() -> None:
    rows = 1 << 20
    spine = pa.chunked_array([pa.array([0], pa.int64())])
    hourly = pa.chunked_array([pa.array(np.arange(rows, dtype=np.int64) * 3_600 * 10**9)])
    assert nbops.featurestore.pit._composite_order(hourly, spine) is not None  # 1M hours in ns: step 1 h
    random_ns = np.random.default_rng(0).integers(0, 10 * 365 * 86_400 * 10**9, rows)
    ns_decade = pa.chunked_array([pa.array(random_ns)])
    assert nbops.featurestore.pit._composite_order(ns_decade, spine) is None  # 2**58 ns x 2**20 rows


def test_multi_column_keys() -> None:
    table = pa.table(
        {
            "user": [1, 1, 2],
            "shop": ["a", "b", "a"],
            "ts": arrow_times("2024-01-01", "2024-01-01", "2024-01-01"),
            "spent": [1.5, 2.5, 3.5],
        }
    )
    spine = pd.DataFrame({"shop": ["b", "a", "a", "c"], "user": [1, 1, 2, 1], "ts": times(*["2024-01-02"] * 4)})
    out = point_in_time_join(spine, "ts", [FeatureSource(table, ("user", "shop"), "ts", {"spent": "spent"})])
    assert values(out, "spent") == [2.5, 1.5, 3.5, None]


@pytest.mark.parametrize("spine_dtype", ["str", "object", "category"])
@pytest.mark.parametrize("table_type", [pa.string(), pa.large_string(), pa.dictionary(pa.int32(), pa.string())])
def test_string_keys(spine_dtype: str, table_type: pa.DataType) -> None:
    table = pa.table(
        {
            "city": pa.array(["oslo", "lima", "oslo"]).cast(table_type),
            "ts": arrow_times("2024-01-01", "2024-01-01", "2024-01-02"),
            "temp": [1.0, 20.0, 2.0],
        }
    )
    spine = pd.DataFrame(
        {
            "city": pd.Series(["lima", "oslo", None, "rome"], dtype=spine_dtype),
            "ts": times(*["2024-01-05"] * 4),
        }
    )
    out = point_in_time_join(spine, "ts", [FeatureSource(table, "city", "ts", ["temp"])])
    assert values(out, "temp") == [20.0, 2.0, None, None]


def test_a_source_without_keys_joins_on_time_only() -> None:
    table = pa.table({"ts": arrow_times("2024-01-01", "2024-01-03"), "rate": [1.1, 1.3]})
    spine = pd.DataFrame({"ts": times("2023-12-31", "2024-01-02", "2024-01-09")})
    out = point_in_time_join(spine, "ts", [FeatureSource(table, (), "ts", {"rate": "rate"})])
    assert values(out, "rate") == [None, 1.1, 1.3]


# -- time zones and units --------------------------------------------------------------
ZONES = [None, "UTC", "Asia/Kolkata", "America/New_York", "Pacific/Chatham"]


@pytest.mark.parametrize("spine_tz", ZONES)
@pytest.mark.parametrize("table_tz", ZONES)
def test_times_compare_as_instants_across_zones(spine_tz: str | None, table_tz: str | None) -> None:
    # Kolkata is UTC+5:30: read as wall clocks, 10:00 there would look later than 05:00 UTC.
    table = pa.table(
        {
            "user": [1, 1],
            "ts": arrow_times("2024-01-01 04:59:59", "2024-01-01 05:00:01", tz=table_tz),
            "n": [1, 2],
        }
    )
    spine = pd.DataFrame({"user": [1], "ts": times("2024-01-01 05:00:00", tz=spine_tz)})
    out = point_in_time_join(spine, "ts", [clicks_source(table)])
    assert out["clicks"].tolist() == [1]


@pytest.mark.parametrize("spine_unit", ["s", "ms", "us", "ns"])
@pytest.mark.parametrize("table_unit", ["s", "ms", "us", "ns"])
def test_time_units_can_differ(spine_unit: str, table_unit: str) -> None:
    table = pa.table(
        {
            "user": [1, 1, 1],
            "ts": arrow_times("2024-01-01 00:00:00", "2024-01-01 00:00:01", "2024-01-01 00:00:02", unit=table_unit),
            "n": [0, 1, 2],
        }
    )
    spine = pd.DataFrame(
        {
            "user": [1, 1],
            "ts": times("2024-01-01 00:00:01", "2024-01-01 00:00:01.999", tz="UTC", unit=spine_unit),
        }
    )
    out = point_in_time_join(spine, "ts", [clicks_source(table)])
    assert out["clicks"].tolist() == [1, 1]


def test_one_nanosecond_later_does_not_leak_into_a_microsecond_spine() -> None:
    table = pa.table(
        {
            "user": [1, 1],
            "ts": arrow_times("2024-01-01", "2024-01-01 00:00:00.000001001", unit="ns"),
            "n": [0, 1],
        }
    )
    spine = pd.DataFrame({"user": [1], "ts": times("2024-01-01 00:00:00.000001", unit="us")})
    out = point_in_time_join(spine, "ts", [clicks_source(table)])
    assert out["clicks"].tolist() == [0]


def test_spine_with_arrow_backed_timestamps(clicks: pa.Table) -> None:
    spine = pd.DataFrame(
        {
            "user": pd.Series([1, 2], dtype="int64[pyarrow]"),
            "ts": pd.arrays.ArrowExtensionArray(arrow_times("2024-01-02", "2024-01-11", tz="Asia/Kolkata")),
        }
    )
    out = point_in_time_join(spine, "ts", [clicks_source(clicks)])
    assert out["clicks"].tolist() == [10, 200]
    assert out["ts"].dtype == spine["ts"].dtype


def test_an_arrow_spine_is_accepted(clicks: pa.Table) -> None:
    spine = pa.table({"user": [1, 2], "ts": arrow_times("2024-01-02", "2024-01-11", tz="Europe/Paris")})
    out = point_in_time_join(spine, "ts", [clicks_source(clicks)])
    pd.testing.assert_frame_equal(out[["user", "ts"]], spine.to_pandas())
    assert out["clicks"].tolist() == [10, 200]


# -- output columns and their dtypes ----------------------------------------------------
def test_feature_dtypes_are_kept_and_ints_that_gain_nulls_become_nullable() -> None:
    frame = pd.DataFrame(
        {
            "user": [1, 2],
            "ts": times("2024-01-01", "2024-01-01"),
            "i64": np.array([1, 2], dtype="int64"),
            "u8": np.array([1, 255], dtype="uint8"),
            "flag": [True, False],
            "f32": np.array([0.5, 1.5], dtype="float32"),
            "text": pd.Series(["a", "b"], dtype="str"),
            "cat": pd.Categorical(["lo", "hi"], categories=["lo", "hi"], ordered=True),
            "naive": times("2023-06-01", "2023-07-01", unit="s"),
            "declared_int": pd.array([1, 2], dtype="Int64"),
            "declared_bool": pd.array([True, None], dtype="boolean"),
            "declared_float": pd.array([0.25, None], dtype="Float64"),
        }
    )
    # A zoned column goes in as Arrow: pyarrow's conversion of zoned pandas columns warns.
    table = pa.Table.from_pandas(frame, preserve_index=False).append_column(
        "when", arrow_times("2023-06-01", "2023-07-01", tz="Europe/Paris")
    )
    frame["when"] = table.column("when").to_pandas()
    features = {c: c for c in frame.columns if c not in ("user", "ts")}
    source = FeatureSource(table, ("user",), "ts", features)
    matched = pd.DataFrame({"user": [2, 1], "ts": times("2024-01-02", "2024-01-02")})
    out = point_in_time_join(matched, "ts", [source])
    for column in features:  # nothing missing: every dtype as the source had it
        assert out[column].dtype == frame[column].dtype, column
    assert out["u8"].tolist() == [255, 1]
    assert out["cat"].cat.categories.tolist() == ["lo", "hi"] and out["cat"].cat.ordered

    partly = pd.DataFrame({"user": [2, 3], "ts": times("2024-01-02", "2024-01-02")})
    out = point_in_time_join(partly, "ts", [source])
    expected = {
        "i64": pd.Int64Dtype(),
        "u8": pd.UInt8Dtype(),
        "flag": pd.BooleanDtype(),
        "f32": np.dtype("float32"),
        "text": frame["text"].dtype,
        "cat": frame["cat"].dtype,
        "when": frame["when"].dtype,
        "naive": frame["naive"].dtype,
        "declared_int": pd.Int64Dtype(),
        "declared_bool": pd.BooleanDtype(),
        "declared_float": pd.Float64Dtype(),
    }
    for column, dtype in expected.items():
        assert out[column].dtype == dtype, column
        assert out[column].isna().tolist() == [
            column in ("declared_bool", "declared_float"),
            True,
        ], column
    assert out["i64"].iloc[0] == 2 and out["u8"].iloc[0] == 255 and not out["flag"].iloc[0]
    assert out["text"].iloc[0] == "b" and out["cat"].iloc[0] == "hi"
    assert out["when"].iloc[0] == pd.Timestamp("2023-07-01", tz="UTC")


def test_arrow_nulls_in_an_int_feature_give_nullable_ints() -> None:
    table = pa.table(
        {
            "user": [1, 2],
            "ts": arrow_times("2024-01-01", "2024-01-01"),
            "n": pa.array([None, 5], pa.int32()),
        }
    )
    spine = pd.DataFrame({"user": [1, 2], "ts": times("2024-01-02", "2024-01-02")})
    out = point_in_time_join(spine, "ts", [clicks_source(table)])
    assert out["clicks"].dtype == pd.Int32Dtype()
    assert values(out, "clicks") == [None, 5]


def test_several_sources_append_columns_in_the_order_given(clicks: pa.Table) -> None:
    views = pa.table(
        {
            "user": ["1", "2"],
            "at": arrow_times("2024-01-01 12:00", "2024-01-01 12:00", tz="Asia/Kolkata", unit="ns"),
            "n": [7, 8],
            "page": ["home", "cart"],
        }
    )
    spine = pd.DataFrame({"user": [1, 2], "ts": times("2024-01-11", "2024-01-11"), "uid": ["1", "2"]})
    sources = [
        FeatureSource(
            views.rename_columns(["uid", "at", "n", "page"]),
            ("uid",),
            "at",
            {"page": "page", "n": "views"},
        ),
        FeatureSource(clicks, ("user",), "ts", {"n": "clicks", "ts": "clicks_time"}),
    ]
    out = point_in_time_join(spine, "ts", sources)
    assert list(out.columns) == ["user", "ts", "uid", "page", "views", "clicks", "clicks_time"]
    assert out["views"].tolist() == [7, 8] and out["clicks"].tolist() == [30, 200]
    assert out["clicks_time"].tolist() == [pd.Timestamp("2024-01-03"), pd.Timestamp("2024-01-10")]


def test_no_sources_empty_spine_and_empty_feature_table(clicks: pa.Table) -> None:
    spine = pd.DataFrame({"user": [1], "ts": times("2024-01-05")})
    pd.testing.assert_frame_equal(point_in_time_join(spine, "ts", []), spine)

    empty_spine = spine.iloc[:0]
    out = point_in_time_join(empty_spine, "ts", [clicks_source(clicks)])
    assert len(out) == 0 and out["clicks"].dtype == np.dtype("int64")

    out = point_in_time_join(spine, "ts", [clicks_source(clicks.slice(0, 0))])
    assert values(out, "clicks") == [None] and out["clicks"].dtype == pd.Int64Dtype()


def test_a_chunked_feature_table_gives_the_same_result(clicks: pa.Table) -> None:
    chunked = pa.Table.from_batches(clicks.to_batches(max_chunksize=1))
    spine = pd.DataFrame({"user": [1, 1, 2, 3], "ts": times("2024-01-02", "2024-01-04", "2024-01-11", "2024-01-11")})
    pd.testing.assert_frame_equal(
        point_in_time_join(spine, "ts", [clicks_source(chunked)]),
        point_in_time_join(spine, "ts", [clicks_source(clicks)]),
    )


def test_module_docstring_example_runs() -> None:
    assert doctest.testmod(nbops.featurestore.pit).failed == 0


# -- errors -------------------------------------------------------------------------------
def spine_for_errors() -> pd.DataFrame:
    return pd.DataFrame({"user": [1], "ts": times("2024-01-05"), "clicks": [0]})


@pytest.mark.parametrize(
    ("spine", "event_time", "source", "message"),
    [
        (
            pd.DataFrame({"user": [1], "ts": times("2024-01-05")}),
            "when",
            None,
            r"the spine has no event-time column 'when'; its columns: user, ts",
        ),
        (
            pd.DataFrame({"user": [1], "ts": times("2024-01-05")}).set_index("ts"),
            "ts",
            None,
            r"no event-time column 'ts' \(it is an index level: use spine.reset_index\(\)\)",
        ),
        (
            pd.DataFrame({"uid": [1], "ts": times("2024-01-05")}),
            "ts",
            None,
            r"the spine has no key column 'user'",
        ),
        (
            pd.DataFrame({"user": [1], "ts": ["2024-01-05"]}),
            "ts",
            None,
            r"spine column 'ts' must hold timestamps, not str .*"
            r"pd.to_datetime\(spine\['ts'\], utc=True\)",
        ),
        (
            pd.DataFrame({"user": [1], "ts": [1_700_000_000]}),
            "ts",
            None,
            r"spine column 'ts' must hold timestamps, not int64",
        ),
        (
            pd.DataFrame({"user": [1], "ts": times("2024-01-05"), "clicks": [0]}),
            "ts",
            None,
            r"feature 'n' of sources\[0\] would become column 'clicks', which the spine already "
            r"has; rename it, e.g. features={'n': 'clicks_f'}",
        ),
        (
            pd.DataFrame({"user": [1], "ts": times("2024-01-05")}),
            "ts",
            FeatureSource(pa.table({"user": [1], "day": ["2024-01-01"], "n": [1]}), ("user",), "day", ["n"]),
            r"column 'day' of the table of sources\[0\] must hold timestamps, not string",
        ),
        (
            pd.DataFrame({"user": [1], "ts": times("2024-01-05")}),
            "ts",
            FeatureSource(
                pa.table({"user": [1], "at": arrow_times("2024-01-01"), "n": [1]}),
                ("user",),
                "ts",
                ["n"],
            ),
            r"the table of sources\[0\] has no event-time column 'ts'; its columns: user, at, n",
        ),
        (
            pd.DataFrame({"user": [1], "ts": times("2024-01-05")}),
            "ts",
            FeatureSource(
                pa.table({"uid": [1], "ts": arrow_times("2024-01-01"), "n": [1]}),
                ("user",),
                "ts",
                ["n"],
            ),
            r"the table of sources\[0\] has no key column 'user'",
        ),
        (
            pd.DataFrame({"user": [1], "ts": times("2024-01-05")}),
            "ts",
            FeatureSource(pa.table({"user": [1], "ts": arrow_times("2024-01-01")}), ("user",), "ts", ["n"]),
            r"the table of sources\[0\] has no feature column 'n'",
        ),
        (
            pd.DataFrame({"user": ["1"], "ts": times("2024-01-05")}),
            "ts",
            None,
            r"key 'user' is large_string in the spine but int64 in the table of sources\[0\]",
        ),
        (
            pd.DataFrame({"user": [1], "ts": times("2024-01-05", unit="ns")}),
            "ts",
            FeatureSource(
                pa.table({"user": [1], "ts": pa.array([10**17], pa.timestamp("s")), "n": [1]}),
                ("user",),
                "ts",
                ["n"],
            ),
            r"column 'ts' of the table of sources\[0\] holds times outside the range of int64 ns",
        ),
    ],
)
def test_errors_name_the_column(
    clicks: pa.Table,
    spine: pd.DataFrame,
    event_time: str,
    source: FeatureSource | None,
    message: str,
) -> None:
    with pytest.raises(InvalidInputError, match=message):
        point_in_time_join(spine, event_time, [source or clicks_source(clicks)])


def test_two_sources_may_not_produce_the_same_column(clicks: pa.Table) -> None:
    spine = pd.DataFrame({"user": [1], "ts": times("2024-01-05")})
    with pytest.raises(
        InvalidInputError,
        match=r"output column 'clicks' is produced twice \(sources\[0\] and sources\[1\]\)",
    ):
        point_in_time_join(spine, "ts", [clicks_source(clicks), clicks_source(clicks)])


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (
            lambda t: FeatureSource(t.to_pandas(), ("user",), "ts", ["n"]),
            r"must be a pyarrow Table, not DataFrame",
        ),
        (lambda t: FeatureSource(t, ("user",), "ts", ["n"], ttl=-DAY), r"ttl must not be negative"),
        (
            lambda t: FeatureSource(t, ("user",), "ts", ["n"], ttl=3600),
            r"ttl must be a datetime.timedelta",
        ),  # type: ignore[arg-type]
        (
            lambda t: FeatureSource(t, ("user",), "ts", "n"),
            r"features must map feature columns to output names",
        ),  # type: ignore[arg-type]
    ],
)
def test_feature_source_checks_its_arguments(clicks: pa.Table, build: Any, message: str) -> None:
    with pytest.raises(InvalidInputError, match=message):
        build(clicks)


def test_a_spine_of_the_wrong_kind_is_an_error(clicks: pa.Table) -> None:
    with pytest.raises(InvalidInputError, match="the spine must be a pandas DataFrame or a pyarrow Table, not list"):
        point_in_time_join([{"user": 1}], "ts", [clicks_source(clicks)])  # type: ignore[arg-type]


# -- property test against a brute-force oracle ----------------------------------------------
BASE = pd.Timestamp("2024-03-10 12:00", tz="UTC")
# Few distinct instants, so that equal times (spine vs features, among features) are common.
INSTANTS = [BASE + pd.Timedelta(seconds=s) for s in (0, 1, 60, 61, 3600)]
TTLS = [None, datetime.timedelta(0), datetime.timedelta(seconds=1), datetime.timedelta(seconds=60)]
UNITS = ["s", "ms", "us", "ns"]
ZONES_DRAWN = [None, "UTC", "Asia/Kolkata", "America/New_York"]


def key_values(kind: str) -> st.SearchStrategy[Any]:
    return st.sampled_from([1, 2, None] if kind == "int" else ["a", "b", None])


@st.composite
def rows(draw: st.DrawFn, key_kinds: Sequence[str], max_rows: int) -> list[tuple[Any, ...]]:
    row = st.tuples(*(key_values(k) for k in key_kinds), st.sampled_from([*INSTANTS, None]))
    return draw(st.lists(row, max_size=max_rows))


def time_column(instants: list[pd.Timestamp | None], zone: str | None, unit: str) -> pd.DatetimeIndex:
    index = pd.DatetimeIndex(pd.to_datetime(instants, utc=True)).as_unit(unit)
    return index.tz_localize(None) if zone is None else index.tz_convert(zone)


def arrow_time_column(instants: list[pd.Timestamp | None], zone: str | None, unit: str) -> pa.Array:
    naive = pa.array(time_column(instants, None, unit))
    return naive if zone is None else naive.cast(pa.timestamp(unit, zone))


def key_column(vals: list[Any], kind: str) -> pd.Series:
    return pd.Series(vals, dtype="Int64" if kind == "int" else "str")


@st.composite
def cases(draw: st.DrawFn) -> dict[str, Any]:
    key_kinds = draw(st.lists(st.sampled_from(["int", "str"]), min_size=1, max_size=2))
    spine_rows = draw(rows(key_kinds, 16))
    spine = pd.DataFrame({f"k{i}": key_column([r[i] for r in spine_rows], kind) for i, kind in enumerate(key_kinds)})
    spine["ts"] = time_column(
        [r[-1] for r in spine_rows],
        draw(st.sampled_from(ZONES_DRAWN)),
        draw(st.sampled_from(UNITS)),
    )
    sources = []
    for j in range(draw(st.integers(1, 2))):
        feature_rows = draw(rows(key_kinds, 16))
        columns = {
            f"k{i}": pa.array([r[i] for r in feature_rows], pa.int64() if kind == "int" else pa.string())
            for i, kind in enumerate(key_kinds)
        }
        zone, unit = draw(st.sampled_from(ZONES_DRAWN)), draw(st.sampled_from(UNITS))
        columns["at"] = arrow_time_column([r[-1] for r in feature_rows], zone, unit)
        columns["row"] = pa.array(np.arange(len(feature_rows), dtype="int64"))
        sources.append(
            {
                "rows": feature_rows,
                "ttl": draw(st.sampled_from(TTLS)),
                "table": pa.table(columns),
                "name": j,
            }
        )
    return {"spine": spine, "spine_rows": spine_rows, "sources": sources}


def oracle(
    spine_rows: list[tuple[Any, ...]],
    feature_rows: list[tuple[Any, ...]],
    ttl: datetime.timedelta | None,
) -> list[int | None]:
    """The matched feature row number for each spine row, by looking at every pair."""
    answers: list[int | None] = []
    for *keys, when in spine_rows:
        best: tuple[pd.Timestamp, int] | None = None
        if when is not None and None not in keys:
            for row, (*row_keys, at) in enumerate(feature_rows):
                if at is None or row_keys != keys or at > when:
                    continue
                if ttl is not None and at < when - ttl:
                    continue
                if best is None or (at, row) >= best:
                    best = (at, row)
        answers.append(None if best is None else best[1])
    return answers


@pytest.fixture(scope="module")
def oracle_tally() -> Iterator[dict[str, int]]:
    """Totals over every example, printed at the end (``pytest -rP`` shows them)."""
    tally = {"examples": 0, "rows compared": 0, "matched": 0, "mismatches": 0, "leaks": 0}
    yield tally
    print("point-in-time oracle: " + ", ".join(f"{k} {v}" for k, v in tally.items()))


@ROUTES
@settings(max_examples=125, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cases())
def test_matches_a_brute_force_oracle_and_never_leaks_the_future(
    oracle_tally: dict[str, int], order_key_limit: int, case: dict[str, Any]
) -> None:
    spine: pd.DataFrame = case["spine"]
    keys = tuple(c for c in spine.columns if c != "ts")
    sources = [
        FeatureSource(s["table"], keys, "at", {"row": f"row{s['name']}", "at": f"at{s['name']}"}, ttl=s["ttl"])
        for s in case["sources"]
    ]
    with route(order_key_limit):
        out = point_in_time_join(spine, "ts", sources)

    pd.testing.assert_frame_equal(out[list(spine.columns)], spine)
    mismatches = leaks = 0
    spine_instants = [r[-1] for r in case["spine_rows"]]
    for s in case["sources"]:
        expected = oracle(case["spine_rows"], s["rows"], s["ttl"])
        got = values(out, f"row{s['name']}")
        mismatches += sum(e != g for e, g in zip(expected, got, strict=True))
        oracle_tally["rows compared"] += len(expected)
        oracle_tally["matched"] += sum(e is not None for e in expected)
        for when, at in zip(spine_instants, out[f"at{s['name']}"], strict=True):
            if not pd.isna(at):
                at_utc = at.tz_localize("UTC") if at.tzinfo is None else at
                leaks += when is None or at_utc > when
    oracle_tally["examples"] += 1
    oracle_tally["mismatches"] += mismatches
    oracle_tally["leaks"] += leaks
    assert (mismatches, leaks) == (0, 0)
