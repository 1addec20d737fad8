"""Content-addressed dataset snapshots: write, read, list, compare, verify.

A version is stored column by column.  Each column is one Parquet file (zstd)
named by the digest of the column's content, so a version that changes one
column writes only that column, and the same content again writes nothing.
The catalog row of a version lists its columns' digests and the exact Arrow
schema (with the pandas metadata), which is what makes ``load`` round-trip
nullable integers, categoricals, time zones and the index.

Index: a default ``RangeIndex`` is stored as metadata only; any other index
(named or not, one or many levels) is stored as extra columns and restored by
``load``, exactly as ``DataFrame.to_parquet`` does.
"""

from __future__ import annotations

import socket
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from nbops.core import _faults, lineage
from nbops.core import catalog as cat
from nbops.core.columns import arrow_from_pandas, author, object_rows, publish_columns, read_table, table_to_pandas
from nbops.core.hashing import column_digest, combine_digest
from nbops.core.names import validate_name
from nbops.core.refs import ColumnChange, SnapshotDiff, SnapshotRef, parse_ref
from nbops.core.repository import datasets as records
from nbops.core.repository import rows_frame
from nbops.errors import InvalidInputError, NotFoundError

if TYPE_CHECKING:
    import pandas as pd
    import sqlalchemy as sa

    from nbops.store import Store

_KIND = "snapshot"


def to_arrow(data: object) -> pa.Table:
    """A pandas DataFrame (or an Arrow table) as an Arrow table; anything else is an error.

    A DataFrame that would not load back equal is refused here, before anything
    is written (see :mod:`nbops.core.roundtrip`).
    """
    from nbops.core.roundtrip import check_arrow_types, check_frame, check_labels, conversion_error

    if isinstance(data, pa.Table):
        if data.num_columns == 0:
            raise InvalidInputError("this table has no columns; a snapshot needs at least one")
        check_arrow_types(data)
        return data
    import pandas as pd

    if not isinstance(data, pd.DataFrame):
        hint = " (a Series: use series.to_frame())" if isinstance(data, pd.Series) else ""
        raise InvalidInputError(
            f"a snapshot needs a pandas DataFrame or a pyarrow Table, not {type(data).__name__}{hint}"
        )
    if len(data.columns) == 0:
        raise InvalidInputError("this DataFrame has no columns; a snapshot needs at least one")
    duplicated = data.columns[data.columns.duplicated()].tolist()
    if duplicated:
        raise InvalidInputError(f"column names must be unique; repeated: {', '.join(map(str, duplicated))}")
    check_labels(data, keep_index=True)
    try:
        table = arrow_from_pandas(data, preserve_index=None)
    except (pa.ArrowException, TypeError, ValueError, OverflowError) as exc:
        raise InvalidInputError(
            f"this DataFrame cannot be stored as columns: {conversion_error(data, exc, None)}. Give each column "
            "one type (e.g. df[col] = df[col].astype(str)) and try again"
        ) from exc
    check_frame(data, table, keep_index=True)
    return lineage.without_provenance(table)


def snapshot(
    store: Store,
    data: object,
    name: str,
    message: str | None = None,
    parents: Sequence[lineage.Artifact] = (),
) -> SnapshotRef:
    """Store ``data`` as the next version of ``name``; ``parents`` are lineage parents beyond the reads.

    The new version, its objects, its lineage and its audit row are one
    catalog transaction.  Unchanged content returns the latest version
    (``new=False``) and writes nothing: a version's lineage parents are those
    of the write that made it, and never change afterwards.
    """
    validate_name(name, _KIND)
    if message is not None and not isinstance(message, str):
        raise InvalidInputError(f"message must be a str, not {type(message).__name__}")
    table = to_arrow(data)
    digests = [column_digest(c) for c in table.columns]
    digest = combine_digest(table.schema, digests)

    latest = _latest_row(store, name)
    if latest is not None and latest.digest == digest:
        lineage.mark_written(data, store.root, "snapshot", f"{name}@{latest.version}")
        return _ref_from_row(store, name, latest, new=False)
    derived_from = lineage.frame_parents(store.root, data)

    bytes_written = publish_columns(store, table, digests)

    now = cat.utcnow()
    reads = store.take_reads()
    # Writers of this name run one at a time, so the next version number is this writer's alone.
    with store.catalog.write(("dataset", name)) as conn:
        dataset_id = records.get_or_create_dataset(store.catalog, conn, name, now)
        latest_version, latest_digest = records.latest_version(conn, dataset_id)
        if latest_digest == digest:  # another writer committed the same content meanwhile
            row = _version_row(conn, name, dataset_id, latest_version)
            lineage.mark_written(data, store.root, "snapshot", f"{name}@{latest_version}")
            return _ref_from_row(store, name, row, new=False)
        store.catalog.insert_ignore(
            conn,
            cat.objects,
            object_rows(store, table, digests, now),
        )
        version = latest_version + 1
        records.insert_version(
            conn,
            dataset_id,
            version,
            digest,
            table,
            digests,
            message,
            author(),
            socket.gethostname(),
            bytes_written,
            now,
        )
        every_parent = [*reads, *derived_from, *lineage.made_by(store.context), *parents]
        lineage.add_edges(store.catalog, conn, ("snapshot", f"{name}@{version}"), every_parent, now)
        _faults.reached("before_catalog_commit")
    _faults.reached("after_catalog_commit")
    store.record_write("snapshot", f"{name}@{version}")
    lineage.mark_written(data, store.root, "snapshot", f"{name}@{version}")
    return SnapshotRef(
        name=name,
        version=version,
        digest=digest,
        rows=table.num_rows,
        columns=tuple(table.column_names),
        created=cat.as_utc(now),
        message=message,
        author=author(),
        bytes_written=bytes_written,
        new=True,
    )


