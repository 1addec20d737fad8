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
import contextlib
import json
import os
import platform
import re
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from _harness import fmt_bytes, git_state, loadavg, process_peak_bytes, release_memory, reset_peak, status_kib

import nbops
from nbops.core.hashing import column_digest, table_digest

NAME = "bench"
COMPRESSION = "zstd"


# -- data ----------------------------------------------------------------------
def make_frame(rows: int, seed: int) -> pd.DataFrame:
    """A deterministic 10-column frame of typical transaction-table dtypes."""
    rng = np.random.default_rng(seed)
    n = rows
    categories = [
        f"{dept}/{kind}"
        for dept in ("grocery", "home", "garden", "toys", "books", "sports", "beauty", "auto")
        for kind in ("new", "used", "refurb", "promo", "bundle")
    ]  # 40 labels
    discount = np.round(rng.uniform(0.0, 0.3, n), 2)
    discount[rng.random(n) < 0.02] = np.nan  # 2% missing -> Arrow nulls
    start = np.datetime64("2024-01-01T00:00:00", "ns")
    offsets_ms = np.sort(rng.integers(0, 365 * 86_400_000, n))
    return pd.DataFrame(
        {
            "id": np.arange(1_000_000_000, 1_000_000_000 + n, dtype=np.int64),  # sequential key
            "customer_id": rng.integers(0, max(1, n // 10), n, dtype=np.int64),
            "amount": np.round(rng.lognormal(3.0, 1.0, n), 2),  # money, cents
            "discount": discount,  # float64 with nulls
            "score": rng.random(n),  # model output, full precision float64
            "temperature": rng.normal(20.0, 5.0, n).astype(np.float32),
            "category": pd.Categorical.from_codes(rng.integers(0, len(categories), n), categories=categories),
            "created_at": start + offsets_ms.astype("timedelta64[ms]").astype("timedelta64[ns]"),
            "is_returned": rng.random(n) < 0.05,
            "quantity": rng.integers(1, 20, n, dtype=np.int64).astype(np.int32),
        }
    )


def change_one_column(df: pd.DataFrame, column: str, seed: int) -> pd.DataFrame:
    """A copy of ``df`` with 1% of ``column``'s values corrected (+10%)."""
    rng = np.random.default_rng(seed + 1)
    out = df.copy()
    values = out[column].to_numpy(copy=True)
    mask = rng.random(len(values)) < 0.01
    values[mask] = np.round(values[mask] * 1.1, 2)
    out[column] = values
    return out


# -- measuring -----------------------------------------------------------------
def _io_wchar() -> int | None:
    try:
        m = re.search(r"^wchar:\s+(\d+)", Path("/proc/self/io").read_text(), re.M)
    except OSError:
        return None
    return int(m.group(1)) if m else None


def dir_size(path: Path) -> int:
    total = 0
    for folder, _dirs, files in os.walk(path):
        for f in files:
            with contextlib.suppress(FileNotFoundError):
                total += os.stat(os.path.join(folder, f)).st_size
    return total


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@dataclass
class Op:
    """One timed operation: ``setup(round)`` (untimed) returns the argument of ``run``."""

    name: str
    run: Callable[[Any], Any]
    setup: Callable[[int], Any] = lambda _round: None
    check: Callable[[Any], None] | None = None  # untimed, after each run
    times: list[float] = field(default_factory=list)
    peak: int | None = None  # bytes, max over rounds
    peak_delta: int | None = None  # bytes above RSS at start, max over rounds
    last: Any = None

    @property
    def best(self) -> float:
        return min(self.times)


def run_interleaved(ops: list[Op], repeats: int, keep_last: bool = False) -> None:
    for r in range(repeats):
        for op in ops:
            arg = op.setup(r)
            release_memory()
            can_reset = reset_peak()
            rss0 = status_kib("VmRSS")
            t0 = time.perf_counter()
            result = op.run(arg)
            elapsed = time.perf_counter() - t0
            hwm = status_kib("VmHWM") if can_reset else None
            op.times.append(elapsed)
            if hwm is not None and rss0 is not None:
                op.peak = max(op.peak or 0, hwm * 1024)
                op.peak_delta = max(op.peak_delta or 0, (hwm - rss0) * 1024)
            if op.check is not None:
                op.check(result)
            op.last = result if keep_last else None
            del result, arg


# -- reporting -----------------------------------------------------------------
@dataclass
class Figure:
    key: str
    label: str
    ours: float
    baseline: float
    unit: str  # "s" or "B"
    target: float | None  # ratio must be <= target; None: informative only
    ratio: float = 0.0
    ok: bool | None = None

    def __post_init__(self) -> None:
        self.ratio = self.ours / self.baseline if self.baseline else float("inf")
        self.ok = None if self.target is None else self.ratio <= self.target


def _fmt(value: float, unit: str) -> str:
    if unit == "s":
        return f"{value:.3f} s"
    return fmt_bytes(value)


def print_figures(figures: list[Figure]) -> None:
    head = f"{'figure':<52} {'nbops':>11} {'baseline':>11} {'ratio':>7} {'target':>7}  result"
    print(head)
    print("-" * len(head))
    for f in figures:
        target = f"<={f.target:g}" if f.target is not None else "-"
        result = "info" if f.ok is None else ("PASS" if f.ok else "MISS")
        print(
            f"{f.label:<52} {_fmt(f.ours, f.unit):>11} {_fmt(f.baseline, f.unit):>11} "
            f"{f.ratio:>7.3f} {target:>7}  {result}"
        )


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
        return _run(args, repeats, work)
    finally:
        if args.keep:
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


def _run(args: argparse.Namespace, repeats: int, work: Path) -> int:
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
        _fsync(fsync_file)

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
        w0 = _io_wchar()
        ref = store0.snapshot(df, NAME)
        w1 = _io_wchar()
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


if __name__ == "__main__":
    sys.exit(main())
