"""Experiment tracking on MLflow, tied to the data in the store.

MLflow is the tracking and model-registry engine; nbops points it at the
store and records, for every run, the data it read and wrote:

    >>> with nbops.track(experiment="fraud", run_name="rf") as run:   # doctest: +SKIP
    ...     model.fit(train[features], train["is_fraud"])
    ...     nbops.log(auc=0.91)

Backend.  Unless the user set ``MLFLOW_TRACKING_URI`` themselves, runs go to
``<store>/mlflow.db`` (SQLite in WAL mode) with artifacts in
``<store>/mlartifacts``.  :func:`point_mlflow_at` makes MLflow's own API
(``mlflow.log_metric``, ``mlflow.sklearn.load_model("models:/m@champion")``)
use it: it sets ``MLFLOW_TRACKING_URI`` for this process, which is MLflow's
documented switch, and which does not import MLflow.  The database itself is
created on first use (a few seconds: MLflow runs its migrations), with a
message (logged at INFO; a notebook and the CLI show it).

Runs.  A run ends FINISHED when its body returns, FAILED when it raises (the
exception goes on unchanged), KILLED on KeyboardInterrupt.  A run whose
process died (kill -9, a crashed kernel) is marked KILLED the next time the
store is opened on the same host: each live run has a small file in
``<store>/live_runs/`` with its host, pid, process start time and tracking
URI (without a password).  When that URI is a tracking server that does not
answer, the open goes on and a later open marks the run.

Disk full.  A write of a run's state that the disk refuses (ENOSPC,
EDQUOT, EIO: the run's row, its live-run file, ``cell.py``, metrics, inputs,
lineage, its end status, or what the body logs through MLflow) ends the run
FAILED and raises :class:`RunWriteError`, a :class:`TrackingError` that
names what was being written and where.  When even the FAILED status cannot
be written, the live-run file is renamed to ``<run id>.failed`` (a rename
needs no free space) and the next open of the store marks the run FAILED.

Inputs.  Every snapshot, feature commit and training set read or written
during a run is logged as an MLflow dataset input named ``name@version`` with
the nbops digest, straight from the catalog (no schema inference, so logging
a 1M-row input costs the same as a 10-row one).

Data read before the run.  Frames that the store returns (``load``,
``features``, ``training_data``) name their source in ``DataFrame.attrs``
(:data:`nbops.core.lineage.PROVENANCE`), and pandas keeps it on derived frames
(``train.drop(columns=...)``, ``train["label"]``).  When a run ends, the
provenance of the pandas objects its code uses is recorded as inputs too:
for ``%%track``, the names the cell uses, looked up in the user namespace
when the run starts and when it ends; for ``with nbops.track(...)``, the
names the ``with`` statement uses (the whole code unit when its source
cannot be read), looked up in the caller's locals and globals on entry and
on exit.  Objects inside a list, tuple or dict bound to such a name count.
A frame the code does not name is never an input.

When a run found no input that way and no read during it, but its code used,
from before the run, data whose provenance is unknown (a NumPy array, or a
pandas object without it: ``X = train.to_numpy()``), the snapshots and
feature commits read in this process since the previous run ended are its
inputs, and the run is tagged ``nbops.inputs=inferred``.
"""

from __future__ import annotations

import ast
import contextlib
import errno
import json
import linecache
import logging
import os
import socket
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

from nbops._version import __version__
from nbops.core import _faults, lineage
from nbops.core import catalog as cat
from nbops.core.names import validate_experiment_name, validate_name
from nbops.core.paths import (
    RUNS_MOVED_MARKER,
    TRACKING_DB,
    URI_ENV,
    point_mlflow_at,
    store_tracking_uri,
    user_set_uri,
)
from nbops.errors import InvalidInputError, NotFoundError, RunWriteError, TrackingError

if TYPE_CHECKING:
    import pandas as pd

    from nbops.store import Store

logger = logging.getLogger(__name__)

ARTIFACT_DIR = "mlartifacts"
#: Held while MLflow creates its tables in ``mlflow.db`` (first use of a store).
CREATION_LOCK = "mlflow.db.lock"
_TAG = "nbops."


#: errno values of a write the disk refused: full, over quota, failing.
DISK_ERRNOS = frozenset(n for n in (errno.ENOSPC, getattr(errno, "EDQUOT", None), errno.EIO) if n is not None)
#: How a database or a tracking server words them (SQLite, PostgreSQL, the OS via a server's reply).
_DISK_MESSAGES = (
    ("database or disk is full", errno.ENOSPC),
    ("no space left on device", errno.ENOSPC),
    ("disk quota exceeded", getattr(errno, "EDQUOT", errno.ENOSPC)),
    ("disk i/o error", errno.EIO),
    ("input/output error", errno.EIO),
)
_SQLITE_FULL, _SQLITE_IOERR = 13, 10


def disk_error(exc: BaseException) -> tuple[int, str | None] | None:
    """``(errno, file)`` when ``exc``, or an error it was raised from, is a write the disk refused; else None.

    Follows ``__cause__``, ``__context__`` and a driver error's ``orig``: MLflow
    wraps SQLAlchemy's error, which wraps ``sqlite3``'s ("database or disk is
    full", SQLITE_FULL).  ``file`` is the path an ``OSError`` names, if any.
    """
    seen: set[int] = set()
    todo: list[BaseException] = [exc]
    while todo:
        current = todo.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        number = current.errno if isinstance(current, OSError) else None
        if isinstance(current, OSError) and isinstance(number, int) and number in DISK_ERRNOS:
            name = current.filename2 if current.filename2 is not None else current.filename
            return number, None if name is None else os.fsdecode(name)
        code = getattr(current, "sqlite_errorcode", None)
        if isinstance(code, int) and code & 0xFF in (_SQLITE_FULL, _SQLITE_IOERR):
            return (errno.ENOSPC if code & 0xFF == _SQLITE_FULL else errno.EIO), None
        text = str(current).lower()
        for needle, number in _DISK_MESSAGES:
            if needle in text:
                return number, None
        for nxt in (current.__cause__, current.__context__, getattr(current, "orig", None)):
            if isinstance(nxt, BaseException):
                todo.append(nxt)
    return None


