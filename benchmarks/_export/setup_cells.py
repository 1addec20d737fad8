"""The setup section of the built notebook: parameters, installs, display magics, imports, constants, helpers."""

from __future__ import annotations

from _export.builder import NotebookBuilder


def add_setup(b: NotebookBuilder, n: dict[str, int]) -> None:
    """The title, the parameters cell and the setup cells before the helpers."""
    b.md(
        "# Card fraud, the long version\n\nFeature, training and inference stages in one notebook, "
        "with the exploration left in. `nbops export` splits it into pipeline modules."
    )
    b.code(
        "parameters",
        """
# Pipeline parameters: export turns these into command-line options.
n_transactions = 200_000
n_cards = 5_000
n_days = 90
start_date = "2026-01-01"
seed = 42
fraud_share = 0.03
test_size = 0.2
model_name = "fti_long_model"
n_new_transactions = 20_000
new_batch_days = 7
learning_rate = 0.05
max_iter = 300
""",
        tags=["parameters"],
    )
    b.md("## Setup\n\nPackages, display settings, imports, the store, constants and helpers.")
    pip_lines = ["!pip install scikit-learn", "%pip install lightgbm==4.3.0"]
    for i in range(n["pip"]):
        b.code("pip", pip_lines[i % 2], stream="Requirement already satisfied\n")
    display_setup = [
        "%matplotlib inline",
        '%config InlineBackend.figure_format = "retina"',
        "%load_ext autoreload\n%autoreload 2",
    ]
    for i in range(n["display_setup"]):
        b.code("display_setup", display_setup[i % 3])
    imports = [
        "import numpy as np\nimport pandas as pd",
        "import datetime as dt\nimport json\nimport math\nfrom pathlib import Path",
        "import mlflow\nimport mlflow.sklearn",
        "from sklearn.linear_model import LogisticRegression",
        "from sklearn.ensemble import HistGradientBoostingClassifier",
        "from sklearn.metrics import accuracy_score, average_precision_score, roc_auc_score",
        "from sklearn.pipeline import make_pipeline\nfrom sklearn.preprocessing import StandardScaler",
        "import matplotlib.pyplot as plt",
        'import warnings\n\nwarnings.filterwarnings("ignore", category=FutureWarning)  # pandas 3 noise',
        "import nbops",
    ]
    for i in range(n["imports"]):
        b.code("imports", imports[i % len(imports)])
    b.code("store", "store = nbops.open()  # NBOPS_HOME, else the nearest .nbops/ upward, else a new .nbops/ here")
    constants = [
        (
            'CATEGORIES = ["grocery", "fuel", "restaurant", "online", "travel", "pharmacy", "electronics"]\n'
            'CARD_NOT_PRESENT = ["online", "travel"]\nNIGHT_END_HOUR = 6  # 00:00-05:59 UTC counts as night'
        ),
        (
            'WINDOWS = ["1h", "6h", "24h", "7D", "30D"]\n'
            'CARD_FEATURES = [f"n_tx_{w}" for w in WINDOWS] + [f"amount_sum_{w}" for w in WINDOWS]\n'
            'TX_FEATURES = ["amount_log", "hour", "is_night", "is_card_not_present", "merchant_risk"]\n'
            "MODEL_FEATURES = [*CARD_FEATURES, *TX_FEATURES]"
        ),
        (
            'NEW_CARD = {f"n_tx_{w}": 0 for w in WINDOWS} | {f"amount_sum_{w}": 0.0 for w in WINDOWS}\n'
            'NEW_CARD["minutes_since_prev"] = 30 * 24 * 60.0  # a card without history'
        ),
        (
            'DAILY_SQL = """\nSELECT cc_num, date_trunc(\'day\', ts) AS day,\n       count(*) AS n_tx,\n'
            "       sum(amount) AS amount_sum\nFROM raw_tx\nWHERE ts >= {start} AND ts < {end}\n"
            'GROUP BY 1, 2\n"""'
        ),
        (
            'MODEL_PARAMS = {\n    "logreg": {"C": 1.0, "max_iter": 1_000},\n'
            '    "hgb": {"learning_rate": 0.05, "max_iter": 300, "max_leaf_nodes": 31},\n}'
        ),
        (
            "REPORT_TEMPLATE = '''\\\nModel {name} (run {run_name})\n  roc_auc   {roc_auc:.4f}\n"
            "  pr_auc    {pr_auc:.4f}\n  threshold {threshold:.3f}\n'''"
        ),
        "THRESHOLDS = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9]\nTOP_K = 100",
        'PALETTE = {"fraud": "#d62728", "normal": "#1f77b4"}  # plots only',
    ]
    for i in range(n["constants"]):
        b.code("constants", constants[i % len(constants)])


