"""The reliability table of docs/reliability.md, each row with real processes and real files.

Every test prints its figure on one line starting with ``FIGURE`` (shown with
``pytest -s`` or ``-rP``).  The default run uses bounded counts; ``pytest -m
stress`` runs the large ones (also ``python benchmarks/stress.py``).

Rows already covered elsewhere, and extended rather than copied here:

- snapshot writers and racing opens: ``tests/system/test_store.py``;
- a process killed with SIGKILL inside ``nbops.track``: ``tests/tracking/test_tracking.py``;
- the name corpus and its Hypothesis test on ``validate_name``: ``tests/core/test_names.py``;
- the injection corpus through exported modules: ``tests/exporting/test_export.py``;
- the point-in-time oracle on the join itself: ``tests/featurestore/test_pit.py``.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

import nbops
from helpers.together import assert_all_exited_zero, reaped, release_when_ready, start_python
from nbops.core import _faults
from nbops.core.hashing import table_digest
from nbops.core.paths import MARKER_ENV, URI_ENV
from nbops.store import STORE_DIRNAME, Store

WORKERS = Path(__file__).parents[1] / "helpers" / "reliability_workers.py"
SRC = Path(nbops.__file__).resolve().parent.parent


def figure(label: str, **counts: object) -> str:
    """Print one figure line; the stress benchmark and docs/reliability.md quote these."""
    line = f"FIGURE {label}: " + ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in counts.items())
    print(line, flush=True)
    return line


def worker_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("NBOPS_HOME", URI_ENV, MARKER_ENV, _faults.FAULT_ENV)}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(SRC), os.environ.get("PYTHONPATH", "")) if p)
    return {**env, **extra}


@pytest.fixture(autouse=True)
def _no_tracking_uri_leaks(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Opening a store points MLflow at it through the environment; undo that after each test."""
    monkeypatch.delenv(URI_ENV, raising=False)
    monkeypatch.delenv(MARKER_ENV, raising=False)
    yield
    if "mlflow" in sys.modules:
        sys.modules["mlflow"].set_tracking_uri(None)


def run_together(root: Path, sync: Path, commands: list[list[str]], timeout: float = 600) -> list[str]:
    """Start one worker per command, release them at once (file ``sync/go``), return their stdout."""
    sync.mkdir(parents=True)
    go = sync / "go"
    procs = [start_python([str(WORKERS), *[a.replace("{GO}", str(go)) for a in cmd]], worker_env()) for cmd in commands]
    with reaped(procs):
        release_when_ready(procs, lambda: len(list(sync.glob("ready-*"))) >= len(procs), go, wait=120, poll=0.01)
        outputs = [p.communicate(timeout=timeout) for p in procs]
    assert_all_exited_zero(procs, outputs, "worker", tail=4000)
    return [out for out, _ in outputs]


# -- 1. N processes x M writes ------------------------------------------------------------------
@dataclass
class WriteFigures:
    attempted: int = 0
    stored: int = 0
    lost: int = 0
    duplicated: int = 0
    digest_mismatches: int = 0


def concurrent_writes(tmp_path: Path, procs: int, writes: int) -> WriteFigures:
    """``procs`` processes each make ``writes`` writes (snapshots and feature commits, shared and own names)."""
    from helpers.reliability_workers import SHARED_SNAPSHOT, shared_group

    root = tmp_path / STORE_DIRNAME
    nbops.open(root).close()  # the store exists; racing opens of a new store are test_store.py's
    commands = [["writer", str(root), str(p), str(writes), "{GO}"] for p in range(procs)]
    results = [r for out in run_together(root, tmp_path / "sync", commands) for r in json.loads(out)]
    figures = WriteFigures(attempted=procs * writes)
    assert len(results) == figures.attempted and all(r["new"] for r in results)

    with nbops.open(root) as store:
        # Stored: what the catalog holds, per name, must be exactly what the writers were told.
        catalog: dict[tuple[str, str], list[tuple[int, str]]] = {}
        for name in store.datasets()["name"]:
            history = store.history(name)
            catalog[("snapshot", name)] = list(zip(history["version"], history["digest"], strict=True))
        for group in store.feature_groups()["group"]:
            commits = store.feature_commits(group)
            catalog[("feature", group)] = list(zip(commits["commit"], commits["digest"], strict=True))
        stored = {(kind, name, n, d) for (kind, name), rows in catalog.items() for n, d in rows}
        figures.stored = len(stored)
        told = Counter((r["kind"], r["name"], r["number"], r["digest"]) for r in results)
        figures.lost = sum(1 for key in told if key not in stored)
        figures.duplicated = sum(c - 1 for c in told.values()) + (len(stored) - len(set(told)))
        for (kind, name), rows in catalog.items():
            numbers = [n for n, _ in rows]
            assert numbers == list(range(1, len(rows) + 1)), f"gap or repeat in {kind} {name}: {numbers}"

        # Re-read every version and commit and re-hash it.
        for r in results:
            if r["kind"] == "snapshot":
                table = store.load_table(r["name"], r["number"])
                figures.digest_mismatches += table_digest(table) != r["digest"]
                frame = store.load(r["name"], r["number"])
                figures.digest_mismatches += frame["proc"].tolist() != [r["proc"]] * 3
        for group in [g for kind, g in catalog if kind == "feature"]:
            rows = store.features(group)
            pairs = Counter(zip(rows["proc"], rows["j"], strict=True))
            expected = Counter((r["proc"], r["j"]) for r in results if r["name"] == group for _ in range(2))
            figures.lost += sum(max(0, c - pairs[k]) for k, c in expected.items()) // 2
            figures.duplicated += sum(max(0, c - expected[k]) for k, c in pairs.items()) // 2
        report = store.verify()
        figures.digest_mismatches += len(report.mismatched_objects) + len(report.mismatched_versions)
        assert report.ok, report.text()
        assert report.orphans == [] and report.tmp_files == []
        assert report.versions_checked == figures.attempted

        # each writer's own writes to a shared name appear in the order it made them
        for p in range(procs):
            for name in (SHARED_SNAPSHOT, *{shared_group(j) for j in range(writes)}):
                mine = [r["number"] for r in results if r["proc"] == p and r["name"] == name]
                assert mine == sorted(mine)
    figure(
        f"{procs} processes x {writes} writes",
        writes_attempted=figures.attempted, stored=figures.stored, lost=figures.lost,
        duplicated=figures.duplicated, digest_mismatches=figures.digest_mismatches,
    )  # fmt: skip
    assert (figures.stored, figures.lost, figures.duplicated, figures.digest_mismatches) == (
        figures.attempted, 0, 0, 0,
    )  # fmt: skip
    return figures


