"""The panels' widget models, driven from Python on a real store and a real MLflow backend.

A test sets what a click would set (a table's ``selected``, a graph node, a
dropdown) and checks what the panel then holds: rows, HTML, chart specs.
The same panels are clicked in a real browser in tests/widgets/test_browser.py.
"""

from __future__ import annotations

import html
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
from IPython.core.error import UsageError
from IPython.core.interactiveshell import InteractiveShell

import nbops
from helpers.mlflowstate import forget_tracking_uri, reset_mlflow, untracked_setup
from helpers.shell import nbops_shell
from nbops import api
from nbops.core.paths import MARKER_ENV, URI_ENV
from nbops.featurestore import expectations
from nbops.store import Store
from nbops.widgets import (
    DriftPanel,
    FeaturesPanel,
    LineagePanel,
    RunsPanel,
    SnapshotsPanel,
    charts,
    data,
)

HOSTILE = '<img src=x onerror="alert(1)">'


@dataclass
class World:
    root: Path
    runs: dict[str, str]  # run name -> run id
    experiment_id: str


def _tx(n: int = 10) -> pd.DataFrame:
    return pd.DataFrame({"id": np.arange(n), "amount": np.arange(n) * 10.0, "city": ["paris"] * n})


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    """Snapshots, a feature group with expectations, runs and a registered model, made through the API."""
    root = tmp_path_factory.mktemp("panels") / ".nbops"
    with untracked_setup(), nbops.open(root) as s:
        s.snapshot(_tx(), "tx", message="first")
        v2 = _tx()
        v2.loc[3, "amount"] = 999.0  # an edit
        v2 = v2[v2["id"] != 9]  # a removal
        v2 = pd.concat([v2, pd.DataFrame({"id": [10], "amount": [5.0], "city": [HOSTILE]})], ignore_index=True)
        v2[HOSTILE] = 1  # a column named with markup
        s.snapshot(v2, "tx", message=HOSTILE)
        rng = np.random.default_rng(3)
        march = pd.DataFrame(
            {
                "card": np.arange(200),
                "ts": pd.Timestamp("2026-03-01", tz="UTC") + pd.to_timedelta(np.arange(200), unit="h"),
                "spend": rng.normal(100, 10, 200),
                "kind": rng.choice(["a", "b"], 200),
            }
        )
        s.load("tx")  # read in the same "cell": a lineage parent of the commit
        s.register_features(
            march,
            "cards",
            keys="card",
            event_time="ts",
            description=HOSTILE,
            online=True,
            expectations=[expectations.not_null("spend")],
        )
        s.load("tx")
        april = march.assign(
            ts=march["ts"] + pd.Timedelta(days=31), spend=march["spend"] * 2, kind=rng.choice(["a", "c"], 200)
        )
        s.register_features(april, "cards", keys="card", event_time="ts")
        s.training_data(march[["card", "ts"]], ["cards.spend"], event_time="ts", save_as="train")
        runs = {}
        for c in (0.1, 1.0, 10.0):
            with nbops.track(experiment="exp", run_name=f"C={c}", store=s) as run:
                s.load("train")
                mlflow.log_params({"C": c, "solver": "lbfgs" if c < 5 else "saga"})
                nbops.log(auc=0.5 + c / 100, loss=1 / (1 + c))
            runs[f"C={c}"] = run.run_id
        from sklearn.linear_model import LogisticRegression

        with nbops.track(experiment="exp", run_name=HOSTILE, store=s, register_model="cards_model") as run:
            s.load("train")
            model = LogisticRegression().fit([[0.0], [1.0]], [0, 1])
            mlflow.sklearn.log_model(model, name="model")
            nbops.log(auc=0.9)
        runs["model"] = run.run_id
        experiment_id = str(mlflow.MlflowClient().get_experiment_by_name("exp").experiment_id)
    yield World(root, runs, experiment_id)


