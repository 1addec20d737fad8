"""Export emits code, never text pasted into code, and writes only inside ``OUT``.

Text from a notebook's file name, its metadata, cell ids, the parameters cell
and the strings of its cells reaches a generated file only as a literal:
the modules compile, ``python feature_pipeline.py --help`` (a real
subprocess) runs nothing injected (a payload that would create the file
``PWNED``), and the values arrive as data.  ``%%writefile`` cannot replace a
generated file or shadow a module the pipelines import.  Export never writes
through a symbolic link: every case checks that a folder outside ``OUT``
stays byte for byte the same.
"""

from __future__ import annotations

import ast
import importlib.machinery
import json
import os
import re
import shlex
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import nbformat
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from nbformat.v4 import new_notebook

from helpers.notebooks import PYTHON, code, code_shape, label, scratch_env
from nbops.exporting import ExportError, export, history, plan
from nbops.exporting.render import VERSION_PLACEHOLDER
from nbops.store import Store

pytestmark = pytest.mark.usefixtures("no_tracking_server")

MARKER = "PWNED"
TOUCH = "__import__('pathlib').Path('PWNED').touch()"
#: Text that breaks code it is pasted into: quotes, triple quotes, backslashes, newlines, braces.
TEXTS = [
    "'",
    '"',
    "'''",
    '"""',
    "\\",
    "a\\",
    "\\n",
    "a\nb",
    "a\rb",
    "{{NBOPS_EXPORT_VERSION}}",
    "{{x}}",
    "{x}",
    "{" + TOUCH + "}",
    f"'); {TOUCH}; ('",
    f'"); {TOUCH}; ("',
    f"''' + {TOUCH} + '''",
    f'""" + {TOUCH} + """',
    f'"""\n{TOUCH}\n"""',
    f"\\\n{TOUCH}",
    f"\n{TOUCH}\n#",
    "# comment \\",
]


# -- helpers ------------------------------------------------------------------------------------
def write_notebook(path: Path, cells: list[Any], metadata: dict[str, Any] | None = None) -> Path:
    nb = new_notebook(cells=cells, metadata=metadata or {"kernelspec": {"name": "python3", "display_name": "Python 3"}})
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, path)
    return path


