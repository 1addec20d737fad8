"""Feature commits from Spark DataFrames: the executors write the rows, the driver commits.

``store.register_features(spark_df, group, keys=..., event_time=...)`` checks
the frame with Spark jobs (column types, keys and event time set, one row per
(keys, event time)), then every partition is written by the executor that
holds it, straight into the store's data root, as the column objects a pandas
commit has (one zstd Parquet file per column, named by its digest, with page
checksums): one **row block** per partition.  The driver receives, per block,
its column digests, row count, bytes and span of event times, never the rows,
and makes the commit in one catalog transaction, as for pandas.

What differs from a pandas frame:

* a Spark commit is always a commit (a frame of rows stored already makes a
  new commit whose rows all count as updated): finding that nothing changed
  would compare the frame with the stored rows on the driver;
* the frame is persisted (memory and disk) for the call, so that the checks
  and the write see the same rows; it is unpersisted afterwards;
* the online rows (one per key, its latest) are computed by Spark and written
  by the driver inside the commit's transaction; the statistics are computed
  when first asked for, as for every commit, by Spark where a session is
  active (:mod:`nbops.featurestore.spark_stats`);
* expectations run before the write: the rules about single rows in each
  executor, as the pandas path runs them, ``unique`` as a Spark ``groupBy``
  (:func:`check_expectations`); pandera schemas are pandas-only and refused.

Executors need nbops installed and the data root reachable (a local path they
share, or object storage with credentials in their environment); a probe job
checks that before the write, naming the path.  A killed job leaves objects
that no commit refers to: ``nbops gc`` removes them.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from nbops.errors import DuplicateKeysError, InvalidInputError, StoreError

if TYPE_CHECKING:
    from pyspark.sql import DataFrame

#: What each executor reports for the partition it wrote (Spark DDL).
_REPORT = "part int, rows long, digests array<string>, sizes array<long>, written long, low long, high long"


@dataclass(frozen=True)
class Block:
    """One partition as written: its column objects (in schema order), rows, object sizes, bytes written."""

    part: int
    rows: int
    digests: list[str]
    sizes: list[int]
    written: int
    low_us: int | None
    high_us: int | None


def arrow_schema(frame: DataFrame) -> pa.Schema:
    """The Arrow schema a Spark frame's rows are stored with (times in UTC, or naive for TIMESTAMP_NTZ)."""
    from pyspark.sql.pandas.types import to_arrow_schema
    from pyspark.sql.types import StructType

    fields = []
    for column in frame.schema.fields:
        problem = ""
        try:
            [field] = to_arrow_schema(StructType([column]), timezone="UTC")
        except (TypeError, ValueError) as exc:  # e.g. CalendarIntervalType: Arrow has no such type
            problem = str(exc).split("]", 1)[-1].strip()
        else:
            if column.dataType.typeName() == "variant":
                problem = "a VARIANT would read back as a struct of binaries"
        if problem:
            raise InvalidInputError(
                f"column {column.name!r} ({column.dataType.simpleString()}) cannot be stored as a feature: "
                f"{problem}. Cast it (e.g. to a string) or drop it"
            )
        fields.append(field.with_nullable(True))
    return pa.schema(fields)


def conform(schema: pa.Schema, stored: pa.Schema | None) -> pa.Schema:
    """``schema`` with the version's string and binary widths where only those differ.

    pandas stores strings as ``large_string``, Spark gives ``string``: the
    same values, so a Spark frame writes into a version pandas created (and the
    reverse) without a schema change.
    """
    if stored is None:
        return schema
    same = {(pa.string(), pa.large_string()), (pa.binary(), pa.large_binary())}
    fields = []
    for field in schema:
        want = stored.field(field.name).type if field.name in stored.names else None
        if want is not None and ((field.type, want) in same or (want, field.type) in same):
            field = field.with_type(want)
        fields.append(field)
    return pa.schema(fields)


