"""``export --target airflow``: a real Airflow 3 imports the DAG and runs it, with the plain modules' results.

Airflow lives in its own virtualenv (``helpers/airflow.py``); ``airflow dags
test`` runs the whole DAG in one process on a SQLite metadata database, each
task starting its module with this suite's interpreter. What the run leaves in
its store is compared, artifact by artifact, with what the same modules leave
when run by hand, using the summaries of ``export --verify``.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import nbops
from helpers import REPO
from helpers.airflow import airflow, airflow_command, airflow_env
from helpers.notebooks import code, scratch_env, write_notebook
from nbops.exporting import export
from nbops.exporting.verify import compare

FRAUD_FTI = REPO / "notebooks" / "fraud_fti.ipynb"


@pytest.fixture(scope="module")
def airflow_cli() -> Path:
    return airflow_command()


def _export(notebook: Path, tmp_path: Path) -> Path:
    with nbops.open(tmp_path / "meta" / ".nbops") as store:
        return export(notebook, out=tmp_path / "out", store=store, target="airflow").out_dir


def _summary(store: Path) -> dict[str, Any]:
    """``export --verify``'s summary of a store, read in a fresh process as verify reads it."""
    out = store.parent / "summary.json"
    result = subprocess.run(
        [sys.executable, "-m", "nbops.exporting.verify", str(store), str(out)],
        env=scratch_env(store),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return dict(json.loads(out.read_text()))


def _run_dag(cli: Path, dags: Path, dag_id: str, store: Path, conf: dict[str, Any] | None = None) -> str:
    """``airflow dags test`` of ``dag_id`` on a fresh Airflow home; the run's output, or fail quoting it."""
    env = airflow_env(store.parent / "airflow", dags, store)
    migrated = airflow(cli, ["db", "migrate"], env)
    assert migrated.returncode == 0, migrated.stderr[-3000:]
    args = ["dags", "test", dag_id, *(["-c", json.dumps(conf)] if conf else [])]
    result = airflow(cli, args, env)
    return f"exit {result.returncode}\n{result.stdout}\n{result.stderr}"


def test_airflow_imports_the_dag_and_runs_feature_training_inference_as_the_plain_modules_do(
    airflow_cli: Path, tmp_path: Path
) -> None:
    out_dir = _export(FRAUD_FTI, tmp_path)
    env = airflow_env(tmp_path / "parse" / "airflow", out_dir, tmp_path / "parse" / ".nbops")
    assert airflow(airflow_cli, ["db", "migrate"], env).returncode == 0
    parsed = airflow(airflow_cli, ["dags", "reserialize"], env)
    assert parsed.returncode == 0, parsed.stderr[-3000:]
    errors = airflow(airflow_cli, ["dags", "list-import-errors", "-o", "json"], env)
    assert json.loads(errors.stdout.strip().splitlines()[-1]) == [], errors.stdout
    listed = airflow(airflow_cli, ["dags", "list", "-o", "json"], env)
    assert [d["dag_id"] for d in json.loads(listed.stdout.strip().splitlines()[-1])] == ["fraud_fti"]

    # By hand: each module in order, on store A.
    by_hand = tmp_path / "by_hand" / ".nbops"
    for module in ("feature_pipeline.py", "training_pipeline.py", "inference_pipeline.py"):
        ran = subprocess.run(
            [sys.executable, str(out_dir / module)], env=scratch_env(by_hand), capture_output=True, text=True,
            timeout=600, cwd=tmp_path,
        )  # fmt: skip
        assert ran.returncode == 0, f"{module}:\n{ran.stderr[-3000:]}"
    # By Airflow: the DAG, on store B.
    by_airflow = tmp_path / "by_airflow" / ".nbops"
    output = _run_dag(airflow_cli, out_dir, "fraud_fti", by_airflow)
    assert output.startswith("exit 0"), output[-5000:]
    for task in ("feature", "training", "inference"):
        assert f"[DAG TEST] end task task_id={task}" in output

    rows = compare(_summary(by_hand), _summary(by_airflow))
    assert rows and all(r["status"] == "same" for r in rows), [r for r in rows if r["status"] != "same"]
    names = {(r["kind"], r["name"]) for r in rows}
    assert {("snapshot", "predictions"), ("feature group", "tx_features:1"), ("model", "fraud_model")} <= names


def test_a_runs_params_reach_the_modules_as_arguments_never_as_shell(airflow_cli: Path, tmp_path: Path) -> None:
    nb = write_notebook(
        tmp_path / "small.ipynb",
        [
            code("import nbops\nimport pandas as pd"),
            code("n_rows = 3\nlabel = 'plain'", "parameters"),
            code(
                "# nbops: feature\nraw = pd.DataFrame({'i': range(n_rows), 'label': label})\n"
                "nbops.open().snapshot(raw, 'raw')"
            ),  # fmt: skip
        ],
    )
    out_dir = _export(nb, tmp_path)
    store = tmp_path / "run" / ".nbops"
    hostile = "x'; touch pwned; echo '$(touch pwned2)"
    output = _run_dag(airflow_cli, out_dir, "small", store, conf={"n_rows": 5, "label": hostile})
    assert output.startswith("exit 0"), output[-5000:]
    with nbops.open(store) as s:
        raw = s.load("raw")
    assert len(raw) == 5 and set(raw["label"]) == {hostile}
    assert not list(tmp_path.rglob("pwned*"))

    # A value the module refuses fails its task and the run, with the module's own message.
    failed = _run_dag(airflow_cli, out_dir, "small", tmp_path / "bad" / ".nbops", conf={"n_rows": "many"})
    assert failed.startswith("exit 1"), failed[-5000:]
    assert "argument --n-rows: invalid int value: 'many'" in failed
    assert not (tmp_path / "bad" / ".nbops").exists()
