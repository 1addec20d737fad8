"""The audit trail: who wrote or read which version of what, and when; and read-only mode.

Every write of a snapshot, feature commit, training set (a snapshot saved by
``training_data(save_as=)``), run or registered model adds a row in the same
catalog transaction as the write itself (through :func:`nbops.core.lineage.add_edges`,
which every writer calls), so a version never exists without its audit row.
Every read of a named snapshot or feature group version through nbops adds a
row in a transaction of its own (reads have no transaction to share).

Who: ``NBOPS_IDENTITY`` when set (a service account, a pipeline's name),
else the operating-system user; the host name beside it.  When: UTC.  The
trail holds no credentials: names are validated (no URL can be one), and a
URL in an identity is recorded redacted (:func:`nbops.core.redact.redact_text`).

Read-only mode: with ``NBOPS_READONLY=1`` every write is refused with
:class:`ReadOnlyError` before anything is written (and reads are not
audited, since an audit row is a write).  A PostgreSQL catalog reached with
read-only credentials refuses writes the same way, in the database's words.
"""

from __future__ import annotations

import datetime as dt
import getpass
import os
import socket
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from nbops.core import catalog as cat
from nbops.core.catalog import READONLY_ENV, check_writable, readonly  # noqa: F401 (part of this module's API)
from nbops.errors import ReadOnlyError

if TYPE_CHECKING:
    from nbops.store import Store

IDENTITY_ENV = "NBOPS_IDENTITY"

#: Artifact kinds whose reads are audited (writes of every kind are).
READ_KINDS = ("snapshot", "feature_commit")

audit_events = sa.Table(
    "audit_events",
    cat.metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("at", sa.DateTime, nullable=False),  # naive UTC, as everywhere in the catalog
    sa.Column("actor", sa.String(256), nullable=False),
    sa.Column("host", sa.String(256), nullable=False),
    sa.Column("action", sa.String(16), nullable=False),  # "write" or "read"
    sa.Column("kind", sa.String(32), nullable=False),  # snapshot, feature_commit, run, model, pipeline
    sa.Column("name", sa.String(512), nullable=False),  # dataset, group, run id, model, pipeline
    sa.Column("version", sa.String(64)),  # "3", "1@4" (version@commit), "2" (model); none for runs
    sa.Index("ix_audit_events_name_at", "name", "at"),
)


def identity() -> tuple[str, str]:
    """(actor, host) recorded with each event."""
    actor = os.environ.get(IDENTITY_ENV, "").strip()
    if not actor:
        try:
            actor = getpass.getuser()
        except (KeyError, OSError):  # no user name for this uid (some containers)
            actor = f"uid:{os.getuid()}" if hasattr(os, "getuid") else "unknown"
    from nbops.core.redact import redact_text

    return redact_text(actor)[:256], socket.gethostname()[:256]


def split_ref(kind: str, ref: str) -> tuple[str, str | None]:
    """(name, version) of an artifact reference: ``raw@3`` -> (raw, 3), ``tx:1@4`` -> (tx, 1@4)."""
    if kind == "run":
        return ref, None
    if kind == "feature_commit":
        group, _, rest = ref.partition(":")
        return group, rest or None
    name, sep, version = ref.rpartition("@")
    return (name, version) if sep else (ref, None)


def event_row(action: str, kind: str, ref: str, at: dt.datetime | None = None) -> dict[str, Any]:
    """One row of ``audit_events``: who (this process's identity), when (now, UTC, unless ``at``), what."""
    actor, host = identity()
    name, version = split_ref(kind, ref)
    return {
        "at": at or cat.utcnow(),
        "actor": actor,
        "host": host,
        "action": action,
        "kind": kind,
        "name": name,
        "version": version,
    }


def record_write(conn: sa.Connection, kind: str, ref: str, at: dt.datetime) -> None:
    """Audit a write inside the writer's own catalog transaction."""
    conn.execute(sa.insert(audit_events), [event_row("write", kind, ref, at)])


def record_read(store: Store, kind: str, ref: str) -> None:
    """Audit a read of a named snapshot or feature commit (its own short transaction)."""
    if kind not in READ_KINDS or readonly():
        return
    # Named, so that on PostgreSQL a read waits for no writer of other names.
    with store.catalog.write(("audit", ref)) as conn:
        conn.execute(sa.insert(audit_events), [event_row("read", kind, ref)])


def event_rows(conn: sa.Connection, name: str | None, since: dt.datetime | None) -> list[Any]:
    """The audit rows, oldest first; of one ``name`` and/or at or after ``since`` (naive UTC)."""
    query = sa.select(audit_events).order_by(audit_events.c.id)
    if name is not None:
        query = query.where(audit_events.c.name == name)
    if since is not None:
        query = query.where(audit_events.c.at >= since)
    return list(conn.execute(query).all())


__all__ = [
    "IDENTITY_ENV",
    "READONLY_ENV",
    "ReadOnlyError",
    "audit_events",
    "check_writable",
    "event_row",
    "event_rows",
    "identity",
    "readonly",
    "record_read",
    "record_write",
    "split_ref",
]