def check_frame(frame: DataFrame, schema: pa.Schema, keys: Sequence[str], event_time: str) -> None:
    """Refuse a frame with missing keys or times, or repeated (keys, event time) pairs, naming them.

    Spark jobs: the frame is not collected.
    """
    from pyspark.sql import functions as F

    for name in keys:
        if pa.types.is_floating(schema.field(name).type):
            raise InvalidInputError(
                f"key column {name!r} is a float; a Spark frame's keys must be integers, strings, dates or "
                "timestamps (Spark and the store compare floats differently)"
            )
    pair = [*keys, event_time]
    for name in pair:
        missing = frame.filter(F.col(f"`{name}`").isNull()).count()
        if missing:
            raise InvalidInputError(f"column {name!r} has {missing} missing values; keys and event time must be set")
    repeated = frame.groupBy(*[F.col(f"`{c}`") for c in pair]).count().filter(F.col("count") > 1)
    examples = repeated.limit(5).collect()
    if examples:
        shown = "; ".join(", ".join(f"{c}={row[c]!r}" for c in pair) + f" ({row['count']} rows)" for row in examples)
        raise DuplicateKeysError(
            f"{repeated.count()} (keys, event time) pairs appear more than once in this insert, e.g. {shown}; "
            "keep one row per key and time (e.g. df.dropDuplicates([...]))"
        )


def executor_objects(objects: Any) -> tuple[str, str]:
    """What an executor needs to open the store's object files: ``("local", path)`` or ``("remote", uri)``."""
    from nbops.core.objects.local import ObjectStore

    if isinstance(objects, ObjectStore):
        return "local", str(objects.root)
    return "remote", str(objects.uri)


def _open_objects(spec: tuple[str, str]) -> Any:
    kind, where = spec
    if kind == "local":
        from pathlib import Path

        from nbops.core.objects.local import ObjectStore

        return ObjectStore(Path(where))
    from nbops.core.objects.remote import RemoteObjectStore

    # No catalog here: an object that exists is uploaded again (which refreshes its time for gc).
    return RemoteObjectStore(where, committed=lambda digest: False)


