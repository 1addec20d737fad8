"""The store folder: discovery, opening rules, the SQLite catalog, and concurrent writers in real processes."""

from __future__ import annotations

import json
import os
import sqlite3
import textwrap
from collections.abc import Callable
from functools import partial
from pathlib import Path

import pandas as pd
import pytest

import nbops
from helpers.together import assert_all_exited_zero, reaped, release_when_ready, start_python
from nbops.core.catalog import SCHEMA_HEAD
from nbops.core.hashing import table_digest
from nbops.errors import StoreError
from nbops.store import STORE_DIRNAME, Store, find_store_root

SRC = Path(nbops.__file__).resolve().parent.parent


# -- discovery -------------------------------------------------------------------------------
def test_nbops_home_wins_over_a_store_in_the_working_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    project = tmp_path / "project"
    nbops.open(project / STORE_DIRNAME).close()
    home = tmp_path / "elsewhere" / "home-store"
    monkeypatch.chdir(project)
    monkeypatch.setenv("NBOPS_HOME", str(home))
    with nbops.open() as store:
        assert store.root == home.resolve()
        store.snapshot(pd.DataFrame({"a": [1]}), "x")
    assert (home / "catalog.db").is_file()
    with nbops.open(project / STORE_DIRNAME) as local:
        assert local.datasets().empty  # nothing went to the store in the working folder


