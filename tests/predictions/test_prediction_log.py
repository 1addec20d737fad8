"""The prediction log: batches off the request path, drops counted, flushed on close, whole after kill -9."""

from __future__ import annotations

import datetime as dt
import errno
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from nbops.errors import CorruptDataError, InvalidInputError, InvalidNameError
from nbops.predictions.log import Prediction, PredictionLog, log_folder, read_predictions


def prediction(i: int) -> Prediction:
    return Prediction(
        request_id=f"r{i:06d}",
        keys={"cc_num": i % 7},
        features={"amount_mean": i * 0.5, "merchant": f"m{i % 3}"},
        prediction=i % 2,
        at=dt.datetime(2026, 12, 1, tzinfo=dt.UTC) + dt.timedelta(seconds=i),
    )


def test_every_logged_prediction_is_read_back_after_close(tmp_path: Path) -> None:
    with PredictionLog(tmp_path, "fraud model", 3, batch_rows=40, flush_seconds=5.0) as log:
        assert all(log.log(prediction(i)) for i in range(100))
    assert log.stats == {"logged": 100, "dropped": 0, "written": 100, "batches": 3, "failed": 0, "pending": 0}
    table = read_predictions(tmp_path, "fraud model", 3)
    assert table.column("request_id").to_pylist() == [f"r{i:06d}" for i in range(100)]
    row = table.slice(10, 1).to_pylist()[0]
    assert (row["model"], row["model_version"], row["keys"], row["prediction"]) == (
        "fraud model",
        "3",
        '{"cc_num": 3}',
        "0",
    )
    assert row["features"] == '{"amount_mean": 5.0, "merchant": "m1"}'
    assert row["at"] == dt.datetime(2026, 12, 1, 0, 0, 10, tzinfo=dt.UTC)
    assert len(list(log_folder(tmp_path, "fraud model", 3).glob("*.parquet"))) == 3


def test_a_partial_batch_is_written_after_flush_seconds(tmp_path: Path) -> None:
    with PredictionLog(tmp_path, "m", 1, batch_rows=1000, flush_seconds=0.2) as log:
        log.log(prediction(1))
        log.log(prediction(2))
        deadline = time.monotonic() + 10
        while read_predictions(tmp_path, "m").num_rows < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert read_predictions(tmp_path, "m").num_rows == 2
        log.log(prediction(3))
        log.flush()
        assert read_predictions(tmp_path, "m", 1).num_rows == 3


def test_a_full_queue_drops_and_counts_instead_of_waiting(tmp_path: Path) -> None:
    with PredictionLog(tmp_path, "m", 1, batch_rows=1, flush_seconds=1.0, capacity=2) as log:
        accepted = sum(log.log(prediction(i)) for i in range(5_000))
    stats = log.stats
    assert stats["dropped"] > 0 and stats["logged"] == accepted
    assert stats["logged"] + stats["dropped"] == 5_000
    # Rows on disk are the rows answered minus the drops reported.
    assert read_predictions(tmp_path, "m").num_rows == stats["written"] == accepted
    assert not log.log(prediction(0))  # closed: dropped, counted, never blocks
    assert log.stats["dropped"] == stats["dropped"] + 1


WRITER = """
import faulthandler, os, signal, sys, time
from pathlib import Path
sys.path.insert(0, {tests!r})
from predictions.test_prediction_log import prediction
from nbops.predictions.log import PredictionLog
faulthandler.register(signal.SIGUSR1, all_threads=True)  # a hang explains itself (see finish())
log = PredictionLog(Path({root!r}), "m", 1, batch_rows={batch_rows}, flush_seconds=30.0)
def stop(signum, frame):
    log.close()
    sys.exit(0)
signal.signal(signal.SIGTERM, stop)
for i in range({n}):
    log.log(prediction(i))
print(log.stats["logged"], flush=True)
time.sleep(120)
"""


def start_writer(root: Path, n: int, batch_rows: int) -> tuple[subprocess.Popen[str], int]:
    script = WRITER.format(tests=str(Path(__file__).parents[1]), root=str(root), n=n, batch_rows=batch_rows)
    child = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(script)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    assert child.stdout is not None
    logged = int(child.stdout.readline())
    return child, logged


def finish(child: subprocess.Popen[str], timeout: float = 60) -> int:
    """The child's exit code; if it hangs, its threads' stacks are the failure message."""
    try:
        return child.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        child.send_signal(signal.SIGUSR1)
        time.sleep(1)
        child.kill()
        _, stderr = child.communicate()
        pytest.fail(f"the writer did not exit in {timeout} s; its threads were:\n{stderr}")


def test_sigterm_writes_everything_queued_before_exit(tmp_path: Path) -> None:
    # 3 full batches handed to the writer and 34 rows still in the buffer when the signal comes.
    child, logged = start_writer(tmp_path, 1_234, batch_rows=400)
    child.send_signal(signal.SIGTERM)
    assert finish(child) == 0
    assert logged == 1_234
    assert read_predictions(tmp_path, "m", 1).num_rows == 1_234