def probe(frame: DataFrame, spec: tuple[str, str]) -> None:
    """Check from an executor that the data root can be written; a clear error naming it otherwise."""
    where = spec[1]

    def run(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        for _ in batches:
            pass
        problem = ""
        try:
            objects = _open_objects(spec)
            if spec[0] == "local":
                os.makedirs(objects.tmp_dir, exist_ok=True)
                with tempfile.NamedTemporaryFile(dir=objects.tmp_dir, prefix="probe-"):
                    pass
        except Exception as exc:  # reported to the driver, which names the path
            problem = f"{type(exc).__name__}: {exc}"
        yield pa.record_batch([pa.array([problem])], names=["problem"])

    session = frame.sparkSession
    problems = [r["problem"] for r in session.range(1).mapInArrow(run, "problem string").collect()]
    if any(problems):
        raise StoreError(
            f"Spark's executors cannot write the store's data root {where} ({'; '.join(p for p in problems if p)}); "
            "give them access to it (a shared path, or object-storage credentials in their environment)"
        )


def write_blocks(frame: DataFrame, schema: pa.Schema, event_time: str, spec: tuple[str, str]) -> list[Block]:
    """Write each partition of ``frame`` as a row block of column objects, from the executors; the blocks, in order."""
    from nbops.core.columns import ticks

    schema_bytes = schema.serialize().to_pybytes()

    def run(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        from pyspark import TaskContext

        from nbops.core.columns import publish_object
        from nbops.core.hashing import column_digest

        stored = pa.ipc.read_schema(pa.py_buffer(schema_bytes))
        received = list(batches)
        part = TaskContext.get().partitionId()  # type: ignore[union-attr]
        if not received or sum(b.num_rows for b in received) == 0:
            return
        table = pa.Table.from_batches(received).rename_columns(stored.names).cast(stored)
        objects = _open_objects(spec)
        digests = [column_digest(c) for c in table.columns]
        written = sum(publish_object(objects, d, c) for d, c in zip(digests, table.columns, strict=True))
        times = pa.compute.min_max(table.column(event_time))
        low, high = ticks(times["min"], "us", up=False), ticks(times["max"], "us", up=True)
        yield pa.RecordBatch.from_pylist(
            [
                {
                    "part": part,
                    "rows": table.num_rows,
                    "digests": digests,
                    "sizes": [objects.size(d) for d in digests],
                    "written": written,
                    "low": low,
                    "high": high,
                }
            ],
            schema=pa.schema(
                [
                    ("part", pa.int32()),
                    ("rows", pa.int64()),
                    ("digests", pa.list_(pa.string())),
                    ("sizes", pa.list_(pa.int64())),
                    ("written", pa.int64()),
                    ("low", pa.int64()),
                    ("high", pa.int64()),
                ]
            ),
        )

    rows = frame.mapInArrow(run, _REPORT).collect()
    blocks = [Block(r.part, r.rows, list(r.digests), list(r.sizes), r.written, r.low, r.high) for r in rows]
    return sorted(blocks, key=lambda b: b.part)


def replaced(frame: DataFrame, history: pa.Table, pair: Sequence[str]) -> int:
    """How many (keys, event time) pairs of ``frame`` are in ``history`` (a Spark join; the frame stays there).

    The stored pairs take the frame's own Spark types, so that a naive time
    stays a ``TIMESTAMP_NTZ`` wall time (a ``TIMESTAMP`` would be read in the
    session's zone, and a DST gap would move it).
    """
    if history.num_rows == 0:
        return 0
    mine = frame.select(*[f"`{c}`" for c in pair])
    stored = frame.sparkSession.createDataFrame(
        history.select(list(pair)).replace_schema_metadata(None), schema=mine.schema
    ).dropDuplicates(list(pair))
    return int(mine.join(stored, list(pair), "left_semi").count())


def latest_per_key(frame: DataFrame, keys: Sequence[str], event_time: str, schema: pa.Schema) -> pa.Table:
    """Each key's latest row (its online row), computed by Spark; only those rows reach the driver."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    order = Window.partitionBy(*[F.col(f"`{k}`") for k in keys]).orderBy(F.col(f"`{event_time}`").desc())
    latest = frame.withColumn("__nbops_rank", F.row_number().over(order)).filter("__nbops_rank = 1")
    table = latest.drop("__nbops_rank").toArrow()
    return table.rename_columns(schema.names).cast(schema)


def persisted(frame: DataFrame) -> tuple[DataFrame, Callable[[], None]]:
    """``frame`` persisted for the call (so every job sees the same rows) and what unpersists it."""
    from pyspark import StorageLevel

    if frame.is_cached:  # the caller's own cache: used, and left as it was
        return frame, lambda: None
    staged = frame.persist(StorageLevel.MEMORY_AND_DISK)

    def unpersist() -> None:
        staged.unpersist()

    return staged, unpersist


def check_expectations(frame: DataFrame, rules: Sequence[Any], max_examples: int = 5) -> Any:
    """The :class:`~nbops.featurestore.expectations.ValidationReport` of ``rules`` on a Spark frame.

    Rules about single rows (``not_null``, ``in_range``, ``allowed_values``,
    ``dtype``) run as the pandas path runs them, on each partition in its
    executor, and their counts add up; ``unique`` is a Spark ``groupBy``. Row
    numbers in examples count rows in the frame's partition order (what
    ``collect()`` gives); ``unique`` shows repeated values without rows.
    """
    from nbops.featurestore import expectations as expect

    parsed = expect.parse_expectations(rules)
    local = [r for r in parsed if r.rule != "unique"]
    local_json = expect.expectations_to_json(local)

    def run(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        import json

        from pyspark import TaskContext

        from nbops.featurestore import expectations as expect

        received = list(batches)
        if not received:
            return
        table = pa.Table.from_batches(received)
        report = expect.validate(table, expect.expectations_from_json(local_json), max_examples=max_examples)
        part = TaskContext.get().partitionId()  # type: ignore[union-attr]
        yield pa.record_batch(
            [
                pa.array([part], pa.int32()),
                pa.array([table.num_rows], pa.int64()),
                pa.array([json.dumps(report.to_dict())]),
            ],
            names=["part", "rows", "report"],
        )

    import json

    parts = sorted(frame.mapInArrow(run, "part int, rows long, report string").collect(), key=lambda r: r.part)
    total = sum(r.rows for r in parts)
    reports = [(r.rows, json.loads(r.report)["results"]) for r in parts]
    if not reports:  # no rows: the rules on an empty frame of this schema
        empty = expect.validate(arrow_schema(frame).empty_table(), local, max_examples=max_examples)
        reports = [(0, empty.to_dict()["results"])]
    merged = [_merge_results(i, reports, total, max_examples) for i in range(len(local))]
    results = iter(merged)
    ordered = [_unique_result(frame, r, total, max_examples) if r.rule == "unique" else next(results) for r in parsed]
    return expect.ValidationReport(results=tuple(ordered), rows=total)


def _merge_results(i: int, reports: Sequence[tuple[int, list[dict[str, Any]]]], total: int, max_examples: int) -> Any:
    """Rule ``i``'s results on each partition as one result on the whole frame."""
    from nbops.featurestore import expectations as expect

    each = [results[i] for _, results in reports]
    first = each[0]
    column_failure = next((r for r in each if r["scope"] == "column"), None)
    if column_failure is not None:  # the same column problem in every partition
        return expect.ExpectationResult(
            rule=column_failure["rule"],
            label=column_failure["label"],
            columns=tuple(column_failure["columns"]),
            passed=False,
            failed_count=total,
            examples=[],
            message=column_failure["message"],
            scope="column",
        )
    failed = sum(r["failed_count"] for r in each)
    if failed == 0:
        return expect.ExpectationResult(first["rule"], first["label"], tuple(first["columns"]), True, 0, [], "passed")
    examples: list[dict[str, Any]] = []
    offset = 0
    message = ""
    for (rows, _), r in zip(reports, each, strict=True):
        if r["failed_count"] and not message:
            # The first failing partition's words, with the whole frame's counts.
            message = r["message"].replace(
                f"{r['failed_count']:,} of {rows:,} rows", f"{failed:,} of {total:,} rows", 1
            )
        for example in r["examples"]:
            if len(examples) < max_examples:
                examples.append({**example, "row": example.get("row", 0) + offset} if "row" in example else example)
        offset += rows
    return expect.ExpectationResult(
        first["rule"], first["label"], tuple(first["columns"]), False, failed, examples, message
    )


def _unique_result(frame: DataFrame, rule: Any, total: int, max_examples: int) -> Any:
    """A ``unique`` rule on a Spark frame: repeated combinations by a ``groupBy`` (nulls count as equal)."""
    from pyspark.sql import functions as F

    from nbops.featurestore import expectations as expect

    columns = list(rule.columns)
    missing = [c for c in columns if c not in frame.columns]
    label = rule.label()
    if missing:
        return expect.ExpectationResult(
            "unique", label, tuple(columns), False, total, [], f"column {missing[0]!r} is not in the frame", "column"
        )
    repeated = frame.groupBy(*[F.col(f"`{c}`") for c in columns]).count().filter(F.col("count") > 1)
    summary = repeated.agg(F.sum(F.col("count") - 1).alias("failed"), F.count(F.lit(1)).alias("combinations")).first()
    failed = int(summary["failed"] or 0) if summary is not None else 0
    if failed == 0:
        return expect.ExpectationResult("unique", label, tuple(columns), True, 0, [], "passed")
    combinations = int(summary["combinations"])  # type: ignore[index]
    examples = [{c: row[c] for c in columns} for row in repeated.limit(max_examples).collect()]
    message = (
        f"{failed:,} of {total:,} rows repeat an earlier row's ({', '.join(columns)}); "
        f"{combinations:,} distinct values occur more than once"
    )
    return expect.ExpectationResult("unique", label, tuple(columns), False, failed, examples, message)
