"""``nbops migrate --runs-to URL --artifacts-to DEST``: a store's MLflow runs moved to a team's tracking server.

A store with runs in two experiments (one name with a space), metric
histories, dataset inputs, artifacts and a registered model is moved into a
new PostgreSQL database; a real ``mlflow server`` started on that database
and artifact folder then serves every run, artifact and model version under
the same ids, new experiments are numbered after the old ones, and the store
folder refuses to start a second, empty tracking database.  Each refusal
(checked against a SQLite target, no server needed) leaves the store folder,
the target and the artifact destination as they were.
"""

from __future__ import annotations

import os
import sqlite3
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
import pyarrow.fs as pafs
import pytest
from sklearn.linear_model import LogisticRegression

import nbops
from helpers.mlflowserver import running_server
from helpers.pgserver import PgServer
from helpers.s3server import CREDENTIALS, S3Server, s3_server_fixture  # noqa: F401  (provides the s3_server fixture)
from helpers.stores import files_by_content
from nbops.admin.migrate_runs import MOVED_MARKER, migrate_runs
from nbops.cli import main
from nbops.core import lineage
from nbops.core.audit import READONLY_ENV
from nbops.core.paths import MARKER_ENV, URI_ENV
from nbops.errors import ReadOnlyError, StoreError
from nbops.store import STORE_DIRNAME
from nbops.tracking import experiments as tracking

