"""Tables stored column by column as content-addressed Parquet objects.

Snapshot versions and feature-group commits both keep their data this way:
each column is one zstd Parquet file named by the column's digest, written
through :class:`nbops.core.objects.local.ObjectStore` (atomic, never overwritten; or
:class:`nbops.core.objects.remote.RemoteObjectStore` on object storage), and a
catalog row lists the digests in order with the exact Arrow schema.
"""

from __future__ import annotations

import datetime as dt
import getpass
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.parquet as pq

from nbops.core.hashing import column_digest
from nbops.errors import BadObjectError, CorruptDataError

if TYPE_CHECKING:
    import pandas as pd

    from nbops.store import Store

PARQUET_COMPRESSION = "zstd"
_COLUMN = "v"  # the single column name inside each object file
#: Rows per Parquet row group: every column of a table is cut at the same rows, so that row group
#: i of each of its objects holds the same rows (what :func:`read_rows_between` relies on).
ROW_GROUP_ROWS = 1 << 20
#: Marks an object written with a CRC-32 on every page and ``ROW_GROUP_ROWS``-row groups: a part of
#: it can be read with its integrity checked, without hashing the whole column.
_PAGES_KEY, _PAGES_VALUE = b"nbops.pages", b"crc32"


def workers(n: int) -> int:
    """Threads for n independent column reads or writes (Arrow releases the GIL)."""
    return max(1, min(n, os.cpu_count() or 1))


def publish_columns(store: Store, table: pa.Table, digests: Sequence[str]) -> int:
    """Write every column whose object does not exist yet; return the bytes written.

    Existing objects are passed to ``publish`` too, which checks their content
    (a corrupt or truncated copy is replaced by the good bytes being written)
    and refreshes their time: an old orphan that this version reuses must not
    fall to a concurrent ``gc`` before the catalog commit.
    """
    todo = {d: table.column(i) for i, d in enumerate(digests)}
    if not todo:
        return 0
    with ThreadPoolExecutor(workers(len(todo))) as pool:
        return sum(pool.map(lambda item: publish_column(store, *item), todo.items()))


def publish_column(store: Store, digest: str, column: pa.ChunkedArray, replace: bool = False) -> int:
    """Publish one column under ``digest``; an existing copy counts only if it reads back as ``digest``.

    ``replace`` writes the object even over an existing copy (``nbops repair``).
    """
    return publish_object(store.objects, digest, column, replace)


def publish_object(objects: Any, digest: str, column: pa.ChunkedArray, replace: bool = False) -> int:
    """:func:`publish_column` into an object store (``ObjectFiles``) without a store: what Spark's executors call."""
    return int(
        objects.publish(
            digest,
            lambda path: pq.write_table(
                _object_table(column),
                path,
                compression=PARQUET_COMPRESSION,
                row_group_size=ROW_GROUP_ROWS,
                write_page_checksum=True,
            ),
            sound=(lambda: False) if replace else (lambda: object_is_sound(objects, digest, column.type)),
        )
    )


#: Schema metadata key holding the dictionary of an empty dictionary column (Parquet drops it).
_DICTIONARY_KEY = b"nbops.dictionary"


def _object_table(column: pa.ChunkedArray) -> pa.Table:
    """The one-column table an object file holds.

    Parquet keeps a dictionary column's dictionary in its data pages, so an
    empty column (no pages) would read back with no categories at all: its
    dictionary goes into the file's metadata instead.
    """
    metadata = {_PAGES_KEY: _PAGES_VALUE}
    if pa.types.is_dictionary(column.type) and len(column) == 0:
        dictionary = _single_dictionary(column)
        sink = pa.BufferOutputStream()
        with pa.ipc.new_stream(sink, pa.schema([("d", dictionary.type)])) as writer:
            writer.write_batch(pa.record_batch([dictionary], names=["d"]))
        metadata[_DICTIONARY_KEY] = sink.getvalue().to_pybytes()
    return pa.table({_COLUMN: column}).replace_schema_metadata(metadata)


def _single_dictionary(column: pa.ChunkedArray) -> pa.Array:
    chunks = column.unify_dictionaries().chunks if column.num_chunks else []
    return chunks[0].dictionary if chunks else pa.array([], type=column.type.value_type)


def _column_of(table: pa.Table) -> pa.ChunkedArray:
    """An object file's column, with the dictionary of an empty dictionary column put back."""
    column = table.column(_COLUMN)
    metadata = table.schema.metadata or {}
    if _DICTIONARY_KEY in metadata and pa.types.is_dictionary(column.type) and len(column) == 0:
        dictionary = pa.ipc.open_stream(metadata[_DICTIONARY_KEY]).read_all().column("d").combine_chunks()
        empty = pa.DictionaryArray.from_arrays(
            pa.array([], type=column.type.index_type), dictionary, ordered=column.type.ordered
        )
        column = pa.chunked_array([empty])
    return column


