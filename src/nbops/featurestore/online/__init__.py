"""Online serving: the latest feature row per key, for inference.

Groups registered with ``online=True`` keep one row per key in the catalog's
``online_features`` table, updated in the same transaction as the commit
that wrote them.  A row is replaced only by a row with an equal or later
event time, so late-arriving old data never hides a newer value.

Lookups go through an :class:`~nbops.featurestore.online.base.OnlineStore`
(:mod:`.catalog` by default, :mod:`.redis` when configured) and
:mod:`nbops.featurestore.serving`, which resolves and caches what a lookup asks for.

Requested keys are matched with the types of the group's key columns, as
``training_data`` matches them: each value is normalised to the key column's
type under strict rules (``1.0`` finds the int key ``1``; ``1.5``, ``True``,
missing values and values of another kind are refused with an
:class:`~nbops.errors.InvalidInputError` naming the key), then encoded exactly
as stored rows are (:func:`key_column_values`, :func:`key_normaliser`).

A shared Redis can serve the same rows instead (``NBOPS_ONLINE_URL`` or
``nbops.open(..., online="redis://...")``, see :mod:`nbops.featurestore.online.redis`):
the catalog's table stays the record, and each registration pushes its rows
to Redis after its catalog commit.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import warnings
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from nbops.core.repository import featurestore as records
from nbops.errors import InvalidInputError, NbopsError, OnlineSyncWarning
from nbops.featurestore.online.base import GroupPlan as GroupPlan  # the interface and what it exchanges
from nbops.featurestore.online.base import OnlineRow as OnlineRow
from nbops.featurestore.online.base import OnlineStore as OnlineStore

if TYPE_CHECKING:
    import sqlalchemy as sa

    from nbops.featurestore.groups import _Version
    from nbops.store import Store

#: Where online rows are served from when ``nbops.open(online=...)`` is not given:
#: unset, empty or ``embedded`` for the catalog's own table, ``redis://...`` for Redis.
ONLINE_URL_ENV = "NBOPS_ONLINE_URL"


def encodable(table: pa.Table) -> pa.Table:
    """Columns as JSON-friendly Arrow types (times as integers, categories as values)."""
    arrays = []
    for col in table.columns:
        typ = col.type
        if pa.types.is_dictionary(typ):
            col = col.cast(typ.value_type)
            typ = col.type
        if pa.types.is_date32(typ) or pa.types.is_time32(typ):  # 32-bit: Arrow casts them to int32 only
            col = col.cast(pa.int32()).cast(pa.int64())
        elif pa.types.is_timestamp(typ) or pa.types.is_date(typ) or pa.types.is_time(typ) or pa.types.is_duration(typ):
            col = col.cast(pa.int64())
        elif pa.types.is_decimal(typ):
            col = col.cast(pa.string())
        arrays.append(col)
    return pa.Table.from_arrays(arrays, names=table.column_names)


def decoded(array: pa.Array, typ: pa.DataType) -> pa.Array:
    """Values of an :func:`encodable` type back as the column's own type ``typ``."""
    if array.type == typ:
        return array
    if pa.types.is_date32(typ) or pa.types.is_time32(typ):
        return array.cast(pa.int32()).cast(typ)
    return array.cast(typ)


#: The one encoder of entity keys (the same text as ``json.dumps(..., separators=(",", ":"))``).
_KEY_JSON = json.JSONEncoder(separators=(",", ":"))


def entity_key(values: Iterable[Any]) -> str:
    """The canonical text of one key tuple, from its canonical values (numpy scalars as Python values).

    Canonical values are what :func:`key_column_values` gives for stored rows and
    a :func:`key_normaliser` gives for requested keys: equal keys, equal text.
    """
    return _KEY_JSON.encode([v.item() if isinstance(v, np.generic) else v for v in values])


