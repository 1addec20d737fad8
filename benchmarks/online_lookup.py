"""Online lookups on the embedded store against raw sqlite3 on the same table, in the same run.

Run (from the repository root)::

    PYTHONPATH=src python benchmarks/online_lookup.py                  # 100k keys, ~15 s
    PYTHONPATH=src python benchmarks/online_lookup.py --keys 10000 --calls 500 --batch-calls 50
    PYTHONPATH=src python benchmarks/online_lookup.py --profile        # also a cProfile of each size

A group of ``--keys`` (100k) keys, two rows per key (``amount_mean``
float64, ``n_tx`` int64), is registered with ``online=True`` in a fresh
store (untimed).  Then ``store.online_features(["tx_online.amount_mean",
"tx_online.n_tx"], keys={"cc_num": batch})`` runs for ``--calls`` (2000)
random single keys and ``--batch-calls`` (200) batches of ``--batch`` (1000)
distinct random keys, after a warm-up of 50 calls; each of our calls is
followed by the baseline with the same keys, so load hits both alike.

Baselines, on a raw read-only ``sqlite3`` connection to the same catalog:
one key, ``SELECT feature_values FROM online_features WHERE group_version_id
= ? AND entity_key = ?`` and ``json.loads`` of the row; many keys, the same
with ``entity_key IN (...)`` (500 keys per query, as the store chunks) and
``json.loads`` of each row.  The baselines return dicts, not a DataFrame.

Printed: p50/p99 of per-call ``perf_counter_ns`` for ours and the baseline,
the ratio ours / baseline per percentile, the peak RSS growth of each size's
loop (``VmHWM`` reset before it, Linux) and of the process.  Targets: 1 key
p99 <= 0.1 ms, 1,000 keys p50 <= 6 ms.  The last answer of each size is
checked against the frame's latest row per key (untimed).  The load average
is printed at start and end; this is a benchmark, it exits 0 unless
``--strict`` and a target is missed.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import pstats
import sqlite3
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from _features.online import batch_lookup, latest_version_id
from _harness import fmt_bytes, git_state, loadavg, process_peak_bytes, release_memory, reset_peak, status_kib

import nbops
from nbops.featurestore.serving import online_columns

GROUP = "tx_online"
KEY = "cc_num"
REFS = [f"{GROUP}.amount_mean", f"{GROUP}.n_tx"]
TARGETS = {"1": ("p99", 0.1), "batch": ("p50", 6.0)}  # ms


def percentiles(ns: list[int]) -> dict[str, float]:
    ms = np.asarray(ns, dtype=float) / 1e6
    return {"p50": float(np.percentile(ms, 50)), "p99": float(np.percentile(ms, 99))}


def baselines(store: nbops.Store) -> tuple[Callable[[int], Any], Callable[[list[int]], dict[str, Any]]]:
    """The raw sqlite3 single-key select and the chunked ``IN (...)`` select, with ``json.loads`` of the rows."""
    db = sqlite3.connect(f"file:{store.root / 'catalog.db'}?mode=ro", uri=True, check_same_thread=False)
    version_id = latest_version_id(db, GROUP)

    def one(key: int) -> Any:
        row = db.execute(
            "SELECT feature_values FROM online_features WHERE group_version_id = ? AND entity_key = ?",
            (version_id, f"[{key}]"),
        ).fetchone()
        return json.loads(row[0]) if row is not None else None

    return one, batch_lookup(db, version_id)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--keys", type=int, default=100_000, help="keys in the group (default 100,000)")
    parser.add_argument("--calls", type=int, default=2000, help="one-key lookups (default 2000)")
    parser.add_argument("--batch", type=int, default=1000, help="keys per batch lookup (default 1000)")
    parser.add_argument("--batch-calls", type=int, default=200, help="batch lookups (default 200)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--profile", action="store_true", help="also print a cProfile of 200 / 20 calls")
    parser.add_argument("--tmpdir", default=None, help="where the store goes (default: system temp)")
    parser.add_argument("--json", type=Path, help="also write the figures as JSON")
    parser.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")
    args = parser.parse_args(argv)
    print(f"online_lookup: code {git_state()}, load average {loadavg()}")

    rng = np.random.default_rng(args.seed)
    n = args.keys * 2
    frame = pd.DataFrame(
        {
            KEY: np.tile(np.arange(args.keys, dtype=np.int64), 2),
            "ts": pd.Timestamp("2026-01-01", tz="UTC") + pd.to_timedelta(np.repeat([0, 86400], args.keys), unit="s"),
            "amount_mean": rng.gamma(2.0, 10.0, n),
            "n_tx": rng.integers(0, 50, n),
        }
    )
    latest = frame.iloc[args.keys :].set_index(KEY)
    with tempfile.TemporaryDirectory(prefix="nbops-online-lookup-", dir=args.tmpdir) as work:
        store = nbops.open(Path(work) / "store")
        t0 = time.perf_counter()
        store.register_features(frame, GROUP, keys=KEY, event_time="ts", online=True)
        print(f"registered {n:,} rows ({args.keys:,} keys) online in {time.perf_counter() - t0:.2f} s (untimed)")
        results = run(args, store, latest)
        store.close()
    results["process_peak"] = process_peak_bytes()
    print(f"process peak RSS {fmt_bytes(results['process_peak'])}; load average {loadavg()}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    missed = [k for k, v in results.items() if isinstance(v, dict) and v.get("target_met") is False]
    return 1 if args.strict and missed else 0


def run(args: argparse.Namespace, store: nbops.Store, latest: pd.DataFrame) -> dict[str, Any]:
    one, many = baselines(store)
    rng = np.random.default_rng([args.seed, 1])
    keys = latest.index.to_numpy()
    results: dict[str, Any] = {"keys": args.keys}
    print(f"{'lookup':<12}{'':<10}{'p50 ms':>10}{'p99 ms':>10}{'+peak':>12}")
    for size, calls in ((1, args.calls), (min(args.batch, args.keys), args.batch_calls)):
        batches = [[int(k) for k in rng.choice(keys, size, replace=False)] for _ in range(max(calls, 1))]
        baseline: Callable[[list[int]], Any] = (lambda b: one(b[0])) if size == 1 else many
        for batch in batches[:50]:  # warm-up: plan cache, SQLite pages, statement caches
            store.online_features(REFS, keys={KEY: batch})
            baseline(batch)
        release_memory()
        reset_peak()
        rss0 = status_kib("VmRSS")
        ours_ns: list[int] = []
        raw_ns: list[int] = []
        for batch in batches:
            t0 = time.perf_counter_ns()
            out = store.online_features(REFS, keys={KEY: batch})
            ours_ns.append(time.perf_counter_ns() - t0)
            t0 = time.perf_counter_ns()
            baseline(batch)
            raw_ns.append(time.perf_counter_ns() - t0)
        hwm = status_kib("VmHWM")
        peak = (hwm - rss0) * 1024 if hwm is not None and rss0 is not None else None
        expected = latest.loc[batch]
        assert out[KEY].tolist() == batch
        assert np.allclose(out["amount_mean"].to_numpy(dtype=float), expected["amount_mean"].to_numpy())
        assert (out["n_tx"].to_numpy(dtype="int64") == expected["n_tx"].to_numpy()).all()
        ours, raw = percentiles(ours_ns), percentiles(raw_ns)
        ratio = {p: ours[p] / raw[p] for p in ("p50", "p99")}
        label = "1 key" if size == 1 else f"{size:,} keys"
        print(f"{label:<12}{'ours':<10}{ours['p50']:>10.3f}{ours['p99']:>10.3f}{fmt_bytes(peak):>12}")
        print(f"{'':<12}{'raw sqlite':<10}{raw['p50']:>10.3f}{raw['p99']:>10.3f}")
        print(f"{'':<12}{'ratio':<10}{ratio['p50']:>9.2f}x{ratio['p99']:>9.2f}x   (ours / raw sqlite3)")
        which, limit = TARGETS["1" if size == 1 else "batch"]
        met = ours[which] <= limit
        print(f"{'':<12}target {which} <= {limit} ms: {'met' if met else 'MISSED'}")
        results[label] = {"calls": len(batches), "ours": ours, "raw": raw, "ratio": ratio, "peak_growth": peak}
        results[label]["target_met"] = met
        if size == 1:
            # The serving path (nbops serve, store.predict): the same lookup without building a frame.
            columns_ns: list[int] = []
            for batch in batches:
                t0 = time.perf_counter_ns()
                got = online_columns(store, REFS, {KEY: batch})
                columns_ns.append(time.perf_counter_ns() - t0)
            assert float(got["amount_mean"][0]) == float(expected["amount_mean"].iloc[0])
            served = percentiles(columns_ns)
            served_met = served[which] <= limit
            print(
                f"{'':<12}{'columns':<10}{served['p50']:>10.3f}{served['p99']:>10.3f}   (online_columns: serving path)"
            )
            print(f"{'':<12}target {which} <= {limit} ms on the serving path: {'met' if served_met else 'MISSED'}")
            results["1 key, serving path"] = {"ours": served, "target_met": served_met}
        if args.profile:
            profiler = cProfile.Profile()
            profiler.enable()
            for batch in batches[: 200 if size == 1 else 20]:
                store.online_features(REFS, keys={KEY: batch})
            profiler.disable()
            pstats.Stats(profiler).sort_stats("tottime").print_stats(18)
    return results


if __name__ == "__main__":
    sys.exit(main())