@pytest.fixture
def store(world: World, monkeypatch: pytest.MonkeyPatch) -> Iterator[Store]:
    forget_tracking_uri(monkeypatch)
    api.clear_reads()
    s = nbops.open(world.root)
    try:
        yield s
    finally:
        s.close()
        reset_mlflow()


def assert_escaped(markup: str) -> None:
    assert "<img" not in markup and "<script" not in markup
    assert html.escape(HOSTILE, quote=True) in markup or html.escape(HOSTILE, quote=False) in markup


# -- snapshots -------------------------------------------------------------------------------
def test_snapshots_panel_lists_versions_newest_first_and_previews_one(store: Store) -> None:
    panel = SnapshotsPanel(store, "tx")
    assert panel.last_error is None
    assert panel.dataset.value == "tx" and list(panel.dataset.options) == ["train", "tx"]
    assert panel.versions.row_ids == ["2", "1"]
    assert panel.versions.columns == ["version", "digest", "rows", "columns", "created", "message", "author"]
    assert panel.versions.rows[1][:3] == ["1", store.ref("tx", 1).digest[:12], "10"]
    assert panel.versions.rows[0][5] == HOSTILE  # text: the table view sets textContent
    panel.versions.selected = ["1"]
    assert 'data-nbops="snapshot-preview"' in panel.detail.value and "first 10 of 10 rows" in panel.detail.value
    assert api.take_reads(store.root) == []  # looking is not reading for lineage


def test_picking_two_versions_shows_counts_schema_changes_and_sample_rows(store: Store) -> None:
    panel = SnapshotsPanel(store, "tx")
    panel.versions.selected = ["2", "1"]
    whole_rows = panel.detail.value
    assert "tx v1 → v2" in whole_rows
    assert "<th>added</th><td>2</td>" in whole_rows and "<th>removed</th><td>2</td>" in whole_rows  # edit = -1 +1
    assert f"<th>{html.escape(HOSTILE)}</th><td>added (int64)</td>" in whole_rows  # the schema changes
    panel.diff_keys.value = "id"
    by_key = panel.detail.value
    assert "<th>changed</th><td>1</td>" in by_key and "<th>removed</th><td>1</td>" in by_key
    assert "amount (v1)" in by_key and "amount (v2)" in by_key and "999.0" in by_key
    assert "city (v1)" not in by_key  # only columns that changed in the sample
    assert_escaped(by_key)


def test_a_bad_diff_key_shows_an_error_in_the_panel_and_the_panel_recovers(store: Store) -> None:
    panel = SnapshotsPanel(store, "tx")
    panel.versions.selected = ["1", "2"]
    panel.diff_keys.value = "nope"
    assert "key column" in panel.error.value and "nope" in panel.error.value
    panel.diff_keys.value = ""
    assert panel.error.value == "" and "tx v1 → v2" in panel.detail.value


def test_refresh_shows_what_was_written_since(tmp_path: Path) -> None:
    with nbops.open(tmp_path / ".nbops") as s:
        panel = SnapshotsPanel(s)
        assert panel.versions.rows == [] and "no datasets" in panel.status.value
        s.snapshot(_tx(3), "fresh")
        panel.refresh_button.click()
        assert panel.dataset.value == "fresh" and panel.versions.row_ids == ["1"]
        s.snapshot(_tx(4), "fresh")
        panel.refresh_button.click()
        assert panel.versions.row_ids == ["2", "1"]


