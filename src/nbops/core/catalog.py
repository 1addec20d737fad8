"""The catalog: every dataset, version and object the store holds, in SQL.

The catalog is the commit point of the store: data files are published first,
then one catalog transaction makes a version visible.  It goes through
SQLAlchemy Core so that the same queries and the same Alembic migrations
(``nbops/migrations``) run on the embedded SQLite file and on a shared
PostgreSQL server; opening a catalog upgrades it to the head revision under
the write lock.

Every write transaction reads the latest version of something and inserts the
next one, so writers of the same thing must be serialised:

- on SQLite, WAL (readers never block the writer), a busy timeout, and
  ``BEGIN IMMEDIATE``: the database's one write lock is taken at the start;
- on PostgreSQL, transaction-scoped advisory locks taken first thing in the
  transaction: ``write(("dataset", name))`` locks that one name (and shares a
  catalog-wide lock), ``write()`` without a name takes the catalog-wide lock
  exclusively, like ``BEGIN IMMEDIATE``.  Under READ COMMITTED every statement
  after the lock sees what earlier holders committed.  The unique constraints
  on (parent, number) stay as the last line of defence.

Passwords: ``Catalog.url`` and every message name the server, the database and
the user, never the password (see :func:`public_url`).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine

from nbops.core._sqlite import use_wal
from nbops.errors import CatalogError, ReadOnlyError, StoreError

#: The Alembic revision this version of nbops reads and writes.
SCHEMA_HEAD = "0004"
#: Every revision this nbops can upgrade from (a catalog at another was written by a newer nbops).
KNOWN_REVISIONS = ("0001", "0002", "0003", "0004")
BUSY_TIMEOUT_SECONDS = 60
#: The embedded catalog's file name inside a store folder.
CATALOG_FILE = "catalog.db"
#: SQLite's application id of an nbops catalog ("nbop"), set when nbops creates or upgrades one.
APPLICATION_ID = 0x6E626F70
#: Tables every nbops catalog has had since its first revision.
CORE_TABLES = frozenset({"alembic_version", "datasets", "objects", "snapshots", "snapshot_columns"})
_SQLITE_HEADER = b"SQLite format 3\x00"
_RESTORE_HINT = (
    "nbops leaves it as it is. Restore the file from a backup, or open another folder "
    "(a new store is made in a folder that does not exist or is empty)"
)
#: How long opening waits for a PostgreSQL server that does not answer.
CONNECT_TIMEOUT_SECONDS = 10
_POSTGRES_DRIVERS = ("postgres", "postgresql", "postgresql+psycopg")

metadata = sa.MetaData()

datasets = sa.Table(
    "datasets",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("name", sa.String(128), nullable=False, unique=True),
    sa.Column("created", sa.DateTime, nullable=False),
)

objects = sa.Table(
    "objects",
    metadata,
    sa.Column("digest", sa.String(32), primary_key=True),
    sa.Column("rows", sa.BigInteger, nullable=False),
    sa.Column("bytes", sa.BigInteger, nullable=False),
    sa.Column("created", sa.DateTime, nullable=False),
)

snapshots = sa.Table(
    "snapshots",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("dataset_id", sa.Integer, sa.ForeignKey("datasets.id"), nullable=False),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("digest", sa.String(32), nullable=False),
    sa.Column("rows", sa.BigInteger, nullable=False),
    sa.Column("n_columns", sa.Integer, nullable=False),
    sa.Column("arrow_schema", sa.LargeBinary, nullable=False),
    sa.Column("message", sa.Text),
    sa.Column("author", sa.String(256)),
    sa.Column("host", sa.String(256)),
    sa.Column("bytes_written", sa.BigInteger, nullable=False),
    sa.Column("created", sa.DateTime, nullable=False),
    sa.UniqueConstraint("dataset_id", "version", name="uq_snapshots_dataset_version"),
)

snapshot_columns = sa.Table(
    "snapshot_columns",
    metadata,
    sa.Column("snapshot_id", sa.Integer, sa.ForeignKey("snapshots.id"), primary_key=True),
    sa.Column("position", sa.Integer, primary_key=True),
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("object_digest", sa.String(32), sa.ForeignKey("objects.digest"), nullable=False),
)

feature_groups = sa.Table(
    "feature_groups",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("name", sa.String(128), nullable=False, unique=True),
    sa.Column("created", sa.DateTime, nullable=False),
)

feature_group_versions = sa.Table(
    "feature_group_versions",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("group_id", sa.Integer, sa.ForeignKey("feature_groups.id"), nullable=False),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("keys", sa.Text, nullable=False),  # JSON list of key columns
    sa.Column("event_time", sa.String(256), nullable=False),
    sa.Column("arrow_schema", sa.LargeBinary, nullable=False),  # without pandas metadata
    sa.Column("online", sa.Boolean, nullable=False),
    sa.Column("description", sa.Text),
    sa.Column("expectations", sa.Text),  # JSON, see nbops.featurestore.expectations
    sa.Column("author", sa.String(256)),
    sa.Column("created", sa.DateTime, nullable=False),
    sa.UniqueConstraint("group_id", "version", name="uq_feature_group_versions"),
)

feature_commits = sa.Table(
    "feature_commits",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("group_version_id", sa.Integer, sa.ForeignKey("feature_group_versions.id"), nullable=False),
    sa.Column("commit_no", sa.Integer, nullable=False),
    sa.Column("digest", sa.String(32), nullable=False),  # of the rows this commit wrote
    sa.Column("arrow_schema", sa.LargeBinary, nullable=False),  # of those rows, with pandas metadata
    sa.Column("rows", sa.BigInteger, nullable=False),
    sa.Column("inserted", sa.BigInteger, nullable=False),
    sa.Column("updated", sa.BigInteger, nullable=False),
    sa.Column("total_rows", sa.BigInteger, nullable=False),  # visible as of this commit
    sa.Column("statistics", sa.Text),  # JSON, of the group as of this commit
    sa.Column("validation", sa.Text),  # JSON report
    sa.Column("lineage", sa.Text),  # JSON: notebook, cell hash, reads
    sa.Column("bytes_written", sa.BigInteger, nullable=False),
    sa.Column("author", sa.String(256)),
    sa.Column("host", sa.String(256)),
    sa.Column("created", sa.DateTime, nullable=False),
    sa.UniqueConstraint("group_version_id", "commit_no", name="uq_feature_commits"),
)

feature_commit_columns = sa.Table(
    "feature_commit_columns",
    metadata,
    sa.Column("commit_id", sa.Integer, sa.ForeignKey("feature_commits.id"), primary_key=True),
    sa.Column("position", sa.Integer, primary_key=True),
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("object_digest", sa.String(32), sa.ForeignKey("objects.digest"), nullable=False),
)

online_features = sa.Table(
    "online_features",
    metadata,
    sa.Column("group_version_id", sa.Integer, sa.ForeignKey("feature_group_versions.id"), primary_key=True),
    sa.Column("entity_key", sa.Text, primary_key=True),  # canonical JSON of the key values
    sa.Column("event_time_us", sa.BigInteger, nullable=False),
    sa.Column("commit_no", sa.Integer, nullable=False),
    sa.Column("feature_values", sa.Text, nullable=False),  # JSON list, in feature order
)

lineage_edges = sa.Table(
    "lineage_edges",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("parent_kind", sa.String(32), nullable=False),
    sa.Column("parent_ref", sa.String(512), nullable=False),
    sa.Column("child_kind", sa.String(32), nullable=False),
    sa.Column("child_ref", sa.String(512), nullable=False),
    sa.Column("created", sa.DateTime, nullable=False),
    sa.UniqueConstraint("parent_kind", "parent_ref", "child_kind", "child_ref", name="uq_lineage_edges"),
)

exports = sa.Table(
    "exports",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("pipeline", sa.String(128), nullable=False),  # the notebook's stem
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("digest", sa.String(64), nullable=False),  # of the generated files (version-free)
    sa.Column("notebook", sa.Text, nullable=False),
    sa.Column("notebook_sha256", sa.String(64), nullable=False),
    sa.Column("out_dir", sa.Text, nullable=False),
    sa.Column("manifest", sa.Text, nullable=False),
    sa.Column("created", sa.DateTime, nullable=False),
    sa.UniqueConstraint("pipeline", "version", name="uq_exports"),
)


def utcnow() -> dt.datetime:
    """Now, as a naive UTC datetime (the catalog stores naive UTC)."""
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


def inserted_id(result: sa.CursorResult[Any]) -> int:
    """The primary key of the one row that the single-row INSERT ``result`` added."""
    key = result.inserted_primary_key
    assert key is not None  # SQLAlchemy returns one for every single-row INSERT (and raises otherwise)
    new_id: int = key[0]
    return new_id


def as_utc(value: dt.datetime) -> dt.datetime:
    """A catalog datetime (naive UTC) as an aware UTC datetime."""
    return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


def catalog_url(url: str | sa.URL) -> sa.URL:
    """A catalog URL, checked: SQLite, or PostgreSQL through psycopg 3."""
    try:
        parsed = sa.make_url(url)
    except sa.exc.ArgumentError:
        raise StoreError(
            "the catalog must be a URL such as postgresql://user@host:5432/dbname "
            "(or 'embedded' for the SQLite file inside the store)"
        ) from None
    if parsed.drivername in _POSTGRES_DRIVERS:
        # psycopg 3 is the driver nbops installs (the postgres extra); plain
        # postgresql:// would mean psycopg2 on older SQLAlchemy.
        return parsed.set(drivername="postgresql+psycopg")
    if parsed.get_backend_name() in ("sqlite", "postgresql"):
        return parsed
    raise StoreError(
        f"the catalog must be PostgreSQL (postgresql://...) or the embedded SQLite file, "
        f"not {parsed.get_backend_name()!r}"
    )


def public_url(url: str | sa.URL) -> str:
    """The URL without its password (nor a ``?password=``): what may be printed, logged or stored."""
    from nbops.core.redact import without_credentials

    return without_credentials(_without_password(catalog_url(url)).render_as_string(hide_password=False))


def _without_password(url: sa.URL) -> sa.URL:
    # URL.set() ignores None, so build the URL again without the password.
    return sa.URL.create(url.drivername, url.username, None, url.host, url.port, url.database, url.query)


def same_catalog(a: str | sa.URL, b: str | sa.URL) -> bool:
    """True if both URLs name the same database: server, port and database name.

    Users and passwords do not count: an analyst and a pipeline log in as
    different roles to one catalog.
    """

    def identity(url: sa.URL) -> tuple[Any, ...]:
        port = url.port or (5432 if url.get_backend_name() == "postgresql" else None)
        query = tuple(sorted((k, str(v)) for k, v in url.query.items() if k in ("host", "port", "options")))
        return (url.get_backend_name(), (url.host or "localhost").lower(), port, url.database, query)

    return identity(catalog_url(a)) == identity(catalog_url(b))


def _lock_key(kind: str, name: str) -> int:
    """A 64-bit advisory-lock key for one name (a collision only serialises two writers)."""
    digest = hashlib.blake2b(f"nbops\0{kind}\0{name}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


#: Held shared by every named write, exclusively by unnamed writes and migrations.
_CATALOG_LOCK = _lock_key("catalog", "")


class Catalog:
    """Connections and transactions on one catalog database."""

    def __init__(self, url: str | sa.URL) -> None:
        self._url = catalog_url(url)
        #: Safe to show: no password.
        self.url = public_url(self._url)
        self.engine = _create_engine(self._url)
        try:
            self._ensure_schema()
        except BaseException:
            self.engine.dispose()
            raise

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
            _create_catalog_file(path)
        check_catalog_file(path)
        try:
            return cls(f"sqlite:///{path}")
        except sa.exc.DatabaseError as exc:
            raise CatalogError(f"{path} is damaged ({_first_line(exc.orig or exc)}); {_RESTORE_HINT}") from None

    @property
    def is_sqlite(self) -> bool:
        """Whether the catalog is a SQLite database (the embedded ``catalog.db``)."""
        return self.engine.dialect.name == "sqlite"

    @property
    def is_postgresql(self) -> bool:
        """Whether the catalog is on a PostgreSQL server."""
        return self.engine.dialect.name == "postgresql"

    def describe(self) -> str:
        """Where the catalog is, for messages: the database, server and user (no password)."""
        if self.is_sqlite:
            return f"the catalog {self._url.database}"
        host = self._url.host or self._url.query.get("host") or "localhost"
        return (
            f"the catalog database {self._url.database!r} on {host}:{self._url.port or 5432}"
            f" as user {self._url.username!r}"
        )

    @contextmanager
    def read(self) -> Iterator[Connection]:
        """A connection for reads (a deferred transaction: never blocks writers)."""
        with self.engine.connect() as conn:
            yield conn

    @contextmanager
    def write(self, *names: tuple[str, str]) -> Iterator[Connection]:
        """A write transaction, committed on exit; writers of the same ``(kind, name)`` run one at a time.

        SQLite: ``BEGIN IMMEDIATE`` (one writer at a time, whatever the
        names).  PostgreSQL: advisory locks on ``names`` (a catalog-wide lock
        when none are given), so that reading the latest number and inserting
        the next cannot be overtaken::

            with catalog.write(("dataset", "raw_tx")) as conn: ...

        In read-only mode (``NBOPS_READONLY``) it refuses before connecting,
        and so does a PostgreSQL role without write grants, in its own words.
        """
        check_writable(f"write to {self.describe()}")
        with self.engine.connect() as conn:
            conn.execution_options(nbops_write=True)
            try:
                with conn.begin():
                    if self.is_postgresql:
                        _advisory_locks(conn, names)
                    yield conn
            except sa.exc.ProgrammingError as exc:
                if getattr(exc.orig, "sqlstate", None) != "42501":  # insufficient_privilege
                    raise
                raise ReadOnlyError(
                    f"{self.describe()} may read but not write ({self._reason(exc)}); "
                    "a writing role needs the grants in docs/team.md"
                ) from None

    def insert_ignore(self, conn: Connection, table: sa.Table, rows: list[dict[str, Any]]) -> None:
        """Insert rows, skipping those whose primary or unique key exists (race-free)."""
        if not rows:
            return
        if self.is_sqlite:
            from sqlalchemy.dialects.sqlite import insert as dialect_insert
        else:
            from sqlalchemy.dialects.postgresql import insert as dialect_insert  # type: ignore[assignment]

            # Two transactions inserting the same keys in different orders would
            # wait for each other's uncommitted rows: always insert in key order.
            key = _conflict_columns(table)
            rows = sorted(rows, key=lambda row: tuple(str(row.get(c)) for c in key))
        conn.execute(dialect_insert(table).on_conflict_do_nothing(), rows)

    def schema_revision(self) -> str | None:
        """The schema's Alembic revision (``SCHEMA_HEAD`` when up to date), None for a database without one."""
        with self.read() as conn:
            return current_revision(conn)

    def dispose(self) -> None:
        """Close the pooled connections to the database."""
        self.engine.dispose()

    def integrity_problems(self) -> list[str]:
        """What makes this catalog untrustworthy for ``gc``: an empty list means none found.

        SQLite's ``PRAGMA quick_check`` and foreign-key check, the schema
        revision, and the references between versions, their columns and
        the objects table (every referenced object has a row; every version
        has as many column rows as it says).
        """
        problems: list[str] = []
        with self.read() as conn:
            if self.is_sqlite:
                try:
                    checks = [row[0] for row in conn.exec_driver_sql("PRAGMA quick_check").fetchall()]
                    if checks != ["ok"]:
                        problems += [f"quick_check: {c}" for c in checks[:20]]
                    bad_keys = conn.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
                    problems += [
                        f"foreign key: row {r[1]} of {r[0]} refers to a missing {r[2]} row" for r in bad_keys[:20]
                    ]
                except sa.exc.DatabaseError as exc:
                    return [f"the database cannot be read: {_first_line(exc.orig or exc)}"]
            revision = current_revision(conn)
            if revision != SCHEMA_HEAD:
                problems.append(f"schema revision {revision!r}, expected {SCHEMA_HEAD!r}")
                return problems
            for refs, label in (
                (snapshot_columns, "snapshot column"),
                (feature_commit_columns, "feature commit column"),
            ):
                missing = (
                    conn.execute(
                        sa.select(refs.c.object_digest)
                        .distinct()
                        .where(~sa.exists().where(objects.c.digest == refs.c.object_digest))
                        .limit(20)
                    )
                    .scalars()
                    .all()
                )
                problems += [f"{label} refers to object {d}, which has no objects row" for d in missing]
            counted = (
                sa.select(snapshot_columns.c.snapshot_id.label("id"), sa.func.count().label("n"))
                .group_by(snapshot_columns.c.snapshot_id)
                .subquery()
            )
            bad = (
                conn.execute(
                    sa.select(snapshots.c.id)
                    .outerjoin(counted, counted.c.id == snapshots.c.id)
                    .where(sa.or_(counted.c.n.is_(None), counted.c.n != snapshots.c.n_columns))
                    .limit(20)
                )
                .scalars()
                .all()
            )
            problems += [f"snapshot id {i} has fewer column rows than columns" for i in bad]
            bare = (
                conn.execute(
                    sa.select(feature_commits.c.id)
                    .where(~sa.exists().where(feature_commit_columns.c.commit_id == feature_commits.c.id))
                    .limit(20)
                )
                .scalars()
                .all()
            )
            problems += [f"feature commit id {i} has no column rows" for i in bare]
        return problems

    def _ensure_schema(self) -> None:
        try:
            revision = self.schema_revision()
        except (sa.exc.OperationalError, sa.exc.InterfaceError) as exc:
            if self.is_sqlite:
                raise
            reason = self._reason(exc)
            hint = "; give the password in PGPASSWORD, ~/.pgpass or the catalog URL" if "password" in reason else ""
            raise StoreError(f"cannot connect to {self.describe()}: {reason}{hint}") from None
        if revision == SCHEMA_HEAD:
            return
        with self.write() as conn:
            revision = current_revision(conn)
            if revision == SCHEMA_HEAD:
                return
            tables = set(sa.inspect(conn).get_table_names())
            if tables and not tables >= CORE_TABLES:
                raise CatalogError(
                    f"{self.describe()} holds tables that are not an nbops catalog's "
                    f"({', '.join(sorted(tables)[:8])}); nbops leaves it as it is. Give nbops an empty "
                    "database of its own, or the one that holds your nbops catalog"
                )
            if revision is not None and revision not in KNOWN_REVISIONS:
                raise StoreError(
                    f"the catalog at {self.url} has schema revision {revision!r}, which this nbops "
                    f"does not know (it knows up to {SCHEMA_HEAD!r}); upgrade nbops"
                )
            _run_migrations(conn)
            if self.is_sqlite:
                conn.exec_driver_sql(f"PRAGMA application_id = {APPLICATION_ID}")

    def _reason(self, exc: sa.exc.DBAPIError) -> str:
        """The driver's own words (first lines), with the password removed should it appear."""
        reason = " ".join(str(exc.orig or exc).split())
        reason = reason.removeprefix("connection failed: ")
        from nbops.core.redact import redact_text, url_secrets

        return redact_text(reason, *url_secrets(self._url.render_as_string(hide_password=False)))


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


