"""Feature groups: versioned schemas, data commits, time travel, online rows.

A feature group has **schema versions**; inside a version, every
``register_features`` call adds a **data commit** that upserts rows on
(keys, event time).  Reading a version as of a commit (or a time) gives the
rows that were visible then.

Storage: merge-on-read commits in the store's own objects
---------------------------------------------------------
Each commit stores only the rows it wrote, column by column, as
content-addressed Parquet objects (the same machinery as snapshots, see
:mod:`nbops.core.columns`), and its catalog row is the commit point.  A read as of
commit *k* concatenates commits 1..k and keeps, for each (keys, event time),
the row of the latest commit.

A commit costs what it writes, not what the version holds: it records the
span of event times it wrote, and to count the rows it replaces (and to find
that nothing changed) it reads only the earlier commits whose span meets its
own, and of those only the Parquet row groups whose time statistics do, each
page checked against its CRC-32 (:func:`nbops.core.columns.read_rows_between`).
The statistics of the group as of a commit need every row, so a commit does
not compute them: the first caller of ``statistics`` (a notebook showing the
commit, the ``%features`` panel, ``store.feature_statistics``) does, and the
catalog keeps them.

We evaluated the ``deltalake`` package (Delta Lake through delta-rs), which
offers commits, time travel and MERGE, and which Spark, Trino and DuckDB can
read.  We chose our own commits because:

- **one commit point.** A registration must make its data, validation
  report, lineage and online rows visible together.  With Delta
  the ``_delta_log`` commit and the catalog transaction are two commit
  points; a crash between them leaves a Delta version the catalog does not
  know (or the reverse), and every reader must reconcile them.
- **the same safety story everywhere.** Objects are immutable and published
  with ``os.link`` (no overwrite), so the reliability tests of snapshots cover
  features too; on object storage the catalog (SQLite or PostgreSQL) stays the
  only commit point, where Delta needs a put-if-absent log or a locking
  provider (delta-io/delta#7567, delta-rs#1868).
- **content addressing.** Re-registering unchanged columns writes no bytes,
  and a commit's digest is comparable with snapshot digests (used by
  ``export --verify``).
- **DuckDB cannot read Delta offline**: its ``delta`` extension is a
  download, which this product must not need.

Other engines read the features through a published copy:
:mod:`nbops.featurestore.publish` writes a Delta table with one Delta version
per commit, after the fact, for Spark, Trino, Polars or DuckDB.
"""

from __future__ import annotations

import datetime as dt
import html
import json
import re
import socket
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from nbops.core import _faults, lineage
from nbops.core import catalog as cat
from nbops.core.columns import (
    arrow_from_pandas,
    author,
    object_rows,
    publish_columns,
    read_rows_between,
    read_table,
    ticks,
)
from nbops.core.hashing import column_digest, combine_digest
from nbops.core.names import validate_name
from nbops.core.refs import _table_html
from nbops.core.repository import featurestore as records
from nbops.core.repository import rows_frame
from nbops.errors import (
    CorruptDataError,
    DuplicateKeysError,
    InvalidInputError,
    NbopsError,
    NotFoundError,
    ReadOnlyError,
    SchemaChangeError,
    StoreError,
)
from nbops.featurestore import online as online_store

if TYPE_CHECKING:
    import pandas as pd
    import sqlalchemy as sa

    from nbops.store import Store

_KIND = "feature group"
#: The engines ``training_data`` runs point-in-time joins on.
ENGINES = ("duckdb", "spark")
_FEATURE_REF = re.compile(r"^(?P<group>[^.:@]+)(?::(?P<version>\d+))?\.(?P<feature>[^.]+)$")
_GROUP_REF = re.compile(r"^(?P<group>[^.:@]+)(?::(?P<version>\d+))?(?:@(?P<commit>\d+))?$")


# -- references --------------------------------------------------------------------
@dataclass(frozen=True)
class FeatureRef:
    """``"group.feature"``, ``"group:2.feature"`` or ``"group.*"``, parsed."""

    group: str
    version: int | None
    feature: str  # "*" for every feature

    @classmethod
    def parse(cls, text: str) -> FeatureRef:
        """Parse ``text``; :class:`InvalidInputError` naming the accepted forms when it is not a reference."""
        m = _FEATURE_REF.match(text) if isinstance(text, str) else None
        if m is None:
            raise InvalidInputError(
                f"{text!r} is not a feature reference; write 'group.feature', 'group:2.feature' or 'group.*'"
            )
        validate_name(m["group"], _KIND)
        if m["feature"] != "*":
            validate_name(m["feature"], "feature")
        return cls(m["group"], int(m["version"]) if m["version"] else None, m["feature"])


def parse_group_ref(text: str) -> tuple[str, int | None, int | None]:
    """``"tx"``, ``"tx:2"``, ``"tx@5"`` or ``"tx:2@5"`` as (group, version, commit)."""
    m = _GROUP_REF.match(text) if isinstance(text, str) else None
    if m is None:
        raise InvalidInputError(f"{text!r} is not a feature group reference; write 'group', 'group:2' or 'group:2@5'")
    validate_name(m["group"], _KIND)
    return (
        m["group"],
        int(m["version"]) if m["version"] else None,
        int(m["commit"]) if m["commit"] else None,
    )


@dataclass(frozen=True)
class FeatureGroupRef:
    """One data commit of a feature group version: what ``register_features`` returns."""

    group: str
    version: int
    commit: int
    keys: tuple[str, ...]
    event_time: str
    features: tuple[str, ...]
    rows: int  # rows this commit wrote
    inserted: int  # of which new (keys, event time)
    updated: int  # of which replaced an earlier row
    total_rows: int  # rows visible as of this commit
    digest: str
    online: bool
    created: dt.datetime
    validation: dict[str, Any] | None = field(default=None, repr=False)
    bytes_written: int = 0
    #: True when every row was already stored as it is: no commit was made, and
    #: ``commit`` is the existing commit that holds the data.
    unchanged: bool = False
    _statistics: dict[str, Any] | None = field(default=None, repr=False, compare=False)
    _load_statistics: Callable[[], dict[str, Any]] | None = field(default=None, repr=False, compare=False)

    @property
    def statistics(self) -> dict[str, Any]:
        """Statistics of each feature over the group as of this commit (see :mod:`nbops.featurestore.stats`).

        A commit does not compute them (that would read the group's whole
        history): the first to ask does, and the catalog keeps them.
        """
        if self._statistics is None:
            loaded = self._load_statistics() if self._load_statistics is not None else {}
            object.__setattr__(self, "_statistics", loaded)
            return loaded
        return self._statistics

    @property
    def ref(self) -> str:
        """``group:version@commit``, the reference that loads exactly this commit."""
        return f"{self.group}:{self.version}@{self.commit}"

    def __str__(self) -> str:
        return self.ref

    def summary(self) -> str:
        """One line: the commit, its rows (new, updated), the rows in all, checks passed; or that nothing changed."""
        checks = ""
        if self.validation:
            results = self.validation.get("results", [])
            checks = f"; {len(results)} expectations passed"
        online = ", online" if self.online else ""
        if self.unchanged:
            return (
                f"{self.group} version {self.version} unchanged: its {self.rows:,} rows are already stored as of "
                f"commit {self.commit} ({self.total_rows:,} rows in all{online}); no commit was made{checks}"
            )
        return (
            f"{self.group} version {self.version} commit {self.commit}: {self.rows:,} rows "
            f"({self.inserted:,} new, {self.updated:,} updated), {self.total_rows:,} in all{online}{checks}"
        )

    def statistics_frame(self) -> pd.DataFrame:
        """The statistics computed at this commit, one row per feature."""
        from nbops.featurestore.stats import format_statistics

        return format_statistics(self.statistics)

    def _repr_pretty_(self, p: Any, cycle: bool) -> None:
        p.text(f"<FeatureGroupRef {self.summary()}>")

    def _repr_html_(self) -> str:
        rows: list[tuple[str, object]] = [
            ("version", self.version),
            ("commit", f"{self.commit} (unchanged: no commit was made)" if self.unchanged else self.commit),
            ("keys", ", ".join(self.keys)),
            ("event time", self.event_time),
            ("rows", f"{self.rows:,} ({self.inserted:,} new, {self.updated:,} updated); {self.total_rows:,} in all"),
            ("online", "yes" if self.online else "no"),
            ("digest", self.digest),
        ]
        if self.validation is not None:
            n = len(self.validation.get("results", []))
            rows.append(("validation", f"{n} expectations passed"))
        title = f"feature group {self.ref}" + (" unchanged" if self.unchanged else "")
        head = _table_html(title, rows)
        try:
            statistics = self.statistics
        except NbopsError as exc:  # e.g. the store was closed since: show the commit all the same
            return f"{head}<p>statistics unavailable: {html.escape(str(exc))}</p>"
        if not statistics:
            return head
        # pandas escapes cell text in to_html.
        stats = self.statistics_frame().to_html(float_format=lambda v: f"{v:,.4g}", border=0)
        return f"{head}<details open><summary>statistics</summary>{stats}</details>"


