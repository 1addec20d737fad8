"""Declarative data expectations for feature groups, and a validator that reports rows.

A feature group declares rules once; every insert is checked against them and
rejected as a whole when one fails, with a report that names the failing rows
(0-based positions) and columns::

    >>> import pandas as pd
    >>> df = pd.DataFrame({"cc_num": [1, 2, 2], "amount": [5.0, -1.0, None]})
    >>> report = validate(df, [not_null("cc_num"), unique("cc_num"), in_range("amount", min=0)])
    >>> report.summary()
    '3 rules, 2 failed: unique(cc_num): 1 row; in_range(amount, min=0): 1 row'

Rules are frozen dataclasses made by :func:`not_null`, :func:`unique`,
:func:`in_range`, :func:`allowed_values` and :func:`dtype`; plain dicts such as
``{"rule": "in_range", "column": "amount", "min": 0}`` are accepted wherever a
rule is, and :func:`expectations_to_json` / :func:`expectations_from_json`
store a list of rules in the catalog.

Semantics worth knowing:

* Nulls: ``in_range`` and ``allowed_values`` check only non-null values; a
  null passes them.  Use ``not_null`` to forbid nulls.  A float NaN counts as
  null everywhere (pandas treats it as missing, and Arrow conversion of a
  pandas float column turns NaN into null anyway).
* ``unique`` treats nulls as equal to each other (as ``DataFrame.duplicated``
  does): two rows with a null key are duplicates.  It counts the rows beyond
  the first of each duplicated combination.
* Datetimes: a naive bound against a tz-aware column, or an aware bound
  against a naive column, is read with naive meaning UTC; aware values are
  compared as instants.
* A rule that cannot be evaluated (its column is missing, or holds values that
  cannot be compared with its bounds) is a failed rule whose message says why;
  ``validate`` raises only for a malformed call.

Rules are evaluated with ``pyarrow.compute`` over whole columns; only the
columns a rule names are converted from pandas.
"""

from __future__ import annotations

import datetime as dt
import decimal
import html
import json
import math
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, TypeAlias

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from nbops.errors import InvalidExpectationError, InvalidInputError, ValidationError

__all__ = [
    "DTYPE_KINDS",
    "AllowedValues",
    "DType",
    "ExpectationResult",
    "InRange",
    "InvalidExpectationError",
    "NotNull",
    "Rule",
    "Unique",
    "ValidationError",
    "ValidationReport",
    "allowed_values",
    "dtype",
    "expectations_from_json",
    "expectations_to_json",
    "from_dict",
    "in_range",
    "not_null",
    "parse_expectations",
    "unique",
    "validate",
]

#: Generic kinds accepted by :func:`dtype`; anything else must be an Arrow type string.
DTYPE_KINDS = ("int", "float", "numeric", "bool", "string", "datetime", "category")

# Arrow type strings that ``pa.type_for_alias`` cannot parse (parameterised types).
_ARROW_TYPE_STRING = re.compile(r"[a-z][a-z0-9_]*(\[.*\]|<.*>|\(.*\))")
# Keys of an example dict that are not column values.
_ROW_KEY = "row"
_FIRST_ROW_KEY = "first_row"
# How many column names a "column not found" message lists before eliding.
_MAX_LISTED_COLUMNS = 20
# How many distinct offending values an allowed_values message lists.
_MAX_LISTED_VALUES = 5
# What Arrow raises for values it cannot convert, compare or combine.
_ARROW_ERRORS = (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError)
# The same, and what Python raises for a value of the wrong kind or range.
_VALUE_ERRORS = (*_ARROW_ERRORS, TypeError, ValueError)


# --------------------------------------------------------------------------- values


def _normalise_value(value: Any, what: str) -> Any:
    """Turn numpy scalars and datetimes into the few types that round-trip through JSON."""
    if isinstance(value, np.datetime64):
        value = pd.Timestamp(value)
    elif isinstance(value, np.timedelta64):
        value = pd.Timedelta(value)
    elif isinstance(value, np.generic):
        value = value.item()
    if value is None or isinstance(value, (bool, int, float, str, decimal.Decimal)):
        return value
    if isinstance(value, dt.datetime):
        return pd.Timestamp(value)  # also covers pd.Timestamp; keeps nanoseconds
    if isinstance(value, dt.date):
        return value
    if isinstance(value, dt.timedelta):
        return pd.Timedelta(value)
    raise InvalidExpectationError(
        f"{what}: unsupported value {value!r} of type {type(value).__name__}; "
        "use numbers, strings, booleans, dates, datetimes or timedeltas"
    )


def _encode_value(value: Any) -> Any:
    """JSON form of a normalised rule value; tagged objects for non-JSON types."""
    if isinstance(value, float) and not math.isfinite(value):
        return {"float": repr(value)}
    if isinstance(value, pd.Timestamp):
        return {"timestamp": value.isoformat()}
    if isinstance(value, dt.date):
        return {"date": value.isoformat()}
    if isinstance(value, pd.Timedelta):
        return {"timedelta": value.isoformat()}
    if isinstance(value, decimal.Decimal):
        return {"decimal": str(value)}
    return value


def _decode_value(value: Any, what: str) -> Any:
    if isinstance(value, Mapping):
        if len(value) != 1:
            raise InvalidExpectationError(f"{what}: cannot read value {value!r}")
        ((tag, text),) = value.items()
        decoders: dict[str, Any] = {
            "float": float,
            "timestamp": pd.Timestamp,
            "date": dt.date.fromisoformat,
            "timedelta": pd.Timedelta,
            "decimal": decimal.Decimal,
        }
        if tag not in decoders:
            raise InvalidExpectationError(f"{what}: unknown value tag {tag!r} in {value!r}")
        return decoders[tag](text)
    return _normalise_value(value, what)