def _legacy_empty_dictionary(column: pa.ChunkedArray) -> bool:
    """An empty dictionary column written before its dictionary was kept: zero rows, nothing to verify but
    that it is empty; its categories were lost when it was written (read back with none)."""
    return pa.types.is_dictionary(column.type) and len(column) == 0 and len(_single_dictionary(column)) == 0


def object_is_sound(objects: Any, digest: str, type: pa.DataType | None = None) -> bool:
    """True if the object ``digest`` of ``objects`` (an object store) reads back whole and hashes to its name."""
    try:
        read_verified(objects, digest, type)
    except (BadObjectError, OSError):
        return False
    return True


def object_rows(store: Store, table: pa.Table, digests: Sequence[str], now: dt.datetime) -> list[dict[str, Any]]:
    """Catalog rows for the objects of ``table`` (inserted with ON CONFLICT DO NOTHING).

    Called inside the version's catalog transaction, which is also what
    ``gc`` deletes under: an object that a ``gc`` removed since it was
    published is written again here, so a commit never refers to a missing
    object.
    """
    rows = []
    for digest, position in {d: i for i, d in enumerate(digests)}.items():
        try:
            size = store.objects.size(digest)
        except FileNotFoundError:
            publish_column(store, digest, table.column(position))
            size = store.objects.size(digest)
        rows.append({"digest": digest, "rows": table.num_rows, "bytes": size, "created": now})
    return rows


def read_column(store: Store, digest: str, type: pa.DataType | None = None) -> pa.ChunkedArray:
    """One object's column at ``type`` (the type its table records), checked against its digest.

    A missing, truncated or altered object raises :class:`CorruptDataError`
    naming the object, the versions that use it and how to repair it; it
    never returns different data.
    """
    try:
        return read_verified(store.objects, digest, type)
    except BadObjectError as exc:
        raise corrupt_error(store, digest, str(exc)) from None


def read_verified(objects: Any, digest: str, type: pa.DataType | None) -> pa.ChunkedArray:
    """The column of object ``digest`` in the object store ``objects``; :class:`BadObjectError` unless it hashes right."""
    try:
        column = _column_of(pq.read_table(objects.source(digest)))
    except FileNotFoundError:
        raise BadObjectError("is missing") from None
    except (pa.ArrowException, OSError, KeyError, ValueError) as exc:
        # A truncated or overwritten Parquet file: no footer, bad pages, wrong column.
        raise BadObjectError(f"cannot be read ({_first_line(exc)})") from None
    # Arrow's == ignores a list's field name (Parquet reads list<item> back as list<element>), but the
    # digest hashes the type's spelling: compare spellings.
    if type is not None and (column.type != type or str(column.type) != str(type)):
        try:
            column = column.cast(type)
        except (pa.ArrowException, ValueError) as exc:
            raise BadObjectError(f"holds {column.type}, not {type} ({_first_line(exc)})") from None
    actual = column_digest(column)
    if actual != digest and not _legacy_empty_dictionary(column):
        raise BadObjectError(f"content hashes to {actual}, not to its name")
    return column


def read_table(store: Store, schema: pa.Schema, digests: Sequence[str]) -> pa.Table:
    """Read the objects ``digests`` as the columns of ``schema``, in parallel, each verified.

    Parquet does not keep every Arrow type exactly (a dictionary of
    large_string reads back as a dictionary of string): each column is cast
    back to the type the catalog recorded, and then hashed; the digest is of
    that type, so the check is exact.
    """
    with ThreadPoolExecutor(workers(len(digests))) as pool:
        columns = list(
            pool.map(lambda item: read_column(store, item[0], item[1].type), zip(digests, schema, strict=True))
        )
    return pa.Table.from_arrays(columns, schema=schema)


def read_rows_between(
    store: Store,
    schema: pa.Schema,
    digests: Sequence[str],
    time: str,
    low: pa.Scalar,
    high: pa.Scalar,
    whole: bool = False,
) -> pa.Table:
    """The rows of a stored table whose timestamp column ``time`` lies in ``[low, high]``.

    ``schema`` and ``digests`` name the columns to read (``time`` among them).
    When every object was written with page checksums and aligned row groups
    (as :func:`publish_column` writes them), only the row groups whose time
    statistics reach ``[low, high]`` are read, each page checked against its
    CRC-32; the rows are then filtered exactly.  An object written before that
    (or in another layout) is read whole and verified against its digest, as
    :func:`read_table` does; so is every object with ``whole``.  Damage
    raises :class:`CorruptDataError`.
    """
    names = schema.names
    files = None if whole else _partial_files(store, digests)
    if files is None:
        table = read_table(store, schema, digests)
    else:
        try:
            table = _read_groups(store, files, schema, digests, _groups_between(files[names.index(time)], low, high))
        finally:
            for file in files:
                file.close()
    import pyarrow.compute as pc

    when = table.column(time)
    return table.filter(pc.and_(pc.greater_equal(when, low), pc.less_equal(when, high)))


