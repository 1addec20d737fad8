"""Distribution drift between a reference and a current sample, feature by feature.

:func:`drift` compares each column present in both samples (or the given
``columns``) and returns one row per feature, drifting features first::

    >>> import numpy as np, pandas as pd
    >>> rng = np.random.default_rng(0)
    >>> ref = pd.DataFrame({"x": rng.normal(0, 1, 5000)})
    >>> cur = pd.DataFrame({"x": rng.normal(1, 1, 5000)})
    >>> report = drift(ref, cur)
    >>> bool(report.loc[0, "drifting"]), bool(report.loc[0, "psi"] > 0.2)
    (True, True)

Measures
--------
``psi``, the Population Stability Index ``sum((c - r) * ln(c / r))`` over
bins, where *r* and *c* are the reference and current shares of a bin:

- numeric (and datetime) features: the bins are cut at the reference's
  quantiles ``1/bins, 2/bins, ...`` (deciles by default; numpy's linear
  interpolation), equal edges merged into one, the outer bins open-ended so
  that current values outside the reference range are counted.  A bin holds
  the values ``edges[i-1] < v <= edges[i]``.
- categorical and bool features: one bin per category seen on either side.

A bin that is empty on one side would make the logarithm infinite, so its
share there is taken as ``PSI_EPSILON`` (1e-4) instead of 0; a bin empty on
both sides adds nothing.

``ks_statistic`` and ``ks_pvalue``: the two-sample Kolmogorov-Smirnov test
(two-sided), numeric and datetime features only.  The statistic is computed
from the sorted samples and equals ``scipy.stats.ks_2samp``'s.  The p-value
is ks_2samp's (``method="auto"``) unless both samples are large: when the
effective size ``en = n * m / (n + m)`` exceeds 10 000, scipy's
``kstwo.sf(D, en)`` can take seconds, so Kolmogorov's limiting distribution
with Stephens' correction, ``kstwobign.sf((sqrt(en) + 0.12 + 0.11 /
sqrt(en)) * D)``, is used instead: within 0.5% of scipy's value for
p-values above 1e-3, within 0.02% near 0.05.

``max_share_change``: categorical and bool features only, the largest
absolute change of a category's share (no epsilon).

``report.attrs["histograms"]`` holds, per feature, what the panels draw:
``{"kind", "bins", "reference", "current"}`` with the shares of each side
in ``bins`` — 20 equal-width bins over both sides' range for numeric and
datetime features (``bins`` holds the 21 edges), the 20 most common
categories of either side for the others (``bins`` holds their labels).

``drifting`` is ``psi > psi_threshold or ks_pvalue < ks_alpha``.  With many
rows the KS test flags even small shifts; pass ``ks_alpha=0`` to rely on PSI
alone.

Nulls (and float NaN) are left out of the distributions and counted in
``nulls_reference`` / ``nulls_current``; ``n_reference`` / ``n_current``
count the values compared.  When a side has no values, every measure is NaN
and the feature is not drifting.

Kinds: integers, floats and decimals are ``numeric``; strings and
dictionary-encoded columns (pandas categoricals) ``categorical``; booleans
``bool``; timestamps and dates ``datetime``, compared as numbers (seconds
since the epoch, naive ones read as UTC).  A column that is all null on one
side (Arrow's null type) takes the kind of the other side.  Key and time
columns are compared
like any other: leave them out with ``columns``.  When ``columns`` is not
given, columns of other types (binary, lists, ...) are skipped; naming one
is an error.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from nbops.errors import InvalidInputError
from nbops.featurestore.stats import BOOL, CATEGORICAL, DATETIME, NUMERIC, as_table, column_kind, select_columns

if TYPE_CHECKING:
    import pandas as pd

#: Share given to a bin that is empty on one side, so that ln(c / r) stays finite.
PSI_EPSILON = 1e-4

#: Columns of the :func:`drift` report, in order.
REPORT_COLUMNS = (
    "feature",
    "kind",
    "psi",
    "ks_statistic",
    "ks_pvalue",
    "max_share_change",
    "n_reference",
    "n_current",
    "nulls_reference",
    "nulls_current",
    "drifting",
)

# scipy.stats.ks_2samp(method="auto") is exact up to this many values per side.
_KS_EXACT_MAX_N = 10_000
# Up to this effective size n*m/(n+m), scipy's kstwo.sf takes milliseconds.
_KS_KSTWO_MAX_EN = 10_000
_SUPPORTED = (NUMERIC, CATEGORICAL, BOOL, DATETIME)
_NAN = float("nan")


@dataclass
class _Row:
    feature: str
    kind: str
    psi: float = _NAN
    ks_statistic: float = _NAN
    ks_pvalue: float = _NAN
    max_share_change: float = _NAN
    n_reference: int = 0
    n_current: int = 0
    nulls_reference: int = 0
    nulls_current: int = 0
    histogram: dict[str, object] | None = None


def drift(
    reference: pa.Table | pd.DataFrame,
    current: pa.Table | pd.DataFrame,
    columns: Sequence[str] | None = None,
    bins: int = 10,
    psi_threshold: float = 0.2,
    ks_alpha: float = 0.05,
) -> pd.DataFrame:
    """One row per feature with PSI, KS test, share change and a ``drifting`` flag.

    See the module docstring for the measures.  The rows are sorted drifting
    first, then by ``psi`` from high to low (NaN last), then in column order.
    """
    import pandas as pd

    ref_table = as_table(reference, "reference")
    cur_table = as_table(current, "current")
    if isinstance(bins, bool) or not isinstance(bins, int | np.integer) or bins < 1:
        raise InvalidInputError(f"bins must be an integer >= 1, not {bins!r}")
    for what, value in (("psi_threshold", psi_threshold), ("ks_alpha", ks_alpha)):
        if isinstance(value, bool) or not isinstance(value, int | float) or math.isnan(value):
            raise InvalidInputError(f"{what} must be a number, not {value!r}")

    features = _features(ref_table, cur_table, columns)
    work = [(name, kind, ref_table.column(name), cur_table.column(name)) for name, kind in features]
    # Sorting dominates and numpy releases the GIL while it sorts.
    with ThreadPoolExecutor(max_workers=max(1, min(len(work), os.cpu_count() or 1))) as pool:
        rows = list(pool.map(lambda w: _compare(*w, bins=int(bins)), work))

    report = pd.DataFrame(
        [[getattr(r, c) for c in REPORT_COLUMNS[:-1]] for r in rows],
        columns=list(REPORT_COLUMNS[:-1]),
    )
    report = report.astype(
        {
            "feature": object,
            "kind": object,
            **{c: "float64" for c in ("psi", "ks_statistic", "ks_pvalue", "max_share_change")},
            **{c: "int64" for c in ("n_reference", "n_current", "nulls_reference", "nulls_current")},
        }
    )
    # Comparisons with NaN are False: a feature without values is not drifting.
    report["drifting"] = (report["psi"] > psi_threshold) | (report["ks_pvalue"] < ks_alpha)
    report = report.sort_values(
        ["drifting", "psi"], ascending=[False, False], na_position="last", kind="stable"
    ).reset_index(drop=True)
    report.attrs["histograms"] = {r.feature: r.histogram for r in rows if r.histogram is not None}
    return report


def _features(reference: pa.Table, current: pa.Table, columns: Sequence[str] | None) -> list[tuple[str, str]]:
    """(name, kind) of the features to compare, checked for matching kinds."""
    if columns is None:
        in_current = set(current.column_names)
        names = [n for n in select_columns(reference, None, "reference") if n in in_current]
        names = [n for n in names if reference.column_names.count(n) == 1 and current.column_names.count(n) == 1]
    else:
        names = select_columns(reference, columns, "reference")
        select_columns(current, names, "current")
    features = []
    for name in names:
        ref_type, cur_type = reference.schema.field(name).type, current.schema.field(name).type
        kinds = {k for k in (_kind(ref_type), _kind(cur_type)) if k is not None}
        if len(kinds) > 1:
            raise InvalidInputError(
                f"column {name!r} has different kinds of values: {ref_type} in the reference, "
                f"{cur_type} in the current sample"
            )
        # Null on both sides: nothing to compare, and any kind reports NaN.
        kind = kinds.pop() if kinds else CATEGORICAL
        if kind not in _SUPPORTED:
            if columns is None:
                continue  # e.g. binary or list columns: not a distribution we compare
            raise InvalidInputError(
                f"column {name!r} has type {ref_type}; drift compares numeric, datetime, "
                "bool and categorical (string or dictionary) columns"
            )
        features.append((name, kind))
    return features


def _kind(type_: pa.DataType) -> str | None:
    """The drift kind of a type; None for the null type (all nulls), which fits any kind."""
    return None if pa.types.is_null(type_) else column_kind(type_)


def _compare(name: str, kind: str, reference: pa.ChunkedArray, current: pa.ChunkedArray, *, bins: int) -> _Row:
    row = _Row(feature=name, kind=kind)
    if kind in (NUMERIC, DATETIME):
        ref, cur = _numbers(reference), _numbers(current)
        row.n_reference, row.n_current = len(ref), len(cur)
    else:
        ref_values, ref_counts = _category_counts(reference)
        cur_values, cur_counts = _category_counts(current)
        row.n_reference, row.n_current = int(ref_counts.sum()), int(cur_counts.sum())
    row.nulls_reference = len(reference) - row.n_reference
    row.nulls_current = len(current) - row.n_current
    if row.n_reference == 0 or row.n_current == 0:
        return row

    if kind in (NUMERIC, DATETIME):
        ref.sort()
        cur.sort()
        row.psi = _psi(*_quantile_bin_counts(ref, cur, bins))
        row.ks_statistic, row.ks_pvalue = _ks(ref, cur)
        row.histogram = _numeric_histogram(kind, ref, cur)
    else:
        ref_aligned, cur_aligned = _align(ref_values, ref_counts, cur_values, cur_counts)
        row.psi = _psi(ref_aligned, cur_aligned)
        shares_change = cur_aligned / row.n_current - ref_aligned / row.n_reference
        row.max_share_change = float(np.abs(shares_change).max())
        labels = _category_labels(ref_values, cur_values)
        row.histogram = _category_histogram(kind, labels, ref_aligned, cur_aligned)
    return row


_HISTOGRAM_BINS = 20


def _numeric_histogram(kind: str, ref_sorted: np.ndarray, cur_sorted: np.ndarray) -> dict[str, object]:
    """Shares of both sides in equal-width bins over their joint range (for drawing, not for PSI)."""
    low = min(ref_sorted[0], cur_sorted[0])
    high = max(ref_sorted[-1], cur_sorted[-1])
    edges = np.linspace(low, high if high > low else low + 1.0, _HISTOGRAM_BINS + 1)
    ref_counts, _ = np.histogram(ref_sorted, edges)
    cur_counts, _ = np.histogram(cur_sorted, edges)
    return {
        "kind": kind,
        "bins": [float(e) for e in edges],
        "reference": [float(c) for c in ref_counts / len(ref_sorted)],
        "current": [float(c) for c in cur_counts / len(cur_sorted)],
    }


def _category_histogram(
    kind: str, labels: list[str], ref_aligned: np.ndarray, cur_aligned: np.ndarray
) -> dict[str, object]:
    """Shares of both sides for the most common categories of either side."""
    ref_share = ref_aligned / max(int(ref_aligned.sum()), 1)
    cur_share = cur_aligned / max(int(cur_aligned.sum()), 1)
    top = np.argsort(-np.maximum(ref_share, cur_share), kind="stable")[:_HISTOGRAM_BINS]
    return {
        "kind": kind,
        "bins": [labels[i] for i in top],
        "reference": [float(ref_share[i]) for i in top],
        "current": [float(cur_share[i]) for i in top],
    }


def _category_labels(ref_values: pa.Array, cur_values: pa.Array) -> list[str]:
    """The union of both sides' categories as text, in :func:`_align`'s order."""
    import pandas as pd

    ref_index = pd.Index(ref_values.to_pandas(), dtype=object)
    cur_index = pd.Index(cur_values.to_pandas(), dtype=object)
    return [str(v) for v in ref_index.union(cur_index, sort=False)]


def _numbers(column: pa.ChunkedArray) -> np.ndarray:
    """The values that are not null (nor NaN) as a new float64 array; datetimes in epoch seconds."""
    type_ = column.type
    column = pc.drop_null(column)
    if pa.types.is_null(type_) or len(column) == 0:
        return np.empty(0, dtype=np.float64)
    if pa.types.is_timestamp(type_) or pa.types.is_date(type_):
        ticks = column.cast(pa.int32() if pa.types.is_date32(type_) else pa.int64())
        numbers = np.array(ticks.to_numpy(), dtype=np.float64)
        per_second = {"s": 1, "ms": 1_000, "us": 1_000_000, "ns": 1_000_000_000}
        if pa.types.is_date32(type_):
            numbers *= 86_400
        elif pa.types.is_date64(type_):
            numbers /= 1_000
        else:
            numbers /= per_second[type_.unit]
        return numbers
    # Integers beyond 2**53 are rounded; safe=False so they are not an error.
    numbers = np.array(column.cast(pa.float64(), safe=False).to_numpy(), dtype=np.float64)
    nan = np.isnan(numbers)
    return numbers[~nan] if nan.any() else numbers


def _category_counts(column: pa.ChunkedArray) -> tuple[pa.Array, np.ndarray]:
    """Distinct values that are not null and how often each occurs."""
    if pa.types.is_null(column.type):
        return pa.array([], pa.string()), np.empty(0, dtype=np.int64)
    if pa.types.is_dictionary(column.type):
        # Chunks may carry different dictionaries; decoding makes values comparable.
        column = column.cast(column.type.value_type)
    counted = pc.value_counts(pc.drop_null(column))
    values = counted.field("values")
    return values, counted.field("counts").to_numpy(zero_copy_only=False).astype(np.int64)


def _align(
    ref_values: pa.Array, ref_counts: np.ndarray, cur_values: pa.Array, cur_counts: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Counts of both sides over the union of their categories (0 where a side lacks one)."""
    import pandas as pd

    # Both sides as Python-comparable values: a string column may be large_string
    # on one side and a decoded dictionary on the other.
    ref_index = pd.Index(ref_values.to_pandas(), dtype=object)
    cur_index = pd.Index(cur_values.to_pandas(), dtype=object)
    ref_series = pd.Series(ref_counts, index=ref_index)
    cur_series = pd.Series(cur_counts, index=cur_index)
    categories = ref_index.union(cur_index, sort=False)
    return (
        ref_series.reindex(categories, fill_value=0).to_numpy(np.int64),
        cur_series.reindex(categories, fill_value=0).to_numpy(np.int64),
    )