def test_empty_nbops_home_is_ignored(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NBOPS_HOME", "")
    assert find_store_root(tmp_path) == _expected_new_root(tmp_path)


def test_nearest_store_upward_is_found_from_a_nested_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    nbops.open(tmp_path / STORE_DIRNAME).close()  # farther away
    project = tmp_path / "project"
    nbops.open(project / STORE_DIRNAME).close()  # nearest
    nested = project / "notebooks" / "deep" / "deeper"
    nested.mkdir(parents=True)
    monkeypatch.chdir(nested)
    with nbops.open() as store:
        assert store.root == (project / STORE_DIRNAME).resolve()
    assert not (nested / STORE_DIRNAME).exists()


def test_a_file_named_nbops_is_not_taken_for_a_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    project = tmp_path / "project"
    nbops.open(project / STORE_DIRNAME).close()
    nested = project / "sub"
    nested.mkdir()
    (nested / STORE_DIRNAME).write_text("not a folder")
    monkeypatch.chdir(nested)
    assert find_store_root() == (project / STORE_DIRNAME).resolve()


def _expected_new_root(folder: Path) -> Path:
    for parent in folder.resolve().parents:
        if (parent / STORE_DIRNAME).is_dir():
            pytest.skip(f"an ancestor of the temporary folder holds a store: {parent / STORE_DIRNAME}")
    return folder.resolve() / STORE_DIRNAME


def test_without_any_store_a_new_one_is_created_in_the_working_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    work = tmp_path / "work"
    work.mkdir()
    expected = _expected_new_root(work)
    monkeypatch.chdir(work)
    with nbops.open() as store:
        assert store.root == expected
        assert (expected / "catalog.db").is_file()


def test_opening_a_non_empty_folder_that_is_not_a_store_is_an_error_and_touches_nothing(tmp_path: Path) -> None:
    folder = tmp_path / "my-data"
    folder.mkdir()
    (folder / "important.csv").write_text("a,b\n1,2\n")
    with pytest.raises(StoreError, match=r"is not an nbops store \(it has no catalog.db\) and is not empty"):
        nbops.open(folder)
    assert sorted(p.name for p in folder.iterdir()) == ["important.csv"]
    assert (folder / "important.csv").read_text() == "a,b\n1,2\n"


def test_a_folder_another_process_is_making_into_a_store_opens(tmp_path: Path) -> None:
    """A racing opener may find only a catalog or a marker being written: that is a store being made.

    (A new catalog is built under a temporary name and linked into place whole, so an
    empty ``catalog.db`` is never a store being made: it is refused, see test_trust.py.)
    """
    for first_file in (".catalog.db.4242.0badcafe.tmp", ".store.json.4242.tmp"):
        folder = tmp_path / first_file.strip(".")
        folder.mkdir()
        (folder / first_file).touch()
        with nbops.open(folder) as store:
            assert store.summary()["datasets"] == 0


def test_opening_a_file_as_a_store_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "store"
    path.write_text("x")
    with pytest.raises(StoreError, match="is a file, not a store folder"):
        nbops.open(path)
    assert path.read_text() == "x"


def test_an_empty_folder_becomes_a_store(tmp_path: Path) -> None:
    folder = tmp_path / "empty"
    folder.mkdir()
    with nbops.open(folder) as store:
        assert store.summary()["datasets"] == 0
    assert (folder / "catalog.db").is_file()


def test_reopening_a_store_keeps_its_data(tmp_path: Path) -> None:
    df = pd.DataFrame({"a": [1, 2]})
    with nbops.open(tmp_path / STORE_DIRNAME) as store:
        ref = store.snapshot(df, "kept")
    with nbops.open(tmp_path / STORE_DIRNAME) as store:
        assert store.ref("kept").digest == ref.digest
        pd.testing.assert_frame_equal(store.load("kept"), df, check_exact=True)
        summary = store.summary()
        assert (summary["datasets"], summary["snapshot_versions"], summary["objects"]) == (1, 1, 1)


# -- catalog ---------------------------------------------------------------------------------
def test_catalog_is_sqlite_in_wal_mode_at_the_head_revision(store: Store) -> None:
    conn = sqlite3.connect(store.root / "catalog.db")
    try:
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        assert conn.execute("SELECT version_num FROM alembic_version").fetchall() == [(SCHEMA_HEAD,)]
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    finally:
        conn.close()
    assert {"datasets", "snapshots", "snapshot_columns", "objects", "alembic_version"} <= tables
    assert store.catalog.schema_revision() == SCHEMA_HEAD


def test_a_catalog_from_a_newer_nbops_is_refused_and_left_alone(tmp_path: Path) -> None:
    root = tmp_path / STORE_DIRNAME
    with nbops.open(root) as store:
        store.snapshot(pd.DataFrame({"a": [1]}), "x")
    conn = sqlite3.connect(root / "catalog.db")
    with conn:
        conn.execute("UPDATE alembic_version SET version_num = '9999'")
    conn.close()
    with pytest.raises(StoreError, match=r"schema revision '9999', which this nbops does not know .*upgrade nbops"):
        nbops.open(root)
    conn = sqlite3.connect(root / "catalog.db")
    try:
        assert conn.execute("SELECT version_num FROM alembic_version").fetchall() == [("9999",)]
        assert conn.execute("SELECT count(*) FROM snapshots").fetchone() == (1,)
    finally:
        conn.close()


# -- real processes --------------------------------------------------------------------------
#: What each script of ``_run_together`` does first: take its arguments, say it is ready, wait for ``go``.
READY_THEN_WAIT = """
root, proc, go = Path(sys.argv[1]), int(sys.argv[2]), Path(sys.argv[3])
(go.parent / f"ready-{proc}").touch()
while not go.exists():
    time.sleep(POLL)
"""


def released_script(imports: str, body: str, poll: float = 0.001) -> str:
    """A script for ``_run_together``: ``imports``, then ``READY_THEN_WAIT`` (polling every ``poll`` s), then ``body``."""
    return textwrap.dedent(imports) + READY_THEN_WAIT.replace("POLL", str(poll)) + textwrap.dedent(body)


WRITER = released_script(
    """
    import json, sys, time
    from pathlib import Path
    import pandas as pd
    import nbops
    """,
    """
    results = []
    with nbops.open(root) as store:
        for j in range(10):
            name = "shared" if j % 2 == 0 else f"own_{proc}"
            df = pd.DataFrame({"proc": [proc] * 3, "j": [j] * 3, "x": [0.5, 1.5, float(proc * 100 + j)]})
            ref = store.snapshot(df, name, message=f"p{proc} j{j}")
            results.append({"name": ref.name, "version": ref.version, "digest": ref.digest,
                            "new": ref.new, "proc": proc, "j": j})
    print(json.dumps(results))
    """,
    poll=0.005,
)

OPENER = released_script(
    """
    import sys, time
    from pathlib import Path
    import nbops
    """,
    """
    with nbops.open(root) as store:
        print(store.catalog.schema_revision())
    """,
)

SAME_CONTENT = released_script(
    """
    import json, sys, time
    from pathlib import Path
    import pandas as pd
    import nbops
    """,
    """
    with nbops.open(root) as store:
        ref = store.snapshot(pd.DataFrame({"a": [1, 2, 3], "b": ["x", "y", "z"]}), "same")
    print(json.dumps({"version": ref.version, "digest": ref.digest, "new": ref.new}))
    """,
)


def _run_together(script: str, root: Path, n: int, sync: Path) -> list[str]:
    """Start ``n`` interpreters, release them at the same moment, return their stdout."""
    sync.mkdir()
    outputs = _release_together(script, n, [sync], lambda i: [str(root), str(i), str(sync / "go")])
    return [out for out, _ in outputs]


def _everyone_ready(folder: Path, n: int) -> bool:
    """Whether each of ``n`` interpreters has written its ``ready-<i>`` in ``folder``."""
    return all((folder / f"ready-{i}").exists() for i in range(n))


def _release_together(
    script: str, n: int, rounds: list[Path], argv: Callable[[int], list[str]]
) -> list[tuple[str, str]]:
    """Start ``n`` interpreters running ``script`` with ``argv(i)``; for each folder in ``rounds``, wait
    until every one has written ``ready-<i>`` there, then write ``go``.  Returns (stdout, stderr) of each,
    all of which must exit with 0."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")])}
    env.pop("NBOPS_HOME", None)
    procs = [start_python(["-c", script, *argv(i)], env) for i in range(n)]
    with reaped(procs):
        for folder in rounds:
            release_when_ready(procs, partial(_everyone_ready, folder, n), folder / "go", wait=60, poll=0.002)
        outputs = [p.communicate(timeout=120) for p in procs]
    assert_all_exited_zero(procs, outputs, "process", tail=3000)
    return outputs


@pytest.mark.slow
def test_four_processes_writing_ten_snapshots_each_lose_and_duplicate_nothing(tmp_path: Path) -> None:
    root = tmp_path / STORE_DIRNAME
    outputs = _run_together(WRITER, root, 4, tmp_path / "sync")
    results = [r for out in outputs for r in json.loads(out)]
    assert len(results) == 40 and all(r["new"] for r in results)

    expected_counts = {"shared": 20, **{f"own_{p}": 5 for p in range(4)}}
    with nbops.open(root) as store:
        assert store.summary()["snapshot_versions"] == 40
        listing = store.datasets()
        assert dict(zip(listing["name"], listing["versions"], strict=False)) == expected_counts
        for name, count in expected_counts.items():
            hist = store.history(name)
            assert list(hist["version"]) == list(range(1, count + 1)), f"gap or duplicate in {name}"
            assert hist["digest"].is_unique
        # what each writer was told is what the catalog holds, and each version re-hashes to its digest
        for r in results:
            ref = store.ref(r["name"], r["version"])
            assert ref.digest == r["digest"] and ref.message == f"p{r['proc']} j{r['j']}"
            table = store.load_table(r["name"], r["version"])
            assert table_digest(table) == r["digest"]
            df = store.load(r["name"], r["version"])
            assert df["proc"].tolist() == [r["proc"]] * 3 and df["j"].tolist() == [r["j"]] * 3
        # each writer's own versions of a name appear in the order it wrote them
        for p in range(4):
            mine = [r["version"] for r in results if r["proc"] == p and r["name"] == "shared"]
            assert mine == sorted(mine)
        report = store.verify()
        assert report.ok, report.text()
        assert report.versions_checked == 40 and report.orphans == [] and report.tmp_files == []


@pytest.mark.slow
def test_four_processes_opening_a_new_store_at_once_all_succeed(tmp_path: Path) -> None:
    root = tmp_path / STORE_DIRNAME
    outputs = _run_together(OPENER, root, 4, tmp_path / "sync")
    assert [o.strip() for o in outputs] == [SCHEMA_HEAD] * 4
    conn = sqlite3.connect(root / "catalog.db")
    try:
        assert conn.execute("SELECT version_num FROM alembic_version").fetchall() == [(SCHEMA_HEAD,)]
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    finally:
        conn.close()
    with nbops.open(root) as store:
        store.snapshot(pd.DataFrame({"a": [1]}), "after_race")
        assert store.verify().ok


@pytest.mark.slow
def test_four_processes_snapshotting_the_same_content_create_exactly_one_version(tmp_path: Path) -> None:
    root = tmp_path / STORE_DIRNAME
    results = [json.loads(o) for o in _run_together(SAME_CONTENT, root, 4, tmp_path / "sync")]
    assert {r["version"] for r in results} == {1}
    assert len({r["digest"] for r in results}) == 1
    assert sum(r["new"] for r in results) == 1
    with nbops.open(root) as store:
        assert list(store.history("same")["version"]) == [1]
        report = store.verify()
        assert report.ok and report.objects_checked == 2 and report.orphans == [] and report.tmp_files == []


FRESH_DATABASES = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    import sqlalchemy as sa
    from nbops.core import catalog
    from nbops.tracking import experiments as tracking

    base, proc, rounds = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
    for r in range(rounds):
        folder = base / f"round-{r}"
        engine = catalog._create_engine(sa.make_url(f"sqlite:///{folder / 'catalog.db'}"))
        (folder / f"ready-{proc}").touch()
        while not (folder / "go").exists():
            pass
        with engine.connect():  # the connect hook turns the new file to WAL
            pass
        engine.dispose()
        tracking.prepare_database_file(folder)
    print("ok")
    """
)


@pytest.mark.slow
def test_processes_turning_the_same_new_databases_to_wal_at_once_all_succeed(tmp_path: Path) -> None:
    # Two connections switching a new rollback-mode file to WAL at the same
    # moment deadlock, and SQLite fails one at once ("database is locked",
    # no busy timeout). Released together on fresh files, unretried, some of
    # these processes failed in most runs.
    n, rounds = 4, 25
    folders = [tmp_path / f"round-{r}" for r in range(rounds)]
    for folder in folders:
        folder.mkdir()
    outputs = _release_together(FRESH_DATABASES, n, folders, lambda i: [str(tmp_path), str(i), str(rounds)])
    assert [out.strip() for out, _ in outputs] == ["ok"] * n
    for r in range(rounds):
        for name in ("catalog.db", "mlflow.db"):
            conn = sqlite3.connect(tmp_path / f"round-{r}" / name)
            try:
                assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",), (r, name)
            finally:
                conn.close()