def _read_groups(
    store: Store, files: Sequence[pq.ParquetFile], schema: pa.Schema, digests: Sequence[str], groups: list[int]
) -> pa.Table:
    """Row groups ``groups`` of each object as the columns of ``schema``, every page checked against its CRC-32."""
    columns = []
    for file, field, digest in zip(files, schema, digests, strict=True):
        try:
            column = _column_of(file.read_row_groups(groups)) if groups else pa.chunked_array([], field.type)
            columns.append(column.cast(field.type) if column.type != field.type else column)
        except (pa.ArrowException, OSError, KeyError, ValueError) as exc:
            # A page whose CRC-32 does not match, a truncated file, another column.
            raise corrupt_error(store, digest, f"cannot be read ({_first_line(exc)})") from None
    return pa.Table.from_arrays(columns, schema=schema)


def has_page_checksums(store: Store, digest: str) -> bool:
    """Whether object ``digest`` was written with a CRC-32 per page (False if it is missing or unreadable)."""
    try:
        metadata = pq.read_metadata(store.objects.random_access(digest)).metadata or {}
    except (FileNotFoundError, pa.ArrowException, OSError, ValueError):
        return False
    return metadata.get(_PAGES_KEY) == _PAGES_VALUE


def _partial_files(store: Store, digests: Sequence[str]) -> list[pq.ParquetFile] | None:
    """The objects opened for reading by row group, or None unless all have checksums and the same row groups."""
    files = []
    for digest in digests:
        try:
            file = pq.ParquetFile(store.objects.random_access(digest), page_checksum_verification=True)
        except FileNotFoundError:
            raise corrupt_error(store, digest, "is missing") from None
        except (pa.ArrowException, OSError, ValueError) as exc:
            raise corrupt_error(store, digest, f"cannot be read ({_first_line(exc)})") from None
        if (file.metadata.metadata or {}).get(_PAGES_KEY) != _PAGES_VALUE:
            return None
        files.append(file)
    layouts = {tuple(f.metadata.row_group(i).num_rows for i in range(f.num_row_groups)) for f in files}
    return files if len(layouts) == 1 else None


def _groups_between(file: pq.ParquetFile, low: pa.Scalar, high: pa.Scalar) -> list[int]:
    """The row groups of a timestamp object whose min..max may reach ``[low, high]`` (all when unsure)."""
    unit = _timestamp_unit(file)
    everything = list(range(file.num_row_groups))
    if unit is None:
        return everything
    low_ticks, high_ticks = ticks(low, unit, up=False), ticks(high, unit, up=True)

    def reaches(i: int) -> bool:
        stats = file.metadata.row_group(i).column(0).statistics
        if stats is None or not stats.has_min_max or stats.physical_type != "INT64":
            return True  # no usable statistics: read it
        return bool(stats.max_raw >= low_ticks and stats.min_raw <= high_ticks)

    return [i for i in everything if reaches(i)]


#: Parquet's time unit names and Arrow's.
_UNITS = {"milliseconds": "ms", "microseconds": "us", "nanoseconds": "ns"}


def _timestamp_unit(file: pq.ParquetFile) -> str | None:
    """The Arrow unit of a Parquet timestamp column's INT64 values (None if it is stored otherwise)."""
    import json

    try:
        logical = json.loads(file.schema.column(0).logical_type.to_json())
    except (ValueError, AttributeError):
        return None
    return _UNITS.get(logical.get("timeUnit")) if logical.get("Type") == "Timestamp" else None


