"""``nbops migrate --to URL``: move an embedded store's catalog onto a PostgreSQL server.

The embedded catalog (``<store>/catalog.db``) is copied, row for row and with
its primary keys, into an empty PostgreSQL database brought to the head
schema; PostgreSQL's sequences are then moved past the copied keys, so the
next version, commit or audit row is numbered after the last one.  Then
``store.json`` names the new catalog (without the password) and
``catalog.db`` is renamed to ``catalog.db.migrated-<UTC time>``, so the
folder opens on PostgreSQL from then on.  The data objects stay where they are::

    from nbops.admin.migrate import migrate
    print(migrate(".nbops", "postgresql://etl@db.internal:5432/nbops").text())

Nothing changes unless everything can: the copy is one PostgreSQL
transaction whose row counts are compared with the source before it commits,
taken while the SQLite write lock is held (so no writer slips a version in
half-way), and ``store.verify()`` runs on the migrated store before the old
catalog file is renamed; a failure there undoes the marker and the copy.

MLflow's runs are moved by :mod:`nbops.admin.migrate_runs` (``--runs-to``), to
the database of a team's ``mlflow server``.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import Connection

import nbops.core.audit  # noqa: F401 - registers audit_events in the catalog's metadata
from nbops.core import catalog as cat
from nbops.core.audit import check_writable
from nbops.core.redact import redact_text, redact_url, url_secrets
from nbops.errors import StoreError

CATALOG_FILE = "catalog.db"
MARKER_FILE = "store.json"
#: SQLite's companions of a WAL-mode database, renamed along with it.
_SIDE_FILES = ("-wal", "-shm")
#: Rows per INSERT batch: large enough to amortise round trips, small enough to bound memory.
_BATCH_ROWS = 5_000
#: Tables of the embedded catalog that are not catalog data.
_NOT_COPIED = {"alembic_version"}


@dataclass
class MigrationReport:
    """What ``migrate`` copied (or, with ``dry_run``, would copy)."""

    root: Path
    target: str  # URL without password
    rows: dict[str, int]
    dry_run: bool
    renamed: list[tuple[str, str]] = field(default_factory=list)
    mlflow_db: bool = False

    @property
    def total_rows(self) -> int:
        """Rows copied (or, in a dry run, to copy) over every table."""
        return sum(self.rows.values())

    def text(self) -> str:
        """The report as ``nbops migrate`` prints it: rows per table, the checks, and what was written and renamed."""
        verb = "would copy" if self.dry_run else "copied"
        lines = [f"{'dry run: ' if self.dry_run else ''}{verb} the catalog of {self.root} to {self.target}:"]
        width = max(len(name) for name in self.rows)
        lines += [f"  {name:<{width}}  {count:>10,} rows" for name, count in self.rows.items()]
        lines.append(f"  {'total':<{width}}  {self.total_rows:>10,} rows")
        if self.dry_run:
            lines.append(
                f"would write {self.root / MARKER_FILE} and rename {CATALOG_FILE} to "
                f"{CATALOG_FILE}.migrated-<time>; nothing was changed"
            )
        else:
            lines.append("verified: row counts match and every object and version re-hashes")
            lines.append(f"wrote {self.root / MARKER_FILE}; the store now opens on {self.target}")
            lines += [f"renamed {old} -> {new}" for old, new in self.renamed]
            lines.append("objects stay in the store folder; give the password with PGPASSWORD or ~/.pgpass")
        if self.mlflow_db:
            lines.append(
                "MLflow runs stay in mlflow.db in the store folder: keep using it, or move them to a team's "
                "tracking server with nbops migrate --runs-to URL --artifacts-to DEST"
            )
        return "\n".join(lines)


def migrate(root: str | os.PathLike[str], to: str, dry_run: bool = False) -> MigrationReport:
    """Move the embedded catalog of the store at ``root`` into the empty PostgreSQL database ``to``.

    Refuses, changing nothing, when the process is read-only, the store is
    already on a server catalog, its schema is not at this nbops's head, or
    the target database holds nbops rows.  ``dry_run`` runs every check and
    counts the rows, and writes nothing anywhere.
    """
    root = Path(root).expanduser().resolve()
    url = cat.catalog_url(to)
    target = redact_url(cat.public_url(url))  # no password, nor one given as ?password=
    if url.get_backend_name() != "postgresql":
        raise StoreError(f"--to must be a postgresql://user@host:port/dbname URL, not {target}")
    check_writable(f"migrate {root} to {target}")
    source_file = _check_source(root)
    with _sqlite_engine(source_file) as engine, engine.connect() as conn:
        rows = _check_source_schema(conn, source_file)
    _check_target_empty(url, target)
    report = MigrationReport(root, target, rows, dry_run, mlflow_db=(root / "mlflow.db").exists())
    if dry_run:
        return report

    destination = cat.open_catalog(url)  # creates the head schema on an empty database
    source = cat.Catalog.for_store_root(root)  # at head (checked), so this migrates nothing
    try:
        # The SQLite write lock is held from the copy until the marker is written,
        # so no write to the embedded catalog can land after the copy was taken.
        with source.write() as src:
            with destination.write() as dst:
                _refuse_rows(dst, target)  # again, under the lock: another migration may have run
                expected = _count(src)  # under the lock: what the copy must hold
                copied = _copy(src, dst)
                _reset_sequences(dst)
                if copied != expected:
                    raise StoreError(
                        f"the copy does not match the source (rows per table: {copied} in "
                        f"{target}, {expected} in {source_file}); nothing was changed"
                    )
                report.rows = expected
            try:
                _publish(root, url, target)
            except BaseException:
                _undo(root, destination)
                raise
    finally:
        source.dispose()
        destination.dispose()
    report.renamed = _retire(root, source_file)
    return report


# -- checks ------------------------------------------------------------------------------------
def _check_source(root: Path) -> Path:
    if (root / MARKER_FILE).exists():
        from nbops.store import read_catalog_marker

        raise StoreError(
            f"the store {root} is already on the server catalog {read_catalog_marker(root)} ({MARKER_FILE}); "
            "there is nothing to migrate"
        )
    source_file = root / CATALOG_FILE
    if not source_file.is_file():
        raise StoreError(
            f"{root} is not an nbops store with an embedded catalog (no {CATALOG_FILE}); "
            "pass --store PATH, the .nbops folder to migrate"
        )
    return source_file


@contextmanager
def _sqlite_engine(path: Path) -> Iterator[sa.Engine]:
    """A plain engine on the catalog file: reading its revision must not upgrade it, as Catalog() would."""
    engine = sa.create_engine(f"sqlite:///{path}")
    try:
        yield engine
    finally:
        engine.dispose()


def _check_source_schema(conn: Connection, path: Path) -> dict[str, int]:
    revision = cat.current_revision(conn)
    if revision != cat.SCHEMA_HEAD:
        if revision is not None and revision not in cat.KNOWN_REVISIONS:
            raise StoreError(
                f"{path} has schema revision {revision!r}, written by a newer nbops "
                f"(this one knows up to {cat.SCHEMA_HEAD!r}); upgrade nbops, then migrate"
            )
        raise StoreError(
            f"{path} has schema revision {revision!r}, older than this nbops's {cat.SCHEMA_HEAD!r}; "
            f"open it once with this nbops to upgrade it (e.g. nbops --store {path.parent} ls), then migrate"
        )
    inspector = sa.inspect(conn)
    known = {t.name: t for t in cat.metadata.sorted_tables}
    # A table or column this nbops does not know would be silently left behind.
    unknown = sorted(set(inspector.get_table_names()) - set(known) - _NOT_COPIED)
    if unknown:
        raise StoreError(
            f"{path} has tables this nbops does not know ({', '.join(unknown)}); "
            "migrate with the nbops that created them"
        )
    for name, table in known.items():
        extra = sorted({c["name"] for c in inspector.get_columns(name)} - set(table.columns.keys()))
        if extra:
            raise StoreError(f"{path}: table {name} has columns this nbops does not know ({', '.join(extra)})")
    return _count(conn)


def _check_target_empty(url: sa.URL, target: str) -> None:
    """Refuse a target that holds nbops rows, without creating anything in it."""
    engine = sa.create_engine(
        url, connect_args={"connect_timeout": cat.CONNECT_TIMEOUT_SECONDS, "application_name": "nbops"}
    )
    try:
        with engine.connect() as conn:
            _refuse_rows(conn, target)
    except (sa.exc.OperationalError, sa.exc.InterfaceError) as exc:
        reason = " ".join(str(exc.orig or exc).split()).removeprefix("connection failed: ")
        reason = redact_text(reason, *url_secrets(url.render_as_string(hide_password=False)))
        raise StoreError(f"cannot connect to {target}: {reason}") from None
    finally:
        engine.dispose()


def _refuse_rows(conn: Connection, target: str) -> None:
    present = set(sa.inspect(conn).get_table_names())
    revision = cat.current_revision(conn) if "alembic_version" in present else None
    if revision is not None and revision not in cat.KNOWN_REVISIONS:
        raise StoreError(
            f"{target} has schema revision {revision!r}, written by a newer nbops; migrate into an empty database"
        )
    held = {
        t.name: n
        for t in cat.metadata.sorted_tables
        if t.name in present
        if (n := conn.execute(sa.select(sa.func.count()).select_from(t)).scalar_one())
    }
    if held:
        listed = ", ".join(f"{n} in {name}" for name, n in held.items())
        raise StoreError(
            f"{target} is not empty (rows: {listed}); migrate into a new, empty database "
            "(CREATE DATABASE ... OWNER ...)"
        )


# -- copy --------------------------------------------------------------------------------------
def _count(conn: Connection) -> dict[str, int]:
    return {
        t.name: conn.execute(sa.select(sa.func.count()).select_from(t)).scalar_one() for t in cat.metadata.sorted_tables
    }


def _copy(src: Connection, dst: Connection) -> dict[str, int]:
    """Every row of every table, parents before children, keys as they are; row counts in ``dst``."""
    for table in cat.metadata.sorted_tables:
        result = src.execution_options(yield_per=_BATCH_ROWS).execute(
            sa.select(table).order_by(*table.primary_key.columns)
        )
        for batch in result.mappings().partitions():
            dst.execute(sa.insert(table), [dict(row) for row in batch])
    return _count(dst)


def _reset_sequences(dst: Connection) -> None:
    """Move each serial key's sequence past the copied keys (inserting with explicit keys does not)."""
    for table in cat.metadata.sorted_tables:
        column = table.autoincrement_column
        if column is None:
            continue
        dst.execute(
            sa.text(
                "SELECT setval(pg_get_serial_sequence(:table, :column), "
                f"COALESCE((SELECT MAX({column.name}) FROM {table.name}), 0) + 1, false)"
            ),
            {"table": table.name, "column": column.name},
        )


