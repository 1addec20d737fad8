"""The snapshot benchmark itself: figures 1-4 measured in one process, then the report."""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from _harness import fmt_bytes, git_state, loadavg, process_peak_bytes

import nbops
from _snapshot.data import change_one_column, make_frame
from _snapshot.measure import Figure, Op, dir_size, fsync_path, io_wchar, print_figures, run_interleaved
from nbops.core.hashing import column_digest, table_digest

NAME = "bench"
COMPRESSION = "zstd"


def run(args: argparse.Namespace, repeats: int, work: Path) -> int:
    env = {
        "rows": args.rows,
        "columns": 10,
        "seed": args.seed,
        "repeats": repeats,
        "python": platform.python_version(),
        "pandas": pd.__version__,
        "pyarrow": pa.__version__,
        "numpy": np.__version__,
        "nbops": nbops.__version__,
        "git": git_state(),
        "cpus": os.cpu_count(),
        "arrow_cpu_threads": pa.cpu_count(),
        "arrow_io_threads": pa.io_thread_count(),
        "workdir": str(work),
        "loadavg_start": loadavg(),
    }
    print("nbops snapshot benchmark  " + "  ".join(f"{k}={v}" for k, v in env.items()))

    t0 = time.perf_counter()
    df = make_frame(args.rows, args.seed)
    df_bytes = int(df.memory_usage(deep=True, index=True).sum())
    print(
        f"frame: {args.rows:,} rows x {df.shape[1]} columns, {fmt_bytes(df_bytes)} in memory, "
        f"built in {time.perf_counter() - t0:.1f} s"
    )
    print("dtypes: " + ", ".join(f"{c}:{t}" for c, t in df.dtypes.items()))
    if args.changed_column not in df.columns:
        raise SystemExit(f"--changed-column {args.changed_column!r} is not a column")

    # Warm-up on a small slice: imports, first-call caches, alembic, thread pools.
    small = df.head(1000)
    with nbops.open(work / "warmup") as s:
        s.snapshot(small, NAME)
        s.snapshot(small, NAME)
        s.load(NAME)
    pq.write_table(pa.Table.from_pandas(small), work / "warmup.parquet", compression=COMPRESSION)
    pd.read_parquet(work / "warmup.parquet")
    table_digest(pa.Table.from_pandas(small, preserve_index=None))
    shutil.rmtree(work / "warmup")

    figures: list[Figure] = []
    ops_by_name: dict[str, Op] = {}
    info: dict[str, Any] = {}

    # -- 1. new snapshot -----------------------------------------------------
    print(f"\n[1/4] new snapshot into a fresh store ({repeats} rounds) ...", flush=True)
    base_file = work / "baseline.parquet"
    stores: list[nbops.Store] = []
    open_times: list[float] = []

    def fresh_store(r: int) -> nbops.Store:
        t = time.perf_counter()
        store = nbops.open(work / f"store{r}")
        open_times.append(time.perf_counter() - t)
        stores.append(store)
        return store

    def baseline_write(_: None) -> None:
        table = pa.Table.from_pandas(df)
        pq.write_table(table, base_file, compression=COMPRESSION)

    arrow = [pa.Table.from_pandas(df)]  # a holder, emptied below to free the table
    write_only_file = work / "write_only.parquet"
    fsync_file = work / "write_fsync.parquet"

    def write_fsync(_: None) -> None:
        pq.write_table(arrow[0], fsync_file, compression=COMPRESSION)
        fsync_path(fsync_file)

    new_refs: list[Any] = []
    ops1 = [
        Op("baseline: from_pandas + write_table", baseline_write),
        Op(
            "baseline: write_table only",
            lambda _: pq.write_table(arrow[0], write_only_file, compression=COMPRESSION),
        ),
        Op("info: write_table only + fsync", write_fsync),
        Op("nbops: snapshot (new)", lambda store: new_refs.append(store.snapshot(df, NAME)), setup=fresh_store),
    ]
    run_interleaved(ops1, repeats)
    ops_by_name.update({op.name: op for op in ops1})
    arrow.clear()
    for extra in (write_only_file, fsync_file):
        extra.unlink(missing_ok=True)
    assert all(r.new and r.version == 1 for r in new_refs), new_refs
    first_ref = new_refs[0]
    base_size = base_file.stat().st_size
    store0 = stores[0]
    store0_objects = dir_size(store0.objects.objects_dir)
    info["store_open_seconds_best"] = min(open_times)
    info["first_snapshot_bytes_written"] = first_ref.bytes_written
    info["first_snapshot_objects_on_disk"] = store0_objects
    info["baseline_file_bytes"] = base_size
    b, w, ws, n = ops1
    figures.append(Figure("new_snapshot", "1. new snapshot / from_pandas+write_table", n.best, b.best, "s", 1.1))
    figures.append(
        Figure("new_snapshot_vs_write_only", "1b. new snapshot / write_table only", n.best, w.best, "s", None)
    )
    figures.append(
        Figure("write_fsync_vs_write_only", "1c. write_table+fsync / write_table (info)", ws.best, w.best, "s", None)
    )
    figures.append(
        Figure(
            "store_size_vs_one_file",
            "1d. store objects bytes / one-file bytes",
            first_ref.bytes_written,
            base_size,
            "B",
            None,
        )
    )

    # Per-column object sizes of the first snapshot (how figure 3 depends on the column).
    table_for_sizes = pa.Table.from_pandas(df, preserve_index=None)
    col_sizes = {
        name: store0.objects.path(column_digest(table_for_sizes.column(name))).stat().st_size
        for name in table_for_sizes.column_names
    }
    del table_for_sizes
    info["column_object_bytes"] = col_sizes

    # -- 2. unchanged re-snapshot ---------------------------------------------
    print(f"[2/4] unchanged re-snapshot ({repeats} rounds) ...", flush=True)
    root_size_before = dir_size(store0.root)
    objects_before = sorted(p.name for p in store0.objects.objects_dir.rglob("*"))
    wchar_deltas: list[int] = []

    def resnapshot(_: None) -> Any:
        w0 = io_wchar()
        ref = store0.snapshot(df, NAME)
        w1 = io_wchar()
        if w0 is not None and w1 is not None:
            wchar_deltas.append(w1 - w0)
        return ref

    def check_unchanged(ref: Any) -> None:
        assert ref.new is False, ref
        assert ref.bytes_written == 0, ref
        assert ref.version == 1 and ref.digest == first_ref.digest, ref

    def check_digest(digest: str) -> None:
        assert digest == first_ref.digest, "baseline digest differs from the snapshot digest"

    ops2 = [
        Op(
            "baseline: from_pandas + table_digest",
            lambda _: table_digest(pa.Table.from_pandas(df, preserve_index=None)),
            check=check_digest,
        ),
        Op("nbops: snapshot (unchanged)", resnapshot, check=check_unchanged),
    ]
    run_interleaved(ops2, repeats)
    ops_by_name.update({op.name: op for op in ops2})
    root_size_after = dir_size(store0.root)
    objects_after = sorted(p.name for p in store0.objects.objects_dir.rglob("*"))
    unchanged_ok = (
        root_size_after == root_size_before and objects_after == objects_before and all(d == 0 for d in wchar_deltas)
    )
    info["unchanged_store_bytes_before"] = root_size_before
    info["unchanged_store_bytes_after"] = root_size_after
    info["unchanged_write_syscall_bytes"] = wchar_deltas
    figures.append(
        Figure(
            "unchanged_snapshot", "2. unchanged re-snapshot / from_pandas+digest", ops2[1].best, ops2[0].best, "s", 1.2
        )
    )

    # -- 3. one column changed ------------------------------------------------
    print(f"[3/4] one column changed ({args.changed_column!r}, {repeats} rounds) ...", flush=True)
    changed = [change_one_column(df, args.changed_column, args.seed)]  # a holder, emptied below
    changed_refs: list[Any] = []
    disk_deltas: list[int] = []

    def changed_setup(r: int) -> tuple[nbops.Store, int]:
        return stores[r], dir_size(stores[r].objects.objects_dir)

    def changed_run(arg: tuple[nbops.Store, int]) -> tuple[nbops.Store, int, Any]:
        store, size0 = arg
        return store, size0, store.snapshot(changed[0], NAME)

    def changed_check(result: tuple[nbops.Store, int, Any]) -> None:
        store, size0, ref = result
        assert ref.new and ref.version == 2, ref
        changed_refs.append(ref)
        disk_deltas.append(dir_size(store.objects.objects_dir) - size0)

    ops3 = [Op("nbops: snapshot (one column changed)", changed_run, setup=changed_setup, check=changed_check)]
    run_interleaved(ops3, repeats)
    ops_by_name.update({op.name: op for op in ops3})
    changed.clear()
    changed_ref = changed_refs[0]
    info["changed_column"] = args.changed_column
    info["changed_snapshot_bytes_written"] = changed_ref.bytes_written
    info["changed_snapshot_disk_delta"] = disk_deltas[0]
    figures.append(
        Figure(
            "changed_bytes",
            "3. bytes written, one column changed / first",
            changed_ref.bytes_written,
            first_ref.bytes_written,
            "B",
            0.15,
        )
    )
    figures.append(
        Figure(
            "changed_disk",
            "3b. on-disk objects delta / first snapshot objects",
            disk_deltas[0],
            store0_objects,
            "B",
            0.15,
        )
    )
    figures.append(
        Figure(
            "changed_time_vs_new",
            "3c. changed snapshot time / new snapshot time",
            ops3[0].best,
            ops_by_name["nbops: snapshot (new)"].best,
            "s",
            None,
        )
    )

    # -- 4. load -------------------------------------------------------------
    print(f"[4/4] load ({repeats} rounds) ...", flush=True)
    load_store = stores[-1]

    def check_frame(loaded: pd.DataFrame) -> None:
        if not loaded.equals(df):
            raise AssertionError("loaded frame differs from the snapshotted frame")

    def check_table(table: pa.Table) -> None:
        assert table.num_rows == len(df) and table.num_columns == df.shape[1]

    ops4 = [
        Op("baseline: pandas.read_parquet", lambda _: pd.read_parquet(base_file), check=check_frame),
        Op("nbops: store.load", lambda _: load_store.load(NAME, 1), check=check_frame),
        Op("baseline: pq.read_table", lambda _: pq.read_table(base_file), check=check_table),
        Op("nbops: store.load_table", lambda _: load_store.load_table(NAME, 1), check=check_table),
    ]
    run_interleaved(ops4, repeats)
    ops_by_name.update({op.name: op for op in ops4})
    figures.append(Figure("load", "4. store.load / pandas.read_parquet", ops4[1].best, ops4[0].best, "s", 1.1))
    figures.append(
        Figure("load_table", "4b. store.load_table / pq.read_table (info)", ops4[3].best, ops4[2].best, "s", None)
    )

    for store in stores:
        store.close()

    # -- report --------------------------------------------------------------
    maxrss = process_peak_bytes()
    env["loadavg_end"] = loadavg()
    print(
        f"\nResults: {args.rows:,} rows x 10 columns, best of {repeats} (seconds), "
        f"frame {fmt_bytes(df_bytes)} in memory, load average {env['loadavg_start']} -> "
        f"{env['loadavg_end']} (1/5/15 min; other load on the machine skews times)"
    )
    print("\nTimings")
    print(f"{'operation':<42} {'best':>9} {'all rounds':<30} {'peak RSS':>10} {'+peak':>10}")
    for op in ops_by_name.values():
        rounds = " ".join(f"{t:.3f}" for t in op.times)
        print(f"{op.name:<42} {op.best:>9.3f} {rounds:<30} {fmt_bytes(op.peak):>10} {fmt_bytes(op.peak_delta):>10}")
    print("\nSizes")
    print(
        f"  baseline one file: {fmt_bytes(base_size)}; first snapshot wrote "
        f"{fmt_bytes(first_ref.bytes_written)} ({store0_objects:,} B of objects on disk); "
        f"store open took {min(open_times) * 1000:.0f} ms (untimed)"
    )
    total = sum(col_sizes.values()) or 1
    print("  column objects: " + ", ".join(f"{k} {fmt_bytes(v)} ({v / total:.0%})" for k, v in col_sizes.items()))
    print(
        f"  changed column {args.changed_column!r}: snapshot v2 wrote {changed_ref.bytes_written:,} B, "
        f"objects folder grew {disk_deltas[0]:,} B"
    )
    print(
        f"  unchanged re-snapshot: store folder {root_size_before:,} B -> {root_size_after:,} B, "
        f"write() syscall bytes per call {wchar_deltas}, ref.new=False: "
        f"{'verified (0 bytes written)' if unchanged_ok else 'FAILED: the store changed'}"
    )
    print(
        f"\nMemory: process peak RSS {fmt_bytes(maxrss)} (max of ru_maxrss and every VmHWM before a "
        "reset); per operation above: peak = VmHWM reset just before the operation, "
        "+peak = peak minus RSS at its start (after gc, Arrow release_unused and malloc_trim)"
    )
    print("\nFigures (ratio = nbops / baseline)")
    print_figures(figures)
    misses = [f.key for f in figures if f.ok is False]
    if not unchanged_ok:
        misses.append("unchanged_zero_bytes")
    print(f"\n{'ALL TARGETS MET' if not misses else 'MISSED: ' + ', '.join(misses)}")

    if args.json:
        doc = {
            "env": env,
            "frame_bytes": df_bytes,
            "figures": [asdict(f) for f in figures],
            "unchanged_zero_bytes_verified": unchanged_ok,
            "operations": {
                op.name: {
                    "best_s": op.best,
                    "rounds_s": op.times,
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
