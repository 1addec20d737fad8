"""No run stays RUNNING on a full or failing disk, and the error is nbops' own.

ENOSPC on a real disk: a small tmpfs, mounted for the test, holds the store (or
only its artifact folder) and is filled up while a run writes.  EIO, and
ENOSPC at each named step, through the error points of ``nbops.core._faults``
(``NBOPS_FAULT=<point>:EIO``) in a real subprocess.  Afterwards MLflow's own
client reads the store's tracking database: no run RUNNING, the run FAILED,
and the store opens and works once space is back.

Mounting needs root (CI runs as root): without it the tmpfs tests skip and
say why, except under CI (``CI`` set), where they fail.
"""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import mlflow
import pandas as pd
import pytest
import sqlalchemy as sa
from hypothesis import given
from hypothesis import strategies as st
from IPython.core.error import UsageError
from IPython.core.interactiveshell import InteractiveShell
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

import nbops
from helpers.mlflowstate import forget_tracking_uri, reset_mlflow, untracked_setup
from helpers.shell import nbops_shell
from nbops import api
from nbops.core import _faults
from nbops.core.paths import MARKER_ENV, URI_ENV
from nbops.errors import NbopsError
from nbops.tracking import experiments as tracking
from nbops.tracking.experiments import RunWriteError, TrackingError

SRC = Path(nbops.__file__).resolve().parent.parent
DISK_MB = 8  # the store's two databases take ~1 MB; the rest is filled during the test
NO_SPACE = r"free space and run it again"
UNRECORDED = r", but its status could not be written; the next nbops\.open\(\) of the store marks it FAILED"


# -- fixtures ----------------------------------------------------------------------------
@pytest.fixture(autouse=True)
def clean_mlflow(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No tracking URI from the environment or an earlier test; nothing left running after."""
    forget_tracking_uri(monkeypatch)
    monkeypatch.delenv(_faults.FAULT_ENV, raising=False)
    yield
    reset_mlflow()
    tracking._UNENDED.clear()  # a failed test must not leave a run for later opens to sweep


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A store with its MLflow database created and one snapshot ``raw@1``, copied by each test (seconds once)."""
    base = tmp_path_factory.mktemp("disk-template")
    live = base / "live" / ".nbops"
    with untracked_setup(), nbops.open(live) as s:
        tracking.ensure_backend(s)
        s.snapshot(pd.DataFrame({"id": [1, 2, 3], "x": [0.5, 1.5, 2.5]}), "raw")
    copy = base / ".nbops"
    shutil.copytree(live, copy, ignore=shutil.ignore_patterns("*.db", "*.db-wal", "*.db-shm"))
    for db in live.glob("*.db"):  # a consistent copy of each database, whatever its WAL holds
        src, dst = sqlite3.connect(db), sqlite3.connect(copy / db.name)
        try:
            src.backup(dst)
        finally:
            src.close()
            dst.close()
    return copy


def copy_store(template: Path, folder: Path) -> Path:
    root = folder / ".nbops"
    shutil.copytree(template, root)
    return root


@dataclass
class Disk:
    """A tmpfs of ``DISK_MB`` MB mounted at ``path``; ``fill()`` takes its last byte, ``free()`` gives it back."""

    path: Path

    @property
    def filler(self) -> Path:
        return self.path / "filler.bin"

    def fill(self) -> None:
        fd = os.open(self.filler, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        chunk = b"\0" * 65536
        try:
            while True:
                os.write(fd, chunk)  # a short write takes the last bytes; the next one fails
        except OSError as exc:
            assert exc.errno == errno.ENOSPC, exc
        finally:
            os.close(fd)

    def free(self) -> None:
        self.filler.unlink(missing_ok=True)


def mount_tmpfs(target: Path, size_mb: int = DISK_MB) -> Disk:
    """Mount a tmpfs at ``target``, or skip (fail under CI) with the reason."""
    target.mkdir(parents=True, exist_ok=True)
    reason = None
    if shutil.which("mount") is None:
        reason = "the mount command is not installed"
    elif os.geteuid() != 0:
        reason = "mounting a tmpfs needs root (CI runs these tests as root)"
    else:
        done = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size_mb}m,mode=0755", "tmpfs", str(target)],
            capture_output=True, text=True, check=False, timeout=30,
        )  # fmt: skip
        if done.returncode != 0:
            reason = f"cannot mount a tmpfs here: {done.stderr.strip() or done.returncode}"
    if reason is not None:
        if os.environ.get("CI"):
            pytest.fail(f"{reason}; CI is set, so this is a failure, not a skip")
        pytest.skip(reason)
    return Disk(target)


