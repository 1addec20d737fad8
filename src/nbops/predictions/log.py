"""The prediction log of a model version: every prediction, written in batches off the request path.

A server (or a batch inference pipeline) calls :meth:`PredictionLog.log` for
each prediction, or each request's rows (:class:`PredictionRows`); the call
keeps the record in a bounded buffer and returns at once. A writer thread
writes the records in batches (``batch_rows`` rows, or whatever arrived
within about ``flush_seconds``) as Parquet files under
``<store>/predictions/<model>/<version>/``; the JSON text of keys, features
and predictions is made there, off the request path. When ``capacity`` rows
wait unwritten, ``log`` does not wait: the record is dropped and counted
(:attr:`PredictionLog.stats`), so a slow disk never slows a request.

Each batch file is named by the digest of its rows and published as the
store publishes objects: written beside its final name, fsynced, linked
under the name (never over another file), the folder fsynced. A killed
process leaves at most its unwritten batch unlogged and a temporary file
that the next log of that version removes; it never leaves a partial batch
that a reader would take. :func:`read_predictions` reads every batch,
checks each against its name, and refuses a damaged one, naming it.
:meth:`PredictionLog.close` (what a server calls on SIGTERM) writes what is
logged before it returns.
"""

from __future__ import annotations

import atexit
import datetime as dt
import json
import os
import queue
import threading
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa

from nbops.core.names import validate_experiment_name
from nbops.errors import CorruptDataError, InvalidInputError

#: The columns of a batch; keys, features and prediction are JSON text (any model, any features).
#: ``at`` is the prediction's event time; ``score`` a binary classifier's probability of its positive class.
SCHEMA = pa.schema(
    [
        ("request_id", pa.string()),
        ("at", pa.timestamp("us", tz="UTC")),
        ("model", pa.string()),
        ("model_version", pa.string()),
        ("keys", pa.string()),
        ("features", pa.string()),
        ("prediction", pa.string()),
        ("score", pa.float64()),
    ]
)
_SUFFIX = ".parquet"
_TMP_PREFIX = ".tmp-"
_STATS_PREFIX = "stats-"
#: A temporary file older than this, in a log folder, was left by a killed writer.
_STALE_SECONDS = 3600.0


@dataclass(frozen=True)
class Prediction:
    """One prediction: its request, when, the entity keys, the feature values used, and the prediction."""

    request_id: str
    keys: Mapping[str, Any]
    features: Mapping[str, Any]
    prediction: Any
    at: dt.datetime = field(default_factory=lambda: dt.datetime.now(dt.UTC))
    score: float | None = None


def log_folder(root: Path, model: str, version: str | int) -> Path:
    """Where the batches of ``model`` version ``version`` live in the store at ``root`` (names validated)."""
    validate_experiment_name(model, "model")
    text = str(version)
    if not text.isdigit():
        raise InvalidInputError(f"a model version is a number, not {version!r}")
    return root / "predictions" / model / text


@dataclass(frozen=True)
class PredictionRows:
    """The predictions of one request, by column: what a server logs in one call (one entry per row)."""

    request_ids: list[str]
    keys: Mapping[str, list[Any]]
    features: Mapping[str, list[Any]]
    predictions: list[Any]
    at: list[dt.datetime]
    scores: list[float] | None = None

    def __len__(self) -> int:
        return len(self.request_ids)


