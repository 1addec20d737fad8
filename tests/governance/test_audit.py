"""The audit trail and read-only mode, on a real store, a real MLflow backend and the installed CLI."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import mlflow
import pandas as pd
import pytest

import nbops
from nbops import api
from nbops.core.audit import IDENTITY_ENV, READONLY_ENV, ReadOnlyError
from nbops.core.paths import MARKER_ENV, URI_ENV
from nbops.store import Store

NBOPS = shutil.which("nbops", path=str(Path(sys.executable).parent))


@pytest.fixture(autouse=True)
def _isolated(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.delenv(URI_ENV, raising=False)
    monkeypatch.delenv(MARKER_ENV, raising=False)
    monkeypatch.delenv(READONLY_ENV, raising=False)
    monkeypatch.setenv(IDENTITY_ENV, "analyst-7")
    mlflow.set_tracking_uri(None)
    yield
    for run in api.active_runs():
        api.stop(run)
    mlflow.set_tracking_uri(None)


def _frame(n: int = 3) -> pd.DataFrame:
    return pd.DataFrame({"id": range(n), "ts": pd.date_range("2026-01-01", periods=n, tz="UTC"), "x": [1.0] * n})


def test_writes_and_reads_are_recorded_with_who_where_and_which_version(store: Store) -> None:
    store.snapshot(_frame(), "raw", message="first")
    store.snapshot(_frame(4), "raw")
    store.load("raw@1")
    store.register_features(store.load("raw"), "fg", keys="id", event_time="ts")
    store.training_data(_frame()[["id", "ts"]], ["fg.x"], event_time="ts", save_as="train")
    events = store.audit()
    rows = list(events[["action", "kind", "name", "version"]].itertuples(index=False, name=None))
    assert rows == [
        ("write", "snapshot", "raw", "1"),
        ("write", "snapshot", "raw", "2"),
        ("read", "snapshot", "raw", "1"),
        ("read", "snapshot", "raw", "2"),
        ("write", "feature_commit", "fg", "1@1"),
        ("read", "feature_commit", "fg", "1@1"),
        ("write", "snapshot", "train", "1"),
    ]
    assert set(events["actor"]) == {"analyst-7"} and set(events["host"]) == {os.uname().nodename}
    assert str(events["at"].dt.tz) == "UTC" and events["at"].is_monotonic_increasing
    assert list(store.audit("raw")["version"]) == ["1", "2", "1", "2"]


def test_an_unchanged_snapshot_writes_nothing_and_records_no_write(store: Store) -> None:
    store.snapshot(_frame(), "raw")
    store.snapshot(_frame(), "raw")  # the same content is the same version
    assert list(store.audit()["action"]) == ["write"]


def test_since_filters_by_time_and_naive_means_utc(store: Store) -> None:
    store.snapshot(_frame(), "raw")
    at = store.audit()["at"].iloc[0]
    assert len(store.audit(since=at)) == 1
    assert len(store.audit(since=at + pd.Timedelta(seconds=1))) == 0
    naive_utc = (at + pd.Timedelta(seconds=1)).tz_localize(None)
    assert len(store.audit(since=naive_utc)) == 0
    paris = (at - pd.Timedelta(seconds=1)).tz_convert("Europe/Paris")
    assert len(store.audit(since=paris)) == 1


def test_runs_and_registered_models_are_recorded(store: Store) -> None:
    from sklearn.linear_model import LogisticRegression

    store.snapshot(_frame(), "raw")
    with nbops.track(experiment="audited", run_name="r", store=store, register_model="audited_model") as run:
        store.load("raw")
        mlflow.sklearn.log_model(LogisticRegression().fit([[0.0], [1.0]], [0, 1]), name="model")
    writes = store.audit()
    writes = writes[writes["action"] == "write"]
    assert ("run", run.run_id) in set(writes[["kind", "name"]].itertuples(index=False, name=None))
    assert ("model", "audited_model", "1") in set(
        writes[["kind", "name", "version"]].itertuples(index=False, name=None)
    )


@pytest.mark.parametrize(
    "write",
    [
        lambda s: s.snapshot(_frame(5), "raw"),
        lambda s: s.register_features(_frame(), "fg2", keys="id", event_time="ts"),
        lambda s: s.training_data(_frame()[["id", "ts"]], ["fg.x"], event_time="ts", save_as="train"),
        lambda s: s.gc(grace_seconds=0),
        lambda s: nbops.track(experiment="ro", store=s).__enter__(),
    ],
    ids=["snapshot", "register_features", "save_training_data", "gc", "track"],
)
def test_read_only_refuses_every_write_and_changes_nothing(
    store: Store, store_state: Callable[[Store], object], monkeypatch: pytest.MonkeyPatch, write: object
) -> None:
    capture_state = store_state
    store.snapshot(_frame(), "raw")
    store.register_features(_frame(), "fg", keys="id", event_time="ts")
    before = capture_state(store)
    monkeypatch.setenv(READONLY_ENV, "1")
    with pytest.raises(ReadOnlyError, match="read-only \\(NBOPS_READONLY=1\\)"):
        write(store)  # type: ignore[operator]
    assert capture_state(store) == before
    # Reads still work, and are not audited (an audit row is a write).
    assert len(store.load("raw")) == 3
    assert len(store.training_data(_frame()[["id", "ts"]], ["fg.x"], event_time="ts")) == 3
    assert capture_state(store) == before


def test_read_only_refuses_export_before_writing_anything(
    store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import nbformat

    notebook = tmp_path / "nb.ipynb"
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("# nbops: feature\nx = 1")])
    nbformat.write(nb, notebook)
    monkeypatch.setenv(READONLY_ENV, "yes")
    with pytest.raises(ReadOnlyError, match="cannot export 'nb'"):
        nbops.export(notebook, out=tmp_path / "out", store=store)
    assert not (tmp_path / "out").exists()


@pytest.mark.skipif(NBOPS is None, reason="the nbops command is not installed (pip install -e .)")
def test_the_audit_command_prints_the_trail_and_filters(tmp_path: Path) -> None:
    with nbops.open(tmp_path / ".nbops") as s:
        s.snapshot(_frame(), "raw")
        s.snapshot(_frame(), "other")
        s.load("raw")
    env = {k: v for k, v in os.environ.items() if k not in ("NBOPS_HOME", URI_ENV, MARKER_ENV)}

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        assert NBOPS is not None
        return subprocess.run(
            [NBOPS, *args], capture_output=True, text=True, cwd=tmp_path, env=env, check=False, timeout=120
        )

    everything = run("audit")
    assert everything.returncode == 0, everything.stderr
    assert everything.stdout.count("analyst-7") == 3 and "other" in everything.stdout
    only_raw = run("audit", "raw")
    assert only_raw.stdout.count("raw") == 2 and "other" not in only_raw.stdout
    assert "no audit events match" in run("audit", "--since", "2999-01-01").stdout
    bad = run("audit", "--since", "yesterday-ish")
    assert bad.returncode == 2 and "is not a time" in bad.stderr
