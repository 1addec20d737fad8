"""The stage sections of the built notebook: feature batches, training experiments, inference batches."""

from __future__ import annotations

from _export.builder import Fillers, NotebookBuilder


def add_feature_stage(b: NotebookBuilder, n: dict[str, int], fill: Fillers) -> int:
    """The feature stage in batches of 5 cells; how many batches (each registers its own groups)."""
    rng = b.rng

    # -- feature stage: batches of 5 cells
    b.md(
        "## Feature stage\n\nRaw transactions in batches, cleaned and snapshotted; card and transaction "
        "features registered as groups."
    )
    nf = n["feature"]
    n_feature_batches = (nf + 4) // 5
    batch_rows = f"n_transactions // {n_feature_batches}"
    for k in range(nf):
        bt, kind = divmod(k, 5)
        if kind == 0:
            b.md(f"### Batch {bt}")
            b.code(
                "feature",
                f"""
raw_{bt} = make_transactions(
    {batch_rows}, seed=seed + {bt}, start=start_date, n_cards=n_cards, n_days=n_days, fraud_share=fraud_share
)
display(raw_{bt}.head())
raw_{bt}["is_fraud"].mean()
""",
                tags=["feature"],
                way="tag",
                display=f"raw_{bt}",
            )
        elif kind == 1:
            b.code(
                "feature",
                f"""
raw_{bt} = clean_transactions(raw_{bt})
%snapshot raw_{bt} -n raw_tx_{bt} -m "cleaned batch {bt}"
""",
                tags=["feature"],
                way="tag",
                stream=f"raw_tx_{bt}@1: {rng.randint(20_000, 30_000):,} rows\n",
            )
            if bt % 2 == 0:
                fill.skip_cell(str(bt))
        elif kind == 2:
            online = " --online" if bt % 2 == 0 else ""
            b.code(
                "feature",
                f"""
%%features card_features_{bt} --keys cc_num --event-time ts{online} -d "card activity as of each transaction, batch {bt}"
# Read back from the store: the commit's lineage names raw_tx_{bt}@N.
card_features(store.load("raw_tx_{bt}"))
""",
                way="%%features",
                stream=f"card_features_{bt}@1\n",
            )
        elif kind == 3:
            timed = "%%time\n" if bt % 3 == 0 else ""
            marker = "" if timed else "# nbops: feature\n"
            b.code(
                "feature",
                f"""
{timed}{marker}tx_group_{bt} = store.register_features(
    transaction_features(store.load("raw_tx_{bt}")),
    "tx_features_{bt}",
    keys=["tx_id"],
    event_time="ts",
    description="amount, time of day and channel of each transaction",
    expectations=[
        nbops.expect.not_null("amount_log", "hour"),
        nbops.expect.in_range("hour", min=0, max=23),
        nbops.expect.allowed_values("is_night", [0, 1]),
    ],
)
tx_group_{bt}.ref
""",
                tags=["feature"] if timed else None,
                way="%%time+tag" if timed else "comment",
                display=f"tx_features_{bt}",
            )
        else:
            b.code(
                "feature",
                f"""
daily_{bt} = daily_aggregates(store.load("raw_tx_{bt}"))
# The SQL twin, kept for the warehouse version of this pipeline:
query_{bt} = DAILY_SQL.format(start=repr(start_date), end="now()")
%snapshot daily_{bt} -m "daily aggregates, batch {bt}"
""",
                tags=["feature"],
                way="tag",
            )
            if fill.misc_done < n["misc"]:
                fill.misc_cell(fill.misc_done)
                fill.misc_done += 1
    return n_feature_batches


