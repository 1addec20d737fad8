"""Tracking through a real ``mlflow server`` on PostgreSQL, as a team runs it.

One server per module: ``tests/helpers/pgserver.py`` starts PostgreSQL, a database
is made for MLflow, and ``python -m mlflow server`` runs on 127.0.0.1 with
artifacts proxied through it (``--artifacts-destination``), so clients
upload over HTTP as they would from another machine.  Every test sets
``MLFLOW_TRACKING_URI`` to the server, the way a user does, and works on an
embedded store in its own folder.  Without PostgreSQL's binaries the module
skips and says why (under ``CI`` it fails instead).
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import mlflow
import pandas as pd
import pytest
from IPython.core.interactiveshell import InteractiveShell

import nbops
from helpers.mlflowserver import MlflowServer, running_server
from helpers.mlflowstate import reset_mlflow
from helpers.pgserver import PgServer
from helpers.servers import free_port
from helpers.shell import nbops_shell
from nbops.core import _logs
from nbops.core.paths import MARKER_ENV, URI_ENV
from nbops.store import Store
from nbops.tracking import experiments as tracking
from nbops.widgets.lineage import LineagePanel
from nbops.widgets.runs import RunsPanel

pytestmark = pytest.mark.postgres


@pytest.fixture(scope="module")
def mlflow_server(pg_server: PgServer) -> Iterator[MlflowServer]:
    database = pg_server.create_database("mlflow")
    backend = pg_server.url(database).replace("postgresql://", "postgresql+psycopg://", 1)
    base = Path(tempfile.mkdtemp(prefix="nbops-mlflow-server-"))
    try:
        with running_server(backend, base / "artifacts", base / "server.log") as server:
            yield server
    except RuntimeError as exc:
        pytest.fail(str(exc), pytrace=False)
    finally:
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(autouse=True)
def user_uri(mlflow_server: MlflowServer, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """``MLFLOW_TRACKING_URI`` set by the user to the server, as a team member does."""
    # Forget a URI cached by an earlier test first: set_tracking_uri(None) also unsets MLFLOW_TRACKING_URI
    # whenever MLflow had one cached, which would drop the server's URI set after it.
    mlflow.set_tracking_uri(None)
    monkeypatch.delenv(MARKER_ENV, raising=False)
    monkeypatch.setenv(URI_ENV, mlflow_server.uri)
    yield mlflow_server.uri
    reset_mlflow()


@pytest.fixture
def shell(store: Store, monkeypatch: pytest.MonkeyPatch) -> Iterator[InteractiveShell]:
    """A fresh real shell with the extension loaded, on this test's store."""
    with nbops_shell(store.root, monkeypatch) as ip:
        yield ip


def frame(n: int = 6) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "id": range(n),
            "ts": pd.date_range("2026-01-01", periods=n, freq="D", tz="UTC"),
            "x": [float(i) for i in range(n)],
        }
    )


def runs_of(server: MlflowServer, experiment: str) -> list[mlflow.entities.Run]:
    client = server.client()
    found = client.get_experiment_by_name(experiment)
    assert found is not None, f"no experiment {experiment!r} on the server"
    return list(client.search_runs([found.experiment_id]))


MODEL_CELL = """
import mlflow
import nbops
import numpy as np
from sklearn.linear_model import LogisticRegression
store = nbops.open()
raw = store.load("raw@1")
feats = store.features("fg")
mlflow.log_param("C", 1.0)
X = np.array([[0.0], [1.0], [2.0], [3.0], [4.0], [5.0]])
y = np.array([0, 0, 0, 1, 1, 1])
model = LogisticRegression().fit(X, y)
nbops.log(rows=len(raw), feature_rows=len(feats))
# pip_requirements skips MLflow's requirement inference, which takes seconds
mlflow.sklearn.log_model(model, name="model", pip_requirements=["scikit-learn"])
"""


