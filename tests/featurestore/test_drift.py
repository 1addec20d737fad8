"""drift: known answers for PSI and KS, scipy as the reference, nulls, empty sides, kinds and order."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from scipy import stats

from nbops.errors import InvalidInputError
from nbops.featurestore.drift import PSI_EPSILON, REPORT_COLUMNS, drift


def _row(report: pd.DataFrame, feature: str) -> dict[str, Any]:
    rows = report[report["feature"] == feature].to_dict("records")
    assert len(rows) == 1
    return rows[0]


def _psi(ref_shares: list[float], cur_shares: list[float]) -> float:
    """PSI written out by hand, shares already with the epsilon for empty bins."""
    return sum((c - r) * math.log(c / r) for r, c in zip(ref_shares, cur_shares, strict=True))


@pytest.fixture
def samples() -> tuple[pd.DataFrame, pd.DataFrame]:
    rng = np.random.default_rng(11)
    n = 4_000
    reference = pd.DataFrame(
        {
            "x": rng.normal(0, 1, n),
            "k": rng.integers(0, 5, n),
            "c": rng.choice(["a", "b", "c"], n),
            "b": rng.random(n) < 0.4,
        }
    )
    return reference, reference.sample(frac=1.0, random_state=3).reset_index(drop=True)


def test_identical_samples_do_not_drift(samples: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    reference, shuffled = samples
    report = drift(reference, shuffled)
    assert list(report.columns) == list(REPORT_COLUMNS)
    assert set(report["feature"]) == {"x", "k", "c", "b"}
    assert (report["psi"] == 0.0).all()
    assert not report["drifting"].any()
    numeric = report[report["kind"] == "numeric"]
    assert (numeric["ks_statistic"] == 0.0).all() and (numeric["ks_pvalue"] == 1.0).all()
    assert numeric["max_share_change"].isna().all()
    other = report[report["kind"] != "numeric"]
    assert other["ks_statistic"].isna().all() and other["ks_pvalue"].isna().all()
    assert (other["max_share_change"] == 0.0).all()
    assert dict(zip(report["feature"], report["kind"], strict=True)) == {
        "x": "numeric", "k": "numeric", "c": "categorical", "b": "bool",
    }  # fmt: skip
    assert (report["n_reference"] == 4_000).all() and (report["nulls_current"] == 0).all()


def test_shifted_normal_drifts() -> None:
    rng = np.random.default_rng(2)
    reference = pa.table({"x": rng.normal(0, 1, 20_000)})
    current = pa.table({"x": rng.normal(0.75, 1, 15_000)})
    row = _row(drift(reference, current), "x")
    assert row["drifting"] and row["psi"] > 0.2
    expected = stats.ks_2samp(reference["x"].to_numpy(), current["x"].to_numpy())
    assert row["ks_statistic"] == pytest.approx(expected.statistic, rel=1e-12)
    assert row["ks_pvalue"] < 1e-100


def test_numeric_psi_by_hand() -> None:
    reference = pa.table({"x": np.arange(100.0)})
    # Quartile edges of 0..99 are 24.75, 49.5, 74.25: 25 reference values per bin
    current = pa.table({"x": np.concatenate([np.arange(50.0), np.arange(50.0)])})
    row = _row(drift(reference, current, bins=4), "x")
    expected = _psi([0.25] * 4, [0.5, 0.5, PSI_EPSILON, PSI_EPSILON])
    assert row["psi"] == pytest.approx(expected, rel=1e-12)
    assert row["psi"] == pytest.approx(2 * 0.25 * math.log(2) + 2 * (0.25 - 1e-4) * math.log(2500))


def test_numeric_outer_bins_are_open_and_ties_share_one_edge() -> None:
    reference = pa.table({"x": [0.0] * 70 + [1.0] * 30})
    # Deciles of the reference: 0 (six times), 0.3 (interpolated), 1 (twice); the
    # repeated edges merge, so the bins are (-inf, 0], (0, 0.3], (0.3, 1], (1, inf).
    # Values far outside the reference range land in the open outer bins.
    current = pa.table({"x": [-1e9] * 35 + [0.5] * 15 + [1e9] * 50})
    row = _row(drift(reference, current), "x")
    # (0, 0.3] is empty on both sides and adds nothing
    expected = _psi([0.7, 0.3, PSI_EPSILON], [0.35, 0.15, 0.5])
    assert row["psi"] == pytest.approx(expected, rel=1e-12)


def test_categorical_share_change_by_hand() -> None:
    reference = pd.DataFrame({"c": ["a"] * 500 + ["b"] * 500})
    current = pd.DataFrame({"c": ["a"] * 900 + ["b"] * 100})
    row = _row(drift(reference, current), "c")
    # (0.9 - 0.5) ln(0.9 / 0.5) + (0.1 - 0.5) ln(0.1 / 0.5) = 0.878890...
    assert row["psi"] == pytest.approx(0.4 * math.log(1.8) + 0.4 * math.log(5), rel=1e-12)
    assert row["psi"] == pytest.approx(0.8788898309344879, rel=1e-12)
    assert row["max_share_change"] == pytest.approx(0.4, rel=1e-12)
    assert row["kind"] == "categorical" and row["drifting"]
    assert math.isnan(row["ks_statistic"]) and math.isnan(row["ks_pvalue"])


def test_new_and_vanished_categories_use_epsilon() -> None:
    reference = pd.DataFrame({"c": pd.Categorical(["a"] * 3 + ["b"], categories=["a", "b", "z"])})
    current = pa.table({"c": pa.array(["a", "a", "c", "c"]).dictionary_encode()})
    row = _row(drift(reference, current), "c")
    # categories a, b, c (z never occurs): shares (.75, .25, 0) -> (.5, 0, .5)
    expected = _psi([0.75, 0.25, PSI_EPSILON], [0.5, PSI_EPSILON, 0.5])
    assert row["psi"] == pytest.approx(expected, rel=1e-12)
    assert row["max_share_change"] == pytest.approx(0.5)


def test_dictionary_chunks_with_different_dictionaries() -> None:
    chunks = [pa.array(["x", "y"]).dictionary_encode(), pa.array(["y", "x"]).dictionary_encode()]
    current = pa.table({"c": pa.chunked_array([chunks[0], chunks[1].slice(0, 1)])})
    reference = pa.table({"c": pa.array(["x", "y", "y"], pa.large_string())})
    row = _row(drift(reference, current), "c")
    assert row["psi"] == 0.0 and row["max_share_change"] == 0.0


def test_bool_shares() -> None:
    reference = pa.table({"b": [True] * 20 + [False] * 80})
    current = pa.table({"b": [True] * 50 + [False] * 50 + [None] * 7})
    row = _row(drift(reference, current), "b")
    assert row["kind"] == "bool"
    assert row["psi"] == pytest.approx(_psi([0.2, 0.8], [0.5, 0.5]), rel=1e-12)
    assert row["max_share_change"] == pytest.approx(0.3)
    assert (row["n_current"], row["nulls_current"]) == (100, 7)


def test_nulls_are_counted_and_left_out() -> None:
    rng = np.random.default_rng(4)
    values = rng.normal(size=3_000)
    with_nulls = np.concatenate([values, [np.nan] * 500])
    reference = pd.DataFrame({"x": values, "c": ["a", "b", "c"] * 1_000})
    current = pd.DataFrame({"x": with_nulls, "c": pd.array(["a", "b", "c"] * 1_000 + [None] * 500, dtype="string")})
    report = drift(reference, current)
    for feature in ("x", "c"):
        row = _row(report, feature)
        assert (row["n_reference"], row["nulls_reference"]) == (3_000, 0)
        assert (row["n_current"], row["nulls_current"]) == (3_000, 500)
        assert row["psi"] == 0.0 and not row["drifting"]
    # NaN inside an Arrow float column (not a null) counts as null too
    nan_table = pa.table({"x": pa.array(np.concatenate([values, [np.nan] * 3]), from_pandas=False)})
    assert _row(drift(reference, nan_table, columns=["x"]), "x")["nulls_current"] == 3


@pytest.mark.parametrize("empty_side", ["reference", "current", "both"])
def test_empty_side_gives_nan_and_no_drift(empty_side: str) -> None:
    full = pd.DataFrame({"x": [1.0, 2.0, 3.0], "c": ["a", "b", "a"], "b": [True, False, True]})
    empty = full.iloc[:0]
    reference = empty if empty_side in ("reference", "both") else full
    current = empty if empty_side in ("current", "both") else full
    report = drift(reference, current)
    assert len(report) == 3
    for column in ("psi", "ks_statistic", "ks_pvalue", "max_share_change"):
        assert report[column].isna().all()
    assert not report["drifting"].any()
    assert list(report["feature"]) == ["x", "c", "b"]  # NaN psi: column order kept
    assert set(report["n_reference"]) == {0 if reference is empty else 3}


def test_all_null_side_takes_the_other_kind() -> None:
    reference = pa.table({"x": [1.0, 2.0], "c": ["a", "b"]})
    current = pa.table({"x": pa.nulls(4), "c": pa.nulls(4)})
    report = drift(reference, current)
    assert dict(zip(report["feature"], report["kind"], strict=True)) == {
        "x": "numeric",
        "c": "categorical",
    }
    assert (report["nulls_current"] == 4).all() and report["psi"].isna().all()


def test_ks_matches_scipy_with_ties_small_and_large() -> None:
    rng = np.random.default_rng(9)
    for n_ref, n_cur in [(300, 200), (9_000, 10_000), (20_000, 60), (30_000, 50_000)]:
        ref = np.round(rng.normal(0, 1, n_ref), 1)  # many ties
        cur = np.round(rng.normal(0.02, 1, n_cur), 1)
        row = _row(drift(pa.table({"x": ref}), pa.table({"x": cur})), "x")
        expected = stats.ks_2samp(ref, cur)
        assert row["ks_statistic"] == pytest.approx(expected.statistic, rel=1e-12, abs=1e-15)
        if n_ref * n_cur / (n_ref + n_cur) <= 10_000:  # scipy's own p-value
            assert row["ks_pvalue"] == pytest.approx(expected.pvalue, rel=1e-9)
        else:  # Kolmogorov's limit with Stephens' correction
            assert row["ks_pvalue"] == pytest.approx(expected.pvalue, rel=5e-3)


def test_large_sample_pvalue_close_to_scipy_near_the_threshold() -> None:
    rng = np.random.default_rng(1)
    ref = rng.normal(0, 1, 60_000)
    cur = rng.normal(0.012, 1, 60_000)
    row = _row(drift(pa.table({"x": ref}), pa.table({"x": cur})), "x")
    expected = stats.ks_2samp(ref, cur)
    assert 1e-4 < expected.pvalue < 0.5
    assert row["ks_pvalue"] == pytest.approx(expected.pvalue, rel=5e-3)


def test_datetimes_compare_as_epoch_seconds_across_units_and_zones() -> None:
    stamps = pd.date_range("2024-01-01", periods=1_000, freq="h", tz="UTC")
    as_us = pa.table({"t": pa.array(stamps.as_unit("us").asi8, pa.timestamp("us", tz="UTC"))})
    as_ns = pa.table({"t": pa.array(stamps.as_unit("ns").asi8, pa.timestamp("ns", tz="America/New_York"))})
    same = _row(drift(as_us, as_ns), "t")
    assert same["kind"] == "datetime" and same["psi"] == 0.0 and same["ks_statistic"] == 0.0
    later_stamps = (stamps + pd.Timedelta(days=30)).as_unit("ns")
    later = pa.table({"t": pa.array(later_stamps.asi8, pa.timestamp("ns", tz="UTC"))})
    moved = _row(drift(as_us, later), "t")
    assert moved["drifting"] and moved["ks_statistic"] == pytest.approx(720 / 1_000)


def test_sorted_drifting_first_then_psi_descending() -> None:
    rng = np.random.default_rng(6)
    n = 5_000
    reference = pd.DataFrame({f: rng.normal(0, 1, n) for f in "abcde"})
    current = pd.DataFrame(
        {"a": rng.normal(0, 1, n), "b": rng.normal(1.0, 1, n), "c": rng.normal(0.3, 1, n),
         "d": rng.normal(2.0, 1, n), "e": rng.normal(0, 1, n)}
    )  # fmt: skip
    report = drift(reference, current, ks_alpha=0.0)  # PSI alone decides
    assert list(report["feature"][:3]) == ["d", "b", "c"]
    assert report["drifting"].sum() == 2  # a shift of 0.3 sd stays under PSI 0.2
    drifting = report[report["drifting"]]
    assert list(drifting["psi"]) == sorted(drifting["psi"], reverse=True)
    assert (drifting["psi"] > 0.2).all()
    rest = report[~report["drifting"]]
    assert list(rest["psi"]) == sorted(rest["psi"], reverse=True)
    assert report["drifting"].tolist() == sorted(report["drifting"].tolist(), reverse=True)


def test_thresholds_decide_drifting() -> None:
    reference = pd.DataFrame({"c": ["a"] * 50 + ["b"] * 50})
    current = pd.DataFrame({"c": ["a"] * 60 + ["b"] * 40})
    psi = _psi([0.5, 0.5], [0.6, 0.4])
    assert not _row(drift(reference, current), "c")["drifting"]
    assert _row(drift(reference, current, psi_threshold=psi / 2), "c")["drifting"]


def test_report_dtypes_and_empty_report() -> None:
    report = drift(pd.DataFrame({"x": [1.0, 2.0]}), pd.DataFrame({"x": [1.0, 3.0]}))
    assert report.dtypes.to_dict() == {
        "feature": np.dtype(object), "kind": np.dtype(object),
        "psi": np.dtype("float64"), "ks_statistic": np.dtype("float64"),
        "ks_pvalue": np.dtype("float64"), "max_share_change": np.dtype("float64"),
        "n_reference": np.dtype("int64"), "n_current": np.dtype("int64"),
        "nulls_reference": np.dtype("int64"), "nulls_current": np.dtype("int64"),
        "drifting": np.dtype(bool),
    }  # fmt: skip
    none = drift(pd.DataFrame({"x": [1.0]}), pd.DataFrame({"y": [1.0]}))
    assert none.empty and list(none.columns) == list(REPORT_COLUMNS)


def test_columns_select_and_unsupported_types_are_skipped() -> None:
    reference = pa.table({"id": [1, 2, 3], "x": [1.0, 2.0, 3.0], "blob": [b"a", b"b", b"c"], "only_ref": [1, 2, 3]})
    current = pa.table({"id": [4, 5, 6], "x": [1.0, 2.0, 3.0], "blob": [b"a", b"b", b"c"]})
    assert list(drift(reference, current)["feature"]) == ["id", "x"]  # id drifts, blob skipped
    assert list(drift(reference, current, columns=["x"])["feature"]) == ["x"]


@pytest.mark.parametrize(
    ("columns", "message"),
    [
        (["x", "only_ref"], "column 'only_ref' is not in the current"),
        (["nope"], "column 'nope' is not in the reference"),
        (["blob"], "column 'blob' has type binary"),
        (["mixed"], "column 'mixed' has different kinds of values: int64 in the reference, string"),
        ("x", r"write \['x'\]"),
    ],
)
def test_invalid_columns_are_named(columns: Any, message: str) -> None:
    reference = pa.table({"x": [1.0], "blob": [b"a"], "only_ref": [1], "mixed": [1]})
    current = pa.table({"x": [1.0], "blob": [b"a"], "mixed": ["1"]})
    with pytest.raises(InvalidInputError, match=message):
        drift(reference, current, columns=columns)


def test_invalid_arguments() -> None:
    frame = pd.DataFrame({"x": [1.0]})
    with pytest.raises(InvalidInputError, match="current must be a pyarrow Table or a pandas"):
        drift(frame, frame["x"])  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match="bins must be an integer >= 1"):
        drift(frame, frame, bins=0)
    with pytest.raises(InvalidInputError, match="ks_alpha must be a number"):
        drift(frame, frame, ks_alpha=float("nan"))
    with pytest.raises(InvalidInputError, match="column 'mixed' has different kinds"):
        drift(pd.DataFrame({"mixed": [1]}), pd.DataFrame({"mixed": [True]}))
