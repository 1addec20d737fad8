"""Feature store benchmark: training_data against raw DuckDB and pandas, and online lookups.

Run (from the repository root)::

    PYTHONPATH=src python benchmarks/features.py                       # 1M and 10M spine rows (~5 min)
    PYTHONPATH=src python benchmarks/features.py --spine-rows 100000 --group-rows 100000 --skip-10m
    PYTHONPATH=src python benchmarks/features.py --json results.json

Data (deterministic, ``numpy.random.default_rng([seed, stream])``, so the
spine does not depend on the group sizes and a subprocess can rebuild it):

* spine: ``cc_num`` int64 among ``--keys`` (100k) keys, ``ts`` uniform over
  ``--days`` (90) days, ``label`` bool -- ``--spine-rows`` rows (1M) for
  figure 1 and ``--big-spine-rows`` (10M) for figure 2;
* groups ``g1`` (``amount_mean`` float64, ``amount_max`` float64, ``n_tx``
  int64) and ``g2`` (``risk_score`` float64, ``n_declines`` int64), each
  ``--group-rows`` rows (1M, also at 10M spine rows) over the same keys and
  days, duplicate (cc_num, ts) pairs dropped (a registration refuses them).
  Times are ``datetime64[us]`` (``--time-unit ns`` for nanoseconds).

The groups are registered in a fresh store first, each in ``--commits``
data commits (default 1); registration is timed once and reported apart.
A second store holds the same groups registered in ``--multi-commits``
(default 4) commits of a quarter of the rows each, no row updated: figure 1d
(info) shows what the merge on read of several commits costs.

Every timed operation runs ``--repeats`` rounds (best of 3), interleaved
round by round (round 1 of each, then round 2 ...) with ``time.perf_counter``,
so drift and other load hit all sides alike; the median of the per-round
ratios is printed next to the best-vs-best ratio.

1. ``store.training_data(spine, ["g1.*", "g2.*"], event_time="ts")`` against

   * raw DuckDB: a fresh connection, the spine plus a row number and the two
     groups registered, one query ``SELECT s.<spine columns>, f1.<features>,
     f2.<features> FROM s ASOF LEFT JOIN f1 ON s.cc_num = f1.cc_num AND s.ts >=
     f1.ts ASOF LEFT JOIN f2 ... ORDER BY s.__rn``.  Two ways of feeding and
     fetching are timed: pandas frames in, ``.df()`` out; Arrow tables in,
     ``.to_arrow_table().to_pandas()`` out (the spine's conversion to Arrow is
     inside the time, the groups are in memory in both forms already).  The
     figure's baseline is the faster of the two in this run.  The same Arrow
     query without ORDER BY (rows in any order, not a usable result) is
     timed as an informative floor;
   * ``pandas.merge_asof``: stable sort of the spine by time, sort of each
     group by time, two ``merge_asof(on="ts", by="cc_num")``, restore of the
     spine order -- all inside the time.

   Our result is checked (untimed) against both (and the multi-commit call
   against ours): same rows in spine order and 0 differing feature values.
2. The same at ``--big-spine-rows`` (10M) spine rows, groups unchanged.
   Peak RSS of our call is measured in a subprocess that only builds the
   spine, opens the store, makes one small warm-up call, then resets the
   kernel's peak mark (``echo 5 > /proc/self/clear_refs``) and runs the call
   once: "peak" is VmHWM after the call (spine, interpreter and libraries
   included), "+peak" the growth above the RSS just before it.  The raw
   DuckDB baseline is measured the same way (its child also holds the group
   frames).  In the main process every timed operation also gets a
   peak/+peak from the same reset, as in benchmarks/snapshot.py.
3. Online lookups: a group (the ``g1`` frame, ``--keys`` keys) registered
   with ``online=True`` in a second store; then ``store.online_features(
   ["tx_online.amount_mean", "tx_online.n_tx"], keys={"cc_num": [k]})`` for
   ``--online-calls`` (2000) random single keys and ``--online-batch-calls``
   (200) calls of ``--online-batch`` (1000) distinct random keys, after a
   warm-up; p50/p99 of per-call ``perf_counter_ns``.  The informative
   baseline is the indexed SQLite query plus ``json.loads`` of the same rows
   on a raw ``sqlite3`` connection, run right after each of our calls with
   the same keys.

A cProfile of one extra figure-1 call per store (``--no-profile`` skips
it) prints where our time goes: Parquet reads, the merge of commits, the
DuckDB ASOF query, the numpy scatter and gather, the pandas frame.  The
stages are found by function name in nbops.featurestore.groups / nbops.featurestore.pit /
nbops.core.columns; a renamed function just lands in another line.

The machine may be loaded by other processes: the load average is printed at
start and end.  This is a benchmark, not a test: it exits 0 whether targets
pass or miss (``--strict`` exits 1 on a miss).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

from _features.child import child_main
from _features.run import run


# -- the benchmark -------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--spine-rows", type=int, default=1_000_000, help="figure 1 spine rows (default 1M)")
    parser.add_argument("--big-spine-rows", type=int, default=10_000_000, help="figure 2 spine rows (default 10M)")
    parser.add_argument("--group-rows", type=int, default=1_000_000, help="rows per feature group (default 1M)")
    parser.add_argument("--skip-10m", action="store_true", help="skip figure 2")
    parser.add_argument("--keys", type=int, default=100_000)
    parser.add_argument("--days", type=int, default=90)
    parser.add_argument("--time-unit", choices=("us", "ns"), default="us")
    parser.add_argument("--commits", type=int, default=1, help="data commits per group (default 1)")
    parser.add_argument(
        "--multi-commits",
        type=int,
        default=4,
        help="also time training_data (figure 1, info) on a store where each group has this "
        "many commits, to see the merge on read (default 4, 0: skip)",
    )
    parser.add_argument("--seed", type=int, default=20240601)
    parser.add_argument("--repeats", type=int, default=3, help="best of N (default 3)")
    parser.add_argument("--no-merge-asof-10m", action="store_true", help="skip merge_asof at 10M spine rows")
    parser.add_argument("--online-calls", type=int, default=2000, help="one-key lookups (default 2000)")
    parser.add_argument("--online-batch", type=int, default=1000, help="keys per batch lookup (default 1000)")
    parser.add_argument("--online-batch-calls", type=int, default=200, help="batch lookups (default 200)")
    parser.add_argument("--no-profile", action="store_true", help="skip the cProfile breakdown")
    parser.add_argument("--tmpdir", default=None, help="where the stores go (default: system temp)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    parser.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")
    parser.add_argument("--child", choices=("ours", "duckdb"), help=argparse.SUPPRESS)
    parser.add_argument("--child-store", help=argparse.SUPPRESS)
    parser.add_argument("--child-spine-rows", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        return child_main(args)
    work = Path(tempfile.mkdtemp(prefix="nbops-bench-features-", dir=args.tmpdir))
    try:
        return run(args, max(1, args.repeats), work)
    finally:
        if args.keep:
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