@contextmanager
def _writing(what: str, path: str | Path, fault: str | None = None) -> Iterator[None]:
    """Turn a write the disk refuses inside the block into a :class:`RunWriteError` naming ``what`` and ``path``."""
    try:
        if fault is not None:
            _faults.io_error(fault, path)
        yield
    except Exception as exc:
        found = disk_error(exc)
        if found is None:
            raise
        raise RunWriteError(found[0], what, found[1] or str(path), original=exc) from None


class _QuietDiskErrors(logging.Filter):
    """Drops MLflow's logged traceback of a database write the disk refused: nbops reports it in one line."""

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        return error is None or disk_error(error) is None


_QUIET = _QuietDiskErrors()
_MLFLOW_DB_LOGGER = "mlflow.store.db.utils"


def _tracking_place() -> str:
    """Where MLflow writes runs: the SQLite file, or the tracking URI without its password."""
    import mlflow

    uri = mlflow.get_tracking_uri()
    return uri[len("sqlite:///") :] if uri.startswith("sqlite:///") else _without_password(uri)


def ensure_backend(store: Store) -> Any:
    """Import MLflow, create the store's tracking database if needed, and return ``mlflow``."""
    uri = point_mlflow_at(store)
    import mlflow

    path = store.root / TRACKING_DB
    if uri == store_tracking_uri(store):
        _refuse_moved_runs(store.root)
        if path not in _READY:
            # MLflow's migrations are not safe to run twice at once (two kernels
            # starting their first run would both try them, and one fails with
            # "duplicate column"): the check and the creation happen under a lock,
            # so a process that comes second waits and then finds the tables ready.
            with _exclusive(store.root / CREATION_LOCK):
                if not _has_tables(path):
                    _create_database(store, uri)
    mlflow.set_tracking_uri(uri)
    return mlflow


@contextmanager
def _exclusive(lock_path: Path) -> Iterator[None]:
    """An exclusive lock on ``lock_path`` across processes, released by the OS if the holder dies."""
    with open(lock_path, "a+b") as handle:
        if sys.platform == "win32":
            import msvcrt

            while True:
                try:
                    msvcrt.locking(handle.fileno(), msvcrt.LK_LOCK, 1)
                    break
                except OSError:  # LK_LOCK gives up after 10 s; keep waiting like flock does
                    continue
            try:
                yield
            finally:
                handle.seek(0)
                msvcrt.locking(handle.fileno(), msvcrt.LK_UNLCK, 1)
        else:
            import fcntl

            fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def _refuse_moved_runs(root: Path) -> None:
    """After ``nbops migrate --runs-to``, a new ``mlflow.db`` would split the store's runs in two."""
    if not (root / RUNS_MOVED_MARKER).exists():
        return
    from nbops.core.paths import runs_moved_to

    moved = runs_moved_to(root)
    if moved is not None:
        raise TrackingError(
            f"the runs of this store were moved to the tracking database {moved} ({root / RUNS_MOVED_MARKER}); "
            f"set {URI_ENV} to the MLflow server on that database (e.g. http://mlflow.internal:5000) and try again"
        )


def prepare_database_file(root: Path) -> None:
    """Create an empty ``mlflow.db`` in WAL mode (milliseconds), if there is none (nor were the runs moved).

    WAL is a property of the file, so every later connection — nbops' or
    MLflow's own, whichever comes first — uses it.
    """
    if (root / RUNS_MOVED_MARKER).exists():
        return
    path = root / TRACKING_DB
    if path.exists() and path.stat().st_size > 0:
        return  # a process killed between creating the file and setting WAL leaves it empty
    import sqlite3

    from nbops.core._sqlite import use_wal

    db = sqlite3.connect(path, timeout=60)  # several processes may open a new store at once
    try:
        use_wal(db, timeout=60)
    finally:
        db.close()


_READY: set[Path] = set()  # tracking databases seen with their tables, this process


def _has_tables(path: Path) -> bool:
    import sqlite3

    if path in _READY:
        return True
    if not path.exists():
        return False
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        ready = db.execute("SELECT 1 FROM sqlite_master WHERE name = 'experiments'").fetchone() is not None
    finally:
        db.close()
    if ready:
        _READY.add(path)
    return ready


def _create_database(store: Store, uri: str) -> None:
    started = time.perf_counter()
    logger.info("creating the MLflow tracking database in %s (first use, a few seconds)...", store.root)
    prepare_database_file(store.root)
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    quiet = logging.getLogger("mlflow.store.db.utils")
    level = quiet.level
    quiet.setLevel(logging.WARNING)  # our message says it; MLflow's migration log is noise here
    try:
        # runs MLflow's migrations once; MLflow does not annotate SqlAlchemyStore.__init__
        SqlAlchemyStore(uri, (store.root / ARTIFACT_DIR).as_uri())  # type: ignore[no-untyped-call]
    finally:
        quiet.setLevel(level)
    logger.info("MLflow database ready (%.1f s)", time.perf_counter() - started)


_CLIENTS: dict[str, Any] = {}
_EXPERIMENTS: dict[tuple[str, str], str] = {}


def client() -> Any:
    """One MlflowClient per tracking URI (creating one costs ~0.5 ms of import probing)."""
    import mlflow

    uri = mlflow.get_tracking_uri()
    if uri not in _CLIENTS:
        _CLIENTS[uri] = mlflow.MlflowClient(tracking_uri=uri)
    return _CLIENTS[uri]


