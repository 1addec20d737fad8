"""Per-column summary statistics of an Arrow table, computed in DuckDB.

:func:`feature_statistics` returns, for each column, a plain dict that
``json.dumps`` accepts as is (only ``str``, ``int``, ``float``, ``bool``,
``None``, lists and dicts; NaN and infinities become ``None``)::

    >>> import pyarrow as pa
    >>> s = feature_statistics(pa.table({"x": [1.0, 2.0, None]}), bins=2)
    >>> s["x"]["count"], s["x"]["nulls"], s["x"]["mean"], s["x"]["histogram"]["counts"]
    (2, 1, 1.5, [1, 1])

Every column has ``kind``, ``type`` (the Arrow type as text), ``count``
(values that are not null), ``nulls`` and ``distinct`` (exact, nulls not
counted).  Then, by kind:

``numeric`` (integers, floats, decimals)
    ``min``, ``max``, ``mean``, ``std``, ``quantiles`` (``p01`` ... ``p99``)
    and ``histogram``.  ``std`` is the *sample* standard deviation (ddof=1,
    as pandas' ``Series.std``); it is ``None`` with fewer than two values.
    Quantiles interpolate linearly between order statistics (DuckDB's
    ``quantile_cont``, the same as numpy's default ``method="linear"``).
    A float NaN counts as null, as in pandas.  Infinities are values: an
    infinite ``min``, ``max``, ``mean``, ``std`` or quantile is ``None``, and
    they fall into the outer histogram bins, whose edges span the finite
    values.
``datetime`` (timestamps and dates)
    ``min`` and ``max`` as ISO 8601 text: a time-zone aware column in UTC
    (``2024-05-01T12:00:00+00:00``), a naive one as it is stored, without an
    offset (no zone is invented for it); dates as ``YYYY-MM-DD``.  The
    ``histogram`` edges are seconds since the Unix epoch (for naive values,
    the wall time read as if it were UTC).
``bool``
    ``true_share``: the share of ``True`` among the values that are not null.
``categorical`` (strings, dictionary-encoded columns such as pandas categoricals)
    ``top``: the ``top_k`` most frequent values as ``[value, count]`` pairs,
    most frequent first, ties in ascending value order; ``share_other``: the
    share of the values not in ``top``.
``other`` (binary, lists, structs, durations, ...)
    only the common keys.

The histogram has ``bins`` equal-width bins from ``min`` to ``max``: bin
*i* holds the values *v* with ``edges[i] <= v < edges[i + 1]``, the last bin
also holds ``max``.  The counts are those of ``numpy.histogram(values,
bins)``, including its rule when all values are equal: the range is widened
to ``min - 0.5 .. max + 0.5`` so that every value lands in the middle bin.
A column without values has ``{"edges": [], "counts": []}`` and ``None`` for
``min``, ``max``, ``mean``, ``std`` and every quantile.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from nbops.core.columns import arrow_from_pandas
from nbops.errors import InvalidInputError

if TYPE_CHECKING:
    import duckdb
    import pandas as pd

NUMERIC = "numeric"
BOOL = "bool"
CATEGORICAL = "categorical"
DATETIME = "datetime"
OTHER = "other"

#: Quantile keys of a numeric column and the probabilities they stand for.
QUANTILES: dict[str, float] = {
    "p01": 0.01,
    "p05": 0.05,
    "p25": 0.25,
    "p50": 0.5,
    "p75": 0.75,
    "p95": 0.95,
    "p99": 0.99,
}

#: Columns of :func:`format_statistics`.
SUMMARY_COLUMNS = ("kind", "count", "nulls", "distinct", "min", "max", "mean", "std", "p50")

# Seconds per tick of each datetime unit, as (numerator, denominator) so that
# the conversion divides by an exact integer instead of multiplying by 1e-9.
_SECONDS_PER_TICK = {
    "s": (1, 1),
    "ms": (1, 1_000),
    "us": (1, 1_000_000),
    "ns": (1, 1_000_000_000),
    "date32": (86_400, 1),
    "date64": (1, 1_000),
}


def column_kind(type_: pa.DataType) -> str:
    """The statistics kind of an Arrow type: numeric, bool, categorical, datetime or other."""
    if pa.types.is_boolean(type_):
        return BOOL
    if pa.types.is_integer(type_) or pa.types.is_floating(type_) or pa.types.is_decimal(type_):
        return NUMERIC
    if pa.types.is_timestamp(type_) or pa.types.is_date(type_):
        return DATETIME
    if (
        pa.types.is_string(type_)
        or pa.types.is_large_string(type_)
        or pa.types.is_string_view(type_)
        or pa.types.is_dictionary(type_)
    ):
        return CATEGORICAL
    return OTHER


def as_table(data: object, argument: str = "table") -> pa.Table:
    """An Arrow table, or a pandas DataFrame converted to one (its index is not a column).

    ``argument`` names the parameter in the error raised for anything else.
    """
    if isinstance(data, pa.Table):
        return data
    import pandas as pd

    if not isinstance(data, pd.DataFrame):
        raise InvalidInputError(f"{argument} must be a pyarrow Table or a pandas DataFrame, not {type(data).__name__}")
    duplicated = data.columns[data.columns.duplicated()].tolist()
    if duplicated:
        raise InvalidInputError(f"{argument} has duplicate columns {duplicated}; rename them")
    try:
        return arrow_from_pandas(data, preserve_index=False)
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError) as exc:
        raise InvalidInputError(
            f"{argument} cannot be read as Arrow columns: {exc}. Give each column one type"
        ) from exc


def select_columns(table: pa.Table, columns: Sequence[str] | None, argument: str = "table") -> list[str]:
    """The names to summarise: ``columns`` checked against ``table``, or all its columns."""
    if columns is None:
        names = list(table.column_names)
    else:
        # A bare string is a sequence of characters: almost always a missing [...]
        if isinstance(columns, str | bytes):
            raise InvalidInputError(
                f"columns must be a list of column names, not the string {columns!r} "
                f"(write [{columns!r}] for one column)"
            )
        try:
            names = list(columns)
        except TypeError:
            raise InvalidInputError(f"columns must be a list of column names, not {type(columns).__name__}") from None
    present = set(table.column_names)
    seen: set[str] = set()
    for name in names:
        if name not in present:
            raise InvalidInputError(f"column {name!r} is not in the {argument}; it has {table.column_names}")
        if name in seen:
            raise InvalidInputError(f"column {name!r} is asked for twice")
        seen.add(name)
        if table.column_names.count(name) > 1:
            raise InvalidInputError(f"column {name!r} appears more than once in the {argument}")
    return names


def _check_positive_int(value: object, what: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < minimum:
        raise InvalidInputError(f"{what} must be an integer >= {minimum}, not {value!r}")
    return int(value)


@dataclass
class _Plan:
    """How one column is summarised: its kind and the name of its prepared copy in DuckDB."""

    name: str
    kind: str
    type: pa.DataType
    alias: str


def _prepare(column: pa.ChunkedArray, kind: str) -> pa.ChunkedArray:
    """The column as DuckDB should see it.

    Datetimes become their integer ticks: the statistics then do not depend
    on the DuckDB connection's time zone, keep nanoseconds, and are formatted
    by us.  NaN becomes null (pandas' meaning of NaN).  Half floats and
    decimals become floats, which DuckDB reads in every width.
    """
    type_ = column.type
    if kind == DATETIME:
        return column.cast(pa.int32() if pa.types.is_date32(type_) else pa.int64())
    if kind != NUMERIC:
        return column
    if pa.types.is_float16(type_):
        column = column.cast(pa.float32())
    elif pa.types.is_decimal(type_):
        column = column.cast(pa.float64())
    if pa.types.is_floating(column.type) and pc.any(pc.is_nan(column)).as_py():
        column = pc.if_else(pc.is_nan(column), pa.scalar(None, column.type), column)
    return column


def feature_statistics(
    table: pa.Table,
    columns: Sequence[str] | None = None,
    bins: int = 20,
    top_k: int = 20,
) -> dict[str, dict[str, Any]]:
    """Summary statistics of ``columns`` (all by default), one JSON-ready dict per column.

    See the module docstring for the keys of each kind.  A pandas DataFrame
    is accepted too (its index is ignored).
    """
    table = as_table(table)
    names = select_columns(table, columns)
    bins = _check_positive_int(bins, "bins", 1)
    top_k = _check_positive_int(top_k, "top_k", 0)

    plans: list[_Plan] = []
    prepared: dict[str, pa.ChunkedArray] = {}
    for i, name in enumerate(names):
        column = table.column(name)
        kind = column_kind(column.type)
        # DuckDB sees positional aliases, so user names never need SQL quoting.
        plan = _Plan(name=name, kind=kind, type=column.type, alias=f"c{i}")
        if kind != OTHER:
            prepared[plan.alias] = _prepare(column, kind)
        plans.append(plan)

    result: dict[str, dict[str, Any]] = {}
    for plan in plans:
        column = table.column(plan.name)
        result[plan.name] = {
            "kind": plan.kind,
            "type": str(plan.type),
            "count": len(column) - column.null_count,
            "nulls": column.null_count,
            "distinct": None,
        }
    if not plans:
        return result
    import duckdb

    con = duckdb.connect(":memory:")
    _no_replacement_scans(con)
    try:
        if prepared:
            _summarise(con, pa.table(prepared), plans, result, bins, top_k)
        for plan in plans:
            if plan.kind == OTHER:
                result[plan.name]["distinct"] = _other_distinct(con, table.column(plan.name))
    finally:
        con.close()
    return result


def _no_replacement_scans(con: duckdb.DuckDBPyConnection) -> None:
    """Make a query fail rather than read a Python variable that shares a table's name."""
    con.execute("SET python_enable_replacements = false")


def _summarise(
    con: duckdb.DuckDBPyConnection,
    prepared: pa.Table,
    plans: list[_Plan],
    result: dict[str, dict[str, Any]],
    bins: int,
    top_k: int,
) -> None:
    """Fill ``result`` for the columns of ``prepared``, a few queries per column.

    Columns are summarised side by side, each on its own cursor and on
    ``cpus / workers`` DuckDB threads.  On 1M rows x 10 float columns and 2
    cores the per-column aggregate queries took 0.54 s this way, 0.87 s one after
    the other with DuckDB's own parallelism, and 2.9 s as one wide query
    (DuckDB runs the count(DISTINCT) of an ungrouped query one by one).
    """
    columns = [plan for plan in plans if plan.kind != OTHER]
    cpus = os.cpu_count() or 1
    workers = max(1, min(len(columns), cpus))
    con.execute(f"SET threads = {max(1, cpus // workers)}")

    def summarise(plan: _Plan) -> None:
        cursor = con.cursor()
        try:
            _no_replacement_scans(cursor)
            # A registered table is visible to its own connection only.
            cursor.register("t", prepared)
            _summarise_column(cursor, plan, result[plan.name], prepared.num_rows, bins, top_k)
        finally:
            cursor.close()

    with ThreadPoolExecutor(max_workers=workers) as pool:
        list(pool.map(summarise, columns))


def _summarise_column(
    cursor: duckdb.DuckDBPyConnection,
    plan: _Plan,
    out: dict[str, Any],
    num_rows: int,
    bins: int,
    top_k: int,
) -> None:
    [(count, distinct, *rest)] = cursor.execute(_column_query(plan)).fetchall()
    # NaN became null in _prepare, so nulls come from the count, not from Arrow.
    out["count"], out["nulls"] = int(count), num_rows - int(count)
    out["distinct"] = int(distinct)
    if plan.kind == NUMERIC:
        low, high, mean, std, quantiles = rest
        out["min"], out["max"] = _plain(low), _plain(high)
        out["mean"], out["std"] = _plain(mean), _plain(std)
        values = quantiles or [None] * len(QUANTILES)
        out["quantiles"] = {k: _plain(v) for k, v in zip(QUANTILES, values, strict=True)}
        if low is not None and not math.isfinite(low - high):
            # Histogram edges need finite ends; infinities go to the outer bins.
            c = plan.alias
            [(low, high)] = cursor.execute(f"SELECT min({c}), max({c}) FROM t WHERE isfinite({c})").fetchall()
        out["histogram"] = _histogram(cursor, plan, low, high, bins)
    elif plan.kind == DATETIME:
        low, high = rest
        out["min"], out["max"] = _iso(low, plan.type), _iso(high, plan.type)
        out["histogram"] = _histogram(cursor, plan, low, high, bins)
    elif plan.kind == BOOL:
        out["true_share"] = _plain(rest[0])
    elif plan.kind == CATEGORICAL:
        out["top"], out["share_other"] = _top_values(cursor, plan, out["count"], top_k)


def _column_query(plan: _Plan) -> str:
    c = plan.alias
    parts = [f"count({c})", f"count(DISTINCT {c})"]
    if plan.kind == NUMERIC:
        probabilities = ", ".join(repr(p) for p in QUANTILES.values())
        parts += [
            f"min({c})",
            f"max({c})",
            f"avg({c}::DOUBLE)",
            f"stddev_samp({c}::DOUBLE)",
            f"quantile_cont({c}::DOUBLE, [{probabilities}])",
        ]
    elif plan.kind == DATETIME:
        parts += [f"min({c})", f"max({c})"]
    elif plan.kind == BOOL:
        parts += [f"avg({c}::INTEGER)"]
    return f"SELECT {', '.join(parts)} FROM t"


def _histogram(
    cursor: duckdb.DuckDBPyConnection, plan: _Plan, low: float | None, high: float | None, bins: int
) -> dict[str, list[Any]]:
    """Equal-width bin counts from ``low`` to ``high``, bin for bin as ``numpy.histogram``.

    DuckDB's ``histogram(x, boundaries)`` counts right-closed bins
    ``(b[j-1], b[j]]``; numpy's bins are left-closed ``[e[k], e[k+1])``.
    Counting ``-v`` against the negated edges in reverse order turns one into
    the other with exact comparisons (negation does not round), so the
    counts agree with the reported edges to the last value.
    """
    if low is None or high is None:
        return {"edges": [], "counts": []}
    if low == high:  # numpy's rule, so that the one value sits in a bin of width 1
        low, high = low - 0.5, high + 0.5
    edges = np.linspace(float(low), float(high), bins + 1)
    if not np.all(np.diff(edges) > 0):
        # Values so large (or so close) that the bins' edges round to the same double: widen
        # the range until every edge is distinct, or the bins would not be counted.
        pad = max(abs(float(low)), abs(float(high))) * 2.0**-30
        edges = np.linspace(float(low) - pad, float(high) + pad, bins + 1)
    boundaries = [float(-e) for e in edges[::-1]]
    [(reversed_counts,)] = cursor.execute(
        f"SELECT map_values(histogram(-({plan.alias}::DOUBLE), $b)) FROM t", {"b": boundaries}
    ).fetchall()
    # reversed_counts[0]: v >= max (the closed end of numpy's last bin);
    # reversed_counts[j]: edges[bins - j] <= v < edges[bins - j + 1];
    # a last extra entry, if any: v < min, which only -inf can be.
    counts = [int(n) for n in reversed_counts[bins:0:-1]]
    counts[-1] += int(reversed_counts[0])
    counts[0] += sum(int(n) for n in reversed_counts[bins + 1 :])
    if plan.kind == DATETIME:
        num, den = _SECONDS_PER_TICK[_unit(plan.type)]
        edges = edges * num / den
    return {"edges": [_plain(float(e)) for e in edges], "counts": counts}


def _top_values(
    cursor: duckdb.DuckDBPyConnection, plan: _Plan, count: int, top_k: int
) -> tuple[list[list[Any]], float | None]:
    c = plan.alias
    rows = cursor.execute(
        f"SELECT {c}, count(*) AS n FROM t WHERE {c} IS NOT NULL GROUP BY {c} ORDER BY n DESC, {c} LIMIT {top_k}"
    ).fetchall()
    top = [[_plain(value), int(n)] for value, n in rows]
    if count == 0:
        return top, None
    return top, (count - sum(n for _, n in top)) / count


def _other_distinct(con: duckdb.DuckDBPyConnection, column: pa.ChunkedArray) -> int | None:
    """Distinct values of a column of another kind; None where neither DuckDB nor Arrow can tell.

    Such a column is registered on its own, so that a type DuckDB cannot read
    costs only its own ``distinct``.
    """
    import duckdb

    try:
        con.register("other", pa.table({"v": column}))
        [(distinct,)] = con.execute("SELECT count(DISTINCT v) FROM other").fetchall()
        return int(distinct)
    except (duckdb.Error, pa.ArrowException):
        pass
    finally:
        con.unregister("other")
    try:
        return int(pc.count_distinct(column, mode="only_valid").as_py())
    except pa.ArrowException:
        return None


def _unit(type_: pa.DataType) -> str:
    if pa.types.is_date32(type_):
        return "date32"
    if pa.types.is_date64(type_):
        return "date64"
    return str(type_.unit)


def _iso(ticks: int | None, type_: pa.DataType) -> str | None:
    """ISO 8601 text of a datetime given as integer ticks of its Arrow type."""
    if ticks is None:
        return None
    if pa.types.is_date(type_):
        days = ticks if pa.types.is_date32(type_) else ticks // 86_400_000
        return str(np.datetime64(int(days), "D"))
    import pandas as pd

    stamp = pd.Timestamp(np.datetime64(int(ticks), type_.unit))
    if type_.tz is not None:
        stamp = stamp.tz_localize("UTC")  # Arrow stores aware timestamps as UTC ticks
    return str(stamp.isoformat())


def _plain(value: Any) -> Any:
    """A value JSON accepts: Python scalars only, None for NaN and infinities."""
    if value is None or isinstance(value, bool | str):
        return value
    if isinstance(value, int | np.integer):
        return int(value)
    if isinstance(value, float | np.floating | Decimal):
        number = float(value)
        return number if math.isfinite(number) else None
    return str(value)


def format_statistics(stats: Mapping[str, Mapping[str, Any]]) -> pd.DataFrame:
    """One row per feature (kind, count, nulls, distinct, min, max, mean, std, p50), for display."""
    import pandas as pd

    rows = []
    for s in stats.values():
        quantiles = s.get("quantiles") or {}
        rows.append(
            {
                "kind": s.get("kind"),
                "count": s.get("count"),
                "nulls": s.get("nulls"),
                "distinct": s.get("distinct"),
                "min": s.get("min"),
                "max": s.get("max"),
                "mean": s.get("mean"),
                "std": s.get("std"),
                "p50": quantiles.get("p50"),
            }
        )
    index = pd.Index(list(stats), name="feature", dtype=object)
    return pd.DataFrame(rows, index=index, columns=list(SUMMARY_COLUMNS))
