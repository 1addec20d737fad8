"""Point-in-time joins on Spark: nbops' Spark engine against Feast's Spark offline store, on the same data.

Run (from the repository root; needs ``pip install ".[spark]"``, Java 17, and PyPI the first time)::

    PYTHONPATH=src python benchmarks/pit_feast_spark.py                    # 1M spine x 2 groups x 1M rows (~6-9 min)
    PYTHONPATH=src python benchmarks/pit_feast_spark.py --rows 100000      # smoke test (~3 min)
    PYTHONPATH=src python benchmarks/pit_feast_spark.py --feast-spark-df   # also time Feast's to_spark_df()
    PYTHONPATH=src python benchmarks/pit_feast_spark.py --entity-df pandas # Feast's entity_df as a pandas frame

Feast pins pandas < 3, which nbops does not run on, so Feast lives in a
virtualenv of its own: ``~/.cache/nbops-bench/feast-spark`` (``--feast-venv``),
made on first use by ``pip install`` of ``FEAST_REQUIREMENTS`` (under a
minute, ~1.1 GB) and reused while its marker file names the same
requirements. The Feast side runs there, in a subprocess, from a script this
file writes into the temporary folder; it sets up, then times what the parent
asks for, one run at a time.

The data is ``pit_raw.py``'s (``numpy.random.default_rng(seed)``): a spine of
``--rows`` rows (int64 ``key`` among ``--keys``, ``ts`` uniform over
``--days`` days, a float ``label``, plus an int64 ``row``, its position, to
match the outputs row by row) and two feature tables of ``--rows`` rows each
(``key``, ``ts``, ``x1``/``n1`` and ``x2``/``n2``: a float64 and an int64).
Each is written once as one Parquet file (times as UTC instants), and both
sides read the same files.

Both sides get the same Spark configuration, each in its own process and JVM:
``local[--cores]`` (default 2: this machine), ``spark.driver.memory``
``--driver-memory`` (8g), 4 shuffle partitions per core, session time zone
UTC, Arrow for pandas conversions (``spark.sql.execution.arrow.pyspark.enabled``,
which Feast's ``to_arrow`` goes through), the UI off, adaptive query execution
as Spark's default (on). The Feast process runs with ``TZ=UTC``: Feast reads
a Spark entity frame's time range as naive local times and compares them as
UTC, so a zone west of UTC loses the latest feature rows.

Timed (``time.perf_counter``), interleaved round by round (``--repeats``
rounds, default 5: Feast then nbops, both processes alive, one running at a
time), on sessions and Parquet-backed frames made before (reading Parquet is
lazy: each timed run scans the files). The ratio is of the best times; the
median of the per-round ratios is printed too, as other load on the machine
moves single timings by tens of percent:

* feast:  ``store.get_historical_features(entity_df=..., features=[g1:x1,
  g1:n1, g2:x2, g2:n2]).to_arrow()``: Feast's planning (registry, SQL
  templating), the entity frame's time range (an emptiness check and two
  aggregations), the join (Feast's SQL: a join on the key with
  ``feature time <= spine time``, a ``ROW_NUMBER`` window, joins back),
  ``toPandas()`` then ``pyarrow.Table.from_pandas``. The feature views
  (``ttl=timedelta(0)``, Feast's "no ttl": its SQL drops the lower bound, as
  nbops' ``ttl=None``) are registered before, untimed (``store.apply``, a file
  registry); their ``SparkSource`` is the Parquet path (``timestamp_field="ts"``).
  The entity frame is ``--entity-df``: ``sql`` (default) is ``"SELECT * FROM
  spine"`` over a temporary view of ``spark.read.parquet`` of the spine file,
  the same frame nbops gets; ``pandas`` is the spine read into pandas
  beforehand (a copy handed over on each run, as Feast writes into it), which
  Feast uploads with ``createDataFrame`` inside the timing.
* feast to_spark_df (with ``--feast-spark-df``; information): the same
  with ``.to_spark_df().toArrow()``, nbops' way of materialising.
* nbops: ``point_in_time_join(spine, "ts", [SparkSource(g1, ...),
  SparkSource(g2, ...)]).toArrow()`` with each frame ``spark.read.parquet``
  of the same files (``ttl=None``).

Ratio = nbops time / Feast ``to_arrow`` time (target <= 1/3: nbops at least
3x faster).

Checks (untimed), each side against the reference (nbops' DuckDB engine on the
in-memory data) and Feast against nbops: rows out and spine rows dropped or
repeated (matched on ``row``), mismatching matched values per spine row (over
the rows a side has; nulls equal), and checksums (matches and sum of each
feature, over every output row). Feast dropping or repeating rows is reported,
not an error. Peak RSS: each Python process (the parent's from after the data
is written, with the reference held) and each JVM (its ``VmHWM``).

This is a benchmark, not a test: it exits 0 whether the target is met or not,
unless ``--strict`` is given (then also 1 when nbops is not exact).
"""

