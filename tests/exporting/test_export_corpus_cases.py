"""Export: one minimal notebook per class of failure found by exporting public
tutorial notebooks (``benchmarks/export_corpus.py``).

Each notebook here holds only the construct that made a public notebook fail,
and asserts what export should do with it: export, with modules that compile
(and, for a few, answer ``python MODULE --help`` in a real subprocess).
Constructs that really cannot be translated (shell commands, ``pip install -r``)
are refusals and are tested in ``test_export.py``.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from nbformat.v4 import new_markdown_cell

import nbops
from helpers.notebooks import code, write_notebook
from nbops.exporting import ExportResult, plan


def export(tmp_path: Path, notebook: Path) -> ExportResult:
    plan(notebook)  # works out every file without writing
    store = nbops.open(tmp_path / "store")
    try:
        return nbops.export(notebook, out=tmp_path / "out", store=store)
    finally:
        store.close()


def assert_modules_compile(result: ExportResult) -> None:
    assert result.modules, "the export wrote no module"
    for name in result.modules:
        compile((result.out_dir / name).read_text(encoding="utf-8"), name, "exec")


def run_help(tmp_path: Path, module: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "NBOPS_HOME": str(tmp_path / "home")}
    for key in ("MLFLOW_TRACKING_URI", "NBOPS_MLFLOW_TRACKING_URI", "NBOPS_CATALOG_URL"):
        env.pop(key, None)
    return subprocess.run(
        [sys.executable, module.name, "--help"], cwd=module.parent, env=env, capture_output=True, text=True,
        timeout=120,
    )  # fmt: skip


FEATURE_CELLS = [
    new_markdown_cell("# Feature pipeline"),
    code("import pandas as pd"),
    code("df = pd.DataFrame({'k': [1, 2], 'v': [0.5, 1.5]})\ndf['w'] = df.v * 2", "feature"),
]


# -- notebook file names -----------------------------------------------------------------------
@pytest.mark.parametrize(
    "name",
    [
        "1_feature_pipeline",  # Hopsworks tutorials: 1_ / 2_ / 3_ numbered FTI notebooks
        "2-loan-approval-training-pipeline",  # a digit, then hyphens
        "03_Credit_Risk_Model_Training",  # Feast examples: a zero-padded number and capitals
        "0_stream_simulation",
    ],
)
def test_a_notebook_named_with_a_leading_number_exports(tmp_path: Path, name: str) -> None:
    """85 of 133 public notebooks are numbered in running order; the number is not a reason to refuse."""
    notebook = write_notebook(tmp_path / "tutorial" / f"{name}.ipynb", FEATURE_CELLS)
    result = export(tmp_path, notebook)
    assert result.modules == ["feature_pipeline.py"]
    assert_modules_compile(result)
    assert result.out_dir.parent == (tmp_path / "out").resolve()


def test_a_numbered_notebook_module_answers_help(tmp_path: Path) -> None:
    notebook = write_notebook(tmp_path / "2_training_pipeline.ipynb", [
        code("n_estimators = 10", "parameters"),
        code("import math", ),
        code("score = math.sqrt(n_estimators)", "training"),
    ])  # fmt: skip
    result = export(tmp_path, notebook)
    proc = run_help(tmp_path, result.out_dir / "training_pipeline.py")
    assert proc.returncode == 0, proc.stderr
    assert "--n-estimators" in proc.stdout


# -- whitespace --------------------------------------------------------------------------------
def test_a_cell_indented_as_a_whole_exports_as_ipython_runs_it(tmp_path: Path) -> None:
    """IPython removes the indentation a whole cell shares (a cell pasted from inside a block); so does export."""
    notebook = write_notebook(tmp_path / "rolling.ipynb", [
        code("import pandas as pd\ndf5 = pd.DataFrame({'amount': [1.0, 2.0]})", "feature"),
        code("    df5['rolling_max'] = df5.amount.cummax()\n    total = df5.amount.sum()\n    df5", "feature"),
    ])  # fmt: skip
    result = export(tmp_path, notebook)
    assert_modules_compile(result)
    source = (result.out_dir / "feature_pipeline.py").read_text(encoding="utf-8")
    assert "df5['rolling_max'] = df5.amount.cummax()" in source
    assert "total = df5.amount.sum()" in source


def test_a_cell_indented_with_a_tab_and_a_nested_block_exports(tmp_path: Path) -> None:
    notebook = write_notebook(tmp_path / "tabs.ipynb", [
        code("\tfor i in range(3):\n\t    x = i * 2\n\ty = 1", "feature"),
    ])  # fmt: skip
    result = export(tmp_path, notebook)
    assert_modules_compile(result)


# -- star imports --------------------------------------------------------------------------------
def test_a_star_import_of_a_module_absent_here_does_not_break_help(tmp_path: Path) -> None:
    """``from functions import *`` (a helper file of the tutorial's folder, or pyspark) is not importable
    where ``--help`` runs: the module's command line must still answer without importing the notebook's code."""
    notebook = write_notebook(tmp_path / "credit_scores_feature_backfill.ipynb", [
        code("window = 7", "parameters"),
        code("import math\nfrom nbops_corpus_absent_helpers import *\nfrom pyspark_absent_here.sql.functions import *",
             "feature"),
        code("features = compute_features(window)", "feature"),
    ])  # fmt: skip
    result = export(tmp_path, notebook)
    assert_modules_compile(result)
    assert "from nbops_corpus_absent_helpers import *" in (result.out_dir / "feature_pipeline.py").read_text()
    proc = run_help(tmp_path, result.out_dir / "feature_pipeline.py")
    assert proc.returncode == 0, proc.stderr
    assert "--window" in proc.stdout


# -- names across stages -----------------------------------------------------------------------------
def test_a_module_imported_in_another_stage_cell_is_imported_again(tmp_path: Path) -> None:
    """An end-to-end notebook imports where it first needs a module, often inside a cell of an earlier
    stage (``import numpy as np`` above the feature code).  A module is no computed data: each stage
    that uses it imports it, rather than the export being refused as a variable shared across stages."""
    notebook = write_notebook(tmp_path / "end_to_end.ipynb", [
        new_markdown_cell("## Prepare the data"),
        code("import numpy as np\nfrom math import sqrt\nX = np.arange(10.0)", "feature"),
        new_markdown_cell("## Train"),
        code("weights = np.ones(3) * sqrt(4.0)", "training"),
    ])  # fmt: skip
    result = export(tmp_path, notebook)
    assert sorted(result.modules) == ["feature_pipeline.py", "training_pipeline.py"]
    assert_modules_compile(result)
    training = (result.out_dir / "training_pipeline.py").read_text(encoding="utf-8")
    assert "import numpy as np" in training and "X = np.arange" not in training
