"""Build notebooks/fraud_fti.ipynb: the feature / training / inference example for export.

Run ``python notebooks/make_fraud_fti.py`` to regenerate the notebook. The output is
deterministic (fixed cell ids, no outputs), so regenerating an unchanged script
gives a byte-identical file.

How cells are assigned to stages (the notebook demonstrates every way):

- cell tag ``feature`` / ``training`` / ``inference`` / ``skip``;
- a first-line comment ``# nbops: training``;
- the magic the cell uses: ``%%features`` -> feature, ``%%track`` -> training.

Untagged cells without a stage magic (imports, the store, constants, helpers)
are support cells that export pulls into each stage that uses them. Stages
communicate only through the store (snapshots, feature groups, training sets)
and the MLflow model registry, never through another stage's variables.
"""

from __future__ import annotations

from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

HERE = Path(__file__).resolve().parent
OUT = HERE / "fraud_fti.ipynb"


def md(cell_id: str, text: str) -> nbformat.NotebookNode:
    return new_markdown_cell(text.strip("\n"), id=cell_id)


def code(cell_id: str, text: str, tags: list[str] | None = None) -> nbformat.NotebookNode:
    metadata = {"tags": tags} if tags else {}
    return new_code_cell(text.strip("\n"), id=cell_id, metadata=metadata)


