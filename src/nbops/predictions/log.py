"""The prediction log of a model version: every prediction, written in batches off the request path.

A server (or a batch inference pipeline) calls :meth:`PredictionLog.log` for
each prediction; the call puts the record on a bounded queue and returns at
once. A writer thread takes records off the queue and writes them in batches
(``batch_rows`` records, or whatever arrived within ``flush_seconds``) as
Parquet files under ``<store>/predictions/<model>/<version>/``. When the queue
is full, ``log`` does not wait: the record is dropped and counted
(:attr:`PredictionLog.stats`), so a slow disk never slows a request.

Each batch file is named by the digest of its rows and published as the
store publishes objects: written beside its final name, fsynced, linked
under the name (never over another file), the folder fsynced. A killed
process leaves at most its unwritten batch unlogged and a temporary file
that the next log of that version removes; it never leaves a partial batch
that a reader would take. :func:`read_predictions` reads every batch,
checks each against its name, and refuses a damaged one, naming it.
:meth:`PredictionLog.close` (what a server calls on SIGTERM) writes what is
queued before it returns.
"""

from __future__ import annotations

import atexit
import contextlib
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


class PredictionLog:
    """The log of one model version, written by a thread of its own; see the module docstring."""

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
        self.batch_rows, self.flush_seconds = batch_rows, flush_seconds
        self.folder.mkdir(parents=True, exist_ok=True)
        _remove_stale(self.folder)
        self._queue: queue.Queue[Prediction | _Flush | None] = queue.Queue(maxsize=capacity)
        self._lock = threading.Lock()
        self._counts = {"logged": 0, "dropped": 0, "written": 0, "batches": 0, "failed": 0}
        self._error: BaseException | None = None
        # This writer's counts, for `nbops monitor` (drops are not rows, so they are kept beside them).
        self._stats_file = self.folder / f"{_STATS_PREFIX}{os.getpid()}-{uuid.uuid4().hex[:12]}.json"
        self._stats_saved: dict[str, int] = {}
        self._thread = threading.Thread(target=self._run, name=f"nbops-predictions-{model}", daemon=True)
        self._thread.start()
        atexit.register(self.close)  # a script or pipeline that ends without close() still writes what it logged

    # -- the request path ------------------------------------------------------------------
    def log(self, prediction: Prediction) -> bool:
        """Queue one prediction; False (and counted as dropped) when the queue is full or the log closed."""
        if self._thread is None or not self._thread.is_alive():
            self._count("dropped")
            return False
        try:
            self._queue.put_nowait(prediction)
        except queue.Full:
            self._count("dropped")
            return False
        self._count("logged")
        return True

    @property
    def stats(self) -> dict[str, int]:
        """Counts so far: logged (queued), dropped, written (rows on disk), batches, failed (rows a write lost)."""
        with self._lock:
            return {**self._counts, "pending": self._queue.qsize()}

    # -- flushing and closing ----------------------------------------------------------------
    def flush(self, timeout: float = 30.0) -> None:
        """Write everything queued so far before returning (an error if the writer failed or took too long)."""
        done = _Flush()
        self._queue.put(done, timeout=timeout)
        if not done.event.wait(timeout):
            raise TimeoutError(f"the prediction log of {self.model} v{self.version} did not flush in {timeout} s")
        if self._error is not None:
            raise self._error

    def close(self, timeout: float = 30.0) -> None:
        """Write what is queued, then stop the writer (what a server does on SIGTERM). Idempotent."""
        if self._thread is None:
            return
        atexit.unregister(self.close)
        if self._thread.is_alive():
            self._queue.put(None, timeout=timeout)
            self._thread.join(timeout)
        self._thread = None  # type: ignore[assignment]

    def __enter__(self) -> PredictionLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the writer thread ----------------------------------------------------------------------
    def _count(self, name: str, n: int = 1) -> None:
        with self._lock:
            self._counts[name] += n

    def _run(self) -> None:
        batch: list[Prediction] = []
        started = 0.0
        while True:
            wait = self.flush_seconds - (time.monotonic() - started) if batch else None
            item: Prediction | _Flush | None | _Timeout
            try:
                item = self._queue.get(timeout=max(wait, 0.0) if wait is not None else None)
            except queue.Empty:
                item = _Timeout()
            if isinstance(item, Prediction):
                if not batch:
                    started = time.monotonic()
                batch.append(item)
                if len(batch) < self.batch_rows:
                    continue
            self._write(batch)
            batch = []
            self._save_stats()
            if isinstance(item, _Flush):
                item.event.set()
            if item is None:
                return

    def _write(self, batch: list[Prediction]) -> None:
        if not batch:
            return
        try:
            publish_batch(self.folder, self.model, self.version, batch)
        except Exception as exc:  # a full disk: counted and kept for flush() to raise; requests go on
            self._error = exc
            self._count("failed", len(batch))
            return
        self._count("written", len(batch))
        self._count("batches")

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


def saved_stats(root: Path, model: str) -> dict[str, int]:
    """The counts every writer of ``model``'s logs saved (summed): dropped and failed rows, above all."""
    total: dict[str, int] = {}
    base = root / "predictions" / validate_experiment_name(model, "model")
    for path in base.glob(f"*/{_STATS_PREFIX}*.json"):
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


class _Timeout:
    """No record within ``flush_seconds`` of the batch's first: write what there is."""


def batch_table(model: str, version: str, batch: list[Prediction]) -> pa.Table:
    """The rows of a batch, in :data:`SCHEMA` (times in UTC; a naive time is taken as UTC)."""

    def utc(at: dt.datetime) -> dt.datetime:
        return at.replace(tzinfo=dt.UTC) if at.tzinfo is None else at.astimezone(dt.UTC)

    def text(value: Any) -> str:
        return json.dumps(value, default=str, sort_keys=True)

    return pa.table(
        {
            "request_id": [p.request_id for p in batch],
            "at": pa.array([utc(p.at) for p in batch], pa.timestamp("us", tz="UTC")),
            "model": [model] * len(batch),
            "model_version": [version] * len(batch),
            "keys": [text(dict(p.keys)) for p in batch],
            "features": [text(dict(p.features)) for p in batch],
            "prediction": [text(p.prediction) for p in batch],
            "score": pa.array([p.score for p in batch], pa.float64()),
        },
        schema=SCHEMA,
    )


def _digest(table: pa.Table) -> str:
    from nbops.core.hashing import column_digest, combine_digest

    return combine_digest(table.schema, [column_digest(c) for c in table.columns])


def publish_batch(folder: Path, model: str, version: str, batch: list[Prediction]) -> Path:
    """Write one batch of predictions under its digest (see :func:`publish_table`)."""
    return publish_table(folder, batch_table(model, version, batch))


def publish_table(folder: Path, table: pa.Table) -> Path:
    """Write ``table`` as ``<digest>.parquet``: temporary file, fsync, link (never over a file), folder fsync."""
    import pyarrow.parquet as pq

    final = folder / f"{_digest(table)}{_SUFFIX}"
    tmp = folder / f"{_TMP_PREFIX}{os.getpid()}-{threading.get_ident()}-{time.monotonic_ns()}{_SUFFIX}"
    try:
        pq.write_table(table, tmp, compression="zstd", write_page_checksum=True)
        with open(tmp, "rb") as written:
            os.fsync(written.fileno())
        with contextlib.suppress(FileExistsError):  # the same rows, logged before: the digest names them
            os.link(tmp, final)
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
        if _digest(table) != path.name.removesuffix(_SUFFIX):
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
