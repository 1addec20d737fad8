"""Export of ordinary notebooks: stage markers, names as Python binds them, values
handed from one stage to the next, file names, and each module's parameters.

Every exported module must run: a later stage gets an earlier stage's value from
the store (or repeats its import), and anything that would be a NameError is
refused before a file is written, naming the cells and the fixes.  The last test
runs a notebook in a real kernel, exports it, replays the modules on a fresh
store and compares feature digests, metrics and predictions (``verify``).
"""

from __future__ import annotations

import ast
import json
import re
import string
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import nbops
from helpers.lineage import ancestors
from helpers.notebooks import PYTHON, code, label, main_body, plan_refusal, run, write_notebook
from nbops.core.names import pipeline_name_from, validate_name
from nbops.exporting import ExportError, export, plan
from nbops.exporting.cells import Cell, analyse

pytestmark = pytest.mark.usefixtures("no_tracking_server")


def names(source: str) -> tuple[set[str], set[str], set[str]]:
    cell = Cell(0, "c", source, (), None)
    analyse(cell, ast.parse(source))
    return cell.defines, cell.uses_now, cell.uses_later


def stage_cells(p: Any, stage: str) -> list[str]:
    return next([c["id"] for c in s["cells"]] for s in p.manifest["stages"] if s["stage"] == stage)


def body_source(module: str) -> list[str]:
    return [ast.unparse(stmt) for stmt in main_body(module)]


# -- names, as Python binds them ----------------------------------------------------------------
@pytest.mark.parametrize(
    ("source", "defines", "uses_now"),
    [
        ("df = df.dropna()", {"df"}, {"df"}),  # the value is read before the target is bound
        ("x += 1", {"x"}, {"x"}),
        ("try:\n    pass\nexcept ValueError as e:\n    print(e)", {"e"}, set()),
        ("ys = [x for x in xs if x]", {"ys"}, {"xs"}),
        ("d = {k: v for k, v in pairs.items() if v}", {"d"}, {"pairs"}),
        ("g = [a * b for a in A for b in range(a)]", {"g"}, {"A"}),
        ("if (n := len(items)) > 2:\n    print(n)", {"n"}, {"items"}),
        ("with open(path) as fh:\n    text = fh.read()", {"fh", "text"}, {"path"}),
        ("for i, row in enumerate(rows):\n    total = i", {"i", "row", "total"}, {"rows"}),
        ("match point:\n    case (px, py):\n        dist = px + py", {"px", "py", "dist"}, {"point"}),
        ("class M:\n    k = 2\n    twice = k * 2", {"M"}, set()),
        ("lam = lambda q: q + offset", {"lam"}, set()),
    ],
)
def test_names_are_bound_where_python_binds_them(source: str, defines: set[str], uses_now: set[str]) -> None:
    got_defines, got_now, _ = names(source)
    assert got_defines == defines and got_now == uses_now


def test_a_reassignment_depends_on_the_earlier_cell(tmp_path: Path) -> None:
    nb = write_notebook(
        tmp_path / "chain.ipynb",
        [
            code("import pandas as pd\ndf = pd.DataFrame({'a': [1, None]})", id="load"),
            code("df = df.dropna()", id="clean"),
            code("# nbops: feature\nrows = len(df)", id="use"),
        ],
    )
    assert stage_cells(plan(nb), "feature") == ["load", "clean", "use"]


# -- markers mean what they say -----------------------------------------------------------------
def test_a_marker_on_the_line_after_a_cell_magic_counts(tmp_path: Path) -> None:
    nb = write_notebook(
        tmp_path / "m.ipynb",
        [code("# nbops: feature\nx = 1", id="f"), code("%%time\n# nbops: training\ny = 2", id="t")],
    )
    p = plan(nb)
    assert stage_cells(p, "training") == ["t"]
    assert body_source(p.files["training_pipeline.py"]) == ["y = 2"]


def test_a_marker_above_a_cell_magic_says_to_move_it_below(tmp_path: Path) -> None:
    nb = write_notebook(tmp_path / "m.ipynb", [code("# nbops: training\n%%time\ny = 2", id="t")])
    message = plan_refusal(nb)
    assert message.startswith(label(0, "t")) and "%%time must be the cell's first line" in message
    assert "on the line after it" in message


