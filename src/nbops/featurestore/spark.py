"""The Spark engine: point-in-time joins that run in Spark and give Spark DataFrames.

``store.training_data(spine, refs, event_time=..., engine="spark")`` (with
``pip install "nbops[spark]"``, PySpark 4 and Java 17) runs the join of
:mod:`nbops.featurestore.pit` on the active ``SparkSession`` (or ``spark=``)
and returns a Spark DataFrame; the spine may be a Spark or a pandas DataFrame.
It keeps the DuckDB engine's promises, row for row:

* one output row per spine row, in spine order (the result is sorted by the
  spine's row position), spine columns first, then the features in the order
  asked; a key never seen, seen only later, a null key or a null time gives
  nulls, and no spine row is dropped;
* the feature row with equal keys and the greatest event time at or before
  the spine time wins; among rows tied on keys and time, the last one of the
  feature table (its DataFrame's row order); ``ttl`` drops older rows (a row
  exactly ``ttl`` old counts);
* times compare as instants: naive timestamps (pandas, Arrow, or Spark's
  ``TIMESTAMP_NTZ``) mean UTC whatever the session's time zone, aware ones
  compare in UTC.

How: per source, the spine's (keys, time, row) and the source's (keys, time,
row, values) are unioned, partitioned by the keys and ordered by (time,
source rows before spine rows, row); the last source row seen at each spine
row is its match (``last(..., ignorenulls)`` over a window): one shuffle per
source, no range join.

Spark holds microseconds: a pandas or Arrow time with nanoseconds is refused
(naming the column) rather than rounded. Feature data of the store reaches
Spark from the driver (the group's state is read as Arrow, then
``spark.createDataFrame``); the join itself runs on the executors.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from nbops.errors import InvalidInputError

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame, SparkSession

#: The spine's row position while the join runs (dropped from the result).
ROW = "__nbops_row"
_KEY = "__nbops_k{}"
_TIME, _KIND, _ORDER, _VALUES, _MATCH, _AT = "__nbops_t", "__nbops_kind", "__nbops_ord", "__nbops_v", "__nbops_m", "t"


def spark_session(spark: SparkSession | None = None) -> SparkSession:
    """``spark``, else the active session; a clear error when PySpark or a session is missing."""
    try:
        from pyspark.sql import SparkSession
    except ImportError:
        raise InvalidInputError('engine="spark" needs PySpark: pip install "nbops[spark]" (and Java 17)') from None
    session = spark or SparkSession.getActiveSession()
    if session is None:
        raise InvalidInputError(
            'engine="spark" needs a SparkSession: start one (SparkSession.builder.getOrCreate()) or pass spark='
        )
    return session


def is_spark_frame(data: object) -> bool:
    """Whether ``data`` is a Spark DataFrame (classic or Connect), without importing PySpark."""
    return any(c.__module__.startswith("pyspark.sql") and c.__name__ == "DataFrame" for c in type(data).__mro__)


def to_spark(spark: SparkSession, data: object, what: str = "frame") -> DataFrame:
    """A pandas DataFrame, Arrow table or Spark DataFrame as a Spark DataFrame, every value kept.

    Naive timestamps become UTC instants (Spark would read them in the session's zone); times
    go to microseconds, refusing a value with nanoseconds; dictionaries become their values.
    """
    if is_spark_frame(data):
        return data  # type: ignore[return-value]
    import pandas as pd

    if isinstance(data, pd.DataFrame):
        from nbops.core.columns import arrow_from_pandas

        table = arrow_from_pandas(data, preserve_index=False)
    elif isinstance(data, pa.Table):
        table = data
    else:
        raise InvalidInputError(f"the {what} must be a Spark or pandas DataFrame, not {type(data).__name__}")
    columns = []
    for field, column in zip(table.schema, table.columns, strict=True):
        t = field.type
        if pa.types.is_dictionary(t):
            column, t = column.cast(t.value_type), t.value_type
        if pa.types.is_timestamp(t):
            target = pa.timestamp("us", tz=t.tz or "UTC")
            try:
                column = column.cast(pa.timestamp(t.unit, "UTC") if t.tz is None else t).cast(target, safe=True)
            except pa.ArrowInvalid:
                raise InvalidInputError(
                    f"column {field.name!r} of the {what} has times with nanoseconds, which Spark cannot hold; "
                    f"round them first (e.g. df[{field.name!r}] = df[{field.name!r}].dt.floor('us'))"
                ) from None
        columns.append(column)
    names = table.column_names
    return spark.createDataFrame(pa.Table.from_arrays(columns, names=names).replace_schema_metadata(None))


@dataclass(frozen=True)
class SparkSource:
    """One feature table, a Spark DataFrame, to join onto the spine (as :class:`~nbops.featurestore.pit.FeatureSource`)."""

    frame: Any
    keys: tuple[str, ...]
    event_time: str
    features: Mapping[str, str]
    ttl: dt.timedelta | None = None


def _micros(frame: DataFrame, column: str, what: str) -> Column:
    """Microseconds since the epoch, in UTC, of a timestamp column (naive = UTC, whatever the session's zone)."""
    from pyspark.sql import functions as F
    from pyspark.sql.types import TimestampNTZType, TimestampType

    if column not in frame.columns:
        raise InvalidInputError(f"column {column!r} is not in the {what}; its columns are: {', '.join(frame.columns)}")
    kind = frame.schema[column].dataType
    if isinstance(kind, TimestampType):
        return F.unix_micros(F.col(f"`{column}`"))
    if isinstance(kind, TimestampNTZType):
        return F.expr(f"timestampdiff(MICROSECOND, TIMESTAMP_NTZ'1970-01-01 00:00:00', `{column}`)")
    raise InvalidInputError(f"column {column!r} of the {what} is {kind.simpleString()}; it must be a timestamp")


def point_in_time_join(spine: DataFrame, event_time: str, sources: Sequence[SparkSource]) -> DataFrame:
    """For each spine row, each source's feature values known at its time (see the module's promises)."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    taken = set(spine.columns)
    for source in sources:
        for name in source.features.values():
            if name in taken:
                raise InvalidInputError(f"the output column {name!r} would appear twice; rename a feature")
            taken.add(name)
    _micros(spine, event_time, "spine")  # a missing or non-time column is refused before any work
    out = spine.withColumn(ROW, F.monotonically_increasing_id())
    for source in sources:
        frame = source.frame
        for column in [*source.keys, *source.features]:
            if column not in frame.columns:
                raise InvalidInputError(f"column {column!r} is not in the feature table of {list(source.features)}")
        for key in source.keys:
            if key not in spine.columns:
                raise InvalidInputError(f"key column {key!r} is not in the spine")
            a, b = spine.schema[key].dataType, frame.schema[key].dataType
            if (a.typeName() in ("string", "binary")) != (b.typeName() in ("string", "binary")):
                raise InvalidInputError(
                    f"key {key!r} is {a.simpleString()} in the spine but {b.simpleString()} in the feature table"
                )
        keys = [_KEY.format(i) for i in range(len(source.keys))]
        feature_time = _micros(frame, source.event_time, "feature table")
        values = F.struct(
            feature_time.alias(_AT), *(F.col(f"`{c}`").alias(name) for c, name in source.features.items())
        )
        known = F.lit(True)
        for key in source.keys:
            known = known & F.col(f"`{key}`").isNotNull()
        rows = (
            frame.withColumn(_ORDER, F.monotonically_increasing_id())
            .where(known & feature_time.isNotNull())
            .select(
                *(F.col(f"`{k}`").alias(n) for k, n in zip(source.keys, keys, strict=True)),
                feature_time.alias(_TIME),
                F.lit(0).alias(_KIND),
                F.col(_ORDER),
                values.alias(_VALUES),
            )
        )
        asks = out.select(
            *(F.col(f"`{k}`").cast(frame.schema[k].dataType).alias(n) for k, n in zip(source.keys, keys, strict=True)),
            _micros(out, event_time, "spine").alias(_TIME),
            F.lit(1).alias(_KIND),
            F.col(ROW).alias(_ORDER),
            F.lit(None).cast(rows.schema[_VALUES].dataType).alias(_VALUES),
        )
        window = (
            Window.partitionBy(*keys)
            .orderBy(F.col(_TIME).asc_nulls_first(), F.col(_KIND), F.col(_ORDER))
            .rowsBetween(Window.unboundedPreceding, Window.currentRow)
        )
        matched = rows.unionByName(asks).withColumn(_MATCH, F.last(_VALUES, ignorenulls=True).over(window))
        found = F.col(_TIME).isNotNull() & F.col(_MATCH).isNotNull()
        if source.ttl is not None:
            ttl = source.ttl // dt.timedelta(microseconds=1)
            found = found & (F.col(f"{_MATCH}.{_AT}") >= F.col(_TIME) - F.lit(ttl))
        answers = matched.where(F.col(_KIND) == 1).select(
            F.col(_ORDER).alias(ROW),
            *(F.when(found, F.col(_MATCH)[name]).alias(name) for name in source.features.values()),
        )
        out = out.join(answers, ROW, "left")
    return out.orderBy(ROW).drop(ROW)


__all__ = ["SparkSource", "is_spark_frame", "point_in_time_join", "spark_session", "to_spark"]


def files_readable(schema: pa.Schema, keys: Sequence[str]) -> bool:
    """Whether Spark reads a version's column objects as the very values nbops stores.

    Integers, floats, booleans, strings, binaries, dates, decimals and
    time-zone aware timestamps in micro- or milliseconds are; nanoseconds,
    unsigned integers, naive times (Spark would read them as ``TIMESTAMP_NTZ``,
    where nbops means UTC), dictionaries and nested types are not, and nor are
    float keys (Spark groups ``-0.0`` with ``0.0``).
    """

    def plain(t: pa.DataType) -> bool:
        if pa.types.is_timestamp(t):
            return t.tz is not None and t.unit in ("ms", "us")
        return bool(
            pa.types.is_signed_integer(t)
            or pa.types.is_floating(t)
            or pa.types.is_boolean(t)
            or pa.types.is_string(t)
            or pa.types.is_large_string(t)
            or pa.types.is_binary(t)
            or pa.types.is_large_binary(t)
            or pa.types.is_date32(t)
            or pa.types.is_decimal128(t)
        )

    return all(plain(f.type) for f in schema) and not any(pa.types.is_floating(schema.field(k).type) for k in keys)


def read_commits(
    spark: SparkSession,
    schema: pa.Schema,
    keys: Sequence[str],
    event_time: str,
    commits: Sequence[tuple[int, Sequence[Sequence[str]]]],
    path_of: Any,
) -> DataFrame:
    """The state after ``commits`` (number, row blocks of column digests), read by Spark from the objects themselves.

    Each column is one read over its objects; a value's row is (commit, block,
    ``_metadata.row_index``), which joins a row's columns back together; the
    latest commit wins per (keys, event time), as in :func:`nbops.featurestore.groups._merge`.
    ``path_of(digest)`` is the object's path. Check :func:`files_readable` first.
    """
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    placed = [
        (digest, commit, block, column)
        for commit, blocks in commits
        for block, digests in enumerate(blocks)
        for column, digest in enumerate(digests)
    ]
    where = spark.createDataFrame(placed, "digest string, commit int, block int, column int")
    rows: DataFrame | None = None
    for column in range(len(schema)):
        digests = sorted({d for d, _, _, c in placed if c == column})
        reader = spark.read.option("parquet.page.verify-checksum.enabled", "true")  # a damaged page fails the job
        values = reader.parquet(*[str(path_of(d)) for d in digests]).select(
            F.col("v").alias(f"__nbops_c{column}"),
            F.regexp_replace(F.col("_metadata.file_name"), r"\.parquet$", "").alias("digest"),
            F.col("_metadata.row_index").alias("__nbops_r"),
        )
        placed_values = values.join(F.broadcast(where.filter(F.col("column") == column).drop("column")), "digest")
        placed_values = placed_values.drop("digest")
        rows = placed_values if rows is None else rows.join(placed_values, ["commit", "block", "__nbops_r"])
    assert rows is not None
    pair = [F.col(f"__nbops_c{schema.get_field_index(c)}") for c in [*keys, event_time]]
    latest = Window.partitionBy(*pair).orderBy(F.col("commit").desc())
    state = rows.withColumn("__nbops_n", F.row_number().over(latest)).filter(F.col("__nbops_n") == 1)
    return state.select(*[F.col(f"__nbops_c{i}").alias(f.name) for i, f in enumerate(schema)])