# -- %%track ------------------------------------------------------------------------------------
def test_track_cell_logs_run_inputs_source_model_and_lineage_to_the_server(
    shell: InteractiveShell, store: Store, mlflow_server: MlflowServer
) -> None:
    raw = store.snapshot(frame(), "raw")
    fg = store.register_features(frame(), "fg", keys="id", event_time="ts")
    result = shell.run_cell(f"%%track --experiment srv-cell --run-name clf --register-model srv_model\n{MODEL_CELL}")
    assert result.success, result.error_in_exec
    [got] = runs_of(mlflow_server, "srv-cell")
    assert (got.info.status, got.info.run_name) == ("FINISHED", "clf")
    assert got.data.params == {"C": "1.0"}
    assert got.data.metrics == {"rows": 6.0, "feature_rows": 6.0}
    # artifacts went through the server's proxy, not to a folder of this machine
    assert got.info.artifact_uri.startswith("mlflow-artifacts:")
    client = mlflow_server.client()
    source = Path(client.download_artifacts(got.info.run_id, "cell.py", str(store.root.parent)))
    assert source.read_text(encoding="utf-8") == MODEL_CELL
    inputs = {d.dataset.name: d.dataset.digest for d in got.inputs.dataset_inputs}
    assert inputs == {raw.ref: raw.digest[:36], f"fg:{fg.version}@{fg.commit}": fg.digest[:36]}
    version = client.get_model_version("srv_model", "1")
    assert version.run_id == got.info.run_id
    # the experiment's artifacts are the server's, not the store's
    assert not (store.root / tracking.ARTIFACT_DIR / "srv-cell").exists()
    assert not (store.root / "mlflow.db").exists()  # the user's URI: no embedded backend beside it
    assert mlflow.active_run() is None

    # lineage: snapshot -> run -> model, as with the embedded backend
    run, model = f"run:{got.info.run_id}", "model:srv_model@1"
    edges = {(e["parent"], e["child"]) for e in store.lineage(raw.ref)["edges"]}
    assert {(f"snapshot:{raw.ref}", run), (run, model)} <= edges
    panel = LineagePanel(store, raw.ref)
    assert panel.last_error is None and {run, model} <= {n["id"] for n in panel.graph.nodes}
    panel.graph.selected = run
    assert panel.last_error is None
    assert all(text in panel.detail.value for text in ("FINISHED", "param C", "metric rows"))
    panel.graph.selected = model
    assert panel.last_error is None and got.info.run_id in panel.detail.value  # its source run


# -- crash sweep ----------------------------------------------------------------------------------
CRASH = """
import os, signal, sys
import nbops
store = nbops.open(sys.argv[1])
with nbops.track(experiment=sys.argv[2], run_name="doomed") as run:
    print(run.run_id, flush=True)
    os.kill(os.getpid(), signal.SIGKILL)
"""


def crash_in_a_run(store: Store, experiment: str) -> str:
    """A child process starts a run through ``nbops.track`` and is killed with SIGKILL inside it; its run id."""
    env = {k: v for k, v in os.environ.items() if k not in (MARKER_ENV, "NBOPS_HOME")}
    crashed = subprocess.run(
        [sys.executable, "-c", CRASH, str(store.root), experiment],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,  # the exit code is checked below
    )
    assert crashed.returncode == -signal.SIGKILL, crashed.stderr[-3000:]
    return crashed.stdout.split()[-1]


def test_run_of_a_killed_process_is_marked_killed_on_the_server(store: Store, mlflow_server: MlflowServer) -> None:
    assert os.environ[URI_ENV] == mlflow_server.uri  # the child talks to the server, as the user asked
    run_id = crash_in_a_run(store, "srv-crash")
    client = mlflow_server.client()
    assert client.get_run(run_id).info.status == "RUNNING"
    with nbops.open(store.root):
        pass
    got = client.get_run(run_id)
    assert got.info.status == "KILLED" and got.info.end_time is not None
    assert got.data.tags["nbops.ended_by"] == "reaped: its process died"
    running = [r for r in runs_of(mlflow_server, "srv-crash") if r.info.status == "RUNNING"]
    assert running == []
    assert not (store.root / tracking.LIVE_RUNS_DIR / f"{run_id}.json").exists()