@pytest.mark.parametrize(
    "source", ["x = 1\n# nbops: training\ny = 2", "x = 1\n  #nbops: feature", "%%time\nx = 1\n# nbops: feature"]
)
def test_a_marker_anywhere_else_is_an_error_naming_the_cell(tmp_path: Path, source: str) -> None:
    nb = write_notebook(tmp_path / "m.ipynb", [code("# nbops: feature\nz = 0"), code(source, id="late")])
    with pytest.raises(ExportError, match=re.escape(label(1, "late")) + r": the stage marker .* counts only on"):
        plan(nb)


def test_one_cell_in_two_stages_by_marker_or_tags(tmp_path: Path) -> None:
    nb = write_notebook(
        tmp_path / "two.ipynb",
        [
            code("# nbops: feature, training\nscale = 3", id="shared"),
            code("both = 1", "feature", "training", id="tagged"),
            code("# nbops: feature\na = scale + both", id="f"),
            code("# nbops: training\nb = scale * both", id="t"),
        ],
    )
    p = plan(nb)
    assert stage_cells(p, "feature") == ["shared", "tagged", "f"]
    assert stage_cells(p, "training") == ["shared", "tagged", "t"]


def test_tags_and_a_marker_that_disagree_are_an_error(tmp_path: Path) -> None:
    nb = write_notebook(tmp_path / "m.ipynb", [code("# nbops: training\nx = 1", "feature", id="both")])
    with pytest.raises(
        ExportError, match=re.escape(label(0, "both")) + ": its tags say feature but its marker says training"
    ):
        plan(nb)


# -- values handed from one stage to the next --------------------------------------------------
FEATURE_FRAME = (
    "import pandas as pd\n"
    "feats = pd.DataFrame({'id': [1, 2], 'ts': pd.to_datetime(['2026-01-01', '2026-01-02'], utc=True), 'v': [0.5, 1.5]})"
)


def feature_then_training(path: Path, feature: str, training: str) -> Path:
    """A notebook importing nbops (cell ``imp``), then feature cell ``f``, then training cell ``t``."""
    return write_notebook(
        path,
        [
            code("import nbops", id="imp"),
            code(f"# nbops: feature\n{feature}", id="f"),
            code(f"# nbops: training\n{training}", id="t"),
        ],
    )


@pytest.mark.parametrize(
    ("persist", "read", "latest_read"),
    [
        (
            "nbops.open().register_features(feats, 'tx', keys='id', event_time='ts')",
            "feats = nbops_store.features('tx')",
            "feats = nbops_store.features('tx')",
        ),
        (
            "nbops.open().register_features(feats, 'tx', keys=['id'], event_time='ts', version=2)",
            "feats = nbops_store.features('tx', version=2)",
            "feats = nbops_store.features('tx')",
        ),
        ("nbops.open().snapshot(feats, 'feats_raw')", "feats = nbops_store.load('feats_raw')", None),
    ],
    ids=["group", "group-version", "snapshot"],
)
def test_a_persisted_frame_is_read_from_the_store_by_the_next_stage(
    tmp_path: Path, persist: str, read: str, latest_read: str | None
) -> None:
    nb = feature_then_training(tmp_path / "hand.ipynb", f"{FEATURE_FRAME}\n{persist}", "mean = feats['v'].mean()")
    p = plan(nb)
    body = body_source(p.files["training_pipeline.py"])
    assert body[0] == read and body[-1] == "mean = feats['v'].mean()"
    assert stage_cells(p, "training") == ["t"]  # the feature cell is not run again
    [entry] = [s for s in p.manifest["stages"] if s["stage"] == "training"]
    assert entry["store_reads"][0]["name"] == "feats"
    latest = body_source(plan(nb, latest=True).files["training_pipeline.py"])[0]
    assert latest == (latest_read or read)


def test_a_features_cell_and_training_data_saved_as_a_snapshot_are_read_back(tmp_path: Path) -> None:
    nb = write_notebook(
        tmp_path / "fti.ipynb",
        [
            code("import nbops\nimport pandas as pd\nstore = nbops.open()", id="setup"),
            code(f"# nbops: feature\n{FEATURE_FRAME}", id="build"),
            code("%%features tx --keys id --event-time ts\nfeats", id="register"),
            code(
                "# nbops: training\nspine = feats[['id', 'ts']]\n"
                "train = store.training_data(spine, ['tx.v'], event_time='ts', save_as='train_set')",
                id="td",
            ),
            code("# nbops: inference\nn = len(train) + len(feats)", id="inf"),
        ],
    )
    p = plan(nb)
    training = body_source(p.files["training_pipeline.py"])
    assert training[0] == "feats = nbops_store.features('tx')"
    inference = body_source(p.files["inference_pipeline.py"])
    assert set(inference[:2]) == {"feats = nbops_store.features('tx')", "train = nbops_store.load('train_set')"}


