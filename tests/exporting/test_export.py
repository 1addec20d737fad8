"""Export: notebooks built with ``nbformat.v4`` the way public tutorials are,
exported through the API, ``nbops export``, ``jupyter nbconvert --to nbops``
and ``%export``; generated modules parsed, and run in real subprocesses
against scratch stores.
"""

from __future__ import annotations

import ast
import hashlib
import importlib.metadata
import json
import re
import shlex
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nbformat
import pytest
from IPython.core.error import UsageError
from IPython.core.interactiveshell import InteractiveShell
from nbformat.v4 import new_markdown_cell

import nbops
from helpers.notebooks import PYTHON, code, code_shape, label, main_body, plan_refusal, run, write_notebook
from helpers.payloads import PAYLOADS
from helpers.shell import nbops_shell
from nbops.exporting import ExportError, ExportResult, export, history, plan
from nbops.store import Store

BIN = Path(PYTHON).parent

pytestmark = pytest.mark.usefixtures("no_tracking_server")


# -- notebooks -------------------------------------------------------------------------------
QUERY = '''"""
SELECT card,
       SUM(amount) AS total   -- kept exactly
  FROM tx
    WHERE amount > 0
"""'''
QUERY_VALUE = ast.literal_eval(QUERY)

TUTORIAL = [
    new_markdown_cell("# Card transactions: features\n\nBuild per-card features and register them."),
    code("!pip install scikit-learn==1.2\n%pip install numpy", id="install"),
    code('n = 3\nout_file = "rows.txt"', "parameters", id="params"),
    code("import pandas as pd\nimport numpy as np\n%matplotlib inline", id="imports"),
    code("THRESHOLD = 0.5  # amounts above this are large", id="constants"),
    code(
        "def is_large(amount):\n    # compare with the notebook-wide threshold\n    return amount > THRESHOLD",
        id="helpers",
    ),
    code("def unused_helper():\n    return 42", id="unused"),
    code(
        "# nbops: feature\n"
        "# one row per transaction\n"
        'tx = pd.DataFrame({"card": list(range(n)), "ts": pd.Timestamp("2024-01-01", tz="UTC"),'
        ' "amount": np.arange(n) * 0.4})\n'
        'tx["large"] = tx["amount"].map(is_large)\n'
        "display(tx)\n"
        "tx.head()\n"
        "tx",
        id="build",
    ),
    code("", id="empty"),
    code("%%time\ntotal = tx['amount'].sum()", "feature", id="timed"),
    code("%time n_large = int(tx['large'].sum())", "feature", id="timed-line"),
    code("%%capture\nprint('noisy output')", "feature", id="captured"),
    code(
        f"QUERY = {QUERY}\nif n > 0:\n    with open('query.sql', 'w') as f:\n        f.write(QUERY)",
        "feature",
        id="sql",
    ),
    code("   \n", id="blank"),
    code(
        '%%features tx_features --keys card --event-time ts -d "per-card amounts"\n'
        'with open(out_file, "w") as f:\n'
        "    f.write(str(len(tx)))\n"
        "tx",
        id="register",
    ),
]
TUTORIAL_FEATURE_CELLS = [
    "imports",
    "constants",
    "helpers",
    "build",
    "timed",
    "timed-line",
    "captured",
    "sql",
    "register",
]


def string_constants(source: str) -> list[str]:
    return [n.value for n in ast.walk(ast.parse(source)) if isinstance(n, ast.Constant) and isinstance(n.value, str)]


def feature_lineage(home: Path) -> list[dict[str, Any]]:
    conn = sqlite3.connect(f"file:{home / 'catalog.db'}?mode=ro", uri=True)
    try:
        return [json.loads(row[0]) for row in conn.execute("SELECT lineage FROM feature_commits ORDER BY id")]
    finally:
        conn.close()


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def tutorial(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, ExportResult]]:
    """The tutorial notebook exported once (version 1) through the API."""
    root = tmp_path_factory.mktemp("tutorial")
    nb = write_notebook(root / "tutorial.ipynb", TUTORIAL)
    before = nb.read_bytes()
    with nbops.open(root / ".nbops") as store:
        result = export(nb, out=root / "out", store=store)
    assert nb.read_bytes() == before
    yield nb, result


