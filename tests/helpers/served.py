"""A store holding a served model's whole history: online features, training data, a registered model.

``fraud_store(root)`` does what a notebook does: registers card features
online, builds point-in-time training data (saved), fits a logistic regression
on two features and one request-time value (``amount``) in a tracked run that
registers ``fraud`` and gives version 1 the alias ``champion``. Every piece is
real: the feature store, the MLflow registry in the store, scikit-learn.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

import nbops
from nbops.store import Store

INPUTS = ["n_tx", "amount_mean", "amount"]


@dataclass
class Fraud:
    store: Store
    features: pd.DataFrame  # the rows registered online
    train: pd.DataFrame  # the training data (saved as fraud_train)
    model: object  # the fitted estimator


def transactions(n: int = 2_000, seed: int = 7, cards: int = 50) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    tx = pd.DataFrame(
        {
            "cc_num": rng.integers(1, cards + 1, n),
            "ts": pd.Timestamp("2026-03-01", tz="UTC") + pd.to_timedelta(rng.integers(0, 30 * 86_400, n), unit="s"),
            "amount": rng.gamma(2.0, 40.0, n).round(2),
        }
    )
    tx["is_fraud"] = (tx["amount"] > 150) & (rng.random(n) < 0.6) | (rng.random(n) < 0.03)
    return tx.sort_values("ts").drop_duplicates(["cc_num", "ts"]).reset_index(drop=True)


def card_features(tx: pd.DataFrame) -> pd.DataFrame:
    feats = tx[["cc_num", "ts", "amount"]].copy()
    by_card = feats.groupby("cc_num")["amount"]
    feats["n_tx"] = by_card.cumcount() + 1
    feats["amount_mean"] = by_card.cumsum() / feats["n_tx"]
    return feats.drop(columns="amount")


def fraud_store(root: Path, online: str | None = None, register_version_two: bool = False) -> Fraud:
    """The store at ``root`` with the model ``fraud`` (alias ``champion``) trained on online features."""
    import mlflow
    from sklearn.linear_model import LogisticRegression

    store = nbops.open(root, online=online)
    tx = transactions()
    feats = card_features(tx)
    store.register_features(feats, "card", keys="cc_num", event_time="ts", online=True)
    train = store.training_data(
        tx, ["card.n_tx", "card.amount_mean"], event_time="ts", label="is_fraud", save_as="fraud_train"
    )
    with nbops.track(experiment="fraud", run_name="logreg", store=store, register_model="fraud"):
        rows = store.load("fraud_train")
        model = LogisticRegression(max_iter=1000).fit(rows[INPUTS], rows["is_fraud"])
        mlflow.sklearn.log_model(model, name="model", input_example=rows[INPUTS].head(3))
    mlflow.MlflowClient().set_registered_model_alias("fraud", "champion", "1")
    return Fraud(store, feats, train, model)