def ticks(value: pa.Scalar, unit: str, up: bool) -> int:
    """A timestamp scalar in ``unit`` ticks, rounded down (or ``up``) when ``unit`` is coarser than its own."""
    per_second = {"s": 1, "ms": 1_000, "us": 1_000_000, "ns": 1_000_000_000}
    raw = int(value.cast(pa.int64()).as_py())
    have, want = per_second[value.type.unit], per_second[unit]
    if want >= have:
        return raw * (want // have)
    quotient, remainder = divmod(raw, have // want)
    return quotient + (1 if up and remainder else 0)


def users_of(store: Store, digest: str) -> list[str]:
    """The snapshot versions (``name@v``) and feature commits (``group:v@c``) whose data includes ``digest``."""
    import sqlalchemy as sa

    from nbops.core import catalog as cat

    s, sc, d = cat.snapshots, cat.snapshot_columns, cat.datasets
    c, fc, v, g = cat.feature_commits, cat.feature_commit_columns, cat.feature_group_versions, cat.feature_groups
    with store.catalog.read() as conn:
        snapshots = conn.execute(
            sa.select(d.c.name, s.c.version)
            .distinct()
            .join(s, s.c.dataset_id == d.c.id)
            .join(sc, sc.c.snapshot_id == s.c.id)
            .where(sc.c.object_digest == digest)
            .order_by(d.c.name, s.c.version)
        ).all()
        commits = conn.execute(
            sa.select(g.c.name, v.c.version, c.c.commit_no)
            .distinct()
            .join(v, v.c.group_id == g.c.id)
            .join(c, c.c.group_version_id == v.c.id)
            .join(fc, fc.c.commit_id == c.c.id)
            .where(fc.c.object_digest == digest)
            .order_by(g.c.name, v.c.version, c.c.commit_no)
        ).all()
    return [f"{n}@{ver}" for n, ver in snapshots] + [f"{n}:{ver}@{no}" for n, ver, no in commits]


def corrupt_error(store: Store, digest: str, problem: str) -> CorruptDataError:
    """The error for a bad object: what is wrong, where, what uses it, and what to run."""
    try:
        used_by = users_of(store, digest)
    except Exception:  # the message must not hide the corruption behind a catalog error
        used_by = []
    uses = ", ".join(used_by[:10]) + (f" and {len(used_by) - 10} more" if len(used_by) > 10 else "")
    return CorruptDataError(
        f"stored object {store.objects.location(digest)} {problem}; it is used by "
        f"{uses or 'no version'}. Nothing was returned. Run `nbops verify` to list every damaged object and "
        "`nbops repair --from BACKUP` to restore it (or snapshot / register the same data again, "
        "which rewrites the object)",
        digest,
        tuple(used_by),
    )


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def arrow_from_pandas(frame: Any, preserve_index: bool | None) -> pa.Table:
    """``pa.Table.from_pandas`` without pandas 3.1's warning about pyarrow's own use of
    ``Series.values`` on tz-aware columns (pyarrow's internals, not the user's code)."""
    import warnings

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Series.values returning an ndarray that drops timezone")
        return pa.Table.from_pandas(frame, preserve_index=preserve_index)


def author() -> str:
    """Who writes: the OS user name (a uid where there is none, as in some containers)."""
    try:
        return getpass.getuser()
    except Exception:
        return f"uid:{os.getuid()}" if hasattr(os, "getuid") else "unknown"


def table_to_pandas(table: pa.Table) -> pd.DataFrame:
    """Arrow to pandas, restoring object-dtype string columns and index levels.

    pandas 3 reads Arrow strings as its ``str`` dtype; a column or index level
    that was ``object`` when stored comes back as ``object`` with ``None``
    for missing values.  Columns are matched by position, since the pandas
    metadata spells every label as a string.
    """
    import pandas as pd

    df = table.to_pandas()
    meta = table.schema.pandas_metadata or {}
    index_fields = [c for c in meta.get("index_columns", []) if isinstance(c, str)]
    by_field = {c.get("field_name"): c for c in meta.get("columns", [])}

    def object_values(field: str) -> Any:
        col = by_field.get(field) or {}
        if col.get("numpy_type") != "object" or col.get("pandas_type") not in ("unicode", "bytes"):
            return None
        if field not in table.column_names:
            return None
        return table.column(field).to_numpy(zero_copy_only=False)

    data_fields = [c.get("field_name") for c in meta.get("columns", []) if c.get("field_name") not in index_fields]
    if len(data_fields) == len(df.columns):
        for position, field in enumerate(data_fields):
            values = object_values(field)
            if values is not None and df.dtypes.iloc[position] != object:  # noqa: E721 (a dtype, not a type)
                df.isetitem(position, pd.Series(values, index=df.index, dtype=object))

    restored = [object_values(f) for f in index_fields]
    if any(v is not None for v in restored) and df.index.nlevels == len(index_fields):
        levels = [
            pd.Index(v, dtype=object) if v is not None else df.index.get_level_values(i) for i, v in enumerate(restored)
        ]
        if len(levels) == 1:
            df.index = pd.Index(levels[0], name=df.index.name)
        else:
            df.index = pd.MultiIndex.from_arrays(levels, names=df.index.names)
    return df