# -- key values: one canonical form for stored rows and requested keys ------------------
# Integer, float, bool and string keys are the Python values Arrow gives (the text
# stores have always held: ``[5]``, ``[1.5]``, ``["a"]``, ``[true]``).  The other key
# types have no JSON form of their own and are written as: timestamps, the UTC instant
# as an integer count of the column's unit (naive means UTC); dates, days (date32) or
# milliseconds (date64) since 1970; decimals, Arrow's text at the column's scale;
# binary, its hex.  Categorical keys are their values.

_EPOCH = dt.datetime(1970, 1, 1)
_EPOCH_ORDINAL = dt.date(1970, 1, 1).toordinal()
#: Attoseconds per numpy/Arrow time unit: exact integer conversion between any two.
_ATTOSECONDS = {
    "as": 1,
    "fs": 10**3,
    "ps": 10**6,
    "ns": 10**9,
    "us": 10**12,
    "ms": 10**15,
    "s": 10**18,
    "m": 60 * 10**18,
    "h": 3_600 * 10**18,
    "D": 86_400 * 10**18,
    "W": 604_800 * 10**18,
}
_INT64 = (-(2**63), 2**63 - 1)


class _Refused(ValueError):
    """A requested key value that the key column cannot hold (the reason, for the message)."""


def _key_value_type(typ: pa.DataType) -> pa.DataType:
    """The type key values are compared in: a categorical's values, else the type itself."""
    return typ.value_type if pa.types.is_dictionary(typ) else typ


def _is_string(typ: pa.DataType) -> bool:
    return bool(pa.types.is_string(typ) or pa.types.is_large_string(typ) or pa.types.is_string_view(typ))


def _is_binary(typ: pa.DataType) -> bool:
    return bool(
        pa.types.is_binary(typ)
        or pa.types.is_large_binary(typ)
        or pa.types.is_binary_view(typ)
        or pa.types.is_fixed_size_binary(typ)
    )


def servable_key(typ: pa.DataType) -> bool:
    """Whether an online group can be keyed by a column of ``typ``."""
    typ = _key_value_type(typ)
    return (
        pa.types.is_integer(typ)
        or pa.types.is_floating(typ)
        or pa.types.is_boolean(typ)
        or _is_string(typ)
        or _is_binary(typ)
        or pa.types.is_decimal(typ)
        or pa.types.is_date(typ)
        or pa.types.is_timestamp(typ)
    )


def check_servable_keys(schema: pa.Schema, keys: Sequence[str]) -> None:
    """Refuse key columns that online rows cannot be keyed by, naming the first one."""
    for name in keys:
        typ = schema.field(name).type
        if not servable_key(typ):
            raise InvalidInputError(
                f"key column {name!r} has type {typ}, which online groups cannot serve; use integer, float, "
                "bool, string, binary, decimal, date or timestamp key columns (or register without online=True)"
            )


def key_column_values(column: pa.Array | pa.ChunkedArray, name: str) -> list[Any]:
    """The canonical values of a stored key column (see above); unsupported key types are refused."""
    check_servable_keys(pa.schema([pa.field(name, column.type)]), [name])
    typ = _key_value_type(column.type)
    if typ != column.type:
        column = column.cast(typ)
    if pa.types.is_timestamp(typ) or pa.types.is_date64(typ):
        return _pylist(column.cast(pa.int64()))
    if pa.types.is_date32(typ):
        return _pylist(column.cast(pa.int32()))
    if pa.types.is_decimal(typ):
        return _pylist(column.cast(pa.string()))
    if _is_binary(typ):
        return [v.hex() for v in _pylist(column)]
    return _pylist(column)  # integer, float, bool, string: the values stores have always held


def _pylist(column: pa.Array | pa.ChunkedArray) -> list[Any]:
    values: list[Any] = column.to_pylist()
    return values