from __future__ import annotations

import argparse
import inspect
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

sys.path.insert(0, os.path.dirname(__file__))
from _harness import fmt_bytes, git_state, loadavg, release_memory, reset_peak, status_kib  # noqa: E402
from pit_raw import make_data  # noqa: E402

from nbops.featurestore.pit import FeatureSource  # noqa: E402
from nbops.featurestore.pit import point_in_time_join as duckdb_join  # noqa: E402
from nbops.featurestore.spark import SparkSource, point_in_time_join  # noqa: E402

#: What the Feast virtualenv gets (``pip install``); a change reinstalls it.
FEAST_REQUIREMENTS = ("feast[spark]==0.67.0", "pyspark==4.3.0")
DEFAULT_VENV = Path.home() / ".cache" / "nbops-bench" / "feast-spark"
MARKER = "nbops-bench-installed.txt"
TARGET = 1 / 3  # nbops time / Feast time
FEATURES = {1: {"x1": "x1", "n1": "n1"}, 2: {"x2": "x2", "n2": "n2"}}
COLUMNS = ("x1", "n1", "x2", "n2")


def jvm_peak_bytes() -> int | None:
    """Peak RSS (``VmHWM``) of the JVM this process started (its child named ``java``), or None."""
    me = str(os.getpid())
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            status = open(f"/proc/{entry}/status").read()  # noqa: PTH123, SIM115
        except OSError:
            continue
        fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
        if fields.get("Name", "").strip() == "java" and fields.get("PPid", "").strip() == me:
            return int(fields["VmHWM"].split()[0]) * 1024
    return None


# The Feast side: run by the Feast virtualenv's python with the path of a JSON file of arguments; it sets up,
# answers "ready", then runs what each line of its input names and answers each with the time taken.
FEAST_SIDE = """
import json, os, resource, sys, time, warnings
from datetime import timedelta

warnings.filterwarnings("ignore")
args = json.load(open(sys.argv[1]))
answers = os.fdopen(os.dup(1), "w", buffering=1)  # the answers to the parent; everything else printed
os.dup2(2, 1)  # (Feast's notes, Spark's, the JVM's) goes to the log

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pyspark
from pyspark.sql import SparkSession

builder = SparkSession.builder
for key, value in args["conf"].items():
    builder = builder.config(key, value)
spark = builder.getOrCreate()
spark.sparkContext.setLogLevel("ERROR")

import feast
from feast import Entity, FeatureStore, FeatureView, Field, RepoConfig, ValueType
from feast.infra.offline_stores.contrib.spark_offline_store.spark_source import SparkSource
from feast.types import Float64, Int64

folder = args["dir"]
config = RepoConfig(
    project="nbops_bench",
    provider="local",
    registry=os.path.join(folder, "registry.db"),
    offline_store={"type": "spark", "spark_conf": args["conf"]},
    online_store={"type": "sqlite", "path": os.path.join(folder, "online.db")},
    entity_key_serialization_version=3,
)
store = FeatureStore(config=config)
key = Entity(name="key", join_keys=["key"], value_type=ValueType.INT64)
views = [
    FeatureView(
        name=f"g{i}",
        entities=[key],
        ttl=timedelta(0),  # Feast's "no ttl": its SQL has no lower time bound
        schema=[Field(name=f"x{i}", dtype=Float64), Field(name=f"n{i}", dtype=Int64)],
        source=SparkSource(
            name=f"g{i}_source", path=args[f"g{i}"], file_format="parquet", timestamp_field="ts"
        ),
        online=False,
    )
    for i in (1, 2)
]
store.apply([key, *views])
refs = ["g1:x1", "g1:n1", "g2:x2", "g2:n2"]

if args["entity_df"] == "sql":
    spark.read.parquet(args["spine"]).createOrReplaceTempView("spine")
    entity = lambda: "SELECT * FROM spine"
else:
    spine = pq.read_table(args["spine"]).to_pandas()
    entity = lambda: spine.copy()  # Feast writes into the frame it gets

runs = {
    "to_arrow": lambda: store.get_historical_features(entity_df=entity(), features=refs).to_arrow(),
    "to_spark_df": lambda: store.get_historical_features(entity_df=entity(), features=refs).to_spark_df().toArrow(),
}
result = None
print("ready", file=answers)
for line in sys.stdin:  # one command a line: a name of runs, or "done"
    name = line.strip()
    if name == "done":
        break
    if name == "to_arrow":
        result = None  # the previous result is not held while the next runs
    started = time.perf_counter()
    table = runs[name]()
    elapsed = time.perf_counter() - started
    if name == "to_arrow":
        result = table
    del table
    print(json.dumps({"time": elapsed}), file=answers)
pq.write_table(result, args["out"])
json.dump(
    {
        "versions": {"feast": feast.__version__, "pyspark": pyspark.__version__,
                     "pandas": pd.__version__, "pyarrow": pa.__version__},
        "peak_rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
        "jvm_peak": jvm_peak_bytes(),
    },
    open(args["report"], "w"),
)
spark.stop()
"""