# -- the tutorial: what the modules contain ------------------------------------------------
def test_tutorial_feature_module_has_the_needed_cells_in_notebook_order(
    tutorial: tuple[Path, ExportResult],
) -> None:
    _, result = tutorial
    assert result.version == 1 and result.modules == ["feature_pipeline.py"]
    [stage] = result.manifest["stages"]
    assert [c["id"] for c in stage["cells"]] == TUTORIAL_FEATURE_CELLS  # no unused helper, no pip, no empty cells
    reasons = {c["id"]: c["reason"] for c in stage["cells"]}
    assert reasons["build"] == "first-line comment" and reasons["register"] == "magic %%features"
    assert reasons["timed"] == "tag 'feature'" and reasons["helpers"] == "dependency"
    source = result.files["feature_pipeline.py"]
    markers = re.findall(r"^\s*# %% cell (\S+)$", source, flags=re.MULTILINE)
    assert markers == TUTORIAL_FEATURE_CELLS
    assert (result.out_dir / "feature_pipeline.py").read_text() == source
    assert result.out_dir == (tutorial[0].parent / "out" / "tutorial").resolve()
    assert sorted(p.name for p in result.out_dir.iterdir()) == [
        "feature_pipeline.py",
        "manifest.json",
        "test_pipelines.py",
    ]


def test_tutorial_module_is_plain_python_with_provenance_and_comments(
    tutorial: tuple[Path, ExportResult],
) -> None:
    _, result = tutorial
    source = result.files["feature_pipeline.py"]
    tree = ast.parse(source)
    compile(source, "feature_pipeline.py", "exec")
    doc = ast.get_docstring(tree) or ""
    assert "tutorial.ipynb" in doc and "tutorial@1" in doc and "stage feature" in doc
    for comment in ("# one row per transaction", "# compare with the notebook-wide threshold",
                    "# amounts above this are large"):  # fmt: skip
        assert comment in source
    assert "get_ipython" not in source and "unused_helper" not in source
    # magics unwrapped: the statements themselves, no timing or capturing left
    assert "total = tx['amount'].sum()" in source and "n_large = int(tx['large'].sum())" in source
    assert "print('noisy output')" in source
    names = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)} | {
        n.attr for n in ast.walk(tree) if isinstance(n, ast.Attribute)
    }
    assert not names & {"display", "head", "pip", "matplotlib", "time", "capture"}
    assert not any("pip install" in s for s in string_constants(source))
    body = main_body(source)
    # display-only lines dropped: no bare expression statement is left in the stage body
    bare = [ast.unparse(s) for s in body if isinstance(s, ast.Expr) and not isinstance(s.value, ast.Call)]
    assert bare == []
    calls = [ast.unparse(s.value.func) for s in body if isinstance(s, ast.Expr) and isinstance(s.value, ast.Call)]
    assert calls == ["print", "nbops_store.register_features"]
    register = next(s.value for s in body if isinstance(s, ast.Expr) and ast.unparse(s.value.func).endswith("features"))
    assert ast.unparse(register) == (
        "nbops_store.register_features(tx, 'tx_features', keys=['card'], event_time='ts', description='per-card amounts')"
    )
    dropped = result.manifest["dropped"]
    assert "display: display(tx)" in dropped["build"] and "display: tx.head()" in dropped["build"]
    assert dropped["timed"] == ["%%time (unwrapped)"] and dropped["captured"] == ["%%capture (unwrapped)"]


def test_parameters_become_main_defaults_and_manifest_entries(
    tutorial: tuple[Path, ExportResult],
) -> None:
    _, result = tutorial
    tree = ast.parse(result.files["feature_pipeline.py"])
    main = next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "main")
    assert [a.arg for a in main.args.args] == ["n", "out_file"]
    assert [ast.literal_eval(d) for d in main.args.defaults] == [3, "rows.txt"]
    assert result.manifest["parameters"] == {"n": 3, "out_file": "rows.txt"}
    assert "params" not in [c["id"] for c in result.manifest["stages"][0]["cells"]]


def test_pip_lines_become_requirements_with_versions(tutorial: tuple[Path, ExportResult]) -> None:
    _, result = tutorial
    requirements = result.manifest["requirements"]
    assert requirements["scikit-learn"] == "1.2"  # the pinned version, not this environment's
    assert requirements["numpy"] == importlib.metadata.version("numpy")
    assert requirements["pandas"] == importlib.metadata.version("pandas")
    assert json.loads((result.out_dir / "manifest.json").read_text())["requirements"] == requirements
    assert not re.search(r"\bpip\b", result.files["feature_pipeline.py"])


def test_manifest_records_notebook_hash_cells_and_store_writes(
    tutorial: tuple[Path, ExportResult],
) -> None:
    nb, result = tutorial
    manifest = json.loads((result.out_dir / "manifest.json").read_text())
    assert manifest["pipeline"] == "tutorial" and manifest["version"] == 1
    assert manifest["notebook"]["sha256"] == sha(nb)
    assert manifest["store_references"]["writes"] == ["tx_features"]
    assert manifest["files"] == ["feature_pipeline.py", "test_pipelines.py"]
    assert manifest["findings"] == []


