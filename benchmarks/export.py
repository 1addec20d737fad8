"""Export benchmark: ``nbops.exporting.export`` of a long (200-code-cell) FTI notebook.

Run (from the repository root)::

    PYTHONPATH=src python benchmarks/export.py                        # 200 code cells, best of 5 (~1 min)
    PYTHONPATH=src python benchmarks/export.py --repeats 2 --import-runs 1 --scale-cells ""   # smoke test
    PYTHONPATH=src python benchmarks/export.py --json results.json

The notebook is built here with ``nbformat.v4``, deterministically (fixed cell
ids, fixed execution counts, outputs generated from ``--seed``), and reads like
a long feature / training / inference notebook: a parameters cell, ``!pip`` /
``%pip install``, ``%matplotlib inline`` and other display magics, 10 import
cells, constants with multi-line strings, 30 helper-function cells, 40 feature
cells (tag ``feature``, ``# nbops: feature``, ``%%features`` magics,
``%snapshot`` lines, ``%%time``), 40 training cells (tags, ``%%track`` cells,
``nbops.track`` blocks, ``nbops.log``), 30 inference cells, 20 exploratory
cells tagged ``skip`` (``df.head()``, plots), untagged display / ``%%time``
support cells, and markdown cells between sections (markdown cells are not
counted in the 200).  With ``--notebook PATH`` an existing notebook is
measured instead.

Figures (time.perf_counter, ``time.process_time`` beside it):

1. ``export(nb, out=fresh_dir, store=fresh_store)`` after every import has
   been done (a warm-up export of a tiny notebook first); each round gets a
   new output folder and a new store (``nbops.open(tmp/...)``, opened
   untimed) for the catalog record.  Best of ``--repeats`` (5).  Target <= 1 s.
2. The same export again into the same folder and store, unchanged.  Best of
   ``--repeats``.  Checked every round: same version, ``result.unchanged``,
   ``result.written == []``, every file's (inode, size, mtime_ns) unchanged,
   one catalog row.  Whether the catalog database file changed is printed
   (info: an unchanged export still runs an UPDATE in a write transaction).
3. Imports, each in a fresh ``python`` subprocess (best of ``--import-runs``):
   ``import nbops.exporting``; then the modules a first ``export()`` imports
   (found by a discovery subprocess that opens a store and exports, and listed
   in first-import order), with ``-X importtime``'s top-level packages in one
   more subprocess; and, as info, the first export in a fresh process
   (imports included) and opening a fresh store.
4. Info: ``plan()`` alone, and export times at other notebook sizes
   (``--scale-cells``, best of 3) to show how the time grows with the cells.

Then a breakdown of one export with timers wrapped around the stages (no
profiler running), and a cProfile of one more export (top functions by own
time and by cumulative time).

This is a benchmark, not a test: it exits 0 whether targets pass or miss
(``--strict`` exits 1 on a miss).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

from _export.run import run


# ======================================================================================
# The benchmark
# ======================================================================================
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cells", type=int, default=200, help="code cells of the notebook (default 200)")
    parser.add_argument("--seed", type=int, default=20240601)
    parser.add_argument("--repeats", type=int, default=5, help="best of N for figures 1, 2 (default 5)")
    parser.add_argument("--import-runs", type=int, default=3, help="fresh subprocesses per import figure (default 3)")
    parser.add_argument(
        "--scale-cells",
        default="100,400",
        help="other notebook sizes timed for figure 4b, comma-separated ('' skips; default 100,400)",
    )
    parser.add_argument("--scale-repeats", type=int, default=3, help="best of N at the other sizes (default 3)")
    parser.add_argument("--no-outputs", action="store_true", help="build the notebook without cell outputs")
    parser.add_argument("--notebook", type=Path, help="measure this notebook instead of building one")
    parser.add_argument("--profile-top", type=int, default=12, help="rows of each profile table (default 12)")
    parser.add_argument("--tmpdir", default=None, help="where stores and outputs go (default: system temp)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    parser.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")
    args = parser.parse_args(argv)
    args.repeats = max(1, args.repeats)
    args.import_runs = max(1, args.import_runs)

    work = Path(tempfile.mkdtemp(prefix="nbops-bench-export-", dir=args.tmpdir)).resolve()
    try:
        return run(args, work)
    finally:
        if args.keep:
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
