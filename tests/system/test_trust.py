"""Faults on disk never give wrong data and never let gc delete live data.

Reads verify every object against its digest; writes do not trust an existing
copy; ``nbops repair`` restores from copies that prove themselves; gc marks
from the references, checks the catalog first and never follows a symlink;
an empty, foreign or damaged catalog is refused and left as it is. Every test
works on real files (and real processes where concurrency matters).
"""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import nbops
from nbops.errors import CatalogError, CorruptDataError, IntegrityError, StoreError
from nbops.store import Store


def _frame(n: int = 50, seed: int = 0) -> pd.DataFrame:
    rng = random.Random(seed)
    return pd.DataFrame(
        {
            "cc_num": list(range(n)),
            "amount": [rng.random() * 100 for _ in range(n)],
            "kind": [rng.choice(["a", "b", "c"]) for _ in range(n)],
            "ts": pd.date_range("2024-01-01", periods=n, freq="h", tz="UTC"),
        }
    )


def _object_of(store: Store, name: str, column: str) -> Path:
    """The object file holding one column of the latest version of snapshot ``name``."""
    import sqlalchemy as sa

    from nbops.core import catalog as cat

    with store.catalog.read() as conn:
        digest = (
            conn.execute(
                sa.select(cat.snapshot_columns.c.object_digest)
                .join(cat.snapshots, cat.snapshots.c.id == cat.snapshot_columns.c.snapshot_id)
                .join(cat.datasets, cat.datasets.c.id == cat.snapshots.c.dataset_id)
                .where(cat.datasets.c.name == name, cat.snapshot_columns.c.name == column)
                .order_by(cat.snapshots.c.version.desc())
            )
            .scalars()
            .first()
        )
    return store.objects.path(digest)


def _rewrite(path: Path, values: list[object]) -> None:
    """Replace an object by a valid Parquet file with other values: the worst corruption, one that decodes."""
    path.chmod(0o644)
    pq.write_table(pa.table({"v": values}), path, compression="zstd")


def _nbops(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "nbops.cli", *args], capture_output=True, text=True, cwd=cwd, timeout=120
    )


# -- 1. reads verify content --------------------------------------------------------------------
def test_an_altered_object_that_still_decodes_is_an_error_on_every_read_never_other_data(store: Store) -> None:
    df = _frame()
    store.snapshot(df, "raw_tx")
    store.register_features(df, "tx", keys="cc_num", event_time="ts", online=True)
    store.snapshot(df, "raw_copy")  # the same columns: one object serves two versions and a commit
    amount = _object_of(store, "raw_tx", "amount")
    _rewrite(amount, [v + 1.0 for v in df["amount"]])

    for read in (
        lambda: store.load("raw_tx"),
        lambda: store.load_table("raw_copy"),
        lambda: store.features("tx"),
        lambda: store.training_data(df[["cc_num", "ts"]], ["tx.amount"], event_time="ts"),
        lambda: store.drift("tx", df),
    ):
        with pytest.raises(CorruptDataError) as caught:
            read()
        message = str(caught.value)
        assert str(amount) in message and "hashes to" in message
        assert "raw_tx@1" in message and "raw_copy@1" in message and "tx:1@1" in message
        assert "nbops repair" in message
        assert caught.value.used_by == ("raw_copy@1", "raw_tx@1", "tx:1@1")
    assert isinstance(caught.value, nbops.errors.NbopsError)