def test_a_model_fitted_in_a_tracked_cell_is_loaded_from_the_registry(tmp_path: Path) -> None:
    nb = write_notebook(
        tmp_path / "model.ipynb",
        [
            code("import mlflow\nfrom sklearn.linear_model import LinearRegression", id="imp"),
            code("X = [[0.0], [1.0], [2.0]]\ny = [0.0, 1.0, 2.0]", "feature", "training", "inference", id="data"),
            code(
                "%%track --register-model line\nmodel = LinearRegression().fit(X, y)\n"
                "mlflow.sklearn.log_model(model, name='model')",
                id="fit",
            ),
            code("# nbops: inference\npred = model.predict(X)", id="use"),
        ],
    )
    inference = body_source(plan(nb).files["inference_pipeline.py"])
    assert inference[0] == "model = nbops_store.load_model('line')"


def test_an_import_from_another_stage_cell_is_repeated_not_its_data(tmp_path: Path) -> None:
    nb = write_notebook(
        tmp_path / "imp.ipynb",
        [
            code("# nbops: feature\nimport numpy as np\nfrom math import sqrt\nbig = np.ones(3)", id="f"),
            code("# nbops: training\nr = sqrt(np.pi)", id="t"),
        ],
    )
    body = body_source(plan(nb).files["training_pipeline.py"])
    assert sorted(body[:2]) == ["from math import sqrt", "import numpy as np"] and "big" not in " ".join(body)


@pytest.mark.parametrize(
    ("feature", "why"),
    [
        ("feats = [1, 2]", "not persisted"),
        (f"{FEATURE_FRAME}\nnbops.open().snapshot(feats, 'raw')\nfeats['v'] = 0", "changed after it was stored"),
        (f"{FEATURE_FRAME}\nnbops.open().snapshot(feats[['v']], 'raw')", "an expression was stored, not the variable"),
        (f"{FEATURE_FRAME}\nname = 'raw'\nnbops.open().snapshot(feats, name)", "the name is not a literal"),
    ],
)
def test_any_other_cross_stage_name_is_refused_naming_both_cells_and_the_fixes(
    tmp_path: Path, feature: str, why: str
) -> None:
    nb = feature_then_training(tmp_path / "cross.ipynb", feature, "n = len(feats)")
    message = plan_refusal(nb)
    assert message.startswith(f"{label(2, 't')} (training) uses 'feats', which {label(1, 'f')}"), why
    assert "persist it" in message and f"tag {label(1, 'f')} into both stages" in message, why


def test_a_name_from_a_later_stage_is_refused(tmp_path: Path) -> None:
    nb = write_notebook(
        tmp_path / "later.ipynb",
        [
            code(f"# nbops: inference\nimport nbops\n{FEATURE_FRAME}\nnbops.open().snapshot(feats, 'x')", id="i"),
            code("# nbops: feature\nn = len(feats)", id="f"),
        ],
    )
    with pytest.raises(ExportError, match="the inference stage runs after the feature stage"):
        plan(nb)


def test_nothing_is_written_when_export_refuses(tmp_path: Path) -> None:
    nb = write_notebook(
        tmp_path / "refused.ipynb",
        [code("# nbops: feature\nfeats = 1", id="f"), code("# nbops: training\nn = feats", id="t")],
    )
    with nbops.open(tmp_path / ".nbops") as store:
        with pytest.raises(ExportError):
            export(nb, out=tmp_path / "out", store=store)
        assert not (tmp_path / "out").exists()
        assert nbops.exporting.history(str(nb), store=store).empty


