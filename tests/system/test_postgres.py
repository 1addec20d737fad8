"""The catalog on a real PostgreSQL server (``tests/helpers/pgserver.py`` starts one per session).

Each test gets a database of its own.  The reliability rows that concern the
catalog (N processes x M writes, K racing creators, racing opens of a new
store) run here against PostgreSQL with the same checks and print the same
``FIGURE`` lines as ``tests/system/test_reliability.py``.  Without PostgreSQL's
binaries these tests skip and say why (under ``CI`` they fail instead).
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa
from test_reliability import concurrent_writes, figure, processes_create_one_group, run_together, worker_env

import nbops
from helpers import REPO
from helpers.catalogs import upgrade_catalog_to
from helpers.pgserver import PgServer, free_port, unavailable
from nbops.core import catalog as cat
from nbops.core.catalog import SCHEMA_HEAD, Catalog
from nbops.core.paths import CATALOG_ENV, MARKER_ENV, URI_ENV
from nbops.errors import StoreError
from nbops.store import MARKER_FILE, STORE_DIRNAME

pytestmark = pytest.mark.postgres


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    """No catalog setting, password or pyproject.toml of the person running the tests is seen."""
    for name in (CATALOG_ENV, "PGPASSWORD", "PGPASSFILE", URI_ENV, MARKER_ENV):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    yield
    if "mlflow" in sys.modules:
        sys.modules["mlflow"].set_tracking_uri(None)


def tx(n: int = 40, start: str = "2025-01-01", seed: int = 0) -> pd.DataFrame:
    import numpy as np

    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "cc_num": np.arange(n) % 10,
            "ts": pd.date_range(start, periods=n, freq="h", tz="UTC"),
            "amount": rng.normal(100, 10, n).round(2),
        }
    )


def files_mention(root: Path, secret: str) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file() and secret.encode() in p.read_bytes()]


# -- configuration -------------------------------------------------------------------------------
def test_open_with_the_catalog_argument_records_the_catalog_without_its_password(
    tmp_path: Path, pg_server: PgServer, pg_database: str
) -> None:
    root = tmp_path / STORE_DIRNAME
    with nbops.open(root, catalog=pg_server.url(pg_database)) as store:
        assert store.catalog.is_postgresql and store.catalog.schema_revision() == SCHEMA_HEAD
        store.snapshot(tx(), "raw_tx")
        shown = json.dumps(store.summary())
        assert pg_database in shown and pg_server.password not in shown
        assert pg_server.password not in repr(store.catalog.engine)
    marker = json.loads((root / MARKER_FILE).read_text(encoding="utf-8"))
    assert marker == {"catalog": f"postgresql+psycopg://nbops_admin@127.0.0.1:{pg_server.port}/{pg_database}"}
    assert not (root / "catalog.db").exists()
    assert files_mention(root, pg_server.password) == []


def test_open_with_the_environment_variable(
    tmp_path: Path, pg_server: PgServer, pg_database: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(CATALOG_ENV, pg_server.url(pg_database))
    with nbops.open(tmp_path / STORE_DIRNAME) as store:
        assert store.catalog.is_postgresql and store.catalog.url.endswith(f"/{pg_database}")
        store.snapshot(tx(), "raw_tx")
    # a script run from here with the same environment finds the store and its catalog
    script = "import nbops; s = nbops.open(); print(s.catalog.url, s.history('raw_tx')['version'].tolist())"
    out = subprocess.run([sys.executable, "-c", script], env=worker_env(), capture_output=True, text=True, check=True)
    assert out.stdout.strip().endswith(f"/{pg_database} [1]")


def test_open_with_pyproject_and_the_password_from_pgpassword(
    tmp_path: Path, pg_server: PgServer, pg_database: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    project = tmp_path / "project"
    (project / "notebooks").mkdir(parents=True)
    public = pg_server.url(pg_database, password="")
    (project / "pyproject.toml").write_text(f'[project]\nname = "x"\n\n[tool.nbops]\ncatalog = "{public}"\n')
    monkeypatch.chdir(project / "notebooks")  # found upward, the way the store is
    monkeypatch.setenv("PGPASSWORD", pg_server.password)
    with nbops.open() as store:
        assert store.root == project / "notebooks" / STORE_DIRNAME
        assert store.catalog.is_postgresql and store.catalog.url.endswith(f"/{pg_database}")

    # A pyproject.toml is usually committed: a password in it is refused, and not repeated.
    (project / "pyproject.toml").write_text(f'[tool.nbops]\ncatalog = "{pg_server.url(pg_database)}"\n')
    with pytest.raises(StoreError, match=r"\[tool.nbops\] catalog in .*pyproject.toml holds a password") as error:
        nbops.open(tmp_path / "other")
    assert pg_server.password not in str(error.value)


def test_precedence_argument_then_environment_then_pyproject(
    tmp_path: Path, pg_server: PgServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    a, b, c = (pg_server.create_database(p) for p in ("arg", "env", "pyp"))
    monkeypatch.setenv("PGPASSWORD", pg_server.password)
    (tmp_path / "pyproject.toml").write_text(f'[tool.nbops]\ncatalog = "{pg_server.url(c, password="")}"\n')
    with nbops.open(tmp_path / "s1") as store:
        assert store.catalog.url.endswith(f"/{c}")
    monkeypatch.setenv(CATALOG_ENV, pg_server.url(b))
    with nbops.open(tmp_path / "s2") as store:
        assert store.catalog.url.endswith(f"/{b}")
    with nbops.open(tmp_path / "s3", catalog=pg_server.url(a)) as store:
        assert store.catalog.url.endswith(f"/{a}")
    # "embedded" overrides an inherited setting: the SQLite file inside the store
    with nbops.open(tmp_path / "s4", catalog="embedded") as store:
        assert store.catalog.is_sqlite and (tmp_path / "s4" / "catalog.db").exists()


def test_a_store_reopened_without_settings_uses_its_recorded_catalog(
    tmp_path: Path, pg_server: PgServer, pg_database: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / STORE_DIRNAME
    with nbops.open(root, catalog=pg_server.url(pg_database)) as store:
        store.snapshot(tx(), "raw_tx")
    monkeypatch.setenv("PGPASSWORD", pg_server.password)
    with nbops.open(root) as store:  # found from store.json; the password from PGPASSWORD
        assert store.catalog.is_postgresql and store.history("raw_tx")["version"].tolist() == [1]
    monkeypatch.delenv("PGPASSWORD")
    with pytest.raises(StoreError, match=rf"cannot connect to the catalog database '{pg_database}' on 127.0.0.1"):
        nbops.open(root)


def test_a_store_opened_against_another_catalog_is_refused(
    tmp_path: Path, pg_server: PgServer, pg_database: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    other = pg_server.create_database("other")
    root = tmp_path / STORE_DIRNAME
    nbops.open(root, catalog=pg_server.url(pg_database)).close()
    with pytest.raises(StoreError, match=rf"created with the catalog .*/{pg_database} \(store.json\), but the "
                                         rf"catalog= argument asks for .*/{other}") as error:  # fmt: skip
        nbops.open(root, catalog=pg_server.url(other))
    assert pg_server.password not in str(error.value)
    monkeypatch.setenv(CATALOG_ENV, pg_server.url(other))
    with pytest.raises(StoreError, match=rf"but \${CATALOG_ENV} asks for"):
        nbops.open(root)
    with pytest.raises(StoreError, match="asks for the embedded catalog"):
        nbops.open(root, catalog="embedded")
    # the same database spelled differently (driver, default port, no password) is the same catalog
    same = f"postgres://nbops_admin:{pg_server.password}@127.0.0.1:{pg_server.port}/{pg_database}"
    nbops.open(root, catalog=same).close()

    embedded = tmp_path / "embedded" / STORE_DIRNAME
    nbops.open(embedded, catalog="embedded").close()
    with pytest.raises(StoreError, match=r"has its embedded catalog \(catalog.db\), but \$NBOPS_CATALOG_URL asks"):
        nbops.open(embedded)
    with pytest.raises(StoreError, match="must be PostgreSQL"):
        nbops.open(tmp_path / "x", catalog="mysql://u@h/db")


def test_a_wrong_password_names_the_server_and_database_but_not_the_password(
    tmp_path: Path, pg_server: PgServer, pg_database: str
) -> None:
    wrong = "Wr0ng-s3cret-" + pg_server.password[:6]
    root = tmp_path / STORE_DIRNAME
    with pytest.raises(StoreError) as error:
        nbops.open(root, catalog=pg_server.url(pg_database, password=wrong))
    message = str(error.value)
    assert f"'{pg_database}' on 127.0.0.1:{pg_server.port} as user 'nbops_admin'" in message
    assert "password authentication failed" in message
    assert wrong not in message and pg_server.password not in message
    assert not root.exists()  # nothing half-made: the right password works at once
    nbops.open(root, catalog=pg_server.url(pg_database)).close()


def test_an_unreachable_server_is_a_clear_error(tmp_path: Path) -> None:
    if importlib.util.find_spec("psycopg") is None:
        unavailable("the psycopg driver is not installed (pip install 'nbops[postgres]')")
    port = free_port()  # nothing listens there
    with pytest.raises(StoreError, match=rf"cannot connect to the catalog database 'nbops' on 127.0.0.1:{port}"):
        nbops.open(tmp_path / STORE_DIRNAME, catalog=f"postgresql://someone:pw@127.0.0.1:{port}/nbops")
    assert not (tmp_path / STORE_DIRNAME).exists()


# -- migrations ---------------------------------------------------------------------------------
def test_the_migrations_bring_an_empty_database_and_an_older_one_to_head(pg_server: PgServer, pg_url: str) -> None:
    catalog = Catalog(pg_url)
    try:
        assert catalog.schema_revision() == SCHEMA_HEAD
        inspector = sa.inspect(catalog.engine)
        assert set(cat.metadata.tables) <= set(inspector.get_table_names())
        uniques = {u["name"] for u in inspector.get_unique_constraints("snapshots")}
        assert "uq_snapshots_dataset_version" in uniques
        # the unique constraint is the last line of defence against a repeated version number
        with catalog.write() as conn:
            dataset = conn.execute(cat.datasets.insert().values(name="d", created=cat.utcnow())).inserted_primary_key[0]
        row = {"dataset_id": dataset, "version": 1, "digest": "0" * 32, "rows": 0, "n_columns": 0,
               "arrow_schema": b"\x00\xff", "bytes_written": 0, "created": cat.utcnow()}  # fmt: skip
        with catalog.write() as conn:
            conn.execute(cat.snapshots.insert().values(**row))
        with pytest.raises(sa.exc.IntegrityError, match="uq_snapshots_dataset_version"), catalog.write() as conn:
            conn.execute(cat.snapshots.insert().values(**row))
        with catalog.read() as conn:  # bytea round trip
            assert conn.execute(sa.select(cat.snapshots.c.arrow_schema)).scalar_one() == b"\x00\xff"
    finally:
        catalog.dispose()

    # A database at an older revision is upgraded on open.
    older = pg_server.url(pg_server.create_database("older"))
    upgrade_catalog_to(cat.catalog_url(older), "0001")
    upgraded = Catalog(older)
    assert upgraded.schema_revision() == SCHEMA_HEAD
    upgraded.dispose()


def test_a_catalog_of_a_newer_nbops_is_refused(tmp_path: Path, pg_url: str) -> None:
    Catalog(pg_url).dispose()
    engine = sa.create_engine(cat.catalog_url(pg_url))
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE alembic_version SET version_num = '0099'"))
    engine.dispose()
    with pytest.raises(StoreError, match="schema revision '0099', which this nbops does not know .*upgrade nbops"):
        nbops.open(tmp_path / STORE_DIRNAME, catalog=pg_url)
    assert not (tmp_path / STORE_DIRNAME).exists()


# -- the API, unchanged -------------------------------------------------------------------------
def test_snapshots_features_training_online_lineage_verify_and_gc(
    tmp_path: Path, pg_server: PgServer, pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / STORE_DIRNAME
    with nbops.open(root, catalog=pg_url) as store:
        raw = tx()
        assert store.snapshot(raw, "raw_tx").version == 1
        assert store.snapshot(raw, "raw_tx").new is False  # same content: same version
        changed = raw.assign(amount=raw["amount"] + 1)
        assert store.snapshot(changed, "raw_tx", message="fixed").version == 2
        pd.testing.assert_frame_equal(store.load("raw_tx@1"), raw)
        history = store.history("raw_tx")
        assert history["version"].tolist() == [1, 2] and str(history["created"].dt.tz) == "UTC"
        diff = store.diff("raw_tx", 1, 2, keys=["cc_num", "ts"])
        assert (diff.changed, diff.added, diff.removed, diff.schema_changes) == (len(raw), 0, 0, ())

        loaded = store.load("raw_tx")
        fg = store.register_features(loaded, "tx", keys="cc_num", event_time="ts", online=True)
        assert (fg.version, fg.commit) == (1, 1)
        later = tx(10, start="2025-03-01", seed=1)
        assert store.register_features(later, "tx", keys="cc_num", event_time="ts").commit == 2
        assert len(store.features("tx", as_of=1)) == len(raw) and len(store.features("tx")) == len(raw) + len(later)
        assert store.feature_statistics("tx")["amount"]

        spine = pd.DataFrame({"cc_num": [1, 2], "ts": pd.to_datetime(["2025-01-02", "2025-04-01"], utc=True)})
        train = store.training_data(spine, ["tx.amount"], event_time="ts", save_as="train_set")
        assert train["amount"].notna().all() and train.attrs["nbops_snapshot"] == "train_set@1"
        online = store.online_features(["tx.amount"], keys={"cc_num": [1, 2, 999]})
        latest = later.sort_values("ts").groupby("cc_num")["amount"].last()
        assert online["amount"].tolist()[:2] == [latest[1], latest[2]] and pd.isna(online["amount"].iloc[2])

        graph = store.lineage("tx:1@1")
        assert {(e["parent"], e["child"]) for e in graph["edges"]} >= {
            ("snapshot:raw_tx@2", "feature_commit:tx:1@1"),
            ("feature_commit:tx:1@1", "snapshot:train_set@1"),
        }
        report = store.verify()
        assert report.ok and report.versions_checked == 5, report.text()

        # an orphan (a writer killed between publishing and committing) is collected
        orphan = store.objects.path("f" * 32)
        orphan.parent.mkdir(parents=True, exist_ok=True)
        orphan.write_bytes(b"torn")
        assert store.verify().orphans == [str(orphan)]
        assert store.gc(grace_seconds=0).removed_orphans == [str(orphan)]

    # The command line works unchanged on the store (the password from PGPASSWORD).
    env = worker_env(PGPASSWORD=pg_server.password)
    for args, expected in ((["verify"], "checked"), (["gc", "--grace", "0"], "removed 0 orphan"), (["ls"], "raw_tx")):
        done = subprocess.run([sys.executable, "-m", "nbops.cli", "--store", str(root), *args], env=env,
                              capture_output=True, text=True, timeout=120, check=False)  # fmt: skip
        assert done.returncode == 0 and expected in done.stdout, done.stdout + done.stderr
        assert pg_server.password not in done.stdout + done.stderr


def test_the_documented_roles_read_only_analyst_and_writing_pipeline(
    tmp_path: Path, pg_server: PgServer, pg_database: str
) -> None:
    """The grants of docs/team.md, as written there."""
    root = tmp_path / STORE_DIRNAME
    with nbops.open(root, catalog=pg_server.url(pg_database)) as store:  # the owner creates the schema
        store.snapshot(tx(), "raw_tx")
    sql = _docs_sql()
    pg_server.admin_sql(*[s for s in sql["roles"] if s], database=pg_database)
    pg_server.admin_sql(
        "ALTER ROLE nbops_analyst_alice PASSWORD 'alice-pw'", "ALTER ROLE nbops_pipeline_etl PASSWORD 'etl-pw'"
    )
    with nbops.open(root, catalog=pg_server.url(pg_database, "nbops_pipeline_etl", "etl-pw")) as pipeline:
        assert pipeline.snapshot(tx(seed=3), "raw_tx").version == 2
        assert pipeline.register_features(tx(), "tx", keys="cc_num", event_time="ts").commit == 1
    with nbops.open(root, catalog=pg_server.url(pg_database, "nbops_analyst_alice", "alice-pw")) as analyst:
        assert analyst.history("raw_tx")["version"].tolist() == [1, 2]
        assert len(analyst.features("tx")) == 40 and analyst.verify().ok
        with pytest.raises(
            StoreError, match="as user .nbops_analyst_alice. may read but not write .*permission denied"
        ):
            analyst.snapshot(tx(seed=4), "raw_tx")


def _docs_sql() -> dict[str, list[str]]:
    """The SQL block of docs/team.md marked ``roles``, split into statements."""
    text = (REPO / "docs" / "team.md").read_text(encoding="utf-8")
    block = text.split("```sql roles\n", 1)[1].split("```", 1)[0]
    lines = [line for line in block.splitlines() if not line.strip().startswith("--")]
    return {"roles": [s.strip() for s in "\n".join(lines).split(";")]}


# -- concurrency: the reliability rows on PostgreSQL --------------------------------------------
@pytest.fixture
def workers_on_postgresql(_clean_environment: None, pg_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """This test's PostgreSQL database as ``$NBOPS_CATALOG_URL``, which the worker processes inherit."""
    monkeypatch.setenv(CATALOG_ENV, pg_url)


