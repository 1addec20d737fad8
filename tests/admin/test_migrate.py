"""``nbops migrate --to URL``: an embedded store moved onto a real PostgreSQL catalog, history intact.

A store with snapshot versions, a feature group with several commits and
online rows, lineage, an export version and audit rows is migrated; every
read of its history gives what it gave before, new writes are numbered after
the old ones, and each refusal leaves the store folder and both catalogs as
they were.  The server comes from ``tests/helpers/pgserver.py``.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa

import nbops
from helpers.catalogs import upgrade_catalog_to
from helpers.pgserver import PgServer
from helpers.stores import files_by_content
from nbops.admin.migrate import migrate
from nbops.cli import main
from nbops.core import catalog as cat
from nbops.core.audit import READONLY_ENV
from nbops.core.paths import CATALOG_ENV, MARKER_ENV, URI_ENV
from nbops.errors import ReadOnlyError, StoreError
from nbops.store import MARKER_FILE, STORE_DIRNAME

pytestmark = pytest.mark.postgres


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    """No catalog setting, password or read-only flag of the person running the tests is seen."""
    for name in (CATALOG_ENV, "PGPASSWORD", "PGPASSFILE", URI_ENV, MARKER_ENV, READONLY_ENV):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    yield
    if "mlflow" in sys.modules:
        sys.modules["mlflow"].set_tracking_uri(None)


def tx(n: int, start: str, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "cc_num": np.arange(n) % 8,
            "ts": pd.date_range(start, periods=n, freq="h", tz="UTC"),
            "amount": rng.normal(100, 10, n).round(2),
        }
    )


def amounts(raw: pd.DataFrame) -> pd.DataFrame:
    out = raw[["cc_num", "ts"]].copy()
    out["amount_2h"] = raw.groupby("cc_num")["amount"].transform(lambda s: s.rolling(2, min_periods=1).mean())
    return out


def catalog_rows(url: str) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every nbops table present in a catalog database (none created)."""
    engine = sa.create_engine(cat.catalog_url(url))
    try:
        with engine.connect() as conn:
            present = set(sa.inspect(conn).get_table_names())
            return {
                t.name: [tuple(r) for r in conn.execute(sa.select(t).order_by(*t.primary_key.columns))]
                for t in cat.metadata.sorted_tables
                if t.name in present
            }
    finally:
        engine.dispose()


def embedded_url(root: Path) -> str:
    return f"sqlite:///{root / 'catalog.db'}"


def build_store(root: Path, notebook_dir: Path) -> None:
    """Three snapshot versions, three feature commits with online rows, a saved training set, an export."""
    with nbops.open(root) as store:
        for version in range(3):
            store.snapshot(tx(24, "2025-01-01", seed=version), "raw_tx", message=f"dump {version}")
        raw = store.load("raw_tx")  # audited read; the lineage parent of the commits below
        for part, start in enumerate(("2025-01-01", "2025-01-02", "2025-01-03")):
            store.register_features(
                amounts(tx(24, start, seed=10 + part)), "tx_amounts", keys=["cc_num"], event_time="ts", online=True
            )
        spine = raw[["cc_num", "ts"]].assign(ts=raw["ts"] + pd.Timedelta("2D"))
        store.training_data(spine, ["tx_amounts.amount_2h"], event_time="ts", save_as="train_set")
        export_notebook(notebook_dir / "fraud.ipynb")
        nbops.export(notebook_dir / "fraud.ipynb", out=notebook_dir / "pipelines", store=store)