# -- the notebook's file name never blocks export -----------------------------------------------
@pytest.mark.parametrize(
    ("file", "stem"),
    [
        ("1_feature_pipeline.ipynb", "nb_1_feature_pipeline"),
        ("fraud model v2.ipynb", "fraud_model_v2"),
        ("Übung 3 (final).ipynb", "Ubung_3_final"),
        ("a.b.ipynb", "a_b"),
        ("CON.ipynb", "CON_nb"),
        ("%%%.ipynb", "notebook"),
    ],
)
def test_any_file_name_exports_and_the_manifest_keeps_it(tmp_path: Path, file: str, stem: str) -> None:
    nb = write_notebook(tmp_path / file, [code("# nbops: feature\nx = 1")])
    with nbops.open(tmp_path / ".nbops") as store:
        result = export(nb, out=tmp_path / "out", store=store)
    assert result.stem == stem and result.out_dir == tmp_path / "out" / stem
    manifest = json.loads((result.out_dir / "manifest.json").read_text())
    assert manifest["pipeline"] == stem and manifest["notebook"]["name"] == file


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet=st.characters(blacklist_categories=["Cs"]), max_size=200))
def test_every_file_name_gives_a_valid_pipeline_name(text: str) -> None:
    name = pipeline_name_from(text)
    assert validate_name(name, "pipeline") == name
    if (
        text
        and set(text) <= set(string.ascii_letters + "_")
        and len(text) <= 128
        and text.upper() not in ("CON", "PRN", "AUX", "NUL")
    ):
        assert name == text.strip("_") or name == "notebook"


# -- each module's parameters ------------------------------------------------------------------
def test_each_module_help_lists_only_the_parameters_its_stage_uses(tmp_path: Path) -> None:
    nb = write_notebook(
        tmp_path / "params.ipynb",
        [
            code("rows = 10\nthreshold = 0.5\nlabel_col = 'y'\nuse_gpu = False\ncols = ['a']", "parameters", id="p"),
            code("def pick(n):\n    return list(range(n + rows))", id="helper"),
            code("# nbops: feature\nr = pick(1)\nc = cols", id="f"),
            code("# nbops: training\nt = threshold if not use_gpu else 1.0\nname = label_col", id="t"),
        ],
    )
    with nbops.open(tmp_path / ".nbops") as store:
        result = export(nb, out=tmp_path / "out", store=store)
    feature = run([PYTHON, str(result.out_dir / "feature_pipeline.py"), "--help"], tmp_path / "w", tmp_path / "h")
    training = run([PYTHON, str(result.out_dir / "training_pipeline.py"), "--help"], tmp_path / "w", tmp_path / "h")
    assert feature.returncode == 0 and training.returncode == 0, feature.stderr + training.stderr
    assert "--rows ROWS" in feature.stdout and "int; default: 10" in feature.stdout
    assert "--cols COLS" in feature.stdout and "JSON (list); default: ['a']" in feature.stdout
    assert not any(f"--{p}" in feature.stdout for p in ("threshold", "label-col", "use-gpu"))
    assert "float; default: 0.5" in training.stdout and "str; default: y" in training.stdout
    assert "bool (true/false); default: False" in training.stdout and "--rows" not in training.stdout
    stages = {s["stage"]: s["parameters"] for s in result.manifest["stages"]}
    assert stages == {"feature": ["rows", "cols"], "training": ["threshold", "label_col", "use_gpu"]}
    assert list(result.manifest["parameters"]) == ["rows", "threshold", "label_col", "use_gpu", "cols"]


def test_a_star_import_runs_before_main_and_help_needs_no_module(tmp_path: Path) -> None:
    nb = write_notebook(
        tmp_path / "star.ipynb",
        [
            code("from math import *", id="star"),
            code("from not_installed_anywhere import *", "skip", id="other"),
            code("# nbops: feature\nwith open('out.txt', 'w') as f:\n    f.write(str(sqrt(16)))", id="f"),
        ],
    )
    with nbops.open(tmp_path / ".nbops") as store:
        result = export(nb, out=tmp_path / "out", store=store)
    module = result.out_dir / "feature_pipeline.py"
    ran = run([PYTHON, str(module)], tmp_path / "w", tmp_path / "h")
    assert ran.returncode == 0, ran.stderr
    assert (tmp_path / "w" / "out.txt").read_text() == "4.0"


def test_a_cell_indented_as_a_whole_exports_as_ipython_runs_it(tmp_path: Path) -> None:
    nb = write_notebook(tmp_path / "indent.ipynb", [code("  # nbops: feature\n  x = 1\n  if x:\n      y = 2\n")])
    assert body_source(plan(nb).files["feature_pipeline.py"]) == ["x = 1", "if x:\n    y = 2"]


