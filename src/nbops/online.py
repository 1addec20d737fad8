"""Online serving: the latest feature row per key, for inference.

Groups registered with ``online=True`` keep one row per key in the catalog's
``online_features`` table, updated in the same transaction as the commit
that wrote them.  A row is replaced only by a row with an equal or later
event time, so late-arriving old data never hides a newer value.

Lookups go through :class:`OnlineReader`: on SQLite it uses its own
read-only connection and caches the resolved plan (versions, output names,
types) until the catalog's versions change, so a one-key lookup is one
indexed query plus building the frame.

A shared Redis can serve the same rows instead (``NBOPS_ONLINE_URL`` or
``nbops.open(..., online="redis://...")``, see :mod:`nbops.online_redis`):
the catalog's table stays the record, and each registration pushes its rows
to Redis after its catalog commit.
"""

from __future__ import annotations

import json
import os
import sqlite3
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import sqlalchemy as sa

from nbops import catalog as cat
from nbops.errors import InvalidInputError, NbopsError, OnlineSyncWarning

if TYPE_CHECKING:
    import pandas as pd

    from nbops.features import _Version
    from nbops.store import Store

_CHUNK = 500  # keys per IN (...) query

#: Where online rows are served from when ``nbops.open(online=...)`` is not given:
#: unset, empty or ``embedded`` for the catalog's own table, ``redis://...`` for Redis.
ONLINE_URL_ENV = "NBOPS_ONLINE_URL"


@dataclass(frozen=True)
class OnlineRow:
    """One key's latest row, as the catalog's online table holds it."""

    entity_key: str
    event_time_us: int
    commit_no: int
    feature_values: str  # JSON list, in feature order


def encodable(table: pa.Table) -> pa.Table:
    """Columns as JSON-friendly Arrow types (times as integers, categories as values)."""
    arrays = []
    for col in table.columns:
        typ = col.type
        if pa.types.is_dictionary(typ):
            col = col.cast(typ.value_type)
            typ = col.type
        if pa.types.is_timestamp(typ) or pa.types.is_date(typ) or pa.types.is_time(typ) or pa.types.is_duration(typ):
            col = col.cast(pa.int64())
        elif pa.types.is_decimal(typ):
            col = col.cast(pa.string())
        arrays.append(col)
    return pa.Table.from_arrays(arrays, names=table.column_names)