CELLS = [
    md(
        "intro",
        """
# Card fraud: feature, training and inference pipelines in one notebook

A small version of Hopsworks' credit-card fraud tutorials on deterministic synthetic
data (about 20,000 transactions on 1,000 cards over 60 days, ~3 % fraud). The notebook
is written so that `nbops export` can split it into three pipeline modules:

| stage | does | reads | writes |
|---|---|---|---|
| **feature** | generates raw transactions, computes card and transaction features | — | snapshot `raw_tx`, groups `card_features`, `tx_features` |
| **training** | point-in-time training data, fits and tracks a model | `raw_tx`, both groups | snapshot `fraud_train`, run in `fraud_fti`, model `fraud_model@champion` |
| **inference** | scores a later batch of transactions | `fraud_model@champion`, online and batch features | snapshot `predictions` |

A cell's stage comes from its tag (`feature`, `training`, `inference`, `skip`), from a
first-line comment (`# nbops: training`), or from its magic (`%%features` is a feature
cell, `%%track` a training cell). Untagged cells (imports, constants, helpers) are
included in every stage that uses them. Stages share nothing in memory: each one
reads what it needs from the store or the model registry.
""",
    ),
    code(
        "parameters",
        """
# Pipeline parameters: export turns these into command-line options.
n_transactions = 20_000
n_cards = 1_000
n_days = 60
start_date = "2026-01-01"
seed = 42
fraud_share = 0.03
test_size = 0.2
model_name = "fraud_model"
n_new_transactions = 2_000
new_batch_days = 7
new_batch_seed = 7
""",
        tags=["parameters"],
    ),
    md(
        "setup-md",
        """
## Setup

Imports, the store, constants and helpers. These cells have no stage of their own.
""",
    ),
    code(
        "imports",
        """
import mlflow
import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, roc_auc_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

import nbops
""",
    ),
    code(
        "store",
        """
store = nbops.open()  # NBOPS_HOME, else the nearest .nbops/ upward, else a new .nbops/ here
""",
    ),
    code(
        "constants",
        """
CATEGORIES = ["grocery", "fuel", "restaurant", "online", "travel"]
CARD_NOT_PRESENT = ["online", "travel"]
NIGHT_END_HOUR = 6  # 00:00-05:59 UTC counts as night

CARD_FEATURES = ["n_tx_1h", "n_tx_24h", "amount_sum_24h", "amount_mean_30d", "minutes_since_prev"]
TX_FEATURES = ["amount_log", "hour", "is_night", "is_card_not_present"]
MODEL_FEATURES = [*CARD_FEATURES, "amount_log", "is_night", "is_card_not_present"]
# Card features of a card without history (also a card the store has never seen).
NEW_CARD = {
    "n_tx_1h": 0,
    "n_tx_24h": 0,
    "amount_sum_24h": 0.0,
    "amount_mean_30d": 0.0,
    "minutes_since_prev": 30 * 24 * 60.0,
}
""",
    ),
    code(
        "helpers",
        '''
def make_transactions(n, seed, start, n_cards=1_000, n_days=60, fraud_share=0.03):
    """Deterministic synthetic card transactions starting at `start` (UTC).

    Normal spending is mostly in the daytime, each card with its own typical amount.
    Fraud comes in bursts of 2-8 transactions on one card within three hours, often
    at night, larger and more often card-not-present (online, travel).
    """
    rng = np.random.default_rng(seed)
    start = pd.Timestamp(start, tz="UTC")
    n_fraud = round(n * fraud_share)
    n_normal = n - n_fraud

    activity = rng.gamma(2.0, 1.0, n_cards)
    scale = rng.lognormal(3.3, 0.5, n_cards)
    cards = rng.choice(n_cards, n_normal, p=activity / activity.sum())
    hour_weights = np.array([1, 1, 1, 1, 1, 2, 4, 6, 8, 9, 9, 10, 10, 10, 9, 9, 9, 10, 10, 9, 7, 5, 3, 2.0])
    hours = rng.choice(24, n_normal, p=hour_weights / hour_weights.sum())
    normal = pd.DataFrame({
        "cc_num": cards + 1,
        "offset": rng.integers(0, n_days, n_normal) * 86_400 + hours * 3_600 + rng.integers(0, 3_600, n_normal),
        "amount": rng.gamma(1.2, scale[cards] / 1.2),
        "category": rng.choice(CATEGORIES, n_normal, p=[0.35, 0.2, 0.2, 0.15, 0.1]),
        "is_fraud": False,
    })

    sizes = rng.integers(2, 9, n_fraud)
    sizes = sizes[: np.searchsorted(np.cumsum(sizes), n_fraud) + 1]
    sizes[-1] -= sizes.sum() - n_fraud
    burst = np.repeat(np.arange(len(sizes)), sizes)
    night = rng.random(len(sizes)) < 0.5
    burst_hour = np.where(night, rng.integers(0, 6, len(sizes)), rng.integers(0, 24, len(sizes)))
    burst_start = rng.integers(0, n_days, len(sizes)) * 86_400 + burst_hour * 3_600
    fraud = pd.DataFrame({
        "cc_num": rng.integers(1, n_cards + 1, len(sizes))[burst],
        "offset": burst_start[burst] + rng.integers(0, 3 * 3_600, n_fraud),
        "amount": rng.gamma(1.5, 50.0, n_fraud),
        "category": rng.choice(CATEGORIES, n_fraud, p=[0.2, 0.1, 0.1, 0.35, 0.25]),
        "is_fraud": True,
    })

    tx = pd.concat([normal, fraud], ignore_index=True).sort_values(["offset", "cc_num"], kind="stable")
    tx = tx.drop_duplicates(["cc_num", "offset"]).reset_index(drop=True)  # one event per card and second
    return pd.DataFrame({
        "tx_id": seed * 1_000_000 + np.arange(len(tx)),
        "cc_num": tx["cc_num"].astype("int64"),
        "ts": start + pd.to_timedelta(tx["offset"], unit="s"),
        "amount": tx["amount"].round(2),
        "category": tx["category"].astype(str),
        "is_fraud": tx["is_fraud"].astype(bool),
    })


def card_features(tx):
    """Each card's activity as of each of its transactions (that transaction included)."""
    tx = tx.sort_values(["cc_num", "ts"], kind="stable")
    by_card = tx.set_index("ts").groupby("cc_num")["amount"]
    gap = tx.groupby("cc_num")["ts"].diff().dt.total_seconds() / 60
    return pd.DataFrame({
        "cc_num": tx["cc_num"].to_numpy(),
        "ts": tx["ts"].to_numpy(),
        "n_tx_1h": by_card.rolling("1h").count().to_numpy().astype("int64"),
        "n_tx_24h": by_card.rolling("24h").count().to_numpy().astype("int64"),
        "amount_sum_24h": by_card.rolling("24h").sum().round(2).to_numpy(),
        "amount_mean_30d": by_card.rolling("30D").mean().round(2).to_numpy(),
        "minutes_since_prev": gap.fillna(NEW_CARD["minutes_since_prev"]).round(1).to_numpy(),
    })


def transaction_features(tx):
    """Features of the transaction itself: computed in the feature stage and on demand at inference."""
    hour = tx["ts"].dt.hour
    return pd.DataFrame({
        "tx_id": tx["tx_id"].to_numpy(),
        "ts": tx["ts"].to_numpy(),
        "amount_log": np.log1p(tx["amount"]).round(6).to_numpy(),
        "hour": hour.astype("int64").to_numpy(),
        "is_night": (hour < NIGHT_END_HOUR).astype("int64").to_numpy(),
        "is_card_not_present": tx["category"].isin(CARD_NOT_PRESENT).astype("int64").to_numpy(),
    })
''',
    ),
    md(
        "feature-md",
        """
## Feature stage

Generate the raw transactions and snapshot them: the same data twice is the same
version, so re-running writes nothing new.
""",
    ),
    code(
        "raw-tx",
        """
raw_tx = make_transactions(
    n_transactions, seed=seed, start=start_date, n_cards=n_cards, n_days=n_days, fraud_share=fraud_share
)
display(raw_tx.head())
raw_tx["is_fraud"].mean()
""",
        tags=["feature"],
    ),
    code(
        "snapshot-raw",
        """
%snapshot raw_tx -m "synthetic dump"
""",
        tags=["feature"],
    ),
    code(
        "explore",
        """
# Exploration only: fraud share by time of day and category.
raw_tx.assign(night=raw_tx["ts"].dt.hour < NIGHT_END_HOUR).pivot_table(
    index="night", columns="category", values="is_fraud", aggfunc="mean"
).round(3)
""",
        tags=["skip"],
    ),
    md(
        "card-features-md",
        """
Per-card activity at each transaction (counts and sums over the last hour and day, the
30-day mean amount, minutes since the card's previous transaction). `%%features`
registers the cell's last expression; `--online` keeps each card's latest row for
serving. This cell has no tag: its magic makes it a feature cell.
""",
    ),
    code(
        "card-features",
        """
%%features card_features --keys cc_num --event-time ts --online -d "card activity as of each transaction"
card_features(store.load("raw_tx"))  # read back from the store: the commit's lineage names raw_tx@N
""",
    ),
    md(
        "tx-features-md",
        """
Transaction-level features through the Python API, with expectations that reject bad
rows before anything is written. The inference stage computes the same features on
demand with the same helper, so training and serving cannot disagree.
""",
    ),
    code(
        "tx-features",
        """
tx_group = store.register_features(
    transaction_features(store.load("raw_tx")),
    "tx_features",
    keys=["tx_id"],
    event_time="ts",
    description="amount, time of day and channel of each transaction",
    expectations=[
        nbops.expect.not_null("amount_log", "hour"),
        nbops.expect.in_range("hour", min=0, max=23),
        nbops.expect.allowed_values("is_night", [0, 1]),
    ],
)
tx_group.ref
""",
        tags=["feature"],
    ),
    md(
        "training-md",
        """
## Training stage

The spine is the raw snapshot (keys, event time, label), read back from the store.
`training_data` joins every feature as of each transaction's time, never later, and
saves the result as the snapshot `fraud_train`.
""",
    ),
    code(
        "training-data",
        """
spine = store.load("raw_tx")[["tx_id", "cc_num", "ts", "is_fraud"]]
train = store.training_data(
    spine,
    [*(f"card_features.{f}" for f in CARD_FEATURES), *(f"tx_features.{f}" for f in TX_FEATURES)],
    event_time="ts",
    label="is_fraud",
    save_as="fraud_train",
)
train.head()
""",
        tags=["training"],
    ),
    md(
        "track-md",
        """
`%%track` runs the cell in an MLflow run in the store's tracking database (no tag: the
magic makes it a training cell). The cell loads `fraud_train` itself so that the run
records it as its input, splits it in time (every test row is later than every
training row), and `--register-model` registers the logged model as a new version.
""",
    ),
    code(
        "train-model",
        """
%%track --experiment fraud_fti --run-name logreg --register-model fraud_model
train = store.load("fraud_train")  # recorded as this run's input
train_set, test_set = nbops.split_by_time(train, "ts", test_size=test_size)
model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1_000))
model.fit(train_set[MODEL_FEATURES], train_set["is_fraud"])
scores = model.predict_proba(test_set[MODEL_FEATURES])[:, 1]
mlflow.log_params({"model": "logistic_regression", "features": ",".join(MODEL_FEATURES), "test_size": test_size})
nbops.log(
    accuracy=accuracy_score(test_set["is_fraud"], scores >= 0.5),
    roc_auc=roc_auc_score(test_set["is_fraud"], scores),
)
mlflow.sklearn.log_model(model, name="model")
""",
    ),
    md(
        "alias-md",
        """
Promote the newest version to `@champion`, the alias the inference stage loads. The
first-line comment puts this untagged cell in the training stage.
""",
    ),
    code(
        "promote",
        """
# nbops: training
client = mlflow.MlflowClient()
latest = max(int(v.version) for v in client.search_model_versions(f"name = '{model_name}'"))
client.set_registered_model_alias(model_name, "champion", latest)
print(f"{model_name} version {latest} is now @champion")
""",
    ),
    code(
        "runs",
        """
# Exploration only: compare the runs of this experiment.
store.runs("fraud_fti")[["run_name", "status", "metrics.accuracy", "metrics.roc_auc", "inputs"]]
""",
        tags=["skip"],
    ),
    md(
        "inference-md",
        """
## Inference stage

A later week of transactions arrives (the same generator, another seed). The model
comes from the registry, card features from the online store (each card's latest
state) and, for comparison, as a point-in-time batch read; transaction features are
computed on demand with the helper the feature stage used.
""",
    ),
    code(
        "new-batch",
        """
model = mlflow.sklearn.load_model(f"models:/{model_name}@champion")
batch_start = pd.Timestamp(start_date) + pd.Timedelta(days=n_days)
new_tx = make_transactions(
    n_new_transactions, seed=new_batch_seed, start=batch_start, n_cards=n_cards, n_days=new_batch_days
)
requests = new_tx.drop(columns="is_fraud")  # what a scoring request carries
requests.head()
""",
        tags=["inference"],
    ),
    code(
        "online-features",
        """
online = store.online_features(
    [f"card_features.{f}" for f in CARD_FEATURES], keys={"cc_num": requests["cc_num"].tolist()}
)
X_online = pd.concat([online, transaction_features(requests).drop(columns=["tx_id", "ts"])], axis=1)
X_online = X_online.fillna(NEW_CARD)  # cards the store has never seen
X_online.head()
""",
        tags=["inference"],
    ),
    code(
        "batch-features",
        """
batch = store.training_data(
    requests[["tx_id", "cc_num", "ts"]], [f"card_features.{f}" for f in CARD_FEATURES], event_time="ts"
)
X_batch = batch.merge(transaction_features(requests), on=["tx_id", "ts"], how="left", validate="1:1")
X_batch = X_batch.fillna(NEW_CARD)
# Every new transaction is later than every stored feature row: batch and online agree.
assert np.allclose(
    X_batch[MODEL_FEATURES].to_numpy(dtype=float), X_online[MODEL_FEATURES].to_numpy(dtype=float), equal_nan=True
)
""",
        tags=["inference"],
    ),
    code(
        "predict",
        """
predictions = requests[["tx_id", "cc_num", "ts", "amount"]].assign(
    fraud_score=model.predict_proba(X_batch[MODEL_FEATURES])[:, 1].round(6)
)
predictions["flagged"] = predictions["fraud_score"] >= 0.5
predictions.sort_values("fraud_score", ascending=False).head()
""",
        tags=["inference"],
    ),
    code(
        "snapshot-predictions",
        """
%snapshot predictions -m "batch scores"
""",
        tags=["inference"],
    ),
    code(
        "check-batch",
        """
# Exploration only: the synthetic batch has labels, so we can see how the scores did.
roc_auc_score(new_tx["is_fraud"], predictions["fraud_score"])
""",
        tags=["skip"],
    ),
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