def test_a_frame_changed_by_a_later_cell_after_it_was_stored_is_refused(tmp_path: Path) -> None:
    nb = write_notebook(
        tmp_path / "changed.ipynb",
        [
            code(f"# nbops: feature\nimport nbops\n{FEATURE_FRAME}\nnbops.open().snapshot(feats, 'raw')", id="f"),
            code("# nbops: feature\nfeats['v'] = 0.0", id="change"),
            code("# nbops: training\nn = feats['v'].sum()", id="t"),
        ],
    )
    with pytest.raises(ExportError, match=re.escape(f"{label(2, 't')} (training) uses 'feats'")):
        plan(nb)


# -- the whole loop: a real kernel, the export, a replay on a fresh store ------------------------
NATURAL = [
    code(
        "import mlflow\nimport nbops\nimport numpy as np\nimport pandas as pd\nfrom sklearn.linear_model import LogisticRegression",
        id="imports",
    ),
    code("n_rows = 120\nC = 0.5", "parameters", id="params"),
    code(
        "# nbops: feature\n"
        "rng = np.random.default_rng(7)\n"
        "raw = pd.DataFrame({'id': np.arange(n_rows), 'ts': pd.date_range('2026-01-01', periods=n_rows, freq='h', tz='UTC'),\n"
        "                    'x': rng.normal(size=n_rows)})\n"
        "raw['label'] = (raw['x'] + rng.normal(scale=0.5, size=n_rows) > 0).astype(int)\n",
        id="raw",
    ),
    code("%snapshot raw\n", "feature", id="snap"),
    code("%%features natural_tx --keys id --event-time ts\nfeats = raw.assign(x2=raw['x'] ** 2)\nfeats\n", id="feats"),
    code("# nbops: training\nX = feats[['x', 'x2']]\ny = feats['label']\n", id="xy"),
    code(
        "%%time\n# nbops: training\n"
        "with nbops.track(experiment='natural', run_name='fit', register_model='natural_model'):\n"
        "    model = LogisticRegression(C=C).fit(X, y)\n"
        "    mlflow.sklearn.log_model(model, name='model', input_example=X.head(2))\n"
        "    nbops.log(train_accuracy=float(model.score(X, y)))\n",
        id="fit",
    ),
    code(
        "# nbops: inference\n"
        "scores = pd.DataFrame({'id': feats['id'], 'p': model.predict_proba(feats[['x', 'x2']])[:, 1].round(12)})\n"
        "%snapshot scores\n",
        id="score",
    ),
]


def test_a_notebook_handing_frames_and_a_model_between_stages_replays_on_a_fresh_store(tmp_path: Path) -> None:
    nb = write_notebook(tmp_path / "1_natural.ipynb", NATURAL)
    with nbops.open(tmp_path / "meta" / ".nbops") as store:
        result = export(nb, out=tmp_path / "out", store=store, verify=True)
    training = body_source((result.out_dir / "training_pipeline.py").read_text())
    inference = body_source((result.out_dir / "inference_pipeline.py").read_text())
    assert training[0] == "feats = nbops_store.features('natural_tx')"
    assert "model = nbops_store.load_model('natural_model')" in inference[:2]
    verification = result.verification  # type: ignore[attr-defined]
    assert verification.ok, verification.text()
    kinds = {(row["kind"], row["name"]): row["status"] for row in verification.rows}
    # identical feature digests, metrics and predictions (the scores snapshot's digest)
    assert kinds[("snapshot", "scores")] == "same" and kinds[("snapshot", "raw")] == "same"
    assert any(kind == "feature group" and status == "same" for (kind, _), status in kinds.items()), kinds


