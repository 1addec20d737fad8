"""Tracking benchmark: nbops runs (``%%track``, ``nbops.track``, ``nbops.log``, data inputs) against plain MLflow.

Run (from the repository root)::

    PYTHONPATH=src python benchmarks/tracking.py                      # full run (~2-4 min, ~550 MiB RAM)
    PYTHONPATH=src python benchmarks/tracking.py --rows 10000 --metrics 100 --repeats 5 \\
        --input-repeats 2 --slow-repeats 1                            # smoke test (~20 s)
    PYTHONPATH=src python benchmarks/tracking.py --skip-mlflow-dataset --json results.json

Everything runs on the embedded backend: one fresh store in a temporary
folder (``nbops.open(tmp/".nbops")``), whose MLflow SQLite database
(``<store>/mlflow.db``) is created once before any timing; that creation is
timed and reported apart.  ``MLFLOW_TRACKING_URI`` (and nbops' marker and
``NBOPS_HOME``) are removed from the environment at start, so the caller's
settings cannot redirect the runs.  ``IPYTHONDIR`` points into the temporary
folder.

Every figure is a ratio measured in this one run, ours / baseline, the
operations of a figure interleaved round by round (round 1 of each, then
round 2, ...) with ``time.perf_counter``, so drift and other load on the
machine hit both sides alike.  The figure's ratio is best-of-N over
best-of-N; the median of the per-round ratios is printed beside it (the fast
figures run many rounds, so the median is meaningful there).  Before each
timed operation: ``gc.collect``, Arrow ``release_unused``, ``malloc_trim``
and a reset of the kernel's peak-RSS mark (as in benchmarks/snapshot.py,
whose helpers this script imports).

1. Empty tracked cell.  ``shell.run_cell("%%track --experiment bench\\npass")``
   in a real IPython ``InteractiveShell`` with the extension loaded (stdout
   captured and checked for FINISHED) / ``mlflow.start_run(experiment_id=...)``
   + ``mlflow.end_run()`` in the same experiment.  Target <= 1.25.
   1b: ``with nbops.track(experiment="bench"): pass`` / the same baseline.
   1c: ``shell.run_cell("pass")`` (the shell's own cost, info).
   A breakdown of where a %%track cell spends its time follows: the main
   functions it calls are wrapped with timers (exclusive times, per cell,
   mean over ``--repeats`` cells, no profiler running), and with
   ``--profile`` cProfile's top functions are printed as well.
2. 1,000 metrics.  Run started untimed (``nbops.track(...).__enter__()``);
   timed: 1,000 ``nbops.log(m_i=v)`` calls (one metric each) + the block's
   exit (one ``log_batch``, inputs, end of run) / run started untimed with
   ``mlflow.start_run``; timed: building the 1,000 ``Metric`` objects + one
   ``MlflowClient.log_batch(synchronous=True)`` + ``mlflow.end_run()``.
   Target <= 1.1.  2b (info): against 1,000 ``mlflow.log_metric`` calls +
   ``end_run`` (``--slow-repeats`` rounds, ~10 s each).  Checked: the run
   holds the 1,000 metrics.
3. A 1M-row input.  ``store.snapshot(df)`` of a 1M-row x 10-column frame
   (the frame of benchmarks/snapshot.py; untimed, reported).  Then, per
   round, two runs started untimed with ``nbops.track``: one empty, one in
   which ``store.load_table`` read the snapshot (untimed); timed: the end of
   each run (the block's exit).  The figure is the input's cost, best end
   with the input - best end of the empty run (the median of the per-round
   differences is printed beside it).  Target <= 50 ms.  Checked: the run has
   the dataset input ``bench@1``.  3b (info): the same end / the empty end.
   3c (info): ``mlflow.data.from_pandas(df)`` + ``mlflow.log_input(ds)`` in a
   run started untimed (``--slow-repeats`` rounds, ~17 s each;
   ``--skip-mlflow-dataset`` skips it) against the nbops input cost.
4. Memory: peak RSS of each timed operation (peak / +peak, as in
   benchmarks/snapshot.py) and of the process.

This is a benchmark, not a test: it exits 0 whether targets pass or miss
(``--strict`` exits 1 on a miss).
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import cProfile
import importlib.util
import io
import json
import os
import platform
import pstats
import shutil
import statistics
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

from _harness import fmt_bytes, git_state, loadavg, process_peak_bytes, release_memory, reset_peak, status_kib

import nbops

# The caller's tracking settings must not redirect the runs (nbops sets its own at open).
_CALLER_ENV = {k: os.environ.pop(k, None) for k in ("MLFLOW_TRACKING_URI", "NBOPS_MLFLOW_TRACKING_URI", "NBOPS_HOME")}
EXPERIMENT = "bench"
NAME = "bench"
MAGIC_CELL = f"%%track --experiment {EXPERIMENT}\npass"


def _load_snapshot_helpers() -> ModuleType:
    """benchmarks/snapshot.py (frame, Op, run_interleaved, RSS helpers), loaded by path."""
    path = Path(__file__).resolve().parent / "snapshot.py"
    spec = importlib.util.spec_from_file_location("nbops_bench_snapshot", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


sb = _load_snapshot_helpers()


@dataclass
class Op(sb.Op):
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


def _ms(seconds: float | None) -> str:
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
            median = _ms(f.median)
        else:
            median = f"{f.median:.3f}"
        if f.cpu is None:
            cpu = "-"
        elif f.baseline is None:
            cpu = _ms(f.cpu)
        else:
            cpu = f"{f.cpu:.3f}"
        result = "info" if f.ok is None else ("PASS" if f.ok else "MISS")
        print(
            f"{f.label:<50} {_ms(f.ours):>10} {_ms(f.baseline):>10} {ratio:>7} {median:>9} {cpu:>8} "
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


# -- breakdown of a %%track cell -----------------------------------------------------------
class Breakdown:
    """Exclusive wall time of selected functions, by wrapping them (no profiler)."""

    def __init__(self) -> None:
        self.totals: dict[str, float] = {}
        self.calls: dict[str, int] = {}
        self._stack: list[list[float]] = []  # per active timer: [child time]
        self._undo: list[Callable[[], None]] = []

    @contextlib.contextmanager
    def timer(self, label: str) -> Iterator[None]:
        self._stack.append([0.0])
        t0 = time.perf_counter()
        try:
            yield
        finally:
            elapsed = time.perf_counter() - t0
            children = self._stack.pop()[0]
            self.totals[label] = self.totals.get(label, 0.0) + elapsed - children
            self.calls[label] = self.calls.get(label, 0) + 1
            if self._stack:
                self._stack[-1][0] += elapsed

    def wrap(self, owner: Any, attr: str, label: str) -> None:
        original = getattr(owner, attr)
        is_cm = label.endswith("[cm]")
        label = label.removesuffix(" [cm]")

        if is_cm:  # a @contextmanager function: time the with-block it opens, body included

            @contextlib.contextmanager
            def wrapper(*args: Any, **kwargs: Any) -> Iterator[Any]:
                with self.timer(label), original(*args, **kwargs) as value:
                    yield value
        else:

            def wrapper(*args: Any, **kwargs: Any) -> Any:
                with self.timer(label):
                    return original(*args, **kwargs)

        setattr(owner, attr, wrapper)
        self._undo.append(lambda: setattr(owner, attr, original))

    def restore(self) -> None:
        while self._undo:
            self._undo.pop()()

    def reset(self) -> None:
        self.totals.clear()
        self.calls.clear()


def instrument(bd: Breakdown) -> None:
    import mlflow
    from mlflow.tracking._tracking_service.client import TrackingServiceClient

    from nbops.core.catalog import Catalog
    from nbops.magics import tracking as magic_tracking
    from nbops.tracking import experiments as tracking

    bd.wrap(magic_tracking, "parse_line", "magic: argument parsing")
    bd.wrap(tracking, "ensure_backend", "nbops: ensure_backend")
    bd.wrap(tracking, "experiment_id", "nbops: experiment_id (get_experiment_by_name)")
    bd.wrap(tracking, "_git_commit", "nbops: _git_commit (git rev-parse subprocess)")
    bd.wrap(tracking, "_process_started", "nbops: _process_started (psutil)")
    bd.wrap(Catalog, "write", "nbops: catalog write txns (active_runs, lineage) [cm]")
    bd.wrap(mlflow, "start_run", "mlflow.start_run")
    bd.wrap(mlflow, "log_text", "mlflow.log_text(cell.py) without get_run")
    bd.wrap(TrackingServiceClient, "_get_artifact_repo", "mlflow: artifact repo lookup (get_run)")
    bd.wrap(tracking, "_log_inputs", "nbops: _log_inputs (no inputs)")
    bd.wrap(mlflow, "end_run", "mlflow.end_run")


# -- the benchmark -------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows of the input frame (default 1_000_000)")
    parser.add_argument("--metrics", type=int, default=1000, help="metrics logged in figure 2 (default 1000)")
    parser.add_argument(
        "--repeats", type=int, default=20, help="rounds for figures 1 and 2 (fast; best of N and median, default 20)"
    )
    parser.add_argument("--input-repeats", type=int, default=7, help="rounds for figure 3 (default 7)")
    parser.add_argument(
        "--slow-repeats", type=int, default=5, help="rounds for the slow informative baselines 2b and 3c (default 5)"
    )
    parser.add_argument(
        "--skip-mlflow-dataset",
        action="store_true",
        help="skip 3c, mlflow.data.from_pandas + log_input (~17 s a round at 1M rows)",
    )
    parser.add_argument(
        "--profile", action="store_true", help="also cProfile --repeats %%track cells and print the top functions"
    )
    parser.add_argument("--seed", type=int, default=20240601)
    parser.add_argument("--tmpdir", default=None, help="where the store goes (default: system temp)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    parser.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="nbops-bench-tracking-", dir=args.tmpdir))
    try:
        return _run(args, work)
    finally:
        if args.keep:
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


def _warm(ops: list[Op], rounds: int = 2) -> None:
    for _ in range(rounds):
        for op in ops:
            result = op.run(op.setup(-1))
            if op.check is not None:
                op.check(result)


def _run(args: argparse.Namespace, work: Path) -> int:
    import numpy as np

    repeats = max(1, args.repeats)
    input_repeats = max(1, args.input_repeats)
    slow_repeats = max(1, args.slow_repeats)
    os.environ["IPYTHONDIR"] = str(work / "ipython")
    warnings.filterwarnings("ignore", message=".*Inferred schema contains integer column.*")

    env: dict[str, Any] = {
        "rows": args.rows,
        "metrics": args.metrics,
        "repeats": repeats,
        "input_repeats": input_repeats,
        "slow_repeats": slow_repeats,
        "python": platform.python_version(),
        "nbops": nbops.__version__,
        "git": git_state(),
        "cpus": os.cpu_count(),
        "workdir": str(work),
        "cwd": os.getcwd(),
        "caller_env_removed": sorted(k for k, v in _CALLER_ENV.items() if v is not None) or "none",
        "loadavg_start": loadavg(),
    }
    print("nbops tracking benchmark  " + "  ".join(f"{k}={v}" for k, v in env.items()))
    info: dict[str, Any] = {}

    # -- setup (untimed, reported) ---------------------------------------------------
    from nbops.tracking import experiments as tracking

    root = work / ".nbops"
    t = time.perf_counter()
    store = nbops.open(root)
    info["store_open_s"] = time.perf_counter() - t
    t = time.perf_counter()
    import mlflow
    from mlflow.entities import Metric

    info["import_mlflow_s"] = time.perf_counter() - t
    t = time.perf_counter()
    tracking.ensure_backend(store)  # creates <store>/mlflow.db: MLflow's migrations
    info["mlflow_db_creation_s"] = time.perf_counter() - t
    assert (root / "mlflow.db").exists(), "the tracking database was not created in the store"
    t = time.perf_counter()
    exp_id = tracking.experiment_id(store, EXPERIMENT)
    info["experiment_creation_s"] = time.perf_counter() - t
    uri = mlflow.get_tracking_uri()
    assert uri == f"sqlite:///{root / 'mlflow.db'}", uri
    env["mlflow"] = mlflow.__version__
    env["tracking_uri"] = uri
    env["telemetry_disabled"] = os.environ.get("MLFLOW_DISABLE_TELEMETRY", "unset")
    client = mlflow.MlflowClient()

    from IPython.core.interactiveshell import InteractiveShell

    env["ipython"] = __import__("IPython").__version__
    os.environ["NBOPS_HOME"] = str(root)  # the kernel's store is this one (like tests/test_magics.py)
    InteractiveShell.clear_instance()
    shell = InteractiveShell.instance()
    shell.extension_manager.load_extension("nbops")
    print(
        f"store open {info['store_open_s'] * 1000:.0f} ms; import mlflow {info['import_mlflow_s']:.1f} s; "
        f"MLflow DB creation {info['mlflow_db_creation_s']:.1f} s (untimed below); "
        f"experiment {info['experiment_creation_s'] * 1000:.0f} ms",
        flush=True,
    )

    figures: list[Figure] = []
    ops_by_name: dict[str, Op] = {}

    # -- 1. empty %%track cell ----------------------------------------------------------
    print(f"\n[1/3] empty %%track cell vs mlflow.start_run + end_run ({repeats} rounds) ...", flush=True)

    def bare_run(_: Any) -> str:
        active = mlflow.start_run(experiment_id=exp_id)
        mlflow.end_run()
        return str(active.info.run_id)

    def magic_cell(_: Any) -> tuple[Any, str]:
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            result = shell.run_cell(MAGIC_CELL)
        return result, out.getvalue()

    def check_magic(res: tuple[Any, str]) -> None:
        result, out = res
        if not result.success or "FINISHED" not in out or mlflow.active_run() is not None:
            raise AssertionError(f"%%track cell did not finish cleanly: {result!r}\n{out}")

    def api_track(_: Any) -> Any:
        with nbops.track(experiment=EXPERIMENT, store=store) as run:
            pass
        return run

    def check_api(run: Any) -> None:
        assert run.status == "FINISHED" and mlflow.active_run() is None, run

    ops1 = [
        Op("baseline: mlflow.start_run + end_run", bare_run),
        Op("nbops: %%track empty cell (IPython)", magic_cell, check=check_magic),
        Op("nbops: with nbops.track(): pass", api_track, check=check_api),
        Op("info: shell.run_cell('pass')", lambda _: shell.run_cell("pass")),
    ]
    _warm(ops1)
    run_interleaved(ops1, repeats)
    ops_by_name.update({op.name: op for op in ops1})
    base1, magic1, api1, shell1 = ops1
    figures.append(ratio_figure("track_cell", "1. %%track empty cell / start_run+end_run", magic1, base1, 1.25))
    figures.append(ratio_figure("track_api", "1b. nbops.track() empty / start_run+end_run", api1, base1, None))
    figures.append(
        Figure(
            "shell_floor",
            "1c. shell.run_cell('pass') (info)",
            shell1.best,
            None,
            median=statistics.median(shell1.times),
            cpu=shell1.best_cpu,
        )
    )

    # Breakdown: same cells, with timers around the main calls (not a profiler).
    bd = Breakdown()
    instrument(bd)
    try:
        magic_totals: list[float] = []
        for _ in range(repeats):
            t = time.perf_counter()
            check_magic(magic_cell(None))
            magic_totals.append(time.perf_counter() - t)
        magic_parts = dict(bd.totals)
        bd.reset()
        base_totals: list[float] = []
        for _ in range(repeats):
            t = time.perf_counter()
            bare_run(None)
            base_totals.append(time.perf_counter() - t)
        base_parts = dict(bd.totals)
    finally:
        bd.restore()
    n = repeats
    breakdown = {
        label: {
            "track_ms": magic_parts.get(label, 0.0) / n * 1000,
            "baseline_ms": base_parts.get(label, 0.0) / n * 1000,
        }
        for label in sorted(set(magic_parts) | set(base_parts), key=lambda k: -magic_parts.get(k, 0.0))
    }
    breakdown["other (IPython, tags, socket, Run, stdout)"] = {
        "track_ms": (sum(magic_totals) - sum(magic_parts.values())) / n * 1000,
        "baseline_ms": (sum(base_totals) - sum(base_parts.values())) / n * 1000,
    }
    breakdown["total (mean per cell, timers on)"] = {
        "track_ms": sum(magic_totals) / n * 1000,
        "baseline_ms": sum(base_totals) / n * 1000,
    }
    info["track_cell_breakdown_ms"] = breakdown

    profile_text = None
    if args.profile:
        prof = cProfile.Profile()
        prof.enable()
        for _ in range(repeats):
            magic_cell(None)
        prof.disable()
        buf = io.StringIO()
        stats = pstats.Stats(prof, stream=buf)
        stats.sort_stats("cumulative").print_stats(r"nbops|mlflow/tracking|sqlalchemy_store|subprocess|psutil", 30)
        stats.sort_stats("tottime").print_stats(15)
        profile_text = buf.getvalue()

    # -- 2. 1,000 metrics ----------------------------------------------------------------
    print(
        f"[2/3] {args.metrics:,} metrics: nbops.log vs one log_batch ({repeats} rounds), "
        f"vs log_metric calls ({slow_repeats} rounds) ...",
        flush=True,
    )
    rng = np.random.default_rng(args.seed)
    keys = [f"metric_{i:04d}" for i in range(args.metrics)]
    values = [float(v) for v in rng.random(args.metrics)]

    log_calls: list[float] = []  # the nbops.log loop alone, inside the timed operation

    def nbops_enter(_round: int) -> Any:
        cm = nbops.track(experiment=EXPERIMENT, store=store)
        run = cm.__enter__()
        return cm, run

    def nbops_log(arg: tuple[Any, Any]) -> str:
        cm, run = arg
        t0 = time.perf_counter()
        for k, v in zip(keys, values, strict=False):
            nbops.log(**{k: v})
        log_calls.append(time.perf_counter() - t0)
        cm.__exit__(None, None, None)
        return str(run.run_id)

    def mlflow_enter(_round: int) -> str:
        return str(mlflow.start_run(experiment_id=exp_id).info.run_id)

    def batch_log(run_id: str) -> str:
        now = int(time.time() * 1000)
        client.log_batch(
            run_id, metrics=[Metric(k, v, now, 0) for k, v in zip(keys, values, strict=False)], synchronous=True
        )
        mlflow.end_run()
        return run_id

    def metric_calls(run_id: str) -> str:
        for k, v in zip(keys, values, strict=False):
            mlflow.log_metric(k, v)
        mlflow.end_run()
        return run_id

    def check_metrics(run_id: str) -> None:
        run = client.get_run(run_id)
        assert run.info.status == "FINISHED", run.info
        assert len(run.data.metrics) == args.metrics, len(run.data.metrics)
        assert run.data.metrics[keys[-1]] == values[-1]

    ops2 = [
        Op("baseline: Metric x N + log_batch + end_run", batch_log, setup=mlflow_enter, check=check_metrics),
        Op("nbops: nbops.log x N + end of run", nbops_log, setup=nbops_enter, check=check_metrics),
    ]
    _warm(ops2, 1)
    run_interleaved(ops2, repeats)
    ops_by_name.update({op.name: op for op in ops2})
    figures.append(
        ratio_figure("log_metrics", f"2. nbops.log x{args.metrics} / log_batch + end_run", ops2[1], ops2[0], 1.1)
    )
    info["nbops_log_calls_s_best"] = min(log_calls)
    info["nbops_log_calls_s_median"] = statistics.median(log_calls)
    op2b = Op("info: mlflow.log_metric x N + end_run", metric_calls, setup=mlflow_enter, check=check_metrics)
    run_interleaved([op2b], slow_repeats)
    ops_by_name[op2b.name] = op2b
    figures.append(
        Figure(
            "log_metrics_vs_calls",
            f"2b. nbops.log x{args.metrics} / log_metric x{args.metrics}",
            ops2[1].best,
            op2b.best,
            cpu=ops2[1].best_cpu / op2b.best_cpu,
        )
    )

    # -- 3. a 1M-row input ---------------------------------------------------------------
    print(f"[3/3] a {args.rows:,}-row input: end of run with it vs empty ({input_repeats} rounds) ...", flush=True)
    t = time.perf_counter()
    df = sb.make_frame(args.rows, args.seed)
    info["frame_build_s"] = time.perf_counter() - t
    info["frame_bytes"] = int(df.memory_usage(deep=True, index=True).sum())
    t = time.perf_counter()
    ref = store.snapshot(df, NAME)
    info["snapshot_s"] = time.perf_counter() - t
    info["snapshot_bytes_written"] = ref.bytes_written
    input_ref = f"{NAME}@{ref.version}"
    print(
        f"  frame {args.rows:,} x {df.shape[1]} ({fmt_bytes(info['frame_bytes'])}) snapshotted as "
        f"{input_ref} in {info['snapshot_s']:.2f} s (untimed)",
        flush=True,
    )

    def enter_with_input(_round: int) -> tuple[Any, Any]:
        cm, run = nbops_enter(_round)
        try:
            store.load_table(NAME)  # the read the run records (untimed)
            assert [tuple(r)[-2:] for r in run.reads] == [("snapshot", input_ref)], run.reads
        except BaseException:
            cm.__exit__(*sys.exc_info())
            raise
        return cm, run

    def exit_run(arg: tuple[Any, Any]) -> Any:
        cm, run = arg
        cm.__exit__(None, None, None)
        return run

    def check_input(run: Any) -> None:
        got = client.get_run(run.run_id)
        names = [d.dataset.name for d in got.inputs.dataset_inputs]
        assert got.info.status == "FINISHED" and names == [input_ref], (got.info.status, names)

    def check_empty(run: Any) -> None:
        got = client.get_run(run.run_id)
        assert got.info.status == "FINISHED" and not got.inputs.dataset_inputs, got

    ops3 = [
        Op("nbops: end of run, no input", exit_run, setup=nbops_enter, check=check_empty),
        Op(f"nbops: end of run, {args.rows:,}-row input", exit_run, setup=enter_with_input, check=check_input),
    ]
    _warm(ops3, 1)
    run_interleaved(ops3, input_repeats)
    ops_by_name.update({op.name: op for op in ops3})
    empty3, with3 = ops3
    diffs = [a - b for a, b in zip(with3.times, empty3.times, strict=False)]
    input_cost = with3.best - empty3.best
    figures.append(
        Figure(
            "input_cost",
            f"3. input cost: end with {args.rows:,}-row input - empty",
            input_cost,
            None,
            abs_target=0.050,
            median=statistics.median(diffs),
            cpu=with3.best_cpu - empty3.best_cpu,
        )
    )
    figures.append(ratio_figure("input_end_ratio", "3b. end of run with input / empty (info)", with3, empty3, None))

    if not args.skip_mlflow_dataset:
        print(f"  mlflow.data.from_pandas + log_input ({slow_repeats} rounds) ...", flush=True)
        ds_runs: list[str] = []

        def mlflow_dataset(run_id: str) -> str:
            dataset = mlflow.data.from_pandas(df, name=NAME)
            mlflow.log_input(dataset, context="training")
            return run_id

        def end_dataset_run(run_id: str) -> None:
            mlflow.end_run()
            got = client.get_run(run_id)
            assert [d.dataset.name for d in got.inputs.dataset_inputs] == [NAME], got.inputs
            ds_runs.append(run_id)

        op3c = Op(
            "info: mlflow.data.from_pandas + log_input", mlflow_dataset, setup=mlflow_enter, check=end_dataset_run
        )
        run_interleaved([op3c], slow_repeats)
        ops_by_name[op3c.name] = op3c
        figures.append(
            Figure(
                "input_vs_mlflow_dataset",
                "3c. nbops input cost / from_pandas+log_input",
                max(input_cost, 0.0),
                op3c.best,
                cpu=max(with3.best_cpu - empty3.best_cpu, 0.0) / op3c.best_cpu,
            )
        )

    # -- report ---------------------------------------------------------------------------
    shell.extension_manager.unload_extension("nbops")
    shell.atexit_operations()  # closes its history database now, before the temp folder goes
    atexit.unregister(shell.atexit_operations)
    InteractiveShell.clear_instance()
    store.close()
    maxrss = process_peak_bytes()
    env["loadavg_end"] = loadavg()
    print(
        f"\nResults: load average {env['loadavg_start']} -> {env['loadavg_end']} (1/5/15 min, {env['cpus']} CPUs; "
        "other load on the machine skews times)"
    )
    print(
        f"Setup (untimed): store open {info['store_open_s'] * 1000:.0f} ms, import mlflow "
        f"{info['import_mlflow_s']:.2f} s, MLflow DB creation {info['mlflow_db_creation_s']:.2f} s, "
        f"snapshot of the input {info['snapshot_s']:.2f} s"
    )
    print("\nTimings (ms unless marked s)")
    print(f"{'operation':<46} {'best':>9} {'median':>9} {'best cpu':>9} {'rounds':>6} {'peak RSS':>10} {'+peak':>10}")
    for op in ops_by_name.values():
        print(
            f"{op.name:<46} {_ms(op.best):>9} {_ms(statistics.median(op.times)):>9} {_ms(op.best_cpu):>9} "
            f"{len(op.times):>6} {fmt_bytes(op.peak):>10} {fmt_bytes(op.peak_delta):>10}"
        )
    print(
        f"  (of figure 2's nbops time, the {args.metrics:,} nbops.log calls alone: best "
        f"{_ms(info['nbops_log_calls_s_best'])}, median {_ms(info['nbops_log_calls_s_median'])})"
    )
    print(
        f"\nWhere an empty %%track cell spends its time (exclusive ms per cell, mean of {n} cells, "
        "timers around these calls, no profiler)"
    )
    print(f"{'part':<56} {'%%track':>9} {'bare mlflow':>12}")
    for label, row in breakdown.items():
        print(f"{label:<56} {row['track_ms']:>9.2f} {row['baseline_ms']:>12.2f}")
    if profile_text:
        print(f"\ncProfile of {repeats} %%track cells (cumulative, filtered; then tottime)")
        print(profile_text)
    print(
        f"\nMemory: process peak RSS {fmt_bytes(maxrss)} (max of ru_maxrss and every VmHWM before a reset); "
        "per operation: peak = VmHWM reset just before it, +peak = peak minus RSS at its start"
    )
    print(
        "\nFigures (ratio = nbops / baseline, wall time, best of N / best of N; median = median of per-round "
        "ratios, or of per-round differences for 3; cpu = the same with process CPU time, best/best, info)"
    )
    print_figures(figures)
    misses = [f.key for f in figures if f.ok is False]
    print(f"\n{'ALL TARGETS MET' if not misses else 'MISSED: ' + ', '.join(misses)}")

    if args.json:
        doc = {
            "env": env,
            "figures": [asdict(f) for f in figures],
            "operations": {
                op.name: {
                    "best_s": op.best,
                    "median_s": statistics.median(op.times),
                    "rounds_s": op.times,
                    "best_cpu_s": op.best_cpu,
                    "rounds_cpu_s": op.cpu,
                    "peak_rss_bytes": op.peak,
                    "peak_rss_delta_bytes": op.peak_delta,
                }
                for op in ops_by_name.values()
            },
            "peak_rss_bytes": maxrss,
            "info": info,
            "misses": misses,
        }
        Path(args.json).write_text(json.dumps(doc, indent=2, default=str) + "\n")
        print(f"wrote {args.json}")
    return 1 if (args.strict and misses) else 0


if __name__ == "__main__":
    sys.exit(main())
