"""The team set-up against the embedded store: snapshots and training data, with the catalog on PostgreSQL.

Runs the operations of ``benchmarks/snapshot.py`` (a new snapshot of N rows x
10 columns into a fresh store, an unchanged re-snapshot, a load) and of
``benchmarks/features.py`` (point-in-time training data for an N-row spine
from 2 groups of N rows) on two stores: (a) embedded (SQLite catalog) and
(b) a catalog on a PostgreSQL server this script starts on 127.0.0.1 from
Debian's binaries (the logic of ``tests/helpers/pgserver.py``).  The objects of both
are Parquet files on the same local disk, so the ratio is the cost of the
catalog server.  The two run interleaved, round by round, the first of each
round alternating, and the script prints the median seconds, team/embedded
ratios (median of the per-round ratios) and the peak RSS of each operation::

    PYTHONPATH=src python benchmarks/team.py                 # 1M rows, 3 rounds
    PYTHONPATH=src python benchmarks/team.py --rows 10_000_000
    PYTHONPATH=src python benchmarks/team.py --s3             # team objects on an S3 server too

With ``--s3`` the team store's objects also go to an S3-compatible server
the script starts on 127.0.0.1 (moto, as in ``tests/s3server.py``).  moto
keeps objects in its own Python process, so that figure is the cost of the
S3 protocol and an extra copy, not of a real object store's network.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "tests"))  # helpers.pgserver: the tests' throwaway PostgreSQL

import pandas as pd
from _features.data import GROUPS, TIME, make_group, make_spine, ours, register_groups
from _harness import (
    fmt_bytes,
    git_state,
    loadavg,
    process_peak_bytes,
    release_memory,
    reset_peak,
    status_kib,
)
from _snapshot.data import make_frame

import nbops

KINDS = ("embedded", "team")


@dataclass
class Op:
    name: str
    seconds: dict[str, list[float]] = field(default_factory=lambda: {k: [] for k in KINDS})
    peak: dict[str, int] = field(default_factory=lambda: dict.fromkeys(KINDS, 0))

    def ratio(self) -> float:
        return statistics.median(t / e for t, e in zip(self.seconds["team"], self.seconds["embedded"], strict=True))


def timed(op: Op, kind: str, call: Callable[[], Any]) -> Any:
    release_memory()
    reset_peak()
    start = time.perf_counter()
    result = call()
    op.seconds[kind].append(time.perf_counter() - start)
    op.peak[kind] = max(op.peak[kind], (status_kib("VmHWM") or 0) * 1024)
    return result


def start_server(base: Path) -> Any:
    from helpers.pgserver import PgServer, find_bin_dir

    bin_dir = find_bin_dir()
    if bin_dir is None:
        raise SystemExit("no PostgreSQL server binaries in /usr/lib/postgresql/*/bin (apt-get install postgresql)")
    base.mkdir()
    base.chmod(0o755)  # the server runs as the postgres user when we are root
    server = PgServer(bin_dir, base)
    server.start()
    return server


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--rows",
        type=int,
        default=1_000_000,
        help="snapshot rows, spine rows and rows per feature group (default 1_000_000)",
    )
    parser.add_argument("--keys", type=int, default=100_000, help="entity keys of the feature data (default 100_000)")
    parser.add_argument("--repeats", type=int, default=3, help="rounds (default 3)")
    parser.add_argument("--seed", type=int, default=20240601)
    parser.add_argument("--tmpdir", default=None, help="where the stores go (default: system temp)")
    parser.add_argument("--s3", action="store_true", help="put the team store's objects on an S3 server (moto) too")
    args = parser.parse_args(argv)

    work = Path(tempfile.mkdtemp(prefix="nbops-team-bench-", dir=args.tmpdir))
    work.chmod(0o755)
    server = start_server(work / "pg")
    s3 = None
    try:
        if args.s3:
            from helpers.s3server import CREDENTIALS, S3Server

            os.environ.update(CREDENTIALS)
            s3 = S3Server(work / "s3")
            s3.start()
            s3.create_bucket("bench")
        return run(args, work, server, s3)
    finally:
        if s3 is not None:
            s3.stop()
        server.stop()
        shutil.rmtree(work, ignore_errors=True)


def run(args: argparse.Namespace, work: Path, server: Any, s3: Any = None) -> int:
    import psycopg

    version = psycopg.connect(server.url("postgres")).info.server_version
    print(
        f"nbops team benchmark  rows={args.rows:,} keys={args.keys:,} rounds={args.repeats} "
        f"nbops={nbops.__version__} git={git_state()} cpus={os.cpu_count()} postgres={version} "
        f"objects={'s3 (moto)' if s3 is not None else 'local'} loadavg_start={loadavg()}"
    )

    def open_store(kind: str, name: str) -> nbops.Store:
        if kind == "embedded":
            return nbops.open(work / name, catalog="embedded")
        catalog = server.url(server.create_database("bench"))
        data = s3.uri("bench", name) if s3 is not None else None
        return nbops.open(work / name, catalog=catalog, data=data)

    frame = make_frame(args.rows, args.seed)
    spine = make_spine(args.rows, args.keys, 90, args.seed, "us")
    groups = {g: make_group(g, args.rows, args.keys, 90, args.seed, "us")[0] for g in GROUPS}

    # Warm-up: imports, Alembic, connection pools, first-call caches.
    for kind in KINDS:
        with open_store(kind, f"warmup-{kind}") as store:
            store.snapshot(frame.head(1000), "bench")
            store.load("bench")

    register = Op("register 2 groups (once)")
    feature_stores: dict[str, nbops.Store] = {}
    for kind in KINDS:
        feature_stores[kind] = open_store(kind, f"features-{kind}")
        timed(register, kind, lambda s=feature_stores[kind]: register_groups(s, groups, 1))

    ops = {name: Op(name) for name in ("snapshot (new)", "snapshot (unchanged)", "load", "training_data")}
    for round_no in range(args.repeats):
        order = KINDS if round_no % 2 == 0 else KINDS[::-1]
        for kind in order:
            with open_store(kind, f"snap-{kind}-{round_no}") as store:
                ref = timed(ops["snapshot (new)"], kind, lambda s=store: s.snapshot(frame, "bench"))
                again = timed(ops["snapshot (unchanged)"], kind, lambda s=store: s.snapshot(frame, "bench"))
                assert ref.new and not again.new and again.version == ref.version == 1
                loaded = timed(ops["load"], kind, lambda s=store: s.load("bench"))
                assert len(loaded) == args.rows
                del loaded
            train = timed(ops["training_data"], kind, lambda s=feature_stores[kind]: ours(s, spine))
            assert len(train) == len(spine) and TIME in train.columns
            del train
        print(f"round {round_no + 1}/{args.repeats} done", flush=True)
    embedded_train = ours(feature_stores["embedded"], spine)
    pd.testing.assert_frame_equal(embedded_train, ours(feature_stores["team"], spine))
    for store in feature_stores.values():
        store.close()

    print(
        f"\n{'operation':<26} {'embedded s':>11} {'team s':>9} {'team/embedded':>14} "
        f"{'peak RSS embedded':>18} {'peak RSS team':>14}"
    )
    for op in (*ops.values(), register):
        e, t = statistics.median(op.seconds["embedded"]), statistics.median(op.seconds["team"])
        print(
            f"{op.name:<26} {e:>11.3f} {t:>9.3f} {op.ratio():>13.2f}x "
            f"{fmt_bytes(op.peak['embedded']):>18} {fmt_bytes(op.peak['team']):>14}"
        )
    print(
        f"\nprocess peak RSS {fmt_bytes(process_peak_bytes())}; loadavg_end={loadavg()}; "
        "training data identical on both stores"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
