"""The notebook the export benchmark measures: a long FTI notebook built deterministically, and a tiny warm-up one."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from _export.builder import Fillers, NotebookBuilder
from _export.setup_cells import add_helpers, add_setup
from _export.stage_cells import add_feature_stage, add_inference_stage, add_training_stage

STEM = "fti_long"

#: Code cells of the 200-cell notebook by kind.  The fixed block (parameters, pip,
#: display setup, imports, store, constants, core helpers) stays the same at any size;
#: the others scale with --cells.
FIXED = {"parameters": 1, "pip": 2, "display_setup": 3, "imports": 10, "store": 1, "constants": 8, "core_helpers": 8}
SCALED = {"extra_helpers": 22, "feature": 40, "training": 40, "inference": 30, "skip": 20, "misc": 15}


def cell_counts(total: int) -> dict[str, int]:
    fixed = sum(FIXED.values())
    if total < fixed + len(SCALED):
        raise SystemExit(f"--cells must be at least {fixed + len(SCALED)}")
    scale = (total - fixed) / sum(SCALED.values())
    counts = {k: max(1, round(v * scale)) for k, v in SCALED.items()}
    counts["extra_helpers"] += total - fixed - sum(counts.values())  # helpers absorb the rounding
    return {**FIXED, **counts}


def build_notebook(total: int, seed: int, outputs: bool) -> tuple[Any, dict[str, Any]]:
    """The notebook and a description of it (counts of each kind of cell)."""
    import nbformat
    from nbformat.v4 import new_notebook

    n = cell_counts(total)
    b = NotebookBuilder(seed, outputs)

    add_setup(b, n)
    extra_names = add_helpers(b, n)
    fill = Fillers(b, n, extra_names)
    misc_left = n["misc"]
    for i in range(min(2, misc_left)):
        fill.misc_cell(i)
    fill.misc_done = min(2, misc_left)
    n_groups = add_feature_stage(b, n, fill)
    add_training_stage(b, n, n_groups, fill)
    add_inference_stage(b, n, n_groups, fill)
    while fill.skip_left > 0:
        fill.skip_cell("0")
    b.md("## Notes\n\nLeftovers from the exploration.")
    while fill.misc_done < n["misc"]:
        fill.misc_cell(fill.misc_done)
        fill.misc_done += 1

    nb = new_notebook(cells=b.cells)
    nb.metadata = {
        "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
        "language_info": {"name": "python", "version": "3.11"},
    }
    nbformat.validate(nb)
    code_cells = [c for c in nb.cells if c.cell_type == "code"]
    info = {
        "code_cells": len(code_cells),
        "markdown_cells": sum(c.cell_type == "markdown" for c in nb.cells),
        "kinds": dict(b.kinds),
        "stage_ways": dict(b.ways),
        "source_lines": sum(len(c.source.splitlines()) for c in code_cells),
        "magic_lines": sum(line.lstrip().startswith(("%", "!")) for c in code_cells for line in c.source.splitlines()),
    }
    return nb, info


def write_notebook(path: Path, nb: Any) -> None:
    import nbformat

    path.write_text(nbformat.writes(nb) + "\n", encoding="utf-8")


TINY_NOTEBOOK = {
    "cells": [
        {
            "cell_type": "code",
            "id": "p",
            "metadata": {"tags": ["parameters"]},
            "execution_count": None,
            "outputs": [],
            "source": "n = 10",
        },
        {
            "cell_type": "code",
            "id": "i",
            "metadata": {},
            "execution_count": None,
            "outputs": [],
            "source": "import pandas as pd\n%matplotlib inline\n!pip install scikit-learn",
        },
        {
            "cell_type": "code",
            "id": "f",
            "metadata": {},
            "execution_count": None,
            "outputs": [],
            "source": "%%features g --keys k --event-time ts\ndf = pd.DataFrame({'k': range(n)})\n%snapshot df\ndf",
        },
        {
            "cell_type": "code",
            "id": "t",
            "metadata": {},
            "execution_count": None,
            "outputs": [],
            "source": "%%track --run-name r\nimport nbops\nnbops.log(a=1)",
        },
        {
            "cell_type": "code",
            "id": "x",
            "metadata": {"tags": ["inference"]},
            "execution_count": None,
            "outputs": [],
            "source": "%%time\nprint(n)\ndf.head()",
        },
    ],
    "metadata": {},
    "nbformat": 4,
    "nbformat_minor": 5,
}
