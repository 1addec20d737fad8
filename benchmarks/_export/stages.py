"""Where an export's time goes: timers wrapped around its stages, two hot spots, a cProfile by package."""

from __future__ import annotations

import contextlib
import cProfile
import functools
import io
import json
import pstats
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from _export.timing import timed

#: Stages of an export, as (label, depth): inclusive times from wrapped functions.
STAGE_ROWS = [
    ("export", 0),
    ("plan", 1),
    ("_read_cells (nbformat.reads)", 2),
    ("assign_stage", 2),
    ("translate", 2),
    ("TransformerManager() (IPython)", 3),
    ("TransformerManager.transform_cell (IPython)", 3),
    ("magic arguments (_parse)", 3),
    ("analyse", 2),
    ("select", 2),
    ("execution_order_findings", 2),
    ("render.module", 2),
    ("render.imported_modules", 2),
    ("render.requirements", 2),
    ("importlib.metadata.packages_distributions", 3),
    ("importlib.metadata.version", 3),
    ("_store_references", 2),
    ("_digest", 1),
    ("_record (catalog lookup/insert)", 1),
    ("_write", 1),
    ("ast.parse (all callers)", 1),
]


@contextlib.contextmanager
def stage_timers() -> Iterator[dict[str, list[float]]]:
    """Wrap the export's stages with timers (inclusive seconds, calls); restored on exit."""
    import ast
    import importlib.metadata

    from IPython.core.inputtransformer2 import TransformerManager

    import nbops.exporting as ex
    from nbops.exporting import render
    from nbops.exporting import translate as tr

    totals: dict[str, list[float]] = {label: [0.0, 0] for label, _ in STAGE_ROWS}
    targets = [
        (ex, "export", "export"),
        (ex, "plan", "plan"),
        (ex, "_read_cells", "_read_cells (nbformat.reads)"),
        (ex, "assign_stage", "assign_stage"),
        (tr, "translate", "translate"),
        (TransformerManager, "__init__", "TransformerManager() (IPython)"),
        (TransformerManager, "transform_cell", "TransformerManager.transform_cell (IPython)"),
        (tr, "_parse", "magic arguments (_parse)"),
        (ex, "analyse", "analyse"),
        (ex, "select", "select"),
        (ex, "execution_order_findings", "execution_order_findings"),
        (render, "module", "render.module"),
        (render, "imported_modules", "render.imported_modules"),
        (render, "requirements", "render.requirements"),
        (importlib.metadata, "packages_distributions", "importlib.metadata.packages_distributions"),
        (importlib.metadata, "version", "importlib.metadata.version"),
        (ex, "_store_references", "_store_references"),
        (ex, "_digest", "_digest"),
        (ex, "_record", "_record (catalog lookup/insert)"),
        (ex, "_write", "_write"),
        (ast, "parse", "ast.parse (all callers)"),
    ]
    saved = []
    for owner, attr, label in targets:
        original = owner.__dict__.get(attr) if isinstance(owner, type) else getattr(owner, attr, None)
        if original is None:  # renamed in src: that row stays at 0 calls
            continue
        saved.append((owner, attr, original))

        def wrapper(*a: Any, _f: Callable[..., Any] = original, _l: str = label, **kw: Any) -> Any:
            t0 = time.perf_counter()
            try:
                return _f(*a, **kw)
            finally:
                totals[_l][0] += time.perf_counter() - t0
                totals[_l][1] += 1

        functools.update_wrapper(wrapper, original)
        setattr(owner, attr, wrapper)
    try:
        yield totals
    finally:
        for owner, attr, original in reversed(saved):
            setattr(owner, attr, original)


def hot_spots(notebook: Path, repeats: int) -> dict[str, list[float]]:
    """In this (warm) process: the two largest costs next to their plain alternatives.

    nbformat.reads (parses, converts and validates against the JSON schema) against
    json.loads of the same text; importlib.metadata.packages_distributions() (reads
    every installed distribution's METADATA and, lacking top_level.txt, its RECORD).
    """
    import importlib.metadata

    import nbformat

    text = notebook.read_text(encoding="utf-8")
    out: dict[str, list[float]] = {"nbformat.reads": [], "json.loads": [], "packages_distributions": []}
    for _ in range(repeats):
        _, t, _ = timed(lambda: nbformat.reads(text, as_version=4))
        out["nbformat.reads"].append(t)
        _, t, _ = timed(lambda: json.loads(text))
        out["json.loads"].append(t)
        _, t, _ = timed(importlib.metadata.packages_distributions)
        out["packages_distributions"].append(t)
    out["distributions"] = [float(len(list(importlib.metadata.distributions())))]
    return out


def stage_breakdown(notebook: Path, work: Path) -> dict[str, dict[str, list[float]]]:
    import nbops
    import nbops.exporting as ex

    store = nbops.open(work / "store-stages" / ".nbops")
    out: dict[str, dict[str, list[float]]] = {}
    for label in ("first", "unchanged"):
        with stage_timers() as totals:
            ex.export(notebook, out=work / "out-stages", store=store)
        out[label] = {k: list(v) for k, v in totals.items()}
    store.close()
    return out


def _short(filename: str) -> str:
    for marker in ("site-packages/", "/src/", "/lib/python3"):
        if marker in filename:
            tail = filename.split(marker, 1)[1]
            return tail.split("/", 1)[1] if marker == "/lib/python3" else tail
    return filename


def _package_of(key: tuple[str, int, str]) -> str:
    filename, _, func = key
    if filename == "~":
        return "builtins: " + func.strip("<>").replace("built-in method ", "").split(" of ")[0]
    short = _short(filename)
    if short.startswith("nbops/"):
        return "nbops." + Path(short).stem if short.count("/") > 1 else "nbops"
    return short.split("/")[0].removesuffix(".py")


def profile_export(notebook: Path, work: Path, top: int) -> dict[str, Any]:
    import nbops
    from nbops.exporting import export

    store = nbops.open(work / "store-profile" / ".nbops")
    prof = cProfile.Profile()
    prof.enable()
    export(notebook, out=work / "out-profile", store=store)
    prof.disable()
    store.close()
    stats = pstats.Stats(prof, stream=io.StringIO())
    entries = stats.stats  # type: ignore[attr-defined]
    total = sum(v[2] for v in entries.values())

    def row(key: tuple[str, int, str], v: tuple[Any, ...]) -> dict[str, Any]:
        return {
            "function": f"{_short(key[0])}:{key[1]}({key[2]})" if key[0] != "~" else key[2],
            "calls": v[1],
            "tottime_s": v[2],
            "cumtime_s": v[3],
        }

    by_own = sorted(entries.items(), key=lambda kv: -kv[1][2])[:top]
    ours = [(k, v) for k, v in entries.items() if "nbops/" in k[0]]
    by_cum = sorted(ours, key=lambda kv: -kv[1][3])[:top]
    packages: Counter[str] = Counter()
    for k, v in entries.items():
        packages[_package_of(k)] += v[2]
    return {
        "total_s": total,
        "top_own": [row(k, v) for k, v in by_own],
        "top_cumulative_nbops": [row(k, v) for k, v in by_cum],
        "own_time_by_package": [{"package": p, "tottime_s": t} for p, t in packages.most_common(top)],
    }