def test_kill_9_loses_at_most_the_unwritten_batch_and_leaves_no_partial_one(tmp_path: Path) -> None:
    child, logged = start_writer(tmp_path, 1_234, batch_rows=50)
    # Killed while the writer may still be publishing batches: whatever is on disk must be whole.
    os.kill(child.pid, signal.SIGKILL)
    child.wait(timeout=60)
    table = read_predictions(tmp_path, "m", 1)  # every file whole and matching its digest
    assert logged == 1_234 and table.num_rows <= 1_234 and table.num_rows % 50 == 0
    assert table.column("request_id").to_pylist() == [f"r{i:06d}" for i in range(table.num_rows)]


def test_kill_9_after_the_full_batches_are_written_loses_only_the_buffer(tmp_path: Path) -> None:
    child, _ = start_writer(tmp_path, 1_234, batch_rows=50)
    folder = log_folder(tmp_path, "m", 1)
    deadline = time.monotonic() + 60

    def published() -> int:
        return len([p for p in folder.glob("*.parquet") if not p.name.startswith(".")])

    while published() < 1_234 // 50 and time.monotonic() < deadline:
        time.sleep(0.05)
    os.kill(child.pid, signal.SIGKILL)  # the last 34 rows wait in the buffer for flush_seconds (30 s)
    child.wait(timeout=60)
    table = read_predictions(tmp_path, "m", 1)
    assert table.num_rows == 1_200
    assert table.column("request_id").to_pylist() == [f"r{i:06d}" for i in range(1_200)]


def test_the_same_rows_logged_twice_are_two_rows_on_disk_as_counted(tmp_path: Path) -> None:
    with PredictionLog(tmp_path, "m", 1) as log:
        for _ in range(3):  # a client's retry: the same request id, time and values, flushed on its own
            log.log(prediction(7))
            log.flush()
    assert log.stats["written"] == 3 and log.stats["batches"] == 3
    table = read_predictions(tmp_path, "m", 1)  # each copy checked against its digest too
    assert table.num_rows == 3 and set(table.column("request_id").to_pylist()) == {"r000007"}
    names = sorted(p.name for p in log_folder(tmp_path, "m", 1).glob("*.parquet"))
    digest = names[-1].removesuffix(".parquet")
    assert names == [f"{digest}.1.parquet", f"{digest}.2.parquet", f"{digest}.parquet"]


FULL_DISK = """
import json, resource, signal, sys
from pathlib import Path
sys.path.insert(0, {tests!r})
from predictions.test_prediction_log import prediction
from nbops.predictions.log import PredictionLog, read_predictions, saved_stats
root = Path({root!r})
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG, as on a full disk
soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
log = PredictionLog(root, "m", 1, flush_seconds=30.0)
resource.setrlimit(resource.RLIMIT_FSIZE, (512, hard))
log.log(prediction(1))
try:
    log.flush()
    raised = None
except OSError as exc:
    raised = exc.errno
resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
log.log(prediction(2))
log.flush()  # the disk has room again: no error from before
log.close()
print(json.dumps({{"raised": raised, "stats": log.stats, "rows": read_predictions(root, "m").num_rows,
                  "saved": saved_stats(root, "m", 1), "other": saved_stats(root, "m", 2)}}))
"""


def test_a_write_that_fails_is_counted_said_once_and_the_log_goes_on(tmp_path: Path) -> None:
    script = FULL_DISK.format(tests=str(Path(__file__).parents[1]), root=str(tmp_path))
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(script)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    got = json.loads(done.stdout.strip().splitlines()[-1])
    assert got["raised"] == errno.EFBIG
    assert got["stats"] == {"logged": 2, "dropped": 0, "written": 1, "batches": 1, "failed": 1, "pending": 0}
    assert got["rows"] == 1  # what is on disk is what was counted as written
    assert got["saved"]["failed"] == 1 and got["other"] == {}  # counts of version 1 only, for nbops monitor


def test_a_damaged_batch_is_refused_naming_it(tmp_path: Path) -> None:
    with PredictionLog(tmp_path, "m", 1) as log:
        log.log(prediction(1))
    [batch] = log_folder(tmp_path, "m", 1).glob("*.parquet")
    data = bytearray(batch.read_bytes())
    data[len(data) // 3] ^= 0xFF
    batch.write_bytes(bytes(data))
    with pytest.raises(CorruptDataError, match=batch.name):
        read_predictions(tmp_path, "m")


@pytest.mark.parametrize("model", ["../escape", "a/b", "", "x" * 200])
def test_hostile_model_names_are_refused(tmp_path: Path, model: str) -> None:
    with pytest.raises(InvalidNameError):
        PredictionLog(tmp_path, model, 1)
    assert not (tmp_path / "predictions").exists() or not any((tmp_path / "predictions").rglob("*"))


def test_a_version_is_a_number(tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match="a model version is a number"):
        PredictionLog(tmp_path, "m", "1; rm -rf")
