"""Peak RSS of one call at the big spine size, each measured in its own subprocess (``features.py --child``)."""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pyarrow as pa
from _harness import release_memory, reset_peak, status_kib

import nbops
from _features.data import GROUPS, duckdb_arrow, make_group, make_spine, ours

#: The benchmark's script, run again with ``--child`` by :func:`measure_child`.
SCRIPT = Path(__file__).resolve().parents[1] / "features.py"


# -- memory of one call in a subprocess ----------------------------------------------
def child_main(args: argparse.Namespace) -> int:
    """Run once what --child names and print its peak RSS as JSON (used by the parent)."""
    spine = make_spine(args.child_spine_rows, args.keys, args.days, args.seed, args.time_unit)
    if args.child == "ours":
        store = nbops.open(args.child_store)
        ours(store, spine.head(1000))  # imports, DuckDB start-up

        def run() -> object:
            return ours(store, spine)

    else:
        tables = {
            name: pa.Table.from_pandas(
                make_group(name, args.group_rows, args.keys, args.days, args.seed, args.time_unit)[0],
                preserve_index=False,
            )
            for name in GROUPS
        }
        duckdb_arrow(spine.head(1000), tables)

        def run() -> object:
            return duckdb_arrow(spine, tables)

    release_memory()
    can_reset = reset_peak()
    rss0 = status_kib("VmRSS")
    t0 = time.perf_counter()
    result = run()
    seconds = time.perf_counter() - t0
    hwm = status_kib("VmHWM")
    rows = len(result)
    del result
    ru = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(
        json.dumps(
            {
                "what": args.child,
                "rows": rows,
                "seconds": seconds,
                "reset": can_reset,
                "rss_before": None if rss0 is None else rss0 * 1024,
                "peak": (hwm * 1024) if (can_reset and hwm is not None) else ru,
                "ru_maxrss": ru,
            }
        )
    )
    return 0


def measure_child(what: str, args: argparse.Namespace, store_path: Path, rows: int) -> dict[str, Any] | None:
    command = [
        sys.executable,
        str(SCRIPT),
        "--child",
        what,
        "--child-store",
        str(store_path),
        "--child-spine-rows",
        str(rows),
        "--group-rows",
        str(args.group_rows),
        "--keys",
        str(args.keys),
        "--days",
        str(args.days),
        "--seed",
        str(args.seed),
        "--time-unit",
        args.time_unit,
    ]
    done = subprocess.run(command, check=False, capture_output=True, text=True, env=os.environ.copy())
    if done.returncode != 0:
        print(f"  memory child {what!r} failed:\n{done.stderr[-2000:]}")
        return None
    return json.loads(done.stdout.strip().splitlines()[-1])
