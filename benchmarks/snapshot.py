"""Snapshot benchmark: nbops column snapshots against plain pyarrow/pandas Parquet.

Run (from the repository root)::

    PYTHONPATH=src python benchmarks/snapshot.py                     # 10M rows x 10 columns
    PYTHONPATH=src python benchmarks/snapshot.py --rows 100000       # smoke test
    PYTHONPATH=src python benchmarks/snapshot.py --json results.json

Every figure is a ratio measured in this one run: nbops time / baseline time
on the same frame, the same disk and the same (warm) page cache.  Each timed
operation is the best of ``--repeats`` (default 3) runs with
``time.perf_counter``; the operations of one figure run interleaved (round 1 of
each, then round 2 of each, ...) so that drift hits both sides alike.

1. new snapshot          store.snapshot(df) into a fresh store (opened untimed)
                         / pa.Table.from_pandas + pq.write_table(zstd), one file
2. unchanged re-snapshot store.snapshot(df) of a frame the store already has
                         / pa.Table.from_pandas + nbops.core.hashing.table_digest;
                         also checks ref.new is False and that the store folder
                         did not change size (and no write() syscall bytes)
3. one column changed    ref.bytes_written / ref.bytes_written of the first snapshot
                         (and the same from the objects folder's on-disk size)
4. load                  store.load(name, 1) / pandas.read_parquet(baseline file)
5. memory                peak RSS of each timed operation, measured in this
                         process: before each operation the kernel's peak-RSS
                         mark is reset (``echo 5 > /proc/self/clear_refs``, Linux)
                         and VmHWM is read after it.  "peak" is that mark,
                         "+peak" is the mark minus the RSS when the operation
                         started (measured after gc, Arrow's release_unused and
                         malloc_trim, so freed memory kept by allocators does not
                         hide the operation's own growth).  The process peak is
                         the max of ``ru_maxrss`` and every VmHWM read just before
                         a reset (a reset also lowers ``ru_maxrss``).  One process
                         rather than one subprocess per phase: the frame is built
                         once and every ratio compares operations run side by side.

The page cache cannot be dropped without root, so reads are warm reads and
writes go to the page cache (nbops fsyncs each object, the baseline does not;
the informative "write_table + fsync" row shows what durability costs).

This is a benchmark, not a test: it exits 0 whether targets pass or miss
(use ``--strict`` to exit 1 on a miss).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

from _snapshot.run import run


# -- the benchmark -------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=10_000_000, help="rows (default 10_000_000)")
    parser.add_argument("--seed", type=int, default=20240601)
    parser.add_argument("--repeats", type=int, default=3, help="best of N (default 3)")
    parser.add_argument(
        "--changed-column", default="amount", help="float column modified for figure 3 (default amount)"
    )
    parser.add_argument("--tmpdir", default=None, help="where the stores and files go (default: system temp)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    parser.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")
    args = parser.parse_args(argv)
    repeats = max(1, args.repeats)

    work = Path(tempfile.mkdtemp(prefix="nbops-bench-", dir=args.tmpdir))
    try:
        return run(args, repeats, work)
    finally:
        if args.keep:
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