def spark_conf(cores: int, driver_memory: str) -> dict[str, str]:
    """The Spark configuration both sides run with."""
    return {
        "spark.master": f"local[{cores}]",
        "spark.driver.memory": driver_memory,
        "spark.sql.shuffle.partitions": str(4 * cores),
        "spark.sql.session.timeZone": "UTC",
        "spark.sql.execution.arrow.pyspark.enabled": "true",
        "spark.sql.execution.arrow.maxRecordsPerBatch": "100000",
        "spark.ui.enabled": "false",
        "spark.ui.showConsoleProgress": "false",
    }


def feast_python(venv: Path) -> Path:
    """The Feast virtualenv's python, installing the virtualenv first unless its marker names our requirements.

    A folder given with ``--feast-venv`` that has no marker is installed into, never deleted.
    """
    python, marker = venv / "bin" / "python", venv / MARKER
    wanted = "\n".join(FEAST_REQUIREMENTS) + "\n"
    if python.exists() and marker.exists() and marker.read_text() == wanted:
        return python
    print(f"installing {' '.join(FEAST_REQUIREMENTS)} into {venv} (once) ...", flush=True)
    started = time.perf_counter()
    if marker.exists() or venv == DEFAULT_VENV:  # ours, stale or half made: start again
        shutil.rmtree(venv, ignore_errors=True)
    venv.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = subprocess.run(
        [str(python), "-m", "pip", "install", "-q", *FEAST_REQUIREMENTS], capture_output=True, text=True
    )
    if pip.returncode != 0:
        print(pip.stdout[-5000:], pip.stderr[-5000:], sep="\n", file=sys.stderr)
        raise SystemExit(f"pip install into {venv} failed (exit {pip.returncode})")
    marker.write_text(wanted)
    print(f"  installed in {time.perf_counter() - started:.0f} s", flush=True)
    return python


def write_parquet(folder: Path, spine: pd.DataFrame, f1: pa.Table, f2: pa.Table) -> dict[str, str]:
    """The three tables as Parquet files, times as UTC instants; their paths by name."""
    paths = {}
    for name, table in (("spine", pa.Table.from_pandas(spine, preserve_index=False)), ("g1", f1), ("g2", f2)):
        at = table.schema.get_field_index("ts")
        table = table.set_column(at, "ts", table.column("ts").cast(pa.timestamp("us", tz="UTC")))
        paths[name] = str(folder / f"{name}.parquet")
        pq.write_table(table, paths[name])
    return paths


class FeastSide:
    """The Feast side in its own process, set up and waiting for commands."""

    def __init__(self, python: Path, folder: Path, paths: dict[str, str], args: argparse.Namespace) -> None:
        script, arguments, self.log = folder / "feast_side.py", folder / "feast_args.json", folder / "feast.log"
        script.write_text(inspect.getsource(jvm_peak_bytes) + FEAST_SIDE)
        self.out, self.report = folder / "feast_out.parquet", folder / "feast_report.json"
        settings = {
            **paths,
            "dir": str(folder),
            "conf": spark_conf(args.cores, args.driver_memory),
            "entity_df": args.entity_df,
            "out": str(self.out),
            "report": str(self.report),
        }
        arguments.write_text(json.dumps(settings))
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "SPARK_HOME")}
        env.update(TZ="UTC", FEAST_USAGE="False")
        with self.log.open("w") as sink:
            self.process = subprocess.Popen(
                [str(python), str(script), str(arguments)],
                cwd=folder,
                env=env,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=sink,
                text=True,
            )
        self._answer()  # "ready"

    def _answer(self) -> str:
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line:
            self.process.wait()
            print(self.log.read_text()[-5000:], file=sys.stderr)
            raise SystemExit(f"the Feast side failed (exit {self.process.returncode}); its log: {self.log}")
        return line

    def _send(self, command: str) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(command + "\n")
        self.process.stdin.flush()

    def run(self, name: str) -> float:
        """Time one run ("to_arrow" or "to_spark_df") in the Feast process."""
        self._send(name)
        return float(json.loads(self._answer())["time"])

    def finish(self) -> dict[str, Any]:
        """Stop the process; its report (versions, peaks) with its last to_arrow result under "table"."""
        self._send("done")
        if self.process.wait() != 0:
            print(self.log.read_text()[-5000:], file=sys.stderr)
            raise SystemExit(f"the Feast side failed (exit {self.process.returncode}); its log: {self.log}")
        report = json.loads(self.report.read_text())
        report["table"] = pq.read_table(self.out)
        return report

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