def experiment_id(store: Store, name: str) -> str:
    """Get or create an experiment whose artifacts live in the store (race-free)."""
    validate_experiment_name(name)
    mlflow = ensure_backend(store)
    from mlflow.exceptions import MlflowException

    key = (mlflow.get_tracking_uri(), name)
    if key in _EXPERIMENTS:
        return _EXPERIMENTS[key]
    tracking = client()
    found = tracking.get_experiment_by_name(name)
    if found is not None and found.lifecycle_stage == "active":
        _EXPERIMENTS[key] = str(found.experiment_id)
        return _EXPERIMENTS[key]
    location = None
    if not user_set_uri():
        folder = store.root / ARTIFACT_DIR / name
        if folder.resolve().parent != (store.root / ARTIFACT_DIR).resolve():  # the name rules make this impossible
            raise TrackingError(f"experiment {name!r} would keep its artifacts outside the store")
        location = folder.as_uri()
    try:
        _EXPERIMENTS[key] = str(tracking.create_experiment(name, artifact_location=location))
    except MlflowException:
        found = tracking.get_experiment_by_name(name)  # another process created it first
        if found is None:
            raise
        _EXPERIMENTS[key] = str(found.experiment_id)
    return _EXPERIMENTS[key]


# -- process liveness ------------------------------------------------------------------
def _process_started(pid: int) -> float | None:
    try:
        import psutil

        return float(psutil.Process(pid).create_time())
    except Exception:
        return None


LIVE_RUNS_DIR = "live_runs"


@dataclass(frozen=True)
class LiveRun:
    """Who owns a live run: written when it starts, removed when it ends."""

    run_id: str
    tracking_uri: str  # without its password (the file is plain text); see _credentialed
    host: str
    pid: int
    process_started: float  # tells a reused pid apart

    @staticmethod
    def folder(store: Store) -> Path:
        return store.root / LIVE_RUNS_DIR

    def path(self, store: Store) -> Path:
        return self.folder(store) / f"{self.run_id}.json"

    def write(self, store: Store) -> None:
        # A plain file, not a catalog row: no database commit on every run's
        # start and end.  It survives a killed process (the page cache does);
        # after a power cut the run is at worst left RUNNING, as MLflow would.
        folder = self.folder(store)
        folder.mkdir(exist_ok=True)
        tmp = folder / f".{self.run_id}.tmp"
        try:
            tmp.write_text(json.dumps({**self.__dict__, "tracking_uri": _without_password(self.tracking_uri)}))
            os.replace(tmp, self.path(store))
        except OSError:
            tmp.unlink(missing_ok=True)  # a disk that is full still lets a file be removed
            raise

    def remove(self, store: Store) -> None:
        self.path(store).unlink(missing_ok=True)

    @classmethod
    def all(cls, store: Store) -> list[LiveRun]:
        folder = cls.folder(store)
        if not folder.is_dir():
            return []
        runs = []
        for path in folder.glob("*.json"):
            try:
                runs.append(cls(**json.loads(path.read_text())))
            except (OSError, ValueError, TypeError):
                continue  # half-written by a process killed mid-write: never a live run
        return runs


#: A live-run file renamed to ``<run id>.failed``: the run ended, but its FAILED status could not be written.
ENDED_SUFFIX = ".failed"
#: Runs of this process whose FAILED status could not be written: run id -> tracking URI.
_UNENDED: dict[str, str] = {}
SWEPT_TAG = "swept: its end could not be written (disk full or I/O error)"


def _mark_for_sweep(store: Store, run_id: str, uri: str) -> None:
    """Leave word that ``run_id`` ended FAILED without its status written, for the next open to write it.

    The run's live-run file is renamed to ``<run id>.failed``: a rename needs
    no free space, and the next ``nbops.open()`` of the store, by any process
    on any host, sweeps it whether or not this process is still alive.
    """
    _UNENDED[run_id] = uri
    folder = LiveRun.folder(store)
    marker = folder / f"{run_id}{ENDED_SUFFIX}"
    try:
        os.replace(folder / f"{run_id}.json", marker)
    except FileNotFoundError:  # the live-run file was never written: an empty file needs no data block
        try:
            folder.mkdir(exist_ok=True)
            with open(marker, "w", encoding="utf-8") as handle:
                handle.write(json.dumps({"run_id": run_id, "tracking_uri": _without_password(uri)}))
        except OSError:
            pass  # the sweep reads an empty or torn marker as "this store's tracking URI"
    except OSError:
        pass  # this process still sweeps it (_UNENDED) at its next open; if it dies, the run is reaped KILLED


def _unended_runs(store: Store) -> dict[str, str]:
    """Runs to mark FAILED: this process's own, and every ``*.failed`` marker in the store (run id -> URI)."""
    found = dict(_UNENDED)
    folder = LiveRun.folder(store)
    if folder.is_dir():
        for path in folder.glob(f"*{ENDED_SUFFIX}"):
            run_id = path.name[: -len(ENDED_SUFFIX)]
            try:
                uri = str(json.loads(path.read_text(encoding="utf-8"))["tracking_uri"])
            except (OSError, ValueError, TypeError, KeyError):
                uri = os.environ.get(URI_ENV) or store_tracking_uri(store)
            found.setdefault(run_id, uri)
    return found