@pytest.mark.slow
def test_processes_writing_snapshots_and_feature_commits_lose_and_duplicate_nothing(tmp_path: Path) -> None:
    concurrent_writes(tmp_path, procs=4, writes=24)


# -- 2. K processes get-or-create the same thing ------------------------------------------------
def processes_create_one_group(tmp_path: Path, k: int, label: str) -> None:
    """``k`` processes get-or-create the same feature group at once: one group, one commit of its rows."""
    root = tmp_path / STORE_DIRNAME
    outputs = run_together(root, tmp_path / "sync", [["create", str(root), str(p), "{GO}", "group"] for p in range(k)])
    results = [json.loads(o) for o in outputs]
    with nbops.open(root) as store:
        created = len(store.feature_groups())
        commits = store.feature_commits("shared_group")
    same = sum(r["version"] == 1 for r in results) - 1
    figure(label, processes=k, created=created, saw_the_same_version=same, errors=0)
    assert created == 1 and same == k - 1
    # the same rows: one process commits them, the others find them unchanged and commit nothing
    assert [r["commit"] for r in results] == [1] * k
    assert commits["inserted"].tolist() == [2]


@pytest.mark.slow
def test_processes_creating_the_same_feature_group_at_once_share_one(tmp_path: Path) -> None:
    processes_create_one_group(tmp_path, k=4, label="feature group created at once")


@pytest.mark.slow
def test_processes_creating_the_same_experiment_at_once_share_one(tmp_path: Path) -> None:
    """On a new store, so that the tracking database is created by the racing processes too."""
    root = tmp_path / STORE_DIRNAME
    k = 4
    nbops.open(root).close()
    commands = [["create", str(root), str(p), "{GO}", "experiment"] for p in range(k)]
    results = [json.loads(o) for o in run_together(root, tmp_path / "sync", commands)]
    import mlflow

    experiments = mlflow.MlflowClient(tracking_uri=f"sqlite:///{root / 'mlflow.db'}").search_experiments()
    named = [e for e in experiments if e.name == "shared-experiment"]
    same = sum(r["id"] == results[0]["id"] for r in results) - 1
    figure("experiment created at once", processes=k, created=len(named), saw_the_same_id=same, errors=0)
    assert len(named) == 1 and same == k - 1 and named[0].experiment_id == results[0]["id"]


# -- 3. kill -9 -------------------------------------------------------------------------------
@dataclass
class CrashFigures:
    kills: int = 0
    finished_before_kill: int = 0
    opens_failed: int = 0
    verify_failures: int = 0
    partial_versions_visible: int = 0
    orphans_before_gc: int = 0
    orphans_left_after_gc: int = 0
    manual_unlocks_needed: int = 0
    versions_seen: int = 0
    problems: list[str] = field(default_factory=list)