# -- reading -------------------------------------------------------------------
def _dataset_id(conn: sa.Connection, name: str) -> int:
    dataset_id = records.dataset_id(conn, name)
    if dataset_id is None:
        known = records.dataset_names(conn)
        listing = ", ".join(known[:20]) + (" ..." if len(known) > 20 else "") if known else "none yet"
        raise NotFoundError(f"no snapshot named {name!r}; known: {listing}")
    return int(dataset_id)


def _version_row(conn: sa.Connection, name: str, dataset_id: int, version: int | None) -> sa.Row[Any]:
    row = records.version_row(conn, dataset_id, version)
    if row is None:
        versions = records.version_numbers(conn, dataset_id)
        have = f"versions {versions[0]}..{versions[-1]}" if versions else "no versions"
        raise NotFoundError(f"snapshot {name!r} has no version {version}; it has {have}")
    return row


def _latest_row(store: Store, name: str) -> sa.Row[Any] | None:
    with store.catalog.read() as conn:
        dataset_id = records.dataset_id(conn, name)
        return None if dataset_id is None else records.version_row(conn, dataset_id, None)


def _resolve(store: Store, name: str, version: int | str | None) -> tuple[str, sa.Row[Any], list[str]]:
    name, number = parse_ref(name, version, _KIND)
    with store.catalog.read() as conn:
        row = _version_row(conn, name, _dataset_id(conn, name), number)
        digests = records.column_digests(conn, row.id)
    return name, row, digests


def _ref_from_row(store: Store, name: str, row: sa.Row[Any], new: bool = True) -> SnapshotRef:
    schema = pa.ipc.read_schema(pa.py_buffer(row.arrow_schema))
    return SnapshotRef(
        name=name,
        version=row.version,
        digest=row.digest,
        rows=row.rows,
        columns=tuple(schema.names),
        created=cat.as_utc(row.created),
        message=row.message,
        author=row.author,
        bytes_written=row.bytes_written if new else 0,
        new=new,
    )


def get_ref(store: Store, name: str, version: int | str | None = None) -> SnapshotRef:
    """The :class:`SnapshotRef` of a version (``name@3``, or ``version``; default: the latest); records no read."""
    name, row, _ = _resolve(store, name, version)
    return _ref_from_row(store, name, row)


def load_table(store: Store, name: str, version: int | str | None = None, record: bool = True) -> pa.Table:
    """A version as Arrow; ``record`` notes the read for the lineage of the next write."""
    return _read_version(store, name, version, record)[1]


def _read_version(store: Store, name: str, version: int | str | None, record: bool) -> tuple[str, pa.Table]:
    """(``name@version``, its table)."""
    name, row, digests = _resolve(store, name, version)
    table = read_table(store, pa.ipc.read_schema(pa.py_buffer(row.arrow_schema)), digests)
    ref = f"{name}@{row.version}"
    if record:
        store.record_read("snapshot", ref)
        lineage.note_process_read(store.root, "snapshot", ref)
    return ref, table


def load(store: Store, name: str, version: int | str | None = None) -> pd.DataFrame:
    """A version as pandas; its ``attrs`` name the version (see :data:`nbops.core.lineage.PROVENANCE`)."""
    ref, table = _read_version(store, name, version, record=True)
    frame = table_to_pandas(table)
    lineage.set_provenance(frame, [lineage.provenance(store.root, "snapshot", ref)])
    return frame


def history(store: Store, name: str) -> pd.DataFrame:
    """Every version of a dataset, oldest first: digest, rows, columns, time, author and bytes written."""
    name, _ = parse_ref(name, None, _KIND)
    with store.catalog.read() as conn:
        versions = records.version_rows(conn, _dataset_id(conn, name))
    columns = {"version": "version", "digest": "digest", "rows": "rows", "columns": "n_columns", "created": "created"}
    return rows_frame(
        versions, {**columns, "message": "message", "author": "author", "bytes_written": "bytes_written"}, ["created"]
    )