def test_load_model_gives_the_native_model_by_latest_version_or_alias_and_refuses_unknown_ones(
    store: nbops.store.Store,
) -> None:
    import mlflow
    import numpy as np
    from sklearn.linear_model import LinearRegression

    from helpers.mlflowstate import reset_mlflow
    from nbops.errors import InvalidInputError, NotFoundError

    try:
        X = np.array([[0.0], [1.0], [2.0]])
        for slope in (1.0, 3.0):
            with nbops.track(experiment="load", store=store, register_model="line"):
                fitted = LinearRegression().fit(X, X[:, 0] * slope)
                mlflow.sklearn.log_model(fitted, name="model", pip_requirements=["scikit-learn"])
        nbops.register_model("line", run_id=mlflow.last_active_run().info.run_id, alias="champion", store=store)
        latest = store.load_model("line")
        assert isinstance(latest, LinearRegression) and latest.coef_[0] == pytest.approx(3.0)
        assert store.load_model("line", version=1).coef_[0] == pytest.approx(1.0)
        assert store.load_model("line", alias="champion").coef_[0] == pytest.approx(3.0)
        with pytest.raises(NotFoundError, match="no registered model 'nothing'"):
            store.load_model("nothing")
        with pytest.raises(NotFoundError, match="registered model 'line' has no alias 'gone'"):
            store.load_model("line", alias="gone")
        with pytest.raises(InvalidInputError, match="give version= or alias=, not both"):
            store.load_model("line", version=1, alias="champion")
        # the next write names the model it loaded as a parent
        store.load_model("line", version=1)
        ref = store.snapshot(pd_frame(), "scored")
        parents = {e["parent"] for e in store.lineage(f"{ref.name}@{ref.version}")["edges"]}
        assert "model:line@1" in parents
    finally:
        reset_mlflow()


def pd_frame() -> Any:
    import pandas as pd

    return pd.DataFrame({"p": [0.5]})


def test_display_kept_inside_a_function_works_in_the_module(tmp_path: Path) -> None:
    nb = write_notebook(
        tmp_path / "show.ipynb",
        [
            code("def report(n):\n    display(n)\n    return n", id="helper"),
            code("# nbops: feature\nx = report(41) + 1\ndisplay(x)", id="f"),
        ],
    )
    with nbops.open(tmp_path / ".nbops") as store:
        result = export(nb, out=tmp_path / "out", store=store)
    ran = run([PYTHON, str(result.out_dir / "feature_pipeline.py")], tmp_path / "w", tmp_path / "h")
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.split() == ["41"]  # the bare display(x) is dropped; the one in report() prints


def test_a_helper_uses_an_import_of_an_earlier_stage_even_when_its_stage_imports_it_later(tmp_path: Path) -> None:
    nb = write_notebook(
        tmp_path / "late_import.ipynb",
        [
            code("from math import sqrt", "feature", id="imp"),
            code("def f(x):\n    return sqrt(x)", id="helper"),
            code("y = f(4)", "feature", "training", id="both"),
            code("from math import sqrt\nz = sqrt(9)", "training", id="again"),
        ],
    )
    training = body_source(plan(nb).files["training_pipeline.py"])
    assert training[0] == "from math import sqrt" and training[-2:] == ["from math import sqrt", "z = sqrt(9)"]


def test_the_model_reaches_the_feature_commit_and_raw_snapshot_in_the_notebook_and_in_the_modules(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from helpers.mlflowstate import reset_mlflow
    from helpers.shell import nbops_shell

    wanted = {"feature_commit:natural_tx:1@1", "snapshot:raw@1"}
    try:
        with nbops_shell(tmp_path / "kernel" / ".nbops", monkeypatch) as shell:
            for cell in NATURAL:
                if "parameters" in cell.metadata.get("tags", []) or "%snapshot scores" not in cell.source:
                    result = shell.run_cell(cell.source)
                    assert result.success, (cell.source, result.error_in_exec or result.error_before_exec)
        with nbops.open(tmp_path / "kernel" / ".nbops") as store:
            in_notebook = ancestors(store, "model:natural_model@1")
    finally:
        reset_mlflow()
    assert wanted <= in_notebook and any(a.startswith("run:") for a in in_notebook), in_notebook

    nb = write_notebook(tmp_path / "natural.ipynb", NATURAL)
    with nbops.open(tmp_path / "meta" / ".nbops") as store:
        result = export(nb, out=tmp_path / "out", store=store)
    for module in ("feature_pipeline.py", "training_pipeline.py"):
        ran = run([PYTHON, str(result.out_dir / module)], tmp_path / "w", tmp_path / "fresh" / ".nbops", timeout=300)
        assert ran.returncode == 0, ran.stderr[-3000:]
    with nbops.open(tmp_path / "fresh" / ".nbops") as store:
        in_modules = ancestors(store, "model:natural_model@1")
    reset_mlflow()
    assert wanted <= in_modules and any(a.startswith("run:") for a in in_modules), in_modules
    assert any(a.startswith("pipeline:natural@") for a in in_modules)