def key_normaliser(typ: pa.DataType) -> Callable[[Any], Any]:
    """A function from a requested key value to the canonical value of a key column of ``typ``.

    The rules are strict: a value is taken only when it is exactly a value the
    column can hold, compared as the offline join compares keys (an int key
    takes ``1``, ``1.0``, ``np.int32(1)``, never ``True`` or ``1.5``; a timestamp
    key takes any zone and compares instants, naive meaning UTC).  Anything else,
    and every missing value, raises :class:`_Refused` with the reason.
    """
    typ = _key_value_type(typ)
    if pa.types.is_integer(typ):
        bits = typ.bit_width
        low, high = (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1) if pa.types.is_signed_integer(typ) else (0, 2**bits - 1)

        def integer(value: Any) -> Any:
            if type(value) is int and low <= value <= high:
                return value
            return _integer(value, low, high)

        return integer
    if pa.types.is_floating(typ):
        width = typ.bit_width

        def floating(value: Any) -> Any:
            if type(value) is float and width == 64 and value == value:
                return value
            return _floating(value, width)

        return floating
    if pa.types.is_boolean(typ):
        return _boolean
    if _is_string(typ):
        return _string
    if pa.types.is_timestamp(typ):
        unit = typ.unit
        return lambda value: _instant(value, unit)
    if pa.types.is_date(typ):
        scale = 86_400_000 if pa.types.is_date64(typ) else 1
        return lambda value: _date(value) * scale
    if pa.types.is_decimal(typ):
        return lambda value: _decimal(value, typ)
    if _is_binary(typ):
        size = typ.byte_width if pa.types.is_fixed_size_binary(typ) else None
        return lambda value: _binary(value, size)

    def unservable(value: Any) -> Any:
        raise _Refused(f"online groups cannot serve {typ} keys")

    return unservable


def _missing(value: Any) -> bool:
    """None, NaN, NaT, pd.NA and the like: values that stand for no value."""
    if value is None:
        return True
    try:
        return bool(value != value)
    except (TypeError, ValueError, ArithmeticError):  # pd.NA refuses bool(); Decimal('sNaN') refuses comparing
        return type(value).__name__ in ("NAType", "NaTType", "Decimal")


def _refuse_missing(value: Any) -> None:
    if _missing(value):
        raise _Refused("a missing value is not a key (it matches no row)")


def _integer(value: Any, low: int, high: int) -> int:
    _refuse_missing(value)
    if isinstance(value, (bool, np.bool_)):
        raise _Refused("a bool is not an integer key; pass an int")
    if isinstance(value, (int, np.integer)):
        number = int(value)
    elif isinstance(value, (float, np.floating)):
        if not np.isfinite(value):
            raise _Refused("an infinite number is not an integer key")
        if not float(value).is_integer():
            raise _Refused("it has a fractional part, so no integer key equals it")
        number = int(value)
    else:
        raise _Refused("an integer key takes an int, a numpy integer or a whole float")
    if not low <= number <= high:
        raise _Refused(f"it is outside the range of the key column ({low} to {high})")
    return number


def _floating(value: Any, width: int) -> float:
    _refuse_missing(value)
    if isinstance(value, (bool, np.bool_)):
        raise _Refused("a bool is not a number key; pass a float")
    if isinstance(value, (int, np.integer)):
        try:
            number = float(value)
        except OverflowError:
            number = float("nan")
        if not np.isfinite(number) or int(number) != int(value):
            raise _Refused("it is not exactly representable as a float, so no key equals it")
    elif isinstance(value, (float, np.floating)):
        number = float(value)
    else:
        raise _Refused("a float key takes a float, a numpy float or an int")
    if width < 64:
        narrow = np.float32 if width == 32 else np.float16
        with np.errstate(over="ignore"):
            if float(narrow(number)) != number:
                raise _Refused(f"it is not exactly representable as a float{width}, so no key equals it")
    return number


def _boolean(value: Any) -> bool:
    if type(value) is bool:
        return value
    _refuse_missing(value)
    if isinstance(value, np.bool_):
        return bool(value)
    raise _Refused("a bool key takes True or False")


def _string(value: Any) -> str:
    if type(value) is str:
        return value
    _refuse_missing(value)
    if isinstance(value, str):
        return str(value)
    raise _Refused("a string key takes a str")


def _binary(value: Any, size: int | None) -> str:
    _refuse_missing(value)
    if not isinstance(value, (bytes, bytearray)):
        raise _Refused("a binary key takes bytes")
    if size is not None and len(value) != size:
        raise _Refused(f"the key column holds exactly {size} bytes")
    return bytes(value).hex()


