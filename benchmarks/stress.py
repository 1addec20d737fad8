"""Stress run of the reliability table: many writers at once, a thousand kill -9, a names fuzz.

Run (from the repository root)::

    python benchmarks/stress.py                                   # 16 x 200 writes, 1,000 kills
    python benchmarks/stress.py --procs 4 --writes 20 --kills 20 --named 2 --names 200   # smoke test

It runs the same code as ``tests/system/test_reliability.py`` (``pytest -m stress``
runs the same counts as tests) and prints one table of figures:

- writes attempted / stored / lost / duplicated / digest mismatches on re-read,
  from N processes each making M writes (snapshots and feature commits, shared
  and own names);
- kills / partial versions visible / verify failures / orphans left after gc /
  manual unlocks needed, from writers killed with SIGKILL at random moments and
  at each named point (``NBOPS_FAULT``), the store opened, verified and
  collected after every kill;
- names tried / rejected / files outside the root, from a Hypothesis fuzz
  through ``snapshot`` and ``register_features``;
- runs left RUNNING after a kernel is killed inside ``%%track``.

Every figure that should be zero is checked; the exit code is 1 if one is not.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

TESTS = Path(__file__).resolve().parent.parent / "tests"
sys.path[:0] = [str(TESTS), str(TESTS / "system")]  # helpers.*, and the reliability tests themselves

import test_reliability as rel


def _names_fuzz(root: Path, examples: int) -> rel.NameTally:
    import nbops

    tally = rel.NameTally()
    with nbops.open(root) as store:
        _run_fuzz(store, tally, examples)
    return tally


def _run_fuzz(store: Any, tally: rel.NameTally, examples: int) -> None:
    import pandas as pd
    from hypothesis import HealthCheck, given, settings

    from nbops.errors import InvalidNameError

    frame = pd.DataFrame({"id": [1], "ts": pd.to_datetime(["2024-01-01"]), "v": [0.5]})
    parent = store.root.parent

    def outside() -> set[Path]:
        return set(parent.parent.iterdir()) | rel.files_under(parent) - rel.files_under(store.root)

    @settings(max_examples=examples, deadline=None, suppress_health_check=list(HealthCheck))
    @given(name=rel._fuzz_names())
    def check(name: str) -> None:
        before = outside()
        for write in (
            lambda: store.snapshot(frame, name),
            lambda: store.register_features(frame, name, keys="id", event_time="ts"),
        ):
            tally.tried += 1
            try:
                write()
            except InvalidNameError:
                tally.rejected += 1
            else:
                tally.accepted += 1
        tally.files_outside_root += len(outside() - before)

    check()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--procs", type=int, default=rel.STRESS_PROCESSES, help="writer processes (default: 16)")
    parser.add_argument("--writes", type=int, default=rel.STRESS_WRITES, help="writes per process (default: 200)")
    parser.add_argument("--kills", type=int, default=rel.STRESS_KILLS, help="random kill -9 (default: 1000)")
    parser.add_argument("--named", type=int, default=rel.STRESS_NAMED_REPEATS,
                        help="kills at each named point (default: 25)")  # fmt: skip
    parser.add_argument("--names", type=int, default=2000, help="Hypothesis examples of the names fuzz (default: 2000)")
    parser.add_argument("--no-kernel", action="store_true", help="skip the kernel killed inside %%%%track")
    args = parser.parse_args(argv)

    rows: list[tuple[str, str, Any, bool]] = []  # (test, figure, value, must be zero)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="nbops-stress-") as scratch:
        base = Path(scratch)
        t0 = time.perf_counter()
        writes = rel.concurrent_writes(base / "writes", args.procs, args.writes)
        label = f"{args.procs} processes x {args.writes} writes ({time.perf_counter() - t0:.0f} s)"
        rows += [
            (label, "writes attempted", writes.attempted, False),
            (label, "stored", writes.stored, False),
            (label, "lost", writes.lost, True),
            (label, "duplicated", writes.duplicated, True),
            (label, "digest mismatches", writes.digest_mismatches, True),
        ]

        zygote = rel.Zygote()
        try:
            t0 = time.perf_counter()
            (base / "kills").mkdir()
            crashes = rel.random_kills(base / "kills", zygote, kills=args.kills)
            rows += _crash_rows(f"kill -9 at random points ({time.perf_counter() - t0:.0f} s)", crashes)
            t0 = time.perf_counter()
            named = rel.named_point_kills(base / "named" / ".nbops", zygote, args.named)
            rows += _crash_rows(f"kill -9 at 4 named points x {args.named} ({time.perf_counter() - t0:.0f} s)", named)
        finally:
            zygote.close()

        t0 = time.perf_counter()
        (base / "names" / "work").mkdir(parents=True)
        names = _names_fuzz(base / "names" / ".nbops", args.names)
        label = f"names fuzz, {args.names} examples x 2 entry points ({time.perf_counter() - t0:.0f} s)"
        rows += [
            (label, "names tried", names.tried, False),
            (label, "rejected", names.rejected, False),
            (label, "files outside the root", names.files_outside_root, True),
        ]

        if not args.no_kernel:
            t0 = time.perf_counter()
            (base / "kernel").mkdir()
            out = io.StringIO()
            with contextlib.redirect_stdout(out):
                rel.test_kernel_killed_inside_track_leaves_no_run_running(base / "kernel")
            running = int(out.getvalue().rsplit("runs left running ", 1)[1].split()[0])
            label = f"kernel killed inside %%track ({time.perf_counter() - t0:.0f} s)"
            rows.append((label, "runs left RUNNING", running, True))

    wall = time.perf_counter() - started
    print()
    print(f"nbops stress run: {platform.node()}, Python {platform.python_version()}, {_cpus()} CPUs, "
          f"wall time {wall / 60:.1f} min")  # fmt: skip
    print(f"command: python benchmarks/stress.py {' '.join(argv if argv is not None else sys.argv[1:])}".rstrip())
    print()
    width = max(len(r[0]) for r in rows)
    print(f"| {'test'.ljust(width)} | {'figure':<26} | {'value':>8} |")
    print(f"|{'-' * (width + 2)}|{'-' * 28}|{'-' * 10}|")
    failed = False
    for test, name, value, must_be_zero in rows:
        bad = must_be_zero and value != 0
        failed |= bad
        print(f"| {test.ljust(width)} | {name:<26} | {value:>8}{' !' if bad else ''} |")
    return 1 if failed else 0


def _crash_rows(label: str, figures: rel.CrashFigures) -> list[tuple[str, str, Any, bool]]:
    return [
        (label, "kills", figures.kills, False),
        (label, "finished before the kill", figures.finished_before_kill, False),
        (label, "opens failed", figures.opens_failed, True),
        (label, "verify failures", figures.verify_failures, True),
        (label, "partial versions visible", figures.partial_versions_visible, True),
        (label, "orphans before gc", figures.orphans_before_gc, False),
        (label, "orphans left after gc", figures.orphans_left_after_gc, True),
        (label, "manual unlocks needed", figures.manual_unlocks_needed, True),
    ]


def _cpus() -> int:
    import os

    return os.cpu_count() or 1


if __name__ == "__main__":
    sys.exit(main())
