"""Lineage edges: which artifact was made from which.

Artifacts are named by kind and reference, e.g. ``("snapshot", "raw_tx@3")``,
``("feature_commit", "tx_features:1@4")``, ``("run", "<id>")``,
``("model", "fraud_model@2")`` or ``("pipeline", "fraud_fti@3")`` (an exported
pipeline, parent of everything it writes).  Writers add an edge from every
artifact read in the same cell (in a notebook) or since the last write (in a
script) to the artifact they write.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable

import sqlalchemy as sa

from nbops import catalog as cat
from nbops.catalog import Catalog

Artifact = tuple[str, str]  # (kind, reference)


def add_edges(
    catalog: Catalog,
    conn: sa.Connection,
    child: Artifact,
    parents: Iterable[Artifact],
    now: dt.datetime,
    written: bool = True,
) -> None:
    """Link ``child`` to its ``parents`` inside the writer's transaction.

    Every writer calls this once for what it writes (``written``), so it is
    also where the write is audited, in the same transaction.  Pass
    ``written=False`` to add edges to an artifact written earlier.
    """
    if written:
        from nbops import audit

        audit.record_write(conn, child[0], child[1], now)
    rows = [
        {"parent_kind": pk, "parent_ref": pr, "child_kind": child[0], "child_ref": child[1], "created": now}
        for pk, pr in dict.fromkeys(parents)
        if (pk, pr) != child
    ]
    catalog.insert_ignore(conn, cat.lineage_edges, rows)


def made_by(context: dict[str, object]) -> list[Artifact]:
    """The pipeline writing now, if any (exported modules run inside ``nbops.pipeline``)."""
    pipeline = context.get("pipeline")
    return [("pipeline", str(pipeline))] if pipeline else []


def parents(catalog: Catalog, child: Artifact) -> list[Artifact]:
    with catalog.read() as conn:
        rows = conn.execute(
            sa.select(cat.lineage_edges.c.parent_kind, cat.lineage_edges.c.parent_ref)
            .where(cat.lineage_edges.c.child_kind == child[0], cat.lineage_edges.c.child_ref == child[1])
            .order_by(cat.lineage_edges.c.id)
        ).all()
    return [(r[0], r[1]) for r in rows]


def children(catalog: Catalog, parent: Artifact) -> list[Artifact]:
    with catalog.read() as conn:
        rows = conn.execute(
            sa.select(cat.lineage_edges.c.child_kind, cat.lineage_edges.c.child_ref)
            .where(cat.lineage_edges.c.parent_kind == parent[0], cat.lineage_edges.c.parent_ref == parent[1])
            .order_by(cat.lineage_edges.c.id)
        ).all()
    return [(r[0], r[1]) for r in rows]