def _instant(value: Any, unit: str) -> int:
    """An instant as a count of ``unit`` since 1970 UTC (naive means UTC), exactly or refused."""
    _refuse_missing(value)
    if isinstance(value, dt.datetime):
        as_numpy = getattr(value, "asm8", None)  # pandas Timestamp: its UTC instant, nanoseconds included
        if as_numpy is not None:
            value = as_numpy
        else:
            # Exact integer arithmetic: the offset is applied to a count, never to a datetime that may overflow.
            offset = value.utcoffset() or dt.timedelta(0)
            micros = (value.replace(tzinfo=None) - _EPOCH - offset) // dt.timedelta(microseconds=1)
            return _count(micros * _ATTOSECONDS["us"], unit)
    if isinstance(value, np.datetime64):
        source, step = np.datetime_data(value.dtype)
        if source in ("Y", "M"):  # calendar units: exact in days
            value, source, step = value.astype("datetime64[D]"), "D", 1
        if source not in _ATTOSECONDS:
            raise _Refused(f"numpy time unit {source!r} cannot be compared")
        return _count(int(value.astype(np.int64)) * step * _ATTOSECONDS[source], unit)
    if isinstance(value, dt.date):
        raise _Refused("a date is not a timestamp; pass a datetime or a pd.Timestamp")
    raise _Refused("a timestamp key takes a pd.Timestamp, a datetime or a np.datetime64")


def _count(attoseconds: int, unit: str) -> int:
    count, rest = divmod(attoseconds, _ATTOSECONDS[unit])
    if rest:
        raise _Refused(f"it is finer than the key column's unit ({unit}), so no key equals it")
    if not _INT64[0] <= count <= _INT64[1]:
        raise _Refused(f"it is outside the range of timestamp[{unit}]")
    return count


def _date(value: Any) -> int:
    if type(value) is dt.date:
        return value.toordinal() - _EPOCH_ORDINAL
    _refuse_missing(value)
    raise _Refused("a date key takes a datetime.date (not a datetime or a Timestamp)")


def _decimal(value: Any, typ: pa.DataType) -> str:
    import decimal

    _refuse_missing(value)
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer, decimal.Decimal)):
        raise _Refused("a decimal key takes a decimal.Decimal or an int")
    if isinstance(value, decimal.Decimal) and not value.is_finite():
        raise _Refused("an infinite decimal is not a key")
    try:
        array = pa.array([int(value) if isinstance(value, np.integer) else value], type=typ)
    except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
        raise _Refused(f"the key column cannot hold it exactly ({exc})") from exc
    return str(array.cast(pa.string())[0].as_py())


