"""feature_statistics against numpy and pandas, for every kind, with nulls, empty and odd tables."""

from __future__ import annotations

import json
import math
from datetime import date
from decimal import Decimal
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nbops.errors import InvalidInputError
from nbops.featurestore.stats import QUANTILES, SUMMARY_COLUMNS, feature_statistics, format_statistics


def _roundtrip(stats: dict[str, Any]) -> dict[str, Any]:
    """JSON text and back; allow_nan=False fails on any NaN or infinity left in."""
    loaded: dict[str, Any] = json.loads(json.dumps(stats, allow_nan=False))
    assert loaded == stats
    return loaded


def _with_nulls(values: np.ndarray, mask: np.ndarray) -> pa.ChunkedArray:
    """An Arrow column with nulls where ``mask`` is set, in three chunks."""
    array = pa.array(values, mask=mask)
    third = len(array) // 3
    return pa.chunked_array([array[:third], array[third : 2 * third], array[2 * third :]])


@pytest.fixture
def numbers() -> pa.Table:
    rng = np.random.default_rng(7)
    n = 5_000
    mask = rng.random(n) < 0.1
    return pa.table(
        {
            "normal": _with_nulls(rng.normal(3.0, 2.0, n), mask),
            "skewed": _with_nulls(rng.exponential(5.0, n), np.zeros(n, dtype=bool)),
            "counts": _with_nulls(rng.integers(-50, 50, n), mask),
        }
    )


def test_numeric_statistics_match_numpy(numbers: pa.Table) -> None:
    stats = _roundtrip(feature_statistics(numbers, bins=15))
    for name in numbers.column_names:
        values = numbers.column(name).drop_null().to_numpy().astype(np.float64)
        s = stats[name]
        assert s["kind"] == "numeric"
        assert s["type"] == str(numbers.schema.field(name).type)
        assert s["count"] == len(values)
        assert s["nulls"] == numbers.column(name).null_count
        assert s["count"] + s["nulls"] == numbers.num_rows
        assert s["distinct"] == len(np.unique(values))
        assert s["min"] == values.min() and s["max"] == values.max()
        assert s["mean"] == pytest.approx(values.mean(), rel=1e-12)
        # std is the sample standard deviation (ddof=1), as pandas' Series.std
        assert s["std"] == pytest.approx(values.std(ddof=1), rel=1e-9)
        assert s["std"] == pytest.approx(pd.Series(values).std(), rel=1e-9)
        expected_quantiles = np.quantile(values, list(QUANTILES.values()))  # method="linear"
        assert list(s["quantiles"]) == list(QUANTILES)
        assert list(s["quantiles"].values()) == pytest.approx(expected_quantiles, rel=1e-9)
        counts, edges = np.histogram(values, bins=15)
        assert s["histogram"]["counts"] == counts.tolist()
        assert s["histogram"]["edges"] == edges.tolist()
        assert sum(s["histogram"]["counts"]) == s["count"]


def test_integer_min_max_stay_integers(numbers: pa.Table) -> None:
    s = feature_statistics(numbers, columns=["counts"])["counts"]
    assert isinstance(s["min"], int) and isinstance(s["max"], int)
    assert isinstance(s["mean"], float) and isinstance(s["quantiles"]["p50"], float)
    big = feature_statistics(pa.table({"u": pa.array([0, 2**64 - 1], pa.uint64())}))["u"]
    assert big["max"] == 2**64 - 1


@pytest.mark.parametrize(
    "type_",
    [pa.int8(), pa.uint16(), pa.int32(), pa.float16(), pa.float32(), pa.decimal128(9, 2)],
)
def test_every_numeric_width(type_: pa.DataType) -> None:
    raw = [1, 2, 2, None, 4]
    values = [None if v is None else Decimal(v) for v in raw] if pa.types.is_decimal(type_) else raw
    column = pa.array(values).cast(type_) if pa.types.is_float16(type_) else pa.array(values, type_)
    s = _roundtrip(feature_statistics(pa.table({"x": column}), bins=3))["x"]
    assert s["kind"] == "numeric"
    assert (s["count"], s["nulls"], s["distinct"]) == (4, 1, 3)
    assert (s["min"], s["max"], s["mean"]) == (1, 4, 2.25)
    assert s["quantiles"]["p50"] == 2.0
    assert s["histogram"] == {"edges": [1.0, 2.0, 3.0, 4.0], "counts": [1, 2, 1]}


