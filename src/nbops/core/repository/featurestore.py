"""The catalog rows of feature groups, their versions, commits and online rows: every SQL statement of :mod:`nbops.featurestore`.

Functions take the caller's connection, so that a commit's rows, its objects'
rows, its online rows and its lineage commit in one transaction.  The online
lookups of an embedded catalog take the online store's own read-only
``sqlite3`` connection instead.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from nbops.core import catalog as cat
from nbops.core.repository import insert_columns

if TYPE_CHECKING:
    import sqlite3

    import pyarrow as pa

    from nbops.core.catalog import Catalog


# -- groups and their versions -------------------------------------------------------------
def get_or_create_group(catalog: Catalog, conn: sa.Connection, name: str, now: dt.datetime) -> int:
    """The id of feature group ``name``, created if it is new."""
    catalog.insert_ignore(conn, cat.feature_groups, [{"name": name, "created": now}])
    return int(conn.execute(sa.select(cat.feature_groups.c.id).where(cat.feature_groups.c.name == name)).scalar_one())


def group_names(conn: sa.Connection) -> list[str]:
    """Every feature group name, sorted."""
    return list(conn.execute(sa.select(cat.feature_groups.c.name).order_by(cat.feature_groups.c.name)).scalars())


def group_version_rows(conn: sa.Connection, group: str) -> list[sa.Row[Any]]:
    """Every ``feature_group_versions`` row of group ``group``, oldest first ([] for an unknown group)."""
    g, v = cat.feature_groups, cat.feature_group_versions
    return list(
        conn.execute(sa.select(v).join(g, g.c.id == v.c.group_id).where(g.c.name == group).order_by(v.c.version)).all()
    )


def update_group_version(conn: sa.Connection, version_id: int, updates: dict[str, Any]) -> None:
    """Set the columns ``updates`` names (online, description, expectations) on group version ``version_id``."""
    conn.execute(
        cat.feature_group_versions.update().where(cat.feature_group_versions.c.id == version_id).values(**updates)
    )


def insert_group_version(
    conn: sa.Connection,
    group_id: int,
    version: int,
    keys: Sequence[str],
    event_time: str,
    schema: pa.Schema,
    online: bool | None,
    description: str | None,
    expectations: str | None,
    author: str,
    now: dt.datetime,
) -> int:
    """Add version ``version`` of a feature group, with its keys, event time and schema; its row id."""
    result = conn.execute(
        cat.feature_group_versions.insert().values(
            group_id=group_id,
            version=version,
            keys=json.dumps(list(keys)),
            event_time=event_time,
            arrow_schema=schema.serialize().to_pybytes(),
            online=bool(online),
            description=description,
            expectations=expectations,
            author=author,
            created=now,
        )
    )
    return cat.inserted_id(result)


def version_summaries(conn: sa.Connection) -> list[sa.Row[*tuple[Any, ...]]]:
    """One row per group version with a commit, by group and version: its settings, commits, rows and last time."""
    g, v, c = cat.feature_groups, cat.feature_group_versions, cat.feature_commits
    last = (
        sa.select(c.c.group_version_id, sa.func.max(c.c.commit_no).label("commits"))
        .group_by(c.c.group_version_id)
        .subquery()
    )
    query = (
        sa.select(
            g.c.name,
            v.c.version,
            v.c["keys"],
            v.c.event_time,
            v.c.arrow_schema,
            v.c.online,
            v.c.description,
            last.c.commits,
            c.c.total_rows,
            c.c.created,
        )
        .join(v, v.c.group_id == g.c.id)
        .join(last, last.c.group_version_id == v.c.id)
        .join(c, sa.and_(c.c.group_version_id == v.c.id, c.c.commit_no == last.c.commits))
        .order_by(g.c.name, v.c.version)
    )
    return list(conn.execute(query).all())


# -- commits -------------------------------------------------------------------------------
def insert_commit(
    conn: sa.Connection,
    version_id: int,
    commit_no: int,
    digest: str,
    table: pa.Table,
    digests: Sequence[str],
    updated: int,
    total_rows: int,
    time_bounds: tuple[int, int] | None,
    validation: dict[str, Any] | None,
    context: dict[str, Any],
    bytes_written: int,
    author: str,
    host: str,
    now: dt.datetime,
    rows: int | None = None,
    columns: tuple[list[str], list[str]] | None = None,
) -> int:
    """Add commit ``commit_no`` of a group version, with its columns in order; its row id.

    ``table`` gives the schema and (unless ``rows``) the row count; ``columns``
    (names, object digests) replaces ``table``'s names and ``digests`` for a
    commit of several row blocks.

    ``time_bounds`` is the span of its event times in microseconds (rounded
    outwards); its statistics are left to :func:`keep_statistics`.
    """
    result = conn.execute(
        cat.feature_commits.insert().values(
            group_version_id=version_id,
            commit_no=commit_no,
            digest=digest,
            arrow_schema=table.schema.serialize().to_pybytes(),
            rows=table.num_rows if rows is None else rows,
            inserted=(table.num_rows if rows is None else rows) - updated,
            updated=updated,
            total_rows=total_rows,
            time_min_us=time_bounds[0] if time_bounds else None,
            time_max_us=time_bounds[1] if time_bounds else None,
            validation=json.dumps(validation) if validation is not None else None,
            lineage=json.dumps(context, default=str),
            bytes_written=bytes_written,
            author=author,
            host=host,
            created=now,
        )
    )
    commit_id = cat.inserted_id(result)
    names, objects = columns if columns is not None else (table.schema.names, list(digests))
    insert_columns(conn, cat.feature_commit_columns, {"commit_id": commit_id}, names, objects)
    return commit_id


def latest_commit_row(conn: sa.Connection, version_id: int) -> sa.Row[Any] | None:
    """The ``feature_commits`` row of a group version's latest commit, or None before its first."""
    c = cat.feature_commits
    return conn.execute(
        sa.select(c).where(c.c.group_version_id == version_id).order_by(c.c.commit_no.desc()).limit(1)
    ).first()


