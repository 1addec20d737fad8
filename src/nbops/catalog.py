"""The catalog: every dataset, version and object the store holds, in SQL.

The catalog is the commit point of the store: data files are published first,
then one catalog transaction makes a version visible.  It goes through
SQLAlchemy Core so that the same queries run on the embedded SQLite file and,
later, on a shared PostgreSQL server.

On SQLite the catalog uses WAL (readers never block the writer), a busy
timeout, and ``BEGIN IMMEDIATE`` for write transactions so that a
read-then-write transaction cannot fail half-way with ``database is locked``.
The schema is versioned by Alembic migrations in ``nbops/migrations``; opening
a store upgrades it to the head revision under the write lock.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine

from nbops.errors import StoreError

#: The Alembic revision this version of nbops reads and writes.
SCHEMA_HEAD = "0003"
_KNOWN_REVISIONS = ("0001", "0002", "0003")
BUSY_TIMEOUT_SECONDS = 60

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
    sa.Column("expectations", sa.Text),  # JSON, see nbops.expectations
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


def as_utc(value: dt.datetime) -> dt.datetime:
    """A catalog datetime (naive UTC) as an aware UTC datetime."""
    return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


class Catalog:
    """Connections and transactions on one catalog database."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = _create_engine(url)
        self._ensure_schema()

    @classmethod
    def for_store_root(cls, root: Path) -> Catalog:
        return cls(f"sqlite:///{root / 'catalog.db'}")

    @property
    def is_sqlite(self) -> bool:
        return self.engine.dialect.name == "sqlite"

    @contextmanager
    def read(self) -> Iterator[Connection]:
        """A connection for reads (a deferred transaction: never blocks writers)."""
        with self.engine.connect() as conn:
            yield conn

    @contextmanager
    def write(self) -> Iterator[Connection]:
        """A write transaction: ``BEGIN IMMEDIATE`` on SQLite, committed on exit."""
        with self.engine.connect() as conn:
            conn.execution_options(nbops_write=True)
            with conn.begin():
                yield conn

    def insert_ignore(self, conn: Connection, table: sa.Table, rows: list[dict[str, Any]]) -> None:
        """Insert rows, skipping those whose primary or unique key exists (race-free)."""
        if not rows:
            return
        if self.is_sqlite:
            from sqlalchemy.dialects.sqlite import insert as dialect_insert
        else:
            from sqlalchemy.dialects.postgresql import insert as dialect_insert  # type: ignore[assignment]
        conn.execute(dialect_insert(table).on_conflict_do_nothing(), rows)

    def schema_revision(self) -> str | None:
        with self.read() as conn:
            return _current_revision(conn)

    def dispose(self) -> None:
        self.engine.dispose()

    def _ensure_schema(self) -> None:
        if self.schema_revision() == SCHEMA_HEAD:
            return
        with self.write() as conn:
            revision = _current_revision(conn)
            if revision == SCHEMA_HEAD:
                return
            if revision is not None and revision not in _KNOWN_REVISIONS:
                raise StoreError(
                    f"the catalog at {self.url} has schema revision {revision!r}, which this nbops "
                    f"does not know (it knows up to {SCHEMA_HEAD!r}); upgrade nbops"
                )
            _run_migrations(conn)


def _current_revision(conn: Connection) -> str | None:
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


def _create_engine(url: str) -> Engine:
    if not url.startswith("sqlite"):
        return sa.create_engine(url, pool_pre_ping=True)
    engine = sa.create_engine(url, connect_args={"timeout": BUSY_TIMEOUT_SECONDS, "check_same_thread": False})

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy, not the driver, decide where transactions begin.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_SECONDS * 1000}")
        cursor.execute("PRAGMA journal_mode = WAL")
        cursor.execute("PRAGMA synchronous = NORMAL")
        cursor.execute("PRAGMA foreign_keys = ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        if conn.get_execution_options().get("nbops_write"):
            conn.exec_driver_sql("BEGIN IMMEDIATE")
        else:
            conn.exec_driver_sql("BEGIN")

    return engine