def add_training_stage(b: NotebookBuilder, n: dict[str, int], n_groups: int, fill: Fillers) -> None:
    """The training stage: experiments of 5 cells, each on the groups of one feature batch."""
    # -- training stage: experiments of 5 cells
    b.md("## Training stage\n\nPoint-in-time training sets, models tracked in MLflow, the best one promoted.")
    nt = n["training"]
    n_exp = (nt + 4) // 5
    for k in range(nt):
        e, kind = divmod(k, 5)
        g = e % n_groups
        if k == nt - 1 and nt >= 5:
            b.code(
                "training",
                """
# nbops: training
client = mlflow.MlflowClient()
latest = max(int(v.version) for v in client.search_model_versions(f"name = '{model_name}'"))
client.set_registered_model_alias(model_name, "champion", latest)
print(f"{model_name} version {latest} is now @champion")
""",
                way="comment",
                stream="fti_long_model version 1 is now @champion\n",
            )
        elif kind == 0:
            b.md(f"### Experiment {e}")
            b.code(
                "training",
                f"""
spine_{e} = store.load("raw_tx_{g}")[["tx_id", "cc_num", "ts", "is_fraud"]]
train_{e} = store.training_data(
    spine_{e},
    [*(f"card_features_{g}.{{f}}" for f in CARD_FEATURES), *(f"tx_features_{g}.{{f}}" for f in TX_FEATURES)],
    event_time="ts",
    label="is_fraud",
    save_as="train_{e}",
)
train_{e}.head()
""",
                tags=["training"],
                way="tag",
                display=f"train_{e}",
            )
        elif kind == 1:
            timed = "%%time\n" if e % 2 == 0 else ""
            b.code(
                "training",
                f"""
{timed}train_{e} = add_interactions(store.load("train_{e}"))
train_set_{e}, test_set_{e} = nbops.split_by_time(train_{e}, "ts", test_size=test_size)
len(train_set_{e}), len(test_set_{e})
""",
                tags=["training"],
                way="%%time+tag" if timed else "tag",
                display="sizes",
            )
            if e % 2 == 1:
                fill.skip_cell(str(g))
        elif kind == 2:
            algo = "hgb" if e % 2 else "logreg"
            register = " --register-model fti_long_model" if e == n_exp - 1 else ""
            model = (
                "HistGradientBoostingClassifier(learning_rate=learning_rate, max_iter=max_iter)"
                if e % 2
                else 'make_pipeline(StandardScaler(), LogisticRegression(**MODEL_PARAMS["logreg"]))'
            )
            b.code(
                "training",
                f'''
%%track --experiment fti_long --run-name {algo}_{e}{register}
model_{e} = {model}
model_{e}.fit(train_set_{e}[MODEL_FEATURES], train_set_{e}["is_fraud"])
scores_{e} = model_{e}.predict_proba(test_set_{e}[MODEL_FEATURES])[:, 1]
report_{e}, extra_{e} = evaluation_report("{algo}", "{algo}_{e}", test_set_{e}["is_fraud"], scores_{e})
mlflow.log_params({{"model": "{algo}", "features": ",".join(MODEL_FEATURES), "test_size": test_size}})
mlflow.set_tag("notes", f"""Experiment {e} on feature batch {g}.
Features: {{len(MODEL_FEATURES)}}; rows: {{len(train_set_{e})}}.
""")
nbops.log(
    roc_auc=roc_auc_score(test_set_{e}["is_fraud"], scores_{e}),
    pr_auc=average_precision_score(test_set_{e}["is_fraud"], scores_{e}),
    **extra_{e},
)
mlflow.sklearn.log_model(model_{e}, name="model")
print(report_{e})
''',
                way="%%track",
                stream=f"run {algo}_{e} FINISHED\n",
            )
        elif kind == 3:
            b.code(
                "training",
                f"""
# nbops: training
# Sanity check of the tracked model on the held-out rows.
accuracy_{e} = accuracy_score(test_set_{e}["is_fraud"], scores_{e} >= 0.5)
assert 0.0 <= accuracy_{e} <= 1.0, accuracy_{e}
print(f"experiment {e}: accuracy {{accuracy_{e}:.4f}}")
""",
                way="comment",
                stream="experiment: accuracy 0.97\n",
            )
        else:
            b.code(
                "training",
                f"""
with nbops.track(experiment="fti_long", run_name="calibration_{e}"):
    for t in THRESHOLDS:
        flagged = scores_{e} >= t
        nbops.log(step=int(t * 100), flagged_share=float(flagged.mean()))
    nbops.log(threshold=0.5)
""",
                tags=["training"],
                way="tag+nbops.track",
            )


def add_inference_stage(b: NotebookBuilder, n: dict[str, int], n_groups: int, fill: Fillers) -> None:
    """The inference stage: scoring batches of 5 cells."""
    # -- inference stage: batches of 5 cells
    b.md(
        "## Inference stage\n\nLater batches of transactions scored with the champion model, features from "
        "the online store and as point-in-time batch reads."
    )
    ni = n["inference"]
    for k in range(ni):
        j, kind = divmod(k, 5)
        g = j % n_groups
        if kind == 0:
            b.md(f"### Scoring batch {j}")
            b.code(
                "inference",
                f"""
model = mlflow.sklearn.load_model(f"models:/{{model_name}}@champion")
batch_start_{j} = pd.Timestamp(start_date) + pd.Timedelta(days=n_days + {j} * new_batch_days)
new_tx_{j} = make_transactions(
    n_new_transactions, seed=1_000 + {j}, start=batch_start_{j}, n_cards=n_cards, n_days=new_batch_days
)
requests_{j} = new_tx_{j}.drop(columns="is_fraud")  # what a scoring request carries
requests_{j}.head()
""",
                tags=["inference"],
                way="tag",
                display=f"requests_{j}",
            )
        elif kind == 1:
            b.code(
                "inference",
                f"""
online_{j} = store.online_features(
    [f"card_features_{g}.{{f}}" for f in CARD_FEATURES], keys={{"cc_num": requests_{j}["cc_num"].tolist()}}
)
X_online_{j} = pd.concat([online_{j}, transaction_features(requests_{j}).drop(columns=["tx_id", "ts"])], axis=1)
X_online_{j} = X_online_{j}.fillna(NEW_CARD)  # cards the store has never seen
""",
                tags=["inference"],
                way="tag",
            )
        elif kind == 2:
            b.code(
                "inference",
                f"""
# nbops: inference
batch_{j} = store.training_data(
    requests_{j}[["tx_id", "cc_num", "ts"]], [f"card_features_{g}.{{f}}" for f in CARD_FEATURES], event_time="ts"
)
X_batch_{j} = batch_{j}.merge(transaction_features(requests_{j}), on=["tx_id", "ts"], how="left", validate="1:1")
X_batch_{j} = X_batch_{j}.fillna(NEW_CARD)
""",
                way="comment",
            )
        elif kind == 3:
            timed = "%%time\n" if j % 2 == 0 else ""
            b.code(
                "inference",
                f"""
{timed}predictions_{j} = requests_{j}[["tx_id", "cc_num", "ts", "amount"]].assign(
    fraud_score=score_batch(model, X_batch_{j})
)
predictions_{j}["flagged"] = predictions_{j}["fraud_score"] >= 0.5
predictions_{j}.sort_values("fraud_score", ascending=False).head()
""",
                tags=["inference"],
                way="%%time+tag" if timed else "tag",
                display=f"predictions_{j}",
            )
            fill.skip_cell(str(g))
        else:
            b.code(
                "inference",
                f"""
%snapshot predictions_{j} -m "scores of batch {j}"
""",
                tags=["inference"],
                way="tag",
                stream=f"predictions_{j}@1\n",
            )
