"""Generated files: stage modules, the manifest's requirements, the test, the Airflow DAG.

Modules are plain Python that read like code a person wrote: the cells'
own lines (comments kept) under ``# %% cell <id>`` markers, inside
``main(**params)`` whose parameters come from the cell tagged
``parameters``, and a ``__main__`` entry whose options are those parameters.

Text from the notebook (its file name, the pipeline name, parameter values)
reaches a generated file only as a Python literal made by :func:`literal` or
:func:`docstring`, each checked to read back as the same value; nothing is
substituted into the files after they are rendered.
"""

from __future__ import annotations

import ast
import functools
import importlib.metadata
import json
import re
import sys
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from nbops.errors import ExportError
from nbops.exporting.cells import Cell, StoreRead
from nbops.exporting.translate import _indent

MODULES = {"feature": "feature_pipeline.py", "training": "training_pipeline.py", "inference": "inference_pipeline.py"}
#: Stands for the export version until the catalog assigns it (in the digest's input only).
VERSION_PLACEHOLDER = "{{NBOPS_EXPORT_VERSION}}"
#: Names every module binds itself: a parameter of that name would replace them inside main().
RESERVED_PARAMETERS = frozenset({"nbops", "_nbops", "nbops_store", "PIPELINE", "PARAMETERS", "help"})
_PLAIN_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")


def literal(value: Any) -> str:
    """``repr(value)`` as source, checked to read back as ``value`` (else an ExportError)."""
    try:
        text = repr(value)
    except (ValueError, RecursionError):  # an int past the digit limit, a list nested too deep
        raise ExportError(f"a {type(value).__name__} too large to write as a Python literal") from None
    try:
        back = ast.literal_eval(text)
        same = back == value and type(back) is type(value)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        same = False  # e.g. inf, whose repr is a name, not a literal
    if not same:
        raise ExportError(f"{text[:80]} has no exact Python literal; use a number, string, bool, None, list or dict")
    return text


def docstring(text: str) -> str:
    """A string literal holding exactly ``text``: triple-quoted when that is plain, else ``repr``."""
    plain = all(ch == "\n" or (ch.isprintable() and ch not in '"\\') for ch in text)
    source = f'"""{text}"""' if plain else repr(text)
    if ast.literal_eval(source) != text:  # cannot happen: both forms are exact; never write a guess
        raise ExportError(f"cannot write {text[:80]!r} as a docstring")
    return source


def parameters(cell: Cell | None) -> dict[str, Any]:
    """``name = literal`` assignments of the parameters cell, in order."""
    if cell is None:
        return {}
    params: dict[str, Any] = {}
    try:
        tree = ast.parse(cell.code)
    except SyntaxError as exc:
        raise ExportError(f"{cell.label} (parameters): syntax error: {exc.msg}") from None
    for node in tree.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            target, value = node.targets[0].id, node.value
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and node.value is not None:
            target, value = node.target.id, node.value
        else:
            raise ExportError(f"{cell.label} (parameters): only `name = value` lines belong in the parameters cell")
        if target in RESERVED_PARAMETERS:
            raise ExportError(
                f"{cell.label} (parameters): the name {target!r} is taken by the generated module "
                f"({', '.join(sorted(RESERVED_PARAMETERS))}); rename the parameter"
            )
        try:
            params[target] = ast.literal_eval(value)
        except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
            raise ExportError(
                f"{cell.label} (parameters): {target} must be a literal (number, string, bool, None, list, dict)"
            ) from None
        try:
            literal(params[target])
            json.dumps(params[target])  # the manifest lists the parameters
        except ExportError as exc:
            raise ExportError(f"{cell.label} (parameters): {target}: {exc}") from None
        except (TypeError, ValueError):
            raise ExportError(
                f"{cell.label} (parameters): {target} must be a number, string, bool, None, list or dict "
                f"(keys: strings or numbers), not {type(params[target]).__name__}"
            ) from None
    return params