class Zygote:
    """A worker process that forks crash writers on demand (see tests/helpers/reliability_workers.py)."""

    def __init__(self) -> None:
        self._exit_line: str | None = None
        self.proc = subprocess.Popen(
            [sys.executable, str(WORKERS), "zygote"],
            env=worker_env(), stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1,
        )  # fmt: skip

    def start(self, root: Path, seed: int, fault: str = "none", writes: int = 12) -> int:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(f"RUN {root} {seed} {fault} {writes}\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        assert line.startswith("PID "), f"zygote said {line!r}"
        return int(line.split()[1])

    def opened(self) -> bool:
        """Wait for the child's ``OPEN``; False if it ended first (its ``EXIT`` is kept for :meth:`wait`)."""
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if line.startswith("EXIT "):
            self._exit_line = line
            return False
        assert line.startswith("OPEN"), f"writer said {line!r}"
        return True

    def wait(self) -> int:
        assert self.proc.stdout is not None
        line = self._exit_line or self.proc.stdout.readline()
        self._exit_line = None
        assert line.startswith("EXIT "), f"zygote said {line!r}"
        return int(line.split()[1])

    def close(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture
def zygote() -> Iterator[Zygote]:
    z = Zygote()
    yield z
    z.close()


def write_lock_is_free(root: Path) -> bool:
    """True if a new writer gets the catalog's write lock at once (no one has to unlock anything)."""
    db = sqlite3.connect(root / "catalog.db", timeout=5, isolation_level=None)
    try:
        db.execute("BEGIN IMMEDIATE")
        db.execute("ROLLBACK")
        return True
    except sqlite3.OperationalError:
        return False
    finally:
        db.close()


def check_after_crash(root: Path, figures: CrashFigures, label: str) -> tuple[int, int]:
    """Open, verify, gc, verify again; count every problem. Returns (snapshot versions, feature commits)."""
    if not write_lock_is_free(root):
        figures.manual_unlocks_needed += 1
        figures.problems.append(f"{label}: the write lock was still held")
    try:
        store = nbops.open(root)
    except Exception as exc:  # noqa: BLE001 - an open that fails is the worst outcome: count it, show it
        figures.opens_failed += 1
        figures.problems.append(f"{label}: open failed: {exc!r}")
        return 0, 0
    try:
        report = store.verify()
        if not report.ok:
            figures.verify_failures += 1
            figures.problems.append(f"{label}: {report.text()}")
        figures.partial_versions_visible += len(report.mismatched_versions) + len(report.missing_objects)
        figures.partial_versions_visible += len(report.unreadable_objects)
        figures.orphans_before_gc += len(report.orphans) + len(report.tmp_files)
        versions = _visible_counts(store, figures, label)
        # The store is this test's own: when the first writer died before any commit, the catalog
        # refers to no object and gc must be told that an empty catalog is expected.
        store.gc(grace_seconds=0, empty_catalog=True)
        with store.catalog.read() as conn:
            known = set(conn.execute(sa_select_digests()).scalars())
        left = [p for d, p in store.objects.iter_objects() if d not in known] + list(store.objects.iter_tmp())
        figures.orphans_left_after_gc += len(left)
        if left:
            figures.problems.append(f"{label}: gc left {left}")
        return versions
    finally:
        store.close()


def sa_select_digests() -> Any:
    import sqlalchemy as sa

    from nbops.core import catalog as cat

    return sa.select(cat.objects.c.digest)


def _visible_counts(store: Store, figures: CrashFigures, label: str) -> tuple[int, int]:
    """Every visible version and commit is numbered without gaps and loads in full."""
    snapshots = commits = 0
    for name, latest in zip(store.datasets()["name"], store.datasets()["latest"], strict=True):
        history = store.history(name)
        if list(history["version"]) != list(range(1, latest + 1)):
            figures.partial_versions_visible += 1
            figures.problems.append(f"{label}: {name} versions {list(history['version'])}")
        snapshots += len(history)
    groups = store.feature_groups()
    for group, version in zip(groups["group"], groups["version"], strict=True):
        listed = store.feature_commits(group, version)
        if list(listed["commit"]) != list(range(1, len(listed) + 1)):
            figures.partial_versions_visible += 1
            figures.problems.append(f"{label}: {group} commits {list(listed['commit'])}")
        commits += len(listed)
        # the latest state reads back with as many rows as the catalog says
        if len(store.features(group, version=version)) != int(listed["total_rows"].iloc[-1]):
            figures.partial_versions_visible += 1
            figures.problems.append(f"{label}: {group}:{version} reads back a different row count")
    figures.versions_seen = max(figures.versions_seen, snapshots + commits)
    return snapshots, commits


def nbops_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "nbops.cli", *args],
        capture_output=True, text=True, env=worker_env(), timeout=300, check=False,
    )  # fmt: skip


def random_kills(tmp_path: Path, zygote: Zygote, kills: int, seed: int = 20240601, per_store: int = 50) -> CrashFigures:
    """Fork writers and SIGKILL each at a random moment; check the store after every kill."""
    rng = random.Random(seed)
    figures = CrashFigures()
    root = tmp_path / "store-0"
    for attempt in range(kills):
        if attempt and attempt % per_store == 0:
            _final_cli_check(root)
            root = tmp_path / f"store-{attempt // per_store}"  # keeps each verify small
        pid = zygote.start(root, seed=rng.randrange(1 << 30))
        if zygote.opened():
            time.sleep(rng.uniform(0.0, 0.5))  # about six writes' worth: the kill lands inside one
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        code = zygote.wait()
        if code == -signal.SIGKILL:
            figures.kills += 1
        elif code == 0:
            figures.finished_before_kill += 1
        else:
            figures.problems.append(f"kill {attempt}: the writer failed on its own (exit {code})")
        check_after_crash(root, figures, f"kill {attempt}")
    _final_cli_check(root)
    return figures


def _final_cli_check(root: Path) -> None:
    """The installed command line agrees: ``nbops verify`` passes and ``nbops gc`` finds nothing left."""
    verified = nbops_cli("--store", str(root), "verify")
    assert verified.returncode == 0, verified.stdout + verified.stderr
    collected = nbops_cli("--store", str(root), "gc", "--grace", "0")
    assert collected.returncode == 0 and collected.stdout.startswith("removed 0 orphan objects and 0 temporary"), (
        collected.stdout + collected.stderr
    )


def crash_figure(label: str, figures: CrashFigures) -> None:
    figure(
        label, kills=figures.kills, finished_before_kill=figures.finished_before_kill,
        opens_failed=figures.opens_failed, verify_failures=figures.verify_failures,
        partial_versions_visible=figures.partial_versions_visible, orphans_before_gc=figures.orphans_before_gc,
        orphans_left_after_gc=figures.orphans_left_after_gc, manual_unlocks_needed=figures.manual_unlocks_needed,
    )  # fmt: skip


def assert_clean(figures: CrashFigures) -> None:
    assert figures.problems == []
    assert (figures.opens_failed, figures.verify_failures, figures.partial_versions_visible) == (0, 0, 0)
    assert (figures.orphans_left_after_gc, figures.manual_unlocks_needed) == (0, 0)


@pytest.mark.slow
def test_kill_9_at_random_points_leaves_a_store_that_opens_verifies_and_collects(
    tmp_path: Path, zygote: Zygote
) -> None:
    figures = random_kills(tmp_path, zygote, kills=30)
    crash_figure("kill -9 at random points", figures)
    assert_clean(figures)
    assert figures.kills >= 20  # most writers were really killed, not finished
    assert figures.versions_seen > 0


