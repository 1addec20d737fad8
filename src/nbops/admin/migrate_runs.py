"""``nbops migrate --runs-to URL --artifacts-to DEST``: move a store's MLflow runs to a team's tracking server.

An embedded store keeps its runs in ``<store>/mlflow.db`` and their artifacts
in ``<store>/mlartifacts``.  A team's ``mlflow server`` keeps them in a
database (``--backend-store-uri``) and a folder or bucket
(``--artifacts-destination``).  This moves the first into the second, row for
row with their keys, so that every run id, experiment id, metric history,
dataset input, logged model and registered model version stays what it was,
and with it every reference nbops' lineage and audit trail hold::

    from nbops.admin.migrate_runs import migrate_runs
    print(migrate_runs(".nbops", "postgresql://mlflow@db.internal/mlflow", "s3://team/mlflow").text())

Artifacts are laid out as the server lays out its own, one folder per
experiment id, and every artifact location is rewritten from
``file:///.../mlartifacts/<experiment name>/...`` to
``mlflow-artifacts:/<experiment id>/...``, which the server resolves against
its ``--artifacts-destination``.

Nothing in the store changes unless everything can.  The store's tracking
database is write-locked for the whole move (no run can log in between); a run
still RUNNING, a target database holding runs, or a destination holding a
different file under the same name is refused before anything is written.
Files are copied first, each under a temporary name and then renamed, so an
interrupted move leaves only whole files, and running it again copies what is
missing.  The rows go in one transaction on the target, whose row counts are
compared with the source before it commits.  Only then are ``mlflow.db`` and
``mlartifacts`` renamed aside (``*.migrated-<UTC time>``) and ``mlflow.json``
written, naming the database (without its password), so that nbops will not
start a new, empty tracking database in the store folder.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import sqlite3
import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from nbops.core import markers
from nbops.core.audit import check_writable
from nbops.core.catalog import current_revision
from nbops.core.paths import RUNS_MOVED_KEY, RUNS_MOVED_MARKER, TRACKING_DB, without_password
from nbops.core.paths import runs_moved_to as moved_to
from nbops.core.redact import redact_text, url_secrets
from nbops.errors import StoreError

ARTIFACT_DIR = "mlartifacts"
#: Written once the runs are moved: ``{"tracking_database": URL without password}``.
MOVED_MARKER = RUNS_MOVED_MARKER
MOVED_KEY = RUNS_MOVED_KEY
#: How MLflow's proxied artifact store names its root (``mlflow server --artifacts-destination``).
SERVER_ARTIFACT_ROOT = "mlflow-artifacts:"
#: Rows a fresh MLflow database starts with: the Default experiment and the default workspace.
_STARTER_ROWS = {"experiments": 1, "workspaces": 1}
_BATCH_ROWS = 5_000
_SIDE_FILES = ("-wal", "-shm")
#: What reaching an artifact destination may raise (pyarrow's ArrowIOError, ArrowInvalid, ArrowNotImplementedError).
_FS_ERRORS = (OSError, ValueError, NotImplementedError)


@dataclass
class RunsMigrationReport:
    """What ``migrate_runs`` moved (or, with ``dry_run``, would move)."""

    root: Path
    target: str  # database URL without password
    artifacts: str
    rows: dict[str, int]
    files: int
    bytes: int
    dry_run: bool
    already_there: int = 0
    left_as_they_are: list[str] = field(default_factory=list)
    renamed: list[tuple[str, str]] = field(default_factory=list)

    def text(self) -> str:
        """The report as ``nbops migrate --runs-to`` prints it: rows per table, artifact files, and the checks."""
        verb = "would move" if self.dry_run else "moved"
        lines = [f"{'dry run: ' if self.dry_run else ''}{verb} the MLflow runs of {self.root} to {self.target}:"]
        shown = {name: n for name, n in sorted(self.rows.items()) if n}
        width = max((len(name) for name in shown), default=5)
        lines += [f"  {name:<{width}}  {count:>10,} rows" for name, count in shown.items()]
        lines.append(
            f"and {self.files:,} artifact files ({self.bytes:,} bytes) to {self.artifacts}"
            + (f" ({self.already_there:,} already there from an earlier attempt)" if self.already_there else "")
        )
        lines += [f"left as it is (not under {ARTIFACT_DIR}/): {uri}" for uri in self.left_as_they_are]
        if self.dry_run:
            lines.append("nothing was changed")
        else:
            lines.append("verified: row counts match; run, experiment and model ids are unchanged")
            lines += [f"renamed {old} -> {new}" for old, new in self.renamed]
            lines.append(
                f"wrote {self.root / MOVED_MARKER}: start `mlflow server --backend-store-uri {self.target} "
                f"--artifacts-destination {self.artifacts}` and set MLFLOW_TRACKING_URI to it"
            )
        return "\n".join(lines)


def migrate_runs(
    root: str | os.PathLike[str], to: str, artifacts: str | os.PathLike[str], dry_run: bool = False
) -> RunsMigrationReport:
    """Move the runs in ``root/mlflow.db`` (and ``root/mlartifacts``) to the tracking database ``to``.

    ``to`` is the SQLAlchemy URL a team's ``mlflow server`` is (or will be)
    started with as ``--backend-store-uri``; it must hold no runs.
    ``artifacts`` is its ``--artifacts-destination``: a folder or a pyarrow
    filesystem URI such as ``s3://bucket/prefix``.  ``dry_run`` runs every
    check, counts rows and files, and writes nothing anywhere.
    """
    root = Path(root).expanduser().resolve()
    url = _tracking_url(to)
    target = without_password(url.render_as_string(hide_password=False))
    artifacts = os.fspath(artifacts)
    check_writable(f"move the runs of {root} to {target}")
    source_file = _check_source(root, url)
    _quiet_mlflow()
    metadata = _mlflow_metadata()
    with _write_locked(source_file) as lock, _engine(sa.make_url(f"sqlite:///{source_file}")) as source:
        with source.connect() as src:
            head = _check_source_schema(src, source_file, metadata)
            expected = _count(src, metadata)
            locations, outside = _experiment_locations(src, root)
        fs, base = _filesystem(artifacts)
        copies, already, size = _plan_copies(locations, fs, base)
        report = RunsMigrationReport(
            root,
            target,
            without_password(artifacts),
            expected,
            len(copies) + already,
            size,
            dry_run,
            already_there=already,
            left_as_they_are=outside,
        )
        with _engine(url) as destination:
            _check_target(destination, target, head, metadata)
            if dry_run:
                return report
            _create_schema(url)
            _copy_files(copies, fs)
            with source.connect() as src, destination.begin() as dst:
                _check_target(dst, target, head, metadata)  # again, inside the transaction
                for table in reversed(metadata.sorted_tables):
                    dst.execute(sa.delete(table))  # the starter rows; the source has its own
                _copy_rows(src, dst, metadata, locations)
                if dst.dialect.name == "postgresql":
                    _reset_sequences(dst, metadata)
                copied = _count(dst, metadata)
                if copied != expected:
                    raise StoreError(
                        f"the copy does not match the source (rows per table: {copied} in {target}, "
                        f"{expected} in {source_file}); the target was left as it was"
                    )
        report.renamed = _retire(root, target, lock)
    return report


# -- checks ------------------------------------------------------------------------------------
def _tracking_url(to: str) -> sa.URL:
    try:
        url = sa.make_url(to)
    except sa.exc.ArgumentError:
        raise StoreError(
            f"--runs-to must be a database URL such as postgresql://mlflow@db.internal/mlflow, "
            f"not {without_password(to)!r}"
        ) from None
    if url.drivername in ("postgres", "postgresql"):
        url = url.set(drivername="postgresql+psycopg")  # the driver nbops[postgres] installs
    return url


def _check_source(root: Path, url: sa.URL) -> Path:
    moved = markers.read(root, MOVED_MARKER, MOVED_KEY, "postgresql+psycopg://mlflow@db/mlflow")
    if moved is not None:
        raise StoreError(f"the runs of {root} were already moved to {moved} ({MOVED_MARKER}); there is nothing to move")
    source_file = root / TRACKING_DB
    if not source_file.is_file() or source_file.stat().st_size == 0:
        raise StoreError(
            f"{root} has no MLflow runs to move (no {TRACKING_DB}); pass --store PATH, "
            "the .nbops folder whose runs to move"
        )
    if url.get_backend_name() == "sqlite" and url.database and Path(url.database).resolve() == source_file:
        raise StoreError(f"--runs-to names the store's own {TRACKING_DB}")
    return source_file


def _check_source_schema(conn: sa.Connection, path: Path, metadata: sa.MetaData) -> str:
    from mlflow.store.db.utils import _get_latest_schema_revision

    head = str(_get_latest_schema_revision())  # type: ignore[no-untyped-call]  # MLflow leaves it unannotated
    revision = current_revision(conn)
    if revision != head:
        raise StoreError(
            f"{path} has MLflow schema revision {revision!r}, not the {head!r} of the installed "
            f"MLflow; upgrade it first (mlflow db upgrade sqlite:///{path}), then move the runs"
        )
    unknown = sorted(set(sa.inspect(conn).get_table_names()) - set(metadata.tables) - {"alembic_version"})
    if unknown:
        raise StoreError(f"{path} has tables the installed MLflow does not know ({', '.join(unknown)})")
    running = conn.execute(sa.text("SELECT run_uuid FROM runs WHERE status = 'RUNNING' LIMIT 5")).scalars().all()
    if running:
        raise StoreError(
            f"runs are still RUNNING ({', '.join(running)}); let them end (or stop the kernels "
            "running them and open the store once, which marks them KILLED), then move the runs"
        )
    return head


def _check_target(conn: sa.Connection | sa.Engine, target: str, head: str, metadata: sa.MetaData) -> None:
    """Refuse a target that holds runs (anything beyond a new database's starter rows) or another schema."""
    url = conn.engine.url
    if url.get_backend_name() == "sqlite" and url.database and not Path(url.database).exists():
        return  # connecting would create the file: a dry run writes nothing
    try:
        with _connection(conn) as c:
            present = set(sa.inspect(c).get_table_names())
            if not present:
                return
            revision = current_revision(c) if "alembic_version" in present else None
            if revision is not None and revision != head:
                raise StoreError(
                    f"{target} has MLflow schema revision {revision!r}, not the {head!r} of the installed "
                    "MLflow; move the runs into a new database, or upgrade the server's first"
                )
            held = {
                t.name: n
                for t in metadata.sorted_tables
                if t.name in present
                if (n := c.execute(sa.select(sa.func.count()).select_from(t)).scalar_one())
                > _STARTER_ROWS.get(t.name, 0)
            }
    except (sa.exc.OperationalError, sa.exc.InterfaceError) as exc:
        reason = " ".join(str(exc.orig or exc).split()).removeprefix("connection failed: ")
        reason = redact_text(reason, *url_secrets(url.render_as_string(hide_password=False)))
        raise StoreError(f"cannot connect to {target}: {reason}") from None
    if held:
        listed = ", ".join(f"{n} in {name}" for name, n in held.items())
        raise StoreError(
            f"{target} already holds MLflow data (rows: {listed}); move the runs into a new, empty "
            "database (CREATE DATABASE ... OWNER ...)"
        )


# -- artifacts ---------------------------------------------------------------------------------
def _experiment_locations(conn: sa.Connection, root: Path) -> tuple[dict[str, str], list[str]]:
    """``{old artifact location: mlflow-artifacts:/<id>}`` for the experiments whose artifacts are in the
    store, and the other experiments' locations (left as they are)."""
    folder = (root / ARTIFACT_DIR).resolve()
    rows = conn.execute(sa.text("SELECT experiment_id, artifact_location FROM experiments")).all()
    found, outside = {}, []
    for experiment_id, location in rows:
        path = _local_path(location)
        if path is not None and path.parent == folder:
            found[location.rstrip("/")] = f"{SERVER_ARTIFACT_ROOT}/{experiment_id}"
        elif location:
            outside.append(str(location))
    return found, sorted(outside)


def _local_path(uri: str | None) -> Path | None:
    if not uri or not uri.startswith("file:"):
        return None
    return Path(urllib.request.url2pathname(urllib.parse.urlsplit(uri).path)).resolve()


def _filesystem(artifacts: str) -> tuple[Any, str]:
    import pyarrow.fs as pafs

    if urllib.parse.urlsplit(artifacts).scheme in ("", "file") or len(urllib.parse.urlsplit(artifacts).scheme) == 1:
        path = Path(urllib.parse.urlsplit(artifacts).path if artifacts.startswith("file:") else artifacts)
        return pafs.LocalFileSystem(), str(path.expanduser().resolve())
    try:
        fs, base = pafs.FileSystem.from_uri(artifacts)
    except _FS_ERRORS as exc:
        raise StoreError(
            f"cannot reach the artifact destination {without_password(artifacts)}: "
            f"{redact_text(str(exc), *url_secrets(artifacts))}"
        ) from None
    return fs, base.rstrip("/")


@dataclass(frozen=True)
class _Copy:
    source: Path
    destination: str
    size: int


def _plan_copies(locations: dict[str, str], fs: Any, base: str) -> tuple[list[_Copy], int, int]:
    """The files to copy; files already there with the same size (an earlier, interrupted move) are skipped."""
    import pyarrow.fs as pafs

    copies: list[_Copy] = []
    already = size = 0
    clashes = []
    for location, new in locations.items():
        folder = _local_path(location)
        assert folder is not None
        if not folder.is_dir():
            continue
        prefix = f"{base}/{new.removeprefix(SERVER_ARTIFACT_ROOT).strip('/')}"
        for path in sorted(p for p in folder.rglob("*") if p.is_file()):
            destination = f"{prefix}/{path.relative_to(folder).as_posix()}"
            length = path.stat().st_size
            size += length
            try:
                info = fs.get_file_info(destination)
            except _FS_ERRORS as exc:
                raise StoreError(f"cannot reach the artifact destination: {redact_text(str(exc))}") from None
            if info.type == pafs.FileType.NotFound:
                copies.append(_Copy(path, destination, length))
            elif info.type == pafs.FileType.File and info.size == length:
                already += 1
            else:
                clashes.append(destination)
    if clashes:
        raise StoreError(
            f"the artifact destination already holds {len(clashes)} other file(s) under the same "
            f"names (e.g. {clashes[0]}); move the runs to an empty destination. Nothing was changed"
        )
    return copies, already, size


def _copy_files(copies: list[_Copy], fs: Any) -> None:
    """Copy whole files only: an interrupted copy leaves no partial file under a final name.

    In a folder each file is written under a temporary name and renamed; an
    object store's upload is all-or-nothing already (an S3 PUT or a completed
    multipart upload), so objects are written under their final key.
    """
    local = fs.type_name == "local"
    for copy in copies:
        written = copy.destination
        if local:
            fs.create_dir(copy.destination.rsplit("/", 1)[0], recursive=True)
            written = f"{copy.destination}.nbops-{os.getpid()}.tmp"
        with open(copy.source, "rb") as source, fs.open_output_stream(written) as out:
            while chunk := source.read(1 << 20):
                out.write(chunk)
        if local:
            fs.move(written, copy.destination)


# -- rows --------------------------------------------------------------------------------------
def _copy_rows(src: sa.Connection, dst: sa.Connection, metadata: sa.MetaData, locations: dict[str, str]) -> None:
    """Every row, parents before children, keys as they are, artifact locations rewritten."""
    for table in metadata.sorted_tables:
        strings = [c.name for c in table.columns if isinstance(c.type, sa.String)]
        order = list(table.primary_key.columns) or list(table.columns)
        result = src.execution_options(yield_per=_BATCH_ROWS).execute(sa.select(table).order_by(*order))
        for batch in result.mappings().partitions():
            rows = [dict(row) for row in batch]
            for row in rows:
                for name in strings:
                    if isinstance(value := row[name], str) and value.startswith("file:"):
                        row[name] = _rewrite(value, locations)
            dst.execute(sa.insert(table), rows)


def _rewrite(value: str, locations: dict[str, str]) -> str:
    for old, new in locations.items():
        if value == old or value.startswith(old + "/"):
            return new + value[len(old) :]
    return value


def _reset_sequences(dst: sa.Connection, metadata: sa.MetaData) -> None:
    """Move each serial or identity key's sequence past the copied keys (explicit keys do not)."""
    for table in metadata.sorted_tables:
        for column in table.primary_key.columns:
            if not isinstance(column.type, sa.Integer):
                continue
            sequence = dst.execute(
                sa.text("SELECT pg_get_serial_sequence(:t, :c)"), {"t": table.name, "c": column.name}
            ).scalar()
            if sequence:
                top = dst.execute(sa.select(sa.func.max(column))).scalar()
                dst.execute(sa.text("SELECT setval(:s, :v, false)"), {"s": sequence, "v": (top or 0) + 1})


def _count(conn: sa.Connection, metadata: sa.MetaData) -> dict[str, int]:
    present = set(sa.inspect(conn).get_table_names())
    return {
        t.name: (conn.execute(sa.select(sa.func.count()).select_from(t)).scalar_one() if t.name in present else 0)
        for t in metadata.sorted_tables
    }


# -- the end -----------------------------------------------------------------------------------
def _retire(root: Path, target: str, lock: sqlite3.Connection) -> list[tuple[str, str]]:
    """Rename the moved database and artifacts aside, then record where the runs went.

    The old database is checkpointed first, so the renamed file holds every
    row without its WAL file.
    """
    lock.execute("ROLLBACK")
    lock.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    renamed = []
    for name in (*(f"{TRACKING_DB}{s}" for s in ("", *_SIDE_FILES)), ARTIFACT_DIR):
        old = root / name
        if old.exists():
            new = root / f"{name}.migrated-{stamp}"
            old.rename(new)
            renamed.append((old.name, new.name))
    markers.write(root, MOVED_MARKER, MOVED_KEY, target, lambda a, b: a == b)
    return renamed


# -- helpers -----------------------------------------------------------------------------------
def _mlflow_metadata() -> sa.MetaData:
    """MLflow's own table definitions (types included), as the installed MLflow creates them."""
    import mlflow.store.model_registry.sqlalchemy_store
    import mlflow.store.tracking.sqlalchemy_store  # noqa: F401 - registers the tracking tables
    from mlflow.store.db.base_sql_model import Base

    metadata: sa.MetaData = Base.metadata
    return metadata


def _create_schema(url: sa.URL) -> None:
    """MLflow's tables at head on the target (a no-op if a server already made them)."""
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    # MLflow does not annotate SqlAlchemyStore.__init__
    store = SqlAlchemyStore(url.render_as_string(hide_password=False), f"{SERVER_ARTIFACT_ROOT}/")  # type: ignore[no-untyped-call]
    store.engine.dispose()


def _quiet_mlflow() -> None:
    logging.getLogger("mlflow.store.db.utils").setLevel(logging.WARNING)
    logging.getLogger("alembic").setLevel(logging.WARNING)


@contextmanager
def _engine(url: sa.URL) -> Iterator[sa.Engine]:
    engine = sa.create_engine(url, connect_args={"timeout": 60} if url.get_backend_name() == "sqlite" else {})
    try:
        yield engine
    finally:
        engine.dispose()


@contextmanager
def _connection(conn: sa.Connection | sa.Engine) -> Iterator[sa.Connection]:
    if isinstance(conn, sa.Engine):
        with conn.connect() as c:
            yield c
    else:
        yield conn


@contextmanager
def _write_locked(path: Path) -> Iterator[sqlite3.Connection]:
    """Hold the SQLite write lock on the tracking database: no run logs anything until the move is over."""
    lock = sqlite3.connect(path, timeout=60, isolation_level=None)
    try:
        try:
            lock.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            raise StoreError(f"cannot lock {path} ({exc}); is a run logging to it? Try again when it is idle") from None
        yield lock
    finally:
        lock.close()  # rolls back a transaction still open


__all__ = ["RunsMigrationReport", "migrate_runs", "moved_to"]