def _show(value: Any) -> str:
    """A short, unambiguous rendering of one value for labels and reports."""
    if isinstance(value, str):
        return repr(value)
    if isinstance(value, (dt.datetime, dt.date)):
        return value.isoformat()
    return str(value)


def _json_safe(value: Any) -> Any:
    """A JSON-serialisable stand-in for a value read from the data."""
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else repr(value)
    if isinstance(value, (dt.datetime, dt.date, dt.time)):
        return value.isoformat()
    if isinstance(value, Mapping):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, np.generic):
        return _json_safe(value.item())
    return str(value)


def _rows(n: int) -> str:
    return f"{n:,} row" if n == 1 else f"{n:,} rows"


def _of_rows(failed: int, rows: int) -> str:
    return f"{failed:,} of {rows:,} rows"


def _column_name(name: object, rule: str) -> str:
    if not isinstance(name, str) or name == "":
        raise InvalidExpectationError(f"{rule}: a column must be a non-empty str, not {name!r}")
    return name


def _column_names(names: Iterable[object], rule: str) -> tuple[str, ...]:
    columns = tuple(_column_name(n, rule) for n in names)
    if not columns:
        raise InvalidExpectationError(f"{rule} needs at least one column, e.g. {rule}('cc_num')")
    if len(set(columns)) != len(columns):
        raise InvalidExpectationError(f"{rule}: column listed twice in {columns!r}")
    return columns


# --------------------------------------------------------------------------- results


