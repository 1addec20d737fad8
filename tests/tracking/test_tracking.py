"""Experiment tracking on a real MLflow backend inside a temporary store.

Creating an MLflow SQLite database costs seconds (MLflow runs its
migrations), so the tests share one store per module; each test uses its own
experiment, dataset and model names so that they do not see each other's runs.
Only tests that are about a new database make one.  Crash tests use real
subprocesses.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import shutil
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse
from urllib.request import url2pathname

import mlflow
import numpy as np
import pandas as pd
import pytest
from IPython.core.error import UsageError
from IPython.core.interactiveshell import InteractiveShell
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

import nbops
from helpers.mlflowstate import forget_tracking_uri, reset_mlflow, untracked_setup
from helpers.shell import nbops_shell
from nbops import api
from nbops.core import _logs
from nbops.core.paths import MARKER_ENV, URI_ENV
from nbops.errors import NbopsError, NotFoundError
from nbops.store import Store
from nbops.tracking import experiments as tracking
from nbops.tracking.experiments import TrackingError

FIRST_USE = "creating the MLflow tracking database"


# -- fixtures ----------------------------------------------------------------------------
@pytest.fixture(autouse=True)
def clean_mlflow(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No tracking URI from the environment or an earlier test; nothing left running after."""
    forget_tracking_uri(monkeypatch)
    yield
    reset_mlflow()  # monkeypatch then restores the environment as it was


@dataclass
class Backend:
    root: Path  # the shared store
    uri: str  # its tracking URI
    creation_stderr: str  # what nbops printed while creating mlflow.db
    template: Path  # an initialised, empty copy of mlflow.db (a "user's own" MLflow database)

    def client(self) -> MlflowClient:
        return MlflowClient(tracking_uri=self.uri)


@pytest.fixture(scope="module")
def backend(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Backend]:
    """One store whose MLflow database is created once for the module, by nbops."""
    base = tmp_path_factory.mktemp("tracking")
    root = base / ".nbops"
    with untracked_setup():
        err = io.StringIO()
        _logs.enable_console()  # as the extension and the CLI do: the library itself only logs
        with contextlib.redirect_stderr(err), nbops.open(root) as store:
            tracking.ensure_backend(store)
        template = base / "template.db"
        src, dst = sqlite3.connect(root / "mlflow.db"), sqlite3.connect(template)
        try:
            src.backup(dst)
        finally:
            src.close()
            dst.close()
    yield Backend(root, f"sqlite:///{root / 'mlflow.db'}", err.getvalue(), template)


@pytest.fixture
def store(backend: Backend, clean_mlflow: None) -> Iterator[Store]:
    """The module's shared store, opened afresh for this test (overrides conftest's new store)."""
    with nbops.open(backend.root) as s:
        yield s


@pytest.fixture
def shell(backend: Backend, clean_mlflow: None, monkeypatch: pytest.MonkeyPatch) -> Iterator[InteractiveShell]:
    """A fresh real shell with the extension loaded, working on the shared store."""
    with nbops_shell(backend.root, monkeypatch) as ip:
        yield ip


@dataclass
class DataRun:
    run_id: str
    raw: Any  # SnapshotRef of raw@1
    fg: Any  # FeatureGroupRef of fg:1@1


@pytest.fixture(scope="module")
def data_run(backend: Backend) -> DataRun:
    """A FINISHED run of experiment "data" that read raw@1 and wrote feature commit fg:1@1."""
    frame = pd.DataFrame(
        {
            "id": [1, 2, 3],
            "ts": pd.to_datetime(["2026-01-01", "2026-01-02", "2026-01-03"], utc=True),
            "x": [0.5, 1.5, 2.5],
        }
    )
    with untracked_setup(), nbops.open(backend.root) as s:
        raw = s.snapshot(frame, "raw")  # before the run: not one of its inputs
        with nbops.track(experiment="data", run_name="features", store=s) as run:
            mlflow.log_param("window", "7d")
            fg = s.register_features(s.load("raw@1"), "fg", keys="id", event_time="ts")
            nbops.log(rows=len(frame))
    return DataRun(run.run_id, raw, fg)


# -- helpers -------------------------------------------------------------------------------
def runs_of(backend: Backend, experiment: str) -> list[Any]:
    client = backend.client()
    found = client.get_experiment_by_name(experiment)
    assert found is not None, f"no experiment {experiment!r}"
    return client.search_runs([found.experiment_id])


