"""Worker processes for the reliability tests and ``benchmarks/stress.py``.

Run as a script, in a fresh interpreter, so that every worker is a real
process with its own SQLite connections and its own file handles::

    python tests/helpers/reliability_workers.py writer ROOT PROC WRITES GO
    python tests/helpers/reliability_workers.py create ROOT PROC GO KIND
    python tests/helpers/reliability_workers.py open ROOT PROC GO         # racing opens of a new store
    python tests/helpers/reliability_workers.py once ROOT KIND SEED      # with NBOPS_FAULT=<point>
    python tests/helpers/reliability_workers.py zygote                   # forks writers on demand

``writer``, ``create`` and ``open`` wait until the file ``GO`` exists, so that every
process starts at the same moment, and print one JSON document.  Each opens
the store with ``nbops.open(ROOT)``, so ``NBOPS_CATALOG_URL`` in their
environment puts them on a PostgreSQL catalog (``tests/system/test_postgres.py``).

``zygote`` exists because a crash test needs hundreds of fresh processes:
it imports nbops once, then for each line ``RUN ROOT SEED FAULT WRITES`` on
its stdin forks a child that opens the store and writes until it is killed
(the test sends SIGKILL) or done.  It answers ``PID <pid>`` when the child
starts, the child says ``OPEN`` when its store is open (unless a named
point is armed), and the zygote says ``EXIT <code>`` when it ends (``-9``
for SIGKILL).  The child
never touches a connection of the zygote: the zygote opens no store.
"""

from __future__ import annotations

import datetime as dt
import importlib
import json
import os
import random
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

import nbops
from nbops.core import _faults

EPOCH = dt.datetime(2024, 1, 1)
SHARED_SNAPSHOT = "shared"
#: Feature writes to a shared name go to one of these groups (every process writes to each): a
#: commit reads every earlier commit of its version, so one group with thousands of commits
#: would measure that merge, not concurrency.
SHARED_GROUPS = 8
KINDS = ("snapshot_shared", "snapshot_own", "feature_shared", "snapshot_shared", "snapshot_own", "feature_own")


def _wait_for(go: Path) -> None:
    (go.parent / f"ready-{os.getpid()}").touch()
    while not go.exists():
        time.sleep(0.002)


def write_kind(j: int) -> str:
    """The j-th write of a process cycles through shared and own snapshot names and feature groups."""
    return KINDS[j % len(KINDS)]


def shared_group(j: int) -> str:
    return f"shared_fg_{(j // len(KINDS)) % SHARED_GROUPS}"


def snapshot_frame(proc: int, j: int) -> pd.DataFrame:
    return pd.DataFrame({"proc": [proc] * 3, "j": [j] * 3, "x": [0.5, 1.5, proc * 1000.0 + j]})


def feature_frame(proc: int, j: int) -> pd.DataFrame:
    """Two rows whose keys no other write uses: every commit only inserts."""
    return pd.DataFrame(
        {
            "entity": [proc * 1_000_000 + j * 2, proc * 1_000_000 + j * 2 + 1],
            "ts": [EPOCH + dt.timedelta(seconds=j)] * 2,
            "proc": [proc, proc],
            "j": [j, j],
        }
    )


def writer(root: Path, proc: int, writes: int, go: Path) -> list[dict[str, Any]]:
    """``writes`` writes of new content, in the order of :func:`write_kind`; what each call returned."""
    _wait_for(go)
    results: list[dict[str, Any]] = []
    with nbops.open(root) as store:
        for j in range(writes):
            kind = write_kind(j)
            if kind.startswith("snapshot"):
                name = SHARED_SNAPSHOT if kind == "snapshot_shared" else f"own_{proc}"
                ref = store.snapshot(snapshot_frame(proc, j), name, message=f"p{proc} j{j}")
                results.append({"kind": "snapshot", "name": name, "number": ref.version, "digest": ref.digest,
                                "new": ref.new, "proc": proc, "j": j})  # fmt: skip
            else:
                group = shared_group(j) if kind == "feature_shared" else f"own_fg_{proc}"
                fg = store.register_features(feature_frame(proc, j), group, keys="entity", event_time="ts")
                results.append({"kind": "feature", "name": group, "number": fg.commit, "digest": fg.digest,
                                "new": fg.inserted == 2 and fg.updated == 0, "proc": proc, "j": j})  # fmt: skip
    return results