def latest_commit_number(conn: sa.Connection, version_id: int) -> int:
    """The latest commit number of a group version (0 before its first)."""
    c = cat.feature_commits
    return int(
        conn.execute(sa.select(sa.func.max(c.c.commit_no)).where(c.c.group_version_id == version_id)).scalar() or 0
    )


def _naive_utc(value: dt.datetime) -> dt.datetime:
    """A time as the catalog stores times: naive, in UTC (a naive time is taken as UTC already)."""
    return value if value.tzinfo is None else value.astimezone(dt.UTC).replace(tzinfo=None)


def commits_as_of(
    conn: sa.Connection, version_id: int, as_of: int | dt.datetime | None, only: bool = False
) -> list[sa.Row[Any, Any, Any, Any]]:
    """Id, number, Arrow schema and ``updated`` of each commit up to ``as_of`` (a number, a time, None: all), oldest first.

    With ``only``, just the commit numbered ``as_of``.
    """
    c = cat.feature_commits
    query = sa.select(c.c.id, c.c.commit_no, c.c.arrow_schema, c.c.updated).where(c.c.group_version_id == version_id)
    if only:
        query = query.where(c.c.commit_no == as_of)
    elif isinstance(as_of, int):
        query = query.where(c.c.commit_no <= as_of)
    elif isinstance(as_of, dt.datetime):
        query = query.where(c.c.created <= _naive_utc(as_of))
    return list(conn.execute(query.order_by(c.c.commit_no)).all())


def commits_overlapping(
    conn: sa.Connection, version_id: int, low_us: int, high_us: int
) -> list[sa.Row[Any, Any, Any, Any]]:
    """Id, number, Arrow schema and ``updated`` of each commit whose event times may reach ``[low_us, high_us]``.

    Oldest first; a commit without recorded bounds (made before revision 0005) may reach anything.
    """
    c = cat.feature_commits
    reaches = sa.or_(
        c.c.time_min_us.is_(None),
        c.c.time_max_us.is_(None),
        sa.and_(c.c.time_max_us >= low_us, c.c.time_min_us <= high_us),
    )
    query = sa.select(c.c.id, c.c.commit_no, c.c.arrow_schema, c.c.updated).where(
        c.c.group_version_id == version_id, reaches
    )
    return list(conn.execute(query.order_by(c.c.commit_no)).all())


def column_digests_by_commit(conn: sa.Connection, commit_ids: Sequence[int]) -> dict[int, list[str]]:
    """The object digests of each commit's columns, in column order, by commit id."""
    columns: dict[int, list[str]] = {}
    for commit_id, digest in conn.execute(
        sa.select(cat.feature_commit_columns.c.commit_id, cat.feature_commit_columns.c.object_digest)
        .where(cat.feature_commit_columns.c.commit_id.in_(list(commit_ids)))
        .order_by(cat.feature_commit_columns.c.commit_id, cat.feature_commit_columns.c.position)
    ):
        columns.setdefault(commit_id, []).append(digest)
    return columns


def commit_rows(conn: sa.Connection, version_id: int) -> list[sa.Row[Any]]:
    """Every ``feature_commits`` row of a group version, oldest first."""
    return list(
        conn.execute(
            sa.select(cat.feature_commits)
            .where(cat.feature_commits.c.group_version_id == version_id)
            .order_by(cat.feature_commits.c.commit_no)
        ).all()
    )