class PredictionLog:
    """The log of one model version, written by a thread of its own; see the module docstring.

    Records wait in a buffer that the request path appends to under a lock; a
    full buffer of ``batch_rows`` rows is handed to the writer thread, which
    otherwise wakes every ``flush_seconds / 2`` to write a buffer older than
    ``flush_seconds``. The writer is not woken per record: waking it would
    hand it the interpreter lock in the middle of the next request.
    """

    def __init__(
        self,
        root: Path,
        model: str,
        version: str | int,
        batch_rows: int = 1000,
        flush_seconds: float = 1.0,
        capacity: int = 10_000,
    ) -> None:
        if batch_rows < 1 or capacity < 1 or flush_seconds <= 0:
            raise InvalidInputError("batch_rows and capacity must be at least 1, flush_seconds above 0")
        self.folder = log_folder(root, model, version)
        self.model, self.version = model, str(version)
        self.batch_rows, self.flush_seconds, self.capacity = batch_rows, flush_seconds, capacity
        self.folder.mkdir(parents=True, exist_ok=True)
        _remove_stale(self.folder)
        self._lock = threading.Lock()
        self._buffer: list[Prediction | PredictionRows] = []
        self._buffered = 0  # rows in the buffer
        self._buffer_started = 0.0  # when the buffer's first row came
        self._unwritten = 0  # rows buffered or handed over, not yet written
        self._closed = False
        self._batches: queue.Queue[list[Prediction | PredictionRows] | _Flush | None] = queue.Queue()
        self._counts = {"logged": 0, "dropped": 0, "written": 0, "batches": 0, "failed": 0}
        self._error: BaseException | None = None
        # This writer's counts, for `nbops monitor` (drops are not rows, so they are kept beside them).
        self._stats_file = self.folder / f"{_STATS_PREFIX}{os.getpid()}-{uuid.uuid4().hex[:12]}.json"
        self._stats_saved: dict[str, int] = {}
        self._thread: threading.Thread | None = threading.Thread(
            target=self._run, name=f"nbops-predictions-{model}", daemon=True
        )
        self._thread.start()
        atexit.register(self.close)  # a script or pipeline that ends without close() still writes what it logged

    # -- the request path ------------------------------------------------------------------
    def log(self, prediction: Prediction | PredictionRows) -> bool:
        """Keep one prediction (or one request's rows) for the writer; False, and counted as dropped,
        when the log holds ``capacity`` unwritten rows or is closed. Never waits for the disk."""
        rows = 1 if isinstance(prediction, Prediction) else len(prediction)
        with self._lock:
            if self._closed or self._unwritten + rows > self.capacity:
                self._counts["dropped"] += rows
                return False
            if not self._buffer:
                self._buffer_started = time.monotonic()
            self._buffer.append(prediction)
            self._buffered += rows
            self._unwritten += rows
            self._counts["logged"] += rows
            if self._buffered >= self.batch_rows:
                handed, self._buffer, self._buffered = self._buffer, [], 0
                self._batches.put(handed)  # under the lock: never behind close()'s end marker
        return True

    @property
    def stats(self) -> dict[str, int]:
        """Counts so far: logged (kept), dropped, written (rows on disk), batches, failed (rows a write lost)."""
        with self._lock:
            return {**self._counts, "pending": self._unwritten}

    # -- flushing and closing ----------------------------------------------------------------
    def flush(self, timeout: float = 30.0) -> None:
        """Write everything logged so far before returning (an error if the writer failed or took too long)."""
        done = _Flush()
        self._batches.put(done)
        if not done.event.wait(timeout):
            raise TimeoutError(f"the prediction log of {self.model} v{self.version} did not flush in {timeout} s")
        error, self._error = self._error, None  # said once: the next flush reports only new failures
        if error is not None:
            raise error

    def close(self, timeout: float = 30.0) -> None:
        """Write what is logged, then stop the writer (what a server does on SIGTERM). Idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        atexit.unregister(self.close)
        if self._thread is not None and self._thread.is_alive():
            self._batches.put(None)
            self._thread.join(timeout)
        self._thread = None

    def __enter__(self) -> PredictionLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the writer thread ----------------------------------------------------------------------
    def _take_buffer(self, older_than: float | None) -> list[Prediction | PredictionRows]:
        with self._lock:
            if not self._buffer or (older_than is not None and time.monotonic() - self._buffer_started < older_than):
                return []
            taken, self._buffer, self._buffered = self._buffer, [], 0
            return taken

    def _run(self) -> None:
        while True:
            try:
                item = self._batches.get(timeout=self.flush_seconds / 2)
            except queue.Empty:
                self._write(self._take_buffer(older_than=self.flush_seconds))
                continue
            if isinstance(item, list):
                self._write(item)
                continue
            self._write(self._take_buffer(older_than=None))  # a flush, or the end: everything logged so far
            self._save_stats()
            if item is None:
                return
            item.event.set()

    def _write(self, batch: list[Prediction | PredictionRows]) -> None:
        if not batch:
            return
        rows = sum(1 if isinstance(p, Prediction) else len(p) for p in batch)
        try:
            publish_batch(self.folder, self.model, self.version, batch)
        except Exception as exc:  # a full disk: counted and kept for flush() to raise; requests go on
            self._error = exc
            with self._lock:
                self._counts["failed"] += rows
                self._unwritten -= rows
            self._save_stats()
            return
        with self._lock:
            self._counts["written"] += rows
            self._counts["batches"] += 1
            self._unwritten -= rows
        self._save_stats()

    def _save_stats(self) -> None:
        """Write this writer's counts beside its batches when they changed (replaced atomically)."""
        stats = self.stats
        stats.pop("pending")
        if stats == self._stats_saved or (stats["dropped"] == 0 and stats["failed"] == 0 and not self._stats_saved):
            return
        tmp = self._stats_file.with_name(f"{_TMP_PREFIX}{self._stats_file.name}")
        try:
            tmp.write_text(json.dumps({**stats, "updated": dt.datetime.now(dt.UTC).isoformat()}))
            os.replace(tmp, self._stats_file)
        except OSError:  # a full disk: the counts are still in memory (stats, /metrics)
            tmp.unlink(missing_ok=True)
            return
        self._stats_saved = stats


