"""How the tracking benchmark measures and reports: snapshot.py's rounds plus CPU time, figures with medians."""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass, field

from _harness import release_memory, reset_peak, status_kib
from _snapshot.measure import Op as SnapshotOp


@dataclass
class Op(SnapshotOp):
    """benchmarks/snapshot.py's Op, plus the process CPU time of each round."""

    cpu: list[float] = field(default_factory=list)

    @property
    def best_cpu(self) -> float:
        return min(self.cpu)


def run_interleaved(ops: list[Op], repeats: int) -> None:
    """benchmarks/snapshot.py's run_interleaved, also recording ``time.process_time``.

    CPU time is insensitive to other processes competing for the CPUs (it
    leaves out waits: fsync, locks), so on a loaded machine it shows whether
    a wall-time gap is ours or the neighbours'.
    """
    for r in range(repeats):
        for op in ops:
            arg = op.setup(r)
            release_memory()
            can_reset = reset_peak()
            rss0 = status_kib("VmRSS")
            c0 = time.process_time()
            t0 = time.perf_counter()
            result = op.run(arg)
            elapsed = time.perf_counter() - t0
            cpu = time.process_time() - c0
            hwm = status_kib("VmHWM") if can_reset else None
            op.times.append(elapsed)
            op.cpu.append(cpu)
            if hwm is not None and rss0 is not None:
                op.peak = max(op.peak or 0, hwm * 1024)
                op.peak_delta = max(op.peak_delta or 0, (hwm - rss0) * 1024)
            if op.check is not None:
                op.check(result)
            del result, arg


# -- reporting ---------------------------------------------------------------------------
@dataclass
class Figure:
    """ours / baseline (``target`` a ratio), or an absolute time (``abs_target`` seconds)."""

    key: str
    label: str
    ours: float  # seconds
    baseline: float | None  # seconds; None for an absolute figure
    target: float | None = None  # ratio
    abs_target: float | None = None  # seconds
    median: float | None = None  # median of per-round ratios (or differences, for absolute figures)
    cpu: float | None = None  # best-CPU ratio (or best-CPU difference, for absolute figures), info
    ratio: float | None = None
    ok: bool | None = None

    def __post_init__(self) -> None:
        if self.baseline is not None:
            self.ratio = self.ours / self.baseline if self.baseline else float("inf")
        if self.target is not None and self.ratio is not None:
            self.ok = self.ratio <= self.target
        elif self.abs_target is not None:
            self.ok = self.ours <= self.abs_target


def fmt_ms(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if abs(seconds) >= 1:
        return f"{seconds:.2f} s"
    return f"{seconds * 1000:.1f} ms"


def print_figures(figures: list[Figure]) -> None:
    head = f"{'figure':<50} {'nbops':>10} {'baseline':>10} {'ratio':>7} {'median':>9} {'cpu':>8} {'target':>8}  result"
    print(head)
    print("-" * len(head))
    for f in figures:
        if f.target is not None:
            target = f"<={f.target:g}"
        elif f.abs_target is not None:
            target = f"<={f.abs_target * 1000:g}ms"
        else:
            target = "-"
        ratio = f"{f.ratio:.3f}" if f.ratio is not None else "-"
        if f.median is None:
            median = "-"
        elif f.baseline is None:
            median = fmt_ms(f.median)
        else:
            median = f"{f.median:.3f}"
        if f.cpu is None:
            cpu = "-"
        elif f.baseline is None:
            cpu = fmt_ms(f.cpu)
        else:
            cpu = f"{f.cpu:.3f}"
        result = "info" if f.ok is None else ("PASS" if f.ok else "MISS")
        print(
            f"{f.label:<50} {fmt_ms(f.ours):>10} {fmt_ms(f.baseline):>10} {ratio:>7} {median:>9} {cpu:>8} "
            f"{target:>8}  {result}"
        )


def ratio_figure(key: str, label: str, ours: Op, base: Op, target: float | None) -> Figure:
    per_round = [a / b for a, b in zip(ours.times, base.times, strict=False) if b > 0]
    return Figure(
        key,
        label,
        ours.best,
        base.best,
        target=target,
        median=statistics.median(per_round) if per_round else None,
        cpu=ours.best_cpu / base.best_cpu if base.best_cpu > 0 else None,
    )
