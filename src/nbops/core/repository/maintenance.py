"""The catalog queries of ``verify``, ``repair`` and ``gc``: every object a version refers to, and the objects index."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import sqlalchemy as sa

from nbops.core import catalog as cat


def object_digests(conn: sa.Connection) -> list[str]:
    """Every digest in the objects index."""
    return list(conn.execute(sa.select(cat.objects.c.digest)).scalars())


def live_digests(conn: sa.Connection) -> set[str]:
    """Every object digest that a stored version or commit refers to."""
    live: set[str] = set()
    for table in (cat.snapshot_columns, cat.feature_commit_columns):
        live.update(conn.execute(sa.select(table.c.object_digest).distinct()).scalars())
    return live


def drop_object_rows(conn: sa.Connection, digests: Iterable[str]) -> None:
    """Remove ``digests`` from the objects index (500 per statement)."""
    stale = list(digests)
    for start in range(0, len(stale), 500):
        conn.execute(cat.objects.delete().where(cat.objects.c.digest.in_(stale[start : start + 500])))


def stored_versions(conn: sa.Connection) -> list[tuple[str, str, bytes, list[str]]]:
    """Every snapshot version and feature commit: ``(label, digest, Arrow schema bytes, column digests)``.

    Labels are ``name@version`` and ``group:version@commit``; columns are in order.
    """
    versions: list[tuple[str, str, bytes, list[str]]] = []
    snapshot_columns: dict[int, list[str]] = {}
    for sid, digest in conn.execute(
        sa.select(cat.snapshot_columns.c.snapshot_id, cat.snapshot_columns.c.object_digest).order_by(
            cat.snapshot_columns.c.snapshot_id, cat.snapshot_columns.c.position
        )
    ):
        snapshot_columns.setdefault(sid, []).append(digest)
    for row in conn.execute(
        sa.select(
            cat.snapshots.c.id,
            cat.datasets.c.name,
            cat.snapshots.c.version,
            cat.snapshots.c.digest,
            cat.snapshots.c.arrow_schema,
        ).join(cat.datasets, cat.datasets.c.id == cat.snapshots.c.dataset_id)
    ):
        versions.append((f"{row.name}@{row.version}", row.digest, row.arrow_schema, snapshot_columns.get(row.id, [])))

    commit_columns: dict[int, list[str]] = {}
    fc = cat.feature_commit_columns
    for cid, digest in conn.execute(
        sa.select(fc.c.commit_id, fc.c.object_digest).order_by(fc.c.commit_id, fc.c.position)
    ):
        commit_columns.setdefault(cid, []).append(digest)
    c, v, g = cat.feature_commits, cat.feature_group_versions, cat.feature_groups
    for commit in conn.execute(
        sa.select(c.c.id, g.c.name, v.c.version, c.c.commit_no, c.c.digest, c.c.arrow_schema)
        .join(v, v.c.id == c.c.group_version_id)
        .join(g, g.c.id == v.c.group_id)
    ):
        label = f"{commit.name}:{commit.version}@{commit.commit_no}"
        versions.append((label, commit.digest, commit.arrow_schema, commit_columns.get(commit.id, [])))
    return versions


def referenced_columns(conn: sa.Connection) -> Iterator[tuple[bytes | None, int, str]]:
    """Each column a version or commit refers to: ``(its owner's Arrow schema bytes, position, object digest)``."""
    for table, columns, key in (
        (cat.snapshots, cat.snapshot_columns, cat.snapshot_columns.c.snapshot_id),
        (cat.feature_commits, cat.feature_commit_columns, cat.feature_commit_columns.c.commit_id),
    ):
        schemas = {r.id: r.arrow_schema for r in conn.execute(sa.select(table.c.id, table.c.arrow_schema))}
        for owner, position, digest in conn.execute(sa.select(key, columns.c.position, columns.c.object_digest)):
            yield schemas.get(owner), position, digest
