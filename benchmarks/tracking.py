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
import shutil
import sys
import tempfile
from pathlib import Path

from _tracking.run import run


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
        return run(args, work)
    finally:
        if args.keep:
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