@pytest.mark.slow
@pytest.mark.usefixtures("workers_on_postgresql")
def test_processes_writing_snapshots_and_feature_commits_on_postgresql(tmp_path: Path) -> None:
    figures = concurrent_writes(tmp_path, procs=4, writes=24)
    figure("PostgreSQL catalog: 4 processes x 24 writes", writes_attempted=figures.attempted, stored=figures.stored,
           lost=figures.lost, duplicated=figures.duplicated, digest_mismatches=figures.digest_mismatches)  # fmt: skip


@pytest.mark.slow
@pytest.mark.usefixtures("workers_on_postgresql")
def test_processes_creating_the_same_feature_group_on_postgresql_share_one(tmp_path: Path) -> None:
    processes_create_one_group(tmp_path, k=6, label="PostgreSQL catalog: feature group created at once")


@pytest.mark.slow
@pytest.mark.usefixtures("workers_on_postgresql")
def test_processes_opening_a_new_store_on_a_new_database_at_once(tmp_path: Path) -> None:
    """The migrations and store.json are made once, whoever gets there first."""
    root = tmp_path / STORE_DIRNAME
    k = 6
    results = [json.loads(o) for o in run_together(root, tmp_path / "sync", [["open", str(root), str(p), "{GO}"]
                                                                             for p in range(k)])]  # fmt: skip
    figure("PostgreSQL catalog: new store opened at once", processes=k,
           opened=sum(r["revision"] == SCHEMA_HEAD for r in results), errors=0)  # fmt: skip
    assert [r["revision"] for r in results] == [SCHEMA_HEAD] * k
    assert json.loads((root / MARKER_FILE).read_text())["catalog"] == results[0]["catalog"]
    assert sorted(p.name for p in root.iterdir() if p.name.startswith(".")) == []  # no temporary marker left


@pytest.mark.stress
@pytest.mark.usefixtures("workers_on_postgresql")
def test_stress_processes_writing_on_postgresql(tmp_path: Path) -> None:
    figures = concurrent_writes(tmp_path, procs=16, writes=200)
    figure("PostgreSQL catalog: 16 processes x 200 writes", writes_attempted=figures.attempted,
           stored=figures.stored, lost=figures.lost, duplicated=figures.duplicated,
           digest_mismatches=figures.digest_mismatches)  # fmt: skip
