"""The embedded catalog: a SQLite file, ``catalog.db`` in the store folder.

WAL (readers never block the writer), a busy timeout, and ``BEGIN
IMMEDIATE`` for writes: the database's one write lock is taken at the start
of every write transaction, so writers of anything run one at a time.  A file
that is not an nbops catalog is refused and left as it is; a new one is built
under a temporary name and linked into place whole.
"""

from __future__ import annotations

from contextlib import suppress
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine

from nbops.core._sqlite import use_wal
from nbops.core.catalog.base import (
    APPLICATION_ID,
    BUSY_TIMEOUT_SECONDS,
    CATALOG_FILE,
    CORE_TABLES,
    Catalog,
    _first_line,
)
from nbops.errors import CatalogError

_SQLITE_HEADER = b"SQLite format 3\x00"
_RESTORE_HINT = (
    "nbops leaves it as it is. Restore the file from a backup, or open another folder "
    "(a new store is made in a folder that does not exist or is empty)"
)


class SqliteCatalog(Catalog):
    """The catalog in one SQLite file (the embedded ``catalog.db``)."""

    backend = "sqlite"

    @classmethod
    def for_store_root(cls, root: Path) -> Catalog:
        """The embedded catalog of the store folder ``root``, created if the folder has none.

        An existing file must be an nbops catalog (:func:`check_catalog_file`);
        a new one is built under a temporary name and linked into place whole,
        so that ``catalog.db`` never exists half made (and an empty file is
        never a store being created, but a damaged one).
        """
        path = root / CATALOG_FILE
        if not path.exists():
            create_catalog_file(path)
        check_catalog_file(path)
        try:
            return cls(f"sqlite:///{path}")
        except sa.exc.DatabaseError as exc:
            raise CatalogError(f"{path} is damaged ({_first_line(exc.orig or exc)}); {_RESTORE_HINT}") from None

    @staticmethod
    def create_engine(url: sa.URL) -> Engine:
        """An engine whose connections use WAL and a busy timeout, and begin writes with ``BEGIN IMMEDIATE``."""
        engine = sa.create_engine(url, connect_args={"timeout": BUSY_TIMEOUT_SECONDS, "check_same_thread": False})

        @event.listens_for(engine, "connect")
        def _on_connect(dbapi_connection: Any, _record: Any) -> None:
            # Let SQLAlchemy, not the driver, decide where transactions begin.
            dbapi_connection.isolation_level = None
            cursor = dbapi_connection.cursor()
            cursor.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_SECONDS * 1000}")
            cursor.execute("PRAGMA synchronous = NORMAL")
            cursor.execute("PRAGMA foreign_keys = ON")
            cursor.close()
            use_wal(dbapi_connection, BUSY_TIMEOUT_SECONDS)

        @event.listens_for(engine, "begin")
        def _on_begin(conn: Connection) -> None:
            if conn.get_execution_options().get("nbops_write"):
                conn.exec_driver_sql("BEGIN IMMEDIATE")
            else:
                conn.exec_driver_sql("BEGIN")

        return engine

    def describe(self) -> str:
        """The catalog file, for messages."""
        return f"the catalog {self._url.database}"

    def lock(self, conn: Connection, names: tuple[tuple[str, str], ...]) -> None:
        """Nothing more: ``BEGIN IMMEDIATE`` took the database's one write lock."""

    def insert_ignore(self, conn: Connection, table: sa.Table, rows: list[dict[str, Any]]) -> None:
        """Insert rows, skipping those whose primary or unique key exists (race-free)."""
        if not rows:
            return
        from sqlalchemy.dialects.sqlite import insert

        conn.execute(insert(table).on_conflict_do_nothing(), rows)

    def storage_problems(self, conn: Connection) -> tuple[list[str], bool]:
        """SQLite's ``PRAGMA quick_check`` and foreign-key check."""
        problems: list[str] = []
        try:
            checks = [row[0] for row in conn.exec_driver_sql("PRAGMA quick_check").fetchall()]
            if checks != ["ok"]:
                problems += [f"quick_check: {c}" for c in checks[:20]]
            bad_keys = conn.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
            problems += [f"foreign key: row {r[1]} of {r[0]} refers to a missing {r[2]} row" for r in bad_keys[:20]]
        except sa.exc.DatabaseError as exc:
            return [f"the database cannot be read: {_first_line(exc.orig or exc)}"], False
        return problems, True

    def after_migrations(self, conn: Connection) -> None:
        """Set the file's application id, which says "an nbops catalog" to :func:`check_catalog_file`."""
        conn.exec_driver_sql(f"PRAGMA application_id = {APPLICATION_ID}")


def check_catalog_file(path: Path) -> None:
    """Refuse, with one line naming the file, anything at ``path`` that is not an nbops SQLite catalog.

    Empty (0 bytes), not SQLite at all, SQLite but another program's
    database, or SQLite that cannot be read: each is a :class:`CatalogError`,
    and the file is only read (opened read-only), never migrated or
    initialised over.
    """
    import sqlite3

    if path.is_symlink() or not path.is_file():
        raise CatalogError(f"{path} is not a regular file; {_RESTORE_HINT}")
    with open(path, "rb") as f:
        header = f.read(100)
    if not header:
        raise CatalogError(f"{path} is empty (0 bytes), so it is not an nbops catalog; {_RESTORE_HINT}")
    if not header.startswith(_SQLITE_HEADER) or len(header) < 100:
        raise CatalogError(f"{path} is not a SQLite database (corrupt, or another kind of file); {_RESTORE_HINT}")
    application_id = int.from_bytes(header[68:72], "big")
    try:
        # Read-only and without the WAL index, so that looking creates no file beside it either.
        conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro&immutable=1", uri=True)
        try:
            tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            revision = (
                conn.execute("SELECT version_num FROM alembic_version").fetchone()
                if "alembic_version" in tables
                else None
            )
        finally:
            conn.close()
    except sqlite3.DatabaseError as exc:
        raise CatalogError(f"{path} is damaged ({_first_line(exc)}); {_RESTORE_HINT}") from None
    if application_id == APPLICATION_ID:
        return
    if application_id != 0 or not tables >= CORE_TABLES or revision is None:
        what = f"tables: {', '.join(sorted(tables)[:8])}" if tables else "no tables"
        raise CatalogError(f"{path} is a SQLite database but not an nbops catalog ({what}); {_RESTORE_HINT}")


def create_catalog_file(path: Path) -> None:
    """Build a new catalog under a temporary name beside ``path``, then link it into place (never over a file).

    Two processes making the same new store both build one; the first link
    wins and the other's copy is dropped, so ``path`` is always whole.
    """
    import os
    import uuid

    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        SqliteCatalog(f"sqlite:///{tmp}").dispose()
        with suppress(FileExistsError):
            os.link(tmp, path)
    finally:
        for leftover in (tmp, tmp.with_name(tmp.name + "-wal"), tmp.with_name(tmp.name + "-shm")):
            leftover.unlink(missing_ok=True)