def create(root: Path, proc: int, go: Path, kind: str) -> dict[str, Any]:
    """Get-or-create one shared thing at the same moment as the other processes."""
    store = nbops.open(root)
    try:
        if kind == "experiment":
            from nbops.tracking import experiments as tracking

            tracking.ensure_backend(store)  # what every process does before a run
            _wait_for(go)
            return {"id": tracking.experiment_id(store, "shared-experiment")}
        _wait_for(go)
        frame = pd.DataFrame({"entity": [1, 2], "ts": [EPOCH, EPOCH], "v": [0.5, 1.5]})
        fg = store.register_features(frame, "shared_group", keys="entity", event_time="ts")
        return {"version": fg.version, "commit": fg.commit, "digest": fg.digest}
    finally:
        store.close()


def open_at_once(root: Path, proc: int, go: Path) -> dict[str, Any]:
    """Open a store that may not exist yet, at the same moment as the other processes."""
    _wait_for(go)
    with nbops.open(root) as store:
        return {"proc": proc, "revision": store.catalog.schema_revision(), "catalog": store.catalog.url}


# -- crash writers -----------------------------------------------------------------------
def crash_frame(rng: random.Random, j: int) -> pd.DataFrame:
    """A frame of a few thousand rows: big enough that a kill often lands inside a write.

    After the first write, one time in four the content repeats an earlier
    draw, so that writes also take the "object exists" and "same as the latest
    version" paths.  The first write is always new content.
    """
    seed = rng.randrange(4) if j > 0 and rng.random() < 0.25 else rng.randrange(1 << 30)
    values = np.random.default_rng(seed)
    n = 2_000
    return pd.DataFrame(
        {
            "entity": np.arange(n, dtype="int64") + (seed % 7) * n,
            "ts": pd.Timestamp("2024-01-01") + pd.to_timedelta(values.integers(0, 86_400, n), unit="s"),
            "amount": values.normal(size=n),
            "label": values.choice(["a", "b", "c"], size=n),
        }
    ).drop_duplicates(["entity", "ts"])


def crash_writes(root: Path, seed: int, writes: int, announce: bool = False) -> None:
    """Alternate snapshots and feature registrations on a few names until done (or killed).

    With ``announce``, print ``OPEN`` once the store is open, so that the test
    times its kill from the first write, whatever the machine's load.
    """
    rng = random.Random(seed)
    with nbops.open(root) as store:
        if announce:
            print("OPEN", flush=True)
        for j in range(writes):
            frame = crash_frame(rng, j)
            if rng.random() < 0.5:
                store.snapshot(frame, f"crash_{rng.randrange(3)}", message=f"seed {seed} write {j}")
            else:
                store.register_features(frame, f"crash_fg_{rng.randrange(2)}", keys="entity", event_time="ts")


def zygote() -> None:
    """Fork a crash writer for each ``RUN`` line; report its pid and how it ended."""
    for line in sys.stdin:
        parts = line.split()
        if not parts or parts[0] != "RUN":
            continue
        root, seed, fault, writes = Path(parts[1]), int(parts[2]), parts[3], int(parts[4])
        pid = os.fork()
        if pid == 0:  # the child: arm the named point, write, and leave without running the zygote's code
            code = 0
            try:
                if fault != "none":
                    os.environ[_faults.FAULT_ENV] = fault
                    importlib.reload(_faults)  # the hook reads its variable once, at import
                crash_writes(root, seed, writes, announce=fault == "none")
            except BaseException as exc:  # noqa: BLE001 - reported to the test as exit code 1
                print(f"writer failed: {exc!r}", file=sys.stderr, flush=True)
                code = 1
            finally:
                os._exit(code)
        print(f"PID {pid}", flush=True)
        _, status = os.waitpid(pid, 0)
        print(f"EXIT {os.waitstatus_to_exitcode(status)}", flush=True)


def main(argv: list[str]) -> None:
    command, args = argv[0], argv[1:]
    if command == "writer":
        print(json.dumps(writer(Path(args[0]), int(args[1]), int(args[2]), Path(args[3]))))
    elif command == "create":
        print(json.dumps(create(Path(args[0]), int(args[1]), Path(args[2]), args[3])))
    elif command == "open":
        print(json.dumps(open_at_once(Path(args[0]), int(args[1]), Path(args[2]))))
    elif command == "once":
        once(Path(args[0]), args[1], int(args[2]))
    elif command == "zygote":
        zygote()
    else:
        raise SystemExit(f"unknown command {command!r}")


def once(root: Path, kind: str, seed: int) -> None:
    """One write of new content: a snapshot version or a feature commit (``NBOPS_FAULT`` may kill it)."""
    frame = crash_frame(random.Random(seed), 0)
    with nbops.open(root) as store:
        if kind == "snapshot":
            store.snapshot(frame.assign(seed=seed), "named")
        else:
            store.register_features(frame.assign(seed=seed), "named_fg", keys="entity", event_time="ts")


if __name__ == "__main__":
    main(sys.argv[1:])