def export_notebook(path: Path) -> None:
    import nbformat
    from nbformat.v4 import new_code_cell, new_notebook

    cells = [
        new_code_cell("import nbops\nstore = nbops.open()"),
        new_code_cell("raw = store.load('raw_tx')"),
        new_code_cell(
            "# nbops: feature\nstore.register_features(raw, 'raw_features', keys=['cc_num'], event_time='ts')"
        ),
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(new_notebook(cells=cells), path)


def history(store: nbops.Store) -> dict[str, Any]:
    """Every read of the store's history that a user makes, as plain values."""
    keys = {"cc_num": list(range(10))}
    spine = pd.DataFrame(
        {
            "cc_num": [1, 2, 3, 9],
            "ts": pd.to_datetime(
                ["2025-01-02T05:00", "2025-01-03T01:00", "2025-01-04T23:00", "2025-01-04T00:00"], utc=True
            ),
        }
    )
    return {
        "history": store.history("raw_tx"),
        "versions": [store.load("raw_tx", v) for v in (1, 2, 3)],
        "datasets": store.datasets(),
        "groups": store.feature_groups(),
        "commits": store.feature_commits("tx_amounts"),
        "as_of": [store.features("tx_amounts", as_of=c) for c in (1, 2, 3)],
        "statistics": store.feature_statistics("tx_amounts", commit=2),
        "train_set": store.load("train_set"),
        "training": store.training_data(spine, ["tx_amounts.amount_2h"], event_time="ts"),
        "online": store.online_features(["tx_amounts.amount_2h"], keys=keys),
        "lineage": [store.lineage(ref) for ref in ("raw_tx@3", "tx_amounts:1@1", "train_set@1")],
        "exports": nbops.exporting.history("fraud", store=store),
    }


def assert_same(before: dict[str, Any], after: dict[str, Any]) -> None:
    assert before.keys() == after.keys()
    for name, old in before.items():
        new = after[name]
        for a, b in zip(old if isinstance(old, list) else [old], new if isinstance(new, list) else [new], strict=True):
            if isinstance(a, pd.DataFrame):
                pd.testing.assert_frame_equal(a, b, obj=name)
            else:
                assert a == b, name


def test_a_migrated_store_keeps_its_history_and_numbers_new_writes_after_it(
    tmp_path: Path,
    pg_server: PgServer,
    pg_url: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    import nbops.exporting

    root = tmp_path / STORE_DIRNAME
    build_store(root, tmp_path / "nb")
    with nbops.open(root) as store:
        before = history(store)
        audit_before = store.audit()
    source_rows = catalog_rows(embedded_url(root))
    objects_before = {k: v for k, v in files_by_content(root).items() if k.startswith("objects/")}
    assert len(source_rows["online_features"]) == 8 and len(source_rows["exports"]) == 1
    # train_set@1's parents: the feature commit and the spine's snapshot raw_tx@3
    assert len(source_rows["lineage_edges"]) == 3 and len(source_rows["audit_events"]) >= 8

    assert main(["--store", str(root), "migrate", "--to", pg_url]) == 0
    out = capsys.readouterr().out
    assert pg_server.password not in out
    assert "feature_commits" in out and "MLflow runs stay in mlflow.db" in out
    # Every row, key for key: the catalog is the same catalog on another server.
    assert catalog_rows(pg_url) == source_rows
    assert not (root / "catalog.db").exists()
    assert len(list(root.glob("catalog.db.migrated-*"))) == 1
    assert pg_server.password.encode() not in (root / MARKER_FILE).read_bytes()
    assert {k: v for k, v in files_by_content(root).items() if k.startswith("objects/")} == objects_before

    # The folder now opens on PostgreSQL without any setting (password from PGPASSWORD).
    monkeypatch.setenv("PGPASSWORD", pg_server.password)
    with nbops.open(root) as store:
        assert store.catalog.is_postgresql
        after = history(store)
        audit_after = store.audit()
        assert_same(before, after)
        # reading again added audit rows after the old ones; the old ones are unchanged
        pd.testing.assert_frame_equal(audit_after.head(len(audit_before)), audit_before)

        # New writes are numbered after the migrated ones (sequences were moved past the keys).
        assert store.snapshot(tx(24, "2025-02-01", seed=99), "raw_tx").version == 4
        fg = store.register_features(
            amounts(tx(24, "2025-01-05", seed=20)), "tx_amounts", keys=["cc_num"], event_time="ts"
        )
        assert (fg.version, fg.commit) == (1, 4)
        assert store.snapshot(tx(5, "2025-01-01", seed=1), "new_dataset").version == 1
        assert store.history("raw_tx")["version"].tolist() == [1, 2, 3, 4]

    capsys.readouterr()
    assert main(["--store", str(root), "verify"]) == 0
    assert capsys.readouterr().out.rstrip().endswith(": OK")


def test_dry_run_and_every_refusal_change_nothing(
    tmp_path: Path,
    pg_server: PgServer,
    pg_url: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    root = tmp_path / STORE_DIRNAME
    with nbops.open(root) as store:
        store.snapshot(tx(10, "2025-01-01", seed=0), "raw_tx")
    files, rows = files_by_content(root), catalog_rows(embedded_url(root))

    def unchanged(target_rows: dict[str, list[tuple[Any, ...]]] | None = None) -> None:
        assert files_by_content(root) == files
        assert catalog_rows(embedded_url(root)) == rows
        assert catalog_rows(pg_url) == (target_rows or {})

    # A dry run counts and changes nothing, not even the target's schema.
    assert main(["--store", str(root), "migrate", "--to", pg_url, "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "dry run: would copy" in out and "nothing was changed" in out and pg_server.password not in out
    unchanged()

    # Read-only.
    monkeypatch.setenv(READONLY_ENV, "1")
    with pytest.raises(ReadOnlyError, match="cannot migrate .* read-only"):
        migrate(root, pg_url)
    monkeypatch.delenv(READONLY_ENV)
    unchanged()

    # The target holds nbops rows.
    with nbops.open(tmp_path / "other", catalog=pg_url) as other:
        other.snapshot(tx(3, "2025-01-01", seed=5), "theirs")
    target_rows = catalog_rows(pg_url)
    assert main(["--store", str(root), "migrate", "--to", pg_url]) == 2
    error = capsys.readouterr().err
    assert "is not empty (rows: " in error and "1 in datasets" in error and pg_server.password not in error
    unchanged(target_rows)

    # The store is already on a server catalog.
    with pytest.raises(StoreError, match="already on the server catalog .*nothing to migrate"):
        migrate(tmp_path / "other", pg_server.url(pg_server.create_database("fresh")))
    # Not a store at all.
    with pytest.raises(StoreError, match="not an nbops store with an embedded catalog"):
        migrate(tmp_path / "nowhere", pg_url)
    # Not a PostgreSQL URL.
    with pytest.raises(StoreError, match="--to must be a postgresql://"):
        migrate(root, f"sqlite:///{tmp_path / 'x.db'}")
    unchanged(target_rows)


def test_a_store_with_an_older_schema_is_told_to_upgrade_first(tmp_path: Path, pg_url: str) -> None:
    root = tmp_path / STORE_DIRNAME
    root.mkdir()
    upgrade_catalog_to(embedded_url(root), "0003")
    files = files_by_content(root)
    with pytest.raises(StoreError, match=r"revision '0003', older than .* open it once with this nbops"):
        migrate(root, pg_url)
    assert files_by_content(root) == files and catalog_rows(pg_url) == {}
    # Opened once (which upgrades it), it migrates.
    nbops.open(root).close()
    assert migrate(root, pg_url).rows["datasets"] == 0
    assert (root / MARKER_FILE).exists()
