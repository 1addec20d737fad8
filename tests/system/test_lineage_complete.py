"""Lineage is complete: a model's ancestors reach its training data, however the cells are split.

Real components: one store per module with a real MLflow SQLite backend
(created once: MLflow's migrations take seconds), a real IPython shell with
the extension loaded for the notebook cases, a real subprocess for an
exported-module-like script, real scikit-learn models logged and registered.
Each test uses its own dataset, group, experiment and model names.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import mlflow
import pandas as pd
import pytest
import sqlalchemy as sa
from IPython.core.interactiveshell import InteractiveShell

import nbops
from helpers.lineage import ancestors
from helpers.mlflowstate import forget_tracking_uri, reset_mlflow, untracked_setup
from helpers.shell import nbops_shell
from nbops.core import catalog as cat
from nbops.core import lineage
from nbops.core.paths import MARKER_ENV, URI_ENV
from nbops.store import Store
from nbops.tracking import experiments as tracking

pytest.importorskip("sklearn")


# -- fixtures ------------------------------------------------------------------------------
@pytest.fixture(autouse=True)
def clean_mlflow(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    forget_tracking_uri(monkeypatch)
    lineage.forget_process_reads()
    yield
    reset_mlflow()


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A store whose MLflow database exists (created once for the module)."""
    path = tmp_path_factory.mktemp("lineage") / ".nbops"
    with untracked_setup(), nbops.open(path) as s:
        tracking.ensure_backend(s)
    return path


@pytest.fixture
def store(root: Path, clean_mlflow: None) -> Iterator[Store]:
    with nbops.open(root) as s:
        yield s


@pytest.fixture
def shell(root: Path, clean_mlflow: None, monkeypatch: pytest.MonkeyPatch) -> Iterator[InteractiveShell]:
    with nbops_shell(root, monkeypatch) as ip:
        yield ip


# -- helpers -------------------------------------------------------------------------------
def raw_frame() -> pd.DataFrame:
    days = pd.to_datetime(["2024-01-01"] * 4 + ["2024-01-05"] * 4)
    return pd.DataFrame(
        {
            "id": [1, 2, 3, 4, 1, 2, 3, 4],
            "ts": days,
            "amount": [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0],
            "label": [0, 1, 0, 1, 1, 0, 1, 0],
        }
    )


def make_inputs(store: Store, tag: str) -> dict[str, str]:
    """A raw snapshot and two feature groups made from it; returns their lineage node ids."""
    store.snapshot(raw_frame(), f"raw_{tag}")
    raw = store.load(f"raw_{tag}")
    a = store.register_features(raw[["id", "ts", "amount"]], f"fa_{tag}", keys="id", event_time="ts")
    doubled = raw[["id", "ts"]].assign(twice=raw["amount"] * 2)
    b = store.register_features(doubled, f"fb_{tag}", keys="id", event_time="ts")
    return {
        "raw": f"snapshot:raw_{tag}@1",
        "fa": f"feature_commit:{a.ref}",
        "fb": f"feature_commit:{b.ref}",
    }


def training_call(tag: str, save_as: str | None = None) -> str:
    extra = f", save_as={save_as!r}" if save_as else ""
    return (
        f"spine = store.load('raw_{tag}')[['id', 'ts', 'label']]\n"
        f"train = store.training_data(spine, ['fa_{tag}.amount', 'fb_{tag}.twice'], event_time='ts', "
        f"label='label'{extra})\n"
    )


FIT = (
    "from sklearn.linear_model import LogisticRegression\n"
    "model = LogisticRegression().fit(X, y)\n"
    "mlflow.sklearn.log_model(model, name='model', pip_requirements=['scikit-learn'])\n"
)
SPLIT = "X = train.drop(columns=['label', 'ts'])\ny = train['label']\n"


def run_cells(shell: InteractiveShell, *cells: str) -> None:
    for cell in cells:
        result = shell.run_cell(cell, store_history=True)
        assert result.success, result.error_in_exec or result.error_before_exec


def setup_cell() -> str:
    return "import mlflow\nimport nbops\nstore = nbops.open()\n"


def model_ancestors(store: Store, model: str) -> set[str]:
    got = ancestors(store, f"model:{model}@1")
    assert any(a.startswith("run:") for a in got)
    return got


