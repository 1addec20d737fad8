"""The catalog's tables, its one interface (:class:`Catalog`) and what every backend shares.

Tables and queries are SQLAlchemy Core, the same on every backend; schema
revisions are Alembic migrations (``nbops/core/catalog/migrations``), run when a
catalog is opened, under the write lock.  How writers are serialised, how
rows are inserted if absent and how the database checks itself are each
backend's (:mod:`.sqlite`, :mod:`.postgres`).

Passwords: ``Catalog.url`` and every message name the server, the database and
the user, never the password (see :func:`public_url`).
"""

from __future__ import annotations

import datetime as dt
import os
from abc import ABC, abstractmethod
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, ClassVar

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from nbops.errors import CatalogError, ReadOnlyError, StoreError

#: The Alembic revision this version of nbops reads and writes.
SCHEMA_HEAD = "0005"
#: Every revision this nbops can upgrade from (a catalog at another was written by a newer nbops).
KNOWN_REVISIONS = ("0001", "0002", "0003", "0004", "0005")
BUSY_TIMEOUT_SECONDS = 60
#: The embedded catalog's file name inside a store folder.
CATALOG_FILE = "catalog.db"
#: SQLite's application id of an nbops catalog ("nbop"), set when nbops creates or upgrades one.
APPLICATION_ID = 0x6E626F70
#: Tables every nbops catalog has had since its first revision.
CORE_TABLES = frozenset({"alembic_version", "datasets", "objects", "snapshots", "snapshot_columns"})
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
    # JSON, of the group as of this commit; NULL until first asked for (computed then, and kept)
    sa.Column("statistics", sa.Text),
    sa.Column("validation", sa.Text),  # JSON report
    sa.Column("lineage", sa.Text),  # JSON: notebook, cell hash, reads
    sa.Column("bytes_written", sa.BigInteger, nullable=False),
    sa.Column("author", sa.String(256)),
    sa.Column("host", sa.String(256)),
    sa.Column("created", sa.DateTime, nullable=False),
    # The event times this commit wrote span [time_min_us, time_max_us] (microseconds since the epoch,
    # rounded outwards; NULL for commits made before revision 0005): a later commit whose rows lie
    # outside cannot replace any of them, so it need not read them.
    sa.Column("time_min_us", sa.BigInteger),
    sa.Column("time_max_us", sa.BigInteger),
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


class Catalog(ABC):
    """Connections and transactions on one catalog database: the interface of every catalog backend.

    ``Catalog(url)`` is the implementation for the URL's database, chosen by
    its SQLAlchemy backend name: :class:`~nbops.core.catalog.sqlite.SqliteCatalog`
    (the embedded ``catalog.db``) or
    :class:`~nbops.core.catalog.postgres.PostgresCatalog`.  A backend is one
    module with a subclass that sets :attr:`backend` and implements the
    abstract methods; the tables and queries are SQLAlchemy Core, the same on
    every backend.
    """

    #: The SQLAlchemy backend name an implementation serves (``sqlite``, ``postgresql``).
    backend: ClassVar[str]
    _implementations: ClassVar[dict[str, type[Catalog]]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "backend" in cls.__dict__:
            Catalog._implementations[cls.backend] = cls

    def __new__(cls, url: str | sa.URL) -> Catalog:
        """``Catalog(url)`` is the backend's class for ``url`` (:func:`open_catalog` says so to type checkers)."""
        if cls is Catalog:
            cls = implementation(catalog_url(url))
        return super().__new__(cls)

    def __init__(self, url: str | sa.URL) -> None:
        self._url = catalog_url(url)
        #: Safe to show: no password.
        self.url = public_url(self._url)
        self.engine = self.create_engine(self._url)
        try:
            self._ensure_schema()
        except BaseException:
            self.engine.dispose()
            raise

    @classmethod
    def for_store_root(cls, root: Path) -> Catalog:
        """The embedded catalog of the store folder ``root``, created if the folder has none (see the SQLite backend)."""
        return Catalog._implementations["sqlite"].for_store_root(root)

    @property
    def is_sqlite(self) -> bool:
        """Whether the catalog is a SQLite database (the embedded ``catalog.db``)."""
        return self.engine.dialect.name == "sqlite"

    @property
    def is_postgresql(self) -> bool:
        """Whether the catalog is on a PostgreSQL server."""
        return self.engine.dialect.name == "postgresql"

    @staticmethod
    @abstractmethod
    def create_engine(url: sa.URL) -> Engine:
        """The SQLAlchemy engine for ``url``, set up for this backend (timeouts, pragmas, how writes begin)."""

    @abstractmethod
    def describe(self) -> str:
        """Where the catalog is, for messages: the database, server and user (no password)."""

    @abstractmethod
    def lock(self, conn: Connection, names: tuple[tuple[str, str], ...]) -> None:
        """At the start of a write transaction: serialise the writers of ``names`` (all writers when empty)."""

    @abstractmethod
    def insert_ignore(self, conn: Connection, table: sa.Table, rows: list[dict[str, Any]]) -> None:
        """Insert rows, skipping those whose primary or unique key exists (race-free)."""

    def storage_problems(self, conn: Connection) -> tuple[list[str], bool]:
        """What the database engine itself finds wrong, and whether the catalog's own checks can run after."""
        return [], True

    def connect_error(self, exc: sa.exc.DBAPIError) -> Exception | None:
        """The error to raise when the first connection fails (None: raise the driver's)."""
        return None

    @abstractmethod
    def after_migrations(self, conn: Connection) -> None:
        """Mark a catalog this nbops created or upgraded, inside the migrating transaction."""

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
                    self.lock(conn, names)
                    yield conn
            except sa.exc.ProgrammingError as exc:
                if getattr(exc.orig, "sqlstate", None) != "42501":  # insufficient_privilege
                    raise
                raise ReadOnlyError(
                    f"{self.describe()} may read but not write ({self._reason(exc)}); "
                    "a writing role needs the grants in docs/team.md"
                ) from None

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
            found, readable = self.storage_problems(conn)
            problems += found
            if not readable:
                return problems
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
            error = self.connect_error(exc)
            if error is None:
                raise
            raise error from None
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
            self.after_migrations(conn)

    def _reason(self, exc: sa.exc.DBAPIError) -> str:
        """The driver's own words (first lines), with the password removed should it appear."""
        reason = " ".join(str(exc.orig or exc).split())
        reason = reason.removeprefix("connection failed: ")
        from nbops.core.redact import redact_text, url_secrets

        return redact_text(reason, *url_secrets(self._url.render_as_string(hide_password=False)))


def open_catalog(url: str | sa.URL) -> Catalog:
    """The catalog at ``url``, on the backend for its database (its schema upgraded to the head revision)."""
    parsed = catalog_url(url)
    return implementation(parsed)(parsed)


def implementation(url: sa.URL) -> type[Catalog]:
    """The :class:`Catalog` subclass that serves ``url``'s database."""
    try:
        return Catalog._implementations[url.get_backend_name()]
    except KeyError:
        raise StoreError(f"no catalog backend for {url.get_backend_name()!r} databases") from None


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
