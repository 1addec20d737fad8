"""The Spark engine of point-in-time joins: the brute-force oracle, the DuckDB engine's cases, the store.

Every case runs on one local Spark session whose time zone is New York
(``helpers/spark.py``), so that a naive time read in the session's zone
instead of UTC would show. Rows are compared as values, in spine order.
"""

from __future__ import annotations

import datetime
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from test_pit import arrow_times, cases, oracle

from nbops.errors import InvalidInputError
from nbops.featurestore.pit import FeatureSource
from nbops.featurestore.pit import point_in_time_join as duckdb_join
from nbops.featurestore.spark import SparkSource, point_in_time_join, to_spark
from nbops.store import Store

DAY = datetime.timedelta(days=1)


def spark_join(spark: Any, spine: object, event_time: str, sources: list[FeatureSource]) -> pd.DataFrame:
    """The Spark engine on the DuckDB engine's inputs, collected to pandas."""
    spark_sources = [
        SparkSource(to_spark(spark, s.table, "feature table"), s.keys, s.event_time, s.features, s.ttl) for s in sources
    ]
    return collect(point_in_time_join(to_spark(spark, spine, "spine"), event_time, spark_sources))


def collect(frame: Any) -> pd.DataFrame:
    """A Spark DataFrame in pandas through Arrow: times as UTC instants (``toPandas`` shows the session's wall time)."""
    return frame.toArrow().to_pandas()


def values(frame: pd.DataFrame, column: str) -> list[Any]:
    return [None if pd.isna(v) else v for v in frame[column].tolist()]


def assert_same_features(spark: Any, spine: pd.DataFrame, event_time: str, sources: list[FeatureSource]) -> None:
    """Both engines give the same feature values for every spine row, in spine order."""
    expected = duckdb_join(spine, event_time, sources)
    got = spark_join(spark, spine, event_time, sources)
    assert list(got.columns) == list(expected.columns)
    assert len(got) == len(spine)
    for column in [n for s in sources for n in s.features.values()]:
        want, have = values(expected, column), values(got, column)
        if pd.api.types.is_datetime64_any_dtype(expected[column]):  # Spark gives instants in UTC
            want = [None if v is None else pd.Timestamp(v).tz_localize("UTC") if v.tzinfo is None else v for v in want]
            have = [None if v is None else pd.Timestamp(v).tz_localize("UTC") if v.tzinfo is None else v for v in have]
        assert have == want, column


@pytest.fixture
def clicks() -> pa.Table:
    return pa.table(
        {"user": [1, 1, 2], "ts": arrow_times("2024-01-01", "2024-01-03", "2024-01-10"), "n": [10, 30, 200]}
    )


# -- the oracle ---------------------------------------------------------------------------------
@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture]
)
@given(cases())
def test_matches_the_brute_force_oracle_and_never_leaks_the_future(spark: Any, case: dict[str, Any]) -> None:
    spine: pd.DataFrame = case["spine"]
    keys = tuple(c for c in spine.columns if c != "ts")
    sources = [
        FeatureSource(s["table"], keys, "at", {"row": f"row{s['name']}", "at": f"at{s['name']}"}, ttl=s["ttl"])
        for s in case["sources"]
    ]
    out = spark_join(spark, spine, "ts", sources)
    assert len(out) == len(spine)
    assert values(out, "k0") == values(spine, "k0")  # spine order, every row kept
    for s in case["sources"]:
        assert values(out, f"row{s['name']}") == oracle(case["spine_rows"], s["rows"], s["ttl"])


# -- the DuckDB engine's cases ------------------------------------------------------------------
def test_latest_row_at_or_before_exact_time_unseen_and_later_keys(spark: Any, clicks: pa.Table) -> None:
    spine = pd.DataFrame(
        {
            "user": [1, 1, 1, 2, 3, 2],
            "ts": pd.to_datetime(["2024-01-02", "2024-01-03", "2024-01-09", "2024-01-10", "2024-01-05", "2024-01-09"]),
        }  # fmt: skip
    )
    source = FeatureSource(clicks, ("user",), "ts", {"n": "clicks"})
    assert_same_features(spark, spine, "ts", [source])
    assert values(spark_join(spark, spine, "ts", [source]), "clicks") == [10, 30, 30, 200, None, None]


