"""Timing the export in this process: fresh and unchanged exports round by round, other notebook sizes."""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from _export.notebook import STEM, build_notebook, write_notebook


def _file_states(folder: Path) -> dict[str, tuple[int, int, int]]:
    return {
        str(p.relative_to(folder)): (p.stat().st_ino, p.stat().st_size, p.stat().st_mtime_ns)
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def _catalog_state(store: Any) -> dict[str, tuple[int, int] | None]:
    out: dict[str, tuple[int, int] | None] = {}
    for name in ("catalog.db", "catalog.db-wal"):
        p = Path(store.root) / name
        out[name] = (p.stat().st_size, p.stat().st_mtime_ns) if p.exists() else None
    return out


def _export_rows(store: Any, stem: str) -> list[tuple[int, str]]:
    import sqlalchemy as sa

    from nbops.core import catalog as cat

    with store.catalog.read() as conn:
        rows = conn.execute(
            sa.select(cat.exports.c.version, cat.exports.c.digest).where(cat.exports.c.pipeline == stem)
        ).all()
    return [(int(r.version), r.digest) for r in rows]


@dataclass
class Round:
    first_s: float
    first_cpu_s: float
    unchanged_s: float
    unchanged_cpu_s: float
    plan_s: float
    version_first: int
    version_unchanged: int
    written_first: int
    written_unchanged: list[str]
    result_unchanged: bool
    files_same: bool
    catalog_rows: int
    catalog_file_changed: bool


def timed(fn: Callable[[], Any]) -> tuple[Any, float, float]:
    import gc

    gc.collect()
    c0, t0 = time.process_time(), time.perf_counter()
    result = fn()
    return result, time.perf_counter() - t0, time.process_time() - c0


def run_rounds(notebook: Path, work: Path, repeats: int) -> tuple[list[Round], Any]:
    import nbops
    from nbops.exporting import export, plan

    rounds = []
    last = None
    for r in range(repeats):
        store = nbops.open(work / f"store{r}" / ".nbops")  # untimed: a fresh catalog for the record
        out = work / f"out{r}"
        first, t1, c1 = timed(functools.partial(export, notebook, out=out, store=store))
        assert first.version == 1 and not first.unchanged and len(first.written) == len(first.files), first.summary()
        files_before = _file_states(out / first.stem)
        catalog_before = _catalog_state(store)
        again, t2, c2 = timed(functools.partial(export, notebook, out=out, store=store))
        files_after = _file_states(out / again.stem)
        catalog_after = _catalog_state(store)
        _, t3, _ = timed(lambda: plan(notebook))
        rows = _export_rows(store, first.stem)
        rounds.append(
            Round(
                t1,
                c1,
                t2,
                c2,
                t3,
                first.version,
                again.version,
                len(first.written),
                again.written,
                again.unchanged,
                files_before == files_after,
                len(rows),
                catalog_before != catalog_after,
            )
        )
        store.close()
        last = first
    return rounds, last


def check_generated(result: Any) -> dict[str, Any]:
    """Untimed: the modules compile; cells and lines per stage; findings."""
    errors = []
    for name, text in result.files.items():
        if name.endswith(".py"):
            try:
                compile(text, name, "exec")
            except SyntaxError as exc:
                errors.append(f"{name}: {exc}")
    return {
        "files": {name: len(text.splitlines()) for name, text in result.files.items()},
        "stage_cells": {s["module"]: len(s["cells"]) for s in result.manifest["stages"]},
        "requirements": result.manifest["requirements"],
        "findings": [f.kind for f in result.findings],
        "dropped_cells": len(result.manifest["dropped"]),
        "compile_errors": errors,
    }


def time_size(cells: int, seed: int, outputs: bool, work: Path, repeats: int) -> dict[str, Any]:
    import nbops
    from nbops.exporting import export

    nb, info = build_notebook(cells, seed, outputs)
    folder = work / f"size{cells}"
    folder.mkdir()
    path = folder / f"{STEM}.ipynb"
    write_notebook(path, nb)
    times = []
    for r in range(repeats):
        store = nbops.open(folder / f"store{r}" / ".nbops")
        _, t, _ = timed(functools.partial(export, path, out=folder / f"out{r}", store=store))
        times.append(t)
        store.close()
    return {"cells": cells, "markdown": info["markdown_cells"], "times_s": times, "best_s": min(times)}