# -- writing -------------------------------------------------------------------------
def features_to_arrow(data: object, exact: bool = True) -> pa.Table:
    """A feature frame as Arrow, without its index (keys belong in columns).

    With ``exact`` (for writes), a frame whose columns would not load back
    equal through ``features()`` is refused here, before anything is written
    (see :mod:`nbops.core.roundtrip`); a read-only use such as comparing a frame
    with stored features can pass ``exact=False``.
    """
    from nbops.core.roundtrip import check_arrow_types, check_frame, check_labels, conversion_error

    if isinstance(data, pa.Table):
        if exact:
            check_arrow_types(data)
        return lineage.without_provenance(data)
    import pandas as pd

    if not isinstance(data, pd.DataFrame):
        raise InvalidInputError(f"features need a pandas DataFrame or a pyarrow Table, not {type(data).__name__}")
    duplicated = data.columns[data.columns.duplicated()].tolist()
    if duplicated:
        raise InvalidInputError(f"column names must be unique; repeated: {', '.join(map(str, duplicated))}")
    if exact:
        check_labels(data, keep_index=False)
    try:
        table = arrow_from_pandas(data, preserve_index=False)
    except (pa.ArrowException, TypeError, ValueError, OverflowError) as exc:
        raise InvalidInputError(
            f"this DataFrame cannot be stored as features: {conversion_error(data, exc, False)}. Give each column "
            "one type and try again"
        ) from exc
    if exact:
        # Compare with what features() gives: read_group_table rewrites the pandas metadata of what it reads.
        check_frame(
            data,
            table,
            keep_index=False,
            as_read=lambda t: t.replace_schema_metadata(_read_back_metadata([_Commit(1, t, 0)], t)),
        )
    return lineage.without_provenance(table)


def _core_schema(schema: pa.Schema) -> pa.Schema:
    return pa.schema([pa.field(f.name, f.type) for f in schema])


def _check_frame(table: pa.Table, keys: Sequence[str], event_time: str) -> None:
    names = table.column_names
    for col in [*keys, event_time]:
        if col not in names:
            raise InvalidInputError(f"column {col!r} is not in the frame; its columns are: {', '.join(names)}")
    if not pa.types.is_timestamp(table.schema.field(event_time).type):
        raise InvalidInputError(
            f"event-time column {event_time!r} has type {table.schema.field(event_time).type}; it must be a "
            f"timestamp (e.g. df[{event_time!r}] = pd.to_datetime(df[{event_time!r}]))"
        )
    if event_time in keys:
        raise InvalidInputError(f"{event_time!r} cannot be both a key and the event time")
    if len(names) == len(keys) + 1:
        raise InvalidInputError("the frame has keys and an event time but no feature columns")
    for col in [*keys, event_time]:
        nulls = table.column(col).null_count
        if nulls:
            rows = pc.indices_nonzero(pc.is_null(table.column(col))).to_pylist()[:5]
            raise InvalidInputError(
                f"column {col!r} has {nulls} missing values (rows {rows}); keys and event time must be set"
            )


def _check_duplicates(table: pa.Table, keys: Sequence[str], event_time: str) -> None:
    cols = [*keys, event_time]
    counts = table.select(cols).group_by(cols).aggregate([([], "count_all")])
    dups = counts.filter(pc.greater(counts["count_all"], 1))
    if dups.num_rows:
        examples = dups.slice(0, 5).to_pylist()
        shown = "; ".join(
            ", ".join(f"{k}={_show(row[k])}" for k in cols) + f" ({row['count_all']} rows)" for row in examples
        )
        raise DuplicateKeysError(
            f"{dups.num_rows} (keys, event time) pairs appear more than once in this insert, e.g. {shown}; "
            "keep one row per key and time (e.g. df.drop_duplicates(subset=[...], keep='last'))"
        )


def _show(value: object) -> str:
    return repr(value) if isinstance(value, str) else str(value)


def _schema_changes(old: pa.Schema, new: pa.Schema) -> list[str]:
    old_types = {f.name: f.type for f in old}
    new_types = {f.name: f.type for f in new}
    changes = [
        f"{c}: {old_types[c]} -> {new_types[c]}" for c in old_types if c in new_types and old_types[c] != new_types[c]
    ]
    changes += [f"{c}: removed (was {old_types[c]})" for c in old_types if c not in new_types]
    changes += [f"{c}: added ({new_types[c]})" for c in new_types if c not in old_types]
    return changes


