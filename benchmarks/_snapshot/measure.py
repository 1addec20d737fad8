"""How the snapshot benchmark measures and reports: interleaved rounds, peak RSS per operation, figures."""

from __future__ import annotations

import contextlib
import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from _harness import fmt_bytes, release_memory, reset_peak, status_kib


# -- measuring -----------------------------------------------------------------
def io_wchar() -> int | None:
    try:
        m = re.search(r"^wchar:\s+(\d+)", Path("/proc/self/io").read_text(), re.M)
    except OSError:
        return None
    return int(m.group(1)) if m else None


def dir_size(path: Path) -> int:
    total = 0
    for folder, _dirs, files in os.walk(path):
        for f in files:
            with contextlib.suppress(FileNotFoundError):
                total += os.stat(os.path.join(folder, f)).st_size
    return total


def fsync_path(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@dataclass
class Op:
    """One timed operation: ``setup(round)`` (untimed) returns the argument of ``run``."""

    name: str
    run: Callable[[Any], Any]
    setup: Callable[[int], Any] = lambda _round: None
    check: Callable[[Any], None] | None = None  # untimed, after each run
    times: list[float] = field(default_factory=list)
    peak: int | None = None  # bytes, max over rounds
    peak_delta: int | None = None  # bytes above RSS at start, max over rounds
    last: Any = None

    @property
    def best(self) -> float:
        return min(self.times)


def run_interleaved(ops: list[Op], repeats: int, keep_last: bool = False) -> None:
    for r in range(repeats):
        for op in ops:
            arg = op.setup(r)
            release_memory()
            can_reset = reset_peak()
            rss0 = status_kib("VmRSS")
            t0 = time.perf_counter()
            result = op.run(arg)
            elapsed = time.perf_counter() - t0
            hwm = status_kib("VmHWM") if can_reset else None
            op.times.append(elapsed)
            if hwm is not None and rss0 is not None:
                op.peak = max(op.peak or 0, hwm * 1024)
                op.peak_delta = max(op.peak_delta or 0, (hwm - rss0) * 1024)
            if op.check is not None:
                op.check(result)
            op.last = result if keep_last else None
            del result, arg


# -- reporting -----------------------------------------------------------------
@dataclass
class Figure:
    key: str
    label: str
    ours: float
    baseline: float
    unit: str  # "s" or "B"
    target: float | None  # ratio must be <= target; None: informative only
    ratio: float = 0.0
    ok: bool | None = None

    def __post_init__(self) -> None:
        self.ratio = self.ours / self.baseline if self.baseline else float("inf")
        self.ok = None if self.target is None else self.ratio <= self.target


def _fmt(value: float, unit: str) -> str:
    if unit == "s":
        return f"{value:.3f} s"
    return fmt_bytes(value)


def print_figures(figures: list[Figure]) -> None:
    head = f"{'figure':<52} {'nbops':>11} {'baseline':>11} {'ratio':>7} {'target':>7}  result"
    print(head)
    print("-" * len(head))
    for f in figures:
        target = f"<={f.target:g}" if f.target is not None else "-"
        result = "info" if f.ok is None else ("PASS" if f.ok else "MISS")
        print(
            f"{f.label:<52} {_fmt(f.ours, f.unit):>11} {_fmt(f.baseline, f.unit):>11} "
            f"{f.ratio:>7.3f} {target:>7}  {result}"
        )