NAMED_POINTS = _faults.POINTS


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["snapshot", "feature"])
def test_kill_9_at_each_named_point_through_the_environment(tmp_path: Path, kind: str) -> None:
    """``NBOPS_FAULT`` in a fresh process: the write is all there after the commit and invisible before it."""
    figures = CrashFigures()
    outcomes = {}
    for point in NAMED_POINTS:
        root = tmp_path / point / STORE_DIRNAME
        subprocess.run([sys.executable, str(WORKERS), "once", str(root), kind, "1"], env=worker_env(), check=True)
        before_files = {p for p in root.rglob("*") if p.is_file()}
        killed = subprocess.run(
            [sys.executable, str(WORKERS), "once", str(root), kind, "2"],
            env=worker_env(**{_faults.FAULT_ENV: point}), capture_output=True, text=True, check=False,
        )  # fmt: skip
        assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
        figures.kills += 1
        left_behind = {p for p in root.rglob("*") if p.is_file()} - before_files
        versions = check_after_crash(root, figures, point)
        outcomes[point] = (versions, left_behind)
        # the next writer needs nothing from anyone: it writes the same content through (a snapshot
        # of the latest content is the latest version; feature rows already committed are unchanged
        # and make no commit, so either way the group ends at commit 2)
        subprocess.run([sys.executable, str(WORKERS), "once", str(root), kind, "2"], env=worker_env(), check=True)
        after = check_after_crash(root, figures, f"{point}, then a new writer")
        assert after == ((2, 0) if kind == "snapshot" else (0, 2)), (point, after)
    crash_figure(f"kill -9 at each named point ({kind})", figures)
    assert_clean(figures)
    visible = {p: v for p, (v, _) in outcomes.items()}
    one, two = ((1, 0), (2, 0)) if kind == "snapshot" else ((0, 1), (0, 2))
    assert visible == {
        "after_temp_write": one, "before_publish": one, "before_catalog_commit": one, "after_catalog_commit": two,
    }  # fmt: skip

    def data(files: set[Path]) -> set[Path]:
        return {p for p in files if "objects" in p.parts or "tmp" in p.parts}

    assert any(p.parent.name == "tmp" for p in data(outcomes["after_temp_write"][1]))  # a torn temp file, collected
    assert data(outcomes["before_catalog_commit"][1])  # published objects without a row: orphans, collected


def named_point_kills(root: Path, zygote: Zygote, repeats: int) -> CrashFigures:
    """Each named point ``repeats`` times in forked writers (cheap), on one store that keeps growing."""
    figures = CrashFigures()
    for repeat in range(repeats):
        for point in NAMED_POINTS:
            before = check_after_crash(root, figures, f"{point} #{repeat} before") if root.exists() else (0, 0)
            zygote.start(root, seed=1000 * repeat + NAMED_POINTS.index(point), fault=point, writes=1)
            code = zygote.wait()
            assert code == -signal.SIGKILL, f"{point}: the writer was not killed (exit {code})"
            figures.kills += 1
            after = check_after_crash(root, figures, f"{point} #{repeat}")
            # one write of new content: visible only when the kill came after its commit
            grew = sum(after) - sum(before)
            if grew != (1 if point == "after_catalog_commit" else 0):
                figures.partial_versions_visible += 1
                figures.problems.append(f"{point} #{repeat}: {before} -> {after}")
    _final_cli_check(root)
    return figures


@pytest.mark.slow
def test_kill_9_at_named_points_again_and_again(tmp_path: Path, zygote: Zygote) -> None:
    figures = named_point_kills(tmp_path / STORE_DIRNAME, zygote, repeats=3)
    crash_figure("kill -9 at named points, repeated", figures)
    assert_clean(figures)
    assert figures.kills == 3 * len(NAMED_POINTS)


# -- 4. a kernel killed inside %%track ---------------------------------------------------------
@pytest.mark.slow
def test_kernel_killed_inside_track_leaves_no_run_running(tmp_path: Path) -> None:
    """A real IPython kernel runs ``%%track`` with a long body and is killed with SIGKILL."""
    from jupyter_client.manager import KernelManager
    from mlflow import MlflowClient

    root = tmp_path / STORE_DIRNAME
    nbops.open(root).close()
    km = KernelManager(kernel_name="python3")
    km.start_kernel(env=worker_env(NBOPS_HOME=str(root)), cwd=str(tmp_path))
    kc = km.client()
    kc.start_channels()
    try:
        kc.wait_for_ready(timeout=120)
        reply = kc.execute_interactive("%load_ext nbops", timeout=120)
        assert reply["content"]["status"] == "ok", reply["content"]
        kc.execute("%%track --experiment kernel-kill --run-name doomed\nimport time\ntime.sleep(600)")
        live = root / "live_runs"
        deadline = time.monotonic() + 180
        while not list(live.glob("*.json")):
            assert time.monotonic() < deadline, "the run never started"
            assert km.is_alive(), "the kernel died before its run started"
            time.sleep(0.1)
        run_id = next(live.glob("*.json")).stem
        client = MlflowClient(tracking_uri=f"sqlite:///{root / 'mlflow.db'}")
        assert client.get_run(run_id).info.status == "RUNNING"
        os.kill(km.provisioner.pid, signal.SIGKILL)  # type: ignore[union-attr]
        deadline = time.monotonic() + 60
        while km.is_alive():
            assert time.monotonic() < deadline, "the kernel survived SIGKILL"
            time.sleep(0.05)
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)

    with nbops.open(root):
        pass
    runs = client.search_runs([client.get_experiment_by_name("kernel-kill").experiment_id])
    running = [r.info.run_id for r in runs if r.info.status == "RUNNING"]
    figure("kernel killed inside %%track", runs=len(runs), runs_left_running=len(running))
    assert running == [] and [r.info.status for r in runs] == ["KILLED"]
    assert client.get_run(run_id).data.tags["nbops.ended_by"] == "reaped: its process died"