def training_sets(nodes: set[str]) -> set[str]:
    return {n for n in nodes if n.startswith("training_set:")}


# -- (a) the model's ancestors, however the cells are split ----------------------------------
def test_training_data_in_an_earlier_cell_and_the_track_cell_uses_derived_frames(
    shell: InteractiveShell, store: Store
) -> None:
    ids = make_inputs(store, "a1")
    run_cells(
        shell,
        setup_cell() + training_call("a1"),
        "%%track --experiment lin-a1 --register-model m_a1\n"
        "X = train.drop(columns=['label', 'ts'])\n" + FIT.replace("(X, y)", "(X, train['label'])"),
    )
    got = model_ancestors(store, "m_a1")
    assert {ids["raw"], ids["fa"], ids["fb"]} <= got
    [made] = training_sets(got)
    # The training set's own parents: the feature commits and the spine's snapshot.
    assert set(lineage.parents(store.catalog, tuple(made.split(":", 1)))) == {  # type: ignore[arg-type]
        ("feature_commit", ids["fa"].split(":", 1)[1]),
        ("feature_commit", ids["fb"].split(":", 1)[1]),
        ("snapshot", "raw_a1@1"),
    }


def test_three_cells_training_data_split_then_track(shell: InteractiveShell, store: Store) -> None:
    ids = make_inputs(store, "a2")
    run_cells(
        shell,
        setup_cell() + training_call("a2"),
        SPLIT,
        "%%track --experiment lin-a2 --register-model m_a2\n" + FIT,
    )
    got = model_ancestors(store, "m_a2")
    assert {ids["raw"], ids["fa"], ids["fb"]} <= got and len(training_sets(got)) == 1
    run = next(a for a in got if a.startswith("run:"))
    inputs = {d.dataset.name for d in mlflow.MlflowClient().get_run(run[4:]).inputs.dataset_inputs}
    assert inputs == {next(iter(training_sets(got)))}  # the training set is the run's MLflow dataset input


def test_everything_inside_one_track_cell(shell: InteractiveShell, store: Store) -> None:
    ids = make_inputs(store, "a3")
    run_cells(
        shell,
        setup_cell(),
        "%%track --experiment lin-a3 --register-model m_a3\n" + training_call("a3") + SPLIT + FIT,
    )
    assert {ids["raw"], ids["fa"], ids["fb"]} <= model_ancestors(store, "m_a3")


def test_saved_training_data_is_the_snapshot_among_the_ancestors(shell: InteractiveShell, store: Store) -> None:
    ids = make_inputs(store, "a4")
    run_cells(
        shell,
        setup_cell() + training_call("a4", save_as="train_a4"),
        SPLIT,
        "%%track --experiment lin-a4 --register-model m_a4\n" + FIT,
    )
    got = model_ancestors(store, "m_a4")
    assert {"snapshot:train_a4@1", ids["raw"], ids["fa"], ids["fb"]} <= got
    assert set(lineage.parents(store.catalog, ("snapshot", "train_a4@1"))) >= {
        ("feature_commit", ids["fa"].split(":", 1)[1]),
        ("snapshot", "raw_a4@1"),
    }


def test_with_track_block_in_a_later_cell(shell: InteractiveShell, store: Store) -> None:
    ids = make_inputs(store, "a5")
    body = textwrap.indent(FIT, "    ")
    run_cells(
        shell,
        setup_cell() + training_call("a5"),
        SPLIT,
        f"with nbops.track(experiment='lin-a5', register_model='m_a5'):\n{body}",
    )
    assert {ids["raw"], ids["fa"], ids["fb"]} <= model_ancestors(store, "m_a5")


def test_numpy_arrays_made_before_the_run_fall_back_to_the_reads_since_the_last_run(
    shell: InteractiveShell, store: Store
) -> None:
    ids = make_inputs(store, "a6")
    store.snapshot(pd.DataFrame({"v": [1, 2, 3]}), "early_a6")
    run_cells(
        shell,
        setup_cell() + "early = store.load('early_a6')\n%track start --experiment lin-a6-before\n",
        "%track stop",  # reads before this run's end are not the next run's
        training_call("a6"),
        "X = train.drop(columns=['label', 'ts']).to_numpy()\ny = train['label'].to_numpy()\n",
        "%%track --experiment lin-a6 --register-model m_a6\n" + FIT,
    )
    got = model_ancestors(store, "m_a6")
    assert {ids["raw"], ids["fa"], ids["fb"]} <= got
    assert "snapshot:early_a6@1" not in got
    run = next(a for a in got if a.startswith("run:"))
    assert mlflow.MlflowClient().get_run(run[4:]).data.tags["nbops.inputs"].startswith("inferred")


