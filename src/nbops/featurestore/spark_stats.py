"""The statistics of :mod:`nbops.featurestore.stats`, computed by Spark aggregations.

:func:`spark_statistics` gives, for a Spark DataFrame whose columns have the
Arrow types of a feature group version, the dict :func:`~nbops.featurestore.stats.feature_statistics`
gives for the same rows: the same kinds and keys, the same counts, distinct
counts, minima, maxima, exact quantiles (Spark's ``percentile`` interpolates
linearly between order statistics, as DuckDB's ``quantile_cont``), histogram
bins counted with the same comparisons against the same edges, and the same
top values (most frequent first, ties in ascending value order). Means and
standard deviations are sums in another order, so they agree to rounding.

Only the aggregates reach the driver: with the frame persisted, one job
for every column's counts and moments, one for every histogram, one per
categorical column's top values.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa

from nbops.featurestore.stats import (
    BOOL,
    CATEGORICAL,
    DATETIME,
    NUMERIC,
    QUANTILES,
    _iso,
    _plain,
    _unit,
    column_kind,
)

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame

_SECONDS_PER_TICK = {"ms": (1, 1_000), "us": (1, 1_000_000), "date32": (86_400, 1)}


def spark_statistics(
    frame: DataFrame, schema: pa.Schema, columns: Sequence[str], bins: int = 20, top_k: int = 20
) -> dict[str, dict[str, Any]]:
    """Statistics of ``columns`` of ``frame`` (whose Arrow types ``schema`` gives), as ``feature_statistics``.

    The frame is persisted while they are computed: one job for every column's
    counts and moments, one for every histogram, one per categorical column's
    top values.
    """
    from pyspark import StorageLevel
    from pyspark.sql import functions as F

    kinds = {name: column_kind(schema.field(name).type) for name in columns}
    prepared = frame.select(
        *[_prepared(name, kinds[name], schema.field(name).type).alias(f"v{i}") for i, name in enumerate(columns)]
    ).persist(StorageLevel.MEMORY_AND_DISK)
    try:
        aggregates = [F.count(F.lit(1)).alias("rows")]
        for i, name in enumerate(columns):
            aggregates += _aggregates(f"v{i}", kinds[name])
        summary = prepared.agg(*aggregates).first()
        assert summary is not None
        rows = int(summary["rows"])
        result = {
            name: _summary(summary, f"v{i}", kinds[name], schema.field(name).type, rows)
            for i, name in enumerate(columns)
        }
        ranges = {}
        for i, name in enumerate(columns):
            if kinds[name] in (NUMERIC, DATETIME):
                low, high = summary[f"v{i}_low"], summary[f"v{i}_high"]
                if kinds[name] == NUMERIC and low is not None and not math.isfinite(float(low) - float(high)):
                    low, high = _finite_range(prepared, f"v{i}")  # infinities go to the outer bins
                ranges[f"v{i}"] = (name, low, high)
        histograms = _histograms(prepared, {a: r for a, r in ranges.items()}, bins)
        for alias, (name, _, _) in ranges.items():
            histogram = histograms[alias]
            if kinds[name] == DATETIME and histogram["edges"]:
                num, den = _SECONDS_PER_TICK[_unit(schema.field(name).type)]
                histogram["edges"] = [_plain(float(e) * num / den) for e in histogram["edges"]]
            result[name]["histogram"] = histogram
        for i, name in enumerate(columns):
            if kinds[name] == CATEGORICAL:
                result[name]["top"], result[name]["share_other"] = _top(prepared, f"v{i}", result[name]["count"], top_k)
        return result
    finally:
        prepared.unpersist()


def _prepared(name: str, kind: str, type_: pa.DataType) -> Column:
    """The column as ``stats._prepare`` gives it to DuckDB: NaN as null, datetimes as ticks of their unit."""
    from pyspark.sql import functions as F

    column = F.col(f"`{name}`")
    if kind == NUMERIC:
        if pa.types.is_floating(type_):
            return F.when(F.isnan(column), F.lit(None)).otherwise(column)
        if pa.types.is_decimal(type_):
            return column.cast("double")
        return column
    if kind == DATETIME:
        if pa.types.is_date32(type_):
            return F.datediff(column, F.lit("1970-01-01").cast("date"))
        micros = F.unix_micros(column)
        return micros if type_.unit == "us" else F.floor(micros / 1000).cast("long")
    return column


def _aggregates(v: str, kind: str) -> list[Column]:
    from pyspark.sql import functions as F

    column = F.col(v)
    parts = [F.count(column).alias(f"{v}_count"), F.count_distinct(column).alias(f"{v}_distinct")]
    if kind == NUMERIC:
        probabilities = F.array(*[F.lit(p) for p in QUANTILES.values()])
        parts += [
            F.min(column).alias(f"{v}_low"),
            F.max(column).alias(f"{v}_high"),
            F.avg(column.cast("double")).alias(f"{v}_mean"),
            F.stddev_samp(column.cast("double")).alias(f"{v}_std"),
            F.percentile(column.cast("double"), probabilities).alias(f"{v}_quantiles"),
        ]
    elif kind == DATETIME:
        parts += [F.min(column).alias(f"{v}_low"), F.max(column).alias(f"{v}_high")]
    elif kind == BOOL:
        parts += [F.avg(column.cast("int")).alias(f"{v}_true_share")]
    return parts


def _summary(row: Any, v: str, kind: str, type_: pa.DataType, rows: int) -> dict[str, Any]:
    count = int(row[f"{v}_count"])
    out: dict[str, Any] = {
        "kind": kind,
        "type": str(type_),
        "count": count,
        "nulls": rows - count,
        "distinct": int(row[f"{v}_distinct"]),
    }
    if kind == NUMERIC:
        out["min"], out["max"] = _plain(row[f"{v}_low"]), _plain(row[f"{v}_high"])
        out["mean"], out["std"] = _plain(row[f"{v}_mean"]), _plain(row[f"{v}_std"])
        quantiles = row[f"{v}_quantiles"] or [None] * len(QUANTILES)
        out["quantiles"] = {k: _plain(q) for k, q in zip(QUANTILES, quantiles, strict=True)}
    elif kind == DATETIME:
        out["min"], out["max"] = _iso(row[f"{v}_low"], type_), _iso(row[f"{v}_high"], type_)
    elif kind == BOOL:
        out["true_share"] = _plain(row[f"{v}_true_share"])
    return out


def _finite_range(prepared: DataFrame, v: str) -> tuple[Any, Any]:
    from pyspark.sql import functions as F

    finite = prepared.filter(~F.col(v).cast("double").isin(float("inf"), float("-inf")))
    bounds = finite.agg(F.min(v).alias("low"), F.max(v).alias("high")).first()
    assert bounds is not None
    return bounds["low"], bounds["high"]


def _edges(low: Any, high: Any, bins: int) -> Any:
    """``stats._histogram``'s edges: numpy's rule for one value, widened where edges would coincide."""
    if low == high:
        low, high = low - 0.5, high + 0.5
    edges = np.linspace(float(low), float(high), bins + 1)
    if not np.all(np.diff(edges) > 0):
        pad = max(abs(float(low)), abs(float(high))) * 2.0**-30
        edges = np.linspace(float(low) - pad, float(high) + pad, bins + 1)
    return edges


def _histograms(prepared: DataFrame, ranges: dict[str, tuple[str, Any, Any]], bins: int) -> dict[str, dict[str, Any]]:
    """``numpy.histogram``'s bins of each column over its range, counted with exact comparisons in one job.

    Bin k holds ``edges[k] <= v < edges[k + 1]``; the last also ``v >= its
    upper edge`` (the max, and +inf), the first also ``v < edges[0]`` (only
    -inf): numpy's bins, with infinities in the outer ones, as ``stats._histogram``.
    """
    from pyspark.sql import functions as F

    out: dict[str, dict[str, Any]] = {}
    tests = []
    edges_of = {}
    for v, (_, low, high) in ranges.items():
        if low is None or high is None:
            out[v] = {"edges": [], "counts": []}
            continue
        edges = edges_of[v] = _edges(low, high, bins)
        value = F.col(v).cast("double")
        for k in range(bins):
            lower = value >= F.lit(float(edges[k])) if k else F.lit(True)
            upper = value < F.lit(float(edges[k + 1])) if k < bins - 1 else F.lit(True)
            tests.append(F.sum(F.when(value.isNotNull() & lower & upper, 1).otherwise(0)).alias(f"{v}_b{k}"))
    if tests:
        row = prepared.agg(*tests).first()
        assert row is not None
        for v, edges in edges_of.items():
            counts = [int(row[f"{v}_b{k}"] or 0) for k in range(bins)]
            out[v] = {"edges": [_plain(float(e)) for e in edges], "counts": counts}
    return out


def _top(prepared: DataFrame, v: str, count: int, top_k: int) -> tuple[list[list[Any]], float | None]:
    from pyspark.sql import functions as F

    rows = (
        prepared.filter(F.col(v).isNotNull())
        .groupBy(v)
        .count()
        .orderBy(F.col("count").desc(), F.col(v).asc())
        .limit(top_k)
        .collect()
    )
    top = [[_plain(r[v]), int(r["count"])] for r in rows]
    return top, ((count - sum(n for _, n in top)) / count if count else None)