X = np.array([[0.0], [1.0], [2.0], [3.0]])


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    """No tracking URI, password or read-only flag of the person running the tests is seen, and none is left.

    ``nbops.open`` and ``mlflow.set_tracking_uri`` write ``os.environ``
    themselves (that is how child processes inherit the URI), so the two
    variables are put back by hand after the test.
    """
    saved = {name: os.environ.pop(name, None) for name in (URI_ENV, MARKER_ENV)}
    for name in ("PGPASSWORD", READONLY_ENV, "NBOPS_HOME"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    mlflow.set_tracking_uri(None)
    yield
    while mlflow.active_run() is not None:
        mlflow.end_run()
    mlflow.set_tracking_uri(None)
    tracking._CLIENTS.clear()
    tracking._EXPERIMENTS.clear()
    for name, value in saved.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


def build_store(root: Path) -> dict[str, Any]:
    """Runs in two experiments, with metrics, inputs, an artifact each and a registered model."""
    made: dict[str, Any] = {}
    with nbops.open(root) as store, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        store.snapshot(pd.DataFrame({"a": [1, 2, 3]}), "raw")
        for experiment in ("fraud", "my exp"):
            with nbops.track(experiment=experiment, run_name="first") as run:
                store.load("raw")
                nbops.log(auc=0.9, C=1.0)
                mlflow.log_metric("loss", 0.5, step=1)
                mlflow.log_metric("loss", 0.4, step=2)
                mlflow.log_text(f"notes of {experiment}", "notes/hello.txt")
                if experiment == "fraud":
                    model = LogisticRegression().fit(X, [0, 0, 1, 1])
                    # pip_requirements skips MLflow's requirement inference, which takes seconds
                    mlflow.sklearn.log_model(
                        model, name="model", pip_requirements=["scikit-learn"], registered_model_name="fraud_model"
                    )
                    made["predictions"] = model.predict(X).tolist()
            made[experiment] = run.run_id
    return made


def runs_seen(client: mlflow.MlflowClient, run_ids: list[str]) -> dict[str, Any]:
    """What a user sees of each run through the tracking API."""
    seen = {}
    for run_id in run_ids:
        run = client.get_run(run_id)
        seen[run_id] = {
            "experiment": client.get_experiment(run.info.experiment_id).name,
            "experiment_id": run.info.experiment_id,
            "status": run.info.status,
            "times": (run.info.start_time, run.info.end_time),
            "params": run.data.params,
            "metrics": run.data.metrics,
            "tags": {k: v for k, v in run.data.tags.items()},
            "loss": [(m.step, m.value, m.timestamp) for m in client.get_metric_history(run_id, "loss")],
            "inputs": sorted((i.dataset.name, i.dataset.digest) for i in run.inputs.dataset_inputs),
        }
    return seen


@pytest.mark.postgres
def test_moved_runs_are_served_by_a_team_server_under_the_same_ids(
    tmp_path: Path,
    pg_server: PgServer,
    pg_database: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    root = tmp_path / STORE_DIRNAME
    made = build_store(root)
    run_ids = [made["fraud"], made["my exp"]]
    before = runs_seen(mlflow.MlflowClient(tracking_uri=f"sqlite:///{root / 'mlflow.db'}"), run_ids)
    with nbops.open(root) as store:
        lineage_before = lineage.children(store.catalog, ("snapshot", "raw@1"))
    backend = pg_server.url(pg_database)
    artifacts = tmp_path / "team-artifacts"

    assert (
        main(["--store", str(root), "migrate", "--runs-to", backend, "--artifacts-to", str(artifacts), "--dry-run"])
        == 0
    )
    assert "dry run: would move" in capsys.readouterr().out
    assert not artifacts.exists() and (root / "mlflow.db").exists()

    assert main(["--store", str(root), "migrate", "--runs-to", backend, "--artifacts-to", str(artifacts)]) == 0
    out = capsys.readouterr().out
    assert pg_server.password not in out and "runs" in out and "verified" in out
    assert pg_server.password.encode() not in (root / MOVED_MARKER).read_bytes()
    assert not (root / "mlflow.db").exists() and not (root / "mlartifacts").exists()
    assert len(list(root.glob("mlflow.db.migrated-*"))) == 1
    # The server's own layout: one folder per experiment id.
    assert sorted(p.name for p in artifacts.iterdir()) == sorted(b["experiment_id"] for b in before.values())

    sql_backend = backend.replace("postgresql://", "postgresql+psycopg://", 1)
    with running_server(sql_backend, artifacts, tmp_path / "server.log") as server:
        client = server.client()
        assert runs_seen(client, run_ids) == before
        # The team member's set-up: MLFLOW_TRACKING_URI names the server.
        os.environ.pop(MARKER_ENV, None)
        os.environ[URI_ENV] = server.uri
        mlflow.set_tracking_uri(server.uri)
        for experiment, run_id in (("fraud", made["fraud"]), ("my exp", made["my exp"])):
            path = mlflow.artifacts.download_artifacts(
                run_id=run_id, artifact_path="notes/hello.txt", dst_path=str(tmp_path / "dl" / run_id)
            )
            assert Path(path).read_text() == f"notes of {experiment}"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = mlflow.sklearn.load_model("models:/fraud_model/1")
        assert model.predict(X).tolist() == made["predictions"]
        # New experiments and runs are numbered after the moved ones, and the
        # store's lineage still points at runs the server knows.
        assert int(client.create_experiment("after the move")) > max(int(b["experiment_id"]) for b in before.values())
        with nbops.open(root) as store:
            with nbops.track(experiment="fraud", run_name="second") as run:
                store.load("raw")
                nbops.log(auc=0.95)
            assert client.get_run(run.run_id).info.experiment_id == before[made["fraud"]]["experiment_id"]
            children = lineage.children(store.catalog, ("snapshot", "raw@1"))
            assert set(lineage_before) < set(children)
            runs = [ref for kind, ref in children if kind == "run"]
            assert set(run_ids) | {run.run_id} <= set(runs)
            for ref in runs:
                assert client.get_run(ref).info.run_id == ref
    assert not (root / "mlflow.db").exists()  # nothing went to a new database in the store folder


def test_a_store_whose_runs_moved_refuses_to_start_a_second_tracking_database(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / STORE_DIRNAME
    build_store(root)
    report = migrate_runs(root, f"sqlite:///{tmp_path / 'team.db'}", tmp_path / "team-artifacts")
    assert report.files == 7 and report.rows["runs"] == 2 and report.rows["model_versions"] == 1
    mlflow.set_tracking_uri(None)
    tracking._CLIENTS.clear()
    tracking._EXPERIMENTS.clear()
    os.environ.pop(URI_ENV, None)
    with nbops.open(root) as store:  # data work goes on
        assert store.load("raw")["a"].tolist() == [1, 2, 3]
        moved = r"moved to the tracking database sqlite:///.*team\.db.*set MLFLOW_TRACKING_URI"
        with pytest.raises(tracking.TrackingError, match=moved), nbops.track(experiment="fraud"):
            pass
    assert not (root / "mlflow.db").exists()
    with pytest.raises(StoreError, match="already moved"):
        migrate_runs(root, f"sqlite:///{tmp_path / 'other.db'}", tmp_path / "other-artifacts")


def _dump(database: Path) -> list[str] | None:
    """A SQLite database's rows and schema (its files' bytes change with checkpoints, its content does not)."""
    if not database.exists():
        return None
    conn = sqlite3.connect(database)
    try:
        return list(conn.iterdump())
    finally:
        conn.close()


def _state(root: Path, target: Path, artifacts: Path) -> tuple[Any, ...]:
    files = {k: v for k, v in files_by_content(root).items() if not k.startswith("mlflow.db")}
    return files, _dump(root / "mlflow.db"), _dump(target), files_by_content(artifacts)


def test_dry_run_and_every_refusal_change_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / STORE_DIRNAME
    made = build_store(root)
    target, artifacts = tmp_path / "team.db", tmp_path / "team-artifacts"
    url = f"sqlite:///{target}"

    def refused(expected: type[Exception], match: str, into: Path = target, to: str = url) -> None:
        before = _state(root, into, artifacts)
        with pytest.raises(expected, match=match):
            migrate_runs(root, to, artifacts)
        assert _state(root, into, artifacts) == before

    report = migrate_runs(root, url, artifacts, dry_run=True)
    assert report.dry_run and report.files == 7 and report.rows["runs"] == 2
    assert not target.exists() and not artifacts.exists()

    # A target holding runs of its own.
    taken = tmp_path / "taken.db"
    other = mlflow.MlflowClient(tracking_uri=f"sqlite:///{taken}")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        other.create_run(other.create_experiment("theirs"))
    refused(StoreError, r"already holds MLflow data \(rows: .*1 in runs", into=taken, to=f"sqlite:///{taken}")

    # A different file where one of ours would go.
    clash = artifacts / "1" / made["fraud"] / "artifacts" / "notes" / "hello.txt"
    clash.parent.mkdir(parents=True)
    clash.write_text("a file of someone else's")
    refused(StoreError, r"already holds 1 other file\(s\) under the same names")
    clash.unlink()

    # A run still RUNNING.
    with nbops.open(root):
        client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{root / 'mlflow.db'}")
        running = client.create_run(client.get_experiment_by_name("fraud").experiment_id).info.run_id
    refused(StoreError, f"runs are still RUNNING \\({running}\\)")
    client.set_terminated(running, "KILLED")

    refused(StoreError, "must be a database URL", to="not a url")
    assert not target.exists()
    monkeypatch.setenv(READONLY_ENV, "1")
    refused(ReadOnlyError, "read-only")
    monkeypatch.delenv(READONLY_ENV)

    assert main(["--store", str(root), "migrate", "--runs-to", url]) == 2
    assert "--runs-to and --artifacts-to go together" in capsys.readouterr().err
    assert main(["--store", str(root), "migrate"]) == 2
    assert "say what to move" in capsys.readouterr().err

    # An earlier move that stopped after copying files: they are taken as they are.
    first = next(p for p in (root / "mlartifacts").rglob("*") if p.is_file())
    experiment_folder = first.relative_to(root / "mlartifacts").parts[0]
    ids = {e.name: e.experiment_id for e in client.search_experiments()}
    already = artifacts / ids[experiment_folder] / first.relative_to(root / "mlartifacts" / experiment_folder)
    already.parent.mkdir(parents=True, exist_ok=True)
    already.write_bytes(first.read_bytes())
    report = migrate_runs(root, url, artifacts)
    assert report.already_there == 1 and report.files == 7
    assert len(files_by_content(artifacts)) == 7
    assert sys.modules["nbops.admin.migrate_runs"].moved_to(root) == url


def test_artifacts_move_to_object_storage_and_a_server_on_it_serves_them(
    tmp_path: Path, s3_server: S3Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in {**CREDENTIALS, "MLFLOW_S3_ENDPOINT_URL": f"http://{s3_server.endpoint}"}.items():
        monkeypatch.setenv(name, value)
    root = tmp_path / STORE_DIRNAME
    made = build_store(root)
    sources = {
        str(p.relative_to(root / "mlartifacts")): p.read_bytes()
        for p in (root / "mlartifacts").rglob("*")
        if p.is_file()
    }
    s3_server.create_bucket("team-mlflow")
    destination = s3_server.uri("team-mlflow", "mlflow")
    target = f"sqlite:///{tmp_path / 'team.db'}"
    report = migrate_runs(root, target, destination)
    assert report.files == len(sources) == 7

    # Byte for byte, under <experiment id>/ instead of <experiment name>/.
    ids = {"fraud": "1", "my exp": "2"}
    fs = s3_server.filesystem()
    found = {
        info.path.removeprefix("team-mlflow/mlflow/"): info
        for info in fs.get_file_info(pafs.FileSelector("team-mlflow/mlflow", recursive=True))  # type: ignore[attr-defined]
        if info.type == pafs.FileType.File
    }
    expected = {ids[name.split("/", 1)[0]] + "/" + name.split("/", 1)[1]: data for name, data in sources.items()}
    assert sorted(found) == sorted(expected)
    for key, data in expected.items():
        with fs.open_input_stream(f"team-mlflow/mlflow/{key}") as stream:  # type: ignore[attr-defined]
            assert stream.read() == data

    with running_server(target, "s3://team-mlflow/mlflow", tmp_path / "server.log") as server:
        path = mlflow.artifacts.download_artifacts(
            run_id=made["my exp"],
            artifact_path="notes/hello.txt",
            dst_path=str(tmp_path / "dl"),
            tracking_uri=server.uri,
        )
        assert Path(path).read_text() == "notes of my exp"
