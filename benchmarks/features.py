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
import contextlib
import cProfile
import hashlib
import json
import os
import platform
import pstats
import resource
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
from _harness import fmt_bytes, git_state, loadavg, process_peak_bytes, release_memory, reset_peak, status_kib

import nbops

KEY = "cc_num"
TIME = "ts"
LABEL = "label"
#: Feature columns of each group: name -> kind ("f" float64, "i" int64).
GROUPS: dict[str, dict[str, str]] = {
    "g1": {"amount_mean": "f", "amount_max": "f", "n_tx": "i"},
    "g2": {"risk_score": "f", "n_declines": "i"},
}
REFS = [f"{g}.*" for g in GROUPS]
ONLINE_GROUP = "tx_online"
ONLINE_REFS = [f"{ONLINE_GROUP}.amount_mean", f"{ONLINE_GROUP}.n_tx"]
START = np.datetime64("2024-01-01T00:00:00", "us")

RATIO_TARGET = 1.2
RSS_TARGET = 4 * 1024**3
P99_TARGET = 1e-3  # seconds, one key


# -- data ----------------------------------------------------------------------
def _times(rng: np.random.Generator, rows: int, days: int, unit: str) -> np.ndarray:
    offsets = rng.integers(0, days * 86_400_000_000, rows)  # microseconds
    times = START + offsets.astype("timedelta64[us]")
    return times.astype(f"datetime64[{unit}]")


def make_spine(rows: int, keys: int, days: int, seed: int, unit: str) -> pd.DataFrame:
    rng = np.random.default_rng([seed, 0])
    return pd.DataFrame(
        {
            KEY: rng.integers(0, keys, rows, dtype=np.int64),
            TIME: _times(rng, rows, days, unit),
            LABEL: rng.random(rows) < 0.05,
        }
    )


def make_group(name: str, rows: int, keys: int, days: int, seed: int, unit: str) -> tuple[pd.DataFrame, int]:
    """A group's frame and how many duplicate (key, time) rows were dropped."""
    rng = np.random.default_rng([seed, 1 + list(GROUPS).index(name)])
    columns: dict[str, Any] = {
        KEY: rng.integers(0, keys, rows, dtype=np.int64),
        TIME: _times(rng, rows, days, unit),
    }
    for feature, kind in GROUPS[name].items():
        if kind == "f":
            columns[feature] = np.round(rng.lognormal(3.0, 1.0, rows), 2)
        else:
            columns[feature] = rng.integers(0, 200, rows, dtype=np.int64)
    frame = pd.DataFrame(columns)
    deduped = frame.drop_duplicates(subset=[KEY, TIME], keep="last").reset_index(drop=True)
    return deduped, rows - len(deduped)


def register_groups(store: nbops.Store, groups: dict[str, pd.DataFrame], commits: int) -> dict[str, float]:
    """Register each group (in ``commits`` slices of its rows); seconds per group."""
    seconds = {}
    for name, frame in groups.items():
        t0 = time.perf_counter()
        for part in np.array_split(np.arange(len(frame)), max(1, commits)):
            store.register_features(frame.iloc[part], name, keys=[KEY], event_time=TIME)
        seconds[name] = time.perf_counter() - t0
    return seconds


# -- the operations compared -------------------------------------------------------
def ours(store: nbops.Store, spine: pd.DataFrame) -> pd.DataFrame:
    return store.training_data(spine, REFS, event_time=TIME)


def _duckdb_query(spine_columns: Sequence[str], order: bool = True) -> str:
    select = [f's."{c}"' for c in spine_columns]
    joins = []
    for i, (name, features) in enumerate(GROUPS.items(), 1):
        select += [f'f{i}."{f}"' for f in features]
        joins.append(f"ASOF LEFT JOIN {name} AS f{i} ON s.{KEY} = f{i}.{KEY} AND s.{TIME} >= f{i}.{TIME}")
    query = f"SELECT {', '.join(select)} FROM spine AS s {' '.join(joins)}"
    return query + (" ORDER BY s.__rn" if order else "")