def test_multiline_strings_keep_their_exact_value(tutorial: tuple[Path, ExportResult], tmp_path: Path) -> None:
    _, result = tutorial
    values = string_constants(result.files["feature_pipeline.py"])
    assert QUERY_VALUE in values  # nested twice (main + with), not one space added to the SQL
    nb = write_notebook(
        tmp_path / "sqlnb.ipynb",
        [code(f"%%track --run-name sql\nQ = {QUERY}\nif True:\n    R = {QUERY}\nx = 1", id="train")],
    )
    module = plan(nb).files["training_pipeline.py"]
    assert string_constants(module).count(QUERY_VALUE) == 2


# -- the tutorial: running the modules --------------------------------------------------------
def test_module_help_lists_the_parameters(tutorial: tuple[Path, ExportResult], tmp_path: Path) -> None:
    _, result = tutorial
    proc = run(
        [PYTHON, str(result.out_dir / "feature_pipeline.py"), "--help"],
        tmp_path,
        tmp_path / ".nbops",
    )
    assert proc.returncode == 0, proc.stderr
    assert "--n N" in proc.stdout and "--out-file OUT_FILE" in proc.stdout
    assert "default: 3" in proc.stdout and "default: rows.txt" in proc.stdout


def test_module_runs_with_a_parameter_and_records_pipeline_lineage(
    tutorial: tuple[Path, ExportResult], tmp_path: Path
) -> None:
    _, result = tutorial
    home = tmp_path / "scratch" / ".nbops"
    work = tmp_path / "work"
    proc = run([PYTHON, str(result.out_dir / "feature_pipeline.py"), "--n", "5"], work, home)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (work / "rows.txt").read_text() == "5"  # --n reached the cells
    assert (work / "query.sql").read_text() == QUERY_VALUE  # byte for byte
    [lineage] = feature_lineage(home)
    assert lineage["pipeline"] == "tutorial@1" and lineage["stage"] == "feature"
    with nbops.open(home) as store:
        assert len(store.features("tx_features")) == 5
        graph = store.lineage("pipeline:tutorial@1")  # the pipeline is a parent of what it wrote
        children = {e["child"] for e in graph["edges"] if e["parent"] == "pipeline:tutorial@1"}
        assert "feature_commit:tx_features:1@1" in children


