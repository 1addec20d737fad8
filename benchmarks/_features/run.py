"""The feature benchmark itself: figures 1-3 (training data at two spine sizes, online lookups), then the report."""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
from _harness import fmt_bytes, git_state, loadavg, process_peak_bytes, release_memory

import nbops
from _features.child import measure_child
from _features.data import (
    GROUPS,
    KEY,
    ONLINE_GROUP,
    TIME,
    duckdb_arrow,
    duckdb_pandas,
    make_group,
    make_spine,
    merge_asof,
    ours,
    register_groups,
)
from _features.measure import (
    Figure,
    Op,
    best_duckdb,
    compare_joins,
    paired_median,
    print_figures,
    print_ops,
    source_digest,
)
from _features.online import online_latencies, raw_online
from _features.profile import profile_call

RATIO_TARGET = 1.2
RSS_TARGET = 4 * 1024**3
P99_TARGET = 1e-3  # seconds, one key


def run(args: argparse.Namespace, repeats: int, work: Path) -> int:
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
        "sources": source_digest(),
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
    raw = raw_online(online_store)
    online = online_latencies(online_store, raw, latest, args)
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
