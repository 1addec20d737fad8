"""Point-in-time joins: give each spine row the feature values known at its time.

A *spine* is a frame of events (keys, an event time, labels...).  For every
spine row and every :class:`FeatureSource`, the join picks the feature row
with equal keys and the greatest event time **at or before** the spine row's
time, so no value from the future of a row leaks into it::

    >>> import pandas as pd, pyarrow as pa
    >>> days = lambda *d: pd.to_datetime([f"2024-01-{x:02}" for x in d])
    >>> spine = pd.DataFrame({"user": [1, 1, 2], "ts": days(2, 5, 5)})
    >>> clicks = pa.table({"user": [1, 1], "ts": days(1, 3), "n": [10, 20]})
    >>> source = FeatureSource(clicks, ("user",), "ts", {"n": "clicks"})
    >>> point_in_time_join(spine, "ts", [source])["clicks"].tolist()
    [10, 20, <NA>]

Promises:

* One output row per spine row, in spine order: the spine's own columns
  (values, dtypes and index untouched; duplicate rows stay) followed by the
  feature columns in the order the sources and their ``features`` give.
  A spine row is never dropped: a key never seen, a key with only later
  rows, a null key or a null spine time gives nulls.
* A feature row at exactly the spine time counts.  When several feature rows
  share the keys and the event time, the one that comes **last** in the
  feature table wins (an append-only log's latest write), so the same inputs
  always give the same training set.
* ``ttl``: a feature row older than ``spine time - ttl`` gives nulls (a row
  exactly ``ttl`` old still counts).
* Times: naive timestamps mean UTC, aware ones compare as instants whatever
  their zone, and units (s/ms/us/ns) may differ.  Every time column becomes
  int64 counts since the epoch in UTC, at the finer unit of the spine and the
  source, so a row 1 ns after the spine time is still "later"; DuckDB's
  session time zone never enters.
* Feature dtypes: a feature column keeps the dtype ``table.to_pandas()``
  gives it (pandas extension dtypes recorded in the table's pandas metadata,
  such as ``Int64`` or ``string``, are kept).  An integer or bool column with
  missing values in the output becomes pandas nullable (``Int64``, ``UInt8``,
  ``boolean``, ...) instead of silently turning into float64 or object.
  Strings, categoricals and datetimes keep their types, with missing values.

How: the matching runs in DuckDB (one ``ASOF LEFT JOIN`` per source, chained
in one query, on a private in-memory connection) over narrow Arrow tables of
keys, int64 order keys and row numbers; the result is scattered back to spine
order by row number.  The feature values never pass through DuckDB: they are
gathered from the source tables by the matched row numbers, which is what
keeps their exact types.  DuckDB's ASOF join picks among rows tied on the
order key in whatever order its threads sorted them (duckdb/duckdb#25536), so
ties are settled before it: the order key carries the row number in its low
bits when the source's time span (divided by the times' common step) and row
count fit in 63 bits -- e.g. 1M rows of microsecond times over 100 days, or of
hourly stamps over 100 years -- and otherwise a ``GROUP BY`` keeps the last
row of each (keys, time) first, which costs about a fifth more.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from nbops.errors import InvalidInputError

if TYPE_CHECKING:
    import pandas as pd

#: Timestamp units from coarsest to finest, with nanoseconds per unit.
_UNIT_NS = {"s": 1_000_000_000, "ms": 1_000_000, "us": 1_000, "ns": 1}
_UNITS = tuple(_UNIT_NS)


@dataclass(frozen=True)
class FeatureSource:
    """One feature table to join onto the spine.

    ``features`` maps a column of ``table`` to its output name; a list of
    column names keeps the names.  ``keys`` may be a single column name.
    """

    table: pa.Table
    keys: tuple[str, ...]
    event_time: str
    features: Mapping[str, str]
    ttl: datetime.timedelta | None = None

    def __post_init__(self) -> None:
        # Frozen, so normalise through object.__setattr__; a bare string would
        # otherwise be taken as a tuple of one-letter key names.
        if isinstance(self.keys, str):
            object.__setattr__(self, "keys", (self.keys,))
        elif not isinstance(self.keys, tuple):
            object.__setattr__(self, "keys", tuple(self.keys))
        if not isinstance(self.features, Mapping):
            if isinstance(self.features, str):
                one = self.features
                raise InvalidInputError(f"features must map feature columns to output names, e.g. {{{one!r}: {one!r}}}")
            object.__setattr__(self, "features", {name: name for name in self.features})
        if not isinstance(self.table, pa.Table):
            raise InvalidInputError(
                f"FeatureSource.table must be a pyarrow Table, not {type(self.table).__name__}"
                " (convert a DataFrame with pa.Table.from_pandas(df, preserve_index=False))"
            )
        if self.ttl is not None:
            if not isinstance(self.ttl, datetime.timedelta):
                raise InvalidInputError(f"ttl must be a datetime.timedelta or None, not {type(self.ttl).__name__}")
            if self.ttl < datetime.timedelta(0):
                raise InvalidInputError(f"ttl must not be negative, got {self.ttl}")


@dataclass(frozen=True)
class _Plan:
    """What one source adds to the query: narrow tables of keys, int64 order keys, row numbers."""

    source: FeatureSource
    #: Spine key arrays, each made comparable with the feature key of the same position.
    spine_keys: tuple[pa.ChunkedArray, ...]
    #: Order key of each spine row: a feature row matches when its order key is <= this.
    spine_order: pa.ChunkedArray
    #: Feature side: k0.. (keys), o (order key) and, when ``row_bits`` is 0, fi (row number).
    feature_rows: pa.Table
    #: > 0: ``o`` carries the row number in its low bits, so ties cannot occur; 0: ``o`` is
    #: the time and a GROUP BY keeps the last of tied rows.
    row_bits: int
    #: Both times as int64 in one unit, and the ttl in that unit (rounded down), or None.
    spine_times: pa.ChunkedArray
    feature_times: pa.ChunkedArray
    ttl_units: int | None
    #: False when a key column is all-null by type: nothing can match, no join is needed.
    joinable: bool


@dataclass(frozen=True)
class _Matches:
    """Matched feature row per spine row: ``positions`` (0 where none), ``missing`` (None: none)."""

    positions: np.ndarray
    missing: np.ndarray | None


def point_in_time_join(
    spine: pd.DataFrame | pa.Table, event_time: str, sources: Sequence[FeatureSource]
) -> pd.DataFrame:
    """The spine with, for each source, the feature values as of each row's ``event_time``.

    ``spine`` may be a pandas DataFrame (the result carries its columns as they
    are) or an Arrow table (converted with ``to_pandas()``).  See the module
    docstring for the rules; user errors raise
    :class:`~nbops.errors.InvalidInputError` naming the column.
    """
    import pandas as pd

    spine_frame: pd.DataFrame
    if isinstance(spine, pa.Table):
        spine_frame = spine.to_pandas()
        arrow_spine: pa.Table | None = spine
    elif isinstance(spine, pd.DataFrame):
        spine_frame, arrow_spine = spine, None
    else:
        raise InvalidInputError(f"the spine must be a pandas DataFrame or a pyarrow Table, not {type(spine).__name__}")
    if isinstance(spine_frame.columns, pd.MultiIndex):
        raise InvalidInputError("the spine must have flat column names, not a MultiIndex")
    if isinstance(sources, FeatureSource):
        sources = [sources]
    for i, source in enumerate(sources):
        if not isinstance(source, FeatureSource):
            raise InvalidInputError(f"sources[{i}] must be a FeatureSource, not {type(source).__name__}")

    # One Arrow array per spine column and per time unit, shared by all sources,
    # so that the query scans each spine column once.
    arrow_columns: dict[str, pa.ChunkedArray] = {}
    time_ints: dict[str, pa.ChunkedArray] = {}

    def spine_column(name: str, role: str) -> pa.ChunkedArray:
        if name in arrow_columns:
            return arrow_columns[name]
        if name not in spine_frame.columns:
            hint = " (it is an index level: use spine.reset_index())" if name in spine_frame.index.names else ""
            raise InvalidInputError(
                f"the spine has no {role} column {name!r}{hint}; its columns: {_listing(spine_frame.columns)}"
            )
        if int((spine_frame.columns == name).sum()) > 1:
            raise InvalidInputError(f"the spine has more than one column named {name!r}")
        column = arrow_spine.column(name) if arrow_spine is not None else _spine_arrow(spine_frame[name], name)
        arrow_columns[name] = _decoded(column)
        return arrow_columns[name]

    spine_time = spine_column(event_time, "event-time")
    if not pa.types.is_timestamp(spine_time.type):
        raise InvalidInputError(
            f"spine column {event_time!r} must hold timestamps, not "
            f"{spine_frame[event_time].dtype} ({spine_time.type}); convert it with "
            f"pd.to_datetime(spine[{event_time!r}], utc=True)"
        )

    def spine_time_ints(unit: str) -> pa.ChunkedArray:
        if unit not in time_ints:
            time_ints[unit] = _epoch_ints(spine_time, unit, f"spine column {event_time!r}")
        return time_ints[unit]

    _check_output_names(spine_frame.columns, sources)
    plans = [_plan(i, source, spine_column, spine_time.type.unit, spine_time_ints) for i, source in enumerate(sources)]

    columns: dict[str, Any] = {}
    for plan, matches in zip(plans, _match(len(spine_frame), plans), strict=True):
        table = plan.source.table
        declared = _declared_dtypes(table)
        for column_name, output in plan.source.features.items():
            columns[output] = _gathered(table.column(column_name), matches, declared.get(column_name))
    if not columns:
        return spine_frame.copy(deep=False)
    # Arrays, not Series, so nothing aligns on the index (it may hold duplicates);
    # copy=False so that pandas neither copies nor consolidates the new columns.
    features = pd.DataFrame(columns, index=spine_frame.index, copy=False)
    return pd.concat([spine_frame, features], axis=1)


def _spine_arrow(series: pd.Series, name: str) -> pa.ChunkedArray:
    """One spine column as Arrow, zero-copy where pandas allows."""
    import pandas as pd

    if isinstance(series.dtype, pd.DatetimeTZDtype):
        # Same instants as naive UTC wall clocks (naive means UTC here), and
        # pyarrow's own conversion of zoned columns warns under pandas 3.1.
        series = series.dt.tz_convert(None)
    try:
        return pa.chunked_array([pa.array(series, from_pandas=True)])
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError) as exc:
        raise InvalidInputError(f"spine column {name!r} cannot be used to join: {exc}") from exc


def _check_output_names(spine_columns: Any, sources: Sequence[FeatureSource]) -> None:
    taken_by: dict[str, int] = {}
    for i, source in enumerate(sources):
        for column, output in source.features.items():
            if output in spine_columns:
                raise InvalidInputError(
                    f"feature {column!r} of sources[{i}] would become column {output!r}, which the "
                    f"spine already has; rename it, e.g. features={{{column!r}: '{output}_f'}}"
                )
            if output in taken_by:
                raise InvalidInputError(
                    f"output column {output!r} is produced twice (sources[{taken_by[output]}] and "
                    f"sources[{i}]); rename one of them in its features mapping"
                )
            taken_by[output] = i


def _plan(
    i: int,
    source: FeatureSource,
    spine_column: Callable[[str, str], pa.ChunkedArray],
    spine_unit: str,
    spine_time_ints: Callable[[str], pa.ChunkedArray],
) -> _Plan:
    table = source.table
    where = f"the table of sources[{i}]"

    def feature_column(name: str, role: str) -> pa.ChunkedArray:
        found = table.schema.get_all_field_indices(name)
        if not found:
            raise InvalidInputError(
                f"{where} has no {role} column {name!r}; its columns: {_listing(table.column_names)}"
            )
        if len(found) > 1:
            raise InvalidInputError(f"{where} has more than one column named {name!r}")
        return table.column(found[0])

    time = feature_column(source.event_time, "event-time")
    if not pa.types.is_timestamp(time.type):
        raise InvalidInputError(
            f"column {source.event_time!r} of {where} must hold timestamps, not {time.type}; "
            "cast it, e.g. with pc.cast(column, pa.timestamp('us', 'UTC'))"
        )
    for name in source.features:
        feature_column(name, "feature")

    spine_keys: list[pa.ChunkedArray] = []
    feature_columns: dict[str, pa.ChunkedArray] = {}
    joinable = True
    for k, key in enumerate(source.keys):
        spine_key = spine_column(key, "key")
        feature_key = _decoded(feature_column(key, "key"))
        if pa.types.is_null(spine_key.type) or pa.types.is_null(feature_key.type):
            joinable = False  # all null: a null key never matches
        elif _family(spine_key.type) != _family(feature_key.type):
            raise InvalidInputError(
                f"key {key!r} is {spine_key.type} in the spine but {feature_key.type} in {where}; "
                "cast one of them so that both hold the same kind of values"
            )
        elif pa.types.is_timestamp(spine_key.type):
            # Compared as instants, like event times, never through DuckDB's session zone.
            key_unit = _finer(spine_key.type.unit, feature_key.type.unit)
            spine_key = _epoch_ints(spine_key, key_unit, f"spine key {key!r}")
            feature_key = _epoch_ints(feature_key, key_unit, f"key {key!r} of {where}")
        spine_keys.append(spine_key)
        feature_columns[f"k{k}"] = feature_key
    unit = _finer(spine_unit, time.type.unit)
    spine_times = spine_time_ints(unit)
    feature_times = _epoch_ints(time, unit, f"column {source.event_time!r} of {where}")
    composite = _composite_order(feature_times, spine_times)
    if composite is None:
        spine_order, row_bits = spine_times, 0
        feature_columns["o"] = feature_times
        feature_columns["fi"] = pa.chunked_array([pa.array(np.arange(table.num_rows))])
    else:
        spine_order, feature_columns["o"], row_bits = composite
    return _Plan(
        source=source,
        spine_keys=tuple(spine_keys),
        spine_order=spine_order,
        feature_rows=pa.table(feature_columns),
        row_bits=row_bits,
        spine_times=spine_times,
        feature_times=feature_times,
        ttl_units=None if source.ttl is None else _timedelta_ns(source.ttl) // _UNIT_NS[unit],
        joinable=joinable,
    )


#: Composite order keys must stay below this (tests lower it to force the GROUP BY route).
_ORDER_KEY_LIMIT = 1 << 63


def _composite_order(
    feature_times: pa.ChunkedArray, spine_times: pa.ChunkedArray
) -> tuple[pa.ChunkedArray, pa.ChunkedArray, int] | None:
    """Order keys with the feature row number below the time, or None when they do not fit.

    A feature row's key is ``(t - first) // step << bits | row``; a spine row's
    is ``(min(t, last) - first) // step << bits | (2**bits - 1)``, or -1 before
    ``first``.  ``feature key <= spine key`` holds exactly when the feature time
    is at or before the spine time, and among rows tied on keys and time the
    last row has the greatest key, so the ASOF join itself keeps it: DuckDB's
    own pick among ties changes from run to run (duckdb/duckdb#25536), and
    this avoids a GROUP BY.  ``step``, the times' common divisor, shrinks
    coarse stamps (daily, hourly) so that more tables fit in 63 bits.
    """
    rows = len(feature_times)
    if rows == 0 or feature_times.null_count == rows:
        return None
    bounds = pc.min_max(feature_times)
    first, last = bounds["min"].as_py(), bounds["max"].as_py()
    span, bits = last - first, max(1, (rows - 1).bit_length())
    if span >= 1 << 62:  # t - first would not fit in int64
        return None
    relative = pc.fill_null(feature_times, first).to_numpy() - first
    step = 1
    if (span + 1) << bits > _ORDER_KEY_LIMIT:
        step = int(np.gcd.reduce(relative)) or 1
        if (span // step + 1) << bits > _ORDER_KEY_LIMIT:
            return None
    if step > 1:
        relative //= step
    feature_keys = (relative << bits) | np.arange(rows, dtype=np.int64)
    feature_nulls = feature_times.is_null().to_numpy(zero_copy_only=False)

    spine = pc.fill_null(spine_times, first).to_numpy()
    # Clipped first, so that no difference overflows, however far the spine times lie.
    spine_keys = ((np.clip(spine, first, last) - first) // step << bits) | ((1 << bits) - 1)
    spine_keys[spine < first] = -1
    spine_nulls = spine_times.is_null().to_numpy(zero_copy_only=False)
    return (
        pa.chunked_array([pa.array(spine_keys, mask=spine_nulls if spine_nulls.any() else None)]),
        pa.chunked_array([pa.array(feature_keys, mask=feature_nulls if feature_nulls.any() else None)]),
        bits,
    )


def _match(n: int, plans: Sequence[_Plan]) -> list[_Matches]:
    """For each plan, the matched feature row of every spine row, in spine order."""
    no_match = _Matches(np.zeros(n, dtype=np.int64), np.ones(n, dtype=bool) if n else None)
    result = [no_match for _ in plans]
    joined = [j for j, plan in enumerate(plans) if plan.joinable]
    if n == 0 or not joined:
        return result

    # Every name in the SQL is generated here; no user text reaches the query.
    spine_columns: dict[str, pa.ChunkedArray | pa.Array] = {"rn": pa.array(np.arange(n, dtype=np.int64))}
    name_of: dict[int, str] = {}  # id of a spine array -> its column, to register it once

    def spine_name(column: pa.ChunkedArray) -> str:
        if id(column) not in name_of:
            name_of[id(column)] = f"c{len(name_of)}"
            spine_columns[name_of[id(column)]] = column
        return name_of[id(column)]

    ctes, selects, joins = [], [], []
    for j in joined:
        plan = plans[j]
        keys = [f"k{k}" for k in range(len(plan.source.keys))]
        spine_keys = [spine_name(column) for column in plan.spine_keys]
        spine_order = spine_name(plan.spine_order)
        not_null = " AND ".join(f"{c} IS NOT NULL" for c in [*keys, "o"])
        if plan.row_bits:
            ctes.append(f"f{j} AS (SELECT * FROM src{j} WHERE {not_null})")
            selects.append(f"coalesce(f{j}.o & {(1 << plan.row_bits) - 1}, -1) AS i{j}")
        else:
            # Times alone can tie: keep the last row of each (keys, time) first.
            group = ", ".join([*keys, "o"])
            ctes.append(f"f{j} AS (SELECT {group}, max(fi) AS fi FROM src{j} WHERE {not_null} GROUP BY {group})")
            selects.append(f"coalesce(f{j}.fi, -1) AS i{j}")
        on = [f"s.{s} = f{j}.{k}" for s, k in zip(spine_keys, keys, strict=True)]
        joins.append(f"ASOF LEFT JOIN f{j} ON {' AND '.join([*on, f's.{spine_order} >= f{j}.o'])}")
    query = f"WITH {', '.join(ctes)} SELECT s.rn, {', '.join(selects)} FROM spine AS s {' '.join(joins)}"

    import duckdb

    connection = duckdb.connect()
    try:
        # Rows are put back in spine order by row number, so DuckDB need not keep any order.
        connection.execute("SET preserve_insertion_order = false")
        connection.register("spine", pa.table(spine_columns))
        for j in joined:
            connection.register(f"src{j}", plans[j].feature_rows)
        found = connection.sql(query).to_arrow_table()
    finally:
        connection.close()

    # The join returns rows in any order: scatter them back by spine row number.
    row_numbers = found.column("rn").to_numpy()
    if len(row_numbers) != n:
        raise RuntimeError(f"point-in-time join returned {len(row_numbers)} rows for {n} spine rows")
    for j in joined:
        positions = np.full(n, -2, dtype=np.int64)
        positions[row_numbers] = found.column(f"i{j}").to_numpy()  # -1: no match
        if (positions == -2).any():
            raise RuntimeError("point-in-time join lost spine rows")
        missing = positions < 0
        positions[missing] = 0
        ttl_units = plans[j].ttl_units
        if ttl_units is not None:
            missing |= _expired(plans[j], positions, ttl_units)
        result[j] = _Matches(positions, missing if missing.any() else None)
    return result


def _expired(plan: _Plan, positions: np.ndarray, ttl_units: int) -> np.ndarray:
    """Spine rows whose matched feature row is older than the ttl (garbage where unmatched)."""
    if len(plan.feature_times) == 0:  # nothing matched, nothing to expire
        return np.zeros(len(positions), dtype=bool)
    spine = pc.fill_null(plan.spine_times, 0).to_numpy()
    matched = pc.fill_null(plan.feature_times, 0).to_numpy().take(positions)
    # A match is never later than its spine row, so the age is in [0, 2**64) and
    # exact in uint64 even where the int64 difference would overflow.
    age = spine.view(np.uint64) - matched.view(np.uint64)
    expired: np.ndarray = age > min(ttl_units, (1 << 64) - 1)
    return expired


def _gathered(column: pa.ChunkedArray, matches: _Matches, declared: Any) -> Any:
    """The values of ``column`` at the matched rows, as a pandas-ready array."""
    n = len(matches.positions)
    if len(column) == 0:
        return _pandas_values(column.take(pa.nulls(n, pa.int64())), declared)
    route = _numeric_route(column.type, declared)
    if route is None:
        indices = pa.array(matches.positions, mask=matches.missing)
        return _pandas_values(column.take(indices), declared)

    # Numbers and bools: gather in numpy and build the pandas array directly,
    # which avoids Arrow's slower take with null indices and a conversion.
    if column.null_count:
        values = pc.fill_null(column, pa.scalar(0).cast(column.type)).to_numpy()
        source_missing = column.is_null().to_numpy(zero_copy_only=False)
    else:
        values, source_missing = column.to_numpy(), None
    gathered = values.take(matches.positions)
    missing = matches.missing
    if source_missing is not None:
        taken_missing = source_missing.take(matches.positions)
        missing = taken_missing if missing is None else missing | taken_missing
    if route == "numpy":
        if missing is None or not missing.any():
            return gathered
        if gathered.dtype.kind == "f":
            gathered[missing] = np.nan
            return gathered
    dtype = declared if route == "declared" else _nullable_dtype(column.type)
    return dtype.construct_array_type()(
        gathered.astype(dtype.numpy_dtype, copy=False),
        np.zeros(n, dtype=bool) if missing is None else missing,
    )


def _numeric_route(arrow_type: pa.DataType, declared: Any) -> str | None:
    """How _gathered builds a column: "numpy", "declared" (pandas masked dtype) or None (Arrow)."""
    import pandas as pd

    if pa.types.is_integer(arrow_type):
        kinds = "iu"
    elif pa.types.is_boolean(arrow_type):
        kinds = "b"
    elif pa.types.is_float32(arrow_type) or pa.types.is_float64(arrow_type):
        kinds = "f"
    else:
        return None
    if declared is None:
        return "numpy"
    masked = (pd.arrays.IntegerArray, pd.arrays.FloatingArray, pd.arrays.BooleanArray)
    if issubclass(declared.construct_array_type(), masked) and declared.numpy_dtype.kind in kinds:
        return "declared"
    return None


def _nullable_dtype(arrow_type: pa.DataType) -> Any:
    import pandas as pd

    return pd.api.types.pandas_dtype(_NULLABLE[arrow_type])


def _pandas_values(column: pa.ChunkedArray, declared: Any) -> Any:
    """An output column as a pandas array: declared extension dtype, else nullable if need be."""
    candidates = []
    if declared is not None:
        candidates.append(declared)
    if column.null_count and column.type in _NULLABLE:
        candidates.append(_nullable_dtype(column.type))
    for dtype in candidates:
        try:
            return dtype.__from_arrow__(column)
        except (TypeError, ValueError, NotImplementedError, pa.ArrowException):
            continue  # metadata that no longer fits the column: try the next choice
    return column.to_pandas().array


#: Arrow types whose default pandas conversion would turn nulls into NaN (float64) or None (object).
_NULLABLE = {
    pa.int8(): "Int8",
    pa.int16(): "Int16",
    pa.int32(): "Int32",
    pa.int64(): "Int64",
    pa.uint8(): "UInt8",
    pa.uint16(): "UInt16",
    pa.uint32(): "UInt32",
    pa.uint64(): "UInt64",
    pa.bool_(): "boolean",
}


def _declared_dtypes(table: pa.Table) -> dict[str, Any]:
    """pandas extension dtypes recorded in the table's pandas metadata (``Int64``, ``string``, ...).

    Categoricals and zoned datetimes are left out: their Arrow types already
    convert back to them.
    """
    import pandas as pd

    declared: dict[str, Any] = {}
    for entry in (table.schema.pandas_metadata or {}).get("columns", []):
        field, numpy_type = entry.get("field_name"), entry.get("numpy_type")
        if not isinstance(field, str) or not isinstance(numpy_type, str):
            continue
        try:
            dtype = pd.api.types.pandas_dtype(numpy_type)
        except (TypeError, ValueError):
            continue
        if (
            isinstance(dtype, pd.api.extensions.ExtensionDtype)
            and hasattr(dtype, "__from_arrow__")
            and not isinstance(dtype, (pd.CategoricalDtype, pd.DatetimeTZDtype))
        ):
            declared[field] = dtype
    return declared


def _decoded(column: pa.ChunkedArray) -> pa.ChunkedArray:
    """Dictionary (categorical) keys compared by value, not by code."""
    if pa.types.is_dictionary(column.type):
        return column.cast(column.type.value_type)
    return column


def _family(arrow_type: pa.DataType) -> str:
    """Key types that DuckDB compares by value share a family; other types must match exactly."""
    if pa.types.is_integer(arrow_type) or pa.types.is_floating(arrow_type) or pa.types.is_decimal(arrow_type):
        return "number"
    if pa.types.is_string(arrow_type) or pa.types.is_large_string(arrow_type) or pa.types.is_string_view(arrow_type):
        return "string"
    if pa.types.is_binary(arrow_type) or pa.types.is_large_binary(arrow_type) or pa.types.is_binary_view(arrow_type):
        return "binary"
    if pa.types.is_timestamp(arrow_type):
        return "timestamp"
    if pa.types.is_date(arrow_type):
        return "date"
    return str(arrow_type)


def _finer(a: str, b: str) -> str:
    return a if _UNITS.index(a) >= _UNITS.index(b) else b


def _epoch_ints(column: pa.ChunkedArray, unit: str, what: str) -> pa.ChunkedArray:
    """Timestamps as int64 counts of ``unit`` since the epoch, in UTC.

    Arrow stores zoned timestamps as UTC and a naive one as its wall clock, so
    the stored integer is already the UTC instant under "naive means UTC".
    """
    if column.type.unit != unit:
        try:
            column = column.cast(pa.timestamp(unit, column.type.tz))
        except pa.ArrowInvalid as exc:
            raise InvalidInputError(
                f"{what} holds times outside the range of int64 {unit} since 1970, "
                f"needed to compare it with {unit} times: {exc}"
            ) from exc
    return column.cast(pa.int64())


def _timedelta_ns(delta: datetime.timedelta) -> int:
    """Exact nanoseconds of a timedelta (pandas.Timedelta keeps its nanoseconds too)."""
    nanoseconds = int(getattr(delta, "nanoseconds", 0))
    return ((delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds) * 1_000 + nanoseconds


def _listing(names: Any, limit: int = 20) -> str:
    names = [str(n) for n in names]
    return ", ".join(names[:limit]) + (" ..." if len(names) > limit else "") if names else "none"