def test_generated_test_module_passes_under_pytest(tutorial: tuple[Path, ExportResult], tmp_path: Path) -> None:
    _, result = tutorial
    proc = run(
        [PYTHON, "-m", "pytest", str(result.out_dir / "test_pipelines.py"), "-q", "-p", "no:cacheprovider",
         "--basetemp", str(tmp_path / "bt")],
        tmp_path, tmp_path / "unused" / ".nbops",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert "1 passed" in proc.stdout


# -- stages and dependencies -------------------------------------------------------------------
def test_stage_by_tag_comment_and_magic_with_support_cells_only_where_needed(
    tmp_path: Path,
) -> None:
    nb = write_notebook(
        tmp_path / "stages.ipynb",
        [
            new_markdown_cell("# Stages"),
            code("import pandas as pd", id="imports"),
            code("import math", id="unused-import"),
            code("SCALE = 10", id="const"),
            code(
                "clean = pd.DataFrame({'id': [1], 'ts': [pd.Timestamp('2024-01-01')]})",
                "feature",
                id="by-tag",
            ),
            code(
                "%%features tx --keys id --event-time ts\nfeats = clean.assign(v=SCALE)\nfeats",
                id="by-features",
            ),
            code("%%track --run-name baseline\nmodel = {'w': 1}", id="by-track"),
            code("# nbops: inference\nscores = pd.Series([0.1])", id="by-comment"),
            code("pd.show_versions()", "skip", id="skipped"),
        ],
    )
    p = plan(nb)
    stages = {s["stage"]: [(c["id"], c["reason"]) for c in s["cells"]] for s in p.manifest["stages"]}
    assert stages == {
        "feature": [("imports", "dependency"), ("const", "dependency"), ("by-tag", "tag 'feature'"),
                    ("by-features", "magic %%features")],
        "training": [("by-track", "magic %%track")],
        "inference": [("imports", "dependency"), ("by-comment", "first-line comment")],
    }  # fmt: skip
    assert sorted(p.files) == ["feature_pipeline.py", "inference_pipeline.py", "test_pipelines.py",
                               "training_pipeline.py"]  # fmt: skip
    assert p.findings == []
    training = p.files["training_pipeline.py"]
    [with_track] = main_body(training)
    assert ast.unparse(with_track).startswith("with nbops.track(experiment='stages', run_name='baseline'):")


def test_bogus_stage_comment_is_an_error_naming_the_cell(tmp_path: Path) -> None:
    nb = write_notebook(tmp_path / "bogus.ipynb", [code("x = 1", id="ok"), code("# nbops: bogus\ny = 2", id="bad")])
    with pytest.raises(ExportError, match=re.escape(f"{label(1, 'bad')}: '# nbops: bogus' names no stage")):
        plan(nb)


def test_notebook_without_any_stage_says_how_to_mark_one(tmp_path: Path) -> None:
    nb = write_notebook(tmp_path / "plain.ipynb", [code("x = 1")])
    with pytest.raises(ExportError, match="has no stage: tag cells feature / training / inference"):
        plan(nb)


def test_empty_cells_are_ignored(tmp_path: Path) -> None:
    nb = write_notebook(
        tmp_path / "empty.ipynb",
        [
            code("", id="e1"),
            code("\n\n", "feature", id="e2"),
            code("# nbops: feature\nx = 1", id="f"),
            code("  ", id="e3"),
        ],
    )
    p = plan(nb)
    assert [c["id"] for c in p.manifest["stages"][0]["cells"]] == ["f"]
    assert [s for s in main_body(p.files["feature_pipeline.py"])] and "e2" not in p.files["feature_pipeline.py"]


def test_out_of_order_execution_is_a_finding(tmp_path: Path, store: Store) -> None:
    nb = write_notebook(
        tmp_path / "order.ipynb",
        [
            code("a = 1", id="first", count=3),
            code("# nbops: feature\nb = a + 1", id="second", count=2),
        ],
    )
    result = export(nb, out=tmp_path / "out", store=store)
    [finding] = [f for f in result.findings if f.kind == "execution-order"]
    assert label(0, "first") in finding.message and label(1, "second") in finding.message
    assert {
        "kind": "execution-order",
        "cell": label(1, "second"),
        "name": None,
        "message": finding.message,
    } in (result.manifest["findings"])
    assert "warning: " + finding.message in result.summary()


def test_syntax_error_names_the_cell(tmp_path: Path) -> None:
    nb = write_notebook(
        tmp_path / "broken.ipynb",
        [
            new_markdown_cell("intro"),
            code("import math"),
            code("# nbops: feature\nx = (1,\n", id="broken"),
        ],
    )
    with pytest.raises(ExportError, match=re.escape(label(2, "broken")) + ": syntax error at line 2"):
        plan(nb)


def test_helper_defined_after_its_first_use_is_refused_naming_both_cells(tmp_path: Path) -> None:
    nb = write_notebook(
        tmp_path / "late.ipynb",
        [
            code("# nbops: feature\ny = helper(2)", id="use"),
            code("def helper(v):\n    return v", id="helper-def"),
        ],
    )
    # The module would fail with NameError: refused, naming both cells.
    message = plan_refusal(nb)
    assert f"{label(0, 'use')} uses 'helper' before {label(1, 'helper-def')} defines it" in message


def test_helper_used_only_inside_an_earlier_function_body_is_fine(tmp_path: Path) -> None:
    nb = write_notebook(
        tmp_path / "bodies.ipynb",
        [
            code("def score(x):\n    return helper(x) * 2", id="score"),
            code("def helper(v):\n    return v + 1", id="helper"),
            code("# nbops: feature\ny = score(3)", id="use"),
        ],
    )
    p = plan(nb)
    assert p.findings == []
    assert [c["id"] for c in p.manifest["stages"][0]["cells"]] == ["score", "helper", "use"]


def test_function_called_before_its_late_bound_helper_is_defined_is_reported(
    tmp_path: Path,
) -> None:
    nb = write_notebook(
        tmp_path / "hidden.ipynb",
        [
            code("def score(x):\n    return helper(x)", id="score"),
            code("# nbops: feature\ny = score(3)", id="use"),
            code("def helper(v):\n    return v", id="helper"),
        ],
    )
    message = plan_refusal(nb)
    assert "'helper'" in message and label(2, "helper") in message


def test_name_defined_only_in_a_skipped_cell_is_refused(tmp_path: Path) -> None:
    nb = write_notebook(
        tmp_path / "skipped.ipynb",
        [code("z = 5", "skip", id="scratch"), code("# nbops: feature\ny = z + 1", id="use")],
    )
    message = plan_refusal(nb)
    assert "'z'" in message and label(0, "scratch") in message and label(1, "use") in message
    assert "skipped" in message


def test_training_cell_using_an_unpersisted_feature_variable_is_refused_with_both_fixes(
    tmp_path: Path,
) -> None:
    nb = write_notebook(
        tmp_path / "stagevar.ipynb",
        [
            code("# nbops: feature\nfeats = [1, 2]", id="feat"),
            code("# nbops: training\nmodel = sum(feats)", id="train"),
        ],
    )
    message = plan_refusal(nb)
    assert message.startswith(f"{label(1, 'train')} (training) uses 'feats'")
    assert label(0, "feat") in message
    assert "persist it" in message and "tag " + label(0, "feat") + " into both stages" in message


@pytest.mark.parametrize(
    ("source", "says"),
    [
        ("%%bashful\nls -la", "the cell magic %%bashful cannot be exported"),
        ("%lsmagic", "the magic %lsmagic cannot be exported"),
        ("%run other.py", "%run cannot be exported"),
        ("x = 1\n%store x", "%store cannot be exported"),
        ("%pip list", "only %pip install can be exported"),
    ],
)
def test_unknown_magic_is_an_error_naming_cell_and_magic(tmp_path: Path, source: str, says: str) -> None:
    nb = write_notebook(tmp_path / "magic.ipynb", [code("# nbops: feature\nx = 1"), code(source, id="odd")])
    with pytest.raises(ExportError, match=re.escape(f"{label(1, 'odd')}: {says}")):
        plan(nb)


# -- %%writefile -------------------------------------------------------------------------------
def test_writefile_becomes_a_sibling_module_that_later_cells_import(tmp_path: Path) -> None:
    nb = write_notebook(
        tmp_path / "wf.ipynb",
        [
            code("%%writefile helpers.py\ndef double(x):\n    return 2 * x\n", id="write"),
            code(
                "# nbops: feature\nimport helpers\nwith open('out.txt', 'w') as f:\n    f.write(str(helpers.double(21)))"
            ),
        ],
    )
    p = plan(nb)
    assert p.files["helpers.py"] == "def double(x):\n    return 2 * x\n"
    assert "helpers.py" in p.manifest["files"] and "write" not in str(p.manifest["stages"])
    with nbops.open(tmp_path / ".nbops") as store:
        result = export(nb, out=tmp_path / "out", store=store)
    proc = run(
        [PYTHON, str(result.out_dir / "feature_pipeline.py")],
        tmp_path / "w",
        tmp_path / "s" / ".nbops",
    )
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "w" / "out.txt").read_text() == "42"


