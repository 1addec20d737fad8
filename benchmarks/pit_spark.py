"""Point-in-time joins on Spark: nbops' Spark engine against nbops' DuckDB engine, on the same data.

Run (from the repository root; needs ``pip install ".[spark]"`` and Java 17)::

    PYTHONPATH=src python benchmarks/pit_spark.py                  # 1M spine rows, 2 x 1M features
    PYTHONPATH=src python benchmarks/pit_spark.py --rows 10000000  # 10M (several minutes, ~10 GiB RAM)
    PYTHONPATH=src python benchmarks/pit_spark.py --rows 100000    # smoke test

The data is ``pit_raw.py``'s (``numpy.random.default_rng(seed)``): a spine of
``--rows`` rows (int64 key among ``--keys``, a time uniform over ``--days``
days, a float label) and two feature tables of ``--rows`` rows each.

Timed, best of ``--repeats`` (``time.perf_counter``), on a ``local[N]`` session
(``--cores``, default 2: this machine):

* spark load: the spine and both tables into Spark (``to_spark``: Arrow to
  ``createDataFrame``), the part that runs on the driver;
* spark join: ``point_in_time_join`` on the loaded frames, materialised by
  ``toArrow()`` (every row back on the driver, like the DuckDB engine's pandas
  result);
* duckdb:     ``nbops.featurestore.pit.point_in_time_join`` (pandas out).

Ratio = Spark time / DuckDB time. On one 2-core machine Spark is expected to
be slower (a JVM, shuffles, Arrow hand-offs): the point of the engine is a
cluster, and this figure says what it costs where there is none.

Checks (untimed): both engines give one row per spine row (0 dropped), and
the same matched feature values, compared per spine row (0 mismatches), and
equal checksums (sum of every feature, count of matches).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

sys.path.insert(0, os.path.dirname(__file__))
from _harness import fmt_bytes, git_state, loadavg, process_peak_bytes  # noqa: E402
from pit_raw import make_data  # noqa: E402

from nbops.featurestore.pit import FeatureSource  # noqa: E402
from nbops.featurestore.pit import point_in_time_join as duckdb_join  # noqa: E402
from nbops.featurestore.spark import SparkSource, point_in_time_join, to_spark  # noqa: E402

FEATURES = {1: {"x1": "x1", "n1": "n1"}, 2: {"x2": "x2", "n2": "n2"}}


def best(repeats: int, run: Callable[[], Any]) -> tuple[float, Any]:
    times, result = [], None
    for _ in range(repeats):
        started = time.perf_counter()
        result = run()
        times.append(time.perf_counter() - started)
    return min(times), result


def checksum(frame: pd.DataFrame) -> tuple[int, ...]:
    """Matches per feature and the sum of each feature's matched values (floats to 1e-9)."""
    out: list[int] = []
    for column in ("x1", "n1", "x2", "n2"):
        values = pd.to_numeric(frame[column], errors="coerce")
        out += [int(values.notna().sum()), round(float(values.sum()) * 1e9)]
    return tuple(out)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--keys", type=int, default=100_000)
    parser.add_argument("--days", type=int, default=90)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--cores", type=int, default=2)
    args = parser.parse_args()
    warnings.filterwarnings("ignore", category=FutureWarning)  # PySpark's notes on pandas 3

    from pyspark.sql import SparkSession

    spark = (
        SparkSession.builder.master(f"local[{args.cores}]")
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.driver.memory", "8g")
        .config("spark.sql.shuffle.partitions", str(4 * args.cores))
        .config("spark.sql.execution.arrow.maxRecordsPerBatch", "100000")
        .getOrCreate()
    )
    spark.sparkContext.setLogLevel("ERROR")
    spine, f1, f2 = make_data(args.rows, args.keys, args.days, args.seed)
    print(f"pit_spark: {args.rows:,} spine rows x 2 groups x {args.rows:,} rows, {args.keys:,} keys, "
          f"local[{args.cores}], git {git_state()}, load {loadavg()}")  # fmt: skip

    sources = [FeatureSource(f1, ("key",), "ts", FEATURES[1]), FeatureSource(f2, ("key",), "ts", FEATURES[2])]
    duck_time, duck = best(args.repeats, lambda: duckdb_join(spine, "ts", sources))

    def load() -> tuple[Any, list[SparkSource]]:
        frames = [to_spark(spark, spine, "spine").cache(), to_spark(spark, f1).cache(), to_spark(spark, f2).cache()]
        for frame in frames:
            frame.count()  # materialise the cache: the join below reads Spark's copy
        return frames[0], [
            SparkSource(frames[1], ("key",), "ts", FEATURES[1]),
            SparkSource(frames[2], ("key",), "ts", FEATURES[2]),
        ]

    load_time, (spark_spine, spark_sources) = best(1, load)
    join_time, table = best(args.repeats, lambda: point_in_time_join(spark_spine, "ts", spark_sources).toArrow())
    ours = table.to_pandas()

    dropped = len(spine) - len(ours)
    mismatches = 0
    for column in ("x1", "n1", "x2", "n2"):
        a = pd.to_numeric(duck[column], errors="coerce").to_numpy(dtype="float64")
        b = pd.to_numeric(ours[column], errors="coerce").to_numpy(dtype="float64")
        mismatches += int((~((a == b) | (np.isnan(a) & np.isnan(b)))).sum())
    same_checksum = checksum(duck) == checksum(ours)

    print(f"  duckdb engine        {duck_time:8.2f} s")
    print(f"  spark load (driver)  {load_time:8.2f} s")
    print(f"  spark join           {join_time:8.2f} s   ratio spark/duckdb {join_time / duck_time:6.2f}")
    print(f"  spark load + join    {load_time + join_time:8.2f} s   ratio {(load_time + join_time) / duck_time:6.2f}")
    print(f"  rows dropped {dropped}, mismatching values {mismatches}, checksums equal {same_checksum}")
    print(f"  peak RSS of this process {fmt_bytes(process_peak_bytes())} (the JVM's heap is not in it)")
    spark.stop()
    return 0 if dropped == 0 and mismatches == 0 and same_checksum else 1


if __name__ == "__main__":
    sys.exit(main())