def reap_dead_runs(store: Store) -> list[str]:
    """Mark KILLED every run of this host whose process is gone, and FAILED every run whose end
    could not be written (:data:`ENDED_SUFFIX`); return their ids."""
    host = socket.gethostname()
    dead = []
    for live in LiveRun.all(store):
        if live.host != host:
            continue
        started = _process_started(live.pid)
        if started is None or abs(started - live.process_started) >= 1.0:
            dead.append(live)
    unended = _unended_runs(store)
    if not dead and not unended:
        return []
    from nbops.core.audit import readonly

    if readonly():
        return []  # a read-only process leaves them for the next process that may write
    ended = []
    import mlflow

    reachable: dict[str, bool] = {}

    def answers(uri: str) -> bool:
        if uri not in reachable:
            reachable[uri] = _server_reachable(uri)
            if not reachable[uri]:
                logger.warning(
                    "the tracking server at %s does not answer; runs of dead processes there stay RUNNING "
                    "until a later open reaches it",
                    _without_password(uri),
                )
        return reachable[uri]

    mlflow_db = logging.getLogger(_MLFLOW_DB_LOGGER)
    mlflow_db.addFilter(_QUIET)  # a disk still full: one line below, not MLflow's traceback
    try:
        for live in dead:
            if live.run_id in unended:
                continue  # its end is known: swept FAILED below
            if not answers(live.tracking_uri):
                continue  # its file stays, so that the next open tries again
            if _terminate_if_running(mlflow, live.run_id, live.tracking_uri, "KILLED", "reaped: its process died"):
                ended.append(live.run_id)
                live.remove(store)
        for run_id, uri in unended.items():
            if not answers(uri):
                continue
            if _terminate_if_running(mlflow, run_id, uri, "FAILED", SWEPT_TAG):
                ended.append(run_id)
                _UNENDED.pop(run_id, None)
                folder = LiveRun.folder(store)
                (folder / f"{run_id}{ENDED_SUFFIX}").unlink(missing_ok=True)
                (folder / f"{run_id}.json").unlink(missing_ok=True)  # left when the rename failed
    finally:
        mlflow_db.removeFilter(_QUIET)
    return ended


def _terminate_if_running(mlflow: Any, run_id: str, uri: str, status: str, why: str) -> bool:
    """End ``run_id`` with ``status`` if it is still RUNNING; False (and a message) if the backend refused."""
    try:
        tracking = mlflow.MlflowClient(tracking_uri=_credentialed(uri))
        if tracking.get_run(run_id).info.status == "RUNNING":
            tracking.set_terminated(run_id, status=status)
            tracking.set_tag(run_id, f"{_TAG}ended_by", why)
        return True
    except Exception as exc:  # an unreachable server or a full disk must not stop the store from opening
        found = disk_error(exc)
        if found is not None:
            where = uri[len("sqlite:///") :] if uri.startswith("sqlite:///") else _without_password(uri)
            reason = f"{errno.errorcode.get(found[0], found[0])} while writing at {where}; a later open tries again"
        else:
            from nbops.core.redact import redact_text, url_secrets

            reason = redact_text(str(exc), *url_secrets(_credentialed(uri)))
        logger.warning("could not mark run %s %s: %s", run_id, status, reason)
        return False


#: How long the crash sweep waits for a tracking server before leaving its runs for later.
SERVER_PROBE_SECONDS = 2.0


def _server_reachable(uri: str) -> bool:
    """Whether an ``http(s)://`` tracking server accepts a connection (other backends: assumed so).

    MLflow's REST client retries a refused connection with backoff for about
    four minutes per request; the crash sweep runs inside ``nbops.open()``,
    which must not hang that long because a server is down.
    """
    from urllib.parse import urlsplit

    parts = urlsplit(uri)
    if parts.scheme not in ("http", "https"):
        return True
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
        with socket.create_connection((parts.hostname or "localhost", port), timeout=SERVER_PROBE_SECONDS):
            return True
    except (OSError, ValueError):  # ValueError: a port that is not a number
        return False


def _without_password(uri: str) -> str:
    """``uri`` with its password and secret query parameters left out (``http://user:secret@host`` -> ``http://user@host``)."""
    from nbops.core.redact import without_credentials

    return without_credentials(uri)


def _credentialed(recorded: str) -> str:
    """The URI a live-run file names, with the password of this process's own URI when it is the same one.

    A URI recorded without a password still works where MLflow takes the
    credentials from ``MLFLOW_TRACKING_USERNAME`` / ``MLFLOW_TRACKING_PASSWORD``.
    """
    current = os.environ.get(URI_ENV, "")
    return current if current and _without_password(current) == recorded else recorded


_OWN_START: float | None = None


def _own_start() -> float:
    global _OWN_START
    if _OWN_START is None:
        _OWN_START = _process_started(os.getpid()) or 0.0
    return _OWN_START


# -- runs ------------------------------------------------------------------------------
@dataclass
class Run:
    """A live MLflow run started by nbops; collects metrics and data inputs."""

    store: Store
    run_id: str
    experiment: str
    experiment_id: str
    name: str | None
    register_model: str | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    steps: list[tuple[str, float, int]] = field(default_factory=list)
    #: (store, kind, ref) of every artifact read or written while the run is active
    reads: list[tuple[Store, str, str]] = field(default_factory=list)
    writes: list[tuple[Store, str, str]] = field(default_factory=list)
    status: str = "RUNNING"
    artifact_uri: str = ""
    #: provenance entries of derived artifacts (training sets) among the reads, by (store root, kind, ref)
    derived: dict[tuple[str, str, str], dict[str, Any]] = field(default_factory=dict)
    #: whether the run's code used, from before the run, data of unknown provenance
    unknown_data: bool = False
    #: how the inputs were found when they were inferred (see the module docstring)
    inferred: bool = False

    @property
    def info(self) -> Any:
        """The run's current ``mlflow.entities.RunInfo``, read from the tracking backend."""
        import mlflow

        return mlflow.MlflowClient().get_run(self.run_id).info

    def log(self, step: int | None = None, **metrics: float) -> None:
        """Buffer metrics; they are written as one ``log_batch`` when the run ends.

        A metric logged again without a step replaces the buffered value (the
        last one wins, as with ``mlflow.log_metric``); with steps every value is kept.
        """
        for key, value in metrics.items():
            validate_metric_name(key)
            if step is None:
                self.metrics[key] = float(value)
            else:
                self.steps.append((key, float(value), step))

    def _on_read(self, store: Store, kind: str, ref: str) -> None:
        if not any(s.root == store.root and (k, r) == (kind, ref) for s, k, r in self.reads):
            self.reads.append((store, kind, ref))

    def _on_write(self, store: Store, kind: str, ref: str) -> None:
        if not any(s.root == store.root and (k, r) == (kind, ref) for s, k, r in self.writes):
            self.writes.append((store, kind, ref))

    def __repr__(self) -> str:
        return f"<nbops Run {self.run_id} experiment={self.experiment!r} name={self.name!r} {self.status}>"