# -- no code injection -------------------------------------------------------------------------
INJECTION_LINES = {
    "snapshot -m": "%snapshot df -m {q}",
    "snapshot --name": "%snapshot df --name {q}",
    "features group": "%%features {q} --keys id --event-time ts\ndf",
    "features -d": "%%features tx --keys id --event-time ts -d {q}\ndf",
    "track --run-name": "%%track --run-name {q}\nx = 1",
    "track --experiment": "%%track --experiment {q} --register-model {q}\nx = 1",
}


def _injection_notebook(path: Path, places: list[str], payload: str) -> Path:
    """A setup cell, then one cell per place (id ``injK``) carrying ``payload``, shell-quoted as a user would."""
    cells = [
        code(
            "import pandas as pd\ndf = pd.DataFrame({'id': [1], 'ts': [pd.Timestamp('2024-01-01')]})",
            "feature",
        )
    ]
    for place in places:
        stage = "training" if place.startswith("track") else "feature"
        template = INJECTION_LINES[place]
        cells.append(
            code(
                template.format(q=shlex.quote(payload)),
                stage,
                id=f"inj{list(INJECTION_LINES).index(place)}",
            )
        )
    return write_notebook(path, cells)


_baselines: dict[tuple[str, ...], Any] = {}


def _baseline(tmp_path: Path, places: list[str]) -> Any:
    if tuple(places) not in _baselines:
        _baselines[tuple(places)] = plan(_injection_notebook(tmp_path / "baseline" / "nb.ipynb", places, "benign"))
    return _baselines[tuple(places)]


