"""Exact or refused: a frame is stored only if it loads back equal.

``to_arrow`` (snapshots) and ``features_to_arrow`` (feature groups) call
:func:`check_frame` with the DataFrame and the Arrow table made from it.  The
check converts the table back the way ``load`` does
(:func:`nbops.core.columns.table_to_pandas`) and compares it with the frame as
``pandas.testing.assert_frame_equal`` does with its default strictness,
except the ``freq`` of a ``DatetimeIndex``/``TimedeltaIndex``, which is
derived from the values and not stored.  A difference raises
:class:`~nbops.errors.InvalidInputError` naming the column, what it holds and
what it would become, before anything is written.

Cost: column labels and the dtypes of plain columns are checked on a
zero-row slice (no data converted).  Values and dtypes are converted and
compared only for the risky columns: ``object``, ``category`` and extension
dtypes (nullable numbers, strings, ...), plus the index; ``object`` strings
and categories are compared with vectorised tests before falling back to
``assert_series_equal``, which loops in Python.  Columns with a plain NumPy dtype (bool,
integers, floats, naive datetimes, timedeltas) and tz-aware datetimes hold
values Arrow keeps exactly once their dtype comes back, which the dtype check
has shown (the property tests in ``tests/core/test_roundtrip.py`` check that claim).

:func:`check_arrow_types` refuses the Arrow types that the Parquet column
objects cannot hold or give back, for DataFrames and Arrow tables alike.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from nbops.errors import InvalidInputError

if TYPE_CHECKING:
    import pandas as pd

#: NumPy dtype kinds whose values survive Arrow exactly when the dtype does.
_PLAIN_KINDS = frozenset("biufmM")
#: Dictionary value types that Parquet gives back as a dictionary.
_DICTIONARY_VALUES = (pa.types.is_string, pa.types.is_large_string, pa.types.is_binary, pa.types.is_large_binary)
_SHOWN = 60  # characters of a value shown in a message


def check_arrow_types(table: pa.Table, label_of: Callable[[int], str] | None = None) -> None:
    """Refuse a column whose Arrow type the Parquet objects cannot store or give back.

    A dictionary (a pandas ``category``) of anything but strings or bytes
    reads back as plain values that cannot be cast back, which would leave
    the version unreadable; a struct with no fields (a column of empty dicts)
    cannot be written at all.
    """
    for i, field in enumerate(table.schema):
        why = _unstorable(field.type)
        if why is not None:
            label = label_of(i) if label_of is not None else f"column {field.name!r}"
            raise InvalidInputError(f"{label} ({field.type}) cannot be stored: {why}")


def _unstorable(arrow_type: pa.DataType) -> str | None:
    if pa.types.is_dictionary(arrow_type):
        if not any(test(arrow_type.value_type) for test in _DICTIONARY_VALUES):
            return (
                f"it is a category of {arrow_type.value_type} values, and only categories of strings can be "
                "stored; store df[col].astype(str).astype('category'), or the plain values "
                "df[col].astype(df[col].cat.categories.dtype)"
            )
        return None
    if pa.types.is_struct(arrow_type) and arrow_type.num_fields == 0:
        return (
            "it holds only empty dicts, which Parquet cannot store; store them as JSON text (df[col].map(json.dumps))"
        )
    for j in range(arrow_type.num_fields):
        why = _unstorable(arrow_type.field(j).type)
        if why is not None:
            return why
    return None


def check_labels(frame: pd.DataFrame, keep_index: bool) -> None:
    """Refuse labels that Arrow would turn into strings: mixed column labels, a non-str index name.

    Called before the conversion, which would otherwise warn about them.
    """
    import pandas as pd

    for level in range(frame.columns.nlevels):
        labels = frame.columns.get_level_values(level)
        if "mixed" in pd.api.types.infer_dtype(labels, skipna=False):
            first = _plain_value(labels[0])
            other = next((_plain_value(x) for x in labels if type(x) is not type(labels[0])), None)
            if other is None:
                why = f"column label {first!r} ({type(first).__name__}) would be stored as a string"
            else:
                why = (
                    f"column label {other!r} ({type(other).__name__}) is among labels of another type "
                    f"({first!r}, {type(first).__name__}), and Arrow would store them all as strings"
                )
            raise InvalidInputError(
                f"{why}; give the columns labels of one type, e.g. df.columns = df.columns.astype(str)"
            )
    if keep_index and not isinstance(frame.index, pd.RangeIndex):
        for name in frame.index.names:
            if name is not None and not isinstance(name, str):
                raise InvalidInputError(
                    f"the index name {name!r} ({type(name).__name__}) would load back as the string "
                    f"{str(name)!r}; name the index with a str (df.index.names = [...]) or reset it into columns"
                )


def check_frame(
    frame: pd.DataFrame,
    table: pa.Table,
    keep_index: bool,
    as_read: Callable[[pa.Table], pa.Table] | None = None,
) -> None:
    """Raise ``InvalidInputError`` unless ``table`` loads back as ``frame``.

    ``table`` is ``frame`` as Arrow (``pa.Table.from_pandas``); with
    ``keep_index`` False the index is not stored and not compared (feature
    groups read back with a default ``RangeIndex``).  ``as_read`` gives the
    table as the read path hands it to ``table_to_pandas`` (feature groups
    rewrite its pandas metadata); the default is the table itself.
    """
    import pandas as pd

    n = len(frame.columns)

    def label_of(i: int) -> str:
        return f"column {_plain_value(frame.columns[i])!r}" if i < n else "the index"

    check_arrow_types(table, label_of)
    if not frame.flags.allows_duplicate_labels:
        raise InvalidInputError(
            "the frame's flag allows_duplicate_labels=False is not stored; "
            "store frame.set_flags(allows_duplicate_labels=True)"
        )
    read = as_read(table) if as_read is not None else table
    meta = read.schema.pandas_metadata or {}
    index_fields = [c for c in meta.get("index_columns", []) if isinstance(c, str)] if keep_index else []
    empty = _to_pandas(frame, read.slice(0, 0), range(n), index_fields, keep_index, label_of)
    _check_labels(frame.columns, empty.columns)
    risky = [i for i in range(n) if not _plain(frame.dtypes.iloc[i])]
    for i in sorted(set(range(n)) - set(risky)):  # a risky column's dtype can depend on its values
        if empty.dtypes.iloc[i] != frame.dtypes.iloc[i]:
            raise InvalidInputError(_refusal(label_of(i), frame.iloc[:, i], empty.iloc[:, i]))
    if not risky and not index_fields and (not keep_index or frame.index.name is None):
        return  # plain columns under a RangeIndex (or no stored index): nothing more can differ
    restored = _to_pandas(frame, read, risky, index_fields, keep_index, label_of)
    for j, i in enumerate(risky):
        original, back = frame.iloc[:, i], restored.iloc[:, j]
        if _same(original, back, table.column(i)):
            continue
        if not _equal(
            functools.partial(pd.testing.assert_series_equal, back, original, check_index=False, check_names=False)
        ):
            raise InvalidInputError(_refusal(label_of(i), original, back))
    if keep_index and not _same_index(frame.index, restored.index, [table.column(f) for f in index_fields]):
        _check_index(frame.index, restored.index)


def _same(original: pd.Series, back: pd.Series, stored: pa.ChunkedArray) -> bool:
    """A fast test that implies ``assert_series_equal(back, original)`` passes; False means "ask it".

    ``assert_series_equal`` compares object and categorical columns value by
    value in Python (seconds for a million rows); equal dtypes and equal codes,
    masks or Arrow buffers say the same thing in milliseconds.
    """
    import numpy as np
    import pandas as pd

    if original.dtype != back.dtype:
        return False
    try:
        if isinstance(original.dtype, pd.CategoricalDtype):  # equal categories: equal codes are equal values
            return bool(np.array_equal(original.cat.codes.to_numpy(), back.cat.codes.to_numpy()))
        if isinstance(original.dtype, pd.api.extensions.ExtensionDtype):  # masks and values, or Arrow arrays
            return bool(original.array.equals(back.array))
        a, b = original.to_numpy(), back.to_numpy()
        if original.dtype.kind in "mM":
            return bool(np.array_equal(a.view("i8"), b.view("i8")))
        if original.dtype.kind in "fc":
            return bool(np.array_equal(a, b, equal_nan=True))
        if original.dtype != object:
            return bool(np.array_equal(a, b))
        if not (pa.types.is_null(stored.type) or any(test(stored.type) for test in _DICTIONARY_VALUES)):
            return False  # lists, dicts, decimals, ...: assert_series_equal decides
        # Strings or bytes from Arrow: a missing value comes back as None, so it must have been None.
        missing = stored.is_null().to_numpy(zero_copy_only=False)
        return all(v is None for v in a[missing]) and bool((a == b).all())
    except (TypeError, ValueError):
        return False


def _same_index(index: pd.Index, restored: pd.Index, stored: Sequence[pa.ChunkedArray]) -> bool:
    """A fast test that implies ``assert_index_equal(restored, index, exact="equiv")`` passes."""
    import pandas as pd

    if type(index) is not type(restored) or list(index.names) != list(restored.names):
        return False
    if isinstance(index, pd.RangeIndex):
        return bool(index.equals(restored))
    if len(stored) != index.nlevels:
        return False
    return all(
        _same(pd.Series(index.get_level_values(i)), pd.Series(restored.get_level_values(i)), stored[i])
        for i in range(index.nlevels)
    )


def _to_pandas(
    frame: pd.DataFrame,
    table: pa.Table,
    positions: Sequence[int],
    index_fields: Sequence[str],
    keep_index: bool,
    label_of: Callable[[int], str],
) -> pd.DataFrame:
    """``table_to_pandas`` of some columns and the index; a failure is refused naming its column."""
    import pandas as pd

    from nbops.core.columns import table_to_pandas

    try:
        return table_to_pandas(_select(table, positions, index_fields, keep_index))
    except Exception as exc:  # the read path itself fails: find the column it fails on
        failure = exc
    what, hint = ("the index" if index_fields else "this DataFrame"), "give it a plain dtype"
    for i in positions:
        try:
            table_to_pandas(_select(table, [i], [], keep_index=False))
        except Exception as exc:
            what, failure = f"{label_of(i)} ({frame.dtypes.iloc[i]})", exc
            if isinstance(frame.dtypes.iloc[i], pd.CategoricalDtype):
                hint = "store its values as str (df[col].astype('str'))"
            break
    raise InvalidInputError(
        f"{what} cannot be stored: it would not load back ({type(failure).__name__}: {_first_line(failure)}); {hint}"
    ) from failure


def _plain(dtype: Any) -> bool:
    """True for dtypes whose values round-trip whenever the dtype does."""
    import numpy as np
    import pandas as pd

    return isinstance(dtype, pd.DatetimeTZDtype) or (isinstance(dtype, np.dtype) and dtype.kind in _PLAIN_KINDS)


def _equal(assertion: Callable[[], None]) -> bool:
    try:
        assertion()
    except Exception:  # AssertionError, or e.g. a ValueError comparing a set with an array
        return False
    return True


def _select(table: pa.Table, positions: Sequence[int], index_fields: Sequence[str], keep_index: bool) -> pa.Table:
    """The columns at ``positions`` and the index fields, with pandas metadata for just those."""
    arrays = [table.column(i) for i in positions] + [table.column(f) for f in index_fields]
    fields = [table.schema.field(i) for i in positions] + [table.schema.field(f) for f in index_fields]
    metadata = dict(table.schema.metadata or {})
    meta = json.loads(metadata.get(b"pandas", b"{}"))
    if not arrays:  # a table needs a column to have rows, and a RangeIndex is rebuilt only for the right length
        arrays, fields = [pa.chunked_array([pa.nulls(table.num_rows)])], [pa.field("_", pa.null())]
        meta["column_indexes"] = []  # the stand-in column's label is not one of the frame's
    if meta:
        kept = {f.name for f in fields}
        meta["columns"] = [c for c in meta.get("columns", []) if c.get("field_name") in kept]
        if not keep_index:
            meta["index_columns"] = []
        metadata[b"pandas"] = json.dumps(meta).encode()
    return pa.Table.from_arrays(arrays, schema=pa.schema(fields).with_metadata(metadata))


def _check_labels(columns: pd.Index, restored: pd.Index) -> None:
    """Column labels compared as ``assert_frame_equal`` does (``exact="equiv"``, not ``check_exact``)."""
    import pandas as pd

    if _equal(lambda: pd.testing.assert_index_equal(restored, columns, exact="equiv", check_exact=False)):
        return
    if len(restored) == len(columns):
        for label, back in zip(columns, restored, strict=True):
            if type(label) is not type(back) or label != back:
                raise InvalidInputError(
                    f"column label {_plain_value(label)!r} ({type(label).__name__}) would load back as "
                    f"{_plain_value(back)!r} ({type(back).__name__}); give the columns labels of one type, e.g. "
                    "df.columns = df.columns.astype(str)"
                )
    raise InvalidInputError(
        f"the column labels {_short(list(columns))} (dtype {columns.dtype}, names {list(columns.names)}) would load "
        f"back with dtype {restored.dtype} and names {list(restored.names)}; give the columns str labels "
        "(df.columns = df.columns.astype('str'))"
    )


def _check_index(index: pd.Index, restored: pd.Index) -> None:
    """The index compared as ``assert_frame_equal`` does (it tells None from NaN only without ``check_exact``)."""
    import pandas as pd

    if _equal(lambda: pd.testing.assert_index_equal(restored, index, exact="equiv", check_exact=False)):
        return
    if index.nlevels == restored.nlevels and index.nlevels > 1:
        for level in range(index.nlevels):
            original, back = index.get_level_values(level), restored.get_level_values(level)
            name = f"index level {index.names[level]!r}" if index.names[level] is not None else f"index level {level}"
            if not _equal(
                functools.partial(pd.testing.assert_index_equal, back, original, exact="equiv", check_exact=False)
            ):
                raise InvalidInputError(_refusal(name, pd.Series(original), pd.Series(back), index=True))
    what = f"the index {index.name!r}" if index.name is not None else "the index"
    if type(index) is not type(restored) or index.nlevels != restored.nlevels or index.names != restored.names:
        raise InvalidInputError(
            f"{what} ({type(index).__name__}, names {list(index.names)}) would load back as "
            f"{type(restored).__name__} with names {list(restored.names)}; reset it into columns (df.reset_index())"
        )
    raise InvalidInputError(_refusal(what, pd.Series(index), pd.Series(restored), index=True))


def _refusal(what: str, original: pd.Series, back: pd.Series, index: bool = False) -> str:
    """One line: what cannot be stored, what it holds, what it would become, and what to do."""
    holds = _value_types(original)
    hint = _hint(original, back)
    if original.dtype != back.dtype:
        before, after = (str(original.dtype), str(back.dtype))
        if before == after:
            before, after = repr(original.dtype), repr(back.dtype)
        why = f"it is {before}{holds} but would load back as {after}"
    else:
        position = _first_difference(original, back)
        if position is None:
            why = f"it is {original.dtype}{holds} and would not load back equal"
        else:
            a, b = original.iloc[position], back.iloc[position]
            if b is None and a is not None and _is_missing(a):
                hint = "mark missing values with None (df[col] = df[col].where(df[col].notna(), None))"
            why = (
                f"at position {position} it holds {_show(a)} ({type(a).__name__}), which would load back as "
                f"{_show(b)} ({type(b).__name__})"
            )
    also = ", or keep it as columns (df.reset_index())" if index else ""
    return f"{what} cannot be stored exactly: {why}; {hint}{also}"


def _is_missing(value: object) -> bool:
    """True for NaN, NaT and pd.NA (not for a list or an array)."""
    import pandas as pd

    try:
        return bool(pd.isna(value)) is True and not hasattr(value, "__len__")
    except Exception:  # an array's truth value, or a signalling decimal NaN
        return False


def _value_types(series: pd.Series) -> str:
    """`` holding int and str values`` for an object column, else ``''``."""
    if series.dtype != object:
        return ""
    names = sorted({type(v).__name__ for v in series.array if v is not None})
    if not names:
        return ""
    return f" holding {' and '.join(names)} values"


def _first_difference(original: pd.Series, back: pd.Series) -> int | None:
    """The first position whose values differ as ``assert_series_equal`` sees them."""
    import pandas as pd

    def same(a: object, b: object) -> bool:
        left, right = pd.Series([b], dtype=object), pd.Series([a], dtype=object)
        return _equal(lambda: pd.testing.assert_series_equal(left, right))

    for position, (a, b) in enumerate(zip(original.array, back.array, strict=False)):
        if not same(a, b):
            return position
    return None


def _hint(series: pd.Series, back: pd.Series) -> str:
    """What to do, from what the column holds and what it would become."""
    import datetime as dt
    import numbers
    import uuid

    import numpy as np
    import pandas as pd

    dtype = series.dtype
    if isinstance(dtype, pd.StringDtype) and dtype.storage == "python":
        target = "str" if dtype.na_value is not pd.NA else "string"
        return f"store it with Arrow storage (df[col].astype({target!r}))"
    if isinstance(dtype, pd.Float32Dtype | pd.Float64Dtype):
        return "Arrow keeps NaN and <NA> as one missing value: store float64 (df[col].astype('float64'))"
    if isinstance(dtype, pd.DatetimeTZDtype) and isinstance(back.dtype, pd.DatetimeTZDtype):
        return f"give it a zoneinfo time zone (df[col].dt.tz_convert({str(back.dtype.tz)!r}))"
    if dtype != object:  # noqa: E721 (a numpy dtype compared with the object dtype, not a type check)
        return "give it a plain dtype"
    kinds = {type(v) for v in series.array if v is not None}
    missing = {k for k in kinds if k is float or k is type(pd.NA)}
    if any(issubclass(k, dict) for k in kinds):
        return "dicts must have the same keys in every row; store them as JSON text (df[col].map(json.dumps))"
    if any(issubclass(k, (set, frozenset)) for k in kinds):
        return "sets load back as arrays; store sorted lists (df[col].map(sorted))"
    if any(issubclass(k, uuid.UUID) for k in kinds):
        return "store UUIDs as text (df[col].astype(str))"
    values = kinds - missing
    if any(issubclass(k, (dt.datetime, dt.time)) for k in kinds):
        return "store times in a datetime column (pd.to_datetime(df[col], utc=True))"
    if any(issubclass(k, dt.timedelta) for k in kinds):
        return "store durations in a timedelta column (pd.to_timedelta(df[col]))"
    if missing and values and all(issubclass(k, (str, bytes)) for k in values):
        return "mark missing values with None, or store the strings as str (df[col].astype('str'))"
    if values and all(issubclass(k, (bool, np.bool_)) for k in values):
        return "store it as bool, or as 'boolean' with missing values (df[col].astype('boolean'))"
    if kinds and all(issubclass(k, numbers.Number) for k in kinds):
        return "store a numeric dtype (e.g. df[col].astype('Int64') or df[col].astype('Float64'))"
    return "give the column one plain type (e.g. df[col].astype(str))"


def _plain_value(value: object) -> object:
    """A NumPy scalar as the Python value it stands for (``np.int64(0)`` -> ``0``), for messages."""
    import numpy as np

    return value.item() if isinstance(value, np.generic) else value


def _show(value: object) -> str:
    text = repr(value)
    return text if len(text) <= _SHOWN else text[: _SHOWN - 3] + "..."


def _short(values: list[object]) -> str:
    return _show(values[:5] + (["..."] if len(values) > 5 else []))


def conversion_error(frame: pd.DataFrame, exc: Exception, preserve_index: bool | None) -> str:
    """Why Arrow could not convert ``frame``, naming the column it failed on."""
    import pandas as pd

    for i in range(len(frame.columns)):
        try:
            pa.Array.from_pandas(frame.iloc[:, i])
        except (pa.ArrowException, TypeError, ValueError, OverflowError) as column_exc:
            holds = f"{frame.dtypes.iloc[i]}{_value_types(frame.iloc[:, i])}"
            return f"column {_plain_value(frame.columns[i])!r} ({holds}): {_reason(column_exc)}"
    if preserve_index is not False and not isinstance(frame.index, pd.RangeIndex):
        for level in range(frame.index.nlevels):
            values = frame.index.get_level_values(level)
            try:
                pa.Array.from_pandas(values)
            except (pa.ArrowException, TypeError, ValueError, OverflowError) as level_exc:
                name = frame.index.names[level]
                what = f"index level {name!r}" if name is not None else f"index level {level}"
                return f"{what} ({values.dtype}{_value_types(pd.Series(values))}): {_reason(level_exc)}"
    return _reason(exc)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else ""


def _reason(exc: Exception) -> str:
    return str(exc.args[0]) if exc.args else str(exc)