def entity_key(values: Iterable[Any]) -> str:
    """The canonical text of one key tuple (numpy scalars as Python values)."""
    return json.dumps([v.item() if hasattr(v, "item") else v for v in values], separators=(",", ":"))


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
    times = table.column(event_time).cast(pa.timestamp("us", tz="UTC")).cast(pa.int64())
    order = pc.sort_indices(
        pa.table({"t": times, "i": pa.array(np.arange(table.num_rows, dtype=np.int64))}),
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
    key_rows = list(zip(*[ordered.column(k).to_pylist() for k in keys], strict=True))
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
    if store.catalog.is_sqlite:
        from sqlalchemy.dialects.sqlite import insert as dialect_insert
    else:
        from sqlalchemy.dialects.postgresql import insert as dialect_insert  # type: ignore[assignment]
    stmt = dialect_insert(cat.online_features)
    stmt = stmt.on_conflict_do_update(
        index_elements=["group_version_id", "entity_key"],
        set_={
            "event_time_us": stmt.excluded.event_time_us,
            "commit_no": stmt.excluded.commit_no,
            "feature_values": stmt.excluded.feature_values,
        },
        where=stmt.excluded.event_time_us >= cat.online_features.c.event_time_us,
    )
    for start in range(0, len(rows), 20_000):
        conn.execute(stmt, rows[start : start + 20_000])
    return [
        OnlineRow(r["entity_key"], r["event_time_us"], r["commit_no"], r["feature_values"]) for r in rows
    ]


def reader_for(store: Store, url: str | None) -> OnlineReader:
    """The reader for ``url`` (else ``NBOPS_ONLINE_URL``): the catalog's table, or Redis."""
    if url is None:
        url = os.environ.get(ONLINE_URL_ENV, "")
    url = url.strip()
    if url in ("", "embedded"):
        return OnlineReader(store)
    if url.split("://", 1)[0] in ("redis", "rediss", "unix"):
        from nbops.online_redis import RedisOnlineReader

        return RedisOnlineReader(store, url)
    raise InvalidInputError(
        f"unknown online store {url!r}: use 'embedded' (the catalog's own table) or a Redis URL "
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


@dataclass(frozen=True)
class _GroupPlan:
    version: _Version
    group: str
    outputs: dict[str, str]  # feature -> output column
    positions: dict[str, int]  # feature -> index in the stored value list
    stored_types: dict[str, pa.DataType]  # feature -> JSON-friendly type
    types: dict[str, pa.DataType]  # feature -> the group's type


class OnlineReader:
    """Point lookups in the online table, with plans cached per feature list."""

    #: True when rows are served from outside the catalog and must be pushed there.
    shared = False

    def __init__(self, store: Store) -> None:
        self.store = store
        self._sqlite: sqlite3.Connection | None = None
        self._plans: dict[tuple[tuple[str, ...], frozenset[str]], tuple[Any, list[_GroupPlan]]] = {}

    def close(self) -> None:
        if self._sqlite is not None:
            self._sqlite.close()
            self._sqlite = None

    def _connection(self) -> sqlite3.Connection:
        if self._sqlite is None:
            path = self.store.root / "catalog.db"
            self._sqlite = sqlite3.connect(f"file:{path}?mode=ro", uri=True, check_same_thread=False)
            self._sqlite.execute("PRAGMA busy_timeout = 60000")
        return self._sqlite

    def _fingerprint(self) -> Any:
        """Changes whenever a version is added or turned online (None: do not cache)."""
        if not self.store.catalog.is_sqlite:
            return None
        return self._connection().execute(
            "SELECT count(*), max(id), sum(online) FROM feature_group_versions"
        ).fetchone()

    def plan(self, refs: Sequence[str], key_names: frozenset[str]) -> list[_GroupPlan]:
        from nbops.features import FeatureRef, plan_outputs

        cache_key = (tuple(refs), key_names)
        fingerprint = self._fingerprint()
        cached = self._plans.get(cache_key)
        if cached is not None and fingerprint is not None and cached[0] == fingerprint:
            return cached[1]
        plans = []
        for gv, group, outputs in plan_outputs(self.store, [FeatureRef.parse(r) for r in refs], taken=set(key_names)):
            if not gv.online:
                raise InvalidInputError(
                    f"{group}:{gv.version} is not online; register it with online=True to serve its features"
                )
            missing = [k for k in gv.keys if k not in key_names]
            if missing:
                raise InvalidInputError(f"{group} is keyed by {gv.keys}; pass values for {missing} in keys=")
            feature_cols = [c for c in gv.schema.names if c not in gv.keys and c != gv.event_time]
            empty = pa.table({c: pa.array([], gv.schema.field(c).type) for c in feature_cols})
            stored = encodable(empty).schema
            plans.append(
                _GroupPlan(
                    version=gv,
                    group=group,
                    outputs=outputs,
                    positions={c: i for i, c in enumerate(feature_cols)},
                    stored_types={c: stored.field(c).type for c in feature_cols},
                    types={c: gv.schema.field(c).type for c in feature_cols},
                )
            )
        if fingerprint is not None:
            self._plans[cache_key] = (fingerprint, plans)
        return plans

    def describe(self) -> str:
        return "the catalog's online table"

    def push(self, group: str, version: _Version, commit_no: int, rows: Sequence[OnlineRow]) -> None:
        """Nothing to do: the catalog's table was written in the commit's own transaction."""

    def sync_all(self) -> Iterable[tuple[str, int]]:
        return ()

    def fetch(self, plan: _GroupPlan, entity_keys: Sequence[str]) -> dict[str, str]:
        """The stored value lists (JSON) of the keys present, by entity key."""
        return self.lookup(plan.version.id, entity_keys)

    def lookup(self, version_id: int, entity_keys: Sequence[str]) -> dict[str, str]:
        found: dict[str, str] = {}
        if self.store.catalog.is_sqlite:
            db = self._connection()
            for start in range(0, len(entity_keys), _CHUNK):
                chunk = entity_keys[start : start + _CHUNK]
                marks = ",".join("?" * len(chunk))
                found.update(
                    db.execute(
                        "SELECT entity_key, feature_values FROM online_features "
                        f"WHERE group_version_id = ? AND entity_key IN ({marks})",
                        (version_id, *chunk),
                    ).fetchall()
                )
            return found
        o = cat.online_features
        with self.store.catalog.read() as conn:
            for start in range(0, len(entity_keys), _CHUNK):
                chunk = list(entity_keys[start : start + _CHUNK])
                found.update(
                    conn.execute(
                        sa.select(o.c.entity_key, o.c.feature_values).where(
                            o.c.group_version_id == version_id, o.c.entity_key.in_(chunk)
                        )
                    ).all()
                )
        return found


def _to_series(array: pa.Array) -> pd.Series:
    """An Arrow column as pandas; integers and bools with missing values become nullable."""
    import pandas as pd

    if array.null_count and (pa.types.is_integer(array.type) or pa.types.is_boolean(array.type)):
        return pd.Series(array.to_pandas(types_mapper=pd.ArrowDtype).astype(_nullable(array.type)))
    return array.to_pandas()


def _nullable(typ: pa.DataType) -> str:
    return "boolean" if pa.types.is_boolean(typ) else str(typ).replace("int", "Int").replace("uInt", "UInt")


def online_features(store: Store, refs: Sequence[str], keys: Mapping[str, Sequence[Any]]) -> pd.DataFrame:
    import pandas as pd

    if isinstance(refs, str):
        refs = [refs]
    if not isinstance(keys, Mapping) or not keys:
        raise InvalidInputError("keys must be a dict of key column -> values, e.g. keys={'cc_num': [1, 2]}")
    key_lists = {
        k: list(v) if not isinstance(v, (str, bytes)) and hasattr(v, "__iter__") else [v] for k, v in keys.items()
    }
    lengths = {k: len(v) for k, v in key_lists.items()}
    if len(set(lengths.values())) != 1:
        raise InvalidInputError(f"every key column needs the same number of values; got {lengths}")
    reader: OnlineReader = store.online_reader()
    columns: dict[str, Any] = dict(key_lists)
    for plan in reader.plan(list(refs), frozenset(key_lists)):
        key_tuples = zip(*[key_lists[k] for k in plan.version.keys], strict=True)
        entity_keys = [entity_key(values) for values in key_tuples]
        found = reader.fetch(plan, entity_keys)
        rows = [json.loads(found[e]) if e in found else None for e in entity_keys]
        for feature, output in plan.outputs.items():
            i = plan.positions[feature]
            values = [r[i] if r is not None else None for r in rows]
            array = pa.array(values, type=plan.stored_types[feature])
            if array.type != plan.types[feature]:
                array = array.cast(plan.types[feature])
            columns[output] = _to_series(array)
    for name, values in columns.items():
        if isinstance(values, pd.Series):
            values.index = pd.RangeIndex(len(values))
    return pd.DataFrame(columns)
