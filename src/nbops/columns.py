"""Tables stored column by column as content-addressed Parquet objects.

Snapshot versions and feature-group commits both keep their data this way:
each column is one zstd Parquet file named by the column's digest, written
through :class:`nbops.objects.ObjectStore` (atomic, never overwritten; or
:class:`nbops.objects_remote.RemoteObjectStore` on object storage), and a
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

if TYPE_CHECKING:
    from nbops.store import Store

PARQUET_COMPRESSION = "zstd"
_COLUMN = "v"  # the single column name inside each object file


def workers(n: int) -> int:
    """Threads for n independent column reads or writes (Arrow releases the GIL)."""
    return max(1, min(n, os.cpu_count() or 1))


def publish_columns(store: Store, table: pa.Table, digests: Sequence[str]) -> int:
    """Write every column whose object does not exist yet; return the bytes written.

    Existing objects are passed to ``publish`` too, which refreshes their
    time: an old orphan that this version reuses must not fall to a
    concurrent ``gc`` before the catalog commit.
    """
    todo = {d: table.column(i) for i, d in enumerate(digests)}

    def publish(item: tuple[str, pa.ChunkedArray]) -> int:
        digest, column = item
        return store.objects.publish(
            digest,
            lambda path: pq.write_table(pa.table({_COLUMN: column}), path, compression=PARQUET_COMPRESSION),
        )

    if not todo:
        return 0
    with ThreadPoolExecutor(workers(len(todo))) as pool:
        return sum(pool.map(publish, todo.items()))


def object_rows(store: Store, table: pa.Table, digests: Sequence[str], now: dt.datetime) -> list[dict[str, Any]]:
    """Catalog rows for the objects of ``table`` (inserted with ON CONFLICT DO NOTHING)."""
    rows = []
    for digest in dict.fromkeys(digests):
        try:
            size = store.objects.size(digest)
        except FileNotFoundError:
            size = 0
        rows.append({"digest": digest, "rows": table.num_rows, "bytes": size, "created": now})
    return rows


def read_column(store: Store, digest: str) -> pa.ChunkedArray:
    return pq.read_table(store.objects.source(digest)).column(_COLUMN)


def read_table(store: Store, schema: pa.Schema, digests: Sequence[str]) -> pa.Table:
    """Read the objects ``digests`` as the columns of ``schema``, in parallel.

    Parquet does not keep every Arrow type exactly (a dictionary of
    large_string reads back as a dictionary of string): each column is cast
    back to the type the catalog recorded.
    """
    with ThreadPoolExecutor(workers(len(digests))) as pool:
        columns = list(pool.map(lambda d: read_column(store, d), digests))
    columns = [c if c.type == f.type else c.cast(f.type) for c, f in zip(columns, schema, strict=True)]
    return pa.Table.from_arrays(columns, schema=schema)


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