def duckdb_pandas(spine: pd.DataFrame, groups: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """Raw DuckDB, pandas frames in, ``.df()`` out."""
    connection = duckdb.connect()
    try:
        connection.register("spine", spine.assign(__rn=np.arange(len(spine), dtype=np.int64)))
        for name, frame in groups.items():
            connection.register(name, frame)
        return connection.sql(_duckdb_query(list(spine.columns))).df()
    finally:
        connection.close()


def duckdb_arrow(spine: pd.DataFrame, groups: dict[str, pa.Table], order: bool = True) -> pd.DataFrame:
    """Raw DuckDB, Arrow tables in (the spine converted inside the time), Arrow out, then pandas."""
    connection = duckdb.connect()
    try:
        table = pa.Table.from_pandas(spine, preserve_index=False)
        table = table.append_column("__rn", pa.array(np.arange(len(spine), dtype=np.int64)))
        connection.register("spine", table)
        for name, group in groups.items():
            connection.register(name, group)
        return connection.sql(_duckdb_query(list(spine.columns), order)).to_arrow_table().to_pandas()
    finally:
        connection.close()


def merge_asof(spine: pd.DataFrame, groups: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """pandas.merge_asof, sorts and the restore of spine order included."""
    order = np.argsort(spine[TIME].to_numpy(), kind="stable")
    left = spine.take(order)
    for frame in groups.values():
        right = frame.sort_values(TIME, kind="stable")
        left = pd.merge_asof(left, right, on=TIME, by=KEY, direction="backward")
    result = left.take(np.argsort(order, kind="stable"))
    result.index = spine.index
    return result


def feature_names() -> list[str]:
    return [f for features in GROUPS.values() for f in features]


def mismatches(spine: pd.DataFrame, ours_frame: pd.DataFrame, other: pd.DataFrame) -> int:
    """Differing values (NaN/NA equal), or -1 when rows or spine columns differ."""
    if len(other) != len(spine) or len(ours_frame) != len(spine):
        return -1
    for c in spine.columns:
        if not np.array_equal(other[c].to_numpy(), spine[c].to_numpy()):
            return -1
    bad = 0
    for c in feature_names():
        a = ours_frame[c].astype("float64").to_numpy(na_value=np.nan)
        b = other[c].astype("float64").to_numpy(na_value=np.nan)
        bad += int((~((a == b) | (np.isnan(a) & np.isnan(b)))).sum())
    return bad


# -- measuring (the same method as benchmarks/snapshot.py) ----------------------------
@dataclass
class Op:
    name: str
    run: Callable[[], Any]
    check: Callable[[Any], None] | None = None
    times: list[float] = field(default_factory=list)
    peak: int | None = None
    peak_delta: int | None = None

    @property
    def best(self) -> float:
        return min(self.times)


def run_interleaved(ops: list[Op], repeats: int) -> None:
    for _ in range(repeats):
        for op in ops:
            release_memory()
            can_reset = reset_peak()
            rss0 = status_kib("VmRSS")
            t0 = time.perf_counter()
            result = op.run()
            elapsed = time.perf_counter() - t0
            hwm = status_kib("VmHWM") if can_reset else None
            op.times.append(elapsed)
            if hwm is not None and rss0 is not None:
                op.peak = max(op.peak or 0, hwm * 1024)
                op.peak_delta = max(op.peak_delta or 0, (hwm - rss0) * 1024)
            if op.check is not None:
                op.check(result)
            del result


def paired_median(a: Op, b: Op) -> float:
    return statistics.median(x / y for x, y in zip(a.times, b.times, strict=True))


def _source_digest() -> str:
    """Short digest of the nbops sources timed (pit.py may be changing under us)."""
    src = Path(nbops.__file__).resolve().parent
    h = hashlib.sha256()
    for name in ("pit.py", "features.py", "online.py", "columns.py"):
        with contextlib.suppress(OSError):
            h.update((src / name).read_bytes())
    return h.hexdigest()[:12]


# -- reporting -------------------------------------------------------------------
@dataclass
class Figure:
    key: str
    label: str
    ours: float
    baseline: float | None
    unit: str  # "s", "ms" (value in seconds) or "B"
    target: float | None  # None: informative
    target_on: str = "ratio"  # "ratio" or "value"
    ratio: float | None = None
    ok: bool | None = None

    def __post_init__(self) -> None:
        if self.baseline:
            self.ratio = self.ours / self.baseline
        if self.target is not None:
            measured = self.ours if self.target_on == "value" else self.ratio
            self.ok = measured is not None and measured <= self.target


def _fmt(value: float | None, unit: str) -> str:
    if value is None:
        return "-"
    if unit == "s":
        return f"{value:.3f} s"
    if unit == "ms":
        return f"{value * 1000:.3f} ms"
    return fmt_bytes(value)


def _fmt_target(f: Figure) -> str:
    if f.target is None:
        return "-"
    if f.target_on == "ratio":
        return f"<={f.target:g}"
    return "<=" + _fmt(f.target, f.unit).replace(" ", "")


def print_figures(figures: list[Figure]) -> None:
    head = f"{'figure':<58} {'nbops':>11} {'baseline':>11} {'ratio':>7} {'target':>9}  result"
    print(head)
    print("-" * len(head))
    for f in figures:
        result = "info" if f.ok is None else ("PASS" if f.ok else "MISS")
        ratio = f"{f.ratio:.3f}" if f.ratio is not None else "-"
        print(
            f"{f.label:<58} {_fmt(f.ours, f.unit):>11} {_fmt(f.baseline, f.unit):>11} "
            f"{ratio:>7} {_fmt_target(f):>9}  {result}"
        )


def print_ops(ops: Sequence[Op]) -> None:
    print(f"  {'operation':<44} {'best':>8} {'all rounds':<26} {'peak RSS':>10} {'+peak':>10}")
    for op in ops:
        rounds = " ".join(f"{t:.3f}" for t in op.times)
        print(f"  {op.name:<44} {op.best:>8.3f} {rounds:<26} {fmt_bytes(op.peak):>10} {fmt_bytes(op.peak_delta):>10}")


# -- one join at a given spine size -------------------------------------------------
def compare_joins(
    label: str,
    store: nbops.Store,
    spine: pd.DataFrame,
    frames: dict[str, pd.DataFrame],
    tables: dict[str, pa.Table],
    repeats: int,
    with_merge_asof: bool = True,
    multi_store: tuple[int, nbops.Store] | None = None,
) -> tuple[dict[str, Op], dict[str, int]]:
    checks: dict[str, int] = {}
    reference: dict[str, pd.DataFrame] = {}

    def keep_ours(result: pd.DataFrame) -> None:
        if "ours" not in reference:
            assert result.index.equals(spine.index), "training_data changed the spine index"
            assert list(result.columns[: spine.shape[1]]) == list(spine.columns)
            reference["ours"] = result

    def checker(name: str) -> Callable[[pd.DataFrame], None]:
        def check(result: pd.DataFrame) -> None:
            if name not in checks:
                checks[name] = mismatches(spine, reference["ours"], result)

        return check

    ops = [
        Op("nbops: store.training_data", lambda: ours(store, spine), keep_ours),
        Op("duckdb: pandas in, .df() out", lambda: duckdb_pandas(spine, frames), checker("duckdb_pandas")),
        Op("duckdb: arrow in, arrow out, .to_pandas()", lambda: duckdb_arrow(spine, tables), checker("duckdb_arrow")),
        Op("info: duckdb arrow, no ORDER BY (unordered)", lambda: duckdb_arrow(spine, tables, order=False)),
    ]
    if with_merge_asof:
        ops.append(
            Op("pandas: merge_asof (+sorts, +reorder)", lambda: merge_asof(spine, frames), checker("merge_asof"))
        )
    if multi_store is not None:
        commits, other = multi_store
        ops.append(
            Op(
                f"info: training_data, groups in {commits} commits",
                lambda: ours(other, spine),
                checker(f"nbops_{commits}_commits"),
            )
        )
    print(f"{label}: {len(ops)} operations x {repeats} rounds, interleaved ...", flush=True)
    run_interleaved(ops, repeats)
    reference.clear()
    return {op.name: op for op in ops}, checks


def best_duckdb(ops: dict[str, Op]) -> Op:
    candidates = [ops["duckdb: pandas in, .df() out"], ops["duckdb: arrow in, arrow out, .to_pandas()"]]
    return min(candidates, key=lambda op: op.best)


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
        str(Path(__file__).resolve()),
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


# -- where the time goes ------------------------------------------------------------
def profile_call(store: nbops.Store, spine: pd.DataFrame) -> list[tuple[str, float]]:
    """cProfile of one call, folded into stages (names missing after a refactor just drop out)."""
    profiler = cProfile.Profile()
    release_memory()
    t0 = time.perf_counter()
    profiler.enable()
    ours(store, spine)
    profiler.disable()
    wall = time.perf_counter() - t0
    stats = pstats.Stats(profiler).stats  # type: ignore[attr-defined]

    def cum(file_suffix: str, function: str) -> float:
        return sum(v[3] for (f, _line, fn), v in stats.items() if f.endswith(file_suffix) and fn == function)

    def called_from(file_suffix: str, function: str, callee_filter: Callable[[str, str], bool]) -> float:
        """Cumulative time of callees (matching the filter) when called by file:function."""
        total = 0.0
        for (f, _line, fn), v in stats.items():
            if not callee_filter(f, fn):
                continue
            for (cf, _cl, cfn), (_cc, _nc, _tt, ct) in v[4].items():
                if cf.endswith(file_suffix) and cfn == function:
                    total += ct
        return total

    total = cum("nbops/featurestore/groups.py", "training_data")
    read = cum("nbops/core/columns.py", "read_table")
    merge = cum("nbops/featurestore/groups.py", "_merge")
    pit = cum("nbops/featurestore/pit.py", "point_in_time_join")
    match = cum("nbops/featurestore/pit.py", "_match")
    duck = called_from("nbops/featurestore/pit.py", "_match", lambda f, fn: "duckdb" in f or "duckdb" in fn)
    plan = cum("nbops/featurestore/pit.py", "_plan") + cum("nbops/featurestore/pit.py", "spine_column")
    gather = cum("nbops/featurestore/pit.py", "_gathered")
    stages = [
        ("read group objects (Parquet, columns.read_table)", read),
        ("merge of commits (features._merge)", merge),
        ("catalog queries, references, other outside the join", total - read - merge - pit),
        ("join: spine to Arrow, order keys (pit._plan)", plan),
        ("join: DuckDB ASOF query, registration, fetch", duck),
        ("join: scatter back by row number (rest of pit._match)", match - duck),
        ("join: gather feature values (pit._gathered)", gather),
        ("join: pandas frame build and the rest", pit - plan - match - gather),
        ("total (profiled call)", total),
        ("wall time of the profiled call", wall),
    ]
    return stages


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
        return _run(args, max(1, args.repeats), work)
    finally:
        if args.keep:
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


def _run(args: argparse.Namespace, repeats: int, work: Path) -> int:
    env: dict[str, Any] = {
        "spine_rows": args.spine_rows,
        "big_spine_rows": None if args.skip_10m else args.big_spine_rows,
        "group_rows": args.group_rows,
        "keys": args.keys,
        "days": args.days,
        "time_unit": args.time_unit,
        "commits": args.commits,
        "multi_commits": args.multi_commits or None,
        "seed": args.seed,
        "repeats": repeats,
        "python": platform.python_version(),
        "pandas": pd.__version__,
        "pyarrow": pa.__version__,
        "duckdb": duckdb.__version__,
        "numpy": np.__version__,
        "nbops": nbops.__version__,
        "git": git_state(),
        "sources": _source_digest(),
        "cpus": os.cpu_count(),
        "workdir": str(work),
        "loadavg_start": loadavg(),
    }
    print("nbops feature benchmark  " + "  ".join(f"{k}={v}" for k, v in env.items() if v is not None))

    t0 = time.perf_counter()
    frames: dict[str, pd.DataFrame] = {}
    dropped: dict[str, int] = {}
    for name in GROUPS:
        frames[name], dropped[name] = make_group(name, args.group_rows, args.keys, args.days, args.seed, args.time_unit)
    tables = {name: pa.Table.from_pandas(f, preserve_index=False) for name, f in frames.items()}
    spine = make_spine(args.spine_rows, args.keys, args.days, args.seed, args.time_unit)
    print(
        f"data: spine {len(spine):,} rows; groups "
        + ", ".join(
            f"{n} {len(f):,} rows x {len(GROUPS[n])} features ({dropped[n]} duplicate key/time rows dropped)"
            for n, f in frames.items()
        )
        + f"; built in {time.perf_counter() - t0:.1f} s"
    )

    # Registration into a fresh store (timed once, not part of any figure).
    store_path = work / "store"
    store = nbops.open(store_path)
    register_seconds = register_groups(store, frames, args.commits)
    print(
        "registration (fresh store, once): "
        + ", ".join(f"{n} {s:.2f} s ({len(frames[n]) / s / 1e6:.2f} M rows/s)" for n, s in register_seconds.items())
    )

    multi: tuple[int, nbops.Store] | None = None
    if args.multi_commits > 1 and args.multi_commits != args.commits:
        multi_store = nbops.open(work / "store-multi")
        seconds = register_groups(multi_store, frames, args.multi_commits)
        register_seconds.update({f"{n} ({args.multi_commits} commits)": s for n, s in seconds.items()})
        print(
            f"registration in {args.multi_commits} commits each (second store, once): "
            + ", ".join(f"{n} {s:.2f} s" for n, s in seconds.items())
        )
        multi = (args.multi_commits, multi_store)

    # Warm-up on a small spine: imports, DuckDB start-up, first-call caches.
    small = spine.head(1000)
    ours(store, small)
    if multi is not None:
        ours(multi[1], small)
    duckdb_pandas(small, frames)
    duckdb_arrow(small, tables)
    merge_asof(small, frames)

    figures: list[Figure] = []
    info: dict[str, Any] = {"register_seconds": register_seconds, "duplicates_dropped": dropped}
    all_ops: dict[str, dict[str, Op]] = {}
    checks: dict[str, dict[str, int]] = {}

    # -- 1. training data, 1M spine ---------------------------------------------------
    n1 = f"{args.spine_rows / 1e6:g}M"
    ops1, checks["1"] = compare_joins(
        f"[1/3] training_data, {n1} spine rows", store, spine, frames, tables, repeats, multi_store=multi
    )
    all_ops["1"] = ops1
    base1 = best_duckdb(ops1)
    o1 = ops1["nbops: store.training_data"]
    info["figure1_duckdb_baseline"] = base1.name
    figures.append(
        Figure(
            "training_data",
            f"1. training_data {n1} / raw duckdb ASOF (best way)",
            o1.best,
            base1.best,
            "s",
            RATIO_TARGET,
        )
    )
    figures.append(
        Figure(
            "training_data_vs_merge_asof",
            f"1b. training_data {n1} / pandas merge_asof",
            o1.best,
            ops1["pandas: merge_asof (+sorts, +reorder)"].best,
            "s",
            None,
        )
    )
    figures.append(
        Figure(
            "training_data_vs_unordered",
            f"1c. training_data {n1} / duckdb without ORDER BY",
            o1.best,
            ops1["info: duckdb arrow, no ORDER BY (unordered)"].best,
            "s",
            None,
        )
    )
    info["figure1_paired_median_ratio"] = paired_median(o1, base1)
    if multi is not None:
        om = ops1[f"info: training_data, groups in {multi[0]} commits"]
        figures.append(
            Figure(
                "training_data_multi_commit",
                f"1d. training_data {n1}, groups in {multi[0]} commits / duckdb",
                om.best,
                base1.best,
                "s",
                None,
            )
        )

    profiles: dict[str, list[tuple[str, float]]] = {}
    if not args.no_profile:
        profiles[f"{args.commits} commit(s)"] = profile_call(store, spine)
        if multi is not None:
            profiles[f"{multi[0]} commits"] = profile_call(multi[1], spine)

    # -- 2. training data, 10M spine ---------------------------------------------------
    children: dict[str, Any] = {}
    if not args.skip_10m:
        n2 = f"{args.big_spine_rows / 1e6:g}M"
        big = make_spine(args.big_spine_rows, args.keys, args.days, args.seed, args.time_unit)
        ops2, checks["2"] = compare_joins(
            f"[2/3] training_data, {n2} spine rows",
            store,
            big,
            frames,
            tables,
            repeats,
            with_merge_asof=not args.no_merge_asof_10m,
        )
        all_ops["2"] = ops2
        del big
        release_memory()
        base2 = best_duckdb(ops2)
        o2 = ops2["nbops: store.training_data"]
        info["figure2_duckdb_baseline"] = base2.name
        info["figure2_paired_median_ratio"] = paired_median(o2, base2)
        figures.append(
            Figure(
                "training_data_10m",
                f"2. training_data {n2} / raw duckdb ASOF (best way)",
                o2.best,
                base2.best,
                "s",
                RATIO_TARGET,
            )
        )
        if "pandas: merge_asof (+sorts, +reorder)" in ops2:
            figures.append(
                Figure(
                    "training_data_10m_vs_merge_asof",
                    f"2b. training_data {n2} / pandas merge_asof",
                    o2.best,
                    ops2["pandas: merge_asof (+sorts, +reorder)"].best,
                    "s",
                    None,
                )
            )
        print("      peak RSS of one call, each in its own subprocess ...", flush=True)
        for what in ("ours", "duckdb"):
            children[what] = measure_child(what, args, store_path, args.big_spine_rows)
        ours_child, duck_child = children["ours"], children["duckdb"]
        if ours_child is not None:
            figures.append(
                Figure(
                    "training_data_10m_peak_rss",
                    f"2c. peak RSS, training_data {n2} (subprocess)",
                    ours_child["peak"],
                    duck_child["peak"] if duck_child else None,
                    "B",
                    RSS_TARGET,
                    target_on="value",
                )
            )
            if ours_child["rss_before"] is not None:
                figures.append(
                    Figure(
                        "training_data_10m_peak_rss_delta",
                        "2d. +peak RSS above the call's start (subprocess)",
                        ours_child["peak"] - ours_child["rss_before"],
                        (duck_child["peak"] - duck_child["rss_before"])
                        if duck_child and duck_child["rss_before"] is not None
                        else None,
                        "B",
                        None,
                    )
                )

    # -- 3. online lookups --------------------------------------------------------------
    print("[3/3] online lookups ...", flush=True)
    online_store = nbops.open(work / "online")
    t0 = time.perf_counter()
    online_store.register_features(frames["g1"], ONLINE_GROUP, keys=[KEY], event_time=TIME, online=True)
    info["online_register_seconds"] = time.perf_counter() - t0
    latest = frames["g1"].sort_values(TIME, kind="stable").drop_duplicates(KEY, keep="last").set_index(KEY)
    online_keys = latest.index.to_numpy()
    info["online_keys"] = len(online_keys)
    print(
        f"      registered {len(frames['g1']):,} rows online ({len(online_keys):,} keys) "
        f"in {info['online_register_seconds']:.2f} s (once, untimed in the figures)"
    )
    raw = _raw_online(online_store)
    online = _online_latencies(online_store, raw, latest, args)
    info["online"] = online
    figures.append(
        Figure(
            "online_1key_p99",
            "3. online_features, 1 key, p99",
            online["1"]["p99"],
            online["1"].get("raw_p99"),
            "ms",
            P99_TARGET,
            target_on="value",
        )
    )
    figures.append(
        Figure(
            "online_1key_p50",
            "3b. online_features, 1 key, p50",
            online["1"]["p50"],
            online["1"].get("raw_p50"),
            "ms",
            None,
        )
    )
    nb = args.online_batch
    figures.append(
        Figure(
            "online_batch_p99",
            f"3c. online_features, {nb:,} keys, p99",
            online[str(nb)]["p99"],
            online[str(nb)].get("raw_p99"),
            "ms",
            None,
        )
    )
    figures.append(
        Figure(
            "online_batch_p50",
            f"3d. online_features, {nb:,} keys, p50",
            online[str(nb)]["p50"],
            online[str(nb)].get("raw_p50"),
            "ms",
            None,
        )
    )
    online_store.close()
    store.close()
    if multi is not None:
        multi[1].close()

    # -- report -------------------------------------------------------------------------
    maxrss = process_peak_bytes()
    env["loadavg_end"] = loadavg()
    print(
        f"\nResults: best of {repeats} rounds, interleaved; load average {env['loadavg_start']} -> "
        f"{env['loadavg_end']} (1/5/15 min, {env['cpus']} CPUs; other load skews times)"
    )
    for key, ops in all_ops.items():
        print(f"\nTimings, figure {key} (seconds; peak = VmHWM reset before the operation, +peak = above its start)")
        print_ops(list(ops.values()))
    for key, found in checks.items():
        text = ", ".join(
            f"{k}: {'rows/spine columns differ' if v < 0 else f'{v} differing values'}" for k, v in found.items()
        )
        print(f"check {key}: training_data against {text}")
    print(
        f"\nFigure 1 baseline: {info['figure1_duckdb_baseline']} (the faster way in this run); "
        f"median of per-round ratios {info['figure1_paired_median_ratio']:.3f}"
    )
    if "figure2_duckdb_baseline" in info:
        print(
            f"Figure 2 baseline: {info['figure2_duckdb_baseline']}; "
            f"median of per-round ratios {info['figure2_paired_median_ratio']:.3f}"
        )
    for what, child in children.items():
        if child:
            print(
                f"Memory child {what}: {child['rows']:,} rows in {child['seconds']:.2f} s, peak "
                f"{fmt_bytes(child['peak'])}, RSS before the call {fmt_bytes(child['rss_before'])}"
                + ("" if child["reset"] else " (no clear_refs: peak is ru_maxrss of the whole child)")
            )
    if profiles:
        print(
            f"\nWhere training_data's time goes ({n1} spine rows, cProfile of one extra call per store; "
            "DuckDB and Arrow run threads, counted where the main thread waits):"
        )
        print(f"  {'groups in':<56}" + "".join(f"{k:>20}" for k in profiles))
        for i, (name, _) in enumerate(next(iter(profiles.values()))):
            cells = []
            for stages in profiles.values():
                seconds, total = stages[i][1], dict(stages).get("total (profiled call)") or 1.0
                cells.append(f"{seconds:8.3f} s {seconds / total:6.1%}")
            print(f"  {name:<56}" + "".join(f"{c:>20}" for c in cells))
    o = online
    print(
        f"\nOnline ({info['online_keys']:,} keys): 1 key x {o['1']['calls']} calls p50 "
        f"{o['1']['p50'] * 1e3:.3f} ms p99 {o['1']['p99'] * 1e3:.3f} ms max {o['1']['max'] * 1e3:.3f} ms; "
        f"{nb:,} keys x {o[str(nb)]['calls']} calls p50 {o[str(nb)]['p50'] * 1e3:.2f} ms p99 "
        f"{o[str(nb)]['p99'] * 1e3:.2f} ms; baseline = raw sqlite3 indexed query + json.loads of the same rows"
    )
    print(f"Memory: process peak RSS {fmt_bytes(maxrss)}")
    print("\nFigures (ratio = nbops / baseline; targets on the ratio, or on the value for RSS and latency)")
    print_figures(figures)
    misses = [f.key for f in figures if f.ok is False]
    bad_checks = [f"check{k}:{n}" for k, found in checks.items() for n, v in found.items() if v != 0]
    print(
        f"\n{'ALL TARGETS MET' if not misses else 'MISSED: ' + ', '.join(misses)}"
        + (f"; CHECKS FAILED: {', '.join(bad_checks)}" if bad_checks else "; checks: 0 differing values")
    )

    if args.json:
        doc = {
            "env": env,
            "figures": [asdict(f) for f in figures],
            "operations": {
                key: {
                    op.name: {
                        "best_s": op.best,
                        "rounds_s": op.times,
                        "peak_rss_bytes": op.peak,
                        "peak_rss_delta_bytes": op.peak_delta,
                    }
                    for op in ops.values()
                }
                for key, ops in all_ops.items()
            },
            "checks": checks,
            "memory_children": children,
            "profile_stages_s": {k: dict(v) for k, v in profiles.items()},
            "peak_rss_bytes": maxrss,
            "info": info,
            "misses": misses,
        }
        Path(args.json).write_text(json.dumps(doc, indent=2, default=str) + "\n")
        print(f"wrote {args.json}")
    return 1 if (args.strict and (misses or bad_checks)) else 0


# -- online ---------------------------------------------------------------------------
def _raw_online(store: nbops.Store) -> Callable[[list[int]], dict[str, Any]] | None:
    """The indexed query on the online table with plain sqlite3 (None if the layout is not as expected)."""
    try:
        db = sqlite3.connect(f"file:{store.root / 'catalog.db'}?mode=ro", uri=True, check_same_thread=False)
        version_id = db.execute(
            "SELECT v.id FROM feature_group_versions v JOIN feature_groups g ON g.id = v.group_id "
            "WHERE g.name = ? ORDER BY v.version DESC LIMIT 1",
            (ONLINE_GROUP,),
        ).fetchone()[0]

        def lookup(keys: list[int]) -> dict[str, Any]:
            found: dict[str, Any] = {}
            for start in range(0, len(keys), 500):
                chunk = [json.dumps([k]) for k in keys[start : start + 500]]
                rows = db.execute(
                    "SELECT entity_key, feature_values FROM online_features WHERE group_version_id = ? "
                    f"AND entity_key IN ({','.join('?' * len(chunk))})",
                    (version_id, *chunk),
                ).fetchall()
                found.update((e, json.loads(v)) for e, v in rows)
            return found

        lookup([0])
        return lookup
    except (sqlite3.Error, TypeError, IndexError) as exc:
        print(f"      raw sqlite3 baseline unavailable: {exc}")
        return None


def _percentiles(ns: list[int]) -> dict[str, float]:
    a = np.asarray(ns, dtype=np.float64) / 1e9
    return {
        "p50": float(np.percentile(a, 50)),
        "p99": float(np.percentile(a, 99)),
        "mean": float(a.mean()),
        "max": float(a.max()),
    }


def _online_latencies(
    store: nbops.Store,
    raw: Callable[[list[int]], dict[str, Any]] | None,
    latest: pd.DataFrame,
    args: argparse.Namespace,
) -> dict[str, dict[str, Any]]:
    rng = np.random.default_rng([args.seed, 9])
    keys = latest.index.to_numpy()
    out: dict[str, dict[str, Any]] = {}
    for size, calls in ((1, max(args.online_calls, 1)), (args.online_batch, max(args.online_batch_calls, 1))):
        size = min(size, len(keys))
        batches = [[int(k) for k in rng.choice(keys, size, replace=False)] for _ in range(calls)]
        for batch in batches[: min(50, calls)]:  # warm-up: plan cache, SQLite pages
            store.online_features(ONLINE_REFS, keys={KEY: batch})
        ours_ns: list[int] = []
        raw_ns: list[int] = []
        for batch in batches:
            t0 = time.perf_counter_ns()
            frame = store.online_features(ONLINE_REFS, keys={KEY: batch})
            ours_ns.append(time.perf_counter_ns() - t0)
            if raw is not None:
                t0 = time.perf_counter_ns()
                raw(batch)
                raw_ns.append(time.perf_counter_ns() - t0)
        # Untimed check of the last answer against the latest row per key of the frame.
        expected = latest.loc[batch]
        assert len(frame) == len(batch) and frame[KEY].tolist() == batch
        assert np.allclose(frame["amount_mean"].to_numpy(dtype=float), expected["amount_mean"].to_numpy())
        assert (frame["n_tx"].to_numpy(dtype="int64") == expected["n_tx"].to_numpy()).all()
        result: dict[str, Any] = {"keys_per_call": size, "calls": calls, **_percentiles(ours_ns)}
        if raw_ns:
            result.update({f"raw_{k}": v for k, v in _percentiles(raw_ns).items()})
        out[str(args.online_batch) if size != 1 else "1"] = result
    return out


if __name__ == "__main__":
    sys.exit(main())