def add_helpers(b: NotebookBuilder, n: dict[str, int]) -> list[str]:
    """The helper-function cells: 8 the stages call, the rest small utilities; the utilities' names."""
    rng = b.rng

    # -- helpers: 8 the stages call, the rest small utilities (some used by the core ones)
    n_extra = n["extra_helpers"]
    extra_names: list[str] = []
    extra_templates = [
        (
            "rolling_count_{i}",
            '''
def rolling_count_{i}(tx, window):
    """Transactions per card over ``window`` as of each transaction (variant {i})."""
    by_card = tx.set_index("ts").groupby("cc_num")["amount"]
    return by_card.rolling(window).count().to_numpy().astype("int64")
''',
        ),
        (
            "robust_zscore_{i}",
            '''
def robust_zscore_{i}(values, clip={clip}):
    """(x - median) / (1.4826 * MAD), clipped to +-clip; NaN-safe."""
    values = np.asarray(values, dtype=float)
    median = np.nanmedian(values)
    mad = np.nanmedian(np.abs(values - median)) or 1.0
    return np.clip((values - median) / (1.4826 * mad), -clip, clip)
''',
        ),
        (
            "plot_distribution_{i}",
            '''
def plot_distribution_{i}(df, column, by="is_fraud", bins={bins}):
    """Overlaid histograms of ``column`` for fraud and normal rows (exploration only)."""
    fig, ax = plt.subplots(figsize=(8, 4))
    for label, part in df.groupby(by):
        ax.hist(part[column], bins=bins, alpha=0.5, density=True,
                color=PALETTE["fraud" if label else "normal"], label=str(label))
    ax.set_title(f"{{column}} by {{by}}")
    ax.legend()
    return fig
''',
        ),
        (
            "precision_at_k_{i}",
            '''
def precision_at_k_{i}(y_true, scores, k=TOP_K):
    """Share of fraud among the ``k`` highest scores."""
    order = np.argsort(-np.asarray(scores))[:k]
    return float(np.asarray(y_true)[order].mean()) if len(order) else math.nan
''',
        ),
        (
            "best_threshold_{i}",
            '''
def best_threshold_{i}(y_true, scores, thresholds=None):
    """The threshold with the best F1 among ``thresholds`` (default THRESHOLDS)."""
    thresholds = thresholds or THRESHOLDS
    y_true = np.asarray(y_true, dtype=bool)
    best, best_f1 = thresholds[0], -1.0
    for t in thresholds:
        predicted = np.asarray(scores) >= t
        tp = (predicted & y_true).sum()
        precision = tp / max(predicted.sum(), 1)
        recall = tp / max(y_true.sum(), 1)
        f1 = 2 * precision * recall / max(precision + recall, 1e-9)
        if f1 > best_f1:
            best, best_f1 = t, f1
    return best
''',
        ),
        (
            "daily_window_{i}",
            '''
def daily_window_{i}(day, days={days}):
    """[start, end) timestamps of the ``days`` days ending with ``day`` (UTC)."""
    end = pd.Timestamp(day, tz="UTC").normalize() + pd.Timedelta(days=1)
    return end - pd.Timedelta(days=days), end
''',
        ),
    ]
    extra_cells = []
    for i in range(n_extra):
        name_t, text_t = extra_templates[i % len(extra_templates)]
        k = i // len(extra_templates)
        name = name_t.format(i=k)
        extra_names.append(name)
        extra_cells.append(
            text_t.format(
                i=k, clip=rng.choice([3.0, 4.0, 5.0]), bins=rng.choice([40, 50, 60]), days=rng.choice([7, 14, 28])
            )
        )
    roll = next((x for x in extra_names if x.startswith("rolling_count_")), None)
    zscore = next((x for x in extra_names if x.startswith("robust_zscore_")), None)
    patk = next((x for x in extra_names if x.startswith("precision_at_k_")), None)
    thresh = next((x for x in extra_names if x.startswith("best_threshold_")), None)
    count_expr = (
        f"{roll}(tx, w)" if roll else 'tx.set_index("ts").groupby("cc_num")["amount"].rolling(w).count().to_numpy()'
    )
    core = [
        '''
def make_transactions(n, seed, start, n_cards=1_000, n_days=60, fraud_share=0.03):
    """Deterministic synthetic card transactions starting at `start` (UTC).

    Normal spending is mostly in the daytime, each card with its own typical amount.
    Fraud comes in bursts of 2-8 transactions on one card within three hours.
    """
    rng = np.random.default_rng(seed)
    start = pd.Timestamp(start, tz="UTC")
    n_fraud = int(round(n * fraud_share))
    cards = rng.integers(1, n_cards + 1, n)
    offsets = rng.integers(0, n_days * 86_400, n)
    tx = pd.DataFrame({
        "tx_id": seed * 10_000_000 + np.arange(n),
        "cc_num": cards.astype("int64"),
        "ts": start + pd.to_timedelta(np.sort(offsets), unit="s"),
        "amount": rng.gamma(1.2, 40.0, n).round(2),
        "category": rng.choice(CATEGORIES, n),
        "is_fraud": False,
    })
    tx.loc[rng.choice(n, n_fraud, replace=False), "is_fraud"] = True
    return tx.drop_duplicates(["cc_num", "ts"]).reset_index(drop=True)
''',
        '''
def clean_transactions(tx):
    """Drop refunds and impossible amounts; normalise categories."""
    tx = tx[(tx["amount"] > 0) & (tx["amount"] < 50_000)].copy()
    tx["category"] = tx["category"].str.lower().str.strip()
    return tx.reset_index(drop=True)
''',
        f'''
def card_features(tx):
    """Each card's activity as of each of its transactions (that transaction included)."""
    tx = tx.sort_values(["cc_num", "ts"], kind="stable")
    by_card = tx.set_index("ts").groupby("cc_num")["amount"]
    out = {{"cc_num": tx["cc_num"].to_numpy(), "ts": tx["ts"].to_numpy()}}
    for w in WINDOWS:
        out[f"n_tx_{{w}}"] = {count_expr}
        out[f"amount_sum_{{w}}"] = by_card.rolling(w).sum().round(2).to_numpy()
    gap = tx.groupby("cc_num")["ts"].diff().dt.total_seconds() / 60
    out["minutes_since_prev"] = gap.fillna(NEW_CARD["minutes_since_prev"]).round(1).to_numpy()
    return pd.DataFrame(out)
''',
        f'''
def transaction_features(tx):
    """Features of the transaction itself: computed in the feature stage and on demand at inference."""
    hour = tx["ts"].dt.hour
    return pd.DataFrame({{
        "tx_id": tx["tx_id"].to_numpy(),
        "ts": tx["ts"].to_numpy(),
        "amount_log": np.log1p(tx["amount"]).round(6).to_numpy(),
        "amount_z": {f"{zscore}(tx['amount'])" if zscore else "0.0"},
        "hour": hour.astype("int64").to_numpy(),
        "is_night": (hour < NIGHT_END_HOUR).astype("int64").to_numpy(),
        "is_card_not_present": tx["category"].isin(CARD_NOT_PRESENT).astype("int64").to_numpy(),
        "merchant_risk": tx["category"].map(MERCHANT_RISK).fillna(0.0).to_numpy(),
    }})
''',
        '''
def daily_aggregates(tx):
    """Per card and day: count and sum (the pandas twin of DAILY_SQL)."""
    day = tx["ts"].dt.floor("D")
    return (
        tx.assign(day=day)
        .groupby(["cc_num", "day"], as_index=False)
        .agg(n_tx=("tx_id", "size"), amount_sum=("amount", "sum"))
    )
''',
        '''
def add_interactions(train):
    """A few products of features that the linear model cannot form itself."""
    train = train.copy()
    train["night_x_cnp"] = train["is_night"] * train["is_card_not_present"]
    train["amount_x_n1h"] = train["amount_log"] * train["n_tx_1h"]
    return train
''',
        f'''
def evaluation_report(name, run_name, y_true, scores):
    """The report logged with each model: ROC and PR AUC and the best threshold."""
    text = REPORT_TEMPLATE.format(
        name=name,
        run_name=run_name,
        roc_auc=roc_auc_score(y_true, scores),
        pr_auc=average_precision_score(y_true, scores),
        threshold={f"{thresh}(y_true, scores)" if thresh else "0.5"},
    )
    extra = {{"precision_at_k": {f"{patk}(y_true, scores)" if patk else "0.0"}}}
    return text, extra
''',
        '''
def score_batch(model, features):
    """Fraud scores of a batch, rounded so that re-runs give identical snapshots."""
    return model.predict_proba(features[MODEL_FEATURES])[:, 1].round(6)
''',
    ]
    helper_cells = core + extra_cells
    for i, text in enumerate(helper_cells):
        b.code("core_helpers" if i < len(core) else "extra_helpers", text)
        if i % 6 == 5:
            b.md(f"More helpers ({i + 1} so far): windows, scores, plots.")
    return extra_names