class NbopsSide:
    """The nbops side in this process: a Spark session and Parquet-backed frames, and the last result."""

    def __init__(self, paths: dict[str, str], args: argparse.Namespace) -> None:
        from pyspark.sql import SparkSession

        builder = SparkSession.builder
        for key, value in spark_conf(args.cores, args.driver_memory).items():
            builder = builder.config(key, value)
        self.spark = builder.getOrCreate()
        self.spark.sparkContext.setLogLevel("ERROR")
        self.spine = self.spark.read.parquet(paths["spine"])
        self.sources = [
            SparkSource(self.spark.read.parquet(paths[f"g{i}"]), ("key",), "ts", FEATURES[i], ttl=None) for i in (1, 2)
        ]
        self.table: pa.Table | None = None

    def run(self) -> float:
        self.table = None  # the previous result is not held while the next runs
        started = time.perf_counter()
        self.table = point_in_time_join(self.spine, "ts", self.sources).toArrow()
        return time.perf_counter() - started


def checksum(frame: pd.DataFrame) -> tuple[int, ...]:
    """Matches per feature and the sum of each feature's matched values (floats to 1e-9)."""
    out: list[int] = []
    for column in COLUMNS:
        values = pd.to_numeric(frame[column], errors="coerce")
        out += [int(values.notna().sum()), round(float(values.sum()) * 1e9)]
    return tuple(out)


def mismatches(a: pd.DataFrame, b: pd.DataFrame, present: np.ndarray) -> int:
    """Mismatching values between two frames aligned by spine row, over the ``present`` rows (nulls equal)."""
    bad = 0
    for column in COLUMNS:
        x = pd.to_numeric(a[column], errors="coerce").to_numpy(dtype="float64")[present]
        y = pd.to_numeric(b[column], errors="coerce").to_numpy(dtype="float64")[present]
        bad += int((~((x == y) | (np.isnan(x) & np.isnan(y)))).sum())
    return bad