def test_rows_tied_on_keys_and_time_resolve_to_the_last_row_of_the_table(spark: Any) -> None:
    n = 2_000
    table = pa.table({"k": np.zeros(n, dtype="int64"), "ts": arrow_times(*["2024-01-01"] * n), "v": np.arange(n)})
    spine = pd.DataFrame({"k": [0, 0], "ts": pd.to_datetime(["2024-01-01", "2024-01-02"])})
    out = spark_join(spark, spine, "ts", [FeatureSource(table, ("k",), "ts", ["v"])])
    assert values(out, "v") == [n - 1, n - 1]


def test_null_keys_null_times_ttl_and_duplicate_spine_rows(spark: Any, clicks: pa.Table) -> None:
    spine = pd.DataFrame(
        {
            "user": pd.array([1, None, 1, 1, 1], dtype="Int64"),
            "ts": pd.to_datetime(["2024-01-04", "2024-01-04", None, "2024-01-04", "2024-01-05"]),
        }
    )
    for ttl in (None, DAY, 2 * DAY, datetime.timedelta(0)):
        assert_same_features(spark, spine, "ts", [FeatureSource(clicks, ("user",), "ts", {"n": "clicks"}, ttl=ttl)])
    out = spark_join(spark, spine, "ts", [FeatureSource(clicks, ("user",), "ts", {"n": "c"}, ttl=DAY)])
    assert values(out, "c") == [30, None, None, 30, None]  # exactly ttl old counts; two days old does not


@pytest.mark.parametrize("spine_tz", [None, "UTC", "Asia/Kolkata", "Pacific/Chatham"])
@pytest.mark.parametrize("table_tz", [None, "America/New_York"])
def test_times_compare_as_instants_and_naive_means_utc_whatever_the_session_zone(
    spark: Any, spine_tz: str | None, table_tz: str | None
) -> None:
    at = pd.DatetimeIndex(pd.to_datetime(["2024-03-10 06:59", "2024-03-10 07:30", "2024-11-03 05:30"], utc=True))
    table = pa.table({"k": [1, 1, 1], "at": pa.array(at.tz_convert(table_tz) if table_tz else at.tz_localize(None)),
                      "v": [1, 2, 3]})  # fmt: skip
    asks = pd.DatetimeIndex(pd.to_datetime(["2024-03-10 07:00", "2024-03-10 07:30", "2024-11-03 06:00"], utc=True))
    spine = pd.DataFrame({"k": [1, 1, 1], "ts": asks.tz_convert(spine_tz) if spine_tz else asks.tz_localize(None)})
    source = FeatureSource(table, ("k",), "at", ["v"])
    assert_same_features(spark, spine, "ts", [source])
    assert values(spark_join(spark, spine, "ts", [source]), "v") == [1, 2, 3]


def test_multi_and_string_keys_several_sources_and_a_source_without_keys(spark: Any) -> None:
    spine = pd.DataFrame({"shop": ["a", "a", "b"], "cc": [1, 2, 1], "ts": pd.to_datetime(["2024-01-05"] * 3, utc=True)})
    pairs = pa.table({"shop": pa.array(["a", "a", "b"]).dictionary_encode(), "cc": [1, 2, 2],
                      "ts": arrow_times("2024-01-01", "2024-01-02", "2024-01-03"), "x": [1.5, 2.5, 3.5]})  # fmt: skip
    market = pa.table({"ts": arrow_times("2024-01-01", "2024-01-04"), "index": [100.0, 101.0]})
    sources = [
        FeatureSource(pairs, ("shop", "cc"), "ts", {"x": "x"}),
        FeatureSource(market, (), "ts", {"index": "market"}),
    ]
    assert_same_features(spark, spine, "ts", sources)
    out = spark_join(spark, spine, "ts", sources)
    assert list(out.columns) == ["shop", "cc", "ts", "x", "market"] and values(out, "x") == [1.5, 2.5, None]


def test_a_spark_spine_with_timestamp_ntz_reads_as_utc(spark: Any, clicks: pa.Table) -> None:
    spine = spark.sql("SELECT 1 AS user, to_timestamp_ntz('2024-01-03 00:00:00') AS ts").union(
        spark.sql("SELECT 1 AS user, to_timestamp_ntz('2024-01-02 23:59:59') AS ts")
    )
    source = SparkSource(to_spark(spark, clicks), ("user",), "ts", {"n": "clicks"})
    out = collect(point_in_time_join(spine, "ts", [source]))
    assert values(out, "clicks") == [30, 10]