def _conform(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """Reorder columns as the version has them (the same set and types is required)."""
    return table.select(schema.names) if table.column_names != schema.names else table


def _split_expectations(expectations: object) -> tuple[list[Any] | None, object | None]:
    """Declarative rules and an optional pandera schema from what the user passed."""
    if expectations is None:
        return None, None
    items = list(expectations) if isinstance(expectations, (list, tuple)) else [expectations]
    rules, pandera_schema = [], None
    for item in items:
        if type(item).__module__.split(".")[0] == "pandera":
            pandera_schema = item
        else:
            rules.append(item)
    return rules, pandera_schema


def register_features(
    store: Store,
    data: object,
    group: str,
    keys: str | Sequence[str],
    event_time: str,
    description: str | None = None,
    online: bool | None = None,
    expectations: object = None,
    version: int | None = None,
) -> FeatureGroupRef:
    """Add a data commit to a feature group (see :meth:`nbops.store.Store.register_features`).

    Its lineage parents are the reads of the cell (or since the last write) and
    what the frame was derived from; afterwards the frame names the commit it
    is in (or the unchanged commit that holds its rows), so a frame derived from
    it, and a run that uses one, reach the commit.
    """
    from nbops.featurestore.spark import is_spark_frame

    if is_spark_frame(data):
        return _register_spark_features(
            store, data, group, keys, event_time, description, online, expectations, version
        )
    ref = _register_features(store, data, group, keys, event_time, description, online, expectations, version)
    lineage.mark_written(data, store.root, "feature_commit", f"{ref.group}:{ref.version}@{ref.commit}")
    return ref


def _checked_call(group: str, keys: str | Sequence[str], version: int | None) -> list[str]:
    """The key columns of a ``register_features`` call, after checking its group name, keys and version."""
    validate_name(group, _KIND)
    key_list = [keys] if isinstance(keys, str) else list(keys)
    if not key_list:
        raise InvalidInputError("a feature group needs at least one key column, e.g. keys=['cc_num']")
    if version is not None and (not isinstance(version, int) or version < 1):
        raise InvalidInputError(f"version must be a positive int, not {version!r}")
    return key_list


def _register_features(
    store: Store,
    data: object,
    group: str,
    keys: str | Sequence[str],
    event_time: str,
    description: str | None,
    online: bool | None,
    expectations: object,
    version: int | None,
) -> FeatureGroupRef:
    from nbops.featurestore import expectations as expect

    key_list = _checked_call(group, keys, version)
    table = features_to_arrow(data)
    _check_frame(table, key_list, event_time)
    _check_duplicates(table, key_list, event_time)
    for name in table.column_names:
        validate_name(name, "feature")
    core = _core_schema(table.schema)

    rules, pandera_schema = _split_expectations(expectations)
    rules_json = expect.expectations_to_json(rules) if rules is not None else None

    # Read-only checks first, so a bad call fails before anything is written.
    target = _target_version(store, group, version, key_list, event_time, core)
    if online or (target is not None and target.online):  # before anything is written, not in the commit
        online_store.check_servable_keys(table.schema, key_list)
    if target is not None:
        table = _conform(table, target.schema)
        stored_rules = target.expectations_json
    else:
        stored_rules = None
    active_rules = rules if rules is not None else (expect.expectations_from_json(stored_rules) if stored_rules else [])
    report = None
    if active_rules or pandera_schema is not None:
        report = expect.validate(table, active_rules, pandera_schema=pandera_schema)
        report.raise_if_failed()

    digests = [column_digest(c) for c in table.columns]
    digest = combine_digest(table.schema, digests)
    feature_cols = tuple(c for c in table.column_names if c not in key_list and c != event_time)
    if target is not None and not _changes_version(target, online, description, rules_json):
        latest = _latest_commit_row(store, target.id)
        if latest is not None and latest.digest == digest:  # the same rows as the latest commit wrote
            return _unchanged_ref(store, group, target, key_list, event_time, feature_cols, table, latest, report)
    bytes_written = publish_columns(store, table, digests)
    now = cat.utcnow()
    reads = store.take_reads()
    derived_from = lineage.frame_parents(store.root, data)

    # Writers of this group run one at a time: its next version and commit numbers are this writer's alone.
    with store.catalog.write(("feature_group", group)) as conn:
        group_id = records.get_or_create_group(store.catalog, conn, group, now)
        gv = _version_for_write(
            conn,
            store,
            group,
            group_id,
            version,
            key_list,
            event_time,
            table.schema,
            core,
            online,
            description,
            rules_json,
            now,
        )
        latest = _latest_commit_row(store, gv.id, conn)
        commit_no = (latest.commit_no if latest is not None else 0) + 1
        # Only the history that shares event times with this commit can hold its (keys, time) pairs.
        window = _TimeWindow.of(table, event_time)
        updated = _replaced(store, conn, gv, table, window)
        total_rows = (latest.total_rows if latest is not None else 0) + table.num_rows - updated
        if (
            latest is not None
            and not gv.changed
            and updated == table.num_rows
            and _same_state(store, conn, gv, latest, table, window)
        ):
            # Every row is stored already as it is (e.g. a batch registered again): no commit.
            # The objects just published belong to no commit; `nbops gc` removes them.
            from nbops.core import session

            for kind, ref in reads:
                session.note_read(store.root, kind, ref)  # still the reads of the next write
            return _unchanged_ref(store, group, gv, key_list, event_time, feature_cols, table, latest, report)

        context = {**store.context, "reads": [f"{k}:{r}" for k, r in reads]}
        store.catalog.insert_ignore(conn, cat.objects, object_rows(store, table, digests, now))
        records.insert_commit(
            conn,
            gv.id,
            commit_no,
            digest,
            table,
            digests,
            updated,
            total_rows,
            window.bounds_us if window is not None else None,
            report.to_dict() if report is not None else None,
            context,
            bytes_written,
            author(),
            socket.gethostname(),
            now,
        )
        online_rows: list[online_store.OnlineRow] = []
        if gv.online:
            # A version turned online by this call is backfilled from its whole state.
            source = _state(store, conn, gv, None) if gv.newly_online else table
            online_rows = online_store.upsert(
                store, conn, gv.id, commit_no, source, key_list, event_time, list(feature_cols)
            )
        child = ("feature_commit", f"{group}:{gv.version}@{commit_no}")
        lineage.add_edges(store.catalog, conn, child, [*reads, *derived_from, *lineage.made_by(store.context)], now)
        _faults.reached("before_catalog_commit")
    _after_commit(store, group, gv, commit_no, online_rows, child)
    return FeatureGroupRef(
        group=group,
        version=gv.version,
        commit=commit_no,
        keys=tuple(key_list),
        event_time=event_time,
        features=feature_cols,
        rows=table.num_rows,
        inserted=table.num_rows - updated,
        updated=updated,
        total_rows=total_rows,
        digest=digest,
        online=gv.online,
        created=cat.as_utc(now),
        validation=report.to_dict() if report is not None else None,
        bytes_written=bytes_written,
        _load_statistics=_statistics_loader(store, group, gv.version, commit_no),
    )


def _after_commit(
    store: Store,
    group: str,
    gv: _Version,
    commit_no: int,
    online_rows: list[online_store.OnlineRow],
    child: tuple[str, str],
) -> None:
    """What follows a commit's catalog transaction: a shared online store (Redis), which follows the
    catalog and never precedes it, and the write the next read of this process names as its parent."""
    _faults.reached("after_catalog_commit")
    if gv.online:
        online_store.after_commit(store, group, gv, commit_no, online_rows)
    store.record_write(*child)


def _register_spark_features(
    store: Store,
    data: Any,
    group: str,
    keys: str | Sequence[str],
    event_time: str,
    description: str | None,
    online: bool | None,
    expectations: object,
    version: int | None,
) -> FeatureGroupRef:
    """A commit from a Spark DataFrame, written by the executors (see :mod:`nbops.featurestore.spark_commit`)."""
    from nbops.featurestore import spark_commit as sc

    key_list = _checked_call(group, keys, version)
    with store.catalog.read() as conn:
        existing = _versions(conn, group)
    nearest = next((v for v in existing if v.version == version), None) if version else None
    if version is None and existing:
        nearest = existing[-1]
    schema = sc.conform(sc.arrow_schema(data), nearest.schema if nearest is not None else None)
    _check_frame(schema.empty_table(), key_list, event_time)
    for name in schema.names:
        validate_name(name, "feature")
    from nbops.core.roundtrip import check_arrow_types

    check_arrow_types(schema.empty_table())
    core = _core_schema(schema)
    target = _target_version(store, group, version, key_list, event_time, core)
    from nbops.featurestore import expectations as expect

    rules, pandera_schema = _split_expectations(expectations)
    if pandera_schema is not None:
        raise InvalidInputError("a pandera schema checks pandas frames; give a Spark frame nbops.expect rules")
    rules_json = expect.expectations_to_json(rules) if rules is not None else None
    stored_rules = target.expectations_json if target is not None else None
    active_rules = rules if rules is not None else (expect.expectations_from_json(stored_rules) if stored_rules else [])
    if online or (target is not None and target.online):
        online_store.check_servable_keys(schema, key_list)
    if target is not None:
        data = data.select(*[f"`{n}`" for n in target.schema.names])
        schema = pa.schema([schema.field(n) for n in target.schema.names])
    feature_cols = tuple(c for c in schema.names if c not in key_list and c != event_time)
    spec = sc.executor_objects(store.objects)
    frame, unpersist = sc.persisted(data)
    try:
        sc.check_frame(frame, schema, key_list, event_time)
        report = sc.check_expectations(frame, active_rules).raise_if_failed() if active_rules else None
        sc.probe(frame, spec)
        blocks = sc.write_blocks(frame, schema, event_time, spec)
        if not blocks:  # no rows: one empty block, so that the commit lists its columns
            empty = schema.empty_table()
            digests = [column_digest(c) for c in empty.columns]
            written = publish_columns(store, empty, digests)
            sizes = [store.objects.size(d) for d in digests]
            blocks = [sc.Block(0, 0, digests, sizes, written, None, None)]
        flat = [d for b in blocks for d in b.digests]
        digest = combine_digest(schema, flat)
        rows = sum(b.rows for b in blocks)
        spans = [(b.low_us, b.high_us) for b in blocks if b.low_us is not None and b.high_us is not None]
        bounds = (min(lo for lo, _ in spans), max(hi for _, hi in spans)) if spans else None
        now = cat.utcnow()
        reads = store.take_reads()
        with store.catalog.write(("feature_group", group)) as conn:
            group_id = records.get_or_create_group(store.catalog, conn, group, now)
            gv = _version_for_write(
                conn,
                store,
                group,
                group_id,
                version,
                key_list,
                event_time,
                schema,
                core,
                online,
                description,
                rules_json,
                now,
            )
            latest = _latest_commit_row(store, gv.id, conn)
            commit_no = (latest.commit_no if latest is not None else 0) + 1
            updated = 0
            if bounds is not None:
                time_type = schema.field(event_time).type
                window = _TimeWindow(
                    pa.scalar(bounds[0], pa.timestamp("us", time_type.tz)).cast(time_type),
                    pa.scalar(bounds[1], pa.timestamp("us", time_type.tz)).cast(time_type),
                    bounds,
                )
                pair = [*key_list, event_time]
                history = _history_between(store, conn, gv, window, pair)
                if history:
                    updated = sc.replaced(frame, _merge(history, None, key_list, event_time)[0], pair)
            total_rows = (latest.total_rows if latest is not None else 0) + rows - updated
            # gc deletes under this same write lock: what exists now stays until the commit. An object
            # it removed since the executors wrote it cannot be written again from here (the rows
            # never came to the driver): refuse, before the commit refers to it.
            gone = [d for d in dict.fromkeys(flat) if not store.objects.exists(d)]
            if gone:
                raise StoreError(
                    f"{len(gone)} objects the executors wrote are gone (removed by a concurrent `nbops gc`?), "
                    f"e.g. {store.objects.location(gone[0])}; nothing was committed. Register the frame again"
                )
            store.catalog.insert_ignore(
                conn,
                cat.objects,
                [
                    {"digest": d, "rows": b.rows, "bytes": size, "created": now}
                    for b in blocks
                    for d, size in zip(b.digests, b.sizes, strict=True)
                ],
            )
            commit_id = records.insert_commit(
                conn,
                gv.id,
                commit_no,
                digest,
                schema.empty_table(),
                [],
                updated,
                total_rows,
                bounds,
                report.to_dict() if report is not None else None,
                {**store.context, "reads": [f"{k}:{r}" for k, r in reads], "engine": "spark"},
                sum(b.written for b in blocks),
                author(),
                socket.gethostname(),
                now,
                rows=rows,
                columns=(list(schema.names) * len(blocks), flat),
            )
            del commit_id
            online_rows: list[online_store.OnlineRow] = []
            if gv.online:
                source = (
                    _state(store, conn, gv, None)
                    if gv.newly_online
                    else sc.latest_per_key(frame, key_list, event_time, schema)
                )
                online_rows = online_store.upsert(
                    store, conn, gv.id, commit_no, source, key_list, event_time, list(feature_cols)
                )
            child = ("feature_commit", f"{group}:{gv.version}@{commit_no}")
            lineage.add_edges(store.catalog, conn, child, [*reads, *lineage.made_by(store.context)], now)
            _faults.reached("before_catalog_commit")
    finally:
        unpersist()
    _after_commit(store, group, gv, commit_no, online_rows, child)
    return FeatureGroupRef(
        group=group,
        version=gv.version,
        commit=commit_no,
        keys=tuple(key_list),
        event_time=event_time,
        features=feature_cols,
        rows=rows,
        inserted=rows - updated,
        updated=updated,
        total_rows=total_rows,
        digest=digest,
        online=gv.online,
        created=cat.as_utc(now),
        validation=report.to_dict() if report is not None else None,
        bytes_written=sum(b.written for b in blocks),
        _load_statistics=_statistics_loader(store, group, gv.version, commit_no),
    )


@dataclass
class _Version:
    id: int
    version: int
    keys: list[str]
    event_time: str
    schema: pa.Schema
    online: bool
    expectations_json: str | None
    description: str | None = None
    newly_online: bool = False
    #: set by _version_for_write: this call creates the version or changes its settings
    changed: bool = False


def _version_from_row(row: Any) -> _Version:
    return _Version(
        id=row.id,
        version=row.version,
        keys=json.loads(row.keys),
        event_time=row.event_time,
        schema=pa.ipc.read_schema(pa.py_buffer(row.arrow_schema)),
        online=bool(row.online),
        expectations_json=row.expectations,
        description=row.description,
    )


def _versions(conn: sa.Connection, group: str) -> list[_Version]:
    return [_version_from_row(r) for r in records.group_version_rows(conn, group)]


def _check_compatible(
    group: str, existing: _Version, keys: Sequence[str], event_time: str, core: pa.Schema, explicit: bool
) -> None:
    nxt = existing.version + 1
    if list(keys) != existing.keys or event_time != existing.event_time:
        raise SchemaChangeError(
            f"{group} version {existing.version} has keys {existing.keys} and event time {existing.event_time!r}; "
            f"this call has keys {list(keys)} and event time {event_time!r}. Pass version={nxt} to create a new "
            "version with them"
        )
    changes = _schema_changes(existing.schema, core)
    if changes:
        hint = (
            f"pass version={nxt} to create a new version with this schema"
            if not explicit
            else f"version {existing.version} exists with another schema; pass version={nxt} for a new one"
        )
        raise SchemaChangeError(
            f"the columns of {group!r} differ from version {existing.version}: "
            + "; ".join(changes)
            + f". To go on, {hint}, "
            "or cast the frame to the version's types"
        )


def _target_version(
    store: Store, group: str, version: int | None, keys: Sequence[str], event_time: str, core: pa.Schema
) -> _Version | None:
    """The existing version this call writes into (None for a new version), after checks."""
    with store.catalog.read() as conn:
        versions = _versions(conn, group)
    latest = versions[-1] if versions else None
    if version is None:
        if latest is None:
            return None
        _check_compatible(group, latest, keys, event_time, core, explicit=False)
        return latest
    by_number = {v.version: v for v in versions}
    if version in by_number:
        _check_compatible(group, by_number[version], keys, event_time, core, explicit=True)
        return by_number[version]
    expected = (latest.version if latest else 0) + 1
    if version != expected:
        have = f"versions 1..{latest.version}" if latest else "no versions yet"
        raise InvalidInputError(f"{group!r} has {have}; the next new version is {expected}, not {version}")
    return None


def _version_for_write(
    conn: sa.Connection,
    store: Store,
    group: str,
    group_id: int,
    version: int | None,
    keys: Sequence[str],
    event_time: str,
    schema: pa.Schema,
    core: pa.Schema,
    online: bool | None,
    description: str | None,
    rules_json: str | None,
    now: dt.datetime,
) -> _Version:
    """Inside the write transaction: the version row to commit into, created if needed."""
    versions = _versions(conn, group)
    latest = versions[-1] if versions else None
    existing = None
    if version is None and latest is not None:
        existing = latest
    elif version is not None:
        existing = next((v for v in versions if v.version == version), None)
    if existing is not None:
        _check_compatible(group, existing, keys, event_time, core, explicit=version is not None)
        updates: dict[str, Any] = {}
        if online and not existing.online:
            updates["online"] = True
            existing.online = existing.newly_online = True
        if description is not None and description != existing.description:
            updates["description"] = description
        if rules_json is not None and rules_json != existing.expectations_json:
            updates["expectations"] = rules_json
        if updates:
            records.update_group_version(conn, existing.id, updates)
        existing.changed = bool(updates)
        return existing
    number = (latest.version if latest else 0) + 1
    if version is not None and version != number:
        raise InvalidInputError(f"{group!r} now has versions 1..{number - 1}; the next new version is {number}")
    new_id = records.insert_group_version(
        conn, group_id, number, keys, event_time, core, online, description, rules_json, author(), now
    )
    return _Version(new_id, number, list(keys), event_time, core, bool(online), rules_json, description, changed=True)


def _changes_version(target: _Version, online: bool | None, description: str | None, rules_json: str | None) -> bool:
    """Whether a call with these settings changes the version itself (and so is a commit, whatever its rows)."""
    return bool(
        (online and not target.online)
        or (description is not None and description != target.description)
        or (rules_json is not None and rules_json != target.expectations_json)
    )


def _latest_commit_row(store: Store, version_id: int, conn: sa.Connection | None = None) -> Any:
    """The latest commit row of a version (None if it has none)."""
    if conn is not None:
        return records.latest_commit_row(conn, version_id)
    with store.catalog.read() as read:
        return records.latest_commit_row(read, version_id)


class _TimeWindow(NamedTuple):
    """The span of event times a commit writes: what of the history it can touch."""

    low: pa.Scalar
    high: pa.Scalar
    #: ``[low, high]`` in microseconds since the epoch, rounded outwards (None: beyond what the catalog holds)
    bounds_us: tuple[int, int] | None

    @classmethod
    def of(cls, table: pa.Table, event_time: str) -> _TimeWindow | None:
        """The window of ``table``'s event times (None for no rows)."""
        if table.num_rows == 0:
            return None
        extremes = pc.min_max(table.column(event_time))
        low, high = extremes["min"], extremes["max"]
        bounds = (ticks(low, "us", up=False), ticks(high, "us", up=True))
        fits = all(-(2**63) <= b < 2**63 for b in bounds)
        return cls(low, high, bounds if fits else None)

    def query_us(self) -> tuple[int, int]:
        """The window in microseconds for a catalog query: the widest when it does not fit."""
        return self.bounds_us or (-(2**63), 2**63 - 1)


def _history_between(
    store: Store,
    conn: sa.Connection,
    gv: _Version,
    window: _TimeWindow,
    columns: Sequence[str] | None,
    whole: bool = False,
) -> list[_Commit]:
    """The rows of each commit of ``gv`` whose event time is in ``window``, oldest first.

    Commits whose recorded span misses the window are not read at all; of the
    others, only the row groups that reach the window (each page checked
    against its CRC), unless ``whole``: then every column read is read whole
    and verified against its digest.  ``columns`` limits the columns (None: all).
    """
    low_us, high_us = window.query_us()
    rows = records.commits_overlapping(conn, gv.id, low_us, high_us)
    digests = records.column_digests_by_commit(conn, [r.id for r in rows]) if rows else {}
    history = []
    for row in rows:
        schema = pa.ipc.read_schema(pa.py_buffer(row.arrow_schema))
        names = list(columns) if columns is not None else schema.names
        positions = [schema.get_field_index(n) for n in names]
        part = pa.schema([schema.field(i) for i in positions], metadata=schema.metadata)
        blocks = [
            read_rows_between(store, part, [block[i] for i in positions], gv.event_time, window.low, window.high, whole)
            for block in _blocks(digests[row.id], len(schema))
        ]
        table = blocks[0] if len(blocks) == 1 else pa.concat_tables(blocks)
        history.append(_Commit(row.commit_no, table, row.updated))
    return history


def _replaced(store: Store, conn: sa.Connection, gv: _Version, new: pa.Table, window: _TimeWindow | None) -> int:
    """How many rows of ``new`` replace a stored row (same keys and event time), reading only their time window."""
    if window is None:
        return 0
    pair = [*gv.keys, gv.event_time]
    history = _history_between(store, conn, gv, window, pair)
    if not history:
        return 0
    return _merge(history, new.select(pair), gv.keys, gv.event_time)[1]


def _same_state(
    store: Store, conn: sa.Connection, gv: _Version, latest: Any, new: pa.Table, window: _TimeWindow | None
) -> bool:
    """Whether applying ``new`` leaves the visible rows, their types and their read-back dtypes as they were.

    Called when every row of ``new`` replaces a stored one: only the stored
    rows in ``new``'s time window can differ.  A "same" found from row groups
    read under their page checksums is confirmed on the whole, digest-verified
    columns before the commit is skipped: skipping a commit must never rest on
    a damaged read.
    """
    from nbops.core.hashing import canonical_schema

    if canonical_schema(new.schema) != canonical_schema(pa.ipc.read_schema(pa.py_buffer(latest.arrow_schema))):
        return False  # another pandas dtype: the read-back dtypes would change
    if window is None:
        return True  # no rows: nothing changes
    for whole in (False, True):
        history = _history_between(store, conn, gv, window, None, whole=whole)
        if not history:
            return False
        before, _ = _merge(history, None, gv.keys, gv.event_time)
        after, _ = _merge(history, new, gv.keys, gv.event_time)
        if not _same_rows(before, after, [*gv.keys, gv.event_time]):
            return False
    return True


def _same_rows(a: pa.Table, b: pa.Table, pair: Sequence[str]) -> bool:
    """Whether two states hold the same rows (compared in (keys, event time) order)."""
    if a.num_rows != b.num_rows:
        return False
    order = [(c, "ascending") for c in pair]
    try:
        a = a.take(pc.sort_indices(a, sort_keys=order))
        b = b.take(pc.sort_indices(b, sort_keys=order))
    except (pa.ArrowNotImplementedError, pa.ArrowInvalid, pa.ArrowTypeError):
        return False  # keys that cannot be ordered: commit, as before
    return [column_digest(c) for c in a.columns] == [column_digest(c) for c in b.columns]


def _unchanged_ref(
    store: Store,
    group: str,
    gv: _Version,
    keys: Sequence[str],
    event_time: str,
    feature_cols: tuple[str, ...],
    table: pa.Table,
    latest: Any,
    report: Any,
) -> FeatureGroupRef:
    """What ``register_features`` returns when the rows are stored already: the existing commit, marked unchanged."""
    return FeatureGroupRef(
        group=group,
        version=gv.version,
        commit=latest.commit_no,
        keys=tuple(keys),
        event_time=event_time,
        features=feature_cols,
        rows=table.num_rows,
        inserted=0,
        updated=0,
        total_rows=latest.total_rows,
        digest=latest.digest,
        online=gv.online,
        created=cat.as_utc(latest.created),
        validation=report.to_dict() if report is not None else None,
        bytes_written=0,
        unchanged=True,
        _statistics=dict(json.loads(latest.statistics)) if latest.statistics is not None else None,
        _load_statistics=_statistics_loader(store, group, gv.version, latest.commit_no),
    )


# -- reading -------------------------------------------------------------------------
class _Commit(NamedTuple):
    number: int
    table: pa.Table  # the rows this commit wrote
    updated: int  # how many of them replaced an earlier row


def _commit_tables(
    store: Store, conn: sa.Connection, version_id: int, as_of: int | dt.datetime | None, only: bool = False
) -> list[_Commit]:
    """The rows each commit wrote, oldest first, up to ``as_of`` (a commit number or a time).

    With ``only``, just the commit numbered ``as_of``.
    """
    commits = records.commits_as_of(conn, version_id, as_of, only)
    if not commits:
        return []
    columns = records.column_digests_by_commit(conn, [r.id for r in commits])
    tables = []
    for r in commits:
        schema = pa.ipc.read_schema(pa.py_buffer(r.arrow_schema))
        blocks = [read_table(store, schema, block) for block in _blocks(columns[r.id], len(schema))]
        tables.append(_Commit(r.commit_no, blocks[0] if len(blocks) == 1 else pa.concat_tables(blocks), r.updated))
    return tables


def _blocks(digests: Sequence[str], width: int) -> list[list[str]]:
    """A commit's column objects cut into its row blocks, ``width`` columns each.

    A commit from one frame has one block; a commit written by Spark's
    executors has one per partition, each a set of column objects, listed
    block after block (positions ``block * width + column``).
    """
    if width == 0 or not digests or len(digests) % width:
        raise CorruptDataError(
            f"a feature commit lists {len(digests)} column objects for {width} columns; the catalog is damaged "
            "(run `nbops verify`)"
        )
    return [list(digests[i : i + width]) for i in range(0, len(digests), width)]


def _merge(
    previous: Sequence[_Commit], new: pa.Table | None, keys: Sequence[str], event_time: str
) -> tuple[pa.Table, int]:
    """The state after applying commits in order (later rows win per (keys, event time)).

    Returns the state and how many rows of ``new`` replaced an existing row.
    Rows keep commit order; a replaced row moves to its new commit's place.
    """
    tables = [c.table for c in previous] + ([new] if new is not None else [])
    if not tables:
        raise NotFoundError("no commits to read")
    schema = tables[-1].schema
    tables = [t.select(schema.names).cast(schema) if t.schema != schema else t for t in tables]
    if len(tables) == 1:
        return tables[0], 0
    if new is None and not any(c.updated for c in previous[1:]):
        # Every commit only added rows: the state is their concatenation.
        return pa.concat_tables(tables), 0
    combined = pa.concat_tables(tables)
    cols = [*keys, event_time]
    ids = combined.select(cols).append_column("__rid", pa.array(np.arange(combined.num_rows, dtype=np.int64)))
    last = ids.group_by(cols, use_threads=False).aggregate([("__rid", "max")])
    keep = pc.sort_indices(last["__rid_max"])
    rids = pc.take(last["__rid_max"], keep)
    state = combined.take(rids)
    updated = 0
    if new is not None:
        # `new` has no duplicate (keys, time): each of its rows either adds a
        # pair or replaces one that the earlier commits had.
        before = _distinct_pairs(ids.slice(0, combined.num_rows - new.num_rows), cols)
        updated = new.num_rows - (last.num_rows - before)
    return state, updated


def _distinct_pairs(ids: pa.Table, cols: Sequence[str]) -> int:
    if ids.num_rows == 0:
        return 0
    return int(ids.group_by(list(cols), use_threads=False).aggregate([]).num_rows)


def _commit_rows(store: Store, gv: _Version, commit: int) -> pa.Table:
    """The rows one commit wrote (not the state as of it)."""
    with store.catalog.read() as conn:
        commits = _commit_tables(store, conn, gv.id, commit, only=True)
        if not commits:
            last = _latest_commit(conn, gv.id)
            raise NotFoundError(f"version {gv.version} has no commit {commit}; its commits are 1..{last}")
    return commits[0][1]


def _version_row(conn: sa.Connection, group: str, version: int | None) -> _Version:
    versions = _versions(conn, group)
    if not versions:
        known = records.group_names(conn)
        raise NotFoundError(f"no feature group named {group!r}; known: {', '.join(known) or 'none yet'}")
    if version is None:
        return versions[-1]
    for v in versions:
        if v.version == version:
            return v
    raise NotFoundError(f"feature group {group!r} has no version {version}; it has versions 1..{versions[-1].version}")


def _latest_commit(conn: sa.Connection, version_id: int) -> int:
    return records.latest_commit_number(conn, version_id)


def read_group_table(
    store: Store, group: str, version: int | None = None, as_of: int | str | dt.datetime | None = None
) -> tuple[_Version, int, pa.Table]:
    """(version, commit, rows) of a group as of a commit or time; records the read."""
    as_of_value = _parse_as_of(as_of)
    with store.catalog.read() as conn:
        gv = _version_row(conn, group, version)
        commits = _commit_tables(store, conn, gv.id, as_of_value)
        if not commits:
            latest = _latest_commit(conn, gv.id)
            raise NotFoundError(
                f"{group}:{gv.version} has no commit as of {as_of!r}; its commits are 1..{latest}"
                if latest
                else f"{group}:{gv.version} has no commits"
            )
        if isinstance(as_of_value, int) and commits[-1][0] != as_of_value:
            raise NotFoundError(
                f"{group}:{gv.version} has no commit {as_of_value}; its commits are 1..{commits[-1][0]}"
            )
    state, _ = _merge(commits, None, gv.keys, gv.event_time)
    state = state.select(gv.schema.names)
    commit_no = commits[-1][0]
    store.record_read("feature_commit", f"{group}:{gv.version}@{commit_no}")
    lineage.note_process_read(store.root, "feature_commit", f"{group}:{gv.version}@{commit_no}")
    return gv, commit_no, state.replace_schema_metadata(_read_back_metadata(commits, state))


#: pandas' nullable dtype for each NumPy dtype that cannot hold a missing value.
_NULLABLE = {
    **{f"int{b}": f"Int{b}" for b in (8, 16, 32, 64)},
    **{f"uint{b}": f"UInt{b}" for b in (8, 16, 32, 64)},
    "bool": "boolean",
}


def _read_back_metadata(commits: Sequence[_Commit], state: pa.Table) -> dict[bytes, bytes] | None:
    """The pandas metadata that gives the state its dtypes back.

    The latest commit's metadata names each column's dtype.  An integer or
    bool column that any visible commit wrote as a nullable dtype (``Int64``,
    ``boolean``), or that holds missing values, reads back nullable: with
    the latest commit's plain ``int64`` it would silently become float64.
    """
    metadata = dict(commits[-1].table.schema.metadata or {})
    if b"pandas" not in metadata:
        return metadata or None
    pandas_meta = json.loads(metadata[b"pandas"])
    nullable_somewhere = set()
    for commit in commits:
        for column in (commit.table.schema.pandas_metadata or {}).get("columns", []):
            if column.get("numpy_type") in _NULLABLE.values():
                nullable_somewhere.add(column.get("field_name"))
    changed = False
    for column in pandas_meta.get("columns", []):
        name, numpy_type = column.get("field_name"), column.get("numpy_type")
        if numpy_type not in _NULLABLE or name not in state.column_names:
            continue
        if column.get("pandas_type") == "categorical":  # numpy_type names the codes: missing values are code -1
            continue
        if name in nullable_somewhere or state.column(name).null_count:
            column["numpy_type"] = _NULLABLE[numpy_type]
            changed = True
    if changed:
        metadata[b"pandas"] = json.dumps(pandas_meta).encode()
    return metadata


def _parse_as_of(as_of: int | str | dt.datetime | None) -> int | dt.datetime | None:
    if as_of is None or isinstance(as_of, (int, dt.datetime)):
        if isinstance(as_of, bool):
            raise InvalidInputError("as_of must be a commit number or a time, not a bool")
        return as_of
    if isinstance(as_of, str):
        if as_of.isdigit():
            return int(as_of)
        try:
            return dt.datetime.fromisoformat(as_of)
        except ValueError:
            raise InvalidInputError(f"as_of={as_of!r} is neither a commit number nor an ISO time") from None
    import pandas as pd

    if isinstance(as_of, pd.Timestamp):
        return as_of.to_pydatetime()
    raise InvalidInputError(f"as_of must be a commit number or a time, not {type(as_of).__name__}")


def features(
    store: Store,
    group: str,
    version: int | None = None,
    as_of: int | str | dt.datetime | None = None,
    engine: str = "pandas",
    spark: Any = None,
) -> Any:
    """A group version's rows as of a commit number or a time (default: latest), carrying their provenance.

    ``group`` may name the version and commit itself (``"tx:2@5"``); they override ``version`` and ``as_of``.
    ``engine="spark"`` gives a Spark DataFrame (on ``spark`` or the active session) of the same rows:
    times as UTC instants, naive ones as they are (``TIMESTAMP_NTZ``).
    """
    from nbops.core.columns import table_to_pandas

    if engine not in ("pandas", "spark"):
        raise InvalidInputError(f"engine={engine!r} is not known; use 'pandas' or 'spark'")
    group, ref_version, ref_commit = parse_group_ref(group)
    if ref_version is not None:
        version = ref_version
    if ref_commit is not None:
        as_of = ref_commit
    if engine == "spark":
        return _features_spark(store, group, version, as_of, spark)
    gv, commit_no, table = read_group_table(store, group, version, as_of)
    frame = table_to_pandas(table)
    lineage.set_provenance(
        frame, [lineage.provenance(store.root, "feature_commit", f"{group}:{gv.version}@{commit_no}")]
    )
    return frame


def _features_spark(
    store: Store, group: str, version: int | None, as_of: int | str | dt.datetime | None, spark: Any
) -> Any:
    """``features(..., engine="spark")``: Spark reads the commits' objects where it can, else the driver hands them over."""
    from nbops.core.objects.local import ObjectStore
    from nbops.featurestore.spark import files_readable, spark_session, to_spark

    session = spark_session(spark)  # before reading: a missing session fails first
    as_of_value = _parse_as_of(as_of)
    with store.catalog.read() as conn:
        gv = _version_row(conn, group, version)
        rows = records.commits_as_of(conn, gv.id, as_of_value)
        if isinstance(as_of_value, int) and (not rows or rows[-1].commit_no != as_of_value):
            rows = []
        digests = records.column_digests_by_commit(conn, [r.id for r in rows]) if rows else {}
    readable = isinstance(store.objects, ObjectStore) and files_readable(gv.schema, gv.keys)
    if not rows or not readable:  # the driver reads, checks and hands the rows over (errors named as usual)
        return to_spark(session, read_group_table(store, group, version, as_of)[2], f"feature group {group}")
    frame = _spark_over_objects(store, session, gv, rows, digests)
    if frame is None:
        return to_spark(session, read_group_table(store, group, version, as_of)[2], f"feature group {group}")
    ref = f"{group}:{gv.version}@{rows[-1].commit_no}"
    store.record_read("feature_commit", ref)
    lineage.note_process_read(store.root, "feature_commit", ref)
    return frame


def _spark_over_objects(store: Store, session: Any, gv: _Version, rows: Sequence[Any], digests: Any) -> Any:
    """The state after commits ``rows`` read by Spark from their objects (local), or None when an object
    lacks page checksums (or is missing): Spark checks every page's CRC-32 as it reads, and an object
    without them must go through the driver, which verifies whole columns against their digests."""
    from nbops.core.columns import has_page_checksums
    from nbops.core.objects.local import ObjectStore
    from nbops.featurestore.spark import read_commits

    commits = [(r.commit_no, _blocks(digests[r.id], len(gv.schema))) for r in rows]
    if not all(has_page_checksums(store, d) for d in {d for _, blocks in commits for b in blocks for d in b}):
        return None
    assert isinstance(store.objects, ObjectStore)
    return read_commits(session, gv.schema, gv.keys, gv.event_time, commits, store.objects.path)


def feature_groups(store: Store) -> pd.DataFrame:
    """One row per group version: keys, event time, features, commits, rows, online."""
    import pandas as pd

    with store.catalog.read() as conn:
        rows = records.version_summaries(conn)
    entries = []
    for r in rows:
        keys = json.loads(r.keys)
        names = pa.ipc.read_schema(pa.py_buffer(r.arrow_schema)).names
        entries.append(
            {
                "group": r.name,
                "version": r.version,
                "keys": ", ".join(keys),
                "event_time": r.event_time,
                "features": ", ".join(n for n in names if n not in keys and n != r.event_time),
                "commits": r.commits,
                "rows": r.total_rows,
                "online": bool(r.online),
                "updated": pd.Timestamp(cat.as_utc(r.created)),
                "description": r.description,
            }
        )
    columns = [
        "group",
        "version",
        "keys",
        "event_time",
        "features",
        "commits",
        "rows",
        "online",
        "updated",
        "description",
    ]
    return pd.DataFrame.from_records(entries, columns=columns)


def commits(store: Store, group: str, version: int | None = None) -> pd.DataFrame:
    """Every commit of a group version: rows, inserted, updated, total, digest, time, validation."""

    with store.catalog.read() as conn:
        gv = _version_row(conn, group, version)
        rows = records.commit_rows(conn, gv.id)
    columns = {"commit": "commit_no", **{c: c for c in ("rows", "inserted", "updated", "total_rows", "digest")}}
    return rows_frame(
        rows,
        {**columns, "created": "created", "author": "author", "validated": lambda r: r.validation is not None},
        times=["created"],
    )


def statistics(store: Store, group: str, version: int | None = None, commit: int | None = None) -> dict[str, Any]:
    """The statistics of the group as of a commit (default: the latest); computed and kept on first use."""
    with store.catalog.read() as conn:
        gv = _version_row(conn, group, version)
        row = records.commit_statistics(conn, gv.id, commit)
    if row is None:
        raise NotFoundError(f"{group}:{gv.version} has no commit {commit}")
    if row.statistics is not None:
        return dict(json.loads(row.statistics))
    features = [c for c in gv.schema.names if c not in gv.keys and c != gv.event_time]
    frame = _spark_state_for_statistics(store, gv, row.commit_no)
    if frame is not None:  # a version Spark wrote: Spark aggregates it where its objects are
        from nbops.featurestore.spark_stats import spark_statistics

        computed: dict[str, Any] = json.loads(json.dumps(spark_statistics(frame, gv.schema, features)))
    else:
        from nbops.featurestore.stats import feature_statistics

        with store.catalog.read() as conn:
            state = _state(store, conn, gv, row.commit_no)
        computed = json.loads(json.dumps(feature_statistics(state, features)))
    try:
        with store.catalog.write(("feature_group", group)) as conn:
            records.keep_statistics(conn, row.id, computed)
    except ReadOnlyError:
        pass  # a read-only store computes them each time
    return computed


def _spark_state_for_statistics(store: Store, gv: _Version, commit: int) -> Any:
    """The state as of ``commit`` as a Spark DataFrame over its objects, for a version with a commit from Spark
    while a Spark session is active and Spark reads the version's objects exactly; else None."""
    from nbops.core.objects.local import ObjectStore
    from nbops.featurestore.spark import files_readable

    if not isinstance(store.objects, ObjectStore) or not files_readable(gv.schema, gv.keys):
        return None
    try:
        from pyspark.sql import SparkSession
    except ImportError:
        return None
    session = SparkSession.getActiveSession()
    if session is None:
        return None
    with store.catalog.read() as conn:
        if not records.written_by_spark(conn, gv.id, commit):
            return None
        rows = records.commits_as_of(conn, gv.id, commit)
        digests = records.column_digests_by_commit(conn, [r.id for r in rows])
    return _spark_over_objects(store, session, gv, rows, digests)


def _statistics_loader(store: Store, group: str, version: int, commit: int) -> Callable[[], dict[str, Any]]:
    """What computes (or reads) a commit's statistics when a :class:`FeatureGroupRef` is first asked for them."""
    return lambda: statistics(store, group, version, commit)


def _state(store: Store, conn: sa.Connection, gv: _Version, as_of: int | None) -> pa.Table:
    """The rows of ``gv`` visible as of commit ``as_of`` (None: the latest), without recording a read."""
    commits = _commit_tables(store, conn, gv.id, as_of)
    return _merge(commits, None, gv.keys, gv.event_time)[0].select(gv.schema.names)


def plan_outputs(
    store: Store, refs: Sequence[FeatureRef], taken: set[str] | None = None
) -> list[tuple[_Version, str, dict[str, str]]]:
    """Group feature references by group version and name the output columns.

    A feature name that more than one group provides, or that a spine or key
    column already uses, gets its group as prefix: ``group__feature``.
    """
    taken = set(taken or ())
    groups: dict[tuple[str, int | None], list[str]] = {}
    for ref in refs:
        groups.setdefault((ref.group, ref.version), [])
        if ref.feature not in groups[(ref.group, ref.version)]:
            groups[(ref.group, ref.version)].append(ref.feature)
    resolved: list[tuple[_Version, str, list[str]]] = []
    with store.catalog.read() as conn:
        for (group, version), wanted in groups.items():
            gv = _version_row(conn, group, version)
            available = [c for c in gv.schema.names if c not in gv.keys and c != gv.event_time]
            names: list[str] = []
            for f in wanted:
                if f == "*":
                    names.extend(c for c in available if c not in names)
                elif f not in available:
                    raise NotFoundError(
                        f"{group}:{gv.version} has no feature {f!r}; its features are: {', '.join(available)}"
                    )
                elif f not in names:
                    names.append(f)
            resolved.append((gv, group, names))
    counts: dict[str, int] = {}
    for _, _, names in resolved:
        for f in names:
            counts[f] = counts.get(f, 0) + 1
    plan = []
    for gv, group, names in resolved:
        mapping = {f: (f"{group}__{f}" if counts[f] > 1 or f in taken else f) for f in names}
        plan.append((gv, group, mapping))
    return plan


# -- training data -------------------------------------------------------------------
#: ``dtype_backend`` values of :func:`training_data`: NumPy dtypes (None, the default) or pandas' nullable ones.
DTYPE_BACKENDS = ("numpy", "numpy_nullable")


def training_data(
    store: Store,
    spine: pd.DataFrame,
    refs: Sequence[str],
    event_time: str,
    label: str | None = None,
    ttl: dt.timedelta | str | None = None,
    save_as: str | None = None,
    dtype_backend: str | None = None,
    save: Callable[..., Any] | None = None,
    engine: str = "duckdb",
    spark: Any = None,
) -> Any:
    """Point-in-time correct features for each spine row, ready for scikit-learn and MLflow.

    ``engine="spark"`` runs the join in Spark and returns a Spark DataFrame (see
    :mod:`nbops.featurestore.spark`); ``save_as`` and ``dtype_backend`` are for the
    default engine, ``"duckdb"``, which returns pandas.

    ``save_as`` is written by ``save`` (``save(store, frame, name, message=, parents=)``,
    returning a reference with ``.ref``): :meth:`nbops.Store.training_data` passes
    :func:`nbops.datasets.snapshots.snapshot`, so that the feature store needs no
    other domain.

    ``dtype_backend=None`` (or ``"numpy"``) gives NumPy dtypes (see
    :func:`numpy_dtypes`); ``"numpy_nullable"`` keeps pandas' nullable dtypes
    (``Int64``, ``boolean``) with ``pd.NA``, as ``pandas.read_parquet`` does.

    The frame's ``attrs`` say where it came from (:data:`nbops.core.lineage.PROVENANCE`):
    the snapshot ``save_as`` wrote, or else a ``training_set`` artifact whose
    parents are the feature commits and the spine's own provenance; a run
    that uses the frame (or a frame derived from it) records it as an input.
    """
    import pandas as pd

    from nbops.featurestore.pit import FeatureSource, point_in_time_join

    if engine not in ENGINES:
        raise InvalidInputError(f"engine={engine!r} is not known; use one of: {', '.join(ENGINES)}")
    if engine == "spark":
        if save_as is not None or dtype_backend is not None:
            raise InvalidInputError(
                'save_as= and dtype_backend= are for engine="duckdb"; with Spark, write the result where you '
                "want it (result.write.parquet(...)) or snapshot result.toPandas()"
            )
        return _training_data_spark(store, spine, refs, event_time, label, ttl, spark)
    if not isinstance(spine, pd.DataFrame):
        raise InvalidInputError(f"the spine must be a pandas DataFrame, not {type(spine).__name__}")
    if dtype_backend is not None and dtype_backend not in DTYPE_BACKENDS:
        raise InvalidInputError(
            f"dtype_backend={dtype_backend!r} is not known; use None (NumPy dtypes) or 'numpy_nullable'"
        )
    if isinstance(refs, str):
        refs = [refs]
    if label is not None and label not in spine.columns:
        raise InvalidInputError(
            f"label column {label!r} is not in the spine; its columns are: {', '.join(map(str, spine.columns))}"
        )
    if save_as is not None:
        validate_name(save_as, "snapshot")
    ttl_delta = pd.Timedelta(ttl).to_pytimedelta() if ttl is not None else None
    plan = plan_outputs(store, [FeatureRef.parse(r) for r in refs], taken={str(c) for c in spine.columns})
    sources = []
    parents: list[tuple[str, str]] = []
    for gv, group, mapping in plan:
        _, commit_no, table = read_group_table(store, group, gv.version)
        parents.append(("feature_commit", f"{group}:{gv.version}@{commit_no}"))
        sources.append(
            FeatureSource(
                table=table.select([*gv.keys, gv.event_time, *mapping]),
                keys=tuple(gv.keys),
                event_time=gv.event_time,
                features=mapping,
                ttl=ttl_delta,
            )
        )
    result = point_in_time_join(spine, event_time, sources)
    if label is not None:
        result = result[[c for c in result.columns if c != label] + [label]]
    if dtype_backend != "numpy_nullable":
        result = numpy_dtypes(result)
    spine_entries = lineage.provenance_of(spine) or []
    commit_entries = [lineage.provenance(store.root, k, r) for k, r in parents]
    here = str(store.root)
    every_parent = [*parents, *((e["kind"], e["ref"]) for e in spine_entries if e["store"] == here)]
    result.attrs.pop(lineage.PROVENANCE, None)  # the spine's, copied by the join
    result.attrs["nbops_features"] = [ref for _, ref in parents]
    if save_as is not None:
        message = f"training data from {', '.join(r for _, r in parents)}"
        if save is None:
            raise InvalidInputError("save_as= needs the snapshot writer: call store.training_data(..., save_as=...)")
        ref = save(store, result, save_as, message=message, parents=every_parent)
        result.attrs["nbops_snapshot"] = ref.ref
        # The training set, and what it was made from: the snapshot may be an
        # earlier version with the same content, whose lineage is its own.
        saved = lineage.provenance(store.root, "snapshot", ref.ref)
        lineage.set_provenance(result, [saved, *commit_entries, *spine_entries])
    else:
        made = lineage.provenance(
            store.root, "training_set", _training_set_ref(result, every_parent), parents=every_parent, rows=len(result)
        )
        lineage.set_provenance(result, [made])
    return result


def _training_data_spark(
    store: Store,
    spine: object,
    refs: Sequence[str] | str,
    event_time: str,
    label: str | None,
    ttl: dt.timedelta | str | None,
    spark: Any,
) -> Any:
    """``training_data`` on the Spark engine: the same sources, joined in Spark; a Spark DataFrame."""
    import pandas as pd

    from nbops.featurestore import spark as engine

    session = engine.spark_session(spark)
    frame = engine.to_spark(session, spine, "spine")
    if isinstance(refs, str):
        refs = [refs]
    if label is not None and label not in frame.columns:
        raise InvalidInputError(
            f"label column {label!r} is not in the spine; its columns are: {', '.join(frame.columns)}"
        )
    ttl_delta = pd.Timedelta(ttl).to_pytimedelta() if ttl is not None else None
    plan = plan_outputs(store, [FeatureRef.parse(r) for r in refs], taken=set(frame.columns))
    sources = []
    for gv, group, mapping in plan:
        _, _, table = read_group_table(store, group, gv.version)
        features = engine.to_spark(session, table.select([*gv.keys, gv.event_time, *mapping]), f"group {group}")
        sources.append(engine.SparkSource(features, tuple(gv.keys), gv.event_time, mapping, ttl_delta))
    result = engine.point_in_time_join(frame, event_time, sources)
    if label is not None:
        result = result.select(*(f"`{c}`" for c in result.columns if c != label), f"`{label}`")
    return result


def _training_set_ref(frame: pd.DataFrame, parents: Sequence[tuple[str, str]]) -> str:
    """A name for a training set that was not saved: a digest of its content and of its parents.

    Its parents are part of the name, so that a training set's lineage never
    changes: the same rows made from other data are another training set.
    """
    import xxhash

    from nbops.core.columns import arrow_from_pandas

    h = xxhash.xxh3_128()
    try:
        table = arrow_from_pandas(frame, preserve_index=None)
        h.update(combine_digest(table.schema, [column_digest(c) for c in table.columns]).encode())
    except (pa.ArrowException, TypeError, ValueError, OverflowError):
        import pandas as pd

        try:  # columns Arrow cannot hold (mixed objects): pandas' own row hashes
            h.update(pd.util.hash_pandas_object(frame, index=True).to_numpy().tobytes())
            h.update(repr(list(frame.columns)).encode())
        except (TypeError, ValueError):
            import uuid

            h.update(uuid.uuid4().bytes)  # unhashable values: a name of its own
    h.update(json.dumps(sorted(parents)).encode())
    return str(h.hexdigest())[:24]


def numpy_dtypes(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` with NumPy dtypes that scikit-learn and MLflow take as they are.

    - nullable integers, floats and bools (``Int64``, ``Float64``,
      ``boolean``, and their pyarrow-backed kin) without missing values
      become the NumPy dtype of the same width;
    - with missing values, numbers become float64 (float32 stays float32)
      with NaN, and bools become float64 1.0/0.0 with NaN.  An integer
      column with missing values and a value that float64 cannot hold
      exactly (beyond 2**53) is refused with :class:`InvalidInputError`:
      rounding it would change the data silently;
    - strings with ``pd.NA`` become pandas' default ``str`` dtype, whose
      missing value is NaN;
    - datetimes (NaT), categoricals, object and NumPy columns stay as they are.

    Columns are replaced, never changed in place; the index stays.
    """
    import pandas as pd

    out = frame.copy(deep=False)
    for position in range(out.shape[1]):
        column = out.iloc[:, position]
        converted = _numpy_column(str(out.columns[position]), column, pd)
        if converted is not None:
            out.isetitem(position, converted)
    return out


def _numpy_column(name: str, column: pd.Series, pd: Any) -> Any:
    """The column's values with a NumPy dtype (None: keep it as it is)."""
    dtype = column.dtype
    if not isinstance(dtype, pd.api.extensions.ExtensionDtype):
        return None
    if isinstance(dtype, pd.StringDtype):
        if dtype.na_value is pd.NA:
            return column.astype(pd.StringDtype(dtype.storage, na_value=np.nan)).array
        return None
    kind = getattr(dtype, "kind", "O")
    numpy_dtype = getattr(dtype, "numpy_dtype", None)
    if kind not in "iubf" or numpy_dtype is None or isinstance(dtype, pd.CategoricalDtype):
        return None
    missing = column.isna().to_numpy()
    if not missing.any():
        return column.to_numpy(dtype=numpy_dtype)
    if kind == "f":
        return column.to_numpy(dtype=numpy_dtype, na_value=np.nan)
    if kind in "iu" and np.dtype(numpy_dtype).itemsize == 8:
        present = column[~missing].to_numpy(dtype=numpy_dtype)
        beyond = present[(present > 2**53) | (present < -(2**53))] if kind == "i" else present[present > 2**53]
        inexact = [int(v) for v in beyond if int(float(v)) != int(v)]
        if inexact:
            raise InvalidInputError(
                f"column {name!r} has missing values and integers that float64 cannot hold exactly "
                f"(e.g. {inexact[0]}), so it cannot become a NumPy column without changing them; pass "
                "dtype_backend='numpy_nullable' to keep it as a nullable integer column"
            )
    return column.to_numpy(dtype=np.float64, na_value=np.nan)


def split_by_time(
    frame: pd.DataFrame, event_time: str, test_size: float = 0.2, cutoff: Any = None
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Split training data in time: every test row is later than every train row.

    ``cutoff`` (a time; naive means UTC) puts rows at or after it in the test
    set; otherwise the latest ``test_size`` share of rows is the test set (rows
    sharing the boundary time all go to test, so no time is in both).
    """
    import pandas as pd

    if event_time not in frame.columns:
        raise InvalidInputError(f"column {event_time!r} is not in the frame")
    times = pd.to_datetime(frame[event_time])
    utc = times.dt.tz_localize("UTC") if times.dt.tz is None else times.dt.tz_convert("UTC")
    if cutoff is None:
        if not 0 < test_size < 1:
            raise InvalidInputError(f"test_size must be between 0 and 1, not {test_size}")
        ordered = utc.sort_values(kind="stable")
        position = int(round(len(ordered) * (1 - test_size)))
        position = min(max(position, 0), len(ordered) - 1) if len(ordered) else 0
        boundary = ordered.iloc[position] if len(ordered) else None
    else:
        boundary = pd.Timestamp(cutoff)
        boundary = boundary.tz_localize("UTC") if boundary.tzinfo is None else boundary.tz_convert("UTC")
    if boundary is None:
        return frame.iloc[:0], frame.iloc[:0]
    test_mask = (utc >= boundary).to_numpy()
    return frame[~test_mask], frame[test_mask]


# -- drift -----------------------------------------------------------------------------
def drift(
    store: Store,
    group: str,
    a: object = None,
    b: object = None,
    version: int | None = None,
    columns: Sequence[str] | None = None,
) -> pd.DataFrame:
    """PSI and KS per feature between two commits or versions, or a frame and a version.

    ``a`` and ``b`` are commit numbers of ``version`` (default: the latest
    version) — each compares the rows that commit wrote, e.g. last week's
    batch against this week's — or references such as ``"tx:1"`` or
    ``"tx:2@3"`` — each the whole group as of then — or DataFrames.
    Defaults: the previous commit against the latest. ``store.drift(group, df)``
    compares ``df`` with the whole group as of its latest commit.
    """
    import pandas as pd

    from nbops.featurestore.drift import drift as drift_tables

    group_name, ref_version, _ = parse_group_ref(group)
    version = ref_version if ref_version is not None else version
    with store.catalog.read() as conn:
        gv = _version_row(conn, group_name, version)
        latest = _latest_commit(conn, gv.id)
    feature_cols = list(columns) if columns else [c for c in gv.schema.names if c not in gv.keys and c != gv.event_time]

    def side(value: object, default_commit: int) -> tuple[str, pa.Table]:
        if isinstance(value, (pd.DataFrame, pa.Table)):
            return "frame", features_to_arrow(value, exact=False)  # compared, never stored
        if value is None:
            value = default_commit
        if isinstance(value, int) and not isinstance(value, bool):
            if value < 1:
                raise NotFoundError(f"{group_name}:{gv.version} has only commit {latest}; pass two commits to compare")
            return f"{group_name}:{gv.version}@{value} (its rows)", _commit_rows(store, gv, value)
        if isinstance(value, str):
            g, v, c = parse_group_ref(value)
            _, c2, t = read_group_table(store, g, v, c)
            return f"{g}:{v or 'latest'}@{c2}", t
        raise InvalidInputError(
            f"cannot compare with a {type(value).__name__}; pass a commit number, a reference or a DataFrame"
        )

    if isinstance(a, (pd.DataFrame, pa.Table)) and b is None:
        a, b = None, a
        a_label, ref_table = side(f"{group_name}:{gv.version}@{latest}", latest)
    else:
        a_label, ref_table = side(a, latest - 1)
    b_label, cur_table = side(b, latest)
    missing = [c for c in feature_cols if c not in cur_table.column_names or c not in ref_table.column_names]
    if missing:
        raise InvalidInputError(f"feature(s) {missing} are not on both sides of the comparison")
    result = drift_tables(ref_table, cur_table, feature_cols)
    result.attrs["reference"] = a_label
    result.attrs["current"] = b_label
    return result