def test_a_frame_the_track_cell_does_not_use_is_not_an_ancestor(shell: InteractiveShell, store: Store) -> None:
    ids = make_inputs(store, "a7")
    store.snapshot(pd.DataFrame({"v": [1, 2, 3]}), "unrelated_a7")
    run_cells(
        shell,
        setup_cell() + "other = store.load('unrelated_a7')\n" + training_call("a7"),
        "also = other.assign(w=1)\n" + SPLIT,
        "%%track --experiment lin-a7 --register-model m_a7\n" + FIT,
    )
    got = model_ancestors(store, "m_a7")
    assert {ids["raw"], ids["fa"], ids["fb"]} <= got
    assert "snapshot:unrelated_a7@1" not in got


def test_a_run_on_data_made_inside_it_gets_no_inferred_inputs(shell: InteractiveShell, store: Store) -> None:
    make_inputs(store, "a8")
    run_cells(
        shell,
        setup_cell() + training_call("a8"),
        "%%track --experiment lin-a8 --register-model m_a8\n"
        "import numpy as np\nX = np.arange(8.0).reshape(-1, 1)\ny = np.array([0, 1] * 4)\n" + FIT,
    )
    got = model_ancestors(store, "m_a8")
    assert {a.split(":")[0] for a in got} == {"run"}


EXPORTED = """
import mlflow
import nbops
import nbops as _nbops
from sklearn.linear_model import LogisticRegression

PIPELINE = "train_lineage@1"


def main():
    nbops_store = _nbops.open({root!r})
    with _nbops.pipeline(PIPELINE, stage="training"):
        # %% cell 1
        spine = nbops_store.load("raw_{tag}")[["id", "ts", "label"]]
        train = nbops_store.training_data(
            spine, ["fa_{tag}.amount", "fb_{tag}.twice"], event_time="ts", label="label"
        )
        # %% cell 2
        X = train.drop(columns=["label", "ts"])
        y = train["label"]
        # %% cell 3
        with nbops.track(experiment="lin-{tag}", register_model="m_{tag}"):
            model = LogisticRegression().fit(X, y)
            mlflow.sklearn.log_model(model, name="model", pip_requirements=["scikit-learn"])


if __name__ == "__main__":
    main()
"""