def test_nan_counts_as_null_and_infinities_fall_in_outer_bins() -> None:
    column = pa.array([1.0, float("nan"), None, 3.0, float("inf"), -float("inf"), 2.0])
    s = _roundtrip(feature_statistics(pa.table({"x": column}), bins=2))["x"]
    assert (s["count"], s["nulls"], s["distinct"]) == (5, 2, 5)
    # The infinite extremes and the moments they make infinite are None in JSON
    assert s["min"] is None and s["max"] is None and s["mean"] is None and s["std"] is None
    assert s["quantiles"]["p50"] == 2.0
    # Edges span the finite values; -inf joins the first bin, +inf the last
    assert s["histogram"] == {"edges": [1.0, 2.0, 3.0], "counts": [2, 3]}


def test_constant_column_puts_every_value_in_one_bin() -> None:
    s = feature_statistics(pa.table({"x": [5.0] * 7}), bins=4)["x"]
    # numpy.histogram's rule: the range is widened to min - 0.5 .. max + 0.5
    counts, edges = np.histogram(np.full(7, 5.0), bins=4)
    assert s["histogram"] == {"edges": edges.tolist(), "counts": counts.tolist()}
    assert sorted(s["histogram"]["counts"]) == [0, 0, 0, 7]
    assert s["std"] == 0.0 and s["distinct"] == 1
    single = feature_statistics(pa.table({"x": [5.0]}), bins=1)["x"]
    assert single["std"] is None  # the sample std needs two values
    assert single["histogram"] == {"edges": [4.5, 5.5], "counts": [1]}


def _kinds_table(n: int) -> pa.Table:
    rng = np.random.default_rng(1)
    return pa.table(
        {
            "f": pa.array(rng.normal(size=n)),
            "i": pa.array(rng.integers(0, 10, n)),
            "b": pa.array(rng.random(n) < 0.3),
            "s": pa.array(rng.choice(["a", "b", "c"], n)),
            "c": pa.array(rng.choice(["x", "y"], n)).dictionary_encode(),
            "t": pa.array(rng.integers(0, 10**18, n), pa.timestamp("ns", tz="Asia/Tokyo")),
            "d": pa.array(rng.integers(0, 20_000, n).astype(np.int32), pa.date32()),
            "l": pa.array([[1, 2]] * n),
        }
    )


def test_empty_table_and_all_null_columns() -> None:
    empty = _roundtrip(feature_statistics(_kinds_table(0)))
    schema = _kinds_table(1).schema
    nulls = _roundtrip(feature_statistics(pa.table({f.name: pa.nulls(4, f.type) for f in schema})))
    for stats, rows in ((empty, 0), (nulls, 4)):
        for name, s in stats.items():
            assert (s["count"], s["nulls"], s["distinct"]) == (0, rows, 0), name
        for name in ("f", "i"):
            assert stats[name]["min"] is None and stats[name]["mean"] is None
            assert stats[name]["std"] is None
            assert set(stats[name]["quantiles"].values()) == {None}
            assert stats[name]["histogram"] == {"edges": [], "counts": []}
        assert stats["t"]["min"] is None and stats["t"]["histogram"]["counts"] == []
        assert stats["b"]["true_share"] is None
        assert stats["s"]["top"] == [] and stats["s"]["share_other"] is None
    null_typed = feature_statistics(pa.table({"n": pa.nulls(3)}))["n"]
    assert (null_typed["kind"], null_typed["count"], null_typed["nulls"]) == ("other", 0, 3)
    assert feature_statistics(pa.table({})) == {}


def test_bool_true_share() -> None:
    s = _roundtrip(feature_statistics(pa.table({"b": [True, False, True, None, True]})))["b"]
    assert s == {
        "kind": "bool",
        "type": "bool",
        "count": 4,
        "nulls": 1,
        "distinct": 2,
        "true_share": 0.75,
    }