def _create_catalog_file(path: Path) -> None:
    """Build a new catalog under a temporary name beside ``path``, then link it into place (never over a file).

    Two processes making the same new store both build one; the first link
    wins and the other's copy is dropped, so ``path`` is always whole.
    """
    import os
    import uuid

    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        Catalog(f"sqlite:///{tmp}").dispose()
        with suppress(FileExistsError):
            os.link(tmp, path)
    finally:
        for leftover in (tmp, tmp.with_name(tmp.name + "-wal"), tmp.with_name(tmp.name + "-shm")):
            leftover.unlink(missing_ok=True)


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


def _conflict_columns(table: sa.Table) -> list[str]:
    """The columns of the key that ON CONFLICT guards: the natural primary key, else the first unique one."""
    primary = [c.name for c in table.primary_key.columns]
    if primary and not any(c.autoincrement is True for c in table.primary_key.columns):
        return primary
    for constraint in table.constraints:
        if isinstance(constraint, sa.UniqueConstraint):
            return [c.name for c in constraint.columns]
    return [c.name for c in table.columns if c.unique] or primary


def _advisory_locks(conn: Connection, names: tuple[tuple[str, str], ...]) -> None:
    if not names:
        conn.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": _CATALOG_LOCK})
        return
    conn.execute(sa.text("SELECT pg_advisory_xact_lock_shared(:key)"), {"key": _CATALOG_LOCK})
    # Always in the same order, so that two multi-name writers cannot deadlock.
    for key in sorted({_lock_key(kind, name) for kind, name in names}):
        conn.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": key})


def current_revision(conn: Connection) -> str | None:
    """The catalog's schema revision (``SCHEMA_HEAD`` when up to date), None for a database without one."""
    if not sa.inspect(conn).has_table("alembic_version"):
        return None
    return conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalar()


def _run_migrations(conn: Connection) -> None:
    from alembic import command
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(Path(__file__).parent / "migrations"))
    config.attributes["connection"] = conn
    command.upgrade(config, "head")


def _create_engine(url: sa.URL) -> Engine:
    if url.get_backend_name() != "sqlite":
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


#: Any value but empty, 0, false or no makes this process read-only: every write is refused.
READONLY_ENV = "NBOPS_READONLY"


def readonly() -> bool:
    """Whether ``NBOPS_READONLY`` makes this process read-only (any value but empty, 0, false or no)."""
    return os.environ.get(READONLY_ENV, "").strip().lower() not in ("", "0", "false", "no")


def check_writable(what: str) -> None:
    """Refuse ``what`` (e.g. "snapshot raw_tx") in read-only mode, before any work is done."""
    if readonly():
        raise ReadOnlyError(
            f"cannot {what}: this process is read-only ({READONLY_ENV}={os.environ.get(READONLY_ENV)}); "
            f"unset {READONLY_ENV} to write"
        )