# -- inputs read before the run -------------------------------------------------------------
def note_values(run: Run, values: Iterator[object] | list[object], before: bool) -> None:
    """Record as inputs of ``run`` the provenance of these objects (and of those in a list, tuple or dict).

    ``before``: the run is starting, so data of unknown provenance among them
    may trigger the fallback (see the module docstring).
    """
    for value in _flattened(values):
        entries = lineage.provenance_of(value)
        if entries is None:
            if before and _is_data(value):
                run.unknown_data = True
            continue
        for entry in entries:
            store = _store_at(run, entry["store"])
            if store is None:
                continue  # a store that is not open in this process
            run._on_read(store, entry["kind"], entry["ref"])
            if "parents" in entry:
                run.derived.setdefault((str(store.root), entry["kind"], entry["ref"]), entry)


def note_names(run: Run, names: list[str], namespace: Mapping[str, Any], before: bool) -> None:
    """:func:`note_values` of the values of ``names`` in ``namespace`` (names not bound there are skipped)."""
    note_values(run, [namespace[n] for n in names if n in namespace], before)


def _flattened(values: Iterator[object] | list[object]) -> Iterator[object]:
    for value in values:
        yield value
        if isinstance(value, (list, tuple)):
            yield from value[:1000]
        elif isinstance(value, dict):
            yield from list(value.values())[:1000]


def _is_data(value: object) -> bool:
    """A NumPy array or a pandas / Arrow table-like object."""
    module = type(value).__module__.partition(".")[0]
    name = type(value).__name__
    return (module == "numpy" and name == "ndarray") or (
        module in ("pandas", "pyarrow") and name in ("DataFrame", "Series", "Table", "RecordBatch")
    )


def _store_at(run: Run, root: str) -> Store | None:
    """An open store of this process whose folder is ``root``."""
    if str(run.store.root) == root:
        return run.store
    for store, _, _ in run.reads + run.writes:
        if str(store.root) == root:
            return store
    from nbops.core import session

    return next((opened for opened in session.open_stores() if str(opened.root) == root), None)


def names_used(tree: ast.AST) -> list[str]:
    """Every name that ``tree`` loads or binds, in order of first use."""
    return list(dict.fromkeys(node.id for node in ast.walk(tree) if isinstance(node, ast.Name)))


def _caller_frame() -> FrameType | None:
    """The frame of the code that runs ``with nbops.track(...)``: the first frame outside nbops and contextlib."""
    frame: FrameType | None = sys._getframe(1)
    while frame is not None:
        module = str(frame.f_globals.get("__name__", ""))
        if not (module == "contextlib" or module == "nbops" or module.startswith("nbops.")):
            return frame
        frame = frame.f_back
    return None


def with_block_names(frame: Any) -> list[str]:
    """The names used by the ``with`` statement that ``frame`` is executing, header and body.

    Without its source (code run from a string), the names of the frame's
    whole code object, nested functions included.
    """
    lines = linecache.getlines(frame.f_code.co_filename, frame.f_globals)
    line = frame.f_lineno
    if lines:
        try:
            tree = ast.parse("".join(lines))
        except (SyntaxError, ValueError):
            tree = None
        if tree is not None:
            blocks = [
                node
                for node in ast.walk(tree)
                if isinstance(node, (ast.With, ast.AsyncWith)) and node.lineno <= line < node.body[0].lineno
            ]
            if blocks:
                return names_used(max(blocks, key=lambda node: node.lineno))
    return _code_names(frame.f_code)


def _code_names(code: Any) -> list[str]:
    names = [*code.co_varnames, *code.co_names, *code.co_cellvars, *code.co_freevars]
    for const in code.co_consts:
        if hasattr(const, "co_code"):
            names.extend(_code_names(const))
    return list(dict.fromkeys(names))


def _frame_namespace(frame: Any) -> dict[str, Any]:
    return {**frame.f_globals, **frame.f_locals}


def _local_artifacts(artifact_uri: str) -> Path | None:
    """The folder of a ``file:`` (or plain path) artifact URI; None for a remote artifact store."""
    from urllib.parse import unquote, urlparse

    parsed = urlparse(artifact_uri)
    return Path(unquote(parsed.path)) if artifact_uri and parsed.scheme in ("", "file") else None


def _save_cell_source(artifact_uri: str, source: str) -> None:
    """The cell's source as the artifact ``cell.py`` (written in place for a local artifact store)."""
    folder = _local_artifacts(artifact_uri)
    if folder is not None:
        path = folder / "cell.py"
        with _writing("the cell source cell.py", path, fault="run_cell_source"):
            try:
                folder.mkdir(parents=True, exist_ok=True)
                path.write_text(source, encoding="utf-8")
            except OSError:
                path.unlink(missing_ok=True)  # no torn cell.py beside a FAILED run
                raise
        return
    import mlflow

    with _writing("the cell source cell.py", f"{artifact_uri}/cell.py", fault="run_cell_source"):
        mlflow.log_text(source, "cell.py")


def validate_metric_name(name: str) -> None:
    if not name or len(name) > 250 or any(c in name for c in "\0\n\r"):
        raise InvalidInputError(f"{name!r} is not a usable metric name")


