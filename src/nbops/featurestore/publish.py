"""Publish a feature group version as a Delta Lake table that any engine can read.

``nbops publish tx:2 --to /lake/tx --format delta`` (or
:meth:`nbops.store.Store.publish`) writes one Delta version per nbops
commit, through the ``deltalake`` package (``pip install "nbops[delta]"``):

- Delta version 0 is the empty table with the group version's columns;
- Delta version *k* holds exactly the rows of ``store.features(group, as_of=k)``
  (commit *k* is appended when it only added rows, merged on (keys, event
  time) when it replaced some, and, for key types a SQL join cannot compare
  exactly, written as the whole state);
- each Delta commit's metadata names its nbops commit (``nbops.ref``,
  ``nbops.digest``, ...), so ``DeltaTable(uri).history()`` tells which
  commit a version holds.

A later call publishes the commits made since, so it is idempotent (nothing
new: nothing written) and resumable after a kill (each Delta version is one
atomic log entry; the next call starts after the last one).  Before writing,
the table's history is checked against the catalog: a table that holds
another group or version, a version written by something else, or a commit
whose digest differs is refused, never extended.

Types: Delta has no unsigned integers, half floats, nanosecond times,
dictionaries, times of day or durations.  Columns are converted exactly
(``uint8`` to ``short``, ``float16`` to ``float``, nanoseconds to
microseconds, a dictionary to its values, ...) and a value that would change
(a ``uint64`` past the ``long`` range, a time with nanoseconds) is refused,
naming the column, before anything is written.  Naive timestamps become
Delta's ``timestamp_ntz``; zone-aware ones Delta's ``timestamp`` (UTC).

One publisher per table at a time: publishers of the same store take a lock
file under the store's ``locks/``; a concurrent write by anything else is
found in the history after the fact and refused.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import logging
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import pyarrow as pa

from nbops.core import _faults, audit
from nbops.errors import InvalidInputError, PublishError
from nbops.featurestore.groups import _commit_tables, _merge, _version_row, parse_group_ref

if TYPE_CHECKING:
    from nbops.store import Store

log = logging.getLogger(__name__)

#: The formats ``publish`` writes.
FORMATS = ("delta",)

#: Keys of the Delta commit metadata that nbops writes.
META_GROUP = "nbops.group"
META_VERSION = "nbops.version"
META_COMMIT = "nbops.commit"
META_DIGEST = "nbops.digest"
META_REF = "nbops.ref"

#: Unsigned integers and the signed type that holds every one of their values.
_WIDER_SIGNED = {
    pa.uint8(): pa.int16(),
    pa.uint16(): pa.int32(),
    pa.uint32(): pa.int64(),
    pa.uint64(): pa.int64(),  # values past 2**63 - 1 are refused by the safe cast
}
#: Delta's widest decimal.
_MAX_DECIMAL_PRECISION = 38


@dataclass(frozen=True)
class PublishReport:
    """What one ``publish`` call did: the table, and the commits it added (none when it was up to date)."""

    group: str
    version: int
    uri: str
    format: str
    published: tuple[int, ...]  # nbops commit numbers written by this call, oldest first
    latest: int  # the latest commit the table holds now (= its Delta version)

    def __str__(self) -> str:
        if not self.published:
            return f"{self.group}:{self.version} at {self.uri} is up to date (commit {self.latest})"
        first, last = self.published[0], self.published[-1]
        span = f"commit {first}" if first == last else f"commits {first}..{last}"
        return f"published {self.group}:{self.version} {span} to {self.uri} ({self.format} version {last})"


# -- types -------------------------------------------------------------------------------------
def delta_type(name: str, arrow_type: pa.DataType) -> pa.DataType:
    """The Arrow type that Delta stores ``arrow_type`` as, value for value; raise if it has none.

    >>> delta_type("n", pa.uint8())
    DataType(int16)
    """
    t = arrow_type
    if pa.types.is_dictionary(t):
        return delta_type(name, t.value_type)
    if t in _WIDER_SIGNED:
        return _WIDER_SIGNED[t]
    if pa.types.is_float16(t):
        return pa.float32()
    if pa.types.is_timestamp(t):
        return pa.timestamp("us", tz=t.tz)
    if pa.types.is_date64(t):
        return pa.date32()
    if pa.types.is_large_string(t):
        return pa.string()
    if pa.types.is_large_binary(t):
        return pa.binary()
    if pa.types.is_decimal(t):
        if t.precision > _MAX_DECIMAL_PRECISION:
            raise PublishError(f"column {name!r} is {t}; Delta decimals hold at most {_MAX_DECIMAL_PRECISION} digits")
        return pa.decimal128(t.precision, t.scale)
    if pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t):
        return pa.list_(pa.field(t.value_field.name, delta_type(name, t.value_type)))
    if pa.types.is_struct(t):
        return pa.struct([pa.field(f.name, delta_type(f"{name}.{f.name}", f.type)) for f in t])
    if pa.types.is_map(t):
        return pa.map_(delta_type(name, t.key_type), delta_type(name, t.item_type))
    if (
        pa.types.is_integer(t)
        or pa.types.is_floating(t)
        or pa.types.is_boolean(t)
        or pa.types.is_string(t)
        or pa.types.is_binary(t)
        or pa.types.is_date32(t)
    ):
        return t
    hint = "all its values are missing" if pa.types.is_null(t) else "cast it to a number or a string first"
    raise PublishError(f"column {name!r} has type {t}, which Delta Lake cannot store; {hint}")


def delta_schema(schema: pa.Schema) -> pa.Schema:
    """``schema`` with every column in the type :func:`delta_type` gives it (no metadata)."""
    return pa.schema([pa.field(f.name, delta_type(f.name, f.type)) for f in schema])


def to_delta(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """``table`` cast to ``schema`` (from :func:`delta_schema`), refusing any value the cast would change."""
    columns = []
    for field in schema:
        column = table.column(field.name)
        if pa.types.is_dictionary(column.type):
            column = column.cast(column.type.value_type)
        try:
            columns.append(column.cast(field.type, safe=True))
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as e:
            raise PublishError(
                f"column {field.name!r} ({table.schema.field(field.name).type}) cannot be stored as Delta "
                f"{field.type} without changing a value; Arrow says: {e}"
            ) from None
    return pa.Table.from_arrays(columns, schema=schema)


def _mergeable(t: pa.DataType) -> bool:
    """Whether a Delta MERGE compares keys of type ``t`` as nbops does (no NaN, no -0.0, no rounding)."""
    checks = (pa.types.is_integer, pa.types.is_string, pa.types.is_binary, pa.types.is_boolean, pa.types.is_date)
    return any(bool(check(t)) for check in (*checks, pa.types.is_timestamp, pa.types.is_decimal))


def _quoted(name: str) -> str:
    """A column name as a Delta SQL identifier (names are ``[A-Za-z_][A-Za-z0-9_-]*``; hyphens need quoting)."""
    return "`" + name.replace("`", "``") + "`"


# -- the table's history ---------------------------------------------------------------------
def _metadata(group: str, version: int, commit: int, digest: str | None) -> dict[str, str]:
    meta = {META_GROUP: group, META_VERSION: str(version), META_COMMIT: str(commit), META_REF: f"{group}:{version}"}
    if commit:
        meta[META_REF] = f"{group}:{version}@{commit}"
        meta[META_DIGEST] = digest or ""
    return meta


def _published(
    uri: str, group: str, version: int, digests: Mapping[int, str], storage_options: dict[str, str] | None
) -> int:
    """The latest nbops commit the table at ``uri`` holds (-1: no table yet), after checking its whole history."""
    from deltalake import DeltaTable

    if not DeltaTable.is_deltatable(uri, storage_options=storage_options):
        return -1
    table = DeltaTable(uri, storage_options=storage_options)
    history = sorted(table.history(), key=lambda h: int(h["version"]))
    latest = table.version()
    seen = [int(h["version"]) for h in history]
    if seen != list(range(len(seen))) or (seen and seen[-1] != latest):
        raise PublishError(
            f"the Delta table at {uri} does not show its whole history (versions {seen[:3]}...{seen[-1:]} of "
            f"{latest}); it was vacuumed or checkpointed by something else, so nbops cannot check what it holds. "
            "Publish to a new location"
        )
    for entry in history:
        delta_version = int(entry["version"])
        found = (entry.get(META_GROUP), entry.get(META_VERSION), entry.get(META_COMMIT))
        wanted = (group, str(version), str(delta_version))
        if found != wanted:
            if found[0] is None:
                raise PublishError(
                    f"the Delta table at {uri} has version {delta_version} ({entry.get('operation')}) that nbops "
                    "did not write; nbops extends only tables it wrote alone. Publish to a new location"
                )
            raise PublishError(
                f"the Delta table at {uri} holds {found[0]}:{found[1]} commit {found[2]} as version "
                f"{delta_version}, not {group}:{version} commit {delta_version}; publish each group version to "
                "its own location"
            )
        if delta_version and entry.get(META_DIGEST) != digests.get(delta_version):
            raise PublishError(
                f"version {delta_version} of the Delta table at {uri} holds commit {delta_version} with digest "
                f"{entry.get(META_DIGEST)}, but the store's commit {delta_version} has digest "
                f"{digests.get(delta_version)}: it was published from another store. Publish to a new location"
            )
    return latest


@contextlib.contextmanager
def _publish_lock(store: Store, uri: str) -> Iterator[None]:
    """One publisher of the store at a time per target (an exclusive ``flock``, freed when the process dies)."""
    folder = store.root / "locks"
    folder.mkdir(exist_ok=True)
    name = hashlib.sha256(uri.encode()).hexdigest()[:32]
    with open(folder / f"publish-{name}.lock", "a+b") as lock:
        try:
            fcntl.flock(lock.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise PublishError(f"another process is publishing to {uri}; try again when it has finished") from None
        try:
            yield
        finally:
            fcntl.flock(lock.fileno(), fcntl.LOCK_UN)


# -- publishing ---------------------------------------------------------------------------------
def publish(
    store: Store,
    group: str,
    to: str,
    format: str = "delta",
    storage_options: dict[str, str] | None = None,
) -> PublishReport:
    """Publish ``group`` (``"tx"``, ``"tx:2"``, or up to a commit: ``"tx:2@5"``) as a table at ``to``.

    See the module's documentation; ``storage_options`` go to ``deltalake`` (credentials, endpoints).
    """
    try:
        import deltalake  # noqa: F401
    except ImportError:
        raise PublishError('publishing needs the deltalake package: pip install "nbops[delta]"') from None
    if format not in FORMATS:
        raise InvalidInputError(f"format={format!r} is not supported; choose one of: {', '.join(FORMATS)}")
    if not isinstance(to, str) or not to.strip():
        raise InvalidInputError(f"to={to!r} must be a path or URI of the table")
    name, version, upto = parse_group_ref(group)
    with store.catalog.read() as conn:
        from nbops.core.repository import featurestore as records

        gv = _version_row(conn, name, version)
        rows = {int(r.commit_no): r for r in records.commit_rows(conn, gv.id)}
    if not rows:
        raise PublishError(f"{name}:{gv.version} has no commits to publish")
    last = upto if upto is not None else max(rows)
    if last not in rows:
        raise PublishError(f"{name}:{gv.version} has no commit {last}; its commits are 1..{max(rows)}")
    schema = delta_schema(gv.schema)  # refuses a type Delta cannot hold before anything is written
    digests = {k: str(r.digest) for k, r in rows.items()}

    with _publish_lock(store, to):
        done = _published(to, name, gv.version, digests, storage_options)
        if done > last:
            raise PublishError(
                f"the Delta table at {to} holds commits up to {done}, past the asked {name}:{gv.version}@{last}"
            )
        published = []
        for commit in range(max(done, 0) + 1, last + 1):
            mode, table = _prepare(store, gv, commit, rows[commit], schema)
            if done < 0:  # the empty version 0, once the first commit's values are known to fit
                _write(to, schema.empty_table(), "create", _metadata(name, gv.version, 0, None), storage_options)
                done = 0
            meta = _metadata(name, gv.version, commit, digests[commit])
            if mode == "merge":
                _merge_into(to, table, [*gv.keys, gv.event_time], meta, storage_options)
            else:
                _write(to, table, mode, meta, storage_options)
            _check_version(to, commit, int(rows[commit].total_rows), storage_options)
            published.append(commit)
            _faults.reached("between_published_commits")
    if published:
        audit.record_read(store, "feature_commit", f"{name}:{gv.version}@{last}")
        log.info("published %s:%s commits %s..%s to %s", name, gv.version, published[0], published[-1], to)
    return PublishReport(name, gv.version, to, format, tuple(published), last)


def _prepare(store: Store, gv: Any, commit: int, row: Any, schema: pa.Schema) -> tuple[str, pa.Table]:
    """How Delta version ``commit`` is written (append, merge or overwrite) and the rows, cast to ``schema``.

    Raises before anything is written if a value cannot be stored exactly.
    """
    with store.catalog.read() as conn:
        if not row.updated:  # only new (keys, event time): the state grows by exactly these rows
            [(_, rows, _)] = _commit_tables(store, conn, gv.id, commit, only=True)
            return "append", to_delta(rows, schema)
        if all(_mergeable(schema.field(k).type) for k in [*gv.keys, gv.event_time]):
            [(_, rows, _)] = _commit_tables(store, conn, gv.id, commit, only=True)
            return "merge", to_delta(rows, schema)
        # Keys a join may compare loosely (floats): the whole state, as nbops computes it.
        state, _ = _merge(_commit_tables(store, conn, gv.id, commit), None, gv.keys, gv.event_time)
        return "overwrite", to_delta(state, schema)


def _write(uri: str, table: pa.Table, mode: str, meta: dict[str, str], storage_options: dict[str, str] | None) -> None:
    """One Delta version: ``create`` (the table must not exist), ``append`` or ``overwrite``."""
    from deltalake import CommitProperties, write_deltalake

    commit = CommitProperties(custom_metadata=meta)
    if mode == "overwrite":
        write_deltalake(uri, table, mode="overwrite", storage_options=storage_options, commit_properties=commit)
    else:
        write_mode: Literal["error", "append"] = "error" if mode == "create" else "append"
        write_deltalake(uri, table, mode=write_mode, storage_options=storage_options, commit_properties=commit)


def _merge_into(
    uri: str, rows: pa.Table, on: list[str], meta: dict[str, str], storage_options: dict[str, str] | None
) -> None:
    from deltalake import CommitProperties, DeltaTable

    predicate = " AND ".join(f"t.{_quoted(c)} = s.{_quoted(c)}" for c in on)
    (
        DeltaTable(uri, storage_options=storage_options)
        .merge(
            rows,
            predicate=predicate,
            source_alias="s",
            target_alias="t",
            commit_properties=CommitProperties(custom_metadata=meta),
        )
        .when_matched_update_all()
        .when_not_matched_insert_all()
        .execute()
    )


def _check_version(uri: str, commit: int, total_rows: int, storage_options: dict[str, str] | None) -> None:
    """Refuse loudly if the version just written is not Delta version ``commit`` with ``total_rows`` rows."""
    from deltalake import DeltaTable

    table = DeltaTable(uri, storage_options=storage_options)
    if table.version() != commit:
        raise PublishError(
            f"the Delta table at {uri} is at version {table.version()} after nbops wrote commit {commit}: something "
            f"else wrote to it at the same time. Its versions past {commit - 1} cannot be trusted; publish to a "
            "new location"
        )
    stored = table.to_pyarrow_dataset().count_rows()
    if stored != total_rows:
        raise PublishError(
            f"version {commit} of the Delta table at {uri} has {stored:,} rows, but the store's commit {commit} "
            f"has {total_rows:,}; publish to a new location and report this"
        )


def history(uri: str, storage_options: dict[str, str] | None = None) -> list[dict[str, Any]]:
    """The nbops commit each version of the Delta table at ``uri`` holds, oldest first (from its commit metadata)."""
    from deltalake import DeltaTable

    entries = sorted(DeltaTable(uri, storage_options=storage_options).history(), key=lambda h: int(h["version"]))
    return [{"version": int(h["version"]), **{k: h.get(k) for k in (META_REF, META_DIGEST)}} for h in entries]


__all__ = ["FORMATS", "PublishReport", "delta_schema", "delta_type", "history", "publish", "to_delta"]