def saved_stats(root: Path, model: str, version: str | int | None = None) -> dict[str, int]:
    """The counts every writer of ``model``'s logs (of one version, or all) saved, summed: dropped and
    failed rows, above all."""
    total: dict[str, int] = {}
    base = root / "predictions" / validate_experiment_name(model, "model")
    folders = "*" if version is None else log_folder(root, model, version).name
    for path in base.glob(f"{folders}/{_STATS_PREFIX}*.json"):
        try:
            stats = json.loads(path.read_text())
        except (OSError, ValueError):
            continue  # being replaced, or damaged: counts, not data
        for name, value in stats.items():
            if isinstance(value, int):
                total[name] = total.get(name, 0) + value
    return total


class _Flush:
    def __init__(self) -> None:
        self.event = threading.Event()


def batch_table(model: str, version: str, batch: list[Prediction | PredictionRows]) -> pa.Table:
    """The rows of a batch, in :data:`SCHEMA` (times in UTC; a naive time is taken as UTC)."""

    def utc(at: dt.datetime) -> dt.datetime:
        return at.replace(tzinfo=dt.UTC) if at.tzinfo is None else at.astimezone(dt.UTC)

    text = _ENCODER.encode
    columns: dict[str, list[Any]] = {n: [] for n in ("request_id", "at", "keys", "features", "prediction", "score")}
    for item in batch:
        if isinstance(item, Prediction):
            columns["request_id"].append(item.request_id)
            columns["at"].append(utc(item.at))
            columns["keys"].append(text(dict(item.keys)))
            columns["features"].append(text(dict(item.features)))
            columns["prediction"].append(text(item.prediction))
            columns["score"].append(item.score)
            continue
        n = len(item)
        columns["request_id"].extend(item.request_ids)
        columns["at"].extend(utc(t) for t in item.at)
        key_names, feature_names = list(item.keys), list(item.features)
        columns["keys"].extend(text({k: item.keys[k][i] for k in key_names}) for i in range(n))
        columns["features"].extend(text({f: item.features[f][i] for f in feature_names}) for i in range(n))
        columns["prediction"].extend(text(p) for p in item.predictions)
        columns["score"].extend(item.scores if item.scores is not None else [None] * n)
    rows = len(columns["request_id"])
    return pa.table(
        {
            "request_id": columns["request_id"],
            "at": pa.array(columns["at"], pa.timestamp("us", tz="UTC")),
            "model": [model] * rows,
            "model_version": [version] * rows,
            "keys": columns["keys"],
            "features": columns["features"],
            "prediction": columns["prediction"],
            "score": pa.array(columns["score"], pa.float64()),
        },
        schema=SCHEMA,
    )


def _json_default(value: Any) -> Any:
    """JSON for what ``json`` does not know: missing values as null, NumPy scalars as numbers, times as ISO text."""
    if type(value).__name__ in ("NAType", "NaTType"):
        return None
    if hasattr(value, "isoformat"):
        return value.isoformat()
    if hasattr(value, "item"):
        try:
            return value.item()
        except (ValueError, TypeError):
            pass
    return str(value)