def test_categorical_top_values_ties_broken_by_value() -> None:
    values = ["b"] * 3 + ["a"] * 3 + ["c"] * 5 + ["d"] + [None] * 2
    df = pd.DataFrame({"s": values, "cat": pd.Categorical(values, categories=["d", "c", "b", "a"])})
    stats = _roundtrip(feature_statistics(df, top_k=3))
    for name in ("s", "cat"):
        s = stats[name]
        assert s["kind"] == "categorical"
        assert (s["count"], s["nulls"], s["distinct"]) == (12, 2, 4)
        assert s["top"] == [["c", 5], ["a", 3], ["b", 3]]
        assert s["share_other"] == pytest.approx(1 / 12)
    assert stats["cat"]["type"].startswith("dictionary<values=")
    everything = feature_statistics(df, columns=["s"], top_k=20)["s"]
    assert everything["share_other"] == 0.0 and len(everything["top"]) == 4
    none = feature_statistics(df, columns=["s"], top_k=0)["s"]
    assert none["top"] == [] and none["share_other"] == 1.0


def test_categorical_matches_pandas_value_counts() -> None:
    rng = np.random.default_rng(5)
    values = pd.Series(rng.choice([f"v{i:02d}" for i in range(40)], 3_000, p=_zipf(40)))
    s = feature_statistics(pa.table({"s": values}), top_k=10)["s"]
    expected = values.value_counts().sort_index().sort_values(ascending=False, kind="stable")[:10]
    assert s["top"] == [[k, int(v)] for k, v in expected.items()]
    assert s["share_other"] == pytest.approx(1 - expected.sum() / len(values))
    assert s["distinct"] == values.nunique()


def _zipf(n: int) -> np.ndarray:
    weights = 1 / np.arange(1, n + 1)
    return np.asarray(weights / weights.sum())


def test_tz_aware_datetimes_in_utc_and_naive_kept_naive() -> None:
    paris = pd.to_datetime(
        ["2024-03-31 01:30", "2024-03-31 03:30", None, "2024-10-27 02:30:00.123456789"],
        format="ISO8601",
    )
    # ambiguous=True: the repeated 02:30 of 27 October is the summer-time one
    aware = paris.tz_localize("Europe/Paris", ambiguous=np.ones(4, dtype=bool))
    missing = np.asarray(paris.isna())
    table = pa.table(
        {
            "aware": pa.array(aware.asi8, pa.timestamp("ns", tz="Europe/Paris"), mask=missing),
            "naive": pa.array(paris.asi8, pa.timestamp("ns"), mask=missing),
            "day": [date(2024, 3, 31), date(2024, 3, 31), None, date(2024, 10, 27)],
        }
    )
    stats = _roundtrip(feature_statistics(table, bins=2))
    aware, naive, day = stats["aware"], stats["naive"], stats["day"]
    assert aware["kind"] == naive["kind"] == day["kind"] == "datetime"
    assert aware["type"] == "timestamp[ns, tz=Europe/Paris]"
    assert (aware["count"], aware["nulls"], aware["distinct"]) == (3, 1, 3)
    assert aware["min"] == "2024-03-31T00:30:00+00:00"  # 01:30 CET is 00:30 UTC
    assert aware["max"] == "2024-10-27T00:30:00.123456789+00:00"  # 02:30 CEST, nanoseconds kept
    assert naive["min"] == "2024-03-31T01:30:00"  # no zone invented
    assert naive["max"] == "2024-10-27T02:30:00.123456789"
    assert (day["min"], day["max"]) == ("2024-03-31", "2024-10-27")
    epoch = pd.Timestamp("2024-03-31 00:30", tz="UTC").timestamp()
    last = pd.Timestamp("2024-10-27 00:30:00.123456789", tz="UTC").timestamp()
    assert aware["histogram"]["edges"] == pytest.approx([epoch, (epoch + last) / 2, last])
    assert aware["histogram"]["counts"] == [2, 1]
    # naive values are read as if they were UTC
    assert naive["histogram"]["edges"][0] == epoch + 3600
    assert day["histogram"]["edges"][0] == pd.Timestamp("2024-03-31", tz="UTC").timestamp()


def test_datetime_units_agree() -> None:
    stamps = pd.to_datetime(["2021-01-01", "2021-06-01", "2022-01-01"]).as_unit("s")
    table = pa.table(
        {unit: pa.array(stamps.as_unit(unit), pa.timestamp(unit, tz="UTC")) for unit in ("s", "ms", "us", "ns")}
    )
    without_type = [{k: v for k, v in s.items() if k != "type"} for s in feature_statistics(table).values()]
    assert all(s == without_type[0] for s in without_type)