def start_run(
    store: Store,
    experiment: str | None = None,
    run_name: str | None = None,
    register_model: str | None = None,
    autolog: bool = False,
    tags: Mapping[str, str] | None = None,
    source: str | None = None,
) -> Run:
    """Start an MLflow run in the store's backend and begin recording data inputs.

    A write the disk refuses raises :class:`RunWriteError`: before the run
    exists nothing is left behind; after, the run is ended FAILED.
    """
    from nbops.core.audit import check_writable

    experiment = experiment or "Default"
    check_writable(f"start a run in experiment {experiment!r}")
    validate_experiment_name(experiment)
    if register_model is not None:
        validate_name(register_model, "model")
    not_started = "no run was started"
    try:
        with _writing("the tracking database", store.root / TRACKING_DB):
            mlflow = ensure_backend(store)
    except RunWriteError as exc:
        raise exc.with_outcome(not_started) from None
    if mlflow.active_run() is not None:
        active = mlflow.active_run()
        raise TrackingError(
            f"run {active.info.run_id} is still active; end it first (%track stop, or mlflow.end_run())"
        )
    from mlflow.exceptions import MlflowException

    place = _tracking_place()
    all_tags = {
        f"{_TAG}version": __version__,
        f"{_TAG}host": socket.gethostname(),
        f"{_TAG}pid": str(os.getpid()),
        f"{_TAG}store": str(store.root),
        **{f"{_TAG}{k}": str(v) for k, v in store.context.items() if v is not None},
        **(dict(tags) if tags else {}),
    }
    commit = _git_commit()
    if commit:
        all_tags["mlflow.source.git.commit"] = commit
    try:
        with _writing(f"experiment {experiment!r}", place):
            exp_id = experiment_id(store, experiment)
        with _writing("the new run", place, fault="run_start"):
            active = mlflow.start_run(experiment_id=exp_id, run_name=run_name, tags=all_tags)
    except RunWriteError as exc:
        raise exc.with_outcome(not_started) from None
    except MlflowException as exc:  # MLflow's words quote the tracking URI, password and all
        from nbops.core.redact import redact_text, url_secrets

        reason = redact_text(str(exc), *url_secrets(mlflow.get_tracking_uri()))
        raise TrackingError(f"cannot start a run at {place}: {reason}; {not_started}") from None
    from nbops.core import session

    info = active.info
    run = Run(store, info.run_id, experiment, exp_id, info.run_name, register_model, artifact_uri=info.artifact_uri)
    logging.getLogger(_MLFLOW_DB_LOGGER).addFilter(_QUIET)  # removed by end_run
    try:
        live = LiveRun(run.run_id, mlflow.get_tracking_uri(), socket.gethostname(), os.getpid(), _own_start())
        with _writing("the run's live-run file", live.path(store), fault="run_live_file"):
            live.write(store)
        session.start(run)
        if source is not None:
            _save_cell_source(info.artifact_uri, source)
        if autolog:
            mlflow.autolog(log_models=False, silent=True)
    except BaseException as exc:
        session.stop(run)
        _, recorded = _write_end(run, "KILLED" if isinstance(exc, KeyboardInterrupt) else "FAILED")
        if isinstance(exc, RunWriteError):
            raise exc.with_outcome(_end_outcome(run, recorded)) from None
        raise
    return run


def end_run(run: Run, status: str = "FINISHED") -> None:
    """Flush metrics, log data inputs and lineage, register the model, end the run.

    A write the disk refuses ends the run FAILED and raises
    :class:`RunWriteError`; if even the FAILED status cannot be written, the
    next ``nbops.open()`` of the store writes it (see :func:`_mark_for_sweep`).
    """
    from nbops.core import session

    session.stop(run)
    _infer_inputs(run)
    problem: RunWriteError | None = None
    try:
        _write_results(run, status)
    except RunWriteError as exc:
        problem, status = exc, "FAILED"
    except BaseException:
        unwritten, _ = _write_end(run, status)
        if unwritten is not None:  # the error that stopped the results goes on; this one is said here
            logger.error("%s", unwritten.with_outcome(_end_outcome(run, recorded=False)))
        raise
    unwritten, recorded = _write_end(run, status)
    problem = problem or unwritten
    if problem is not None:
        raise problem.with_outcome(_end_outcome(run, recorded)) from None


def _infer_inputs(run: Run) -> None:
    """The fallback of the module docstring; then the next run's starts afresh."""
    earlier = lineage.reads_since_run()
    lineage.forget_process_reads()
    if run.reads or not run.unknown_data:
        return
    for root, kind, ref in earlier:
        store = _store_at(run, root)
        if store is not None:
            run._on_read(store, kind, ref)
            run.inferred = True


def _end_outcome(run: Run, recorded: bool) -> str:
    if recorded:
        return f"run {run.run_id} ended FAILED"
    return (
        f"run {run.run_id} ended FAILED, but its status could not be written; "
        "the next nbops.open() of the store marks it FAILED"
    )


def _write_results(run: Run, status: str) -> None:
    """Everything a run writes at its end before its status: metrics, inputs, lineage, the model."""
    from mlflow.entities import Metric

    tracking = client()
    place = _tracking_place()
    if run.steps or run.metrics:
        now = int(time.time() * 1000)
        metrics = [Metric(k, v, now, s) for k, v, s in run.steps]
        metrics += [Metric(k, v, now, 0) for k, v in run.metrics.items()]
        with _writing("the run's metrics", place, fault="run_metrics"):
            for start in range(0, len(metrics), 1000):
                tracking.log_batch(run.run_id, metrics=metrics[start : start + 1000], synchronous=True)
    with _writing("the run's dataset inputs", place, fault="run_inputs"):
        _log_inputs(run, tracking)
        if run.inferred:
            tracking.set_tag(run.run_id, f"{_TAG}inputs", "inferred: read in this process since the previous run")
    _log_lineage(run)
    if status == "FINISHED" and run.register_model:
        with _writing(f"the registration of model {run.register_model!r}", place):
            register_model(run.store, run.register_model, run_id=run.run_id)


def _terminate(run_id: str, status: str) -> None:
    import mlflow

    active = mlflow.active_run()
    if active is not None and active.info.run_id == run_id:
        mlflow.end_run(status=status)  # MLflow forgets the run first, then writes: no run left active
    else:
        client().set_terminated(run_id, status=status)