def test_versions_come_in_pages_of_fifty(tmp_path: Path) -> None:
    with nbops.open(tmp_path / ".nbops") as s:
        for i in range(120):
            s.snapshot(pd.DataFrame({"a": [i]}), "many")
        panel = SnapshotsPanel(s, "many")
        assert len(panel.versions.rows) == 50 and panel.versions.row_ids[0] == "120"
        assert panel.pager.label.value == "1–50 of 120" and panel.pager.previous.disabled
        panel.pager.next.click()
        panel.pager.next.click()
        assert panel.versions.row_ids == [str(v) for v in range(20, 0, -1)]
        assert panel.pager.label.value == "101–120 of 120" and panel.pager.next.disabled
        panel.versions.selected = ["1", "20"]
        assert "many v1 → v20" in panel.detail.value
        panel.refresh_button.click()  # a refresh stays on the page
        assert panel.pager.page == 2 and panel.versions.selected == ["1", "20"]
        s.snapshot(pd.DataFrame({"b": [1]}), "other")
        panel.refresh_button.click()
        panel.dataset.value = "other"  # another dataset starts on its first page
        assert panel.pager.page == 0 and panel.versions.row_ids == ["1"] and panel.detail.value == ""


# -- features ----------------------------------------------------------------------------
def test_features_panel_shows_statistics_histograms_expectations_and_lineage(store: Store) -> None:
    panel = FeaturesPanel(store, "cards")
    assert panel.groups.selected == ["cards:1"]
    assert panel.commits.row_ids == ["2", "1"] and panel.commits.selected == ["2"]
    detail = panel.detail.value
    assert "cards:1@2" in detail and 'data-nbops="feature-statistics"' in detail
    assert "<th>spend</th>" in detail and "<th>kind</th>" in detail
    assert "not_null" in detail  # the expectation declared with the version
    assert_escaped(detail)  # the description
    spec = panel.histograms.spec
    assert spec is not None and [c["title"]["text"] for c in spec["concat"]] == ["spend", "kind"]
    panel.commits.selected = ["1"]
    assert "cards:1@1" in panel.detail.value and "snapshot:tx@2" in panel.detail.value  # made from
    assert "passed" in panel.detail.value  # its validation result
    panel.lineage_button.click()
    (lineage,) = panel.lineage_box.children
    assert isinstance(lineage, LineagePanel) and lineage.graph.selected == "feature_commit:cards:1@1"


def test_features_search_filters_groups_by_name_feature_or_description(store: Store) -> None:
    panel = FeaturesPanel(store)
    assert panel.groups.row_ids == ["cards:1"]
    panel.search.value = "SPEND"
    assert panel.groups.row_ids == ["cards:1"]
    panel.search.value = "no such thing"
    assert panel.groups.row_ids == [] and panel.detail.value == ""


# -- runs ----------------------------------------------------------------------------------
def test_runs_panel_compares_picked_runs_by_run_and_against_a_param(store: Store, world: World) -> None:
    panel = RunsPanel(store, "exp")
    assert panel.last_error is None and len(panel.runs.row_ids) == 4
    assert {"auc", "loss", "C (param)", "solver (param)"} <= set(panel.runs.columns)
    assert world.runs["model"] in panel.runs.row_ids
    picked = [world.runs["C=0.1"], world.runs["C=10.0"]]
    panel.runs.selected = picked
    assert panel.metric.value == "auc" and set(panel.metric.options) == {"auc", "loss"}
    by_run = panel.chart.spec
    assert by_run is not None and by_run["mark"]["type"] == "bar"
    assert sorted(v["value"] for v in by_run["data"]["values"]) == [0.501, 0.6]
    panel.axis.value = "C"
    against = panel.chart.spec
    assert against["encoding"]["x"]["type"] == "quantitative"
    assert sorted((v["param"], v["value"]) for v in against["data"]["values"]) == [(0.1, 0.501), (10.0, 0.6)]
    panel.axis.value = "solver"
    assert panel.chart.spec["encoding"]["x"]["type"] == "nominal"
    assert 'data-nbops="runs-comparison"' in panel.comparison.value and "param C" in panel.comparison.value
    panel.runs.selected = [world.runs["model"]]
    assert_escaped(panel.comparison.value)  # the run name
    assert f"/#/experiments/{world.experiment_id}/runs/{world.runs['model']}" in panel.link.value