def run_module(module: Path, cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    cwd.mkdir(parents=True, exist_ok=True)
    return subprocess.run(
        [PYTHON, str(module), *args],
        cwd=cwd,
        env=scratch_env(cwd / ".nbops"),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def assert_not_pwned(*roots: Path) -> None:
    for root in roots:
        assert not list(root.rglob(MARKER)), f"an injected payload ran under {root}"
    assert not Path(MARKER).exists()


def assigned(source: str, name: str) -> Any:
    """The literal value a module assigns to ``name`` at top level."""
    for node in ast.parse(source).body:
        if isinstance(node, ast.Assign) and [ast.unparse(t) for t in node.targets] == [name]:
            return ast.literal_eval(node.value)
    raise AssertionError(f"no {name} = ... in the module")


def main_defaults(source: str) -> dict[str, Any]:
    main = next(n for n in ast.parse(source).body if isinstance(n, ast.FunctionDef) and n.name == "main")
    names = [a.arg for a in main.args.args]
    return dict(zip(names, [ast.literal_eval(d) for d in main.args.defaults], strict=True))


def python_files(files: dict[str, str]) -> dict[str, str]:
    return {name: text for name, text in files.items() if name.endswith(".py")}


def tree_state(root: Path) -> dict[str, Any]:
    """Every path under ``root``: a link's target, a file's bytes, or a folder."""
    state: dict[str, Any] = {}
    for path in sorted(root.rglob("*")):
        key = str(path.relative_to(root))
        if path.is_symlink():
            state[key] = ("link", os.readlink(path))
        elif path.is_file():
            state[key] = ("file", path.read_bytes())
        else:
            state[key] = ("dir",)
    return state


FEATURE = "# nbops: feature\nx = 1"


# -- the notebook's file name ----------------------------------------------------------------------
#: File names whose stem is a valid pipeline name, with the rest (after the last dot) as the payload:
#: no dot or slash can be in it, so the payload opens a file instead of touching one.
FILE_NAMES = [
    'fraud.x"""and open("PWNED","w")and"""',
    "fraud.x'''and open('PWNED','w')and'''",
    'fraud.x"""\nopen("PWNED","w")\n"""',
    "fraud.x\\",
    'fraud.x\\"""and open("PWNED","w")and"""',
    "fraud.{{NBOPS_EXPORT_VERSION}}",
    "fraud.{open('PWNED','w')}",
    "fraud.x\ropen('PWNED','w')#",
    "2fraud.x'''and open('PWNED','w')and'''",  # a name starting with a digit: refused, or exported safely
]


@pytest.mark.parametrize("name", FILE_NAMES, ids=[f"name{i}" for i in range(len(FILE_NAMES))])
def test_notebook_file_name_reaches_the_modules_only_as_data(tmp_path: Path, store: Store, name: str) -> None:
    nb = write_notebook(tmp_path / "nb" / name, [code(FEATURE, id="f")])
    try:
        result = export(nb, out=tmp_path / "out", store=store, target="airflow")
    except ExportError as exc:
        assert name.startswith("2"), exc  # only a name that cannot name a pipeline may be refused
        assert "name" in str(exc)
        return
    assert sorted(python_files(result.files)) == sorted(
        ["feature_pipeline.py", "test_pipelines.py", f"{result.stem}_dag.py"]
    )
    for file_name, text in python_files(result.files).items():
        compile(text, file_name, "exec")
    dag = ast.parse(result.files[f"{result.stem}_dag.py"])
    dag_ids = [ast.literal_eval(k.value) for k in ast.walk(dag) if isinstance(k, ast.keyword) and k.arg == "dag_id"]
    assert dag_ids == [result.stem]
    module = result.files["feature_pipeline.py"]
    about = ast.get_docstring(ast.parse(module), clean=False)
    assert about is not None and f"pipeline of {name}, exported" in about and f"Notebook: {name} (sha256" in about
    assert assigned(module, "PIPELINE") == f"{result.stem}@{result.version}"
    assert json.loads((result.out_dir / "manifest.json").read_text())["notebook"]["path"] == str(nb.resolve())
    proc = run_module(result.out_dir / "feature_pipeline.py", tmp_path / "work", "--help")
    assert proc.returncode == 0, proc.stderr
    proc = subprocess.run(  # the generated test module's own top level, without running its test
        [PYTHON, "-c", "import runpy, sys; runpy.run_path(sys.argv[1])", str(result.out_dir / "test_pipelines.py")],
        cwd=tmp_path / "work", capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert_not_pwned(tmp_path, tmp_path / "work")


@settings(max_examples=40, deadline=None)
@given(suffix=st.text(st.characters(exclude_characters="/.\x00", exclude_categories=("Cs",)), max_size=24))
def test_any_file_name_gives_modules_of_the_same_shape(suffix: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        baseline = plan(write_notebook(Path(tmp) / "a" / "fraud.ipynb", [code(FEATURE, id="f")]))
        path = Path(tmp) / "b" / f"fraud.{suffix}"
        p = plan(write_notebook(path, [code(FEATURE, id="f")]))
        files = p.files_at(7)
    module = files["feature_pipeline.py"]
    assert ast.get_docstring(ast.parse(module), clean=False).startswith(f"Feature pipeline of {path.name}, exported")
    assert assigned(module, "PIPELINE") == f"{p.stem}@7"
    assert code_shape(p.files["feature_pipeline.py"]) == code_shape(baseline.files["feature_pipeline.py"])
    assert code_shape(files["test_pipelines.py"]) == code_shape(baseline.files["test_pipelines.py"])


# -- parameters and strings -----------------------------------------------------------------------
PARAMS = {f"p{i}": text for i, text in enumerate(TEXTS)}
PARAMS |= {"nested": {"k'\"": [*TEXTS[:6], {"{x}": "{{NBOPS_EXPORT_VERSION}}"}]}, "flag": True, "n": 3, "ratio": 0.5}


def _parameters_cell() -> str:
    lines = [f"{name} = {value!r}" for name, value in PARAMS.items()]
    lines.append('tq = """a \'b\' \\\\ "c" {d}"""')  # a triple-quoted literal in the notebook's source
    return "\n".join(lines)


def test_parameters_and_strings_arrive_as_data(tmp_path: Path, store: Store) -> None:
    names = [*PARAMS, "tq"]
    cells = [
        code(_parameters_cell(), "parameters", id="params"),
        code(
            "%%writefile notes.txt\n{{NBOPS_EXPORT_VERSION}} {x} \"\"\" ''' \\\n",
            id="wf",
        ),
        code(
            "# nbops: feature\n"
            "import json\n"
            f"STRINGS = {TEXTS!r}\n"
            "PLACE = '{{NBOPS_EXPORT_VERSION}}'\n"
            f"with open('params.json', 'w') as f:\n"
            f"    json.dump([[{', '.join(names)}], STRINGS, PLACE], f)",
            id="f",
        ),
    ]
    nb = write_notebook(tmp_path / "params.ipynb", cells)
    result = export(nb, out=tmp_path / "out", store=store)
    expected = {**PARAMS, "tq": "a 'b' \\ \"c\" {d}"}
    module = result.files["feature_pipeline.py"]
    compile(module, "feature_pipeline.py", "exec")
    assert assigned(module, "PARAMETERS") == expected and main_defaults(module) == expected
    assert result.manifest["parameters"] == expected and result.manifest["version"] == 1
    assert (result.out_dir / "notes.txt").read_text() == "{{NBOPS_EXPORT_VERSION}} {x} \"\"\" ''' \\\n"

    proc = run_module(result.out_dir / "feature_pipeline.py", tmp_path / "help", "--help")
    assert proc.returncode == 0, proc.stderr
    assert "--p0 P0" in proc.stdout and "--nested NESTED" in proc.stdout
    assert_not_pwned(tmp_path)

    work = tmp_path / "work"
    proc = run_module(result.out_dir / "feature_pipeline.py", work, "--p1", '"); x = ("')
    assert proc.returncode == 0, proc.stderr[-3000:]
    values, strings, place = json.loads((work / "params.json").read_text())
    assert values == [expected[n] if n != "p1" else '"); x = ("' for n in names]
    assert strings == TEXTS and place == VERSION_PLACEHOLDER
    assert_not_pwned(tmp_path)


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("x = 1e999", "x: inf has no exact Python literal"),
        ("x = {1, 2}", "x must be a number, string, bool, None, list or dict (keys: strings or numbers), not set"),
        ("nbops_store = 1", "the name 'nbops_store' is taken by the generated module"),
        ("PIPELINE = 'other@1'", "the name 'PIPELINE' is taken by the generated module"),
        ("help = 1", "the name 'help' is taken by the generated module"),
    ],
    ids=["inf", "set", "nbops_store", "PIPELINE", "help"],
)
def test_parameters_that_cannot_arrive_as_themselves_are_refused(tmp_path: Path, source: str, message: str) -> None:
    nb = write_notebook(tmp_path / "p.ipynb", [code(source, "parameters", id="params"), code(FEATURE)])
    with pytest.raises(ExportError, match=f"^{re.escape(label(0, 'params'))} \\(parameters\\): ") as info:
        plan(nb)
    assert message in str(info.value)


@settings(max_examples=60, deadline=None)
@given(
    value=st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
        max_leaves=8,
    )
)
def test_any_parameter_value_arrives_as_itself(value: Any) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        nb = write_notebook(Path(tmp) / "v.ipynb", [code(f"v = {value!r}", "parameters"), code(FEATURE + "\nused = v")])
        p = plan(nb)
    module = p.files_at(2)["feature_pipeline.py"]
    assert assigned(module, "PARAMETERS") == {"v": value} and main_defaults(module) == {"v": value}
    assert p.manifest_at(2)["parameters"] == json.loads(json.dumps({"v": value}))


@pytest.mark.parametrize("line", ["%pip install numpy\x1b\x00", '!pip install "a\tb"'], ids=["pip", "shell"])
def test_magic_text_repeated_in_a_comment_cannot_end_it(tmp_path: Path, line: str) -> None:
    nb = write_notebook(tmp_path / "c.ipynb", [code(f"{line}\nx = 1", "feature", id="f")])
    module = plan(nb).files["feature_pipeline.py"]
    compile(module, "feature_pipeline.py", "exec")
    assert all(ch.isprintable() or ch == "\n" for ch in module)  # the text is shown as a literal
    [comment] = [text for text in module.splitlines() if "-> manifest requirements" in text]
    assert comment.strip().startswith("pass  # ")


# -- notebook metadata and cell ids ---------------------------------------------------------------
def test_metadata_and_cell_ids_never_reach_the_code(tmp_path: Path, store: Store) -> None:
    payload = f'"""\n{TOUCH}\n""" {{{{NBOPS_EXPORT_VERSION}}}} {{x}} \\'
    path = write_notebook(
        tmp_path / "meta.ipynb",
        [code("n = 2", "parameters", payload, id="params"), code("y = n + 1", "feature", payload, id="f")],
        metadata={
            "kernelspec": {"name": "python3", "display_name": payload, "language": payload},
            "title": payload,
            "authors": [{"name": payload}],
            "nbops": {"stage": payload, "pipeline": payload},
        },
    )
    raw = json.loads(path.read_text())
    ids = [f"params\n        {TOUCH}", 'f"); ' + TOUCH + " #"]
    for cell, cell_id in zip(raw["cells"], ids, strict=True):
        cell["id"] = cell_id  # written as JSON: no schema check in the way
        cell["metadata"][payload] = payload
    path.write_text(json.dumps(raw))
    result = export(path, out=tmp_path / "out", store=store)
    for name, text in result.files.items():
        if name.endswith(".py"):
            compile(text, name, "exec")
        assert TOUCH not in text and "{x}" not in text, f"{name} holds text from the notebook's metadata"
    assert [c["id"] for c in result.manifest["stages"][0]["cells"]] == ["cell2"]  # a plain id in their place
    assert main_defaults(result.files["feature_pipeline.py"]) == {"n": 2}
    proc = run_module(result.out_dir / "feature_pipeline.py", tmp_path / "work", "--help")
    assert proc.returncode == 0, proc.stderr
    assert_not_pwned(tmp_path)


@pytest.mark.parametrize("tags", ["feature", [1], {"feature": True}], ids=["str", "int", "dict"])
def test_tags_that_are_not_a_list_of_strings_are_refused(tmp_path: Path, tags: Any) -> None:
    path = write_notebook(tmp_path / "t.ipynb", [code(FEATURE, id="f")])
    raw = json.loads(path.read_text())
    raw["cells"][0]["metadata"]["tags"] = tags
    path.write_text(json.dumps(raw))
    with pytest.raises(
        ExportError, match=f"^{re.escape(label(0, 'f'))}: its metadata 'tags' must be a list of strings$"
    ):
        plan(path)


# -- %%writefile ----------------------------------------------------------------------------------
def _writefile_notebook(path: Path, name: str) -> Path:
    return write_notebook(
        path,
        [
            code("import pandas as pd", id="imports"),
            code(f"%%writefile {shlex.quote(name)}\nVALUE = 1\n", id="wf"),
            code("# nbops: feature\ndf = pd.DataFrame({'a': [1]})", id="f"),
        ],
    )


SHADOWING = [
    "nbops.py", "nbops/__init__.py", "pandas.py", "sklearn.py", "mlflow.py", "numpy/__init__.py", "json.py", "os.py",
    "pytest.py", "sitecustomize.py", "pandas" + importlib.machinery.EXTENSION_SUFFIXES[0],
]  # fmt: skip
GENERATED = [
    "feature_pipeline.py", "Feature_Pipeline.py", "training_pipeline.py", "inference_pipeline.py", "manifest.json",
    "test_pipelines.py", "wf_dag.py", "manifest.json/x.txt", "__pycache__/feature_pipeline.cpython-311.pyc",
]  # fmt: skip
OUTSIDE = ["/tmp/x.py", "../x.py", "sub/../../x.py", "a/../b.py", "..", "a\\b.py", "C:x.py", "x\x1by.py"]


@pytest.mark.parametrize("name", SHADOWING)
def test_writefile_shadowing_an_imported_module_is_refused(tmp_path: Path, name: str) -> None:
    nb = _writefile_notebook(tmp_path / "wf.ipynb", name)
    module = name.split("/")[0].split(".")[0]
    expected = f"{label(1, 'wf')}: %%writefile {name!r} would shadow the module {module!r} that the pipelines import"
    with pytest.raises(ExportError, match=f"^{re.escape(expected)}"):
        plan(nb)


@pytest.mark.parametrize("name", GENERATED)
def test_writefile_over_a_generated_file_is_refused(tmp_path: Path, name: str) -> None:
    nb = _writefile_notebook(tmp_path / "wf.ipynb", name)
    pattern = f"^{re.escape(label(1, 'wf'))}: %%writefile {re.escape(repr(name))} would overwrite the generated .*; rename it$"
    with pytest.raises(ExportError, match=pattern):
        plan(nb)


@pytest.mark.parametrize("name", OUTSIDE)
def test_writefile_outside_the_export_folder_is_refused(tmp_path: Path, name: str) -> None:
    nb = _writefile_notebook(tmp_path / "wf.ipynb", name)
    with pytest.raises(ExportError, match=f"^{re.escape(label(1, 'wf'))}: %%writefile "):
        plan(nb)


@pytest.mark.parametrize("name", ["helpers.py", "sub/helpers.py", "data.csv", "pandas_helpers.py", "notes"])
def test_writefile_of_an_own_file_is_written(tmp_path: Path, name: str) -> None:
    assert plan(_writefile_notebook(tmp_path / "wf.ipynb", name)).files[name] == "VALUE = 1\n"


def test_refused_writefile_writes_and_records_nothing(tmp_path: Path, store: Store) -> None:
    nb = _writefile_notebook(tmp_path / "wf.ipynb", "pandas.py")
    with pytest.raises(ExportError, match="would shadow the module 'pandas'"):
        export(nb, out=tmp_path / "out", store=store)
    assert not (tmp_path / "out").exists() and history("wf", store=store).empty


# -- symbolic links: nothing is written outside OUT -----------------------------------------------
LINKED_NOTEBOOK = [
    code("%%writefile helpers.py\nTWO = 2\n", id="wf"),
    code("%%writefile sub/util.py\nTHREE = 3\n", id="wf2"),
    code("# nbops: feature\nimport helpers\nx = helpers.TWO", id="f"),
]


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """A folder export must never touch, with a file in it."""
    folder = tmp_path / "outside"
    folder.mkdir()
    (folder / "victim.py").write_text("# not yours\n")
    return folder


def _state(tmp_path: Path) -> dict[str, Any]:
    """Everything under tmp_path except OUT's own contents and the store."""
    return {k: v for k, v in tree_state(tmp_path).items() if not k.startswith(("out/", ".nbops"))}


def test_output_folder_that_is_a_link_is_refused(tmp_path: Path, store: Store, outside: Path) -> None:
    nb = write_notebook(tmp_path / "linked.ipynb", LINKED_NOTEBOOK)
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "linked").symlink_to(outside, target_is_directory=True)
    before = _state(tmp_path)
    with pytest.raises(ExportError, match=r"/out/linked is a symbolic link; export writes only real files"):
        export(nb, out=tmp_path / "out", store=store)
    assert _state(tmp_path) == before
    assert history("linked", store=store).empty  # refused before the catalog records a version


