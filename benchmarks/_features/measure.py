"""How the feature benchmark measures and reports: interleaved rounds with peak RSS, figures, one join compared."""

from __future__ import annotations

import hashlib
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
from _harness import fmt_bytes, release_memory, reset_peak, status_kib

import nbops
from _features.data import duckdb_arrow, duckdb_pandas, merge_asof, mismatches, ours


# -- measuring (the same method as benchmarks/snapshot.py) ----------------------------
@dataclass
class Op:
    name: str
    run: Callable[[], Any]
    check: Callable[[Any], None] | None = None
    times: list[float] = field(default_factory=list)
    peak: int | None = None
    peak_delta: int | None = None

    @property
    def best(self) -> float:
        return min(self.times)


def run_interleaved(ops: list[Op], repeats: int) -> None:
    for _ in range(repeats):
        for op in ops:
            release_memory()
            can_reset = reset_peak()
            rss0 = status_kib("VmRSS")
            t0 = time.perf_counter()
            result = op.run()
            elapsed = time.perf_counter() - t0
            hwm = status_kib("VmHWM") if can_reset else None
            op.times.append(elapsed)
            if hwm is not None and rss0 is not None:
                op.peak = max(op.peak or 0, hwm * 1024)
                op.peak_delta = max(op.peak_delta or 0, (hwm - rss0) * 1024)
            if op.check is not None:
                op.check(result)
            del result


def paired_median(a: Op, b: Op) -> float:
    return statistics.median(x / y for x, y in zip(a.times, b.times, strict=True))


def source_digest() -> str:
    """Short digest of the nbops sources timed (pit.py may be changing under us)."""
    src = Path(nbops.__file__).resolve().parent
    h = hashlib.sha256()
    timed = ["featurestore/pit.py", "featurestore/groups.py", "featurestore/serving.py", "core/columns.py"]
    timed += sorted(str(p.relative_to(src)) for p in (src / "featurestore" / "online").glob("*.py"))
    for name in timed:
        h.update((src / name).read_bytes())  # a missing file is a stale list here, not a figure to hide
    return h.hexdigest()[:12]


# -- reporting -------------------------------------------------------------------
@dataclass
class Figure:
    key: str
    label: str
    ours: float
    baseline: float | None
    unit: str  # "s", "ms" (value in seconds) or "B"
    target: float | None  # None: informative
    target_on: str = "ratio"  # "ratio" or "value"
    ratio: float | None = None
    ok: bool | None = None

    def __post_init__(self) -> None:
        if self.baseline:
            self.ratio = self.ours / self.baseline
        if self.target is not None:
            measured = self.ours if self.target_on == "value" else self.ratio
            self.ok = measured is not None and measured <= self.target


def _fmt(value: float | None, unit: str) -> str:
    if value is None:
        return "-"
    if unit == "s":
        return f"{value:.3f} s"
    if unit == "ms":
        return f"{value * 1000:.3f} ms"
    return fmt_bytes(value)


def _fmt_target(f: Figure) -> str:
    if f.target is None:
        return "-"
    if f.target_on == "ratio":
        return f"<={f.target:g}"
    return "<=" + _fmt(f.target, f.unit).replace(" ", "")


def print_figures(figures: list[Figure]) -> None:
    head = f"{'figure':<58} {'nbops':>11} {'baseline':>11} {'ratio':>7} {'target':>9}  result"
    print(head)
    print("-" * len(head))
    for f in figures:
        result = "info" if f.ok is None else ("PASS" if f.ok else "MISS")
        ratio = f"{f.ratio:.3f}" if f.ratio is not None else "-"
        print(
            f"{f.label:<58} {_fmt(f.ours, f.unit):>11} {_fmt(f.baseline, f.unit):>11} "
            f"{ratio:>7} {_fmt_target(f):>9}  {result}"
        )


def print_ops(ops: Sequence[Op]) -> None:
    print(f"  {'operation':<44} {'best':>8} {'all rounds':<26} {'peak RSS':>10} {'+peak':>10}")
    for op in ops:
        rounds = " ".join(f"{t:.3f}" for t in op.times)
        print(f"  {op.name:<44} {op.best:>8.3f} {rounds:<26} {fmt_bytes(op.peak):>10} {fmt_bytes(op.peak_delta):>10}")


# -- one join at a given spine size -------------------------------------------------
def compare_joins(
    label: str,
    store: nbops.Store,
    spine: pd.DataFrame,
    frames: dict[str, pd.DataFrame],
    tables: dict[str, pa.Table],
    repeats: int,
    with_merge_asof: bool = True,
    multi_store: tuple[int, nbops.Store] | None = None,
) -> tuple[dict[str, Op], dict[str, int]]:
    checks: dict[str, int] = {}
    reference: dict[str, pd.DataFrame] = {}

    def keep_ours(result: pd.DataFrame) -> None:
        if "ours" not in reference:
            assert result.index.equals(spine.index), "training_data changed the spine index"
            assert list(result.columns[: spine.shape[1]]) == list(spine.columns)
            reference["ours"] = result

    def checker(name: str) -> Callable[[pd.DataFrame], None]:
        def check(result: pd.DataFrame) -> None:
            if name not in checks:
                checks[name] = mismatches(spine, reference["ours"], result)

        return check

    ops = [
        Op("nbops: store.training_data", lambda: ours(store, spine), keep_ours),
        Op("duckdb: pandas in, .df() out", lambda: duckdb_pandas(spine, frames), checker("duckdb_pandas")),
        Op("duckdb: arrow in, arrow out, .to_pandas()", lambda: duckdb_arrow(spine, tables), checker("duckdb_arrow")),
        Op("info: duckdb arrow, no ORDER BY (unordered)", lambda: duckdb_arrow(spine, tables, order=False)),
    ]
    if with_merge_asof:
        ops.append(
            Op("pandas: merge_asof (+sorts, +reorder)", lambda: merge_asof(spine, frames), checker("merge_asof"))
        )
    if multi_store is not None:
        commits, other = multi_store
        ops.append(
            Op(
                f"info: training_data, groups in {commits} commits",
                lambda: ours(other, spine),
                checker(f"nbops_{commits}_commits"),
            )
        )
    print(f"{label}: {len(ops)} operations x {repeats} rounds, interleaved ...", flush=True)
    run_interleaved(ops, repeats)
    reference.clear()
    return {op.name: op for op in ops}, checks


def best_duckdb(ops: dict[str, Op]) -> Op:
    candidates = [ops["duckdb: pandas in, .df() out"], ops["duckdb: arrow in, arrow out, .to_pandas()"]]
    return min(candidates, key=lambda op: op.best)