def module(
    stem: str,
    stage: str,
    cells: Sequence[Cell],
    params: Mapping[str, Any],
    notebook: str,
    notebook_sha256: str,
    nbops_version: str,
    version: int | None = None,
    reads: Sequence[StoreRead] = (),
    latest: bool = False,
) -> tuple[str, list[tuple[str, int, int]]]:
    """The source of one stage module, and each cell's (id, first line, last line) in it.

    ``params`` are the parameters this stage uses (its ``main()`` signature and
    ``--help``); ``reads`` the values earlier stages persisted, read from the
    store before the first cell (``latest``: without the notebook's version pins).
    ``version`` is the export version; ``None`` renders :data:`VERSION_PLACEHOLDER`
    in its place (what the export's digest is computed on).
    """
    shown = VERSION_PLACEHOLDER if version is None else str(version)
    for cell in cells:
        if not _PLAIN_ID.fullmatch(cell.id):  # ids go into comments: only plain ones ever do
            raise ExportError(f"cell {cell.index + 1}: its id is not plain (letters, digits, '_' and '-')")
    signature = ", ".join(f"{name}={literal(value)}" for name, value in params.items())
    about = "\n".join(
        [
            f"{stage.capitalize()} pipeline of {notebook}, exported by nbops {nbops_version}.",
            "",
            f"Notebook: {notebook} (sha256 {notebook_sha256[:16]})",
            f"Export: {stem}@{shown}, stage {stage}; cells: {', '.join(c.id for c in cells)}",
            "",
            "Generated: edit the notebook and export it again rather than editing this file.",
            f"Run: python {MODULES[stage]} --help",
            "",
        ]
    )
    cells, star_imports = _hoist_star_imports(cells)
    header = [
        docstring(about),
        "",
        "import argparse",
        "",
        "import nbops",
        "import nbops as _nbops  # the cells may import nbops themselves, making `nbops` local to main()",
        *(
            ["from IPython.display import display  # as in the notebook (prints outside it)"]
            if _uses_display(cells)
            else []
        ),
        "",
        f"PIPELINE = {literal(stem + '@' + shown)}",
        f"PARAMETERS = {literal(dict(params))}",
        "",
        "",
        f"def main({signature}):",
        f'    """Run the {stage} stage; parameters default to the notebook\'s."""',
        "    nbops_store = _nbops.open()",
        f"    with _nbops.pipeline(PIPELINE, stage={literal(stage)}):",
    ]
    lines = "\n".join(header).split("\n")  # a docstring may span lines
    ranges = []
    body_indent = " " * 8
    if reads:
        lines.append(f"{body_indent}# %% from other stages: their imports again, what they stored from the store")
        for read in sorted(reads, key=lambda r: not r.is_import):
            lines.append(f"{body_indent}{read.statement(latest)}  # {read.what}")
        lines.append("")
    for cell in cells:
        lines.append(f"{body_indent}# %% cell {cell.id}")
        start = len(lines) + 1
        code = cell.code.strip("\n")
        lines.extend((_indent(code, body_indent) if code.strip() else body_indent + "pass").split("\n"))
        ranges.append((cell.id, start, len(lines)))
        lines.append("")
    if not cells and not reads:
        lines.append(body_indent + "pass")
    lines += ["", "", _cli(stage, params, star_imports), ""]
    return "\n".join(lines), ranges


def _cli(stage: str, params: Mapping[str, Any], star_imports: Sequence[str] = ()) -> str:
    out = [
        'if __name__ == "__main__":',
        f"    parser = argparse.ArgumentParser(description={literal(f'{stage} pipeline (parameters from the notebook)')})",
    ]
    for name, value in params.items():
        flag, dest, default = literal("--" + name.replace("_", "-")), literal(name), literal(value)
        if isinstance(value, bool):
            out.append(
                f"    parser.add_argument({flag}, dest={dest}, type=lambda s: s.lower() in ('1', 'true', 'yes'), "
                f"default={default}, help='bool (true/false); default: %(default)s')"
            )
        elif isinstance(value, (int, float, str)):
            kind = type(value).__name__
            out.append(
                f"    parser.add_argument({flag}, dest={dest}, type={kind}, default={default}, "
                f"help={literal(kind + '; default: %(default)s')})"
            )
        else:
            kind = "null" if value is None else type(value).__name__
            out.append(
                f"    parser.add_argument({flag}, dest={dest}, type=__import__('json').loads, default={default}, "
                f"help={literal('JSON (' + kind + '); default: %(default)s')})"
            )
    if star_imports:
        # `from m import *` is allowed only at module level; here, `--help` answers without `m` installed.
        out.append("    arguments = parser.parse_args()")
        out += [f"    {statement}" for statement in star_imports]
        out.append("    main(**vars(arguments))")
    else:
        out.append("    main(**vars(parser.parse_args()))")
    return "\n".join(out)


def _uses_display(cells: Sequence[Cell]) -> bool:
    """Does a cell call IPython's ``display`` where export keeps it (inside an expression or a function)?"""
    for cell in cells:
        try:
            tree = ast.parse(cell.code)
        except SyntaxError:
            continue
        if any(isinstance(n, ast.Name) and n.id == "display" for n in ast.walk(tree)):
            return True
    return False


def _hoist_star_imports(cells: Sequence[Cell]) -> tuple[list[Cell], list[str]]:
    """Cells without their top-level ``from m import *`` lines, and those imports for the module's top."""
    import dataclasses

    hoisted: list[str] = []
    out = []
    for cell in cells:
        if not cell.star_imports:
            out.append(cell)
            continue
        try:
            tree = ast.parse(cell.code)
        except SyntaxError:
            out.append(cell)
            continue
        lines = cell.code.split("\n")
        for node in tree.body:
            if isinstance(node, ast.ImportFrom) and any(a.name == "*" for a in node.names) and node.col_offset == 0:
                statement = ast.unparse(node)
                if statement not in hoisted:
                    hoisted.append(statement)
                end = node.end_lineno or node.lineno
                lines[node.lineno - 1 : end] = [f"pass  # {statement}: run before main()"] + [""] * (end - node.lineno)
        out.append(dataclasses.replace(cell, code="\n".join(lines)))
    return out, hoisted


