"""The tracking benchmark itself: setup, figures 1-3 on one store's embedded backend, then the report."""

from __future__ import annotations

import argparse
import atexit
import contextlib
import cProfile
import io
import json
import os
import platform
import pstats
import statistics
import sys
import time
import warnings
from dataclasses import asdict
from pathlib import Path
from typing import Any

from _harness import fmt_bytes, git_state, loadavg, process_peak_bytes
from _snapshot.data import make_frame

import nbops
from _tracking.breakdown import Breakdown, instrument
from _tracking.measure import Figure, Op, fmt_ms, print_figures, ratio_figure, run_interleaved

# The caller's tracking settings must not redirect the runs (nbops sets its own at open).
_CALLER_ENV = {k: os.environ.pop(k, None) for k in ("MLFLOW_TRACKING_URI", "NBOPS_MLFLOW_TRACKING_URI", "NBOPS_HOME")}
EXPERIMENT = "bench"
NAME = "bench"
MAGIC_CELL = f"%%track --experiment {EXPERIMENT}\npass"


def _warm(ops: list[Op], rounds: int = 2) -> None:
    for _ in range(rounds):
        for op in ops:
            result = op.run(op.setup(-1))
            if op.check is not None:
                op.check(result)


def run(args: argparse.Namespace, work: Path) -> int:
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
    os.environ["NBOPS_HOME"] = str(root)  # the kernel's store is this one (like tests/magics/test_magics.py)
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
    df = make_frame(args.rows, args.seed)
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
            f"{op.name:<46} {fmt_ms(op.best):>9} {fmt_ms(statistics.median(op.times)):>9} {fmt_ms(op.best_cpu):>9} "
            f"{len(op.times):>6} {fmt_bytes(op.peak):>10} {fmt_bytes(op.peak_delta):>10}"
        )
    print(
        f"  (of figure 2's nbops time, the {args.metrics:,} nbops.log calls alone: best "
        f"{fmt_ms(info['nbops_log_calls_s_best'])}, median {fmt_ms(info['nbops_log_calls_s_median'])})"
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