@dataclass(frozen=True)
class ExpectationResult:
    """The outcome of one rule on one frame.

    ``examples`` holds up to ``max_examples`` dicts, each with the offending
    row's 0-based position under ``"row"`` and the values of the rule's
    columns (a column itself named ``row`` appears as ``"column:row"``).
    ``scope`` is ``"rows"`` when individual rows failed and ``"column"`` when
    the rule failed as a whole (missing column, wrong type); then
    ``failed_count`` is every row checked.
    """

    rule: str
    label: str
    columns: tuple[str, ...]
    passed: bool
    failed_count: int
    examples: list[dict[str, Any]]
    message: str
    scope: str = "rows"

    def short(self) -> str:
        """``label: what failed`` in a few words, for one-line summaries."""
        if self.passed:
            return f"{self.label}: ok"
        # Column messages put the reason first and details after "; " (column lists, Arrow errors).
        detail = _rows(self.failed_count) if self.scope == "rows" else self.message.split("; ")[0]
        return f"{self.label}: {detail}"

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable form for the catalog (example values become JSON scalars)."""
        return {
            "rule": self.rule,
            "label": self.label,
            "columns": list(self.columns),
            "passed": self.passed,
            "failed_count": self.failed_count,
            "scope": self.scope,
            "message": self.message,
            "examples": [{str(k): _json_safe(v) for k, v in e.items()} for e in self.examples],
        }


def _describe_example(example: Mapping[str, Any]) -> str:
    values = ", ".join(f"{k}={_show(v)}" for k, v in example.items() if k not in (_ROW_KEY, _FIRST_ROW_KEY))
    row = example.get(_ROW_KEY)
    head = f"row {row}" if row is not None else "row ?"
    if _FIRST_ROW_KEY in example:
        head += f" (same as row {example[_FIRST_ROW_KEY]})"
    return f"{head}: {values}" if values else head


@dataclass(frozen=True)
class ValidationReport:
    """What :func:`validate` found: one :class:`ExpectationResult` per rule.

    >>> report = validate(pd.DataFrame({"x": [1, None]}), [not_null("x")])
    >>> report.ok, report.results[0].examples
    (False, [{'row': 1, 'x': None}])
    """

    results: tuple[ExpectationResult, ...]
    rows: int

    @property
    def ok(self) -> bool:
        """True when every rule passed."""
        return all(r.passed for r in self.results)

    @property
    def failed(self) -> tuple[ExpectationResult, ...]:
        """The results of the rules that failed, in rule order."""
        return tuple(r for r in self.results if not r.passed)

    def summary(self) -> str:
        """One line: how many rules passed, or which failed and on how many rows."""
        n = len(self.results)
        noun = "rule" if n == 1 else "rules"
        if self.ok:
            return f"{n} {noun} passed on {_rows(self.rows)}"
        return f"{n} {noun}, {len(self.failed)} failed: " + "; ".join(r.short() for r in self.failed)

    def text(self) -> str:
        """The full report: a line per rule, example rows under each failed one (:class:`ValidationError`'s message)."""
        rules = "rule" if len(self.results) == 1 else "rules"
        lines = [f"{_rows(self.rows)} checked, {len(self.results)} {rules}, {len(self.failed)} failed"]
        for r in self.results:
            if r.passed:
                lines.append(f"  passed  {r.label}")
                continue
            lines.append(f"  FAILED  {r.label}: {r.message}")
            lines.extend(f"          {_describe_example(e)}" for e in r.examples)
            more = r.failed_count - len(r.examples)
            if r.scope == "rows" and r.examples and more > 0:
                lines.append(f"          ... and {more:,} more {'row' if more == 1 else 'rows'}")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.summary()

    def _repr_pretty_(self, p: object, cycle: bool) -> None:
        p.text(self.text())  # type: ignore[attr-defined]

    def _repr_html_(self) -> str:
        esc = html.escape
        body = []
        for r in self.results:
            status = "passed" if r.passed else "FAILED"
            colour = "green" if r.passed else "#b00"
            examples = "<br>".join(esc(_describe_example(e)) for e in r.examples)
            failed = "" if r.passed else f"{r.failed_count:,}"
            body.append(
                f"<tr><td style='text-align:left;color:{colour}'>{status}</td>"
                f"<td style='text-align:left'><code>{esc(r.label)}</code></td>"
                f"<td style='text-align:right'>{esc(failed)}</td>"
                f"<td style='text-align:left'>{esc('' if r.passed else r.message)}</td>"
                f"<td style='text-align:left'>{examples}</td></tr>"
            )
        head = "".join(
            f"<th style='text-align:left'>{h}</th>" for h in ("status", "rule", "failed rows", "message", "examples")
        )
        return (
            f"<div class='nbops-validation'><b>{esc(self.summary())}</b>"
            f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table></div>"
        )

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable form for the catalog (example values become JSON scalars)."""
        return {
            "ok": self.ok,
            "rows": self.rows,
            "summary": self.summary(),
            "results": [r.to_dict() for r in self.results],
        }

    def raise_if_failed(self) -> ValidationReport:
        """Raise :class:`ValidationError` when a rule failed; else return the report."""
        if not self.ok:
            raise ValidationError(self)
        return self


# --------------------------------------------------------------------------- data access


class _ColumnProblem(Exception):
    """A column a rule needs cannot be read; the message becomes the rule's."""


class _Data:
    """The frame under validation, its columns converted to Arrow once and on demand."""

    def __init__(self, data: pd.DataFrame | pa.Table) -> None:
        self._frame = data if isinstance(data, pd.DataFrame) else None
        self._table = data if isinstance(data, pa.Table) else None
        self.rows = len(data) if self._frame is not None else data.num_rows
        self.names = [str(c) for c in (data.columns if self._frame is not None else data.column_names)]
        self._cache: dict[str, pa.ChunkedArray | pa.Array] = {}

    def column(self, name: str) -> pa.ChunkedArray | pa.Array:
        if name not in self._cache:
            self._cache[name] = self._read(name)
        return self._cache[name]

    def _read(self, name: str) -> pa.ChunkedArray | pa.Array:
        count = self.names.count(name)
        if count == 0:
            listed = ", ".join(self.names[:_MAX_LISTED_COLUMNS])
            if len(self.names) > _MAX_LISTED_COLUMNS:
                listed += f", ... ({len(self.names)} columns)"
            raise _ColumnProblem(f"column {name!r} is not in the data; columns: {listed or '(none)'}")
        if count > 1:
            raise _ColumnProblem(f"column {name!r} appears {count} times in the data")
        if self._table is not None:
            return self._table.column(name)
        assert self._frame is not None
        series = self._frame.iloc[:, self.names.index(name)]
        try:
            return _tz_aware_to_arrow(series) or pa.array(series, from_pandas=True)
        except _ARROW_ERRORS as e:
            raise _ColumnProblem(f"column {name!r} ({series.dtype}) cannot be read as Arrow; Arrow says: {e}") from None


def _tz_aware_to_arrow(series: pd.Series) -> pa.Array | None:
    """A tz-aware datetime column built from its int64 values, else None.

    pyarrow reads such columns through ``Series.values``, which pandas 3.1
    deprecates with a warning on every call; the epoch values need no copy.
    """
    if not isinstance(series.dtype, pd.DatetimeTZDtype):
        return None
    tz = series.dtype.tz
    name = getattr(tz, "key", None) or getattr(tz, "zone", None)  # zoneinfo, pytz
    if name is None and isinstance(tz, dt.timezone):
        offset = tz.utcoffset(None)
        sign = "-" if offset < dt.timedelta(0) else "+"
        minutes = abs(int(offset.total_seconds())) // 60
        name = "UTC" if minutes == 0 else f"{sign}{minutes // 60:02d}:{minutes % 60:02d}"
    if name is None:
        return None
    values = series.array
    return pa.array(values.asi8, type=pa.timestamp(series.dtype.unit, str(name)), mask=np.asarray(values.isna()))


def _decoded(column: pa.ChunkedArray | pa.Array) -> pa.ChunkedArray | pa.Array:
    """Category columns compare by their values, not their codes."""
    if pa.types.is_dictionary(column.type):
        return pc.cast(column, column.type.value_type)
    return column


def _is_missing(column: pa.ChunkedArray | pa.Array) -> pa.ChunkedArray | pa.Array:
    return pc.is_null(column, nan_is_null=True)


def _examples(
    data: _Data,
    columns: Sequence[str],
    positions: pa.Array,
    extra: Mapping[str, pa.Array] | None = None,
) -> list[dict[str, Any]]:
    """Example dicts for the rows at ``positions`` (already cut to max_examples)."""
    rows = positions.to_pylist()
    out: list[dict[str, Any]] = [{_ROW_KEY: int(r)} for r in rows]
    for name, values in (extra or {}).items():
        for e, v in zip(out, values.to_pylist(), strict=True):
            e[name] = v
    for name in columns:
        key = f"column:{name}" if name in (_ROW_KEY, _FIRST_ROW_KEY) else name
        for e, v in zip(out, pc.take(data.column(name), positions).to_pylist(), strict=True):
            e[key] = v
    return out


def _mask_result(
    rule: Rule,
    data: _Data,
    mask: pa.ChunkedArray | pa.Array,
    max_examples: int,
    describe: Callable[[int], str],
) -> ExpectationResult:
    """Result of a row rule from a boolean mask (true = row fails, no nulls).

    ``describe(failed)`` writes the message; it runs only when a row failed.
    """
    failed = int(pc.sum(mask).as_py() or 0)
    if failed == 0:
        return _passed(rule)
    positions = pc.indices_nonzero(mask).slice(0, max_examples)
    return _rows_failure(rule, data, failed, positions, describe(failed))


def _rows_failure(
    rule: Rule,
    data: _Data,
    failed: int,
    positions: pa.Array,
    message: str,
    extra: Mapping[str, pa.Array] | None = None,
) -> ExpectationResult:
    """Result of a row rule that ``failed`` rows broke, with the rows at ``positions`` as examples."""
    return ExpectationResult(
        rule=rule.rule,
        label=rule.label(),
        columns=rule.columns,
        passed=False,
        failed_count=failed,
        examples=_examples(data, rule.columns, positions, extra=extra),
        message=message,
    )


def _passed(rule: Rule) -> ExpectationResult:
    return ExpectationResult(rule.rule, rule.label(), rule.columns, True, 0, [], "passed")


def _column_failure(rule: Rule, data: _Data, message: str) -> ExpectationResult:
    return ExpectationResult(rule.rule, rule.label(), rule.columns, False, data.rows, [], message, scope="column")


# --------------------------------------------------------------------------- rules


class _RuleBase:
    """Shared behaviour; subclasses are frozen dataclasses with a ``rule`` name."""

    rule: ClassVar[str]

    def label(self) -> str:
        raise NotImplementedError

    def to_dict(self) -> dict[str, Any]:
        raise NotImplementedError

    def __str__(self) -> str:
        return self.label()


@dataclass(frozen=True)
class _ColumnsRule(_RuleBase):
    """A rule on a list of columns and nothing else: ``rule(col, ...)``."""

    columns: tuple[str, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "columns", _column_names(self.columns, self.rule))

    def label(self) -> str:
        """How the rule reads in reports: ``not_null(cc_num, ts)``."""
        return f"{self.rule}({', '.join(self.columns)})"

    def to_dict(self) -> dict[str, Any]:
        """The rule as a dict, which :func:`from_dict` reads back."""
        return {"rule": self.rule, "columns": list(self.columns)}


@dataclass(frozen=True)
class NotNull(_ColumnsRule):
    """No null (or NaN) in any of ``columns``."""

    rule: ClassVar[str] = "not_null"

    def _check(self, data: _Data, max_examples: int) -> ExpectationResult:
        masks = [_is_missing(data.column(c)) for c in self.columns]
        per_column = [int(pc.sum(m).as_py() or 0) for m in masks]
        any_null = masks[0]
        for m in masks[1:]:
            any_null = pc.or_(any_null, m)

        def describe(failed: int) -> str:
            if len(self.columns) == 1:
                return f"null in {_of_rows(failed, data.rows)}"
            counts = ", ".join(f"{c} ({n:,})" for c, n in zip(self.columns, per_column, strict=True) if n)
            return f"null in {_of_rows(failed, data.rows)}; nulls per column: {counts}"

        return _mask_result(self, data, any_null, max_examples, describe)


@dataclass(frozen=True)
class Unique(_ColumnsRule):
    """Each combination of ``columns`` occurs at most once (nulls count as equal)."""

    rule: ClassVar[str] = "unique"

    def _check(self, data: _Data, max_examples: int) -> ExpectationResult:
        columns = [data.column(c) for c in self.columns]
        if data.rows < 2:
            return _passed(self)
        try:
            groups = _group_ids(columns, data.rows)
        except _ARROW_ERRORS as e:
            return _column_failure(self, data, f"cannot compare rows of ({', '.join(self.columns)}); Arrow says: {e}")
        if groups is None:
            return _passed(self)
        # dictionary_encode numbers combinations in order of first appearance, so a
        # row repeats an earlier combination exactly when its id is not a new maximum.
        running_max = pc.cumulative_max(groups)
        previous_max = pa.concat_arrays([pa.array([-1], pa.int64()), running_max.slice(0, len(groups) - 1)])
        duplicate = pc.less_equal(groups, previous_max)
        failed = int(pc.sum(duplicate).as_py() or 0)
        if failed == 0:
            return _passed(self)
        combinations = pc.count_distinct(pc.filter(groups, duplicate)).as_py()
        # The k-th first occurrence is where combination k first appears.
        first_rows = pc.indices_nonzero(pc.invert(duplicate))
        positions = pc.indices_nonzero(duplicate).slice(0, max_examples)
        first = pc.take(first_rows, pc.take(groups, positions))
        message = (
            f"{_of_rows(failed, data.rows)} repeat an earlier row's ({', '.join(self.columns)}); "
            f"{combinations:,} distinct values occur more than once"
        )
        return _rows_failure(self, data, failed, positions, message, extra={_FIRST_ROW_KEY: first})


def _group_ids(columns: Iterable[pa.ChunkedArray | pa.Array], rows: int) -> pa.Array | None:
    """One int64 id per row, equal for equal combinations, numbered by first appearance.

    None when every combination is distinct (known early when a hashed column
    alone has ``rows`` distinct values).
    """
    combined: pa.Array | None = None
    bound = 1  # combined ids lie in [0, bound)
    for column in columns:
        ids, width, all_distinct = _value_ids(column)
        if all_distinct:
            return None
        if combined is not None and bound * width >= _ID_LIMIT:
            # Renumbered ids stay below the row count, so the product fits again.
            combined, bound = _renumber(combined)
            if bound * width >= _ID_LIMIT:
                ids, width = _renumber(ids)
        combined = ids if combined is None else pc.add_checked(pc.multiply_checked(combined, width), ids)
        bound *= width
    assert combined is not None
    # Renumber in order of first appearance, which Unique._check relies on.
    combined, distinct = _renumber(combined)
    return None if distinct == rows else combined


def _renumber(ids: pa.Array) -> tuple[pa.Array, int]:
    """Ids ``0, 1, 2, ...`` in order of first appearance, and how many there are."""
    codes = pc.dictionary_encode(ids)
    return pc.cast(codes.indices, pa.int64()), len(codes.dictionary)


# Combined ids stay below this, far from int64 overflow.
_ID_LIMIT = 2**62


def _value_ids(column: pa.ChunkedArray | pa.Array) -> tuple[pa.Array, int, bool]:
    """``(ids, width, all_distinct)``: ids in ``[0, width)``, equal exactly for equal values.

    Nulls get an id of their own.  Integral columns (ints, bools, datetimes)
    use ``value - min`` and skip hashing, most of the cost of ``unique`` on a
    million rows; other types are hashed.
    """
    array = _decoded(column)
    if isinstance(array, pa.ChunkedArray):
        array = array.combine_chunks()
    ints = _as_int64(array)
    if ints is not None and ints.null_count < len(ints):
        low, high = (v.as_py() for v in pc.min_max(ints).values())
        span = high - low + 1
        if span < _ID_LIMIT:
            return pc.fill_null(pc.subtract(ints, low), span), span + 1, False
    codes = pc.dictionary_encode(array, null_encoding="encode")
    width = len(codes.dictionary)
    return pc.cast(codes.indices, pa.int64()), width, width == len(array)


def _as_int64(array: pa.Array) -> pa.Array | None:
    """The values as int64 when that is exact and cheap, else None."""
    t = array.type
    if t.id in _SMALL_INTEGER_IDS:
        return pc.cast(array, pa.int64())
    if pa.types.is_timestamp(t) or pa.types.is_duration(t) or pa.types.is_date64(t):
        return array.view(pa.int64())
    if pa.types.is_date32(t):
        return pc.cast(array.view(pa.int32()), pa.int64())
    return None


# Integer-like types whose values all fit in int64 (uint64 may not).
_SMALL_INTEGER_IDS = frozenset(
    t.id
    for t in (
        pa.bool_(),
        pa.int8(),
        pa.int16(),
        pa.int32(),
        pa.int64(),
        pa.uint8(),
        pa.uint16(),
        pa.uint32(),
    )
)


@dataclass(frozen=True)
class InRange(_RuleBase):
    """Non-null values of ``column`` lie between ``min`` and ``max`` (nulls pass)."""

    column: str
    min: Any = None
    max: Any = None
    inclusive: bool = True
    rule: ClassVar[str] = "in_range"

    def __post_init__(self) -> None:
        _column_name(self.column, self.rule)
        lo = _normalise_value(self.min, f"in_range({self.column}) min")
        hi = _normalise_value(self.max, f"in_range({self.column}) max")
        if lo is None and hi is None:
            raise InvalidExpectationError(f"in_range({self.column}) needs min, max or both")
        if not isinstance(self.inclusive, bool):
            raise InvalidExpectationError(f"in_range({self.column}): inclusive must be True or False")
        try:
            reversed_bounds = lo is not None and hi is not None and lo > hi
        except TypeError:
            raise InvalidExpectationError(
                f"in_range({self.column}): min {lo!r} and max {hi!r} cannot be compared"
            ) from None
        if reversed_bounds:
            raise InvalidExpectationError(f"in_range({self.column}): min {_show(lo)} is above max {_show(hi)}")
        object.__setattr__(self, "min", lo)
        object.__setattr__(self, "max", hi)

    @property
    def columns(self) -> tuple[str, ...]:
        """The one column the rule checks, as a tuple like every rule's."""
        return (self.column,)

    def label(self) -> str:
        """How the rule reads in reports: ``in_range(amount, min=0, max=100)``."""
        parts = [self.column]
        if self.min is not None:
            parts.append(f"min={_show(self.min)}")
        if self.max is not None:
            parts.append(f"max={_show(self.max)}")
        if not self.inclusive:
            parts.append("inclusive=False")
        return f"in_range({', '.join(parts)})"

    def condition(self) -> str:
        """The bounds in words for messages, e.g. ``>= 0 and <= 100``."""
        lo_op, hi_op = (">=", "<=") if self.inclusive else (">", "<")
        parts = []
        if self.min is not None:
            parts.append(f"{lo_op} {_show(self.min)}")
        if self.max is not None:
            parts.append(f"{hi_op} {_show(self.max)}")
        return " and ".join(parts)

    def to_dict(self) -> dict[str, Any]:
        """The rule as a JSON-ready dict (non-JSON bounds tagged), which :func:`from_dict` reads back."""
        return {
            "rule": self.rule,
            "column": self.column,
            "min": _encode_value(self.min),
            "max": _encode_value(self.max),
            "inclusive": self.inclusive,
        }

    def _check(self, data: _Data, max_examples: int) -> ExpectationResult:
        values = _decoded(data.column(self.column))
        lo_fn, hi_fn = (pc.greater_equal, pc.less_equal) if self.inclusive else (pc.greater, pc.less)
        try:
            within: pa.ChunkedArray | pa.Array | None = None
            for bound, compare in ((self.min, lo_fn), (self.max, hi_fn)):
                if bound is None:
                    continue
                test = compare(values, _bound_scalar(bound, values.type))
                within = test if within is None else pc.and_(within, test)
        except _VALUE_ERRORS as e:
            problem = f"column {self.column!r} ({values.type}) cannot be compared with"
            return _column_failure(self, data, f"{problem} {self.condition()}; Arrow says: {e}")
        assert within is not None
        outside = pc.and_(pc.invert(_is_missing(values)), pc.invert(pc.fill_null(within, True)))
        return _mask_result(
            self,
            data,
            outside,
            max_examples,
            lambda failed: f"not {self.condition()} in {_of_rows(failed, data.rows)}",
        )


def _bound_scalar(bound: Any, arrow_type: pa.DataType) -> pa.Scalar:
    """A bound as an Arrow scalar comparable with a column of ``arrow_type``."""
    if pa.types.is_timestamp(arrow_type):
        ts = pd.Timestamp(bound)
        # Naive means UTC on either side; aware values compare as instants.
        if arrow_type.tz is not None and ts.tzinfo is None:
            ts = ts.tz_localize("UTC")
        elif arrow_type.tz is None and ts.tzinfo is not None:
            ts = ts.tz_convert("UTC").tz_localize(None)
        # Compare in the column's own unit and zone: Arrow has no mixed-unit kernels.
        scalar = pa.scalar(ts, type=pa.timestamp("ns", tz=arrow_type.tz))
        return pc.cast(scalar, arrow_type, safe=False)
    if pa.types.is_duration(arrow_type):
        return pc.cast(pa.scalar(pd.Timedelta(bound), type=pa.duration("ns")), arrow_type, safe=False)
    if pa.types.is_date(arrow_type) and isinstance(bound, pd.Timestamp):
        return pa.scalar(bound.date(), type=arrow_type)
    return pa.scalar(bound)


@dataclass(frozen=True)
class AllowedValues(_RuleBase):
    """Non-null values of ``column`` are among ``values`` (nulls pass)."""

    column: str
    values: tuple[Any, ...]
    rule: ClassVar[str] = "allowed_values"

    def __post_init__(self) -> None:
        _column_name(self.column, self.rule)
        if isinstance(self.values, (str, bytes, Mapping)) or not isinstance(self.values, Iterable):
            raise InvalidExpectationError(
                f"allowed_values({self.column}): values must be a list such as ['a', 'b'], not {self.values!r}"
            )
        what = f"allowed_values({self.column})"
        object.__setattr__(self, "values", tuple(_normalise_value(v, what) for v in self.values))

    @property
    def columns(self) -> tuple[str, ...]:
        """The one column the rule checks, as a tuple like every rule's."""
        return (self.column,)

    def label(self) -> str:
        """How the rule reads in reports: ``allowed_values(status, ['new', 'paid'])`` (the first five values)."""
        shown = ", ".join(_show(v) for v in self.values[:5])
        if len(self.values) > 5:
            shown += f", ... {len(self.values)} values"
        return f"allowed_values({self.column}, [{shown}])"

    def to_dict(self) -> dict[str, Any]:
        """The rule as a JSON-ready dict (non-JSON values tagged), which :func:`from_dict` reads back."""
        return {
            "rule": self.rule,
            "column": self.column,
            "values": [_encode_value(v) for v in self.values],
        }

    def _check(self, data: _Data, max_examples: int) -> ExpectationResult:
        values = _decoded(data.column(self.column))
        allowed = pa.array(_convertible(self.values, values.type), type=values.type)
        outside = pc.and_(pc.invert(_is_missing(values)), pc.invert(pc.is_in(values, value_set=allowed)))

        def describe(failed: int) -> str:
            bad = pc.unique(pc.filter(values, outside))
            shown = ", ".join(_show(v) for v in bad.slice(0, _MAX_LISTED_VALUES).to_pylist())
            if len(bad) > _MAX_LISTED_VALUES:
                shown += f", ... ({len(bad):,} distinct)"
            return f"values not allowed in {_of_rows(failed, data.rows)}: {shown}"

        return _mask_result(self, data, outside, max_examples, describe)


def _convertible(values: Sequence[Any], arrow_type: pa.DataType) -> list[Any]:
    """The allowed values that exist in ``arrow_type``; the others can match nothing."""
    out = []
    for v in values:
        # Python says True == 1; a flag column and a count column should not agree.
        if v is None or isinstance(v, bool) != pa.types.is_boolean(arrow_type):
            continue
        try:
            if pa.types.is_timestamp(arrow_type) or pa.types.is_duration(arrow_type):
                out.append(_bound_scalar(v, arrow_type).as_py())
                continue
            scalar = pa.scalar(v, type=arrow_type)
        except (*_VALUE_ERRORS, OverflowError):
            continue
        if scalar.as_py() == v:  # Arrow may convert leniently; keep exact equivalents only
            out.append(scalar.as_py())
    return out


@dataclass(frozen=True)
class DType(_RuleBase):
    """``column`` has a type of ``kind`` (a generic kind or an exact Arrow type string)."""

    column: str
    kind: str
    rule: ClassVar[str] = "dtype"

    def __post_init__(self) -> None:
        _column_name(self.column, self.rule)
        if not isinstance(self.kind, str) or not self.kind:
            raise InvalidExpectationError(f"dtype({self.column}): kind must be a str such as 'int' or 'int64'")
        _arrow_type_string(self.kind, self.column)

    @property
    def columns(self) -> tuple[str, ...]:
        """The one column the rule checks, as a tuple like every rule's."""
        return (self.column,)

    def label(self) -> str:
        """How the rule reads in reports: ``dtype(amount, float)``."""
        return f"dtype({self.column}, {self.kind})"

    def to_dict(self) -> dict[str, Any]:
        """The rule as a dict, which :func:`from_dict` reads back."""
        return {"rule": self.rule, "column": self.column, "kind": self.kind}

    def matches(self, arrow_type: pa.DataType) -> bool:
        """Whether a column of ``arrow_type`` passes: a generic kind (``"int"``) by family, a type string exactly."""
        t = pa.types
        generic = {
            "int": t.is_integer,
            "float": t.is_floating,
            "numeric": lambda x: t.is_integer(x) or t.is_floating(x) or t.is_decimal(x),
            "bool": t.is_boolean,
            "string": lambda x: t.is_string(x) or t.is_large_string(x) or t.is_string_view(x),
            "datetime": t.is_timestamp,
            "category": t.is_dictionary,
        }
        if self.kind in generic:
            return bool(generic[self.kind](arrow_type))
        return str(arrow_type) == _arrow_type_string(self.kind, self.column)

    def _check(self, data: _Data, max_examples: int) -> ExpectationResult:
        arrow_type = data.column(self.column).type
        if self.matches(arrow_type):
            return _passed(self)
        return _column_failure(self, data, f"column {self.column!r} is {arrow_type}, not {self.kind}")


def _arrow_type_string(kind: str, column: str) -> str:
    """The canonical Arrow spelling of ``kind`` ("float64" -> "double"); raises if unknown."""
    if kind in DTYPE_KINDS:
        return kind
    try:
        return str(pa.type_for_alias(kind))
    except (ValueError, KeyError):
        pass
    if _ARROW_TYPE_STRING.fullmatch(kind):
        return kind  # parameterised, e.g. "timestamp[us, tz=UTC]": compared as spelled by Arrow
    raise InvalidExpectationError(
        f"dtype({column}, {kind!r}): unknown kind; use one of {', '.join(DTYPE_KINDS)} "
        "or an Arrow type string such as 'int64' or 'timestamp[us, tz=UTC]'"
    )


Rule: TypeAlias = NotNull | Unique | InRange | AllowedValues | DType
_RULES: dict[str, type[Rule]] = {r.rule: r for r in (NotNull, Unique, InRange, AllowedValues, DType)}


# --------------------------------------------------------------------------- constructors


def not_null(*columns: str) -> NotNull:
    """No null (or NaN) in any of ``columns``: ``not_null("cc_num", "ts")``."""
    return NotNull(columns)


def unique(*columns: str) -> Unique:
    """The combination of ``columns`` is unique: ``unique("cc_num", "ts")``."""
    return Unique(columns)


def in_range(column: str, min: Any = None, max: Any = None, inclusive: bool = True) -> InRange:
    """Non-null values of ``column`` within ``[min, max]`` (either may be None)."""
    return InRange(column, min, max, inclusive)


def allowed_values(column: str, values: Iterable[Any]) -> AllowedValues:
    """Non-null values of ``column`` are among ``values``."""
    return AllowedValues(column, values)  # type: ignore[arg-type]  # __post_init__ makes a tuple


def dtype(column: str, kind: str) -> DType:
    """``column`` has type ``kind``: one of :data:`DTYPE_KINDS` or an Arrow type string."""
    return DType(column, kind)


# --------------------------------------------------------------------------- serialisation


def from_dict(d: Mapping[str, Any]) -> Rule:
    """A rule from its dict form, e.g. ``{"rule": "in_range", "column": "amount", "min": 0}``.

    ``not_null`` and ``unique`` take ``"columns"`` (a list, or one name) or ``"column"``.
    """
    if not isinstance(d, Mapping):
        raise InvalidExpectationError(f"a rule must be a rule object or a dict, not {type(d).__name__}: {d!r}")
    name = d.get("rule")
    if name not in _RULES:
        raise InvalidExpectationError(f"unknown rule {name!r} in {dict(d)!r}; known rules: {', '.join(_RULES)}")
    args = {k: v for k, v in d.items() if k != "rule"}
    what = f"{name} rule {dict(d)!r}"
    if name in ("not_null", "unique"):
        if "column" in args and "columns" in args:
            raise InvalidExpectationError(f"{what}: give 'column' or 'columns', not both")
        columns = args.pop("columns", args.pop("column", None))
        if columns is None:
            raise InvalidExpectationError(
                f"{what}: missing 'columns', e.g. {{'rule': '{name}', 'columns': ['cc_num']}}"
            )
        _no_extra_keys(args, what, set(), "rule, columns")
        names = [columns] if isinstance(columns, str) else list(columns)
        return NotNull(tuple(names)) if name == "not_null" else Unique(tuple(names))
    if "column" not in args:
        raise InvalidExpectationError(f"{what}: missing 'column', e.g. {{'rule': '{name}', 'column': 'amount', ...}}")
    column = args.pop("column")
    if name == "in_range":
        _no_extra_keys(args, what, {"min", "max", "inclusive"}, "rule, column, min, max, inclusive")
        return InRange(
            column,
            _decode_value(args.get("min"), what),
            _decode_value(args.get("max"), what),
            args.get("inclusive", True),
        )
    if name == "allowed_values":
        _no_extra_keys(args, what, {"values"}, "rule, column, values")
        if "values" not in args:
            raise InvalidExpectationError(f"{what}: missing 'values'")
        values = args["values"]
        if isinstance(values, (str, bytes, Mapping)) or not isinstance(values, Iterable):
            raise InvalidExpectationError(f"{what}: 'values' must be a list")
        return AllowedValues(column, tuple(_decode_value(v, what) for v in values))
    _no_extra_keys(args, what, {"kind"}, "rule, column, kind")
    if "kind" not in args:
        raise InvalidExpectationError(f"{what}: missing 'kind', e.g. 'int' or 'int64'")
    return DType(column, args["kind"])


def _no_extra_keys(args: Mapping[str, Any], what: str, allowed: set[str], takes: str) -> None:
    """A misspelt key ("maxx") would silently drop a bound: refuse it."""
    extra = sorted(map(str, set(args) - allowed))
    if extra:
        raise InvalidExpectationError(f"{what}: unknown key(s) {', '.join(map(repr, extra))}; this rule takes {takes}")


def parse_expectations(
    rules: Rule | Mapping[str, Any] | Iterable[Rule | Mapping[str, Any]] | None,
) -> list[Rule]:
    """Rule objects from rules and/or dicts (one, a list, or None), checked and in order."""
    if rules is None:
        return []
    if isinstance(rules, (_RuleBase, Mapping)):
        rules = [rules]
    if isinstance(rules, (str, bytes)) or not isinstance(rules, Iterable):
        raise InvalidExpectationError(f"expectations must be a list of rules or dicts, not {rules!r}")
    out: list[Rule] = []
    for r in rules:
        if isinstance(r, (NotNull, Unique, InRange, AllowedValues, DType)):
            out.append(r)
        else:
            out.append(from_dict(r))
    return out


def expectations_to_json(rules: Iterable[Rule | Mapping[str, Any]]) -> str:
    """A JSON list of rule dicts, for the catalog; read back with :func:`expectations_from_json`."""
    return json.dumps([r.to_dict() for r in parse_expectations(rules)], allow_nan=False)


def expectations_from_json(text: str) -> list[Rule]:
    """The rules stored by :func:`expectations_to_json`."""
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as e:
        raise InvalidExpectationError(f"expectations are not valid JSON: {e}") from None
    if not isinstance(doc, list):
        raise InvalidExpectationError(f"expectations JSON must be a list of rules, not {type(doc).__name__}")
    return parse_expectations(doc)


# --------------------------------------------------------------------------- validation


def validate(
    data: pd.DataFrame | pa.Table,
    rules: Sequence[Rule | Mapping[str, Any]],
    pandera_schema: object | None = None,
    max_examples: int = 5,
) -> ValidationReport:
    """Check ``data`` against ``rules`` (and a pandera schema, if given); never raises for bad data.

    >>> validate(pd.DataFrame({"s": ["a", "z"]}), [allowed_values("s", ["a", "b"])]).results[0].examples
    [{'row': 1, 's': 'z'}]

    Call ``.raise_if_failed()`` on the report to turn a failure into :class:`ValidationError`.
    """
    if isinstance(data, pa.RecordBatch):
        data = pa.Table.from_batches([data])
    if not isinstance(data, (pd.DataFrame, pa.Table)):
        raise InvalidInputError(f"validate needs a pandas DataFrame or a pyarrow Table, not {type(data).__name__}")
    if not isinstance(max_examples, int) or isinstance(max_examples, bool) or max_examples < 0:
        raise InvalidInputError(f"max_examples must be an int >= 0, not {max_examples!r}")
    parsed = parse_expectations(rules)
    frame = _Data(data)
    results = []
    for rule in parsed:
        try:
            results.append(rule._check(frame, max_examples))
        except _ColumnProblem as problem:
            results.append(_column_failure(rule, frame, str(problem)))
    if pandera_schema is not None:
        results.extend(_pandera_results(data, pandera_schema, max_examples))
    return ValidationReport(results=tuple(results), rows=frame.rows)


# --------------------------------------------------------------------------- pandera


def _pandera_results(data: pd.DataFrame | pa.Table, schema: object, max_examples: int) -> list[ExpectationResult]:
    """Run a pandera schema lazily and turn its failure cases into results."""
    try:
        import pandera.errors as pandera_errors
    except ImportError:
        raise InvalidInputError(
            "a pandera_schema was given but pandera is not installed: pip install pandera"
        ) from None
    validate_fn = getattr(schema, "validate", None)
    if not callable(validate_fn):
        raise InvalidInputError(f"pandera_schema must be a pandera DataFrameSchema, not {type(schema).__name__}")
    frame = data.to_pandas() if isinstance(data, pa.Table) else data
    try:
        validate_fn(frame, lazy=True)
    except pandera_errors.SchemaErrors as e:
        cases = e.failure_cases
    except pandera_errors.SchemaError as e:  # some schema-wide problems skip lazy collection
        check = getattr(e, "check", None)
        case = {
            "schema_context": "",
            "column": getattr(e, "column_name", None),
            "check": str(check) if check is not None else "schema",
            "check_number": None,
            "failure_case": str(e),
            "index": None,
        }
        cases = pd.DataFrame([case])
    else:
        return [ExpectationResult("pandera", "pandera schema", (), True, 0, [], "passed")]
    return _from_failure_cases(frame, cases, max_examples)


def _from_failure_cases(frame: pd.DataFrame, cases: pd.DataFrame, max_examples: int) -> list[ExpectationResult]:
    positions = _positions_of(frame.index)
    default_index = isinstance(frame.index, pd.RangeIndex) and frame.index.start == 0 and frame.index.step == 1
    groups: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
    for case in cases.to_dict("records"):
        context = str(case.get("schema_context") or "")
        column = case.get("column")
        column = None if _missing(column) else str(column)
        # A DataFrame-level check reports one case per column of a failing row: keep it one rule.
        number = case.get("check_number")
        key = (
            context,
            column if context != "DataFrameSchema" else None,
            str(case.get("check")),
            None if _missing(number) else str(number),  # NaN != NaN would split a group
        )
        groups.setdefault(key, []).append({**case, "column": column})
    results = []
    for (_, _, check, _), group in groups.items():
        columns = tuple(dict.fromkeys(c["column"] for c in group if c["column"] is not None))
        rule = f"pandera:{check}"
        label = f"{rule} on {', '.join(columns)}" if columns else rule
        row_cases = [c for c in group if not _missing(c.get("index"))]
        if not row_cases:
            shown = ", ".join(str(c.get("failure_case")) for c in group[: max(max_examples, 1)])
            message = f"pandera check {check} failed: {shown}"
            results.append(ExpectationResult(rule, label, columns, False, len(frame), [], message, scope="column"))
            continue
        by_row: dict[Any, dict[str, Any]] = {}
        for c in row_cases:
            label_key = c["index"] if not isinstance(c["index"], list) else tuple(c["index"])
            example = by_row.setdefault(label_key, {_ROW_KEY: positions(label_key)})
            if not default_index:
                example.setdefault("index", label_key)
            name = c["column"] or "value"
            example[f"column:{name}" if name in (_ROW_KEY, _FIRST_ROW_KEY, "index") else name] = _plain(
                c.get("failure_case")
            )
        examples = sorted(by_row.values(), key=lambda e: (e[_ROW_KEY] is None, e[_ROW_KEY] or 0))[:max_examples]
        message = f"{len(by_row):,} of {len(frame):,} rows fail pandera check {check}"
        results.append(ExpectationResult(rule, label, columns, False, len(by_row), examples, message))
    return results


def _positions_of(index: pd.Index) -> Callable[[Any], int | None]:
    """Label -> 0-based position, or None where the label is ambiguous or absent."""
    if isinstance(index, pd.RangeIndex) and index.start == 0 and index.step == 1:
        return lambda label: int(label) if isinstance(label, (int, np.integer)) else None
    if not index.is_unique:
        return lambda label: None

    def position(label: Any) -> int | None:
        try:
            loc = index.get_loc(label)
        except (KeyError, TypeError):
            return None
        return int(loc) if isinstance(loc, (int, np.integer)) else None

    return position


def _missing(value: Any) -> bool:
    if value is None:
        return True
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):  # list-like values
        return False


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value
