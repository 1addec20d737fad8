"""Online lookups: Redis against the embedded online store, in the same run.

Run (from the repository root; needs ``redis-server`` on PATH, or ``--url``)::

    PYTHONPATH=src python benchmarks/online_redis.py                   # 100k keys, ~20 s
    PYTHONPATH=src python benchmarks/online_redis.py --keys 10000 --calls 500
    PYTHONPATH=src python benchmarks/online_redis.py --url redis://127.0.0.1:6379/0 --json out.json

One group (``cc_num`` int64 key, ``amount_mean`` float64, ``n_tx`` int64, one
row per key) is registered with ``online=True`` in two stores: one serving
from the catalog's table, one from Redis (a ``redis-server`` started here on
127.0.0.1 with a free port and no persistence, unless ``--url`` names one).
Registration is timed once and reported apart.

Then ``store.online_features(["tx_online.amount_mean", "tx_online.n_tx"],
keys={"cc_num": batch})`` for ``--calls`` (2000) random single keys and
``--batch-calls`` (200) batches of ``--batch`` (1000) distinct keys, the same
batches on both stores, interleaved call by call (embedded, then Redis) with
``time.perf_counter_ns`` after a warm-up of 50 calls each.  Printed: p50 and
p99 per store and the ratio Redis / embedded.  Every answer of the last call
is checked equal between the two (untimed).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

import nbops

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from helpers.redisserver import RedisServer  # the same launcher as the tests

GROUP = "tx_online"
KEY = "cc_num"
REFS = [f"{GROUP}.amount_mean", f"{GROUP}.n_tx"]


def percentiles(ns: list[int]) -> dict[str, float]:
    ms = np.asarray(ns, dtype=float) / 1e6
    return {"p50": float(np.percentile(ms, 50)), "p99": float(np.percentile(ms, 99))}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--keys", type=int, default=100_000, help="keys in the group (default 100,000)")
    parser.add_argument("--calls", type=int, default=2000, help="one-key lookups (default 2000)")
    parser.add_argument("--batch", type=int, default=1000, help="keys per batch lookup (default 1000)")
    parser.add_argument("--batch-calls", type=int, default=200, help="batch lookups (default 200)")
    parser.add_argument("--url", help="an existing Redis (default: start redis-server on 127.0.0.1)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, help="also write the figures as JSON")
    args = parser.parse_args(argv)

    rng = np.random.default_rng(args.seed)
    frame = pd.DataFrame(
        {
            KEY: np.arange(args.keys, dtype=np.int64),
            "ts": pd.Timestamp("2026-01-01", tz="UTC")
            + pd.to_timedelta(rng.integers(0, 90 * 86400, args.keys), unit="s"),
            "amount_mean": rng.gamma(2.0, 10.0, args.keys),
            "n_tx": rng.integers(0, 50, args.keys),
        }
    )
    with tempfile.TemporaryDirectory(prefix="nbops-online-redis-") as work:
        server = None
        url = args.url
        if url is None:
            import shutil

            binary = shutil.which("redis-server")
            if binary is None:
                print("redis-server is not on PATH; install it (apt-get install redis-server) or pass --url")
                return 2
            server = RedisServer(binary, Path(work) / "redis-server")
            server.start()
            url = server.url
        try:
            results = run(args, frame, Path(work), url)
        finally:
            if server is not None:
                server.stop()
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    return 0


def run(args: argparse.Namespace, frame: pd.DataFrame, work: Path, url: str) -> dict[str, Any]:
    embedded = nbops.open(work / "embedded", online="embedded")
    shared = nbops.open(work / "redis", online=url)  # a new store: a namespace of its own
    results: dict[str, Any] = {"keys": args.keys, "url": url.split("@")[-1]}
    for name, store in (("embedded", embedded), ("redis", shared)):
        t0 = time.perf_counter()
        store.register_features(frame, GROUP, keys=KEY, event_time="ts", online=True)
        results[f"{name}_register_seconds"] = time.perf_counter() - t0
    print(
        f"registered {args.keys:,} keys online: embedded {results['embedded_register_seconds']:.2f} s, "
        f"redis {results['redis_register_seconds']:.2f} s (untimed in the figures)"
    )

    rng = np.random.default_rng([args.seed, 1])
    keys = frame[KEY].to_numpy()
    print(f"{'lookup':<14}{'store':<10}{'p50 ms':>10}{'p99 ms':>10}")
    for size, calls in ((1, args.calls), (min(args.batch, args.keys), args.batch_calls)):
        batches = [[int(k) for k in rng.choice(keys, size, replace=False)] for _ in range(max(calls, 1))]
        for batch in batches[:50]:  # warm-up: plans, SQLite pages, Redis connections
            embedded.online_features(REFS, keys={KEY: batch})
            shared.online_features(REFS, keys={KEY: batch})
        timings: dict[str, list[int]] = {"embedded": [], "redis": []}
        for batch in batches:
            for name, store in (("embedded", embedded), ("redis", shared)):
                t0 = time.perf_counter_ns()
                out = store.online_features(REFS, keys={KEY: batch})
                timings[name].append(time.perf_counter_ns() - t0)
                if name == "embedded":
                    expected = out
        pd.testing.assert_frame_equal(out, expected)
        label = f"{size:,} key" + ("s" if size != 1 else "")
        figures = {name: percentiles(ns) for name, ns in timings.items()}
        for name, fig in figures.items():
            print(f"{label:<14}{name:<10}{fig['p50']:>10.3f}{fig['p99']:>10.3f}")
        ratio = {p: figures["redis"][p] / figures["embedded"][p] for p in ("p50", "p99")}
        print(f"{label:<14}{'ratio':<10}{ratio['p50']:>9.2f}x{ratio['p99']:>9.2f}x   (redis / embedded)")
        results[label] = {"calls": len(batches), **figures, "ratio": ratio}
    embedded.close()
    shared.close()
    return results


if __name__ == "__main__":
    sys.exit(main())