# -- 5. names and paths -------------------------------------------------------------------------
@dataclass
class NameTally:
    tried: int = 0
    rejected: int = 0
    accepted: int = 0
    files_outside_root: int = 0
    rules: Counter[str] = field(default_factory=Counter)


def files_under(folder: Path) -> set[Path]:
    return {p for p in folder.rglob("*")}


def names_entry_points(store: Store) -> dict[str, Any]:
    """Every call that takes a user-supplied name and writes (or reads) by it."""
    from nbops.tracking import experiments as tracking

    frame = pd.DataFrame({"id": [1, 2], "ts": pd.to_datetime(["2024-01-01", "2024-01-02"]), "v": [0.5, 1.5]})
    spine = pd.DataFrame({"id": [1], "ts": pd.to_datetime(["2024-01-03"])})
    store.register_features(frame, "known", keys="id", event_time="ts")
    return {
        "snapshot": lambda name: store.snapshot(frame, name),
        "feature group": lambda name: store.register_features(frame, name, keys="id", event_time="ts"),
        "feature column": lambda name: store.register_features(
            frame.rename(columns={"v": name}), "known", keys="id", event_time="ts", version=2
        ),
        "training set": lambda name: store.training_data(spine, ["known.v"], event_time="ts", save_as=name),
        "model": lambda name: tracking.register_model(store, name, run_id="0" * 32),
        "load": lambda name: store.load(name),
        "history": lambda name: store.history(name),
        "features": lambda name: store.features(name),
    }


#: Entry points that read: a hostile name must fail, with InvalidNameError or a reference error.
READERS = ("load", "history", "features")


@pytest.mark.slow
def test_hostile_names_through_every_entry_point_are_rejected_with_a_rule(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from helpers.names import BAD_NAMES
    from nbops.errors import InvalidNameError, NbopsError

    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    root = tmp_path / STORE_DIRNAME
    tally = NameTally()
    accepted: list[tuple[str, object]] = []
    with nbops.open(root) as store:
        calls = names_entry_points(store)
        outside_before = files_under(tmp_path) - files_under(root)
        for entry, call in calls.items():
            for name, rule in BAD_NAMES:
                if entry == "feature column" and not isinstance(name, str):
                    continue  # pandas turns any column label into a string before nbops sees it
                if entry == "training set" and name is None:
                    continue  # save_as=None means "do not save"
                tally.tried += 1
                try:
                    call(name)
                except InvalidNameError as err:
                    tally.rejected += 1
                    tally.rules[err.rule] += 1
                    assert f"(rule: {err.rule})" in str(err)
                    if entry not in READERS:
                        assert err.rule == rule, (entry, name, err.rule)
                except NbopsError as err:
                    assert entry in READERS, f"{entry} {name!r}: {err!r} names no rule"
                    tally.rejected += 1  # e.g. "'../x' is not a feature group reference"
                else:
                    tally.accepted += 1
                    accepted.append((entry, name))
        tally.files_outside_root = len(files_under(tmp_path) - files_under(root) - outside_before)
        tally.files_outside_root += Path("/abs").exists()
        assert store.verify().ok
    figure(
        "hostile names through every entry point", names_tried=tally.tried, rejected=tally.rejected,
        accepted=tally.accepted, files_outside_root=tally.files_outside_root,
    )  # fmt: skip
    assert accepted == [] and tally.files_outside_root == 0
    assert tally.rejected == tally.tried


EXPERIMENT_ACCEPTS = {"caf\u00e9", "\uff41", "a@1", "a.b", "1abc", "-x", "a b"}


@pytest.mark.slow
def test_hostile_experiment_names_never_place_artifacts_outside_the_store(tmp_path: Path) -> None:
    """Experiment names may hold spaces, dots and accents (notebook names), never a path."""
    from helpers.names import BAD_NAMES
    from nbops.errors import InvalidNameError
    from nbops.tracking import experiments as tracking

    root = tmp_path / STORE_DIRNAME
    tally = NameTally()
    before = files_under(tmp_path)
    with nbops.open(root) as store:
        for name, _ in BAD_NAMES:
            tally.tried += 1
            try:
                experiment = tracking.experiment_id(store, name)  # type: ignore[arg-type]
            except InvalidNameError as err:
                tally.rejected += 1
                tally.rules[err.rule] += 1
                continue
            tally.accepted += 1
            assert name in EXPERIMENT_ACCEPTS, f"experiment name {name!r} was accepted"
            with tracking.track(store, experiment=name, source="x = 1"):
                pass
            location = Path(tracking.client().get_experiment(experiment).artifact_location.removeprefix("file://"))
            assert location.parent == root / tracking.ARTIFACT_DIR
    new_files = files_under(tmp_path) - before
    tally.files_outside_root = sum(not p.is_relative_to(root) for p in new_files)
    figure(
        "hostile experiment names", names_tried=tally.tried, rejected=tally.rejected,
        accepted_as_folder_names=tally.accepted, files_outside_root=tally.files_outside_root,
    )  # fmt: skip
    assert tally.files_outside_root == 0 and tally.rejected + tally.accepted == tally.tried
    assert tally.accepted == len(EXPERIMENT_ACCEPTS)


def test_experiment_name_with_a_path_is_refused_before_anything_is_written(tmp_path: Path) -> None:
    """Regression: ``experiment='../../x'`` used to put the run's artifacts (cell.py) outside the store."""
    from nbops.errors import InvalidNameError
    from nbops.tracking import experiments as tracking

    root = tmp_path / "a" / STORE_DIRNAME
    with nbops.open(root) as store:
        before = files_under(tmp_path)
        for bad, rule in [("../../../escaped", "separator"), ("..", "traversal"), ("x\u202e", "control")]:
            with pytest.raises(InvalidNameError, match=rf"invalid experiment name .*\(rule: {rule}\)"):
                tracking.start_run(store, experiment=bad, source="x = 1")
        assert files_under(tmp_path) == before  # not even the tracking database was created


NAME_TALLY = NameTally()


@pytest.fixture(scope="module")
def fuzz_tally() -> Iterator[NameTally]:
    yield NAME_TALLY
    figure(
        "names fuzz through the store (Hypothesis)", names_tried=NAME_TALLY.tried, rejected=NAME_TALLY.rejected,
        accepted=NAME_TALLY.accepted, files_outside_root=NAME_TALLY.files_outside_root,
    )  # fmt: skip


@pytest.fixture(scope="module")
def fuzz_store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Store]:
    with nbops.open(tmp_path_factory.mktemp("fuzz") / STORE_DIRNAME) as store:
        yield store