def unmount(target: Path) -> None:
    """Unmount; lazily if this process still holds files there (MLflow keeps its connections)."""
    if subprocess.run(["umount", str(target)], capture_output=True, check=False).returncode != 0:
        subprocess.run(["umount", "-l", str(target)], capture_output=True, check=True)


@pytest.fixture
def disk(tmp_path: Path) -> Iterator[Disk]:
    """A small real disk for the store."""
    mounted = mount_tmpfs(tmp_path / "disk")
    try:
        yield mounted
    finally:
        unmount(mounted.path)


def tracking_client(root: Path) -> MlflowClient:
    return MlflowClient(tracking_uri=f"sqlite:///{root / 'mlflow.db'}")


def running_runs(root: Path) -> list[str]:
    """Every RUNNING run in the store's tracking database, in any experiment."""
    client = tracking_client(root)
    ids = [e.experiment_id for e in client.search_experiments()]
    return [r.info.run_id for r in client.search_runs(ids, filter_string="attributes.status = 'RUNNING'")]


def live_files(root: Path) -> list[str]:
    folder = root / tracking.LIVE_RUNS_DIR
    return sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []


def assert_store_works(root: Path, experiment: str) -> None:
    """Opens, tracks a run to FINISHED with its metric, snapshots, reads back and verifies."""
    frame = pd.DataFrame({"id": [7, 8], "y": ["a", "b"]})
    with nbops.open(root) as s:
        with nbops.track(experiment=experiment, run_name="after", store=s) as run:
            nbops.log(auc=0.9)
            pd.testing.assert_frame_equal(s.load("raw@1"), pd.DataFrame({"id": [1, 2, 3], "x": [0.5, 1.5, 2.5]}))
        s.snapshot(frame, "after_full_disk")
        pd.testing.assert_frame_equal(s.load("after_full_disk"), frame)
        assert s.verify().ok
    got = tracking_client(root).get_run(run.run_id)
    assert (got.info.status, got.data.metrics) == ("FINISHED", {"auc": 0.9})
    assert running_runs(root) == [] and live_files(root) == []


def no_library_traceback(stderr: str) -> None:
    assert "Traceback" not in stderr, stderr
    assert "SQLAlchemy database error" not in stderr, stderr


# -- recognising a refused write -----------------------------------------------------------
def _full_sqlite(path: Path) -> sqlite3.Connection:
    """A real SQLite database that can grow no more: inserting into it is SQLITE_FULL."""
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE t (v BLOB)")
    db.commit()
    pages = db.execute("PRAGMA page_count").fetchone()[0]
    db.execute(f"PRAGMA max_page_count = {pages}")
    return db


def test_a_full_database_is_recognised_through_every_wrapper(tmp_path: Path) -> None:
    db = _full_sqlite(tmp_path / "full.db")
    with pytest.raises(sqlite3.OperationalError) as raw:
        db.execute("INSERT INTO t VALUES (zeroblob(100000))")
    db.close()
    assert tracking.disk_error(raw.value) == (errno.ENOSPC, None)

    engine = sa.create_engine(f"sqlite:///{tmp_path / 'full.db'}")
    try:
        with pytest.raises(sa.exc.OperationalError) as wrapped, engine.begin() as conn:
            conn.exec_driver_sql(f"PRAGMA max_page_count = {conn.exec_driver_sql('PRAGMA page_count').scalar()}")
            conn.exec_driver_sql("INSERT INTO t VALUES (zeroblob(100000))")
    finally:
        engine.dispose()
    assert tracking.disk_error(wrapped.value) == (errno.ENOSPC, None)
    try:  # the way MLflow's SQL store passes it on
        raise MlflowException(message=str(wrapped.value)) from wrapped.value
    except MlflowException as mlflow_error:
        assert tracking.disk_error(mlflow_error) == (errno.ENOSPC, None)

    target = tmp_path / "x.bin"
    assert tracking.disk_error(OSError(errno.EIO, "Input/output error", str(target))) == (
        errno.EIO,
        str(target),
    )
    assert tracking.disk_error(OSError(errno.ENOSPC, "No space left on device")) == (
        errno.ENOSPC,
        None,
    )
    with pytest.raises(sqlite3.OperationalError) as other:
        sqlite3.connect(":memory:").execute("SELECT * FROM nowhere")
    assert tracking.disk_error(other.value) is None
    assert tracking.disk_error(ValueError("bad fold")) is None


