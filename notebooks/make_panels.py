"""Build notebooks/panels.ipynb: a small store with history, features, runs and lineage, and every panel.

Run ``python notebooks/make_panels.py`` to regenerate the notebook. The output is
deterministic (fixed cell ids, no outputs). The tests execute it in a kernel
(tests/system/test_notebooks.py) and click through its panels in a real JupyterLab
(tests/widgets/test_browser.py), which also takes the screenshots in docs/img/.
"""

from __future__ import annotations

from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

HERE = Path(__file__).resolve().parent
OUT = HERE / "panels.ipynb"


def md(cell_id: str, text: str) -> nbformat.NotebookNode:
    return new_markdown_cell(text.strip("\n"), id=cell_id)


def code(cell_id: str, text: str) -> nbformat.NotebookNode:
    return new_code_cell(text.strip("\n"), id=cell_id)


CELLS = [
    md(
        "intro",
        """
# nbops panels

Five panels show what the store holds: `%snapshots` (history and diff), `%features`
(the catalog with statistics), `%runs` (compare runs), `%lineage` (where an artifact
came from) and `%drift`. This notebook makes a small store, then opens each one.
Every panel has a **Refresh** button; tables show 50 rows to a page.
""",
    ),
    code(
        "data",
        """
import numpy as np
import pandas as pd

import nbops

store = nbops.open()
rng = np.random.default_rng(11)
n = 2_000
raw_tx = pd.DataFrame({
    "tx_id": np.arange(n),
    "cc_num": rng.integers(1, 200, n),
    "ts": pd.Timestamp("2026-03-01", tz="UTC") + pd.to_timedelta(rng.integers(0, 30 * 86_400, n), unit="s"),
    "amount": rng.gamma(2.0, 40.0, n).round(2),
    "category": rng.choice(["grocery", "fuel", "travel", "online"], n),
    "is_fraud": rng.random(n) < 0.05,
})
""",
    ),
    code("snap1", '%snapshot raw_tx -m "march dump"'),
    code(
        "snap2",
        """
raw_tx["amount"] = raw_tx["amount"].clip(upper=250.0)
raw_tx["amount_log"] = np.log1p(raw_tx["amount"])
raw_tx = raw_tx[raw_tx["cc_num"] != 13].reset_index(drop=True)
%snapshot raw_tx -m "capped amounts, dropped card 13" --keys tx_id
""",
    ),
    md("features-md", "Features computed from the stored snapshot, so the lineage links them; a second commit a month later drifts."),
    code(
        "features1",
        """
%%features tx_features --keys cc_num --event-time ts --online -d "running card activity"
raw = store.load("raw_tx")
feats = raw.sort_values("ts")[["cc_num", "ts", "amount", "category"]].copy()
by_card = feats.groupby("cc_num")["amount"]
feats["n_tx"] = by_card.cumcount() + 1
feats["amount_mean"] = by_card.cumsum() / feats["n_tx"]
feats[["cc_num", "ts", "n_tx", "amount_mean", "category"]]
""",
    ),
    code(
        "features2",
        """
%%features tx_features --keys cc_num --event-time ts
raw = store.load("raw_tx")
april = feats.assign(ts=feats["ts"] + pd.Timedelta(days=31), amount_mean=feats["amount_mean"] * 1.5)
april[["cc_num", "ts", "n_tx", "amount_mean", "category"]]
""",
    ),
    code(
        "training",
        """
spine = raw[["cc_num", "ts", "is_fraud"]]
train = store.training_data(spine, ["tx_features.n_tx", "tx_features.amount_mean"], event_time="ts",
                            label="is_fraud", save_as="fraud_train")
len(train)
""",
    ),
    md("runs-md", "Three runs with different regularisation; the best is registered as a model."),
    code(
        "runs",
        """
import mlflow
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score

features = ["n_tx", "amount_mean"]
for c in (0.01, 0.1, 1.0):
    with nbops.track(experiment="panels_demo", run_name=f"logreg C={c}"):
        fit_set, holdout = nbops.split_by_time(store.load("fraud_train"), "ts", test_size=0.3)
        mlflow.log_params({"C": c, "features": ",".join(features)})
        model = LogisticRegression(C=c, max_iter=200).fit(fit_set[features], fit_set["is_fraud"])
        scores = model.predict_proba(holdout[features])[:, 1]
        nbops.log(roc_auc=roc_auc_score(holdout["is_fraud"], scores),
                  accuracy=float((model.predict(holdout[features]) == holdout["is_fraud"]).mean()))
""",
    ),
    code(
        "model",
        """
%%track --experiment panels_demo --run-name champion --register-model fraud_model
fit_set, holdout = nbops.split_by_time(store.load("fraud_train"), "ts", test_size=0.3)
mlflow.log_params({"C": 1.0, "features": ",".join(features)})
model = LogisticRegression(C=1.0, max_iter=200).fit(fit_set[features], fit_set["is_fraud"])
nbops.log(roc_auc=roc_auc_score(holdout["is_fraud"], model.predict_proba(holdout[features])[:, 1]))
info = mlflow.sklearn.log_model(model, name="model")
""",
    ),
    md("panels-md", "## The panels\n\nPick one version to preview it, two to see their diff (here by key `tx_id`)."),
    code("p-snapshots", "%snapshots raw_tx"),
    md("p-features-md", "Groups → versions → commits → features with statistics, histograms, expectations and lineage; type in the search box to filter."),
    code("p-features", "%features"),
    md("p-runs-md", "Pick runs to compare them on a chart, by run or against a parameter."),
    code("p-runs", "%runs panels_demo"),
    md("p-lineage-md", "From the raw snapshot to the registered model, with the notebook cells that wrote each step. Click a node."),
    code("p-lineage", "%lineage fraud_train@1"),
    md("p-drift-md", "The April commit against the March one: drifting features first."),
    code("p-drift", "%drift tx_features 1 2"),
]


def build() -> nbformat.NotebookNode:
    nb = new_notebook(cells=CELLS)
    nb.metadata = {
        "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
        "language_info": {"name": "python"},
    }
    nbformat.validate(nb)
    return nb


def main() -> None:
    nbformat.write(build(), OUT)
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
