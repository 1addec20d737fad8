"""Notebooks built with ``nbformat.v4`` the way public tutorials are, and exported modules run as subprocesses."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import nbformat
from nbformat.v4 import new_code_cell, new_notebook

PYTHON = sys.executable  # /work/venv/bin/python when the suite runs from the venv


def code(source: str, *tags: str, id: str | None = None, count: int | None = None) -> Any:
    """A code cell with ``tags``, and the ``id`` and execution ``count`` given (none by default)."""
    cell = new_code_cell(source, execution_count=count)
    if tags:
        cell.metadata["tags"] = list(tags)
    if id is not None:
        cell["id"] = id
    return cell


def write_notebook(path: Path, cells: list[Any]) -> Path:
    """``cells`` as a Python 3 notebook at ``path`` (folders made as needed)."""
    nb = new_notebook(
        cells=cells,
        metadata={"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}},
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, path)
    return path


def label(index: int, cell_id: str) -> str:
    """How export names a cell: its 1-based position among all cells, and its id."""
    return f"cell {index + 1} (id {cell_id})"


def plan_refusal(nb: Path) -> str:
    """The message of the ``ExportError`` that planning ``nb``'s export must raise."""
    import pytest

    from nbops.exporting import ExportError, plan

    with pytest.raises(ExportError) as refused:
        plan(nb)
    return str(refused.value)


def main_body(source: str) -> list[ast.stmt]:
    """The statements inside ``main()``'s ``with nbops.pipeline(...)`` block."""
    tree = ast.parse(source)
    main = next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "main")
    block = next(n for n in main.body if isinstance(n, ast.With))
    return block.body


def code_shape(source: str) -> str:
    """The module's AST with every string emptied: the shape of its code, whatever the strings hold."""
    tree = ast.parse(source)
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            node.value = ""
    return ast.dump(tree)


def scratch_env(home: Path) -> dict[str, str]:
    """This environment with the store at ``home`` and no tracking server."""
    env = {**os.environ, "NBOPS_HOME": str(home)}
    for name in ("MLFLOW_TRACKING_URI", "NBOPS_MLFLOW_TRACKING_URI", "JPY_SESSION_NAME"):
        env.pop(name, None)
    return env


def run(args: list[str], cwd: Path, home: Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run ``args`` in ``cwd`` (made as needed) on the store at ``home``; output captured as text."""
    cwd.mkdir(parents=True, exist_ok=True)
    return subprocess.run(
        args,
        check=False,
        cwd=cwd,
        env=scratch_env(home),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