def local_path(uri: str) -> Path:
    return Path(url2pathname(urlparse(uri).path))


def active_run_rows(root: Path) -> set[str]:
    """Runs the store knows to be live: its live_runs/ files."""
    return {p.stem for p in (root / "live_runs").glob("*.json")}


def journal_mode(db_file: Path) -> str:
    db = sqlite3.connect(db_file)
    try:
        return str(db.execute("PRAGMA journal_mode").fetchone()[0])
    finally:
        db.close()


def no_ansi(text: str) -> str:
    return re.sub(r"\x1b\[[0-9;]*m", "", text)


# -- 1. the backend ----------------------------------------------------------------------
def test_open_points_mlflow_own_api_at_the_store_database(store: Store, backend: Backend) -> None:
    assert mlflow.get_tracking_uri() == backend.uri
    assert os.environ[URI_ENV] == backend.uri == os.environ[MARKER_ENV]
    with mlflow.start_run(run_name="plain-mlflow") as active:
        mlflow.log_metric("m", 1.5)
    db = sqlite3.connect(backend.root / "mlflow.db")
    try:
        row = db.execute("SELECT name, status FROM runs WHERE run_uuid = ?", (active.info.run_id,)).fetchone()
        value = db.execute(
            "SELECT value FROM metrics WHERE run_uuid = ? AND key = 'm'", (active.info.run_id,)
        ).fetchone()
    finally:
        db.close()
    assert row == ("plain-mlflow", "FINISHED")
    assert value == (1.5,)