def _write_end(run: Run, status: str) -> tuple[RunWriteError | None, bool]:
    """Write the run's end status; on a disk error, FAILED once more, then leave it to the sweep.

    Returns the disk error of the first attempt (or None) and whether a status
    was written (``run.status`` says which).  Only disk errors are caught.
    """
    import mlflow

    try:
        try:
            with _writing("the run's end status", _tracking_place(), fault="run_status"):
                _terminate(run.run_id, status)
            run.status = status
            return None, True
        except RunWriteError as exc:
            failed = exc
        run.status = "FAILED"
        try:  # once more, as FAILED: an I/O error may pass, another process may have freed space
            with _writing("the run's end status", _tracking_place()):
                _terminate(run.run_id, "FAILED")
            return failed, True
        except RunWriteError:
            _mark_for_sweep(run.store, run.run_id, mlflow.get_tracking_uri())
            return failed, False
    finally:
        logging.getLogger(_MLFLOW_DB_LOGGER).removeFilter(_QUIET)
        # The run has ended: a live-run file left behind is removed by a later open.
        with contextlib.suppress(OSError):
            LiveRun.folder(run.store).joinpath(f"{run.run_id}.json").unlink(missing_ok=True)


@contextmanager
def track(
    store: Store,
    experiment: str | None = None,
    run_name: str | None = None,
    register_model: str | None = None,
    autolog: bool = False,
    tags: Mapping[str, str] | None = None,
    source: str | None = None,
) -> Iterator[Run]:
    """Run the block inside a run: FINISHED, FAILED (its exception goes on unchanged) or KILLED.

    When the block fails because the disk refused a write of the run's state
    (``mlflow.log_param`` on a full database, ``mlflow.log_artifact`` into
    the store), the error is a :class:`RunWriteError` instead.
    """
    run = start_run(store, experiment, run_name, register_model, autolog, tags, source)
    names = _note_caller(run, None)
    try:
        yield run
    except BaseException as exc:
        _note_caller(run, names)
        problem = None if isinstance(exc, KeyboardInterrupt) else state_write_error(run, exc)
        try:
            end_run(run, "KILLED" if isinstance(exc, KeyboardInterrupt) else "FAILED")
        except RunWriteError as unended:
            if problem is not None:  # the same disk: the body's error, with how the run ended
                raise problem.with_outcome(unended.outcome) from None
            logger.error("%s", unended)  # the body's own error goes on
        if problem is not None:
            raise problem.with_outcome(f"run {run.run_id} ended FAILED") from None
        raise
    else:
        _note_caller(run, names)
        end_run(run, "FINISHED")


def _note_caller(run: Run, names: list[str] | None) -> list[str]:
    """The provenance of what the ``with`` block's names hold: on entry (``names`` None: found here) and on exit.

    Returns the names.  Never raises: what cannot be inspected is not recorded.
    """
    caller = _caller_frame()
    entering = names is None
    try:
        if caller is None:
            return names or []
        found = with_block_names(caller) if names is None else names
        note_names(run, found, _frame_namespace(caller), before=entering)
        return found
    except Exception as exc:  # inspection is best effort: never the reason a run fails
        logger.warning("could not read which data the run's code uses: %r", exc)
        return names or []
    finally:
        del caller


def state_write_error(run: Run, exc: BaseException) -> RunWriteError | None:
    """A :class:`RunWriteError` when the body's exception is a refused write of the run's own state.

    That is a disk error raised inside MLflow (``mlflow.log_param`` on a full
    database, ``mlflow.log_artifact`` into a full artifact folder), or an
    ``OSError`` about a file in the store or in the run's artifact folder.
    Anything else is the user's own error and goes on unchanged.
    """
    found = disk_error(exc)
    if found is None:
        return None
    number, path = found
    artifacts = _local_artifacts(run.artifact_uri)
    if path is not None:
        inside = [run.store.root] + ([artifacts] if artifacts is not None else [])
        if any(Path(path).resolve().is_relative_to(p.resolve()) for p in inside):
            return RunWriteError(number, "an artifact of the run", path, original=exc)
    if not _raised_in_mlflow(exc):
        return None
    if isinstance(exc, OSError):
        where = path or (str(artifacts) if artifacts is not None else run.artifact_uri)
        return RunWriteError(number, "an artifact of the run", where, original=exc)
    return RunWriteError(number, "what the run logged (params, metrics or tags)", _tracking_place(), original=exc)


def _raised_in_mlflow(exc: BaseException) -> bool:
    """Whether ``exc`` came out of MLflow's own code (a frame of an ``mlflow`` module on its traceback)."""
    tb = exc.__traceback__
    while tb is not None:
        if str(tb.tb_frame.f_globals.get("__name__", "")).partition(".")[0] == "mlflow":
            return True
        tb = tb.tb_next
    return False


def _git_commit(start: Path | None = None) -> str | None:
    """The commit checked out in the working folder's git repository, read from ``.git``."""
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        git = folder / ".git"
        if git.is_file():  # a worktree or submodule: "gitdir: <path>"
            text = git.read_text().strip()
            if text.startswith("gitdir:"):
                git = (folder / text[7:].strip()).resolve()
        if git.is_dir():
            return _resolve_head(git)
    return None


def _resolve_head(git: Path) -> str | None:
    try:
        head = (git / "HEAD").read_text().strip()
    except OSError:
        return None
    if not head.startswith("ref:"):
        return head or None
    ref = head[4:].strip()
    try:
        return (git / ref).read_text().strip() or None
    except OSError:
        pass
    try:
        for line in (git / "packed-refs").read_text().splitlines():
            if line.endswith(" " + ref):
                return line.split(" ", 1)[0]
    except OSError:
        pass
    return None  # a new repository without commits


# -- inputs and lineage ------------------------------------------------------------------
def artifact_digest(store: Store, kind: str, ref: str) -> tuple[str, int | None]:
    """(digest, rows) of a snapshot ``name@v`` or a feature commit ``group:v@c``."""
    from nbops.core import repository

    with store.catalog.read() as conn:
        if kind == "snapshot":
            name, version = ref.rsplit("@", 1)
            row = repository.snapshot_digest(conn, name, int(version))
        elif kind == "feature_commit":
            group_version, commit = ref.rsplit("@", 1)
            group, version = group_version.split(":")
            row = repository.commit_digest(conn, group, int(version), int(commit))
        else:
            row = None
    if row is None:
        return "", None
    return str(row[0]), int(row[1])


