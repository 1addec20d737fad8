"""Content digests of Arrow tables that depend on content only.

A column digest is xxh3-128 over a canonical form of the column: its Arrow
type, its length, its validity (when it has nulls) and the values of its valid
slots, read straight from the Arrow buffers.  It does not depend on how the
column is chunked, on slice offsets, on bytes under null slots, nor on the
Parquet bytes a pyarrow version would write (arrow#40202).

A table digest is xxh3-128 over the canonical schema (column names, types and
the pandas index description) and the column digests in order::

    >>> import pyarrow as pa
    >>> t = pa.table({"x": [1, 2, 3]})
    >>> table_digest(t) == table_digest(pa.Table.from_batches(t.to_batches(max_chunksize=1)))
    True
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import xxhash

DIGEST_ALGORITHM = "xxh3_128"
_FORMAT = b"nbops-digest-v1"


def column_digest(column: pa.ChunkedArray | pa.Array) -> str:
    """Return the hex digest of one column's type and values."""
    h = xxhash.xxh3_128()
    h.update(_FORMAT)
    array = _single_chunk(column)
    _hash_array(h, array)
    return str(h.hexdigest())


def canonical_schema(schema: pa.Schema) -> bytes:
    """The parts of a schema that define content: names, types, pandas index layout.

    The pandas metadata records library versions; only its index description
    and per-column pandas dtypes are kept so that a pandas upgrade does not
    change digests of unchanged data.
    """
    pandas_meta = schema.pandas_metadata or {}
    doc: dict[str, Any] = {
        "fields": [[f.name, str(f.type), f.nullable] for f in schema],
        "index": pandas_meta.get("index_columns", []),
        "column_indexes": [
            {k: c.get(k) for k in ("name", "pandas_type", "numpy_type")} for c in pandas_meta.get("column_indexes", [])
        ],
        "columns": [
            {k: c.get(k) for k in ("name", "field_name", "pandas_type", "numpy_type", "metadata")}
            for c in pandas_meta.get("columns", [])
        ],
    }
    return json.dumps(doc, sort_keys=True, default=str).encode()


def table_digest(table: pa.Table, column_digests: Sequence[str] | None = None) -> str:
    """Return the hex digest of a whole table (schema plus every value)."""
    if column_digests is None:
        column_digests = [column_digest(c) for c in table.columns]
    return combine_digest(table.schema, column_digests)


def combine_digest(schema: pa.Schema, column_digests: Sequence[str]) -> str:
    """Table digest from a schema and already computed column digests."""
    h = xxhash.xxh3_128()
    h.update(_FORMAT)
    h.update(canonical_schema(schema))
    for d in column_digests:
        h.update(bytes.fromhex(d))
    return str(h.hexdigest())


def _single_chunk(column: pa.ChunkedArray | pa.Array) -> pa.Array:
    if isinstance(column, pa.ChunkedArray):
        if pa.types.is_dictionary(column.type) and column.num_chunks > 1:
            column = column.unify_dictionaries()
        if column.num_chunks == 1:
            return column.chunk(0)
        if column.num_chunks == 0:
            return pa.array([], type=column.type)
        return column.combine_chunks()
    return column


def _update_int(h: Any, value: int) -> None:
    h.update(value.to_bytes(8, "little", signed=True))


def _hash_array(h: Any, array: pa.Array) -> None:
    typ = array.type
    h.update(str(typ).encode())
    _update_int(h, len(array))
    if pa.types.is_string_view(typ) or pa.types.is_binary_view(typ):
        # View layouts have no filter kernel and point into shared buffers;
        # hash their values in the offsets layout instead.
        typ = pa.large_string() if pa.types.is_string_view(typ) else pa.large_binary()
        array = array.cast(typ)
    if array.null_count:
        h.update(b"V")
        _hash_bitmap(h, pc.is_valid(array))
        array = array.filter(pc.is_valid(array))
    else:
        h.update(b"N")

    if pa.types.is_dictionary(typ):
        _hash_array(h, array.dictionary)
        _hash_array(h, array.indices)
    elif pa.types.is_boolean(typ):
        _hash_bitmap(h, array)
    elif pa.types.is_null(typ):
        pass
    elif _is_fixed_width(typ):
        width = typ.bit_width // 8
        data = array.buffers()[1]
        start = array.offset * width
        h.update(memoryview(data)[start : start + len(array) * width])
    elif (
        pa.types.is_string(typ)
        or pa.types.is_binary(typ)
        or pa.types.is_large_string(typ)
        or pa.types.is_large_binary(typ)
    ):
        _hash_varlen(h, array)
    else:
        # Nested and exotic types are rare in data frames; hash their Python
        # values, which is slow but independent of any buffer layout.
        _hash_python_values(h, array)


def _is_fixed_width(typ: pa.DataType) -> bool:
    try:
        bits = typ.bit_width
    except ValueError:
        return False
    return bits % 8 == 0 and not pa.types.is_dictionary(typ) and not pa.types.is_nested(typ)


def _hash_bitmap(h: Any, bools: pa.Array) -> None:
    """Hash a boolean array's bits as one byte per value (no padding or offset bits)."""
    h.update(memoryview(pc.cast(bools, pa.uint8()).buffers()[1])[: len(bools)])


def _hash_varlen(h: Any, array: pa.Array) -> None:
    large = pa.types.is_large_string(array.type) or pa.types.is_large_binary(array.type)
    dtype = "<i8" if large else "<i4"
    offsets_buf = array.buffers()[1]
    offsets = np.frombuffer(offsets_buf, dtype=dtype, count=len(array) + 1 + array.offset)[array.offset :]
    first = int(offsets[0]) if len(offsets) else 0
    last = int(offsets[-1]) if len(offsets) else 0
    lengths = np.diff(offsets).astype("<i8", copy=False)
    h.update(lengths.tobytes())
    data = array.buffers()[2]
    if data is not None and last > first:
        h.update(memoryview(data)[first:last])


def _hash_python_values(h: Any, array: pa.Array) -> None:
    h.update(json.dumps(array.to_pylist(), default=repr, sort_keys=True).encode())
