"""Panel benchmark: do the panels stay responsive with 10,000 versions and 10,000 runs?

Run (from the repository root)::

    PYTHONPATH=src python benchmarks/panels.py                 # 10,000 of each (~7 min to build, seconds to time)
    PYTHONPATH=src python benchmarks/panels.py --count 1000    # smoke test (~45 s)

A fresh store in a temporary folder gets ``--count`` versions of one dataset
(real ``store.snapshot`` calls) and ``--count`` finished runs with a metric
and a param in one experiment (real MLflow client calls).  Building is not
timed.  Then, best of ``--repeats``, interleaved round by round:

1. Open ``%snapshots`` (build the panel, read the history, draw page 1) /
   ``store.history(name)``, the plain API call it wraps.
2. Turn to the next page of versions (absolute; it re-slices what was read).
3. Open ``%runs`` (experiments, page 1 with MLflow's own paging) /
   ``MlflowClient.search_runs(max_results=50)``, the query it makes.
4. Turn to the next page of runs / the same ``search_runs`` with the page token.
5. Pick two versions of a 10,000-row dataset and show their diff with sample rows.

Each figure prints our time, the baseline's, their ratio and the peak RSS of
the process.  The panels send 50 rows to the browser whatever the count.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _harness import fmt_bytes, git_state, loadavg, process_peak_bytes  # noqa: E402


def best(fn: Callable[[], object], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return min(times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=10_000, help="versions and runs to create (default 10,000)")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    for name in ("MLFLOW_TRACKING_URI", "NBOPS_MLFLOW_TRACKING_URI", "NBOPS_HOME"):
        os.environ.pop(name, None)

    import numpy as np
    import pandas as pd
    from mlflow.entities import Metric, Param

    import nbops
    from nbops.tracking import experiments as tracking
    from nbops.widgets import RunsPanel, SnapshotsPanel

    work = Path(tempfile.mkdtemp(prefix="nbops-bench-panels-"))
    store = nbops.open(work / ".nbops")
    print(f"# panels benchmark: {args.count:,} versions and runs; {git_state()}; load {loadavg()}")
    started = time.perf_counter()
    for i in range(args.count):
        store.snapshot(pd.DataFrame({"a": [i], "b": [f"row {i}"]}), "many", message=f"version {i + 1}")
    experiment = tracking.experiment_id(store, "many")
    client = tracking.client()
    for i in range(args.count):
        run = client.create_run(experiment, run_name=f"run {i}", start_time=1_700_000_000_000 + i)
        client.log_batch(run.info.run_id, metrics=[Metric("auc", i / args.count, 0, 0)], params=[Param("C", str(i))])
        client.set_terminated(run.info.run_id)
    rng = np.random.default_rng(0)
    big = pd.DataFrame({"id": np.arange(10_000), "x": rng.normal(size=10_000)})
    store.snapshot(big, "big")
    big.loc[::100, "x"] += 1
    store.snapshot(big, "big")
    print(f"built in {time.perf_counter() - started:.0f} s\n")

    snapshots = SnapshotsPanel(store, "many")
    assert snapshots.last_error is None and len(snapshots.versions.rows) == 50
    runs = RunsPanel(store, "many")
    assert runs.last_error is None and len(runs.runs.rows) == 50
    token = client.search_runs([experiment], max_results=50, order_by=["attributes.start_time DESC"]).token

    def open_snapshots() -> None:
        panel = SnapshotsPanel(store, "many")
        assert len(panel.versions.rows) == 50

    def turn_snapshots() -> None:
        snapshots.pager.go(1 - snapshots.pager.page)  # flip between pages 1 and 2

    def open_runs() -> None:
        panel = RunsPanel(store, "many")
        assert len(panel.runs.rows) == 50

    def turn_runs() -> None:
        runs.turn(1 if runs._page == 0 else -1)

    def diff_big() -> None:
        panel = SnapshotsPanel(store, "big")
        panel.versions.selected = ["1", "2"]
        assert "big v1 → v2" in panel.detail.value

    figures = [
        ("open %snapshots / store.history", open_snapshots, lambda: store.history("many")),
        ("next page of versions (absolute)", turn_snapshots, None),
        (
            "open %runs / search_runs(50)",
            open_runs,
            lambda: client.search_runs([experiment], max_results=50, order_by=["attributes.start_time DESC"]),
        ),
        (
            "next page of runs / search_runs(token)",
            turn_runs,
            lambda: client.search_runs(
                [experiment], max_results=50, order_by=["attributes.start_time DESC"], page_token=token
            ),
        ),
        ("diff two versions of 10,000 rows (absolute)", diff_big, None),
    ]
    print(f"{'figure':46} {'ours':>10} {'baseline':>10} {'ratio':>7}")
    for label, ours, baseline in figures:
        ours_s = best(ours, args.repeats)
        base_s = best(baseline, args.repeats) if baseline else None
        ratio = f"{ours_s / base_s:7.2f}" if base_s else "      -"
        base_text = f"{base_s * 1000:8.1f}ms" if base_s else "         -"
        print(f"{label:46} {ours_s * 1000:8.1f}ms {base_text} {ratio}")
    print(f"\npeak RSS {fmt_bytes(process_peak_bytes())}")
    store.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