@pytest.mark.parametrize("payload", PAYLOADS, ids=[f"p{i}" for i in range(len(PAYLOADS))])
def test_injection_through_magic_arguments_is_an_error_or_a_literal(tmp_path: Path, payload: str) -> None:
    """Every place a magic takes user text: an ExportError naming that cell, or the text as a string literal."""
    places = list(INJECTION_LINES)
    refused = []
    while True:
        try:
            p = plan(_injection_notebook(tmp_path / f"try{len(refused)}" / "nb.ipynb", places, payload))
            break
        except ExportError as exc:  # a clear refusal must name the cell; then check the other places
            culprit = [
                w for i, w in enumerate(places) if label(i + 1, f"inj{list(INJECTION_LINES).index(w)}") in str(exc)
            ]
            assert len(culprit) == 1, f"the error names no injection cell: {exc}"
            assert "syntax error" not in str(exc), f"the payload broke the generated code: {exc}"
            refused.append(culprit[0])
            places.remove(culprit[0])
    if not places:
        return
    baseline = _baseline(tmp_path, places)
    modules = [n for n in p.files if n.endswith("_pipeline.py")]
    assert modules == [n for n in baseline.files if n.endswith("_pipeline.py")]
    for name in modules:
        source = p.files[name]
        assert code_shape(source) == code_shape(baseline.files[name]), f"{name} has a different shape:\n{source}"
        assert source.count("MARKER") == sum(s.count("MARKER") for s in string_constants(source))
    constants = [c for n in modules for c in string_constants(p.files[n])]
    expected = {"snapshot -m": 1, "snapshot --name": 1, "features group": 1, "features -d": 1,
                "track --run-name": 1, "track --experiment": 2}  # fmt: skip
    assert constants.count(payload) == sum(expected[w] for w in places)


def test_injected_magic_arguments_stay_data_when_the_module_runs(tmp_path: Path) -> None:
    cells = [
        code(
            "import pandas as pd\ndf = pd.DataFrame({'id': [1, 2], 'ts': pd.Timestamp('2024-01-01'), 'v': 1.5})",
            "feature",
        )
    ]
    runnable = [p for p in PAYLOADS if "\r" not in p]
    for i, payload in enumerate(runnable):
        cells.append(code(f"%snapshot df --name inj{i} -m {shlex.quote(payload)}", "feature"))
    cells.append(code(f"%%features tx --keys id --event-time ts -d {shlex.quote(PAYLOADS[0] + ' {x} $x')}\ndf"))
    nb = write_notebook(tmp_path / "inj.ipynb", cells)
    with nbops.open(tmp_path / ".nbops") as store:
        result = export(nb, out=tmp_path / "out", store=store)
    home, work = tmp_path / "scratch" / ".nbops", tmp_path / "work"
    proc = run([PYTHON, str(result.out_dir / "feature_pipeline.py")], work, home)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert list(tmp_path.rglob("MARKER*")) == [] and not Path("MARKER").exists()
    with nbops.open(home) as store:
        assert [store.history(f"inj{i}")["message"][0] for i in range(len(runnable))] == runnable
        assert store.feature_groups()["description"].tolist() == [PAYLOADS[0] + " {x} $x"]


def test_cell_id_from_the_notebook_cannot_inject_code(tmp_path: Path) -> None:
    path = write_notebook(tmp_path / "ids.ipynb", [code("# nbops: feature\nx = 1", id="plain")])
    baseline = len(main_body(plan(path).files["feature_pipeline.py"]))
    raw = json.loads(path.read_text())
    raw["cells"][0]["id"] = "plain\n        __import__('os').system('touch MARKER')"  # no jsonschema in the way
    path.write_text(json.dumps(raw))
    try:
        p = plan(path)
    except ExportError as exc:
        assert "cell 1" in str(exc)
        return
    body = main_body(p.files["feature_pipeline.py"])
    assert len(body) == baseline and "__import__" not in "\n".join(ast.unparse(s) for s in body)


def test_snapshot_load_with_a_bad_name_is_an_export_error_naming_the_cell(tmp_path: Path) -> None:
    nb = write_notebook(
        tmp_path / "load.ipynb",
        [code("%snapshot --load \"x'); import os; ('\" --as y", "feature", id="load")],
    )
    with pytest.raises(ExportError, match=re.escape(label(0, "load"))):
        plan(nb)


# -- generated code that must still be Python ------------------------------------------------
@pytest.mark.parametrize(
    "source",
    ["from math import *\nv = sqrt(4)", "import asyncio\nawait asyncio.sleep(0)"],
    ids=["star", "await"],
)
def test_module_compiles_or_export_names_the_cell(tmp_path: Path, source: str) -> None:
    nb = write_notebook(tmp_path / "c.ipynb", [code("# nbops: feature\n" + source, id="cell")])
    try:
        module = plan(nb).files["feature_pipeline.py"]
    except ExportError as exc:
        assert label(0, "cell") in str(exc)
        return
    compile(module, "feature_pipeline.py", "exec")


def test_logging_calls_are_not_dropped_as_display(tmp_path: Path) -> None:
    nb = write_notebook(
        tmp_path / "log.ipynb",
        [
            code("import logging\nlog = logging.getLogger('fraud')"),
            code("# nbops: feature\nlog.info('starting')"),
        ],
    )
    assert "log.info('starting')" in plan(nb).files["feature_pipeline.py"]