_ENCODER = json.JSONEncoder(sort_keys=True, default=_json_default)


def _digest(table: pa.Table) -> str:
    from nbops.core.hashing import column_digest, combine_digest

    return combine_digest(table.schema, [column_digest(c) for c in table.columns])


def publish_batch(folder: Path, model: str, version: str, batch: list[Prediction | PredictionRows]) -> Path:
    """Write one batch of predictions under its digest (see :func:`publish_table`)."""
    return publish_table(folder, batch_table(model, version, batch))


def publish_table(folder: Path, table: pa.Table) -> Path:
    """Write ``table`` as ``<digest>.parquet``: temporary file, fsync, link (never over a file), folder fsync.

    A batch equal to one already there (the same rows logged again, e.g. a client's retry flushed on its
    own) is a second event, kept beside it as ``<digest>.1.parquet``: the log's row count stays the
    count of rows written.
    """
    import pyarrow.parquet as pq

    final = folder / f"{_digest(table)}{_SUFFIX}"
    tmp = folder / f"{_TMP_PREFIX}{os.getpid()}-{threading.get_ident()}-{time.monotonic_ns()}{_SUFFIX}"
    try:
        pq.write_table(table, tmp, compression="zstd", write_page_checksum=True)
        with open(tmp, "rb") as written:
            os.fsync(written.fileno())
        digest, copy = final.name.removesuffix(_SUFFIX), 0
        while True:
            try:
                os.link(tmp, final)
                break
            except FileExistsError:
                copy += 1
                final = folder / f"{digest}.{copy}{_SUFFIX}"
    finally:
        tmp.unlink(missing_ok=True)
    descriptor = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
    return final


def verified_batches(folder: Path, what: str) -> list[tuple[Path, pa.Table]]:
    """Every batch in ``folder``, in name order, each checked against its name; a damaged one is refused."""
    import pyarrow.parquet as pq

    batches = []
    for path in sorted(folder.glob(f"*{_SUFFIX}")):
        if path.name.startswith(_TMP_PREFIX):
            continue
        try:
            table = pq.read_table(path)
        except (pa.ArrowException, OSError) as exc:
            raise CorruptDataError(f"the {what} {path} cannot be read ({exc}); nothing was returned") from None
        if _digest(table) != path.name.removesuffix(_SUFFIX).split(".", 1)[0]:  # <digest>[.<copy>].parquet
            raise CorruptDataError(f"the {what} {path} does not hash to its name; nothing was returned")
        batches.append((path, table))
    return batches


def _remove_stale(folder: Path) -> None:
    """Remove temporary files a killed writer left (older than an hour: a live writer's are seconds old)."""
    now = time.time()
    for path in folder.glob(f"{_TMP_PREFIX}*"):
        try:
            if now - path.stat().st_mtime > _STALE_SECONDS:
                path.unlink()
        except FileNotFoundError:
            pass


def logged_versions(root: Path, model: str) -> list[int]:
    """The versions of ``model`` that have a prediction log, in order."""
    base = root / "predictions" / validate_experiment_name(model, "model")
    return sorted(int(p.name) for p in base.glob("*") if p.name.isdigit())


def read_predictions(root: Path, model: str, version: str | int | None = None) -> pa.Table:
    """Every logged prediction of ``model`` (one version, or all), oldest first; each batch checked against its name."""
    base = root / "predictions" / validate_experiment_name(model, "model")
    folders = (
        [log_folder(root, model, version)]
        if version is not None
        else sorted(p for p in base.glob("*") if p.name.isdigit())
    )
    tables = []
    for folder in folders:
        for _, table in verified_batches(folder, "prediction batch"):
            if "score" not in table.column_names:  # a batch written before scores were logged
                table = table.append_column("score", pa.nulls(len(table), pa.float64()))
            tables.append(table.select(SCHEMA.names).cast(SCHEMA))
    if not tables:
        return SCHEMA.empty_table()
    import pyarrow.compute as pc

    every = pa.concat_tables(tables)
    return every.take(pc.sort_indices(every, sort_keys=[("at", "ascending"), ("request_id", "ascending")]))