def _fuzz_names() -> Any:
    from hypothesis import strategies as st

    return st.one_of(
        st.text(max_size=140),
        st.from_regex(r"[A-Za-z0-9_.\-/\\:@%~ ]{0,12}", fullmatch=True),
        st.sampled_from(["..", "../x", "/abs", "C:x", "a\\..\\b", "%2e%2e%2f", "x" * 300]),
    )


def test_any_name_through_the_store_is_rejected_or_stays_inside_it(fuzz_store: Store, fuzz_tally: NameTally) -> None:
    from hypothesis import HealthCheck, given, settings

    from nbops.core.names import MAX_NAME_LENGTH
    from nbops.errors import InvalidNameError

    frame = pd.DataFrame({"id": [1], "ts": pd.to_datetime(["2024-01-01"]), "v": [0.5]})
    parent = fuzz_store.root.parent

    @settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
    @given(name=_fuzz_names())
    def check(name: str) -> None:
        outside_before = set(parent.parent.iterdir()) | files_under(parent) - files_under(fuzz_store.root)
        for write in (
            lambda: fuzz_store.snapshot(frame, name),
            lambda: fuzz_store.register_features(frame, name, keys="id", event_time="ts"),
        ):
            fuzz_tally.tried += 1
            try:
                write()
            except InvalidNameError as err:
                fuzz_tally.rejected += 1
                assert f"(rule: {err.rule})" in str(err)
            else:
                fuzz_tally.accepted += 1
                assert 1 <= len(name) <= MAX_NAME_LENGTH and name.isascii() and "/" not in name
        outside_after = set(parent.parent.iterdir()) | files_under(parent) - files_under(fuzz_store.root)
        fuzz_tally.files_outside_root += len(outside_after - outside_before)
        assert outside_after == outside_before

    check()
    assert fuzz_store.verify().ok


