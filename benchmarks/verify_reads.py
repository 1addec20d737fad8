"""What verifying every object on read costs: ``store.load`` against the same read without the digest check.

```sh
PYTHONPATH=src python benchmarks/verify_reads.py                 # 10M rows x 10 columns (~1 min, ~3 GiB RAM)
PYTHONPATH=src python benchmarks/verify_reads.py --rows 100000   # smoke test, seconds
```

Figures (best of ``--repeats``, the two loads interleaved round by round):

| # | nbops | baseline | target |
|---|-------|----------|--------|
| 1 | ``store.load(name)`` (every column re-hashed as it is read) | the same read path with no hash: the same Parquet objects read in the same thread pool, cast to the recorded types, ``table_to_pandas`` | <= 1.10 |
| 2 | hash throughput: bytes of Arrow data hashed per second by ``column_digest``, one thread | - | info |

The frame is ``benchmarks/snapshot.py``'s (int64, float64 with nulls, float32,
a 40-label category, datetime64, bool, int32).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).parent))
from _harness import fmt_bytes, loadavg, process_peak_bytes, release_memory  # noqa: E402
from _snapshot.data import make_frame  # noqa: E402
from _snapshot.measure import Op, run_interleaved  # noqa: E402

import nbops  # noqa: E402
from nbops.core.columns import workers  # noqa: E402
from nbops.core.hashing import column_digest  # noqa: E402
from nbops.datasets.snapshots import _resolve, table_to_pandas  # noqa: E402

NAME = "bench"


def load_unverified(store: nbops.Store, name: str) -> object:
    """``store.load`` as it was before reads verified: read, cast, convert; no digest."""
    _, row, digests = _resolve(store, name, None)
    schema = pa.ipc.read_schema(pa.py_buffer(row.arrow_schema))

    def read(item: tuple[str, pa.Field]) -> pa.ChunkedArray:
        digest, field = item
        column = pq.read_table(store.objects.source(digest)).column("v")
        return column if column.type == field.type else column.cast(field.type)

    with ThreadPoolExecutor(workers(len(digests))) as pool:
        columns = list(pool.map(read, zip(digests, schema, strict=True)))
    return table_to_pandas(pa.Table.from_arrays(columns, schema=schema))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="nbops-verify-bench-"))
    try:
        print(f"nbops read-verification benchmark  rows={args.rows:,} columns=10 loadavg={loadavg()}")
        df = make_frame(args.rows, args.seed)
        store = nbops.open(work / ".nbops")
        store.snapshot(df, NAME)
        del df
        release_memory()

        verified = Op("nbops: store.load (verified)", lambda _: store.load(NAME))
        plain = Op("baseline: same read, no digest", lambda _: load_unverified(store, NAME))
        run_interleaved([verified, plain], args.repeats)
        ratio = verified.best / plain.best

        table = store.load_table(NAME)
        nbytes = sum(c.nbytes for c in table.columns)
        t0 = time.perf_counter()
        for column in table.columns:
            column_digest(column)
        hash_seconds = time.perf_counter() - t0

        ok = ratio <= 1.10
        print(f"{'figure':<46} {'nbops':>9} {'baseline':>9} {'ratio':>7} target")
        print(
            f"{'1. load verified / load without digest':<46} {verified.best:>8.3f}s {plain.best:>8.3f}s "
            f"{ratio:>7.3f} <=1.10 {'ok' if ok else 'MISSED'}"
        )
        print(
            f"2. hash throughput: {fmt_bytes(nbytes)} of Arrow data in {hash_seconds:.3f} s = "
            f"{nbytes / hash_seconds / 2**30:.2f} GiB/s (one thread)"
        )
        print(
            f"peak RSS: verified load +{fmt_bytes(verified.peak_delta or 0)}, plain load "
            f"+{fmt_bytes(plain.peak_delta or 0)}; process {fmt_bytes(process_peak_bytes())}; "
            f"loadavg at end {loadavg()}"
        )
        store.close()
        return 1 if args.strict and not ok else 0
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