def test_other_kinds_have_common_keys_only() -> None:
    table = pa.table(
        {
            "l": pa.array([[1], [2], None, [1]]),
            "bin": pa.array([b"a", b"b", None, b"a"]),
            "dur": pa.array([1, 2, None, 1], pa.duration("s")),
        }
    )
    for s in _roundtrip(feature_statistics(table)).values():
        assert set(s) == {"kind", "type", "count", "nulls", "distinct"}
        assert (s["kind"], s["count"], s["nulls"], s["distinct"]) == ("other", 3, 1, 2)


def test_many_kinds_round_trip_json() -> None:
    table = _kinds_table(500)
    stats = _roundtrip(feature_statistics(table))
    assert [s["kind"] for s in stats.values()] == [
        "numeric", "numeric", "bool", "categorical", "categorical", "datetime", "datetime", "other",
    ]  # fmt: skip
    for s in stats.values():
        assert s["count"] == 500 and s["nulls"] == 0
        if "histogram" in s:
            assert len(s["histogram"]["edges"]) == 21 and sum(s["histogram"]["counts"]) == 500


def test_columns_choose_and_order() -> None:
    table = _kinds_table(10)
    assert list(feature_statistics(table, columns=["s", "f"])) == ["s", "f"]
    assert list(feature_statistics(table, columns=pd.Index(["b"]))) == ["b"]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"columns": ["f", "nope"]}, "column 'nope' is not in the table"),
        ({"columns": "f"}, r"not the string 'f' \(write \['f'\]"),
        ({"columns": ["f", "f"]}, "column 'f' is asked for twice"),
        ({"bins": 0}, "bins must be an integer >= 1"),
        ({"bins": 2.5}, "bins must be an integer >= 1"),
        ({"top_k": -1}, "top_k must be an integer >= 0"),
    ],
)
def test_invalid_arguments_name_the_problem(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidInputError, match=message):
        feature_statistics(_kinds_table(3), **kwargs)


def test_invalid_tables() -> None:
    with pytest.raises(InvalidInputError, match="must be a pyarrow Table or a pandas DataFrame"):
        feature_statistics([1, 2, 3])  # type: ignore[arg-type]
    duplicated = pa.Table.from_arrays([pa.array([1]), pa.array([2])], names=["x", "x"])
    with pytest.raises(InvalidInputError, match="column 'x' appears more than once"):
        feature_statistics(duplicated)
    with pytest.raises(InvalidInputError, match="duplicate columns"):
        feature_statistics(pd.DataFrame([[1, 2]], columns=["x", "x"]))


def test_format_statistics() -> None:
    stats = feature_statistics(_kinds_table(100))
    frame = format_statistics(stats)
    assert list(frame.columns) == list(SUMMARY_COLUMNS)
    assert list(frame.index) == list(stats) and frame.index.name == "feature"
    assert frame.loc["f", "p50"] == stats["f"]["quantiles"]["p50"]
    assert frame.loc["f", "std"] == stats["f"]["std"]
    assert frame.loc["t", "min"] == stats["t"]["min"]
    assert frame.loc["s", "distinct"] == 3
    assert pd.isna(frame.loc["s", "mean"])
    assert format_statistics({}).empty


finite_floats = st.floats(allow_nan=False, allow_infinity=False, min_value=-1e12, max_value=1e12)


@settings(max_examples=60, deadline=None)
@given(
    values=st.lists(st.one_of(finite_floats, st.none()), max_size=60),
    bins=st.integers(min_value=1, max_value=12),
)
def test_histogram_is_numpy_histogram(values: list[float | None], bins: int) -> None:
    s = feature_statistics(pa.table({"x": pa.array(values, pa.float64())}), bins=bins)["x"]
    present = np.array([v for v in values if v is not None], dtype=np.float64)
    assert s["count"] == len(present)
    if len(present) == 0:
        assert s["histogram"] == {"edges": [], "counts": []}
        return
    counts, edges = np.histogram(present, bins=bins)
    assert s["histogram"] == {"edges": edges.tolist(), "counts": counts.tolist()}
    assert s["quantiles"]["p01"] <= s["quantiles"]["p50"] <= s["quantiles"]["p99"]
    assert s["min"] == present.min() and s["max"] == present.max()
    scale = float(np.abs(present).max())
    assert math.isclose(s["mean"], present.mean(), rel_tol=1e-9, abs_tol=1e-12 * scale)