def test_pip_option_values_are_not_requirements(tmp_path: Path) -> None:
    nb = write_notebook(
        tmp_path / "pipopts.ipynb",
        [
            code("!pip install -r requirements.txt\n%pip install --index-url https://pypi.org/simple pandas"),
            code("# nbops: feature\nx = 1"),
        ],
    )
    try:
        requirements = plan(nb).manifest["requirements"]
    except ExportError:
        return  # refusing -r with a clear message is fine too
    assert "requirements.txt" not in requirements and "https://pypi.org/simple" not in requirements
    assert "pandas" in requirements


# -- versions ------------------------------------------------------------------------------------
def test_versions_unchanged_export_rewrites_nothing_and_a_change_bumps(tmp_path: Path, store: Store) -> None:
    nb = write_notebook(tmp_path / "ver.ipynb", [code("import math"), code("# nbops: feature\nx = math.pi", id="f")])
    original = nb.read_bytes()
    first = export(nb, out=tmp_path / "out", store=store)
    assert (first.version, first.unchanged) == (1, False) and sorted(first.written) == sorted(first.files)
    mtimes = {p.name: p.stat().st_mtime_ns for p in first.out_dir.iterdir()}
    again = export(nb, out=tmp_path / "out", store=store)
    assert (again.version, again.unchanged, again.written) == (1, True, [])
    assert {p.name: p.stat().st_mtime_ns for p in again.out_dir.iterdir()} == mtimes
    assert "unchanged, nothing rewritten" in again.summary()
    assert nb.read_bytes() == original
    raw = nbformat.read(nb, as_version=4)
    raw.cells[1].source = "# nbops: feature\nx = math.pi * 2"
    nbformat.write(raw, nb)
    changed_bytes = nb.read_bytes()
    second = export(nb, out=tmp_path / "out", store=store)
    assert (second.version, second.unchanged) == (2, False)
    assert "feature_pipeline.py" in second.written and "ver@2" in (second.out_dir / "feature_pipeline.py").read_text()
    assert json.loads((second.out_dir / "manifest.json").read_text())["version"] == 2
    assert nb.read_bytes() == changed_bytes
    assert history(str(nb), store=store)["version"].tolist() == [1, 2]


def test_same_notebook_by_relative_or_absolute_path_is_the_same_version(
    tmp_path: Path, store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    nb = write_notebook(tmp_path / "paths.ipynb", [code("# nbops: feature\nx = 1")])
    monkeypatch.chdir(tmp_path)
    first = export("paths.ipynb", out=tmp_path / "out", store=store)
    again = export(nb.resolve(), out=tmp_path / "out", store=store)
    assert (again.version, again.unchanged) == (first.version, True)


# -- command line, nbconvert, airflow, %export --------------------------------------------------
def test_cli_export_writes_the_files_and_history_lists_versions(tmp_path: Path) -> None:
    nb = write_notebook(tmp_path / "tutorial.ipynb", TUTORIAL)
    original = nb.read_bytes()
    home = tmp_path / ".nbops"
    proc = run([str(BIN / "nbops"), "export", str(nb), "--out", str(tmp_path / "out")], tmp_path, home)
    assert proc.returncode == 0, proc.stderr
    assert "tutorial@1" in proc.stdout
    out = tmp_path / "out" / "tutorial"
    assert sorted(p.name for p in out.iterdir()) == [
        "feature_pipeline.py",
        "manifest.json",
        "test_pipelines.py",
    ]
    ast.parse((out / "feature_pipeline.py").read_text())
    raw = nbformat.read(nb, as_version=4)
    raw.cells[4].source = "THRESHOLD = 0.7"
    nbformat.write(raw, nb)
    with nbops.open(home) as store:
        assert export(nb, out=tmp_path / "out", store=store).version == 2
    changed = nb.read_bytes()
    proc = run([str(BIN / "nbops"), "export", "--history", str(nb)], tmp_path, home)
    assert proc.returncode == 0, proc.stderr
    versions = [line.split()[0] for line in proc.stdout.splitlines()[1:]]
    assert versions == ["1", "2"] and str(out) in proc.stdout
    assert nb.read_bytes() == changed and changed != original


def test_cli_bad_notebook_exits_2_naming_the_cell_without_traceback(tmp_path: Path) -> None:
    nb = write_notebook(tmp_path / "bad.ipynb", [code("import math"), code("# nbops: feature\nx = (", id="oops")])
    original = nb.read_bytes()
    proc = run(
        [str(BIN / "nbops"), "export", str(nb), "--out", str(tmp_path / "out")],
        tmp_path,
        tmp_path / ".nbops",
    )
    assert proc.returncode == 2
    assert "cannot export" in proc.stderr and label(1, "oops") in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "out").exists() and nb.read_bytes() == original