def upsert(
    store: Store,
    conn: sa.Connection,
    version_id: int,
    commit_no: int,
    table: pa.Table,
    keys: Sequence[str],
    event_time: str,
    feature_cols: Sequence[str],
) -> list[OnlineRow]:
    """Keep the latest row per key (by event time; a later commit wins a tie).

    Returns the rows offered (one per key), for :func:`after_commit` to copy
    to a shared online store.
    """
    if table.num_rows == 0:
        return []
    column = table.column(event_time)
    nanoseconds = pa.types.is_timestamp(column.type) and column.type.unit == "ns"
    if nanoseconds:
        # The online row keeps microseconds (what SQLite and Redis rows hold); the latest row is still
        # found at full precision, and its time is floored, so it never moves after a later one.
        exact = column.cast(pa.int64())
        column = pc.floor_temporal(column, unit="microsecond")
    times = column.cast(pa.timestamp("us", tz="UTC")).cast(pa.int64())
    if not nanoseconds:
        exact = times
    order = pc.sort_indices(
        pa.table({"t": exact, "i": pa.array(np.arange(table.num_rows, dtype=np.int64))}),
        sort_keys=[("t", "descending"), ("i", "descending")],
    )
    ordered = table.take(order)
    ordered_times_array = pc.take(times, order)
    # Keep the first (latest) row of each key in Arrow, so Python only sees one row per key.
    positions = pa.array(np.arange(ordered.num_rows, dtype=np.int64))
    firsts = (
        ordered.select(list(keys))
        .append_column("__pos", positions)
        .group_by(list(keys), use_threads=False)
        .aggregate([("__pos", "min")])
    )
    keep = pc.sort_indices(firsts["__pos_min"])
    latest = pc.take(firsts["__pos_min"], keep)
    ordered = ordered.take(latest)
    ordered_times = pc.take(ordered_times_array, latest).to_pylist()
    key_rows = list(zip(*[key_column_values(ordered.column(k), k) for k in keys], strict=True))
    encoded = encodable(ordered.select(list(feature_cols)))
    value_rows = list(zip(*[c.to_pylist() for c in encoded.columns], strict=True))
    seen: set[str] = set()
    rows = []
    for key, t, values in zip(key_rows, ordered_times, value_rows, strict=True):
        entity = entity_key(key)
        if entity in seen:
            continue
        seen.add(entity)
        rows.append(
            {
                "group_version_id": version_id,
                "entity_key": entity,
                "event_time_us": t,
                "commit_no": commit_no,
                "feature_values": json.dumps(values, default=str),
            }
        )
    records.upsert_online_rows(store.catalog, conn, rows)
    return [OnlineRow(r["entity_key"], r["event_time_us"], r["commit_no"], r["feature_values"]) for r in rows]


#: Online store backends by URL scheme: ``module:class`` of an :class:`OnlineStore` taking ``(store, url)``.
#: ``embedded`` (or no URL) is the catalog's own table.
BACKENDS = {
    "redis": "nbops.featurestore.online.redis:RedisOnlineStore",
    "rediss": "nbops.featurestore.online.redis:RedisOnlineStore",
    "unix": "nbops.featurestore.online.redis:RedisOnlineStore",
}


def reader_for(store: Store, url: str | None) -> OnlineStore:
    """The online store for ``url`` (else ``NBOPS_ONLINE_URL``): the catalog's table, or a backend of :data:`BACKENDS`."""
    import importlib

    if url is None:
        url = os.environ.get(ONLINE_URL_ENV, "")
    url = url.strip()
    if url in ("", "embedded"):
        from nbops.featurestore.online.catalog import CatalogOnlineStore

        return CatalogOnlineStore(store)
    backend = BACKENDS.get(url.split("://", 1)[0])
    if backend is not None:
        module, name = backend.split(":")
        online: OnlineStore = getattr(importlib.import_module(module), name)(store, url)
        return online
    from nbops.core.redact import redact_url

    raise InvalidInputError(
        f"unknown online store {redact_url(url)!r}: use 'embedded' (the catalog's own table) or a Redis URL "
        "such as 'redis://127.0.0.1:6379/0'"
    )


def after_commit(store: Store, group: str, version: _Version, commit_no: int, rows: Sequence[OnlineRow]) -> None:
    """Copy a committed registration's rows to a shared online store, if one is configured.

    The catalog commit already happened and stands: a failure here leaves the
    shared store behind, says so with an :class:`OnlineSyncWarning`, and the
    next registration of the group (or ``store.sync_online()``) catches up.
    """
    try:
        # Inside the try: a bad online URL must not turn a committed registration into an exception.
        reader = store.online_reader()
        if not reader.shared:
            return
        reader.push(group, version, commit_no, rows)
    except NbopsError as exc:  # the registration is durable; being behind is recoverable
        warnings.warn(
            f"{group}:{version.version}@{commit_no} is committed, but its online rows did not reach the shared "
            f"online store: {exc}. Online reads of {group}:{version.version} miss this commit until "
            "store.sync_online() (or the next registration of the group) succeeds",
            OnlineSyncWarning,
            stacklevel=4,
        )


def sync(store: Store) -> dict[str, int]:
    """Bring a shared online store up to the catalog; ``{"group:version": rows pushed}``."""
    reader = store.online_reader()
    if not reader.shared:
        return {}
    return dict(reader.sync_all())
