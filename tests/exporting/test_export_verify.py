"""``verify``: the notebook in a real kernel and the exported modules in fresh processes,
each on a scratch store, compared artifact by artifact.

The notebook tests build small notebooks with ``nbformat.v4``; the last test
exports and verifies ``notebooks/fraud_fti.ipynb`` end to end.  The comparison
itself is also tested on hand-made store summaries (no kernel, milliseconds).
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import nbformat
import psutil
import pytest
from nbformat import v4

import nbops
from helpers import REPO
from nbops.exporting import ExportError, export
from nbops.exporting.verify import ACTIVE_ENV, VerifyResult, compare, match_runs, verify

FRAUD_FTI = REPO / "notebooks" / "fraud_fti.ipynb"


# -- helpers -------------------------------------------------------------------------------
def _code(source: str, *tags: str) -> Any:
    cell = v4.new_code_cell(source)
    if tags:
        cell.metadata["tags"] = list(tags)
    return cell


def _notebook(path: Path, cells: Sequence[Any]) -> Path:
    nb = v4.new_notebook(cells=list(cells))
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, path)
    return path


def _small_cells(feature_cell: str) -> list[Any]:
    """A feature stage (snapshot and feature group) and, after it, a tracked training stage."""
    return [
        v4.new_markdown_cell("# A small pipeline"),
        _code("import nbops"),
        _code("n_rows = 48", "parameters"),
        _code("import numpy as np\nimport pandas as pd"),
        _code(feature_cell, "feature"),
        _code("%snapshot raw -m 'raw rows'", "feature"),
        _code(
            "%%features small_features --keys id --event-time ts\n"
            "raw.assign(x2=(raw['x'] ** 2).round(6), bucket=raw['id'] % 3)"
        ),
        _code(
            "%%track --experiment small --run-name fit\n"
            "feats = nbops.open().features('small_features')\n"
            "nbops.log(mean_x2=float(feats['x2'].mean()), rows=len(feats))"
        ),
    ]


DETERMINISTIC = (
    "raw = pd.DataFrame({\n"
    "    'id': np.arange(n_rows),\n"
    "    'ts': pd.date_range('2026-01-01', periods=n_rows, freq='h', tz='UTC'),\n"
    "    'x': np.arange(n_rows) * 0.25,\n"
    "})"
)
RANDOM = DETERMINISTIC.replace("np.arange(n_rows) * 0.25", "np.random.default_rng().normal(size=n_rows)")


def _export(notebook: Path, tmp_path: Path) -> Path:
    with nbops.open(tmp_path / "meta" / ".nbops") as store:
        result = export(notebook, out=tmp_path / "out", store=store)
    return result.out_dir


def _rows(result: VerifyResult) -> dict[tuple[str, str], dict[str, Any]]:
    return {(row["kind"], row["name"]): row for row in result.rows}


def _children() -> set[int]:
    return {p.pid for p in psutil.Process().children(recursive=True)}


@pytest.fixture(autouse=True)
def _own_tracking_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Opening a store points MLflow at it through the environment; put it back after each test."""
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("NBOPS_MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv(ACTIVE_ENV, raising=False)


@pytest.fixture
def scratch_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Where verify makes its temporary folder, to check that it leaves nothing behind."""
    root = tmp_path / "tmp"
    root.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(root))
    yield root


# -- notebooks through verify -----------------------------------------------------------
def test_exported_small_notebook_reproduces_snapshot_group_and_metrics(
    tmp_path: Path, scratch_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    notebook = _notebook(tmp_path / "small.ipynb", _small_cells(DETERMINISTIC))
    out_dir = _export(notebook, tmp_path)
    before = (notebook.read_bytes(), notebook.stat().st_mtime_ns)
    children = _children()
    # A backend the user chose for this process: the scratch runs must not go there.
    elsewhere = tmp_path / "elsewhere"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{elsewhere / 'mlflow.db'}")

    result = verify(notebook, out_dir)

    assert result.ok, result.text()
    rows = _rows(result)
    assert set(rows) == {
        ("snapshot", "raw"),
        ("feature group", "small_features:1"),
        ("run", "small/fit"),
        ("metric", "small/fit: mean_x2"),
        ("metric", "small/fit: rows"),
    }
    assert all(row["status"] == "same" for row in rows.values())
    assert rows[("feature group", "small_features:1")]["notebook"].endswith("(48 rows)")
    assert rows[("metric", "small/fit: rows")]["pipeline"] == "48.0"
    assert set(result.timings) == {"notebook", "feature_pipeline.py", "training_pipeline.py", "compare", "total"}
    assert "OK" in result.text() and "small_features:1" in result.text()
    # The notebook is read, never written; nothing is left running or lying around.
    assert (notebook.read_bytes(), notebook.stat().st_mtime_ns) == before
    assert _children() <= children
    assert result.workdir is None and list(scratch_root.iterdir()) == []
    # The runs used their scratch stores, not the MLflow backend this process points at.
    assert not elsewhere.exists()
    assert os.environ["MLFLOW_TRACKING_URI"] == f"sqlite:///{elsewhere / 'mlflow.db'}"


def test_unseeded_random_data_is_reported_different(tmp_path: Path, scratch_root: Path) -> None:
    cells = [c for c in _small_cells(RANDOM) if "%%track" not in c.source]
    notebook = _notebook(tmp_path / "noisy.ipynb", cells)
    out_dir = _export(notebook, tmp_path)

    result = verify(notebook, out_dir, keep=True)

    assert not result.ok
    rows = _rows(result)
    assert rows[("snapshot", "raw")]["status"] == "DIFFERENT"
    assert rows[("feature group", "small_features:1")]["status"] == "DIFFERENT"
    assert rows[("feature group", "small_features:1")]["detail"] == "same rows, different values"
    assert "DIFFERENT" in result.text()
    # keep=True leaves both scratch stores, the executed notebook and the module logs.
    assert result.workdir is not None and result.workdir.parent == scratch_root
    assert (result.workdir / "a" / ".nbops" / "catalog.db").exists()
    assert (result.workdir / "a" / "noisy.executed.ipynb").exists()
    assert (result.workdir / "b" / "feature_pipeline.log").exists()


def test_a_failing_module_is_a_failed_row_with_its_stderr(tmp_path: Path, scratch_root: Path) -> None:
    notebook = _notebook(tmp_path / "broken.ipynb", _small_cells(DETERMINISTIC))
    out_dir = _export(notebook, tmp_path)
    training = out_dir / "training_pipeline.py"
    source = training.read_text(encoding="utf-8")
    marker = 'if __name__ == "__main__":\n'
    assert marker in source
    training.write_text(
        source.replace(marker, marker + "    raise RuntimeError('corrupted after export')\n"), encoding="utf-8"
    )

    result = verify(notebook, out_dir)

    assert not result.ok
    rows = _rows(result)
    failed = rows[("module", "training_pipeline.py")]
    assert failed["status"] == "failed"
    assert failed["pipeline"] == "exit code 1"
    assert "RuntimeError: corrupted after export" in failed["detail"]
    # What the stages before it made is still compared; what it should have made is missing.
    assert rows[("snapshot", "raw")]["status"] == "same"
    assert rows[("feature group", "small_features:1")]["status"] == "same"
    assert rows[("run", "small/fit")]["status"] == "missing in pipeline"
    assert rows[("metric", "small/fit: mean_x2")]["status"] == "missing in pipeline"
    assert "corrupted after export" in result.text()
    assert list(scratch_root.iterdir()) == []


def test_a_failing_notebook_and_a_hanging_module_are_reported_and_stopped(tmp_path: Path) -> None:
    """A notebook that does not run top to bottom fails; a module past the timeout is killed with its children."""
    cells = [
        _code("n_rows = 4", "parameters"),
        _code("import numpy as np\nimport pandas as pd"),
        _code(DETERMINISTIC, "feature"),
        _code("%snapshot raw", "feature"),
        _code("1 / 0  # exploration that no longer runs", "skip"),
    ]
    notebook = _notebook(tmp_path / "flaky.ipynb", cells)
    out_dir = _export(notebook, tmp_path)
    feature = out_dir / "feature_pipeline.py"
    pid_file = tmp_path / "grandchild.pid"
    hang = (
        "    import subprocess, sys, time\n"
        "    child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)'])\n"
        f"    open({str(pid_file)!r}, 'w').write(str(child.pid))\n"
        "    time.sleep(600)\n"
    )
    marker = 'if __name__ == "__main__":\n'
    feature.write_text(feature.read_text(encoding="utf-8").replace(marker, marker + hang), encoding="utf-8")

    result = verify(notebook, out_dir, timeout=10)

    rows = _rows(result)
    failed_notebook = rows[("notebook", "flaky.ipynb")]
    assert failed_notebook["status"] == "failed"
    assert failed_notebook["notebook"].startswith("cell 5 (id ")
    assert failed_notebook["notebook"].endswith("raised ZeroDivisionError")
    assert rows[("module", "feature_pipeline.py")]["pipeline"] == "timed out after 10 s"
    assert rows[("snapshot", "raw")]["status"] == "missing in pipeline"  # the notebook made it before failing
    grandchild = int(pid_file.read_text())
    assert not psutil.pid_exists(grandchild) or psutil.Process(grandchild).status() == psutil.STATUS_ZOMBIE


def test_fraud_fti_exports_into_modules_that_reproduce_it(tmp_path: Path) -> None:
    """The full feature / training / inference notebook: same data, same model scores."""
    original = FRAUD_FTI.read_bytes()
    out_dir = _export(FRAUD_FTI, tmp_path)
    started = time.perf_counter()

    result = verify(FRAUD_FTI, out_dir)

    elapsed = time.perf_counter() - started
    assert result.ok, result.text()
    rows = _rows(result)
    for key in [
        ("snapshot", "raw_tx"),
        ("snapshot", "fraud_train"),
        ("snapshot", "predictions"),
        ("feature group", "card_features:1"),
        ("feature group", "tx_features:1"),
        ("run", "fraud_fti/logreg"),
        ("metric", "fraud_fti/logreg: accuracy"),
        ("metric", "fraud_fti/logreg: roc_auc"),
        ("model", "fraud_model"),
    ]:
        assert rows[key]["status"] == "same", key
    assert rows[("snapshot", "raw_tx")]["notebook"].endswith("(20,000 rows)")
    assert rows[("model", "fraud_model")]["notebook"] == "aliases: champion"
    assert FRAUD_FTI.read_bytes() == original
    print(f"\nfraud_fti verify: {elapsed:.1f} s ({result.timing_text()})")


# -- guards --------------------------------------------------------------------------------
def test_verify_needs_an_export(tmp_path: Path) -> None:
    notebook = _notebook(tmp_path / "nb.ipynb", [_code("x = 1", "feature")])
    with pytest.raises(ExportError, match="no manifest.json"):
        verify(notebook, tmp_path / "nowhere")
    with pytest.raises(ExportError, match="no notebook"):
        verify(tmp_path / "missing.ipynb", tmp_path)


def test_verify_inside_a_verification_is_skipped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A notebook that runs ``%export --verify`` would otherwise verify itself forever."""
    monkeypatch.setenv(ACTIVE_ENV, "1")
    result = verify(tmp_path / "any.ipynb", tmp_path)
    assert result.skipped and result.rows == [] and result.ok
    assert "skipped" in result.text()


# -- the comparison alone -------------------------------------------------------------------
def _summary(**parts: Any) -> dict[str, Any]:
    return {"snapshots": {}, "feature_groups": {}, "runs": [], "models": {}, **parts}


def _run(experiment: str, name: str, **metrics: float) -> dict[str, Any]:
    return {"experiment": experiment, "name": name, "status": "FINISHED", "metrics": metrics}


def test_compare_reports_each_side_and_each_difference() -> None:
    table = {"digest": "a" * 32, "rows": 3}
    notebook = _summary(
        snapshots={"raw": table, "only_nb": table},
        feature_groups={"g:1": table, "g:2": {"digest": "b" * 32, "rows": 3}},
        runs=[_run("e", "fit", auc=0.9, loss=1.0)],
        models={"m": ["champion"]},
    )
    pipeline = _summary(
        snapshots={"raw": table, "only_pipe": table},
        feature_groups={"g:1": table, "g:2": {"digest": "c" * 32, "rows": 4}},
        runs=[_run("e", "fit", auc=0.9 * (1 + 1e-12), loss=1.001, extra=1.0)],
        models={"m": []},
    )
    rows = {(r["kind"], r["name"]): r for r in compare(notebook, pipeline)}
    status = {key: r["status"] for key, r in rows.items()}
    assert status == {
        ("snapshot", "only_nb"): "missing in pipeline",
        ("snapshot", "only_pipe"): "missing in notebook",
        ("snapshot", "raw"): "same",
        ("feature group", "g:1"): "same",
        ("feature group", "g:2"): "DIFFERENT",
        ("run", "e/fit"): "same",
        ("metric", "e/fit: auc"): "same",
        ("metric", "e/fit: loss"): "DIFFERENT",
        ("metric", "e/fit: extra"): "missing in notebook",
        ("model", "m"): "DIFFERENT",
    }
    assert rows[("feature group", "g:2")]["detail"] == "rows 3 vs 4"
    assert "relative" in rows[("metric", "e/fit: auc")]["detail"]  # noted, though within the tolerance
    assert rows[("metric", "e/fit: loss")]["notebook"] == "1.0"
    assert rows[("metric", "e/fit: loss")]["pipeline"] == "1.001"


def test_nan_metrics_on_both_sides_are_the_same() -> None:
    rows = compare(_summary(runs=[_run("e", "r", x=float("nan"))]), _summary(runs=[_run("e", "r", x=float("nan"))]))
    assert [r["status"] for r in rows] == ["same", "same"]


def test_runs_match_by_name_then_generated_names_by_order() -> None:
    nb_runs = [_run("e", "fit"), _run("e", "bold-fox-12"), _run("e", "calm-owl-3"), _run("f", "fit")]
    pipe_runs = [_run("e", "wise-yak-700"), _run("e", "fit"), _run("e", "sly-koi-1"), _run("e", "extra")]
    pairs = [(a and a["name"], b and b["name"]) for a, b in match_runs(nb_runs, pipe_runs)]
    assert pairs == [
        ("fit", "fit"),
        ("bold-fox-12", "wise-yak-700"),
        ("calm-owl-3", "sly-koi-1"),
        (None, "extra"),
        ("fit", None),
    ]
    names = [r["name"] for r in compare(_summary(runs=nb_runs), _summary(runs=pipe_runs)) if r["kind"] == "run"]
    assert "e/bold-fox-12 ~ wise-yak-700" in names


def test_text_and_html_show_every_row_and_escape_names() -> None:
    result = VerifyResult(Path("nb.ipynb"), Path("out/nb"))
    result.rows = compare(_summary(snapshots={"<b>raw</b>": {"digest": "a" * 32, "rows": 1}}), _summary())
    result.timings = {"notebook": 1.25, "total": 2.0}
    text = result.text()
    assert "<b>raw</b>" in text and "missing in pipeline" in text and "notebook 1.2 s" in text
    html = result._repr_html_()
    assert "&lt;b&gt;raw&lt;/b&gt;" in html and "<b>raw</b>" not in html
    assert not result.ok and len(result.differences) == 1


def test_the_summary_of_a_store_is_json(tmp_path: Path) -> None:
    """The summary process writes JSON the comparison reads; feature rows are digested in a canonical order."""
    import subprocess
    import sys

    import pandas as pd

    with nbops.open(tmp_path / "s" / ".nbops") as store:
        frame = pd.DataFrame(
            {"k": [2, 1, 1], "ts": pd.to_datetime(["2026-01-02", "2026-01-01", "2026-01-03"]), "v": [0.5, 1.5, 2.5]}
        )
        store.register_features(frame, "g", keys="k", event_time="ts")
        store.snapshot(frame, "raw")
    with nbops.open(tmp_path / "t" / ".nbops") as store:
        store.register_features(frame.iloc[::-1], "g", keys="k", event_time="ts")  # same rows, other order
        store.snapshot(frame, "raw")
    summaries = []
    for side in ("s", "t"):
        out = tmp_path / f"{side}.json"
        env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "NBOPS_MLFLOW_TRACKING_URI")}
        subprocess.run(
            [sys.executable, "-m", "nbops.exporting.verify", str(tmp_path / side / ".nbops"), str(out)],
            check=True,
            env=env,
            cwd=tmp_path,
        )
        summaries.append(json.loads(out.read_text()))
    assert summaries[0]["feature_groups"]["g:1"]["rows"] == 3
    assert summaries[0]["runs"] == [] and summaries[0]["models"] == {}
    assert [r["status"] for r in compare(*summaries)] == ["same", "same"]