@pytest.mark.parametrize(
    "planted", ["feature_pipeline.py", "manifest.json", "test_pipelines.py", "helpers.py", "sub", "sub/util.py"]
)
def test_link_planted_where_export_writes_is_refused(tmp_path: Path, store: Store, outside: Path, planted: str) -> None:
    nb = write_notebook(tmp_path / "linked.ipynb", LINKED_NOTEBOOK)
    first = export(nb, out=tmp_path / "out", store=store)
    target = first.out_dir / planted
    if target.is_dir():
        for child in target.iterdir():
            child.unlink()
        target.rmdir()
        target.symlink_to(outside, target_is_directory=True)
    else:
        target.unlink()
        target.symlink_to(outside / "victim.py")
    raw = nbformat.read(nb, as_version=4)
    raw.cells[2].source += "\ny = 2"  # a new version: every module is written again
    nbformat.write(raw, nb)
    before = _state(tmp_path)
    with pytest.raises(ExportError, match=f"{planted} is a symbolic link; export writes only real files"):
        export(nb, out=tmp_path / "out", store=store)
    assert _state(tmp_path) == before and (outside / "victim.py").read_text() == "# not yours\n"
    assert history("linked", store=store)["version"].tolist() == [1]


def test_dangling_link_is_refused_and_its_target_never_created(tmp_path: Path, store: Store, outside: Path) -> None:
    nb = write_notebook(tmp_path / "linked.ipynb", LINKED_NOTEBOOK)
    (tmp_path / "out" / "linked").mkdir(parents=True)
    (tmp_path / "out" / "linked" / "helpers.py").symlink_to(outside / "new.py")
    before = _state(tmp_path)
    with pytest.raises(ExportError, match="helpers.py is a symbolic link"):
        export(nb, out=tmp_path / "out", store=store)
    assert _state(tmp_path) == before and not (outside / "new.py").exists()