def commit_statistics(conn: sa.Connection, version_id: int, commit: int | None) -> sa.Row[Any, Any, Any] | None:
    """The statistics (JSON, or None if never computed), number and id of commit ``commit`` of a group
    version (the latest for None), or None."""
    c = cat.feature_commits
    query = sa.select(c.c.statistics, c.c.commit_no, c.c.id).where(c.c.group_version_id == version_id)
    query = (
        query.where(c.c.commit_no == commit) if commit is not None else query.order_by(c.c.commit_no.desc()).limit(1)
    )
    return conn.execute(query).first()


def written_by_spark(conn: sa.Connection, version_id: int, up_to: int) -> bool:
    """Whether a commit of a group version up to number ``up_to`` came from a Spark DataFrame."""
    c = cat.feature_commits
    found = conn.execute(
        sa.select(c.c.id)
        .where(c.c.group_version_id == version_id, c.c.commit_no <= up_to, c.c.lineage.like('%"engine": "spark"%'))
        .limit(1)
    ).first()
    return found is not None


def keep_statistics(conn: sa.Connection, commit_id: int, statistics: dict[str, Any]) -> None:
    """Store the statistics computed for a commit that had none (a commit's stored statistics never change)."""
    c = cat.feature_commits
    conn.execute(
        c.update().where(c.c.id == commit_id, c.c.statistics.is_(None)).values(statistics=json.dumps(statistics))
    )


# -- online rows ---------------------------------------------------------------------------
def upsert_online_rows(catalog: Catalog, conn: sa.Connection, rows: Sequence[dict[str, Any]]) -> None:
    """Write ``online_features`` rows; a stored row is replaced only by one with an equal or later event time."""
    if catalog.is_sqlite:
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


def online_values(conn: sa.Connection, version_id: int, entity_keys: Sequence[str]) -> dict[str, str]:
    """The stored value lists (JSON) of those of ``entity_keys`` present in group version ``version_id``."""
    o = cat.online_features
    return {
        entity_key: values
        for entity_key, values in conn.execute(
            sa.select(o.c.entity_key, o.c.feature_values).where(
                o.c.group_version_id == version_id, o.c.entity_key.in_(list(entity_keys))
            )
        ).all()
    }


def online_values_sqlite(db: sqlite3.Connection, version_id: int, entity_keys: Sequence[str]) -> dict[str, str]:
    """:func:`online_values` on a ``sqlite3`` connection to an embedded catalog (one indexed query)."""
    marks = ",".join("?" * len(entity_keys))
    return dict(
        db.execute(
            "SELECT entity_key, feature_values FROM online_features "
            f"WHERE group_version_id = ? AND entity_key IN ({marks})",
            (version_id, *entity_keys),
        ).fetchall()
    )


def latest_commit_or_zero(conn: sa.Connection, version_id: int) -> int:
    """The latest commit number of a group version, 0 (in SQL) before its first."""
    c = cat.feature_commits
    return int(
        conn.execute(
            sa.select(sa.func.coalesce(sa.func.max(c.c.commit_no), 0)).where(c.c.group_version_id == version_id)
        ).scalar_one()
    )


def online_rows_after(conn: sa.Connection, version_id: int, commit_no: int) -> list[sa.Row[Any, Any, Any, Any]]:
    """``(entity_key, event_time_us, commit_no, feature_values)`` of each online row of a group version written after commit ``commit_no``."""
    o = cat.online_features
    return list(
        conn.execute(
            sa.select(o.c.entity_key, o.c.event_time_us, o.c.commit_no, o.c.feature_values).where(
                o.c.group_version_id == version_id, o.c.commit_no > commit_no
            )
        ).all()
    )


def online_versions(conn: sa.Connection) -> list[sa.Row[Any, Any, Any]]:
    """``(id, group name, version)`` of each group version that is online, by group and version."""
    g, v = cat.feature_groups, cat.feature_group_versions
    return list(
        conn.execute(
            sa.select(v.c.id, g.c.name, v.c.version)
            .join(g, g.c.id == v.c.group_id)
            .where(v.c.online.is_(True))
            .order_by(g.c.name, v.c.version)
        ).all()
    )


def group_versions_fingerprint(db: sqlite3.Connection) -> tuple[int, int | None, int | None] | None:
    """How many group versions an embedded catalog has, their highest id and how many are online (changes with any of them)."""
    row: tuple[int, int | None, int | None] | None = db.execute(
        "SELECT count(*), max(id), sum(online) FROM feature_group_versions"
    ).fetchone()
    return row