# -- 6. injection through magic lines in a real shell ------------------------------------------
@pytest.mark.slow
def test_injection_corpus_through_magic_lines_stays_data(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The payloads of helpers/payloads.py (exported modules get them in test_export.py), typed into magics."""
    import shlex

    from IPython.core.error import UsageError
    from IPython.core.interactiveshell import InteractiveShell

    from helpers.payloads import PAYLOADS

    root = tmp_path / STORE_DIRNAME
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    monkeypatch.setenv("NBOPS_HOME", str(root))
    InteractiveShell.clear_instance()
    shell = InteractiveShell.instance()
    shell.extension_manager.load_extension("nbops")
    stored = refused = 0
    try:
        shell.run_cell(
            "import pandas as pd\nx = 1\n"
            "df = pd.DataFrame({'id': [1, 2], 'ts': pd.to_datetime(['2024-01-01', '2024-01-02']), 'v': [0.5, 1.5]})"
        )
        for i, payload in enumerate(PAYLOADS):
            q = shlex.quote(payload)
            shell.run_line_magic("snapshot", f"df --name inj{i} -m {q}")
            shell.run_cell_magic("features", f"fg{i} --keys id --event-time ts -d {q}", "df")
            shell.run_cell_magic("track", f"--experiment injection --run-name {q}", "y = 2")
            with pytest.raises(UsageError, match=r"invalid snapshot name .*\(rule: "):
                shell.run_line_magic("snapshot", f"df --name {q}")
            refused += 1
    finally:
        shell.extension_manager.unload_extension("nbops")
        InteractiveShell.clear_instance()
    with nbops.open(root) as store:
        for i, payload in enumerate(PAYLOADS):
            stored += store.ref(f"inj{i}").message == payload
            stored += store.feature_groups().set_index("group").loc[f"fg{i}", "description"] == payload
        run_names = set(store.runs("injection")["run_name"])
        stored += sum(p in run_names for p in PAYLOADS)
    markers = [p for p in tmp_path.rglob("MARKER*")] + [p for p in Path.cwd().glob("MARKER*")]
    figure(
        "injection corpus through magic lines", payloads=len(PAYLOADS), magic_lines=4 * len(PAYLOADS),
        stored_literally=stored, refused_as_names=refused, marker_files_created=len(markers),
    )  # fmt: skip
    assert markers == [] and stored == 3 * len(PAYLOADS) and refused == len(PAYLOADS)


# -- 7. timezones against a brute-force oracle --------------------------------------------------
ZONES = [None, "UTC", "Asia/Kolkata", "America/New_York", "Pacific/Chatham"]
# Instants around the 2024 DST changes of New York and Chatham, and some that tie exactly.
INSTANTS = pd.to_datetime(
    ["2024-03-10 06:30", "2024-03-10 07:00", "2024-03-10 07:30", "2024-04-06 13:45", "2024-04-06 14:45",
     "2024-11-03 05:30", "2024-11-03 06:00", "2024-11-03 06:30", "2024-11-03 07:00"],
    utc=True,
)  # fmt: skip


def in_zone(instants: pd.Series, zone: str | None) -> pd.Series:
    return instants.dt.tz_localize(None) if zone is None else instants.dt.tz_convert(zone)


@pytest.mark.slow
def test_timezone_matrix_through_the_store_matches_a_brute_force_join(tmp_path: Path) -> None:
    rng = random.Random(7)
    feature_rows = sorted({(rng.randrange(3), rng.randrange(len(INSTANTS))) for _ in range(18)})
    spine_rows = [(rng.randrange(4), rng.randrange(len(INSTANTS))) for _ in range(30)]
    cases = mismatches = leaks = round_trip_changes = compared = 0
    with nbops.open(tmp_path / STORE_DIRNAME) as store:
        for fz in ZONES:
            features = pd.DataFrame(
                {
                    "key": [k for k, _ in feature_rows],
                    "ts": in_zone(pd.Series(INSTANTS[[t for _, t in feature_rows]]), fz),
                    "row": list(range(len(feature_rows))),
                }
            )
            group = f"tz_{ZONES.index(fz)}"
            store.register_features(features, group, keys="key", event_time="ts")
            back = store.features(group)
            round_trip_changes += back["ts"].dtype != features["ts"].dtype
            round_trip_changes += not back["ts"].equals(features["ts"])
            for sz in ZONES:
                cases += 1
                spine = pd.DataFrame(
                    {
                        "key": [k for k, _ in spine_rows],
                        "ts": in_zone(pd.Series(INSTANTS[[t for _, t in spine_rows]]), sz),
                    }
                )
                out = store.training_data(spine, [f"{group}.row"], event_time="ts")
                for (key, t), got in zip(spine_rows, out["row"], strict=True):
                    compared += 1
                    # brute force: the latest feature row of this key at or before the spine instant
                    candidates = [
                        (ft, i) for i, (k, ft) in enumerate(feature_rows) if k == key and INSTANTS[ft] <= INSTANTS[t]
                    ]
                    expected = max(candidates, key=lambda c: INSTANTS[c[0]])[1] if candidates else None
                    got_row = None if pd.isna(got) else int(got)
                    mismatches += got_row != expected
                    if got_row is not None:
                        leaks += INSTANTS[feature_rows[got_row][1]] > INSTANTS[t]
    figure(
        "timezone matrix against a brute-force join", zone_pairs=cases, rows_compared=compared,
        mismatches=mismatches, leaked_future_values=leaks, round_trip_changes=round_trip_changes,
    )  # fmt: skip
    assert (mismatches, leaks, round_trip_changes) == (0, 0, 0)


# -- 8. schema drift between feature versions ----------------------------------------------------
def drift_base(start: int = 0) -> pd.DataFrame:
    n = 4
    return pd.DataFrame(
        {
            "id": range(start, start + n),
            "ts": pd.Timestamp("2024-01-01", tz="UTC") + pd.to_timedelta(range(n), unit="h"),
            "amount": [0.5, 1.5, 2.5, 3.5],
            "n_tx": [1, 2, 3, 4],
            "kind": pd.Categorical(["a", "b", "a", "b"]),
        }
    )


def _int_to_float(f: pd.DataFrame) -> pd.DataFrame:
    return f.assign(n_tx=f["n_tx"].astype("float64"))


def _nan_in_ints(f: pd.DataFrame) -> pd.DataFrame:
    return f.assign(n_tx=[1.0, float("nan"), 3.0, 4.0])


def _nullable_ints(f: pd.DataFrame) -> pd.DataFrame:
    return f.assign(n_tx=pd.array([1, None, 3, 4], dtype="Int64"))


# (case, change, None if the version takes it as a data commit else the error's column detail,
#  the dtype of the changed column when read back)
DRIFT_CASES: list[tuple[str, Any, str | None, dict[str, str]]] = [
    ("int -> float", _int_to_float, "n_tx: int64 -> double", {"n_tx": "float64"}),
    ("NaN in an int column", _nan_in_ints, "n_tx: int64 -> double", {"n_tx": "float64"}),
    ("missing ints as nullable Int64", _nullable_ints, None, {"n_tx": "Int64"}),
    ("added column", lambda f: f.assign(fee=0.1), "fee: added (double)", {"fee": "float64"}),
    ("dropped column", lambda f: f.drop(columns="amount"), "amount: removed (was double)", {}),
    ("renamed column", lambda f: f.rename(columns={"amount": "amt"}),
     "amount: removed (was double); amt: added (double)", {"amt": "float64"}),
    ("new category values", lambda f: f.assign(kind=pd.Categorical(["c", "a", "c", "d"])), None, {"kind": "category"}),
    ("ordered categories", lambda f: f.assign(kind=pd.Categorical(["a", "b", "a", "b"], ordered=True)),
     ("kind: dictionary<values=large_string, indices=int8, ordered=0> -> "
      "dictionary<values=large_string, indices=int8, ordered=1>"), {"kind": "category"}),
    ("category -> string", lambda f: f.assign(kind=f["kind"].astype(str)),
     "kind: dictionary<values=large_string, indices=int8, ordered=0> -> large_string", {"kind": "str"}),
    ("float64 -> float32", lambda f: f.assign(amount=f["amount"].astype("float32")), "amount: double -> float",
     {"amount": "float32"}),
    ("time zone changed", lambda f: f.assign(ts=f["ts"].dt.tz_convert("Asia/Kolkata")),
     "ts: timestamp[us, tz=UTC] -> timestamp[us, tz=Asia/Kolkata]", {"ts": "datetime64[us, Asia/Kolkata]"}),
    ("empty frame", lambda f: f.iloc[:0], None, {}),
]  # fmt: skip


@pytest.mark.parametrize(("case", "change", "error", "dtypes"), DRIFT_CASES, ids=[c[0] for c in DRIFT_CASES])
def test_schema_drift_matrix(tmp_path: Path, case: str, change: Any, error: str | None, dtypes: dict[str, str]) -> None:
    """Each change is either a data commit of the same version or an error naming the column and both
    types; after ``version=2`` (when needed) every version reads back with the dtypes it was written with."""
    from nbops.featurestore.groups import SchemaChangeError

    with nbops.open(tmp_path / STORE_DIRNAME) as store:
        v1 = drift_base()
        store.register_features(v1, "drift", keys="id", event_time="ts")
        changed = change(drift_base(start=100))
        if error is None:
            ref = store.register_features(changed, "drift", keys="id", event_time="ts")
            # no rows change nothing: no commit
            assert (ref.version, ref.commit, ref.unchanged) == (
                (1, 1, True) if case == "empty frame" else (1, 2, False)
            )
        else:
            with pytest.raises(SchemaChangeError, match="pass version=2") as info:
                store.register_features(changed, "drift", keys="id", event_time="ts")
            assert error in str(info.value)
            ref = store.register_features(changed, "drift", keys="id", event_time="ts", version=2)
            assert (ref.version, ref.commit) == (2, 1)
            assert dict(store.features("drift", version=1).dtypes) == dict(v1.dtypes)  # v1 untouched
        back = store.features("drift", version=ref.version)
        silent = [c for c in back.columns if c not in dtypes and c in changed and back[c].dtype != changed[c].dtype]
        silent += [c for c, expected in dtypes.items() if str(back[c].dtype) != expected]
        assert silent == [], f"{case}: dtypes changed on read-back: {silent}"
        assert len(back) == (len(v1) if error is None else 0) + len(changed)
    figure(f"schema drift: {case}", outcome="data commit" if error is None else "error naming the column",
           silent_dtype_changes=len(silent))  # fmt: skip


def test_ints_read_back_nullable_after_a_later_commit_without_missing_values(tmp_path: Path) -> None:
    """Regression: the state read back with the latest commit's dtypes, so missing ints written as
    ``Int64`` (and missing bools as ``boolean``) became float64 (object) after a plain int64 commit."""
    with nbops.open(tmp_path / STORE_DIRNAME) as store:
        base = drift_base().assign(flag=[True, False, True, False])
        store.register_features(base, "nullable", keys="id", event_time="ts")
        store.register_features(
            drift_base(50).assign(n_tx=pd.array([1, None, 3, 4], dtype="Int64"),
                                  flag=pd.array([True, None, False, True], dtype="boolean")),
            "nullable", keys="id", event_time="ts",
        )  # fmt: skip
        store.register_features(drift_base(90).assign(flag=True), "nullable", keys="id", event_time="ts")
        back = store.features("nullable")
        assert (str(back["n_tx"].dtype), str(back["flag"].dtype)) == ("Int64", "boolean")
        assert back["n_tx"].isna().sum() == 1 and back["flag"].isna().sum() == 1
        assert back["n_tx"].dropna().tolist() == [1, 2, 3, 4, 1, 3, 4, 1, 2, 3, 4]
        # as of commit 1, before any missing value, the version still reads as written
        first = store.features("nullable", as_of=1)
        assert (str(first["n_tx"].dtype), str(first["flag"].dtype)) == ("int64", "bool")


def test_an_empty_tracking_database_left_by_a_killed_open_is_made_wal(tmp_path: Path) -> None:
    """Regression: a process killed between creating ``mlflow.db`` and setting WAL left an empty file
    that every later open took as ready, so MLflow then created its tables in rollback-journal mode."""
    root = tmp_path / STORE_DIRNAME
    nbops.open(root).close()
    (root / "mlflow.db").write_bytes(b"")  # what sqlite3.connect leaves when killed before its first write
    nbops.open(root).close()
    db = sqlite3.connect(root / "mlflow.db")
    try:
        assert db.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    finally:
        db.close()


def test_the_fault_hook_is_inert_unless_armed() -> None:
    assert os.environ.get(_faults.FAULT_ENV) is None and _faults._armed == ""
    for point in _faults.POINTS:
        _faults.reached(point)  # returns: this process is not killed


# -- the large counts: pytest -m stress (and benchmarks/stress.py) --------------------------------
STRESS_PROCESSES, STRESS_WRITES, STRESS_KILLS, STRESS_NAMED_REPEATS = 16, 200, 1000, 25


@pytest.mark.stress
def test_stress_processes_writing_at_once(tmp_path: Path) -> None:
    concurrent_writes(tmp_path, procs=STRESS_PROCESSES, writes=STRESS_WRITES)


@pytest.mark.stress
def test_stress_kill_9_at_random_points(tmp_path: Path, zygote: Zygote) -> None:
    figures = random_kills(tmp_path, zygote, kills=STRESS_KILLS)
    crash_figure("kill -9 at random points (stress)", figures)
    assert_clean(figures)


@pytest.mark.stress
def test_stress_kill_9_at_named_points(tmp_path: Path, zygote: Zygote) -> None:
    figures = named_point_kills(tmp_path / STORE_DIRNAME, zygote, STRESS_NAMED_REPEATS)
    crash_figure("kill -9 at named points (stress)", figures)
    assert_clean(figures)