@given(st.sampled_from(sorted(set(errno.errorcode) - tracking.DISK_ERRNOS)))
def test_other_os_errors_are_not_disk_errors(number: int) -> None:
    assert tracking.disk_error(OSError(number, os.strerror(number), "/some/file")) is None


def test_the_message_names_what_where_and_what_to_do() -> None:
    full = RunWriteError(errno.ENOSPC, "the run's metrics", "/s/.nbops/mlflow.db", "run abc ended FAILED")
    assert str(full) == (
        "disk full (ENOSPC) while writing the run's metrics at /s/.nbops/mlflow.db; "
        "free space and run it again; run abc ended FAILED"
    )
    failing = RunWriteError(errno.EIO, "the cell source cell.py", "/a/cell.py")
    assert str(failing).startswith(
        "I/O error (EIO) while writing the cell source cell.py at /a/cell.py; check the disk"
    )
    assert isinstance(full, TrackingError) and isinstance(full, NbopsError)
    assert str(failing.with_outcome("no run was started")).endswith("; no run was started")


def test_an_unrecorded_end_is_swept_failed_by_the_next_open(template: Path, tmp_path: Path) -> None:
    """A ``<run id>.failed`` marker, even an empty one (written on a full disk), ends its run FAILED."""
    root = copy_store(template, tmp_path)
    with nbops.open(root) as s:
        experiment = tracking.experiment_id(s, "swept")
    client = tracking_client(root)
    running, finished = (client.create_run(experiment).info.run_id for _ in range(2))
    client.set_terminated(finished, "FINISHED")
    (root / tracking.LIVE_RUNS_DIR).mkdir(exist_ok=True)
    for run_id in (running, finished):
        (root / tracking.LIVE_RUNS_DIR / f"{run_id}{tracking.ENDED_SUFFIX}").touch()
    with nbops.open(root):
        pass
    got = client.get_run(running)
    assert got.info.status == "FAILED" and got.data.tags["nbops.ended_by"] == tracking.SWEPT_TAG
    assert client.get_run(finished).info.status == "FINISHED"  # an end that was written is left alone
    assert live_files(root) == []


