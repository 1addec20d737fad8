"""Commit cost against history: inserting or upserting N rows into groups of growing size.

Run (from the repository root)::

    PYTHONPATH=src python benchmarks/commit_cost.py                           # groups of 1M, 10M, 50M rows
    PYTHONPATH=src python benchmarks/commit_cost.py --sizes 100000 1000000    # quick
    PYTHONPATH=src python benchmarks/commit_cost.py --engine spark            # commits from Spark DataFrames

For each size S, a fresh store gets a feature group of S rows (one commit,
untimed: int64 key among 100,000 cards, one row per second, a float and an
int feature), then, timed (best of ``--repeats``, each on a copy of that
store so every commit meets the same history):

* insert: ``register_features`` of ``--rows`` new rows (later times);
* upsert: ``register_features`` of ``--rows`` rows whose (key, time) already
  exist, with new values.

With ``--engine spark`` the timed commit registers a Spark DataFrame (built
and cached before the clock starts) on a ``local[2]`` session: executors
write it, Spark counts the replaced rows; the groups' history is the same
pandas commit (times in microseconds, what Spark holds).

Figure: ratio = time at the largest group / time at the smallest, per
operation. Target: <= 1.5 (a commit costs what it writes, not what the group
already holds). Peak RSS is per operation.

This is a benchmark, not a test: it exits 0 whether the target is met or not,
unless ``--strict`` is given.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

sys.path.insert(0, os.path.dirname(__file__))
from _harness import fmt_bytes, git_state, loadavg, release_memory, reset_peak, status_kib  # noqa: E402

import nbops  # noqa: E402

TARGET = 1.5
START = pd.Timestamp("2024-01-01", tz="UTC")


def frame(rows: int, first: int, seed: int) -> pd.DataFrame:
    """Rows ``first .. first + rows - 1``: one a second, cards in turn, random features."""
    rng = np.random.default_rng(seed)
    at = np.arange(first, first + rows)
    return pd.DataFrame(
        {
            "cc_num": at % 100_000,
            "ts": (START + pd.to_timedelta(at, unit="s")).astype("datetime64[us, UTC]"),
            "amount": rng.normal(size=rows),
            "n_tx": rng.integers(0, 50, rows),
        }
    )


def timed_commit(base: Path, work: Path, data: Any, repeats: int) -> tuple[float, int]:
    """Best time of ``register_features(data)`` on fresh copies of the store at ``base``; peak RSS (bytes)."""
    best, peak = float("inf"), 0
    for _ in range(repeats):
        shutil.rmtree(work, ignore_errors=True)
        shutil.copytree(base, work)
        with nbops.open(work) as store:
            release_memory()
            reset_peak()
            started = time.perf_counter()
            store.register_features(data, "tx", keys="cc_num", event_time="ts")
            best = min(best, time.perf_counter() - started)
            peak = max(peak, (status_kib("VmHWM") or 0) * 1024)
    return best, peak


def spark_input() -> Any:
    """What turns a pandas frame into a cached Spark DataFrame on a local[2] session."""
    from pyspark.sql import SparkSession

    from nbops.featurestore.spark import to_spark

    spark = (
        SparkSession.builder.master("local[2]")
        .config("spark.ui.enabled", "false")
        .config("spark.sql.shuffle.partitions", "4")
        .config("spark.driver.memory", "4g")
        .config("spark.driver.host", "127.0.0.1")
        .config("spark.driver.bindAddress", "127.0.0.1")
        .getOrCreate()
    )
    spark.sparkContext.setLogLevel("ERROR")

    def convert(data: pd.DataFrame) -> Any:
        cached = to_spark(spark, data).repartition(2).cache()
        cached.count()
        return cached

    return convert


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000_000, 10_000_000, 50_000_000])
    parser.add_argument("--rows", type=int, default=10_000, help="rows each timed commit writes")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--tmpdir", default=None)
    parser.add_argument("--strict", action="store_true")
    parser.add_argument("--engine", choices=["pandas", "spark"], default="pandas", help="what the timed commit gets")
    args = parser.parse_args()
    print(f"commit_cost: {args.engine} commits of {args.rows:,} rows, git {git_state()}, load {loadavg()}")
    as_input = spark_input() if args.engine == "spark" else (lambda data: data)
    figures: dict[str, list[float]] = {"insert": [], "upsert": []}
    with tempfile.TemporaryDirectory(dir=args.tmpdir) as tmp:
        for size in args.sizes:
            base = Path(tmp) / f"base{size}"
            with nbops.open(base) as store:
                store.register_features(frame(size, 0, 1), "tx", keys="cc_num", event_time="ts")
            for name, data in (
                ("insert", as_input(frame(args.rows, size, 2))),
                ("upsert", as_input(frame(args.rows, size - args.rows, 3))),
            ):
                seconds, peak = timed_commit(base, Path(tmp) / "work", data, args.repeats)
                figures[name].append(seconds)
                print(f"  group {size:>12,} rows  {name}  {seconds * 1000:9.1f} ms  peak RSS {fmt_bytes(peak)}")
            shutil.rmtree(base)
    missed = False
    for name, times in figures.items():
        ratio = times[-1] / times[0]
        missed |= ratio > TARGET
        print(f"  {name}: ratio {args.sizes[-1]:,} / {args.sizes[0]:,} rows = {ratio:.2f} (target <= {TARGET})")
    return 1 if args.strict and missed else 0


if __name__ == "__main__":
    sys.exit(main())
