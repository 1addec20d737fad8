"""Where training_data's time goes: a cProfile of one call, folded into stages."""

from __future__ import annotations

import cProfile
import pstats
import time
from collections.abc import Callable

import pandas as pd
from _harness import release_memory

import nbops
from _features.data import ours


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