# -- a real full disk ----------------------------------------------------------------------
def test_a_disk_that_fills_during_a_run_ends_it_failed_with_a_clear_error(
    disk: Disk, template: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    root = copy_store(template, disk.path)
    with nbops.open(root) as s:
        started = time.monotonic()
        with (
            pytest.raises(TrackingError) as caught,
            nbops.track(experiment="fills", run_name="r", store=s) as run,
        ):
            nbops.log(auc=0.5)
            s.load("raw")
            disk.fill()
        assert time.monotonic() - started < 30  # an error, not a hang
    error = caught.value
    assert isinstance(error, RunWriteError) and error.errno == errno.ENOSPC
    db = re.escape(str(root / "mlflow.db"))
    assert re.fullmatch(
        rf"disk full \(ENOSPC\) while writing the run's metrics at {db}; {NO_SPACE}; "
        rf"run {run.run_id} ended FAILED{UNRECORDED}",
        str(error),
    ), str(error)
    assert error.__cause__ is None and error.__suppress_context__  # one line, not MLflow's traceback
    no_library_traceback(capfd.readouterr().err)
    assert mlflow.active_run() is None and api.active() is None and run.status == "FAILED"
    # The end could not be written on the full disk: the live-run file became the sweep's marker.
    assert tracking_client(root).get_run(run.run_id).info.status == "RUNNING"
    assert live_files(root) == [f"{run.run_id}{tracking.ENDED_SUFFIX}"]

    disk.free()
    with nbops.open(root):
        pass
    got = tracking_client(root).get_run(run.run_id)
    assert got.info.status == "FAILED" and got.info.end_time is not None
    assert got.data.tags["nbops.ended_by"] == tracking.SWEPT_TAG
    assert running_runs(root) == [] and live_files(root) == []
    assert_store_works(root, "fills")


@pytest.mark.parametrize(
    ("kind", "what"),
    [
        ("param", "what the run logged \\(params, metrics or tags\\)"),
        ("artifact", "an artifact of the run"),
    ],
)
def test_mlflow_writes_in_the_body_on_a_full_disk_end_the_run_failed(
    disk: Disk, template: Path, capfd: pytest.CaptureFixture[str], kind: str, what: str
) -> None:
    root = copy_store(template, disk.path)
    with (
        nbops.open(root) as s,
        pytest.raises(RunWriteError) as caught,
        nbops.track(experiment=f"body-{kind}", store=s) as run,
    ):
        disk.fill()
        if kind == "param":
            mlflow.log_param("window", "7d" * 200)
        else:
            mlflow.log_text("x" * 200_000, "big.txt")
    place = root / "mlflow.db" if kind == "param" else root / "mlartifacts" / f"body-{kind}" / run.run_id / "artifacts"
    assert re.fullmatch(
        rf"disk full \(ENOSPC\) while writing {what} at {re.escape(str(place))}; {NO_SPACE}; "
        rf"run {run.run_id} ended FAILED({UNRECORDED})?",
        str(caught.value),
    ), str(caught.value)
    no_library_traceback(capfd.readouterr().err)
    assert mlflow.active_run() is None and api.active() is None
    disk.free()
    with nbops.open(root):
        pass
    assert tracking_client(root).get_run(run.run_id).info.status == "FAILED"
    assert running_runs(root) == [] and live_files(root) == []
    assert_store_works(root, f"body-{kind}")


def test_a_disk_already_full_starts_no_run(disk: Disk, template: Path) -> None:
    root = copy_store(template, disk.path)
    with nbops.open(root) as s:
        experiment = tracking.experiment_id(s, "full-at-start")
        disk.fill()
        expected = rf"^disk full \(ENOSPC\) while writing the new run at {re.escape(str(root / 'mlflow.db'))}; "
        with (
            pytest.raises(RunWriteError, match=rf"{expected}{NO_SPACE}; no run was started$"),
            nbops.track(experiment="full-at-start", store=s),
        ):
            pytest.fail("the body of a run that could not start ran")
    assert mlflow.active_run() is None and api.active() is None
    disk.free()
    assert tracking_client(root).search_runs([experiment]) == []
    assert live_files(root) == []
    assert_store_works(root, "full-at-start")


@pytest.fixture
def shell(template: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[InteractiveShell, Path]]:
    """A fresh real shell with the extension loaded, on a store of its own."""
    root = copy_store(template, tmp_path)
    with nbops_shell(root, monkeypatch) as ip:
        yield ip, root


def test_track_cell_whose_source_does_not_fit_fails_its_run_and_runs_nothing(
    shell: tuple[InteractiveShell, Path],
) -> None:
    """Only the artifact folder is full (its own tmpfs): the run's row can still say FAILED at once."""
    ip, root = shell
    artifacts = mount_tmpfs(root / "mlartifacts", size_mb=1)
    try:
        artifacts.fill()
        cell = root / "mlartifacts" / "cell-full"
        with pytest.raises(
            UsageError,
            match=rf"^disk full \(ENOSPC\) while writing the cell source cell\.py at {re.escape(str(cell))}/"
            rf"[0-9a-f]{{32}}/artifacts/cell\.py; {NO_SPACE}; run [0-9a-f]{{32}} ended FAILED$",
        ):
            ip.run_cell_magic("track", "--experiment cell-full --run-name r", "ran = True\n")
        assert "ran" not in ip.user_ns and mlflow.active_run() is None and api.active() is None
        [got] = tracking_client(root).search_runs(
            [tracking_client(root).get_experiment_by_name("cell-full").experiment_id]
        )
        assert got.info.status == "FAILED"
        assert not list(cell.rglob("cell.py"))  # no torn cell.py beside the FAILED run
        assert running_runs(root) == [] and live_files(root) == []
        with pytest.raises(UsageError, match="no run was started"):
            ip.run_line_magic("track", "stop")

        artifacts.free()
        assert ip.run_cell("%%track --experiment cell-full --run-name again\nran = True\n").success
        again = [r for r in tracking_client(root).search_runs([got.info.experiment_id]) if r.info.run_name == "again"]
        assert [r.info.status for r in again] == ["FINISHED"] and ip.user_ns["ran"] is True
        assert (cell / again[0].info.run_id / "artifacts" / "cell.py").read_text() == "ran = True\n"
    finally:
        unmount(artifacts.path)


OWNER = r"""
import os, sys
import nbops
from nbops.tracking.experiments import TrackingError

root, filler = sys.argv[1], sys.argv[2]
store = nbops.open(root)
try:
    with nbops.track(experiment="owner-alive", run_name="r") as run:
        nbops.log(auc=0.5)
        fd = os.open(filler, os.O_WRONLY | os.O_CREAT)
        try:
            while True:
                os.write(fd, b"\0" * 65536)
        except OSError:
            os.close(fd)
except TrackingError as exc:
    print(run.run_id, type(exc).__name__, exc, flush=True)
sys.stdin.readline()  # alive until the test has opened the store
"""


def test_the_next_open_by_another_process_sweeps_the_run_while_its_owner_lives(disk: Disk, template: Path) -> None:
    root = copy_store(template, disk.path)
    env = {k: v for k, v in os.environ.items() if k not in (URI_ENV, MARKER_ENV, "NBOPS_HOME", _faults.FAULT_ENV)}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(SRC), os.environ.get("PYTHONPATH", "")) if p)
    owner = subprocess.Popen(
        [sys.executable, "-c", OWNER, str(root), str(disk.filler)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip
    try:
        assert owner.stdout is not None
        line = owner.stdout.readline().strip()
        assert line, owner.communicate(timeout=60)[1]
        run_id, kind, message = line.split(" ", 2)
        assert kind == "RunWriteError" and message.startswith("disk full (ENOSPC) while writing the run's metrics at")
        assert message.endswith(f"run {run_id} ended FAILED, but its status could not be written; "
                                "the next nbops.open() of the store marks it FAILED")  # fmt: skip
        assert tracking_client(root).get_run(run_id).info.status == "RUNNING"
        assert live_files(root) == [f"{run_id}{tracking.ENDED_SUFFIX}"]

        disk.free()
        with nbops.open(root):
            pass
        assert owner.poll() is None  # swept although its process lives on
        got = tracking_client(root).get_run(run_id)
        assert got.info.status == "FAILED" and got.data.tags["nbops.ended_by"] == tracking.SWEPT_TAG
        assert running_runs(root) == [] and live_files(root) == []
        _, err = owner.communicate("\n", timeout=60)
        assert owner.returncode == 0, err
        no_library_traceback(err)
    finally:
        if owner.poll() is None:
            owner.kill()
            owner.communicate()
    assert_store_works(root, "owner-alive")


# -- EIO and ENOSPC at each step, through the fault points -----------------------------------
FAULTS = r"""
import importlib, json, os, sys
import mlflow
import nbops
from nbops import api
from nbops.core import _faults
from nbops.tracking import experiments as tracking

root = sys.argv[1]
store = nbops.open(root)
for error in ("EIO", "ENOSPC"):
    for point in _faults.IO_POINTS:
        os.environ[_faults.FAULT_ENV] = f"{point}:{error}"
        importlib.reload(_faults)  # the hook reads its variable once, at import
        experiment = f"fault-{point}-{error}"
        run = None
        outcome = {"point": point, "fault": error, "experiment": experiment, "error": None}
        try:
            with tracking.track(store, experiment, run_name="r", source="x = 1\n") as run:
                store.load("raw")
                nbops.log(auc=0.5)
        except Exception as exc:
            outcome.update(
                error=type(exc).__name__, message=str(exc), errno=getattr(exc, "errno", None),
                tracking_error=isinstance(exc, tracking.TrackingError),
            )
        outcome.update(
            run_id=run.run_id if run is not None else None, active=mlflow.active_run() is not None,
            nbops_active=api.active() is not None,
            live=sorted(os.listdir(os.path.join(root, "live_runs"))) if os.path.isdir(os.path.join(root, "live_runs")) else [],
        )
        print(json.dumps(outcome), flush=True)
"""


def _expected_place(root: Path, point: str, run_id: str | None, experiment: str) -> tuple[str, str]:
    db = str(root / "mlflow.db")
    return {
        "run_start": ("the new run", db),
        "run_live_file": ("the run's live-run file", str(root / "live_runs" / f"{run_id}.json")),
        "run_cell_source": (
            "the cell source cell.py",
            str(root / "mlartifacts" / experiment / str(run_id) / "artifacts" / "cell.py"),
        ),
        "run_metrics": ("the run's metrics", db),
        "run_inputs": ("the run's dataset inputs", db),
        "run_lineage": ("the run's lineage", f"the catalog {root / 'catalog.db'}"),
        "run_status": ("the run's end status", db),
    }[point]


def test_eio_and_enospc_at_each_step_of_a_run_end_it_failed(template: Path, tmp_path: Path) -> None:
    root = copy_store(template, tmp_path)
    env = {k: v for k, v in os.environ.items() if k not in (URI_ENV, MARKER_ENV, "NBOPS_HOME", _faults.FAULT_ENV)}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(SRC), os.environ.get("PYTHONPATH", "")) if p)
    done = subprocess.run(
        [sys.executable, "-c", FAULTS, str(root)],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    no_library_traceback(done.stderr)
    outcomes = [json.loads(line) for line in done.stdout.splitlines()]
    assert [(o["fault"], o["point"]) for o in outcomes] == [
        (e, p) for e in ("EIO", "ENOSPC") for p in _faults.IO_POINTS
    ]
    client = tracking_client(root)
    statuses: dict[str, str] = {}
    for o in outcomes:
        label = f"{o['fault']} at {o['point']}: {o}"
        assert (o["error"], o["tracking_error"]) == ("RunWriteError", True), label
        assert o["errno"] == getattr(errno, o["fault"]), label
        assert not o["active"] and not o["nbops_active"] and o["live"] == [], label
        experiment = client.get_experiment_by_name(o["experiment"])
        runs = client.search_runs([experiment.experiment_id]) if experiment is not None else []
        if o["point"] == "run_start":
            assert runs == [], label
            run_id = None
        else:
            [got] = runs  # the one run, whether or not its body was reached
            run_id = got.info.run_id
            assert o["run_id"] in (None, run_id), label
        what, where = _expected_place(root, o["point"], run_id, o["experiment"])
        advice = (
            NO_SPACE
            if o["fault"] == "ENOSPC"
            else r"check the disk \(the system log names the device\) and run it again"
        )
        lead = "disk full" if o["fault"] == "ENOSPC" else "I/O error"
        outcome = "no run was started" if run_id is None else f"run {run_id} ended FAILED"
        assert re.fullmatch(
            rf"{lead} \({o['fault']}\) while writing {re.escape(what)} at {re.escape(where)}; {advice}; {outcome}",
            o["message"],
        ), label
        if run_id is None:
            continue
        statuses[o["point"]] = got.info.status
        metrics = {"auc": 0.5} if o["point"] in ("run_inputs", "run_lineage", "run_status") else {}
        inputs = {d.dataset.name for d in got.inputs.dataset_inputs} if got.inputs else set()
        assert got.data.metrics == metrics, label
        assert inputs == ({"raw@1"} if o["point"] in ("run_lineage", "run_status") else set()), label
        if o["point"] == "run_cell_source":
            assert not Path(where).exists(), label
    assert set(statuses.values()) == {"FAILED"}, statuses
    assert running_runs(root) == []
    assert_store_works(root, "after-faults")