def test_exported_module_shape_in_a_subprocess(store: Store, root: Path, tmp_path: Path) -> None:
    ids = make_inputs(store, "a9")
    script = tmp_path / "train_lineage.py"
    script.write_text(EXPORTED.format(root=str(root), tag="a9"))
    env = {k: v for k, v in os.environ.items() if k not in (URI_ENV, MARKER_ENV, "NBOPS_HOME")}
    done = subprocess.run([sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    got = model_ancestors(store, "m_a9")
    assert {ids["raw"], ids["fa"], ids["fb"], "pipeline:train_lineage@1"} <= got
    assert len(training_sets(got)) == 1


# -- (b) a deduplicated snapshot keeps its parents --------------------------------------------
def test_writing_the_same_content_again_leaves_the_versions_parents_alone(store: Store) -> None:
    store.snapshot(pd.DataFrame({"a": [1]}), "src_b1")
    store.snapshot(pd.DataFrame({"b": [2]}), "src_b2")
    store.take_reads()
    content = pd.DataFrame({"x": [1, 2, 3]})

    store.load("src_b1")
    first = store.snapshot(content, "dedup_b")
    before = lineage.parents(store.catalog, ("snapshot", first.ref))
    assert before == [("snapshot", "src_b1@1")]

    store.load("src_b2")  # a later write of the same content, from other data
    again = store.snapshot(content.copy(), "dedup_b")
    assert (again.version, again.new) == (1, False)
    assert lineage.parents(store.catalog, ("snapshot", first.ref)) == before

    # ... and a training set saved twice with other parents: the first write's lineage stays.
    make_inputs(store, "b3")
    spine = store.load("raw_b3")[["id", "ts", "label"]]
    saved = store.training_data(spine, ["fa_b3.amount"], event_time="ts", label="label", save_as="train_b3")
    parents_then = lineage.parents(store.catalog, ("snapshot", "train_b3@1"))
    store.load("src_b2")
    again_saved = store.training_data(spine, ["fa_b3.amount"], event_time="ts", label="label", save_as="train_b3")
    assert saved.attrs["nbops_snapshot"] == again_saved.attrs["nbops_snapshot"] == "train_b3@1"
    assert lineage.parents(store.catalog, ("snapshot", "train_b3@1")) == parents_then


# -- (c) registering identical feature data ----------------------------------------------------
def counts(store: Store) -> dict[str, int]:
    with store.catalog.read() as conn:
        return {
            table.name: conn.execute(sa.select(sa.func.count()).select_from(table)).scalar_one()
            for table in (cat.feature_commits, cat.objects, cat.lineage_edges, _audit_table())
        }


def _audit_table() -> Any:
    from nbops.core.audit import audit_events

    return audit_events


def batch(ids: list[int], day: str, value: float) -> pd.DataFrame:
    return pd.DataFrame({"id": ids, "ts": pd.to_datetime([day] * len(ids)), "v": [value + i for i in ids]})


def test_identical_feature_data_is_unchanged_and_makes_no_commit(store: Store) -> None:
    first = store.register_features(batch([1, 2, 3], "2024-01-01", 0.5), "same_c1", keys="id", event_time="ts")
    assert not first.unchanged
    before = counts(store)
    again = store.register_features(batch([1, 2, 3], "2024-01-01", 0.5), "same_c1", keys="id", event_time="ts")
    assert again.unchanged and (again.commit, again.digest) == (first.commit, first.digest)
    assert "unchanged" in again.summary() and "no commit" in again.summary()
    assert counts(store) == before
    assert len(store.feature_commits("same_c1")) == 1


def test_a_batch_registered_again_after_a_later_one_is_unchanged(store: Store) -> None:
    store.register_features(batch([1, 2], "2024-01-01", 0.5), "same_c2", keys="id", event_time="ts")
    second = store.register_features(batch([3, 4], "2024-01-02", 0.5), "same_c2", keys="id", event_time="ts")
    before = counts(store)
    again = store.register_features(batch([1, 2], "2024-01-01", 0.5), "same_c2", keys="id", event_time="ts")
    assert again.unchanged and again.commit == second.commit
    assert counts(store) == before


def test_a_changed_row_makes_a_commit(store: Store) -> None:
    store.register_features(batch([1, 2, 3], "2024-01-01", 0.5), "same_c3", keys="id", event_time="ts")
    changed = batch([1, 2, 3], "2024-01-01", 0.5)
    changed.loc[1, "v"] = -1.0
    ref = store.register_features(changed, "same_c3", keys="id", event_time="ts")
    assert not ref.unchanged and (ref.commit, ref.updated, ref.inserted) == (2, 3, 0)  # 3 rows replaced
    assert store.features("same_c3")["v"].tolist() == [0.5 + 1, -1.0, 0.5 + 3]
    # A setting of the version (its description) is a change too.
    described = store.register_features(changed, "same_c3", keys="id", event_time="ts", description="now described")
    assert not described.unchanged and described.commit == 3


def test_the_features_magic_says_unchanged(shell: InteractiveShell, store: Store) -> None:
    line = "same_c4 --keys id --event-time ts"
    cell = (
        "import pandas as pd\npd.DataFrame({'id': [1, 2], 'ts': pd.to_datetime(['2024-01-01'] * 2), 'v': [1.0, 2.0]})\n"
    )
    first = shell.run_cell_magic("features", line, cell)
    again = shell.run_cell_magic("features", line, cell)
    assert not first.unchanged and again.unchanged and again.commit == 1
    shown, _ = shell.display_formatter.format(again)  # what the notebook shows under the cell
    assert "unchanged" in shown["text/plain"] and "no commit was made" in shown["text/html"]
    assert len(store.feature_commits("same_c4")) == 1