@pytest.mark.parametrize("fault", ["bit flips", "truncated", "zero bytes", "missing", "garbage"])
def test_a_damaged_object_is_detected_on_read_and_by_verify(store: Store, fault: str) -> None:
    df = _frame(200, seed=1)
    store.snapshot(df, "raw")
    path = _object_of(store, "raw", "kind")
    data = bytearray(path.read_bytes())
    path.chmod(0o644)
    rng = random.Random(fault)
    wrong_rows = 0
    trials = 25 if fault == "bit flips" else 1
    for _ in range(trials):
        damaged = bytearray(data)
        if fault == "bit flips":
            at = rng.randrange(len(damaged))
            damaged[at] ^= 1 << rng.randrange(8)
        elif fault == "truncated":
            damaged = damaged[: len(damaged) // 2]
        elif fault == "zero bytes":
            damaged = bytearray()
        elif fault == "garbage":
            damaged = bytearray(rng.randbytes(len(damaged)))
        if fault == "missing":
            path.unlink()
        else:
            path.write_bytes(bytes(damaged))
        try:
            loaded = store.load("raw")
        except CorruptDataError as exc:
            assert "raw@1" in str(exc)
            report = store.verify()
            assert not report.ok and any(
                "raw@1" in item
                for item in report.mismatched_objects + report.unreadable_objects + report.missing_objects
            )
            continue
        # A flip in bytes the reader never uses (padding, statistics) may leave the data whole: then it
        # must be exactly the stored data.
        if not loaded.equals(df):
            wrong_rows += 1
    assert wrong_rows == 0
    print(f"FIGURE damaged object ({fault}): {trials} trials, 0 wrong rows returned")


def test_verify_on_the_command_line_lists_every_damaged_object_and_exits_1(tmp_path: Path) -> None:
    root = tmp_path / ".nbops"
    with nbops.open(root) as store:
        store.snapshot(_frame(), "a")
        store.snapshot(_frame(seed=2).assign(cc_num=lambda f: f.cc_num + 1000), "b")
        damaged = _object_of(store, "a", "amount")
        truncated = _object_of(store, "b", "kind")
        missing = _object_of(store, "b", "amount")
    _rewrite(damaged, [0.0])
    truncated.chmod(0o644)
    truncated.write_bytes(truncated.read_bytes()[:10])
    missing.unlink()
    result = _nbops("--store", str(root), "verify")
    assert result.returncode == 1, result.stdout + result.stderr
    out = result.stdout
    assert f"{damaged}" in out and "content does not match" in out and "used by a@1" in out
    assert f"{truncated}" in out and "cannot be read" in out and "used by b@1" in out
    assert f"{missing.name[:-8]}" in out and "missing" in out
    assert "nbops repair" in out


# -- 2. writes never trust an existing file blindly --------------------------------------------
@pytest.mark.parametrize("fault", ["altered", "truncated"])
def test_writing_the_same_content_again_replaces_a_damaged_copy(store: Store, fault: str) -> None:
    df = _frame()
    store.snapshot(df, "raw")
    path = _object_of(store, "raw", "amount")
    if fault == "altered":
        _rewrite(path, [1.0, 2.0])
    else:
        path.chmod(0o644)
        path.write_bytes(path.read_bytes()[:-20])
    with pytest.raises(CorruptDataError):
        store.load("raw")
    ref = store.snapshot(df[["amount"]], "amounts")  # the same column content, another dataset
    assert ref.bytes_written > 0  # the damaged copy was rewritten, not trusted
    pd.testing.assert_frame_equal(store.load("raw"), df)
    assert store.verify().ok


def test_a_feature_commit_replaces_a_damaged_copy_of_its_column(store: Store) -> None:
    df = _frame()
    store.snapshot(df, "raw")
    _rewrite(_object_of(store, "raw", "kind"), ["z"])
    store.register_features(df, "tx", keys="cc_num", event_time="ts")
    pd.testing.assert_frame_equal(store.load("raw"), df)
    assert store.verify().ok


def test_repair_restores_from_a_backup_store_and_lists_what_it_cannot(tmp_path: Path) -> None:
    root, backup = tmp_path / "live" / ".nbops", tmp_path / "backup" / ".nbops"
    df, later = _frame(), _frame(seed=5).assign(cc_num=lambda f: f.cc_num + 500)
    with nbops.open(root) as store:
        store.snapshot(df, "raw")
    shutil.copytree(root, backup)
    with nbops.open(root) as store:
        store.snapshot(later, "later")  # not in the backup
        first, second = _object_of(store, "raw", "amount"), _object_of(store, "later", "kind")
    _rewrite(first, [3.0])
    second.unlink()

    dry = _nbops("--store", str(root), "repair", "--from", str(backup), "--dry-run")
    assert dry.returncode == 1 and "1 would restore" in dry.stdout and "later@1" in dry.stdout
    assert pq.read_table(first).num_rows == 1  # a dry run changes nothing

    result = _nbops("--store", str(root), "repair", "--from", str(backup))
    assert result.returncode == 1, result.stdout + result.stderr
    assert "1 restored, 1 could not be restored" in result.stdout
    assert "not restored" in result.stdout and "later@1" in result.stdout
    with nbops.open(root) as store:
        pd.testing.assert_frame_equal(store.load("raw"), df)
        with pytest.raises(CorruptDataError, match="is missing"):
            store.load("later")
        store.snapshot(later, "later_again")  # writing the same data puts the object back
        pd.testing.assert_frame_equal(store.load("later"), later)
    assert _nbops("--store", str(root), "repair").returncode == 0


def test_repair_never_takes_a_copy_that_does_not_hash_right(tmp_path: Path) -> None:
    root, other = tmp_path / "a" / ".nbops", tmp_path / "b" / ".nbops"
    with nbops.open(root) as store:
        store.snapshot(_frame(), "raw")
        path = _object_of(store, "raw", "amount")
    shutil.copytree(root, other)
    _rewrite(path, [1.0])
    _rewrite(other / path.relative_to(root), [2.0])  # the backup is damaged too
    with nbops.open(root) as store:
        report = store.repair([other])
        assert not report.ok and len(report.unrepaired) == 1
        assert pq.read_table(path).column("v").to_pylist() == [1.0]
    with pytest.raises(StoreError, match="no objects/ folder"):
        nbops.open(root).repair([tmp_path / "nowhere"])


# -- 3. gc cannot delete live data ------------------------------------------------------------
def _files_under(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_gc_refuses_a_catalog_that_refers_to_no_object_beside_stored_objects(tmp_path: Path) -> None:
    root = tmp_path / ".nbops"
    with nbops.open(root) as store:
        store.snapshot(_frame(), "raw")
        store.register_features(_frame(), "tx", keys="cc_num", event_time="ts")
    connection = sqlite3.connect(root / "catalog.db")
    with connection:  # as if the catalog had been replaced by an empty one of the same schema
        connection.execute("PRAGMA foreign_keys = OFF")
        for table in ("snapshot_columns", "snapshots", "feature_commit_columns", "feature_commits", "objects"):
            connection.execute(f"DELETE FROM {table}")
    connection.close()
    objects = _files_under(root / "objects")
    with nbops.open(root) as store:
        for dry_run in (True, False):
            with pytest.raises(IntegrityError, match="refers to no object.*nothing was removed"):
                store.gc(grace_seconds=0, dry_run=dry_run)
    result = _nbops("--store", str(root), "gc", "--grace", "0")
    assert result.returncode == 2 and "refers to no object" in result.stderr
    assert _files_under(root / "objects") == objects


def test_gc_refuses_when_the_catalog_fails_its_integrity_check(tmp_path: Path) -> None:
    root = tmp_path / ".nbops"
    with nbops.open(root) as store:
        store.snapshot(_frame(), "raw")
        store.snapshot(_frame(seed=3), "other")
        orphan = store.objects.path("f" * 32)
        orphan.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.table({"v": [1]}), orphan)
    connection = sqlite3.connect(root / "catalog.db")
    with connection:  # a reference whose objects row is gone: the index disagrees with the references
        connection.execute("PRAGMA foreign_keys = OFF")
        connection.execute("DELETE FROM objects WHERE digest IN (SELECT object_digest FROM snapshot_columns LIMIT 1)")
    connection.close()
    objects = _files_under(root / "objects")
    with nbops.open(root) as store:
        with pytest.raises(IntegrityError, match="integrity check.*nothing was removed"):
            store.gc(grace_seconds=0)
        report = store.verify()
        assert not report.ok and report.catalog_problems
    assert _files_under(root / "objects") == objects


def test_gc_never_follows_a_symlink_nor_touches_anything_outside_the_store(tmp_path: Path) -> None:
    root, outside = tmp_path / ".nbops", tmp_path / "outside"
    outside.mkdir()
    precious = outside / ("ab" * 16 + ".parquet")  # named like an object
    pq.write_table(pa.table({"v": [42]}), precious)
    (outside / "keep.txt").write_text("mine")
    with nbops.open(root) as store:
        store.snapshot(_frame(), "raw")
        live = _files_under(root / "objects")
        sub = root / "objects" / "ab"
        sub.mkdir(exist_ok=True)
        (sub / precious.name).symlink_to(precious)  # a planted file link
        (root / "objects" / "cd").symlink_to(outside, target_is_directory=True)  # a planted folder link
        (root / "tmp").mkdir(exist_ok=True)
        (root / "tmp" / "x.tmp").symlink_to(outside / "keep.txt")
        for path in [sub / precious.name, root / "tmp" / "x.tmp"]:
            os.utime(path, (0, 0), follow_symlinks=False)
        report = store.gc(grace_seconds=0)
        assert report.removed_orphans == [] and report.removed_tmp == []
        assert store.verify().ok
    assert precious.exists() and (outside / "keep.txt").read_text() == "mine"
    assert _files_under(root / "objects") == live | {"ab/" + precious.name: precious.read_bytes()}

    shutil.rmtree(root / "tmp")
    (root / "tmp").symlink_to(outside, target_is_directory=True)
    with nbops.open(root) as store, pytest.raises(StoreError, match="symbolic link.*nothing was removed"):
        store.gc(grace_seconds=0)
    assert sorted(p.name for p in outside.iterdir()) == sorted([precious.name, "keep.txt"])


_WRITER = textwrap.dedent(
    """
    import sys
    import pandas as pd
    import nbops

    root, me, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    store = nbops.open(root)
    for i in range(count):
        # Half the content repeats across writers and rounds, so objects are reused (and may be
        # orphans a moment before their commit) while gc runs with no grace.
        frame = pd.DataFrame({"k": range(30), "shared": [i % 3] * 30, "own": [me * 1000 + i] * 30,
                              "ts": pd.Timestamp("2024-01-01", tz="UTC") + pd.to_timedelta(range(30), "s")})
        store.snapshot(frame, f"w{me}", message=str(i))
        store.register_features(frame, f"g{me}", keys="k", event_time="ts")
    """
)


def test_gc_with_no_grace_beside_concurrent_writers_never_bricks_a_version(tmp_path: Path) -> None:
    root = tmp_path / ".nbops"
    nbops.open(root).close()
    script = tmp_path / "writer.py"
    script.write_text(_WRITER)
    writers, count = 3, 12
    procs = [subprocess.Popen([sys.executable, str(script), str(root), str(w), str(count)]) for w in range(writers)]
    runs = 0
    with nbops.open(root) as store:
        while any(p.poll() is None for p in procs):
            with contextlib.suppress(IntegrityError):  # a catalog whose first commit has not landed yet
                store.gc(grace_seconds=0, empty_catalog=True)
            runs += 1
        assert all(p.wait(timeout=300) == 0 for p in procs)
        store.gc(grace_seconds=0)
        report = store.verify()
        assert report.ok, report.text()
        unreadable = 0
        for w in range(writers):
            for version in range(1, len(store.history(f"w{w}")) + 1):
                store.load(f"w{w}", version)
            for commit in range(1, count + 1):
                store.features(f"g{w}", as_of=commit)
        assert len(store.history("w0")) == count
    print(
        f"FIGURE gc --grace 0 beside {writers} writers x {count} snapshots and commits: {runs} gc runs, "
        f"{unreadable} versions unreadable"
    )


# -- 4. the catalog is ours ----------------------------------------------------------------------
def _foreign_sqlite(path: Path) -> None:
    connection = sqlite3.connect(path)
    with connection:
        connection.execute("CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT)")
        connection.execute("INSERT INTO users (name) VALUES ('ada')")
    connection.close()


def _nbops_like_but_foreign(path: Path) -> None:
    connection = sqlite3.connect(path)
    with connection:  # another program's Alembic-managed database
        connection.execute("CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL)")
        connection.execute("INSERT INTO alembic_version VALUES ('ae1027a6acf')")
        connection.execute("CREATE TABLE orders (id INTEGER PRIMARY KEY)")
    connection.close()


def _damaged_catalog(path: Path) -> None:
    with nbops.open(path.parent) as store:
        for i in range(20):
            store.snapshot(_frame(seed=i), f"d{i}")
    data = bytearray(path.read_bytes())
    page = 4096
    for at in range(page * 2, len(data), 7):  # every page but the header page, overwritten
        data[at] = 0xA5
    path.write_bytes(bytes(data))


@pytest.mark.parametrize(
    ("kind", "make", "says"),
    [
        ("empty", lambda p: p.write_bytes(b""), r"is empty \(0 bytes\)"),
        ("not sqlite", lambda p: p.write_bytes(b"PK\x03\x04 a zip file, not a database" * 10), "not a SQLite"),
        ("foreign sqlite", _foreign_sqlite, "not an nbops catalog \\(tables: users\\)"),
        ("foreign alembic", _nbops_like_but_foreign, "not an nbops catalog"),
        ("damaged", _damaged_catalog, "damaged|not an nbops catalog"),
    ],
)
def test_an_empty_foreign_or_damaged_catalog_is_refused_and_left_as_it_is(
    tmp_path: Path, kind: str, make: object, says: str
) -> None:
    root = tmp_path / ".nbops"
    root.mkdir()
    catalog = root / "catalog.db"
    make(catalog)  # type: ignore[operator]
    for leftover in root.glob("catalog.db-*"):
        leftover.unlink()
    before = {p.name: p.read_bytes() for p in root.iterdir() if p.is_file()}
    for attempt in (lambda: nbops.open(root), lambda: nbops.open(root).gc(grace_seconds=0)):
        with pytest.raises(CatalogError, match=says) as caught:
            attempt()
        assert str(catalog) in str(caught.value) and "\n" not in str(caught.value)
    for command in ("verify", "gc", "ls"):
        result = _nbops("--store", str(root), command)
        assert result.returncode == 2 and "Traceback" not in result.stderr
        assert result.stderr.startswith("nbops: error: ") and len(result.stderr.strip().splitlines()) == 1
    after = {p.name: p.read_bytes() for p in root.iterdir() if p.is_file()}
    assert {name: after.get(name) for name in before} == before
    if kind != "damaged":  # a damaged SQLite file passes the first look; opening it may add its -wal/-shm
        assert after == before


def test_a_new_store_never_shows_a_half_made_catalog(tmp_path: Path) -> None:
    root = tmp_path / "new"
    with nbops.open(root) as store:
        store.snapshot(_frame(), "raw")
    assert sorted(p.name for p in root.iterdir() if p.name.startswith(".catalog.db")) == []
    header = (root / "catalog.db").read_bytes()[:100]
    assert int.from_bytes(header[68:72], "big") == 0x6E626F70  # the application id names it nbops's


@pytest.mark.postgres
def test_a_foreign_postgresql_database_is_refused_and_left_as_it_is(tmp_path: Path, pg_server: object) -> None:
    import sqlalchemy as sa

    database = pg_server.create_database("foreign")  # type: ignore[attr-defined]
    url = pg_server.url(database)  # type: ignore[attr-defined]
    engine = sa.create_engine(url.replace("postgresql://", "postgresql+psycopg://", 1))
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE invoices (id serial primary key, total numeric)"))
        conn.execute(sa.text("INSERT INTO invoices (total) VALUES (12.5)"))
    with pytest.raises(CatalogError, match="not an nbops catalog's \\(invoices\\)"):
        nbops.open(tmp_path / ".nbops", catalog=url)
    with engine.connect() as conn:
        assert set(sa.inspect(conn).get_table_names()) == {"invoices"}
        assert conn.execute(sa.text("SELECT count(*) FROM invoices")).scalar() == 1
    engine.dispose()
    assert not (tmp_path / ".nbops").exists()


# -- 10. errors a person can act on --------------------------------------------------------------
@pytest.mark.parametrize(
    ("options", "says"),
    [
        ({"catalog": "mysql://x/y"}, "must be PostgreSQL"),
        ({"catalog": "::::"}, "must be a URL such as postgresql://"),
        ({"online": "foo://bar"}, "unknown online store 'foo://bar'"),
        ({"data": "weird://x/y"}, "cannot use the data root weird://x/y"),
        ({"data": "s3://"}, "names no bucket or folder"),
    ],
)
def test_a_bad_url_is_one_line_of_the_package_s_own_error(tmp_path: Path, options: dict[str, str], says: str) -> None:
    with pytest.raises(nbops.errors.NbopsError, match=says) as caught:
        store = nbops.open(tmp_path / ".nbops", **options)
        store.online_features(["g.f"], keys={"k": [1]})
    assert "\n" not in str(caught.value)


def test_a_store_path_that_is_a_file_is_one_line_on_the_command_line(tmp_path: Path) -> None:
    path = tmp_path / "store"
    path.write_text("not a folder")
    result = _nbops("--store", str(path), "ls")
    assert result.returncode == 2 and result.stderr.strip() == f"nbops: error: {path} is a file, not a store folder"
    assert path.read_text() == "not a folder"
