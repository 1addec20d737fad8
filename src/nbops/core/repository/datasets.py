"""The catalog rows of datasets and their snapshot versions: every SQL statement of :mod:`nbops.datasets`.

Functions take the caller's connection, so that a snapshot's rows, its
objects' rows and its lineage commit in one transaction.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from nbops.core import catalog as cat
from nbops.core.repository import insert_columns, latest_version_digest

if TYPE_CHECKING:
    import pyarrow as pa

    from nbops.core.catalog import Catalog


def get_or_create_dataset(catalog: Catalog, conn: sa.Connection, name: str, now: dt.datetime) -> int:
    """The id of dataset ``name``, created if it is new."""
    catalog.insert_ignore(conn, cat.datasets, [{"name": name, "created": now}])
    return int(conn.execute(sa.select(cat.datasets.c.id).where(cat.datasets.c.name == name)).scalar_one())


def latest_version(conn: sa.Connection, dataset_id: int) -> tuple[int, str | None]:
    """The latest version number of a dataset and its digest; ``(0, None)`` before its first."""
    row = latest_version_digest(conn, cat.snapshots, cat.snapshots.c.dataset_id == dataset_id)
    return (int(row.version), row.digest) if row is not None else (0, None)


def insert_version(
    conn: sa.Connection,
    dataset_id: int,
    version: int,
    digest: str,
    table: pa.Table,
    digests: Sequence[str],
    message: str | None,
    author: str,
    host: str,
    bytes_written: int,
    now: dt.datetime,
) -> int:
    """Add version ``version`` of a dataset, with its columns in order; its row id."""
    result = conn.execute(
        cat.snapshots.insert().values(
            dataset_id=dataset_id,
            version=version,
            digest=digest,
            rows=table.num_rows,
            n_columns=table.num_columns,
            arrow_schema=table.schema.serialize().to_pybytes(),
            message=message,
            author=author,
            host=host,
            bytes_written=bytes_written,
            created=now,
        )
    )
    snapshot_id = cat.inserted_id(result)
    insert_columns(conn, cat.snapshot_columns, {"snapshot_id": snapshot_id}, table.schema.names, digests)
    return snapshot_id


def dataset_names(conn: sa.Connection) -> list[str]:
    """Every dataset name, sorted."""
    return list(conn.execute(sa.select(cat.datasets.c.name).order_by(cat.datasets.c.name)).scalars())


def dataset_id(conn: sa.Connection, name: str) -> int | None:
    """The id of dataset ``name``, or None."""
    found = conn.execute(sa.select(cat.datasets.c.id).where(cat.datasets.c.name == name)).scalar()
    return None if found is None else int(found)


def version_row(conn: sa.Connection, dataset_id: int, version: int | None) -> sa.Row[Any] | None:
    """The ``snapshots`` row of a version (the latest for None), or None."""
    query = sa.select(cat.snapshots).where(cat.snapshots.c.dataset_id == dataset_id)
    if version is None:
        query = query.order_by(cat.snapshots.c.version.desc()).limit(1)
    else:
        query = query.where(cat.snapshots.c.version == version)
    return conn.execute(query).first()


def version_numbers(conn: sa.Connection, dataset_id: int) -> list[int]:
    """The version numbers of a dataset, in order."""
    s = cat.snapshots
    return [
        int(v) for v in conn.scalars(sa.select(s.c.version).where(s.c.dataset_id == dataset_id).order_by(s.c.version))
    ]


def column_digests(conn: sa.Connection, snapshot_id: int) -> list[str]:
    """The object digests of a version's columns, in column order."""
    c = cat.snapshot_columns
    return [
        str(d)
        for d in conn.scalars(sa.select(c.c.object_digest).where(c.c.snapshot_id == snapshot_id).order_by(c.c.position))
    ]


def version_rows(conn: sa.Connection, dataset_id: int) -> list[sa.Row[Any]]:
    """Every ``snapshots`` row of a dataset, oldest first."""
    return list(
        conn.execute(
            sa.select(cat.snapshots).where(cat.snapshots.c.dataset_id == dataset_id).order_by(cat.snapshots.c.version)
        ).all()
    )


def latest_per_dataset(conn: sa.Connection) -> list[Any]:
    """One row per dataset, by name: versions, latest version, its rows, columns, time and digest."""
    s, d = cat.snapshots, cat.datasets
    latest = (
        sa.select(s.c.dataset_id, sa.func.max(s.c.version).label("latest"), sa.func.count().label("versions"))
        .group_by(s.c.dataset_id)
        .subquery()
    )
    query = (
        sa.select(d.c.name, latest.c.versions, latest.c.latest, s.c.rows, s.c.n_columns, s.c.created, s.c.digest)
        .join(latest, latest.c.dataset_id == d.c.id)
        .join(s, sa.and_(s.c.dataset_id == d.c.id, s.c.version == latest.c.latest))
        .order_by(d.c.name)
    )
    return list(conn.execute(query).all())