def _quantile_bin_counts(ref_sorted: np.ndarray, cur_sorted: np.ndarray, bins: int) -> tuple[np.ndarray, np.ndarray]:
    """Counts of both samples in bins cut at the reference quantiles (open outer bins)."""
    probabilities = np.linspace(0.0, 1.0, bins + 1)[1:-1]
    edges = np.unique(np.quantile(ref_sorted, probabilities))

    def counts(sorted_values: np.ndarray) -> np.ndarray:
        # side="right": values equal to an edge belong to the bin it closes.
        at_or_below = np.searchsorted(sorted_values, edges, side="right")
        return np.diff(np.concatenate([[0], at_or_below, [len(sorted_values)]]))

    return counts(ref_sorted), counts(cur_sorted)


def _psi(ref_counts: np.ndarray, cur_counts: np.ndarray) -> float:
    """Population Stability Index of two count vectors over the same bins."""
    ref_share = ref_counts / ref_counts.sum()
    cur_share = cur_counts / cur_counts.sum()
    ref_share = np.where(ref_counts == 0, PSI_EPSILON, ref_share)
    cur_share = np.where(cur_counts == 0, PSI_EPSILON, cur_share)
    return float(np.sum((cur_share - ref_share) * np.log(cur_share / ref_share)))


def _ks(ref_sorted: np.ndarray, cur_sorted: np.ndarray) -> tuple[float, float]:
    """Two-sided two-sample KS statistic and p-value, as ``scipy.stats.ks_2samp`` gives them."""
    from scipy import stats

    n_ref, n_cur = len(ref_sorted), len(cur_sorted)
    if max(n_ref, n_cur) <= _KS_EXACT_MAX_N:
        result = stats.ks_2samp(ref_sorted, cur_sorted)
        return float(result.statistic), float(result.pvalue)
    gap = max(_cdf_gap(ref_sorted, cur_sorted), _cdf_gap(cur_sorted, ref_sorted))
    m, n = sorted([float(n_ref), float(n_cur)], reverse=True)
    en = m * n / (m + n)
    if round(en) <= _KS_KSTWO_MAX_EN:
        # scipy's asymptotic branch of ks_2samp, two-sided: the same p-value.
        pvalue = float(stats.kstwo.sf(gap, round(en)))
    else:
        # There kstwo.sf takes up to seconds (1.6 s measured at en = 1e6);
        # Kolmogorov's limit with Stephens' correction is within 0.5% of it
        # for p-values above 1e-3 and within 0.02% near p = 0.05.
        root = math.sqrt(en)
        pvalue = float(stats.kstwobign.sf((root + 0.12 + 0.11 / root) * gap))
    return gap, min(max(pvalue, 0.0), 1.0)


def _cdf_gap(at_sorted: np.ndarray, other_sorted: np.ndarray) -> float:
    """Largest |F_at(x) - F_other(x)| over the values x of ``at_sorted``.

    Both empirical CDFs are step functions, so the KS statistic is the larger
    of this gap taken at each sample's values.  Only the last of equal values
    is looked at: there F_at is its position + 1, with no search.
    """
    n_at = len(at_sorted)
    last_of_run = np.empty(n_at, dtype=bool)
    np.not_equal(at_sorted[1:], at_sorted[:-1], out=last_of_run[:-1])
    last_of_run[-1] = True
    if last_of_run.all():  # no ties, the common case for floats: skip two copies
        points, at_cdf = at_sorted, np.arange(1, n_at + 1) / n_at
    else:
        points = at_sorted[last_of_run]
        at_cdf = (np.flatnonzero(last_of_run) + 1) / n_at
    other_cdf = np.searchsorted(other_sorted, points, side="right") / len(other_sorted)
    return float(np.abs(at_cdf - other_cdf).max())