def test_links_at_temporary_names_are_not_followed(tmp_path: Path, store: Store, outside: Path) -> None:
    """Links planted at the names a temporary file could take are left alone: temporary files are new files."""
    nb = write_notebook(tmp_path / "linked.ipynb", LINKED_NOTEBOOK)
    folder = tmp_path / "out" / "linked"
    (folder / "sub").mkdir(parents=True)
    for name in ["feature_pipeline.py", "manifest.json", "test_pipelines.py", "helpers.py", "sub/util.py"]:
        parent, base = (folder / name).parent, (folder / name).name
        (parent / f".{base}.{os.getpid()}.tmp").symlink_to(outside / "victim.py")
    before = _state(tmp_path)
    result = export(nb, out=tmp_path / "out", store=store)
    assert sorted(result.written) == sorted(result.files)
    assert _state(tmp_path) == before and (outside / "victim.py").read_text() == "# not yours\n"
    assert (folder / "helpers.py").read_text() == "TWO = 2\n" and not (folder / "helpers.py").is_symlink()
    assert not [p for p in folder.rglob("*.tmp") if not p.is_symlink()]  # no temporary file left


def test_a_folder_where_a_file_goes_is_refused(tmp_path: Path, store: Store) -> None:
    nb = write_notebook(tmp_path / "linked.ipynb", LINKED_NOTEBOOK)
    (tmp_path / "out" / "linked" / "manifest.json").mkdir(parents=True)
    with pytest.raises(ExportError, match="manifest.json exists and is not a file; export writes a file there"):
        export(nb, out=tmp_path / "out", store=store)
    assert history("linked", store=store).empty