def test_runs_come_in_pages_read_from_mlflow(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    forget_tracking_uri(monkeypatch)
    try:
        with nbops.open(tmp_path / ".nbops") as s:
            from nbops.tracking import experiments as tracking

            experiment = tracking.experiment_id(s, "many")
            client = tracking.client()
            for i in range(60):
                run = client.create_run(experiment, run_name=f"r{i:02d}", start_time=1_700_000_000_000 + i)
                client.set_terminated(run.info.run_id)
            panel = RunsPanel(s, "many")
            assert len(panel.runs.rows) == 50 and panel.runs.rows[0][0] == "r59"
            panel.next.click()
            assert [r[0] for r in panel.runs.rows] == [f"r{i:02d}" for i in range(9, -1, -1)]
            assert panel.next.disabled and not panel.previous.disabled
            panel.previous.click()
            assert panel.runs.rows[0][0] == "r59"
    finally:
        reset_mlflow()


# -- lineage -------------------------------------------------------------------------------
def test_lineage_panel_draws_snapshot_to_model_and_explains_every_node(store: Store, world: World) -> None:
    panel = LineagePanel(store, "train@1")
    ids = {n["id"] for n in panel.graph.nodes}
    assert {"snapshot:tx@2", "feature_commit:cards:1@2", "snapshot:train@1", "model:cards_model@1"} <= ids
    assert {f"run:{world.runs[k]}" for k in ("C=0.1", "model")} <= ids
    assert panel.graph.selected == "snapshot:train@1"
    labels = {n["id"]: n["label"] for n in panel.graph.nodes}
    assert labels[f"run:{world.runs['C=0.1']}"] == "C=0.1"  # runs are labelled by name
    x = {n["id"]: n["x"] for n in panel.graph.nodes}
    assert all(x[e["parent"]] < x[e["child"]] for e in panel.graph.edges)  # drawn left to right
    for node in panel.graph.nodes:
        panel.graph.selected = node["id"]
        assert panel.last_error is None, (node, panel.last_error)
        assert 'data-nbops="lineage-detail"' in panel.detail.value
    panel.graph.selected = "model:cards_model@1"
    assert world.runs["model"] in panel.detail.value  # its source run
    panel.graph.selected = f"run:{world.runs['model']}"
    assert "metric auc" in panel.detail.value
    assert_escaped(panel.detail.value)


def test_layout_layers_follow_the_edges_and_a_cycle_does_not_hang() -> None:
    nodes = [{"id": i, "kind": "snapshot", "ref": i} for i in "abcd"]
    edges = [
        {"parent": "a", "child": "b"},
        {"parent": "b", "child": "c"},
        {"parent": "a", "child": "c"},
        {"parent": "c", "child": "d"},
    ]
    x = {n["id"]: n["x"] for n in data.layout({"nodes": nodes, "edges": edges})["nodes"]}
    assert x["a"] < x["b"] < x["c"] < x["d"]  # c sits right of both its parents
    cyclic = data.layout({"nodes": nodes, "edges": [*edges, {"parent": "d", "child": "b"}]})
    assert {n["id"] for n in cyclic["nodes"]} == set("abcd")
    long = {"nodes": [{"id": "x", "kind": "run", "ref": "r" * 40}], "edges": []}
    assert len(data.layout(long)["nodes"][0]["label"]) <= 26


# -- drift ---------------------------------------------------------------------------------
def test_drift_panel_puts_drifting_features_first_with_overlaid_histograms(store: Store) -> None:
    panel = DriftPanel(store, "cards", 1, 2)
    assert panel.features.row_ids[0] in {"spend", "kind"} and set(panel.features.row_ids) == {"spend", "kind"}
    assert [r[2] for r in panel.features.rows] == ["yes", "yes"]
    assert "2 of 2 features drifting" in panel.status.value
    spec = panel.chart.spec
    assert spec is not None and {v["side"] for v in spec["data"]["values"]} == {
        "cards:1@1 (its rows)",
        "cards:1@2 (its rows)",
    }
    panel.features.selected = ["kind"]
    categories = panel.chart.spec["data"]["values"]
    assert {v["bin"] for v in categories} == {"a", "b", "c"}
    assert sum(v["share"] for v in categories if v["side"].startswith("cards:1@1")) == pytest.approx(1.0)


def test_chart_fields_are_fixed_words_and_user_text_is_data() -> None:
    runs = [{"run_name": HOSTILE, "run_id": "abcdef123", "params": {"a.b[0]": "1"}, "metrics": {"x.y": 1.0}}]
    spec = charts.metric_against_param("x.y", "a.b[0]", runs, numeric=True)
    assert {e["field"] for e in spec["encoding"].values()} == {"param", "value", "run"}
    assert spec["data"]["values"][0] == {"run": f"{HOSTILE} (abcdef)", "param": 1.0, "value": 1.0}


# -- magics --------------------------------------------------------------------------------
@pytest.fixture
def shell(world: World, monkeypatch: pytest.MonkeyPatch) -> Iterator[InteractiveShell]:
    monkeypatch.delenv(URI_ENV, raising=False)
    monkeypatch.delenv(MARKER_ENV, raising=False)
    with nbops_shell(world.root, monkeypatch) as ip:
        yield ip
    reset_mlflow()


def test_panel_magics_return_panels(shell: InteractiveShell, world: World) -> None:
    assert isinstance(shell.run_line_magic("snapshots", "tx"), SnapshotsPanel)
    assert isinstance(shell.run_line_magic("features", "cards"), FeaturesPanel)
    assert isinstance(shell.run_line_magic("runs", "exp"), RunsPanel)
    lineage = shell.run_line_magic("lineage", "tx")  # a bare name is the latest version
    assert isinstance(lineage, LineagePanel) and lineage.graph.selected == "snapshot:tx@2"
    assert isinstance(shell.run_line_magic("drift", "cards 1 2"), DriftPanel)


@pytest.mark.parametrize(
    ("magic", "line", "message"),
    [
        ("snapshots", "nope", "no dataset named 'nope'"),
        ("runs", "nope", "no experiment named 'nope'"),
        ("lineage", "nope", "nope"),
        ("lineage", "nope@1", "nope"),
        ("features", "nope", "no feature group named .nope.; known: cards"),
        ("drift", "cards 1 9", "commit 9"),
    ],
)
def test_panel_magics_fail_the_cell_with_a_clear_reason(
    shell: InteractiveShell, magic: str, line: str, message: str
) -> None:
    with pytest.raises(UsageError, match=message):
        shell.run_line_magic(magic, line)


def test_a_pipeline_version_is_a_node_with_details(store: Store) -> None:
    """Exported modules write inside ``nbops.pipeline``: the version is a parent of what they write."""
    with api.pipeline("nightly@3", "feature"):
        ref = store.snapshot(_tx(2), "from_pipeline")
    panel = LineagePanel(store, ref.ref)
    assert {"pipeline:nightly@3", f"snapshot:{ref.ref}"} <= {n["id"] for n in panel.graph.nodes}
    panel.graph.selected = "pipeline:nightly@3"
    assert panel.last_error is None and "nightly@3" in panel.detail.value


def test_the_ui_link_follows_a_tracking_server_and_never_shows_its_password(monkeypatch: pytest.MonkeyPatch) -> None:
    from nbops.widgets.runs import DEFAULT_UI_URL, ui_url

    monkeypatch.delenv("NBOPS_UI_URL", raising=False)
    monkeypatch.delenv(URI_ENV, raising=False)
    assert ui_url() == DEFAULT_UI_URL
    monkeypatch.setenv(URI_ENV, "http://team:s3cret@mlflow.internal:5000/")
    assert ui_url() == "http://mlflow.internal:5000"
    monkeypatch.setenv("NBOPS_UI_URL", "http://127.0.0.1:5055/")
    assert ui_url() == "http://127.0.0.1:5055"