# -- refused -------------------------------------------------------------------------------------
def test_nanoseconds_wrong_types_and_missing_columns_are_refused_naming_the_column(
    spark: Any, clicks: pa.Table
) -> None:
    spine = pd.DataFrame({"user": [1], "ts": pd.Series(pd.to_datetime(["2024-01-03"]), dtype="M8[ns]")})
    spine.loc[0, "ts"] += pd.Timedelta(1, "ns")
    with pytest.raises(InvalidInputError, match=r"column 'ts' of the spine has times with nanoseconds"):
        to_spark(spark, spine, "spine")
    source = SparkSource(to_spark(spark, clicks), ("user",), "ts", {"n": "clicks"})
    bad = to_spark(spark, pd.DataFrame({"user": [1], "when": ["2024-01-01"]}))
    with pytest.raises(InvalidInputError, match=r"column 'when' of the spine is string; it must be a timestamp"):
        point_in_time_join(bad, "when", [source])
    with pytest.raises(InvalidInputError, match=r"column 'ts' is not in the spine"):
        point_in_time_join(bad, "ts", [source])
    strings = to_spark(spark, pd.DataFrame({"user": ["1"], "ts": pd.to_datetime(["2024-01-01"], utc=True)}))
    with pytest.raises(InvalidInputError, match=r"key 'user' is string in the spine but bigint in the feature table"):
        point_in_time_join(strings, "ts", [source])
    with pytest.raises(InvalidInputError, match=r"the output column 'clicks' would appear twice"):
        point_in_time_join(to_spark(spark, pd.DataFrame({"user": [1], "ts": pd.to_datetime(["2024-01-01"])})), "ts",
                           [source, source])  # fmt: skip


# -- the store ------------------------------------------------------------------------------------
def test_training_data_on_spark_equals_the_default_engine(spark: Any, store: Store) -> None:
    rng = np.random.default_rng(7)
    n = 400
    tx = pd.DataFrame(
        {
            "cc_num": rng.integers(0, 20, n),
            "ts": pd.Timestamp("2024-01-01", tz="UTC") + pd.to_timedelta(rng.integers(0, 30 * 24, n), unit="h"),
            "amount_mean": rng.normal(size=n),
            "n_tx": pd.array(rng.integers(0, 5, n), dtype="Int64"),
        }
    ).drop_duplicates(["cc_num", "ts"])
    store.register_features(tx, "tx", keys="cc_num", event_time="ts")
    cards = pd.DataFrame({"cc_num": range(15), "ts": pd.Timestamp("2024-01-10"), "limit": np.arange(15) * 100.0})
    store.register_features(cards, "cards", keys="cc_num", event_time="ts")
    spine = pd.DataFrame(
        {
            "cc_num": rng.integers(0, 25, 300),
            "ts": pd.Timestamp("2024-01-01", tz="UTC") + pd.to_timedelta(rng.integers(0, 40 * 24, 300), unit="h"),
            "is_fraud": rng.integers(0, 2, 300),
        }
    )
    refs = ["tx.amount_mean", "tx.n_tx", "cards.limit"]
    expected = store.training_data(spine, refs, event_time="ts", label="is_fraud", ttl="7D")
    got = store.training_data(spine, refs, event_time="ts", label="is_fraud", ttl="7D", engine="spark", spark=spark)
    assert type(got).__name__ == "DataFrame" and got.columns == list(expected.columns)
    frame = collect(got)
    for column in expected.columns:
        if column == "ts":
            assert frame[column].tolist() == expected[column].tolist()
            continue
        assert values(frame, column) == pytest.approx(values(expected, column), nan_ok=True), column
    # A Spark spine gives the same rows.
    again = store.training_data(to_spark(spark, spine), refs, event_time="ts", label="is_fraud", engine="spark",
                                spark=spark, ttl="7D")  # fmt: skip
    again = collect(again)
    assert values(again, "limit") == values(frame, "limit")
    with pytest.raises(InvalidInputError, match='save_as= and dtype_backend= are for engine="duckdb"'):
        store.training_data(spine, refs, event_time="ts", engine="spark", spark=spark, save_as="train")
    with pytest.raises(InvalidInputError, match="engine='polars' is not known"):
        store.training_data(spine, refs, event_time="ts", engine="polars")