def test_a_tracking_uri_set_by_the_user_is_left_alone(
    backend: Backend, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # MLflow's default artifact root for a user's sqlite URI is ./mlruns
    monkeypatch.chdir(tmp_path)
    user_db = tmp_path / "mine.db"
    shutil.copy(backend.template, user_db)  # the user's own, already initialised, MLflow database
    user_uri = f"sqlite:///{user_db}"
    monkeypatch.setenv(URI_ENV, user_uri)
    with nbops.open(tmp_path / ".nbops") as s:
        assert os.environ[URI_ENV] == user_uri and MARKER_ENV not in os.environ
        with nbops.track(experiment="mine", run_name="r", store=s) as run:
            assert mlflow.get_tracking_uri() == user_uri
            mlflow.log_metric("m", 2.0)
        assert s.runs("mine")["run_id"].tolist() == [run.run_id]
        assert not (s.root / "mlflow.db").exists()
    got = MlflowClient(tracking_uri=user_uri).get_run(run.run_id)
    assert (got.info.status, got.data.metrics) == ("FINISHED", {"m": 2.0})
    with pytest.raises(MlflowException, match=run.run_id):  # not in the store's own database
        backend.client().get_run(run.run_id)


def test_tracking_database_is_wal_and_artifacts_live_in_the_store(store: Store, backend: Backend) -> None:
    assert journal_mode(backend.root / "mlflow.db") == "wal"
    with nbops.track(experiment="artifacts", store=store) as run:
        mlflow.log_text("hello", "notes/a.txt")
    experiment = backend.client().get_experiment_by_name("artifacts")
    assert experiment.artifact_location == (backend.root / "mlartifacts" / "artifacts").as_uri()
    path = local_path(backend.client().get_run(run.run_id).info.artifact_uri) / "notes" / "a.txt"
    assert path.is_relative_to(backend.root / "mlartifacts")
    assert path.read_text() == "hello"


def test_first_use_message_is_printed_once(store: Store, backend: Backend, capsys: pytest.CaptureFixture[str]) -> None:
    assert backend.creation_stderr.count(FIRST_USE) == 1
    assert "MLflow database ready" in backend.creation_stderr
    with nbops.track(experiment="first-use", store=store):
        pass
    nbops.open(backend.root).close()
    with nbops.track(experiment="first-use", store=store):
        pass
    assert FIRST_USE not in capsys.readouterr().err


@pytest.mark.slow
def test_mlflow_api_as_first_use_still_gets_a_wal_database_in_the_store(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Opening a store creates mlflow.db in WAL mode, so MLflow's own first use gets WAL too.

    The Default experiment's artifacts then follow MLflow's own default (./mlruns), as
    docs/tracking.md says: only experiments nbops creates keep artifacts in the store.
    """
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    with nbops.open(tmp_path / ".nbops") as s:
        assert journal_mode(s.root / "mlflow.db") == "wal"  # before MLflow is touched
        with mlflow.start_run() as active:
            mlflow.log_text("x", "a.txt")
        assert mlflow.get_tracking_uri() == f"sqlite:///{s.root / 'mlflow.db'}"
        assert journal_mode(s.root / "mlflow.db") == "wal"
        assert mlflow.MlflowClient().get_run(active.info.run_id).info.status == "FINISHED"
        with nbops.track(experiment="after-mlflow-first", store=s) as run:
            pass
        assert local_path(mlflow.get_experiment(run.experiment_id).artifact_location).is_relative_to(s.root)


# -- 2. runs -------------------------------------------------------------------------------
def test_track_finishes_with_params_metrics_and_tags(store: Store, backend: Backend) -> None:
    client = backend.client()
    with nbops.track(experiment="t-ok", run_name="ok") as run:  # the store opened last
        assert mlflow.active_run().info.run_id == run.run_id
        assert run.run_id in active_run_rows(backend.root)
        mlflow.log_param("C", 0.5)
        nbops.log(auc=0.91, f1=0.5)
        nbops.log(step=1, loss=0.4)
        nbops.log(step=2, loss=0.2)
        assert client.get_run(run.run_id).data.metrics == {}  # buffered: written at the end
    got = client.get_run(run.run_id)
    assert (got.info.status, run.status, got.info.run_name) == ("FINISHED", "FINISHED", "ok")
    assert got.info.experiment_id == client.get_experiment_by_name("t-ok").experiment_id
    assert got.data.params == {"C": "0.5"}
    assert got.data.metrics == {"auc": 0.91, "f1": 0.5, "loss": 0.2}
    assert [(m.step, m.value) for m in client.get_metric_history(run.run_id, "loss")] == [
        (1, 0.4),
        (2, 0.2),
    ]
    tags = got.data.tags
    assert tags["nbops.version"] == nbops.__version__
    assert tags["nbops.pid"] == str(os.getpid())
    assert tags["nbops.host"] == socket.gethostname()
    assert tags["nbops.store"] == str(backend.root)
    assert mlflow.active_run() is None and api.active() is None
    assert run.run_id not in active_run_rows(backend.root)


def test_a_failing_body_marks_the_run_failed_and_its_exception_goes_on_unchanged(
    store: Store, backend: Backend
) -> None:
    error = ValueError("bad fold")
    with (
        pytest.raises(ValueError) as caught,
        nbops.track(experiment="t-fail", run_name="bad", store=store) as run,
    ):
        nbops.log(auc=0.1)
        raise error
    assert caught.value is error and caught.value.args == ("bad fold",)
    assert caught.value.__context__ is None and caught.value.__cause__ is None
    got = backend.client().get_run(run.run_id)
    assert (got.info.status, run.status) == ("FAILED", "FAILED")
    assert got.data.metrics == {"auc": 0.1}  # what was logged before the error is kept
    assert mlflow.active_run() is None and run.run_id not in active_run_rows(backend.root)


def test_keyboard_interrupt_marks_the_run_killed(store: Store, backend: Backend) -> None:
    with (
        pytest.raises(KeyboardInterrupt),
        nbops.track(experiment="t-interrupt", store=store) as run,
    ):
        raise KeyboardInterrupt
    assert backend.client().get_run(run.run_id).info.status == "KILLED"
    assert mlflow.active_run() is None and run.run_id not in active_run_rows(backend.root)


def test_log_outside_a_run_is_a_clear_error(store: Store) -> None:
    with pytest.raises(NbopsError, match=r"no nbops run is active; use %%track, %track start"):
        nbops.log(auc=0.5)
    with nbops.track(experiment="t-after", store=store):
        nbops.log(auc=0.5)
    with pytest.raises(NbopsError, match="no nbops run is active"):
        nbops.log(auc=0.6)


def test_a_metric_logged_twice_keeps_its_last_value(store: Store, backend: Backend) -> None:
    with nbops.track(experiment="t-relog", store=store) as run:
        nbops.log(loss=0.9)
        nbops.log(loss=0.1)
    assert run.metrics == {"loss": 0.1}
    assert backend.client().get_run(run.run_id).data.metrics == {"loss": 0.1}


# -- 3. dataset inputs -----------------------------------------------------------------------
def test_data_read_and_written_in_a_run_are_its_dataset_inputs(data_run: DataRun, backend: Backend) -> None:
    got = backend.client().get_run(data_run.run_id)
    inputs = {d.dataset.name: d for d in got.inputs.dataset_inputs}
    assert set(inputs) == {"raw@1", "fg:1@1"}
    for name, ref, kind, role in [
        ("raw@1", data_run.raw, "snapshot", "input"),
        ("fg:1@1", data_run.fg, "feature_commit", "output"),
    ]:
        dataset = inputs[name].dataset
        assert len(dataset.digest) >= 8 and ref.digest.startswith(dataset.digest)
        assert dataset.source_type == "nbops"
        assert json.loads(dataset.source) == {
            "store": str(backend.root),
            "kind": kind,
            "ref": name,
            "rows": 3,
        }
        assert {t.key: t.value for t in inputs[name].tags} == {
            "mlflow.data.context": role,
            "nbops.kind": kind,
        }


def test_input_logging_cost_does_not_grow_with_rows(store: Store) -> None:
    store.snapshot(pd.DataFrame({"v": np.arange(10)}), "small")
    store.snapshot(pd.DataFrame({"v": np.arange(1_000_000)}), "big")

    def end_cost(name: str) -> float:
        run = tracking.start_run(store, "input-cost")
        store.load(name)
        started = time.perf_counter()
        tracking.end_run(run)
        assert [r for _, _, r in run.reads] == [f"{name}@1"]
        return time.perf_counter() - started

    end_cost("small")  # warm-up
    costs: dict[str, list[float]] = {"small": [], "big": []}
    for _ in range(3):
        for name in ("small", "big"):
            costs[name].append(end_cost(name))
    small, big = statistics.median(costs["small"]), statistics.median(costs["big"])
    print(
        f"\nFIGURE end_run with one input: 10 rows {small * 1000:.1f} ms, 1M rows {big * 1000:.1f} ms, "
        f"difference {(big - small) * 1000:+.1f} ms (median of 3)"
    )
    assert big - small < 0.5


# -- 4. reading runs and lineage ------------------------------------------------------------
def test_lineage_links_snapshot_run_and_feature_commit(data_run: DataRun, store: Store) -> None:
    run = f"run:{data_run.run_id}"
    graph = store.lineage("raw@1")
    assert graph["root"] == "snapshot:raw@1"
    assert {n["id"] for n in graph["nodes"]} == {"snapshot:raw@1", run, "feature_commit:fg:1@1"}
    assert {(e["parent"], e["child"]) for e in graph["edges"]} == {
        ("snapshot:raw@1", run),
        ("snapshot:raw@1", "feature_commit:fg:1@1"),
        (run, "feature_commit:fg:1@1"),
    }
    around_run = store.lineage(run)
    assert {(e["parent"], e["child"]) for e in around_run["edges"]} >= {
        ("snapshot:raw@1", run),
        (run, "feature_commit:fg:1@1"),
    }


def test_runs_is_a_frame_of_params_metrics_status_and_inputs(data_run: DataRun, store: Store) -> None:
    frame = store.runs("data")
    assert frame["run_id"].tolist() == [data_run.run_id]
    row = frame.iloc[0]
    assert (row["experiment"], row["run_name"], row["status"]) == ("data", "features", "FINISHED")
    assert row["params.window"] == "7d" and row["metrics.rows"] == 3.0
    assert sorted(row["inputs"]) == ["fg:1@1", "raw@1"]
    assert row["end_time"] >= row["start_time"]
    assert data_run.run_id in store.runs()["run_id"].tolist()  # every experiment


def test_runs_of_an_unknown_experiment_names_the_known_ones(data_run: DataRun, store: Store) -> None:
    with pytest.raises(NotFoundError, match=r"no experiment named 'nope'; known: .*\bdata\b"):
        store.runs("nope")


# -- 5. no run left RUNNING -------------------------------------------------------------------
CRASH = """
import os, signal, sys
import nbops
store = nbops.open(sys.argv[1])
with nbops.track(experiment="crash", run_name="doomed") as run:
    print(run.run_id, flush=True)
    os.kill(os.getpid(), signal.SIGKILL)
"""

ALIVE = """
import sys
import nbops
store = nbops.open(sys.argv[1])
with nbops.track(experiment="alive", run_name="waiting") as run:
    print(run.run_id, flush=True)
    sys.stdin.readline()
"""


@dataclass
class Children:
    crashed: subprocess.Popen[str]  # kills itself with SIGKILL inside its run
    alive: subprocess.Popen[str]  # waits inside its run for a line on stdin


@pytest.fixture(scope="module")
def children(backend: Backend) -> Iterator[Children]:
    """Both child processes, started together (each needs seconds to import MLflow)."""
    env = {k: v for k, v in os.environ.items() if k not in (URI_ENV, MARKER_ENV, "NBOPS_HOME")}

    def spawn(code: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [sys.executable, "-c", code, str(backend.root)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )

    procs = Children(spawn(CRASH), spawn(ALIVE))
    yield procs
    for child in (procs.crashed, procs.alive):
        if child.poll() is None:
            child.kill()
        child.communicate()


@pytest.mark.slow
def test_run_of_a_killed_process_is_marked_killed_at_next_open(children: Children, backend: Backend) -> None:
    out, err = children.crashed.communicate(timeout=120)
    assert children.crashed.returncode == -signal.SIGKILL, err
    run_id = out.split()[-1]
    client = backend.client()
    assert client.get_run(run_id).info.status == "RUNNING"
    assert run_id in active_run_rows(backend.root)
    with nbops.open(backend.root):
        pass
    got = client.get_run(run_id)
    assert got.info.status == "KILLED" and got.info.end_time is not None
    assert got.data.tags["nbops.ended_by"] == "reaped: its process died"
    assert run_id not in active_run_rows(backend.root)


@pytest.mark.slow
def test_run_of_a_live_process_is_not_reaped(children: Children, backend: Backend) -> None:
    child = children.alive
    assert child.stdout is not None
    run_id = child.stdout.readline().strip()
    assert run_id, child.communicate(timeout=60)[1]
    with nbops.open(backend.root):
        pass
    assert backend.client().get_run(run_id).info.status == "RUNNING"
    assert run_id in active_run_rows(backend.root)
    _, err = child.communicate("\n", timeout=120)  # let it leave its run
    assert child.returncode == 0, err
    assert backend.client().get_run(run_id).info.status == "FINISHED"
    assert run_id not in active_run_rows(backend.root)


def test_a_reused_pid_does_not_keep_a_dead_run_alive(store: Store, backend: Backend) -> None:
    client = backend.client()
    experiment = tracking.experiment_id(store, "reused-pid")
    run_id = client.create_run(experiment).info.run_id
    # this process's pid, but a start time that is not this process's: the pid was reused
    tracking.LiveRun(run_id, backend.uri, socket.gethostname(), os.getpid(), 1.0).write(store)
    with nbops.open(backend.root):
        pass
    assert client.get_run(run_id).info.status == "KILLED"
    assert run_id not in active_run_rows(backend.root)


# -- 6. magics ------------------------------------------------------------------------------
def test_track_cell_runs_in_a_finished_run_with_its_source(shell: InteractiveShell, backend: Backend) -> None:
    body = "import nbops\nx = 41 + 1\nnbops.log(answer=x)\n"
    result = shell.run_cell(f"%%track --experiment magic-cell --run-name r\n{body}")
    assert result.success and shell.user_ns["x"] == 42
    [got] = runs_of(backend, "magic-cell")
    assert (got.info.status, got.info.run_name, got.data.metrics) == (
        "FINISHED",
        "r",
        {"answer": 42.0},
    )
    assert (local_path(got.info.artifact_uri) / "cell.py").read_text() == body
    assert mlflow.active_run() is None


def test_failing_track_cell_marks_the_run_failed_and_ipython_shows_the_error(
    shell: InteractiveShell, backend: Backend, capsys: pytest.CaptureFixture[str]
) -> None:
    line, body = "--experiment magic-fail --run-name bad", "raise ValueError('boom 17')"
    assert shell.run_cell_magic("track", line, body) is None  # the magic itself does not raise
    out = no_ansi(capsys.readouterr().out)
    assert "ValueError: boom 17" in out and "UsageError" not in out
    [got] = runs_of(backend, "magic-fail")
    assert got.info.status == "FAILED"
    assert f"run {got.info.run_id} (bad) FAILED" in out
    assert mlflow.active_run() is None and api.active() is None
    with pytest.raises(UsageError, match="no run was started"):  # nothing left half-open
        shell.run_line_magic("track", "stop")


def test_failing_track_cell_reports_its_error_to_the_front_end(
    shell: InteractiveShell, capsys: pytest.CaptureFixture[str]
) -> None:
    result = shell.run_cell("%%track --experiment magic-fail-status\nraise ValueError('boom 23')")
    assert isinstance(result.error_in_exec, ValueError) and result.error_in_exec.args == ("boom 23",)
    assert not result.success
    assert no_ansi(capsys.readouterr().out).count("ValueError: boom 23") == 1  # shown once


def test_track_start_and_stop_span_cells(shell: InteractiveShell, backend: Backend) -> None:
    run = shell.run_line_magic("track", "start --experiment magic-span --run-name span")
    shell.run_cell("import nbops\nnbops.log(acc=0.75)")
    shell.run_cell("y = 2")
    assert backend.client().get_run(run.run_id).info.status == "RUNNING"
    with pytest.raises(UsageError, match=f"run {run.run_id} is still open; %track stop it first"):
        shell.run_line_magic("track", "start --experiment magic-span")
    shell.run_line_magic("track", "stop")
    got = backend.client().get_run(run.run_id)
    assert (got.info.status, got.data.metrics) == ("FINISHED", {"acc": 0.75})
    assert mlflow.active_run() is None and run.run_id not in active_run_rows(backend.root)


def test_track_stop_without_start_is_a_usage_error(shell: InteractiveShell) -> None:
    with pytest.raises(UsageError, match=r"no run was started with %track start"):
        shell.run_line_magic("track", "stop")


def test_track_cell_with_a_verb_is_a_usage_error(shell: InteractiveShell) -> None:
    with pytest.raises(UsageError, match=r"%%track takes no start/stop"):
        shell.run_cell_magic("track", "start", "ran = True")
    assert "ran" not in shell.user_ns and mlflow.active_run() is None


# -- 7. models ------------------------------------------------------------------------------
MODEL_CELL = """
import mlflow
import numpy as np
from sklearn.linear_model import LogisticRegression
X = np.array([[0.0], [1.0], [2.0], [3.0], [4.0], [5.0]])
y = np.array([0, 0, 0, 1, 1, 1])
model = LogisticRegression().fit(X, y)
# pip_requirements skips MLflow's requirement inference, which takes ~10 s
mlflow.sklearn.log_model(model, name="model", pip_requirements=["scikit-learn"])
"""


@pytest.mark.slow
def test_a_logged_model_is_registered_aliased_loaded_and_in_lineage(shell: InteractiveShell, backend: Backend) -> None:
    result = shell.run_cell(f"%%track --experiment models --run-name clf --register-model fraud_clf\n{MODEL_CELL}")
    assert result.success
    [got] = runs_of(backend, "models")
    run_id = got.info.run_id
    assert got.info.status == "FINISHED"
    client = backend.client()
    assert client.get_model_version("fraud_clf", "1").run_id == run_id  # by --register-model

    version = nbops.register_model("fraud_clf", run_id=run_id, alias="champion")
    assert version.version in (2, "2") and client.get_model_version_by_alias("fraud_clf", "champion").run_id == run_id
    loaded = mlflow.sklearn.load_model("models:/fraud_clf@champion")
    X, model = shell.user_ns["X"], shell.user_ns["model"]
    np.testing.assert_array_equal(loaded.predict(X), model.predict(X))
    np.testing.assert_allclose(loaded.predict_proba(X), model.predict_proba(X))

    with nbops.open(backend.root) as s:
        for ref in ("model:fraud_clf@1", "model:fraud_clf@2"):
            graph = s.lineage(ref)
            assert f"run:{run_id}" in {n["id"] for n in graph["nodes"]}
            assert {"parent": f"run:{run_id}", "child": ref} in graph["edges"]


def test_registering_from_a_run_without_a_model_is_a_tracking_error(store: Store) -> None:
    with nbops.track(experiment="no-model", store=store) as run:
        pass
    with pytest.raises(TrackingError, match=rf"run {run.run_id} logged no model; log one \(e\.g\. mlflow"):
        nbops.register_model("nothing", run_id=run.run_id, store=store)


def test_the_default_experiment_is_the_notebook_name_made_valid(shell: InteractiveShell, backend: Backend) -> None:
    """A notebook called "50% model..ipynb" still tracks: its experiment is "50_ model"."""
    shell.user_ns["__session__"] = "/work/50% model..ipynb"
    result = shell.run_cell("%%track --run-name r\nx = 1")
    assert result.success, result.error_in_exec
    assert [r.info.run_name for r in runs_of(backend, "50_ model")] == ["r"]
