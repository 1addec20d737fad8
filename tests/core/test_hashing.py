"""Table digests depend on content only: every value, the names and the types, and nothing else."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nbops.core.hashing import column_digest, table_digest

CATEGORIES = ["low", "mid", "high"]
TS_TYPE = pa.timestamp("us", tz="Europe/Paris")
CAT_TYPE = pa.dictionary(pa.int8(), pa.string(), ordered=True)


@dataclass(frozen=True)
class Kind:
    """A column kind: how to draw one value and how to build an Arrow array from values."""

    name: str
    values: st.SearchStrategy[Any]
    build: Callable[[list[Any]], pa.Array]


def _dictionary(indices: list[int | None]) -> pa.Array:
    return pa.DictionaryArray.from_arrays(pa.array(indices, pa.int8()), pa.array(CATEGORIES), ordered=True)


KINDS = {
    k.name: k
    for k in [
        Kind("int64", st.integers(-(2**63), 2**63 - 1), lambda v: pa.array(v, pa.int64())),
        Kind("int32", st.integers(-(2**31), 2**31 - 1), lambda v: pa.array(v, pa.int32())),
        Kind("float64", st.floats(allow_nan=False), lambda v: pa.array(v, pa.float64())),
        Kind("string", st.text(max_size=6), lambda v: pa.array(v, pa.string())),
        Kind("large_string", st.text(max_size=6), lambda v: pa.array(v, pa.large_string())),
        Kind("bool", st.booleans(), lambda v: pa.array(v, pa.bool_())),
        Kind("timestamp", st.integers(-(2**50), 2**50), lambda v: pa.array(v, TS_TYPE)),
        Kind("categorical", st.integers(0, len(CATEGORIES) - 1), _dictionary),
    ]
}


@dataclass
class Data:
    """Column kinds and their values as Python lists; ``table()`` builds fresh buffers."""

    kinds: list[str]
    columns: list[list[Any]]

    @property
    def rows(self) -> int:
        return len(self.columns[0])

    def table(self, start: int = 0, stop: int | None = None) -> pa.Table:
        return pa.table(
            {
                f"c{i}_{k}": KINDS[k].build(col[start:stop])
                for i, (k, col) in enumerate(zip(self.kinds, self.columns, strict=False))
            }
        )


@st.composite
def datas(draw: st.DrawFn, min_rows: int = 1, max_rows: int = 12) -> Data:
    kinds = draw(st.lists(st.sampled_from(sorted(KINDS)), min_size=1, max_size=4))
    n = draw(st.integers(min_rows, max_rows))
    columns = [draw(st.lists(st.none() | KINDS[k].values, min_size=n, max_size=n)) for k in kinds]
    return Data(kinds, columns)


def _differs(a: Any, b: Any) -> bool:
    return (a is None) != (b is None) or (a is not None and a != b)


# -- any single change changes the digest --------------------------------------------------
@settings(max_examples=200, deadline=None)
@given(data=datas(), pick=st.data())
def test_changing_any_single_value_changes_the_digest(data: Data, pick: st.DataObject) -> None:
    col = pick.draw(st.integers(0, len(data.kinds) - 1), label="column")
    row = pick.draw(st.integers(0, data.rows - 1), label="row")
    old = data.columns[col][row]
    new = pick.draw((st.none() | KINDS[data.kinds[col]].values).filter(lambda v: _differs(v, old)), label="new value")
    changed = Data(data.kinds, [list(c) for c in data.columns])
    changed.columns[col][row] = new
    assert table_digest(changed.table()) != table_digest(data.table())


@pytest.mark.parametrize(
    ("kind", "before", "after"),
    [
        ("int64", [1, None, 3], [1, 0, 3]),  # null -> value
        ("int64", [1, 2, 3], [1, None, 3]),  # value -> null
        ("int64", [None, 2, 3], [2, None, 3]),  # a null moves
        ("float64", [0.5, None], [0.25, None]),
        ("string", ["ab", "c"], ["a", "bc"]),  # same bytes, different boundaries
        ("string", ["", None], [None, ""]),  # empty string is not null
        ("bool", [True, False, None], [True, True, None]),
        ("timestamp", [0, 1], [0, 2]),  # one microsecond
        ("categorical", [0, 1, None], [0, 2, None]),
    ],
)
def test_specific_small_changes_change_the_digest(kind: str, before: list[Any], after: list[Any]) -> None:
    build = KINDS[kind].build
    assert table_digest(pa.table({"x": build(before)})) != table_digest(pa.table({"x": build(after)}))


# -- same content, different layout ----------------------------------------------------------
@settings(max_examples=200, deadline=None)
@given(data=datas(min_rows=2), pick=st.data())
def test_chunking_slicing_and_concatenation_do_not_change_the_digest(data: Data, pick: st.DataObject) -> None:
    table = data.table()
    expected = table_digest(table)

    k = pick.draw(st.integers(1, data.rows), label="max_chunksize")
    rechunked = pa.Table.from_batches(table.to_batches(max_chunksize=k))
    assert table_digest(rechunked) == expected

    cuts = sorted(pick.draw(st.lists(st.integers(0, data.rows), max_size=4), label="cuts"))
    bounds = [0, *cuts, data.rows]
    # pieces as slices of one table (shared buffers, non-zero offsets) ...
    sliced = pa.concat_tables([table.slice(a, b - a) for a, b in zip(bounds, bounds[1:], strict=False)])
    assert table_digest(sliced) == expected
    # ... and as separately built tables (separate buffers, offset 0), then combined
    built = pa.concat_tables([data.table(a, b) for a, b in zip(bounds, bounds[1:], strict=False)])
    assert table_digest(built) == expected
    assert table_digest(built.combine_chunks()) == expected


@settings(max_examples=200, deadline=None)
@given(data=datas(min_rows=2), pick=st.data())
def test_a_slice_hashes_like_a_fresh_table_of_the_same_values(data: Data, pick: st.DataObject) -> None:
    start = pick.draw(st.integers(0, data.rows - 1), label="start")
    stop = pick.draw(st.integers(start, data.rows), label="stop")
    assert table_digest(data.table().slice(start, stop - start)) == table_digest(data.table(start, stop))


def test_empty_chunked_column_hashes_like_an_empty_array() -> None:
    for typ in (pa.int64(), pa.string(), CAT_TYPE):
        empty = pa.chunked_array([], type=typ)
        assert column_digest(empty) == column_digest(pa.array([], type=typ))


# -- names and types are content -----------------------------------------------------------
@settings(max_examples=100, deadline=None)
@given(data=datas(), new_name=st.text(min_size=1, max_size=8))
def test_renaming_a_column_changes_the_digest(data: Data, new_name: str) -> None:
    table = data.table()
    old_name = table.column_names[0]
    if new_name == old_name:
        new_name += "_"
    renamed = table.rename_columns([new_name, *table.column_names[1:]])
    assert table_digest(renamed) != table_digest(table)


def test_swapping_column_order_changes_the_digest() -> None:
    t = pa.table({"a": [1, 2], "b": [1, 2]})
    assert table_digest(t) != table_digest(t.select(["b", "a"]))


@pytest.mark.parametrize(
    ("values", "type_a", "type_b"),
    [
        ([1, 2, None], pa.int32(), pa.int64()),
        ([1, 2, None], pa.int64(), pa.uint64()),
        ([1.0, None], pa.float32(), pa.float64()),
        (["a", None], pa.string(), pa.large_string()),
        ([1, None], pa.timestamp("us"), pa.timestamp("ns")),
        ([1, None], pa.timestamp("us", tz="UTC"), pa.timestamp("us", tz="Europe/Paris")),
        ([1, None], pa.timestamp("us"), pa.timestamp("us", tz="UTC")),
        (["a", "b"], pa.dictionary(pa.int8(), pa.string(), ordered=False), CAT_TYPE),
        ([0, 1], pa.int64(), pa.duration("us")),
    ],
    ids=lambda v: str(v) if isinstance(v, pa.DataType) else "",
)
def test_same_values_with_another_type_change_the_digest(
    values: list[Any], type_a: pa.DataType, type_b: pa.DataType
) -> None:
    a, b = pa.array(values, type_a), pa.array(values, type_b)
    assert column_digest(a) != column_digest(b)
    assert table_digest(pa.table({"x": a})) != table_digest(pa.table({"x": b}))


def test_library_versions_in_pandas_metadata_do_not_change_the_digest() -> None:
    """A pandas or pyarrow upgrade rewrites these fields; the data is the same."""
    import pandas as pd

    table = pa.Table.from_pandas(pd.DataFrame({"x": [1, 2]}))
    meta = json.loads(table.schema.metadata[b"pandas"])
    meta["pandas_version"] = "0.0.1"
    meta["creator"] = {"library": "pyarrow", "version": "0.0.1"}
    other = table.replace_schema_metadata({b"pandas": json.dumps(meta).encode()})
    assert table_digest(other) == table_digest(table)


def test_pandas_index_description_is_content() -> None:
    import pandas as pd

    df = pd.DataFrame({"x": [1, 2]})
    a = pa.Table.from_pandas(df)
    b = pa.Table.from_pandas(df.set_axis(pd.RangeIndex(10, 12)))
    assert a.select(["x"]).equals(b.select(["x"]))
    assert table_digest(a) != table_digest(b)


# -- bytes under null slots ----------------------------------------------------------------
def _validity(values: list[Any]) -> pa.Buffer:
    return pa.array([v is not None for v in values], pa.bool_()).buffers()[1]


def _fixed_width_with_garbage(values: list[Any], garbage: list[int], typ: pa.DataType, np_dtype: str) -> pa.Array:
    filled = np.array([g if v is None else v for v, g in zip(values, garbage, strict=False)], dtype=np_dtype)
    return pa.Array.from_buffers(typ, len(values), [_validity(values), pa.py_buffer(filled.tobytes())])


def _strings_with_garbage(values: list[str | None], garbage: list[bytes]) -> pa.Array:
    offsets, data = [0], b""
    for v, g in zip(values, garbage, strict=False):
        data += g if v is None else v.encode()
        offsets.append(len(data))
    return pa.Array.from_buffers(
        pa.string(),
        len(values),
        [_validity(values), pa.py_buffer(np.array(offsets, dtype="<i4").tobytes()), pa.py_buffer(data)],
    )


def _bools_with_garbage(values: list[bool | None], garbage: list[bool]) -> pa.Array:
    filled = pa.array([g if v is None else v for v, g in zip(values, garbage, strict=False)], pa.bool_())
    return pa.Array.from_buffers(pa.bool_(), len(values), [_validity(values), filled.buffers()[1]])


@settings(max_examples=100, deadline=None)
@given(pick=st.data(), n=st.integers(1, 20))
def test_bytes_under_null_slots_do_not_change_the_digest(pick: st.DataObject, n: int) -> None:
    nullable = lambda s: st.lists(st.none() | s, min_size=n, max_size=n)  # noqa: E731
    ints = pick.draw(nullable(st.integers(-(2**63), 2**63 - 1)), label="ints")
    int_junk = pick.draw(st.lists(st.integers(-(2**63), 2**63 - 1), min_size=n, max_size=n), label="int junk")
    floats = pick.draw(nullable(st.floats(allow_nan=False)), label="floats")
    float_junk = pick.draw(st.lists(st.floats(), min_size=n, max_size=n), label="float junk")
    strings = pick.draw(nullable(st.text(max_size=5)), label="strings")
    string_junk = pick.draw(st.lists(st.binary(max_size=5), min_size=n, max_size=n), label="string junk")
    bools = pick.draw(nullable(st.booleans()), label="bools")
    bool_junk = pick.draw(st.lists(st.booleans(), min_size=n, max_size=n), label="bool junk")
    stamps = pick.draw(nullable(st.integers(-(2**50), 2**50)), label="timestamps")

    pairs = [
        (_fixed_width_with_garbage(ints, int_junk, pa.int64(), "<i8"), pa.array(ints, pa.int64())),
        (_fixed_width_with_garbage(floats, float_junk, pa.float64(), "<f8"), pa.array(floats, pa.float64())),
        (_strings_with_garbage(strings, string_junk), pa.array(strings, pa.string())),
        (_bools_with_garbage(bools, bool_junk), pa.array(bools, pa.bool_())),
        (_fixed_width_with_garbage(stamps, int_junk, TS_TYPE, "<i8"), pa.array(stamps, TS_TYPE)),
    ]
    for dirty, clean in pairs:
        dirty.validate(full=True)
        assert dirty.equals(clean)
        assert column_digest(dirty) == column_digest(clean)
    dirty_table = pa.table({f"c{i}": d for i, (d, _) in enumerate(pairs)})
    clean_table = pa.table({f"c{i}": c for i, (_, c) in enumerate(pairs)})
    assert table_digest(dirty_table) == table_digest(clean_table)


@pytest.mark.parametrize(
    ("typ", "values"),
    [(pa.string_view(), ["a", None, "bc", ""]), (pa.binary_view(), [b"a", None, b"bc", b""])],
    ids=["string_view", "binary_view"],
)
def test_view_columns_with_nulls_are_digested_by_value(typ: pa.DataType, values: list[Any]) -> None:
    """View layouts (DuckDB, Polars) have no filter kernel; their digest still follows the values."""
    view = pa.array(values, typ)
    digest = column_digest(view)
    assert digest == column_digest(pa.array(values, typ))
    assert digest != column_digest(pa.array(values[::-1], typ))
    assert digest != column_digest(pa.array([values[0], values[0], *values[2:]], typ))  # null -> value
    assert column_digest(view.slice(1, 3)) == column_digest(pa.array(values[1:], typ))
    offsets_type = pa.large_string() if typ == pa.string_view() else pa.large_binary()
    assert digest != column_digest(pa.array(values, offsets_type))  # the type is part of the content
