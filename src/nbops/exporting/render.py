"""Generated files: stage modules, the manifest's requirements, the test, the Airflow DAG.

Modules are plain Python that read like code a person wrote: the cells'
own lines (comments kept) under ``# %% cell <id>`` markers, inside
``main(**params)`` whose parameters come from the cell tagged
``parameters``, and a ``__main__`` entry whose options are those parameters.
"""

from __future__ import annotations

import ast
import functools
import importlib.metadata
import sys
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from nbops.exporting.cells import Cell, ExportError
from nbops.exporting.translate import _indent

MODULES = {"feature": "feature_pipeline.py", "training": "training_pipeline.py", "inference": "inference_pipeline.py"}
VERSION_PLACEHOLDER = "{{NBOPS_EXPORT_VERSION}}"


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
        try:
            params[target] = ast.literal_eval(value)
        except ValueError:
            raise ExportError(
                f"{cell.label} (parameters): {target} must be a literal (number, string, bool, None, list, dict)"
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
) -> tuple[str, list[tuple[str, int, int]]]:
    """The source of one stage module, and each cell's (id, first line, last line) in it."""
    signature = ", ".join(f"{name}={value!r}" for name, value in params.items())
    header = [
        f'"""{stage.capitalize()} pipeline of {notebook}, exported by nbops {nbops_version}.',
        "",
        f"Notebook: {notebook} (sha256 {notebook_sha256[:16]})",
        f"Export: {stem}@{VERSION_PLACEHOLDER}, stage {stage}; cells: {', '.join(c.id for c in cells)}",
        "",
        "Generated: edit the notebook and export it again rather than editing this file.",
        f"Run: python {MODULES[stage]} --help",
        '"""',
        "",
        "import argparse",
        "",
        "import nbops",
        "import nbops as _nbops  # the cells may import nbops themselves, making `nbops` local to main()",
        "",
        f"PIPELINE = {stem + '@' + VERSION_PLACEHOLDER!r}",
        f"PARAMETERS = {dict(params)!r}",
        "",
        "",
        f"def main({signature}):",
        f'    """Run the {stage} stage; parameters default to the notebook\'s."""',
        "    nbops_store = _nbops.open()",
        f"    with _nbops.pipeline(PIPELINE, stage={stage!r}):",
    ]
    lines = list(header)
    ranges = []
    body_indent = " " * 8
    for cell in cells:
        lines.append(f"{body_indent}# %% cell {cell.id}")
        start = len(lines) + 1
        code = cell.code.strip("\n")
        lines.extend((_indent(code, body_indent) if code.strip() else body_indent + "pass").split("\n"))
        ranges.append((cell.id, start, len(lines)))
        lines.append("")
    if not cells:
        lines.append(body_indent + "pass")
    lines += ["", "", _cli(stage, params), ""]
    return "\n".join(lines), ranges


def _cli(stage: str, params: Mapping[str, Any]) -> str:
    out = [
        'if __name__ == "__main__":',
        f"    parser = argparse.ArgumentParser(description={f'{stage} pipeline (parameters from the notebook)'!r})",
    ]
    for name, value in params.items():
        flag = "--" + name.replace("_", "-")
        if isinstance(value, bool):
            out.append(
                f"    parser.add_argument({flag!r}, dest={name!r}, type=lambda s: s.lower() in ('1', 'true', 'yes'), "
                f"default={value!r}, help='default: %(default)s')"
            )
        elif isinstance(value, (int, float, str)):
            out.append(
                f"    parser.add_argument({flag!r}, dest={name!r}, type={type(value).__name__}, default={value!r}, "
                "help='default: %(default)s')"
            )
        else:
            out.append(
                f"    parser.add_argument({flag!r}, dest={name!r}, type=__import__('json').loads, default={value!r}, "
                "help='JSON; default: %(default)s')"
            )
    out.append("    main(**vars(parser.parse_args()))")
    return "\n".join(out)


def imported_modules(cells: Iterable[Cell]) -> set[str]:
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
    modules = [MODULES[s] for s in stages]
    return f'''"""Runs each stage of {stem} in a fresh process against a scratch store (pytest)."""

import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
STAGES = {modules!r}


def test_stages_run_in_order_on_a_scratch_store(tmp_path):
    env = {{**os.environ, "NBOPS_HOME": str(tmp_path / ".nbops")}}
    env.pop("MLFLOW_TRACKING_URI", None)
    env.pop("NBOPS_MLFLOW_TRACKING_URI", None)
    for module in STAGES:
        result = subprocess.run(
            [sys.executable, str(HERE / module)], cwd=tmp_path, env=env, capture_output=True, text=True
        )
        assert result.returncode == 0, f"{{module}} failed:\\n{{result.stderr[-4000:]}}"
'''


def airflow_dag(stem: str, stages: Sequence[str]) -> str:
    tasks = "\n".join(
        f"    {s} = BashOperator(task_id={s!r}, bash_command=f\"{{sys.executable}} {{HERE / {MODULES[s]!r}}}\")"
        for s in stages
    )
    chain = " >> ".join(stages)
    return f'''"""Airflow DAG running the {stem} pipelines: {" -> ".join(stages)} (generated by nbops)."""

import sys
from pathlib import Path

import pendulum
from airflow.providers.standard.operators.bash import BashOperator
from airflow.sdk import DAG

HERE = Path(__file__).resolve().parent

with DAG(
    dag_id={stem!r},
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    tags=["nbops"],
):
{tasks}
    {chain}
'''