def test_cli_unreadable_notebook_exits_2_without_traceback(tmp_path: Path) -> None:
    nb = tmp_path / "notjson.ipynb"
    nb.write_text("this is not a notebook")
    proc = run([str(BIN / "nbops"), "export", str(nb)], tmp_path, tmp_path / ".nbops")
    assert proc.returncode == 2 and "cannot export" in proc.stderr and "Traceback" not in proc.stderr


def test_nbconvert_exporter_writes_modules_and_manifest(tmp_path: Path) -> None:
    nb = write_notebook(tmp_path / "tutorial.ipynb", TUTORIAL)
    original = nb.read_bytes()
    out = tmp_path / "D"
    proc = run([str(BIN / "jupyter"), "nbconvert", "--to", "nbops", str(nb), "--output-dir", str(out)], tmp_path,
               tmp_path / ".nbops")  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert sorted(p.name for p in (out / "tutorial").iterdir()) == [
        "feature_pipeline.py",
        "test_pipelines.py",
    ]
    module = (out / "tutorial" / "feature_pipeline.py").read_text()
    assert re.findall(r"^\s*# %% cell (\S+)$", module, flags=re.MULTILINE) == TUTORIAL_FEATURE_CELLS
    manifest = json.loads((out / "tutorial.manifest.json").read_text())
    assert manifest["pipeline"] == "tutorial" and manifest["stages"][0]["module"] == "feature_pipeline.py"
    assert manifest["requirements"]["scikit-learn"] == "1.2"
    assert nb.read_bytes() == original


def test_airflow_target_writes_a_dag_naming_the_three_tasks_in_order(tmp_path: Path) -> None:
    nb = write_notebook(
        tmp_path / "fraud.ipynb",
        [
            code("# nbops: feature\nnbops_store.snapshot(__import__('pandas').DataFrame({'a': [1]}), 'raw')"),
            code("# nbops: training\nmodel = nbops_store.load('raw')"),
            code("# nbops: inference\nscores = nbops_store.load('raw')"),
        ],
    )
    dag = plan(nb, target="airflow").files["fraud_dag.py"]
    tree = ast.parse(dag)
    tasks = [
        (kw.value.value, ast.literal_eval(next(k.value for k in n.value.keywords if k.arg == "op_args")))
        for n in ast.walk(tree)
        if isinstance(n, ast.Assign) and isinstance(n.value, ast.Call) and ast.unparse(n.value.func) == "PythonOperator"
        for kw in n.value.keywords
        if kw.arg == "task_id"
    ]
    assert tasks == [
        ("feature", ["feature_pipeline.py", []]),
        ("training", ["training_pipeline.py", []]),
        ("inference", ["inference_pipeline.py", []]),
    ]
    assert "feature >> training >> inference" in dag
    assert "BashOperator" not in dag and "subprocess.run(argv, check=True)" in dag  # arguments, no shell
    with pytest.raises(ExportError, match="unknown target 'cron'"):
        plan(nb, target="cron")


@pytest.fixture
def shell(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[InteractiveShell]:
    with nbops_shell(tmp_path / ".nbops", monkeypatch) as ip:
        yield ip


def test_export_magic_exports_the_given_notebook(
    shell: InteractiveShell, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    nb = write_notebook(tmp_path / "magicnb.ipynb", [code("import math"), code("# nbops: feature\nx = math.e")])
    original = nb.read_bytes()
    shell.run_line_magic("export", f"{nb} --out {tmp_path / 'D'}")
    assert "magicnb@1" in capsys.readouterr().out
    assert (tmp_path / "D" / "magicnb" / "feature_pipeline.py").is_file()
    assert (tmp_path / "D" / "magicnb" / "manifest.json").is_file()
    with nbops.open(tmp_path / ".nbops") as store:
        assert history("magicnb", store=store)["version"].tolist() == [1]
    assert nb.read_bytes() == original


def test_export_magic_without_a_path_in_a_plain_shell_says_to_pass_it(
    shell: InteractiveShell,
) -> None:
    with pytest.raises(UsageError, match=r"pass it: %export path/to/notebook.ipynb"):
        shell.run_line_magic("export", "")


def test_export_magic_reports_export_errors_as_usage_errors(shell: InteractiveShell, tmp_path: Path) -> None:
    nb = write_notebook(tmp_path / "bad.ipynb", [code("%run other.py", id="sh")])
    with pytest.raises(UsageError, match=re.escape(f"cannot export: {label(0, 'sh')}: %run cannot be exported")):
        shell.run_line_magic("export", str(nb))
