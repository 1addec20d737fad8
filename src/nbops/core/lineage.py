"""Lineage edges: which artifact was made from which.

Artifacts are named by kind and reference, e.g. ``("snapshot", "raw_tx@3")``,
``("feature_commit", "tx_features:1@4")``, ``("run", "<id>")``,
``("model", "fraud_model@2")``, ``("pipeline", "fraud_fti@3")`` (an exported
pipeline, parent of everything it writes) or ``("training_set", "<digest>")``
(training data a run used without saving it; its digest covers its content
and its parents).  Writers add an edge from every artifact read in the same
cell (in a notebook) or since the last write (in a script) to the artifact
they write.  An artifact's parents are written once, with it: writing the
same content again adds none.

Frames carry their provenance in ``DataFrame.attrs`` (:data:`PROVENANCE`),
which runs record as inputs (see :mod:`nbops.tracking.experiments`).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from nbops.core import catalog as cat
from nbops.core.catalog import Catalog

if TYPE_CHECKING:
    import pyarrow as pa

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
        from nbops.core import audit

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
    """The artifacts ``child`` was made from, in the order they were recorded."""
    return _neighbours(catalog, child, up=True)


def children(catalog: Catalog, parent: Artifact) -> list[Artifact]:
    """The artifacts made from ``parent``, in the order they were recorded."""
    return _neighbours(catalog, parent, up=False)


def _neighbours(catalog: Catalog, artifact: Artifact, up: bool) -> list[Artifact]:
    edges = cat.lineage_edges.c
    found, given = ((edges.parent_kind, edges.parent_ref), (edges.child_kind, edges.child_ref))
    if not up:
        found, given = given, found
    with catalog.read() as conn:
        rows = conn.execute(
            sa.select(*found).where(given[0] == artifact[0], given[1] == artifact[1]).order_by(edges.id)
        ).all()
    return [(r[0], r[1]) for r in rows]


# -- provenance of frames ----------------------------------------------------------------
#: The ``DataFrame.attrs`` key naming the artifacts a frame was read or derived from.
#: pandas carries ``attrs`` through most operations (``drop``, ``df[cols]``,
#: ``df["label"]``, ``iloc``, arithmetic); ``merge`` and conversions to NumPy drop it.
PROVENANCE = "nbops_lineage"

#: Reads made in this process since the last run ended: (store root, kind, ref).
_reads_since_run: list[tuple[str, str, str]] = []


def provenance(
    store_root: object, kind: str, ref: str, parents: Iterable[Artifact] = (), rows: int | None = None
) -> dict[str, Any]:
    """One provenance entry: an artifact of the store at ``store_root``.

    ``parents`` are given only for an artifact that no catalog row describes
    yet (a ``training_set`` made without ``save_as``): a run that uses the
    frame writes those edges itself.
    """
    entry: dict[str, Any] = {"store": str(store_root), "kind": kind, "ref": ref}
    if parents:
        entry["parents"] = [[k, r] for k, r in dict.fromkeys(parents)]
    if rows is not None:
        entry["rows"] = int(rows)
    return entry


def set_provenance(frame: Any, entries: Iterable[dict[str, Any]]) -> None:
    """Say where ``frame`` came from (replacing what its ``attrs`` said)."""
    frame.attrs[PROVENANCE] = merge_provenance(entries)


def merge_provenance(*groups: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Entries of every group, each (store, kind, ref) once, first occurrence kept."""
    seen: dict[tuple[str, str, str], dict[str, Any]] = {}
    for group in groups:
        for entry in group:
            seen.setdefault((entry["store"], entry["kind"], entry["ref"]), entry)
    return list(seen.values())


def provenance_of(value: object) -> list[dict[str, Any]] | None:
    """The provenance a pandas object carries; None when ``value`` is not one or carries none."""
    if not type(value).__module__.startswith("pandas"):
        return None
    attrs = getattr(value, "attrs", None)
    entries = attrs.get(PROVENANCE) if isinstance(attrs, dict) else None
    if not isinstance(entries, list):
        return None
    valid = [
        e for e in entries if isinstance(e, dict) and all(isinstance(e.get(k), str) for k in ("store", "kind", "ref"))
    ]
    return valid or None


def note_process_read(store_root: object, kind: str, ref: str) -> None:
    """Remember a read for runs that find no other input (see ``nbops.tracking.experiments``)."""
    item = (str(store_root), kind, ref)
    if item not in _reads_since_run:
        _reads_since_run.append(item)


def reads_since_run() -> list[tuple[str, str, str]]:
    """The (store root, kind, ref) read in this process since the last run ended, first read first."""
    return list(_reads_since_run)


def forget_process_reads() -> None:
    """A run ended: the next run's fallback starts afresh."""
    _reads_since_run.clear()


def frame_parents(store_root: object, data: object) -> list[Artifact]:
    """The artifacts of the store at ``store_root`` that ``data`` was read or derived from.

    A frame built from a loaded snapshot or feature group, or from a frame
    written earlier (``raw`` after ``store.snapshot(raw, "raw")``), names it
    in its provenance; a ``training_set`` (training data not saved) is
    replaced by its own parents, which no catalog row describes.
    """
    parents: list[Artifact] = []
    for entry in provenance_of(data) or []:
        if entry["store"] != str(store_root):
            continue
        if entry["kind"] == "training_set":
            parents += [(str(k), str(r)) for k, r in entry.get("parents", [])]
        else:
            parents.append((entry["kind"], entry["ref"]))
    return list(dict.fromkeys(parents))


def mark_written(data: object, store_root: object, kind: str, ref: str) -> None:
    """Say in a written frame's provenance that it is now ``kind:ref`` of the store: frames derived
    from it afterwards (``feats = raw.assign(...)`` after ``store.snapshot(raw, "raw")``) name it."""
    if type(data).__module__.startswith("pandas") and isinstance(getattr(data, "attrs", None), dict):
        set_provenance(data, [provenance(store_root, kind, ref)])


def without_provenance(table: pa.Table) -> pa.Table:
    """``table`` without the frame's provenance that pyarrow copies from ``DataFrame.attrs``.

    Where a frame came from is not part of its data: a stored version says
    it through its lineage, and a loaded frame gets its own provenance.
    """
    import json

    metadata = table.schema.metadata or {}
    raw = metadata.get(b"pandas")
    if raw is None or PROVENANCE.encode() not in raw:
        return table
    pandas_meta = json.loads(raw)
    attributes = pandas_meta.get("attributes")
    if not isinstance(attributes, dict) or PROVENANCE not in attributes:
        return table
    attributes.pop(PROVENANCE)
    if not attributes:
        pandas_meta.pop("attributes")
    return table.replace_schema_metadata({**metadata, b"pandas": json.dumps(pandas_meta).encode()})