def datasets(store: Store) -> pd.DataFrame:
    """One row per dataset, by name: versions, latest version, its rows, columns, time and digest."""
    with store.catalog.read() as conn:
        latest = records.latest_per_dataset(conn)
    columns = {"name": "name", "versions": "versions", "latest": "latest", "rows": "rows", "columns": "n_columns"}
    return rows_frame(latest, {**columns, "updated": "created", "digest": "digest"}, times=["updated"])


# -- comparing -----------------------------------------------------------------
def diff(
    store: Store,
    name: str,
    a: int | None = None,
    b: int | None = None,
    keys: str | Sequence[str] | None = None,
) -> SnapshotDiff:
    """Row and schema changes from version ``a`` to ``b`` (default: the latest and the one before it).

    With ``keys``, rows are matched on them and a row whose other values differ
    counts as changed; without, rows are compared whole (added or removed).
    Reading the versions is not recorded as a read.
    """
    name, ref_version = parse_ref(name, None, _KIND)
    b_ref = get_ref(store, name, b if b is not None else ref_version)
    a_version = a if a is not None else b_ref.version - 1
    if a_version < 1:
        raise NotFoundError(f"snapshot {name!r} has only version {b_ref.version}; there is nothing to compare with")
    table_a = load_table(store, name, a_version, record=False)
    table_b = load_table(store, name, b_ref.version, record=False)
    key_list = [keys] if isinstance(keys, str) else list(keys or [])
    return compare_tables(name, a_version, b_ref.version, table_a, table_b, key_list)


def compare_tables(
    name: str, a: int, b: int, table_a: pa.Table, table_b: pa.Table, keys: Sequence[str] = ()
) -> SnapshotDiff:
    """Row and schema changes between two tables, counted in DuckDB."""
    import duckdb

    types_a = {f.name: f.type for f in table_a.schema}
    types_b = {f.name: f.type for f in table_b.schema}
    changes = [ColumnChange(c, "removed", str(types_a[c]), None) for c in types_a if c not in types_b]
    changes += [ColumnChange(c, "added", None, str(types_b[c])) for c in types_b if c not in types_a]
    changes += [
        ColumnChange(c, "type", str(types_a[c]), str(types_b[c]))
        for c in types_a
        if c in types_b and types_a[c] != types_b[c]
    ]
    for key in keys:
        if key not in types_a or key not in types_b:
            raise InvalidInputError(
                f"key column {key!r} is not in both versions; columns in v{a}: {', '.join(types_a)}; "
                f"in v{b}: {', '.join(types_b)}"
            )
    common = [c for c in types_a if c in types_b and types_a[c] == types_b[c]]
    values = [c for c in common if c not in keys]

    def q(col: str) -> str:
        return '"' + col.replace('"', '""') + '"'

    con = duckdb.connect()
    try:
        con.register("ta", table_a.select(common) if common else pa.table({"_n": [0] * table_a.num_rows}))
        con.register("tb", table_b.select(common) if common else pa.table({"_n": [0] * table_b.num_rows}))
        hashed = ", ".join(q(c) for c in values) or "1"
        if keys:
            key_cols = ", ".join(q(k) for k in keys)
            on = " AND ".join(f"a.{q(k)} IS NOT DISTINCT FROM b.{q(k)}" for k in keys)
            sql = f"""
                WITH a AS (SELECT {key_cols}, hash({hashed}) AS h FROM ta),
                     b AS (SELECT {key_cols}, hash({hashed}) AS h FROM tb)
                SELECT
                    count(*) FILTER (WHERE a.h IS NULL),
                    count(*) FILTER (WHERE b.h IS NULL),
                    count(*) FILTER (WHERE a.h IS NOT NULL AND b.h IS NOT NULL AND a.h <> b.h),
                    count(*) FILTER (WHERE a.h = b.h)
                FROM a FULL OUTER JOIN b ON {on}
            """
            added, removed, changed, unchanged = con.execute(sql).fetchone()  # type: ignore[misc]
        else:
            all_cols = ", ".join(q(c) for c in common) or "1"
            sql = f"""
                WITH a AS (SELECT hash({all_cols}) AS h, count(*) AS n FROM ta GROUP BY h),
                     b AS (SELECT hash({all_cols}) AS h, count(*) AS n FROM tb GROUP BY h)
                SELECT
                    coalesce(sum(greatest(coalesce(b.n, 0) - coalesce(a.n, 0), 0)), 0),
                    coalesce(sum(greatest(coalesce(a.n, 0) - coalesce(b.n, 0), 0)), 0),
                    coalesce(sum(least(coalesce(a.n, 0), coalesce(b.n, 0))), 0)
                FROM a FULL OUTER JOIN b ON a.h = b.h
            """
            added, removed, unchanged = con.execute(sql).fetchone()  # type: ignore[misc]
            changed = 0
    finally:
        con.close()
    return SnapshotDiff(
        name=name,
        a=a,
        b=b,
        rows_a=table_a.num_rows,
        rows_b=table_b.num_rows,
        added=int(added),
        removed=int(removed),
        changed=int(changed),
        unchanged=int(unchanged),
        keys=tuple(keys),
        schema_changes=tuple(changes),
    )