def _log_inputs(run: Run, client: Any) -> None:
    from mlflow.entities import Dataset, DatasetInput, InputTag

    inputs = []
    for role, items in (("input", run.reads), ("output", run.writes)):
        for store, kind, ref in items:
            derived = run.derived.get((str(store.root), kind, ref))
            if derived is not None:  # a training set: named by its digest, described by its provenance
                digest, rows, name = ref, derived.get("rows"), f"{kind}:{ref}"
            else:
                (digest, rows), name = artifact_digest(store, kind, ref), ref
            source = json.dumps({"store": str(store.root), "kind": kind, "ref": ref, "rows": rows})
            inputs.append(
                DatasetInput(
                    Dataset(name=name, digest=digest[:36] or "unknown", source_type="nbops", source=source),
                    tags=[InputTag("mlflow.data.context", role), InputTag("nbops.kind", kind)],
                )
            )
    if inputs:
        client.log_inputs(run.run_id, datasets=inputs)


def _log_lineage(run: Run) -> None:
    """Lineage edges of the run; they live in the store that holds each artifact."""
    now = cat.utcnow()
    child = ("run", run.run_id)
    stores = {run.store.root: run.store, **{s.root: s for s, _, _ in run.reads + run.writes}}
    for root, store in stores.items():
        parents = [(k, r) for s, k, r in run.reads if s.root == root] + lineage.made_by(store.context)
        outputs = [(k, r) for s, k, r in run.writes if s.root == root]
        if not parents and not outputs:
            continue  # no write transaction (and no commit) for a run that touched no data
        where = store.catalog.describe()
        with _writing("the run's lineage", where, fault="run_lineage"), store.catalog.write() as conn:
            for (at, kind, ref), entry in run.derived.items():
                if at == str(root):  # a training set: its own edges, named by its parents, so never changing
                    made_from = [(str(k), str(r)) for k, r in entry.get("parents", [])]
                    lineage.add_edges(store.catalog, conn, (kind, ref), made_from, now, written=False)
            lineage.add_edges(store.catalog, conn, child, parents, now)
            for artifact in outputs:
                lineage.add_edges(store.catalog, conn, artifact, [child], now, written=False)


# -- models --------------------------------------------------------------------------------
def register_model(
    store: Store, name: str, run_id: str | None = None, alias: str | None = None, model_uri: str | None = None
) -> Any:
    """Register the model a run logged (its only or latest logged model) under ``name``."""
    from nbops.core.audit import check_writable

    check_writable(f"register model {name!r}")
    validate_name(name, "model")
    mlflow = ensure_backend(store)
    if model_uri is None:
        if run_id is None:
            last = mlflow.last_active_run()
            if last is None:
                raise TrackingError("no run to register a model from; pass run_id=")
            run_id = last.info.run_id
        experiment = mlflow.MlflowClient().get_run(run_id).info.experiment_id
        models = mlflow.search_logged_models(
            experiment_ids=[experiment],
            filter_string=f"source_run_id = '{run_id}'",
            order_by=[{"field_name": "creation_time", "ascending": False}],
            output_format="list",
        )
        if not models:
            raise TrackingError(
                f"run {run_id} logged no model; log one (e.g. mlflow.sklearn.log_model(model, name='model')) first"
            )
        model_uri = f"models:/{models[0].model_id}"
    version = mlflow.register_model(model_uri, name)
    client = mlflow.MlflowClient()
    if alias:
        client.set_registered_model_alias(name, alias, version.version)
    now = cat.utcnow()
    with store.catalog.write() as conn:
        parents = [("run", run_id)] if run_id else []
        parents += lineage.made_by(store.context)
        lineage.add_edges(store.catalog, conn, ("model", f"{name}@{version.version}"), parents, now)
    return version


# -- reading ------------------------------------------------------------------------------
def runs(store: Store, experiment: str | None = None) -> pd.DataFrame:
    """Runs with params, metrics, status and data inputs, newest first."""
    import pandas as pd

    mlflow = ensure_backend(store)
    client = mlflow.MlflowClient()
    if experiment is None:
        experiments = client.search_experiments()
    else:
        found = client.get_experiment_by_name(experiment)
        if found is None:
            known = [e.name for e in client.search_experiments()]
            raise NotFoundError(f"no experiment named {experiment!r}; known: {', '.join(known) or 'none yet'}")
        experiments = [found]
    ids = [e.experiment_id for e in experiments]
    names = {e.experiment_id: e.name for e in experiments}
    records = []
    if ids:
        for r in client.search_runs(ids, max_results=50_000, order_by=["attributes.start_time DESC"]):
            record: dict[str, Any] = {
                "run_id": r.info.run_id,
                "experiment": names.get(r.info.experiment_id),
                "run_name": r.info.run_name,
                "status": r.info.status,
                "start_time": pd.Timestamp(r.info.start_time, unit="ms", tz="UTC") if r.info.start_time else pd.NaT,
                "end_time": pd.Timestamp(r.info.end_time, unit="ms", tz="UTC") if r.info.end_time else pd.NaT,
                "inputs": [d.dataset.name for d in r.inputs.dataset_inputs] if r.inputs else [],
            }
            record.update({f"params.{k}": v for k, v in r.data.params.items()})
            record.update({f"metrics.{k}": v for k, v in r.data.metrics.items()})
            records.append(record)
    base = ["run_id", "experiment", "run_name", "status", "start_time", "end_time", "inputs"]
    frame = pd.DataFrame.from_records(records)
    return frame if len(frame) else pd.DataFrame(columns=base)


__all__ = ["Run", "TrackingError", "end_run", "register_model", "runs", "start_run", "track"]