def test_a_password_in_the_tracking_uri_stays_out_of_the_store_and_the_sweep_still_uses_it(
    store: Store, mlflow_server: MlflowServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Regression: every live run's file in the store held ``MLFLOW_TRACKING_URI`` verbatim, password included."""
    secret = f"pw-{secrets.token_hex(8)}"
    monkeypatch.setenv(URI_ENV, mlflow_server.uri.replace("http://", f"http://alice:{secret}@", 1))
    run_id = crash_in_a_run(store, "srv-secret")
    live = store.root / tracking.LIVE_RUNS_DIR / f"{run_id}.json"
    recorded = json.loads(live.read_text(encoding="utf-8"))["tracking_uri"]
    assert secret not in live.read_text(encoding="utf-8")
    assert recorded == mlflow_server.uri.replace("http://", "http://alice@", 1)
    assert tracking._credentialed(recorded) == os.environ[URI_ENV]  # the sweep asks with this process's password
    with nbops.open(store.root):
        pass
    assert mlflow_server.client().get_run(run_id).info.status == "KILLED"
    assert not live.exists()


def test_open_does_not_wait_for_a_tracking_server_that_is_down(
    store: Store, mlflow_server: MlflowServer, capsys: pytest.CaptureFixture[str]
) -> None:
    """Regression: with a run of a dead process on a server that is down, ``nbops.open()`` took
    about four minutes (MLflow's REST client retries a refused connection with backoff)."""
    down = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    client = mlflow_server.client()
    up_run = client.create_run(tracking.experiment_id(store, "srv-down")).info.run_id
    # this process's pid with a start time that is not this process's: a dead owner
    for run_id, uri in (("0" * 32, down), (up_run, mlflow_server.uri)):
        tracking.LiveRun(run_id, uri, socket.gethostname(), os.getpid(), 1.0).write(store)
    _logs.enable_console()  # as the extension and the CLI do: the library itself only logs
    capsys.readouterr()
    started = time.monotonic()
    with nbops.open(store.root):
        pass
    assert time.monotonic() - started < 15
    assert f"the tracking server at {down} does not answer" in capsys.readouterr().err
    assert (store.root / tracking.LIVE_RUNS_DIR / f"{'0' * 32}.json").exists()  # tried again by a later open
    assert client.get_run(up_run).info.status == "KILLED"  # the server that answers is swept all the same
    assert not (store.root / tracking.LIVE_RUNS_DIR / f"{up_run}.json").exists()


# -- panels --------------------------------------------------------------------------------------
def test_runs_panel_pages_with_server_tokens_and_charts_picked_runs(store: Store, mlflow_server: MlflowServer) -> None:
    from mlflow.entities import Metric, Param

    experiment = tracking.experiment_id(store, "srv-many")
    client = mlflow_server.client()
    # one request per run (each costs a round trip to the server and PostgreSQL); two get values to compare
    ids = [client.create_run(experiment, run_name=f"r{i:02d}", start_time=1_700_000_000_000 + i).info.run_id
           for i in range(55)]  # fmt: skip
    for i in (50, 54):
        client.log_batch(ids[i], metrics=[Metric("auc", i / 100, 1_700_000_000_000, 0)], params=[Param("C", str(i))])

    assert len(store.runs("srv-many")) == 55  # one search past the server's page size
    panel = RunsPanel(store, "srv-many")
    assert panel.last_error is None
    assert len(panel.runs.rows) == 50 and panel.runs.rows[0][0] == "r54"
    panel.next.click()
    assert panel.last_error is None
    assert [r[0] for r in panel.runs.rows] == [f"r{i:02d}" for i in range(4, -1, -1)]
    assert panel.next.disabled and not panel.previous.disabled
    panel.previous.click()
    assert panel.runs.rows[0][0] == "r54"

    panel.runs.selected = [ids[54], ids[50]]
    assert panel.metric.value == "auc"
    by_run = panel.chart.spec
    assert by_run is not None and sorted(v["value"] for v in by_run["data"]["values"]) == [0.5, 0.54]
    panel.axis.value = "C"
    against = panel.chart.spec
    assert against["encoding"]["x"]["type"] == "quantitative"
    assert sorted((v["param"], v["value"]) for v in against["data"]["values"]) == [(50.0, 0.5), (54.0, 0.54)]