def imported_modules(cells: Iterable[Cell]) -> set[str]:
    """The top-level names of the modules the cells import (absolute imports; cells that do not parse are skipped)."""
    names: set[str] = set()
    for cell in cells:
        try:
            tree = ast.parse(cell.code)
        except SyntaxError:
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names.add(node.module.split(".")[0])
    return names


def requirements(modules: Iterable[str], pip: Iterable[str]) -> dict[str, str]:
    """Distribution -> version for every imported module and every ``%pip install``, from this environment."""
    found: dict[str, str] = {"nbops": importlib.metadata.version("nbops") if _installed("nbops") else ""}
    mapping = _distributions()
    for name in sorted(set(modules)):
        if name in sys.stdlib_module_names:
            continue
        for dist in mapping.get(name, []):
            found[dist] = importlib.metadata.version(dist)
    for spec in pip:
        name = spec.split("==")[0].split(">=")[0].split("<")[0].split("[")[0].strip()
        if "==" in spec:
            found[name] = spec.split("==", 1)[1]
        else:
            found[name] = importlib.metadata.version(name) if _installed(name) else ""
    return dict(sorted(found.items()))


@functools.lru_cache(maxsize=1)
def _distributions() -> Mapping[str, list[str]]:
    """Module -> distributions of this environment (reading every package's metadata: once per process)."""
    return importlib.metadata.packages_distributions()


def _installed(dist: str) -> bool:
    try:
        importlib.metadata.version(dist)
        return True
    except importlib.metadata.PackageNotFoundError:
        return False


def test_module(stem: str, stages: Sequence[str]) -> str:
    """The generated ``test_pipelines.py``: one pytest test that runs each stage module in order on a scratch store."""
    modules = [MODULES[s] for s in stages]
    about = docstring(f"Runs each stage of {stem} in a fresh process against a scratch store (pytest).")
    return f"""{about}

import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
STAGES = {literal(modules)}


def test_stages_run_in_order_on_a_scratch_store(tmp_path):
    env = {{**os.environ, "NBOPS_HOME": str(tmp_path / ".nbops")}}
    env.pop("MLFLOW_TRACKING_URI", None)
    env.pop("NBOPS_MLFLOW_TRACKING_URI", None)
    for module in STAGES:
        result = subprocess.run(
            [sys.executable, str(HERE / module)], cwd=tmp_path, env=env, capture_output=True, text=True
        )
        assert result.returncode == 0, f"{{module}} failed:\\n{{result.stderr[-4000:]}}"
"""


def airflow_dag(stem: str, stages: Mapping[str, Mapping[str, Any]]) -> str:
    """The generated Airflow DAG (``--target airflow``): one task per stage module, chained in order.

    ``stages`` maps each stage to its parameters (name -> the notebook's value). Each task runs its
    module in a child process of the pipelines' interpreter (``NBOPS_PIPELINE_PYTHON``, else Airflow's
    own), passing the run's Airflow params as the module's options: no shell is involved, so a
    parameter's value is never read as a command.
    """
    parameters: dict[str, Any] = {}
    for stage_params in stages.values():
        parameters.update(stage_params)
    tasks = "\n".join(
        f"    {s} = PythonOperator(task_id={literal(s)}, python_callable=run_module, "
        f"op_args=[{literal(MODULES[s])}, {literal(list(p))}])"
        for s, p in stages.items()
    )
    chain = " >> ".join(stages)
    about = docstring(
        f"Airflow DAG running the {stem} pipelines: {' -> '.join(stages)} (generated by nbops).\n\n"
        "Each task runs its module with the interpreter named by NBOPS_PIPELINE_PYTHON (the one with the\n"
        "pipelines' packages, nbops among them), else Airflow's own. The notebook's parameters are the\n"
        "DAG's params (override them with a run's conf); retries follow Airflow's own settings\n"
        "(default_task_retries). The store is found as the modules find it: NBOPS_HOME, ..."
    )
    return f"""{about}

import json
import os
import subprocess
import sys
from pathlib import Path

import pendulum
from airflow.providers.standard.operators.python import PythonOperator
from airflow.sdk import DAG, Param, get_current_context

HERE = Path(__file__).resolve().parent
#: The notebook's parameters and their values there: the DAG's params.
PARAMETERS = {literal(parameters)}
#: Names the interpreter that runs the modules.
PYTHON_ENV = "NBOPS_PIPELINE_PYTHON"


def _param(value):
    # A parameter the notebook set to None may be given any value (Param(None) alone requires one).
    return Param(value, type=["null", "boolean", "integer", "number", "string", "array", "object"]) if value is None else Param(value)


def run_module(module, names):
    \"\"\"Run one pipeline module with this run's values of its parameters; fail the task if it fails.\"\"\"
    params = get_current_context()["params"]
    argv = [os.environ.get(PYTHON_ENV) or sys.executable, str(HERE / module)]
    for name in names:
        value = params[name]
        argv += ["--" + name.replace("_", "-"), value if isinstance(value, str) else json.dumps(value)]
    subprocess.run(argv, check=True)


with DAG(
    dag_id={literal(stem)},
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    tags=["nbops"],
    params={{name: _param(value) for name, value in PARAMETERS.items()}},
):
{tasks}
    {chain}
"""
