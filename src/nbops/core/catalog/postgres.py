"""The catalog on a PostgreSQL server, shared by a team (``nbops.open(catalog="postgresql://...")``).

Writers of the same thing are serialised by transaction-scoped advisory
locks taken first thing in the transaction: ``write(("dataset", name))``
locks that one name (and shares a catalog-wide lock), ``write()`` without a
name takes the catalog-wide lock exclusively, like SQLite's ``BEGIN
IMMEDIATE``.  Under READ COMMITTED every statement after the lock sees what
earlier holders committed.  The unique constraints on (parent, number) stay
as the last line of defence.
"""

from __future__ import annotations

import hashlib
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from nbops.core.catalog.base import CONNECT_TIMEOUT_SECONDS, Catalog, _conflict_columns
from nbops.errors import StoreError


class PostgresCatalog(Catalog):
    """The catalog in a PostgreSQL database, through psycopg 3."""

    backend = "postgresql"

    @staticmethod
    def create_engine(url: sa.URL) -> Engine:
        """An engine that checks connections before use and gives up on a silent server after a timeout."""
        if url.drivername == "postgresql+psycopg":
            try:
                import psycopg  # noqa: F401 - imported here only to say how to install it
            except ImportError:
                raise StoreError(
                    "a PostgreSQL catalog needs the psycopg driver: pip install 'nbops[postgres]'"
                ) from None
        return sa.create_engine(
            url,
            pool_pre_ping=True,
            connect_args={"connect_timeout": CONNECT_TIMEOUT_SECONDS, "application_name": "nbops"},
        )

    def describe(self) -> str:
        """The database, server and user (no password), for messages."""
        host = self._url.host or self._url.query.get("host") or "localhost"
        return (
            f"the catalog database {self._url.database!r} on {host}:{self._url.port or 5432}"
            f" as user {self._url.username!r}"
        )

    def lock(self, conn: Connection, names: tuple[tuple[str, str], ...]) -> None:
        """Advisory locks on ``names`` (sharing the catalog-wide one), or the catalog-wide one alone."""
        _advisory_locks(conn, names)

    def insert_ignore(self, conn: Connection, table: sa.Table, rows: list[dict[str, Any]]) -> None:
        """Insert rows, skipping those whose primary or unique key exists (race-free)."""
        if not rows:
            return
        from sqlalchemy.dialects.postgresql import insert

        # Two transactions inserting the same keys in different orders would
        # wait for each other's uncommitted rows: always insert in key order.
        key = _conflict_columns(table)
        rows = sorted(rows, key=lambda row: tuple(str(row.get(c)) for c in key))
        conn.execute(insert(table).on_conflict_do_nothing(), rows)

    def after_migrations(self, conn: Connection) -> None:
        """Nothing to mark: a PostgreSQL catalog is known by its tables and revision."""

    def connect_error(self, exc: sa.exc.DBAPIError) -> Exception | None:
        """ "cannot connect to ...", in the server's words, with where to give a password."""
        reason = self._reason(exc)
        hint = "; give the password in PGPASSWORD, ~/.pgpass or the catalog URL" if "password" in reason else ""
        return StoreError(f"cannot connect to {self.describe()}: {reason}{hint}")


def _lock_key(kind: str, name: str) -> int:
    """A 64-bit advisory-lock key for one name (a collision only serialises two writers)."""
    digest = hashlib.blake2b(f"nbops\0{kind}\0{name}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


#: Held shared by every named write, exclusively by unnamed writes and migrations.
_CATALOG_LOCK = _lock_key("catalog", "")


def _advisory_locks(conn: Connection, names: tuple[tuple[str, str], ...]) -> None:
    if not names:
        conn.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": _CATALOG_LOCK})
        return
    conn.execute(sa.text("SELECT pg_advisory_xact_lock_shared(:key)"), {"key": _CATALOG_LOCK})
    # Always in the same order, so that two multi-name writers cannot deadlock.
    for key in sorted({_lock_key(kind, name) for kind, name in names}):
        conn.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": key})