# -- publish -----------------------------------------------------------------------------------
def _publish(root: Path, url: sa.URL, target: str) -> None:
    """Write ``store.json``, then open the store through it and verify every object and version."""
    from nbops.store import Store, write_catalog_marker

    write_catalog_marker(root, target)
    with Store(root, catalog=url.render_as_string(hide_password=False)) as store:
        report = store.verify()
    if not report.ok:
        raise StoreError(f"the migrated store does not verify; nothing was changed:\n{report.text()}")


def _undo(root: Path, destination: cat.Catalog) -> None:
    (root / MARKER_FILE).unlink(missing_ok=True)
    with destination.write() as dst:
        for table in reversed(cat.metadata.sorted_tables):
            dst.execute(sa.delete(table))


def _retire(root: Path, source_file: Path) -> list[tuple[str, str]]:
    """Rename ``catalog.db`` and its WAL files aside: kept, but no longer the store's catalog."""
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    renamed = []
    for suffix in ("", *_SIDE_FILES):
        old = root / f"{CATALOG_FILE}{suffix}"
        if old.exists():
            new = root / f"{CATALOG_FILE}.migrated-{stamp}{suffix}"
            old.rename(new)
            renamed.append((old.name, new.name))
    return renamed


__all__ = ["MigrationReport", "migrate"]