def summary(times: list[float]) -> str:
    return f"best {min(times):7.2f} s  median {statistics.median(times):7.2f} s"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--keys", type=int, default=100_000)
    parser.add_argument("--days", type=int, default=90)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--repeats", type=int, default=5, help="rounds (best of N)")
    parser.add_argument("--cores", type=int, default=2)
    parser.add_argument("--driver-memory", default="8g")
    parser.add_argument("--entity-df", choices=("sql", "pandas"), default="sql", help="Feast's entity_df")
    parser.add_argument("--feast-spark-df", action="store_true", help="also time Feast's to_spark_df().toArrow()")
    parser.add_argument("--feast-venv", type=Path, default=DEFAULT_VENV)
    parser.add_argument("--tmpdir", type=Path, default=None, help="where the Parquet files go")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder (and Feast's log)")
    parser.add_argument("--strict", action="store_true", help="exit 1 when the target is missed or nbops is not exact")
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore", category=FutureWarning)  # PySpark's notes on pandas 3

    python = feast_python(args.feast_venv)
    spine, f1, f2 = make_data(args.rows, args.keys, args.days, args.seed)
    spine["row"] = np.arange(len(spine), dtype="int64")
    sources = [FeatureSource(table, ("key",), "ts", FEATURES[i]) for i, table in ((1, f1), (2, f2))]
    reference = duckdb_join(spine, "ts", sources)  # untimed: what both sides are checked against
    rows = len(reference)
    ref = reference.set_index("row")[list(COLUMNS)]
    unmatched = ref.isna().all(axis=1).to_numpy()
    print(f"pit_feast_spark: {args.rows:,} spine rows x 2 groups x {args.rows:,} rows, {args.keys:,} keys, "
          f"local[{args.cores}], driver {args.driver_memory}, entity_df {args.entity_df}, "
          f"git {git_state()}, load {loadavg()}", flush=True)  # fmt: skip
    print(f"  {int(unmatched.sum()):,} spine rows have no feature row at or before their time in either group "
          "(their key has only later values, or none)", flush=True)  # fmt: skip

    folder = Path(tempfile.mkdtemp(prefix="pit_feast_spark_", dir=args.tmpdir))
    feast_side = None
    times: dict[str, list[float]] = {"feast": [], "feast to_spark_df": [], "nbops": []}
    try:
        paths = write_parquet(folder, spine, f1, f2)
        del spine, f1, f2, sources
        release_memory()
        reset_peak()  # this process's peak from here: the nbops side (and the reference, held)
        feast_side = FeastSide(python, folder, paths, args)
        ours = NbopsSide(paths, args)
        for round_ in range(1, args.repeats + 1):
            load = loadavg()
            times["feast"].append(feast_side.run("to_arrow"))
            if args.feast_spark_df:
                times["feast to_spark_df"].append(feast_side.run("to_spark_df"))
            times["nbops"].append(ours.run())
            print(f"  round {round_}: feast {times['feast'][-1]:6.2f} s, nbops {times['nbops'][-1]:6.2f} s, "
                  f"ratio {times['nbops'][-1] / times['feast'][-1]:.3f}, load {load}", flush=True)  # fmt: skip
        feast = feast_side.finish()
        our_jvm = jvm_peak_bytes()
        ours.spark.stop()
        our_peak = (status_kib("VmHWM") or 0) * 1024 or None
    finally:
        if feast_side is not None:
            feast_side.kill()
        if not args.keep:
            shutil.rmtree(folder, ignore_errors=True)
    assert ours.table is not None

    import pyspark

    versions = feast["versions"]
    print(f"  feast {versions['feast']} (pyspark {versions['pyspark']}, pandas {versions['pandas']}, "
          f"pyarrow {versions['pyarrow']}); nbops side pyspark {pyspark.__version__}, pandas {pd.__version__}")  # fmt: skip
    print(f"  feast get_historical_features().to_arrow()   {summary(times['feast'])}")
    if times["feast to_spark_df"]:
        print(f"  feast ...to_spark_df().toArrow() (info)     {summary(times['feast to_spark_df'])}")
    print(f"  nbops point_in_time_join().toArrow()         {summary(times['nbops'])}")
    ratio = min(times["nbops"]) / min(times["feast"])
    paired = statistics.median(a / b for a, b in zip(times["nbops"], times["feast"], strict=True))
    met = ratio <= TARGET
    print(f"  nbops / feast = {ratio:.3f} best vs best, {paired:.3f} median of rounds (target <= {TARGET:.3f}): "
          f"{'met' if met else 'MISSED'}; nbops {1 / ratio:.1f}x faster")  # fmt: skip

    aligned, exact = {}, False
    for name, table in (("feast", feast["table"]), ("nbops", ours.table)):
        frame = table.select(["row", *COLUMNS]).to_pandas()
        present = np.isin(np.arange(rows), frame["row"].to_numpy())
        repeated = len(frame) - int(frame["row"].nunique())
        aligned[name] = frame.drop_duplicates("row", keep="first").set_index("row").reindex(np.arange(rows))
        bad = mismatches(ref, aligned[name], present)
        same = checksum(frame) == checksum(ref)
        print(f"  {name}: {len(frame):,} rows out, {int((~present).sum()):,} spine rows dropped "
              f"({int((~present & unmatched).sum()):,} of them without a match), {repeated:,} repeated; against the "
              f"reference (DuckDB engine): {bad:,} mismatching values, checksums equal {same}")  # fmt: skip
        if name == "nbops":
            exact = not (~present).any() and repeated == 0 and bad == 0 and same
    both = np.isin(np.arange(rows), feast["table"].column("row").to_numpy())
    same = checksum(feast["table"].to_pandas()) == checksum(ours.table.to_pandas())
    print(f"  feast vs nbops: {mismatches(aligned['feast'], aligned['nbops'], both):,} mismatching values over the "
          f"{int(both.sum()):,} spine rows Feast returns; checksums equal {same}")  # fmt: skip
    print(f"  peak RSS: feast python {fmt_bytes(feast['peak_rss'])}, its JVM {fmt_bytes(feast['jvm_peak'])}; "
          f"nbops python {fmt_bytes(our_peak)} (from after the data), its JVM {fmt_bytes(our_jvm)}")  # fmt: skip
    print(f"  load at end {loadavg()}")
    return 1 if args.strict and not (met and exact) else 0


if __name__ == "__main__":
    sys.exit(main())
