"""Export benchmark: ``nbops.exporting.export`` of a long (200-code-cell) FTI notebook.

Run (from the repository root)::

    PYTHONPATH=src python benchmarks/export.py                        # 200 code cells, best of 5 (~1 min)
    PYTHONPATH=src python benchmarks/export.py --repeats 2 --import-runs 1 --scale-cells ""   # smoke test
    PYTHONPATH=src python benchmarks/export.py --json results.json

The notebook is built here with ``nbformat.v4``, deterministically (fixed cell
ids, fixed execution counts, outputs generated from ``--seed``), and reads like
a long feature / training / inference notebook: a parameters cell, ``!pip`` /
``%pip install``, ``%matplotlib inline`` and other display magics, 10 import
cells, constants with multi-line strings, 30 helper-function cells, 40 feature
cells (tag ``feature``, ``# nbops: feature``, ``%%features`` magics,
``%snapshot`` lines, ``%%time``), 40 training cells (tags, ``%%track`` cells,
``nbops.track`` blocks, ``nbops.log``), 30 inference cells, 20 exploratory
cells tagged ``skip`` (``df.head()``, plots), untagged display / ``%%time``
support cells, and markdown cells between sections (markdown cells are not
counted in the 200).  With ``--notebook PATH`` an existing notebook is
measured instead.

Figures (time.perf_counter, ``time.process_time`` beside it):

1. ``export(nb, out=fresh_dir, store=fresh_store)`` after every import has
   been done (a warm-up export of a tiny notebook first); each round gets a
   new output folder and a new store (``nbops.open(tmp/...)``, opened
   untimed) for the catalog record.  Best of ``--repeats`` (5).  Target <= 1 s.
2. The same export again into the same folder and store, unchanged.  Best of
   ``--repeats``.  Checked every round: same version, ``result.unchanged``,
   ``result.written == []``, every file's (inode, size, mtime_ns) unchanged,
   one catalog row.  Whether the catalog database file changed is printed
   (info: an unchanged export still runs an UPDATE in a write transaction).
3. Imports, each in a fresh ``python`` subprocess (best of ``--import-runs``):
   ``import nbops.exporting``; then the modules a first ``export()`` imports
   (found by a discovery subprocess that opens a store and exports, and listed
   in first-import order), with ``-X importtime``'s top-level packages in one
   more subprocess; and, as info, the first export in a fresh process
   (imports included) and opening a fresh store.
4. Info: ``plan()`` alone, and export times at other notebook sizes
   (``--scale-cells``, best of 3) to show how the time grows with the cells.

Then a breakdown of one export with timers wrapped around the stages (no
profiler running), and a cProfile of one more export (top functions by own
time and by cumulative time).

This is a benchmark, not a test: it exits 0 whether targets pass or miss
(``--strict`` exits 1 on a miss).
"""

from __future__ import annotations

import os

_CALLER_ENV = {k: os.environ.pop(k, None) for k in ("MLFLOW_TRACKING_URI", "NBOPS_MLFLOW_TRACKING_URI", "NBOPS_HOME")}

import argparse
import contextlib
import cProfile
import functools
import hashlib
import io
import json
import platform
import pstats
import random
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
STEM = "fti_long"
TARGET_SECONDS = 1.0

# ======================================================================================
# The notebook
# ======================================================================================
#: Code cells of the 200-cell notebook by kind.  The fixed block (parameters, pip,
#: display setup, imports, store, constants, core helpers) stays the same at any size;
#: the others scale with --cells.
FIXED = {"parameters": 1, "pip": 2, "display_setup": 3, "imports": 10, "store": 1, "constants": 8, "core_helpers": 8}
SCALED = {"extra_helpers": 22, "feature": 40, "training": 40, "inference": 30, "skip": 20, "misc": 15}


def cell_counts(total: int) -> dict[str, int]:
    fixed = sum(FIXED.values())
    if total < fixed + len(SCALED):
        raise SystemExit(f"--cells must be at least {fixed + len(SCALED)}")
    scale = (total - fixed) / sum(SCALED.values())
    counts = {k: max(1, round(v * scale)) for k, v in SCALED.items()}
    counts["extra_helpers"] += total - fixed - sum(counts.values())  # helpers absorb the rounding
    return {**FIXED, **counts}


class NotebookBuilder:
    """Cells in order; code cells get sequential execution counts and (optionally) outputs."""

    def __init__(self, seed: int, outputs: bool) -> None:
        from nbformat.v4 import new_code_cell, new_markdown_cell

        self._code, self._md = new_code_cell, new_markdown_cell
        self.rng = random.Random(seed)
        self.outputs = outputs
        self.cells: list[Any] = []
        self.kinds: Counter[str] = Counter()
        self.ways: Counter[str] = Counter()  # how stage cells get their stage
        self.count = 0

    def md(self, text: str) -> None:
        self.cells.append(self._md(text.strip("\n"), id=f"md-{len(self.cells):03d}"))

    def code(
        self,
        kind: str,
        text: str,
        tags: list[str] | None = None,
        way: str | None = None,
        display: str | None = None,
        stream: str | None = None,
    ) -> None:
        self.count += 1
        metadata: dict[str, Any] = {"tags": tags} if tags else {}
        cell = self._code(text.strip("\n"), id=f"{kind.replace('_', '-')}-{self.kinds[kind]:02d}", metadata=metadata)
        cell.execution_count = self.count
        if self.outputs:
            from nbformat.v4 import new_output

            if stream:
                cell.outputs.append(new_output("stream", name="stdout", text=stream))
            if display:
                cell.outputs.append(new_output("execute_result", data=self._table(display), execution_count=self.count))
        self.cells.append(cell)
        self.kinds[kind] += 1
        if way:
            self.ways[way] += 1

    def _table(self, title: str) -> dict[str, str]:
        """A df.head()-like result: text/plain and text/html of 5 rows x 6 columns."""
        cols = ["tx_id", "cc_num", "ts", "amount", "category", "is_fraud"]
        rows = [
            [
                str(1000 + i),
                str(self.rng.randint(1, 1000)),
                f"2026-01-{1 + i:02d} {self.rng.randint(0, 23):02d}:{self.rng.randint(0, 59):02d}:00+00:00",
                f"{self.rng.uniform(1, 500):.2f}",
                self.rng.choice(["grocery", "fuel", "online", "travel"]),
                str(self.rng.random() < 0.03),
            ]
            for i in range(5)
        ]
        plain = "\n".join(["   " + "  ".join(cols)] + [f"{i}  " + "  ".join(r) for i, r in enumerate(rows)])
        html = (
            f'<div><!-- {title} --><table border="1" class="dataframe"><thead><tr><th></th>'
            + "".join(f"<th>{c}</th>" for c in cols)
            + "</tr></thead><tbody>"
            + "".join(f"<tr><th>{i}</th>" + "".join(f"<td>{v}</td>" for v in r) + "</tr>" for i, r in enumerate(rows))
            + "</tbody></table></div>"
        )
        return {"text/plain": plain, "text/html": html}


def build_notebook(total: int, seed: int, outputs: bool) -> tuple[Any, dict[str, Any]]:
    """The notebook and a description of it (counts of each kind of cell)."""
    import nbformat
    from nbformat.v4 import new_notebook

    n = cell_counts(total)
    b = NotebookBuilder(seed, outputs)
    rng = b.rng

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

    # -- misc untagged support cells: displays, %%time lookup tables, prints
    misc = [
        "%%time\nMERCHANT_RISK = {c: round(0.01 + 0.02 * i, 3) for i, c in enumerate(CATEGORIES)}",
        'print(f"store at {store.root}")',
        '%%time\nHOLIDAYS = pd.to_datetime(["2026-01-01", "2026-04-03", "2026-12-25"], utc=True)',
        "np.__version__, pd.__version__",
        'CURRENCY_RATES = json.loads(\'{"EUR": 1.0, "USD": 0.92, "GBP": 1.17}\')',
    ]

    def misc_cell(i: int) -> None:
        b.code("misc", misc[i % len(misc)], display="versions" if i % len(misc) == 3 else None)

    misc_left = n["misc"]
    for i in range(min(2, misc_left)):
        misc_cell(i)
    misc_done = min(2, misc_left)

    # -- feature stage: batches of 5 cells
    b.md(
        "## Feature stage\n\nRaw transactions in batches, cleaned and snapshotted; card and transaction "
        "features registered as groups."
    )
    skip_left = n["skip"]
    skip_texts = [
        "raw_{b}.head()",
        "raw_{b}.describe()",
        'raw_{b}["amount"].hist(bins=50)',
        'plot_distribution_0(raw_{b}, "amount")' if "plot_distribution_0" in extra_names else "raw_{b}.info()",
        'display(raw_{b}.groupby("category")["is_fraud"].mean().sort_values())',
        (
            'raw_{b}.assign(night=raw_{b}["ts"].dt.hour < NIGHT_END_HOUR).pivot_table(\n'
            '    index="night", columns="category", values="is_fraud", aggfunc="mean"\n).round(3)'
        ),
    ]
    skip_i = 0

    def skip_cell(var: str) -> None:
        nonlocal skip_left, skip_i
        if skip_left <= 0:
            return
        text = "# Exploration only.\n" + skip_texts[skip_i % len(skip_texts)].format(b=var)
        b.code("skip", text, tags=["skip"], display="exploration")
        skip_left -= 1
        skip_i += 1

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
                skip_cell(str(bt))
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
            if misc_done < n["misc"]:
                misc_cell(misc_done)
                misc_done += 1

    # -- training stage: experiments of 5 cells
    b.md("## Training stage\n\nPoint-in-time training sets, models tracked in MLflow, the best one promoted.")
    nt = n["training"]
    n_groups = n_feature_batches
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
                skip_cell(str(g))
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
            skip_cell(str(g))
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
    while skip_left > 0:
        skip_cell("0")
    b.md("## Notes\n\nLeftovers from the exploration.")
    while misc_done < n["misc"]:
        misc_cell(misc_done)
        misc_done += 1

    nb = new_notebook(cells=b.cells)
    nb.metadata = {
        "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
        "language_info": {"name": "python", "version": "3.11"},
    }
    nbformat.validate(nb)
    code_cells = [c for c in nb.cells if c.cell_type == "code"]
    info = {
        "code_cells": len(code_cells),
        "markdown_cells": sum(c.cell_type == "markdown" for c in nb.cells),
        "kinds": dict(b.kinds),
        "stage_ways": dict(b.ways),
        "source_lines": sum(len(c.source.splitlines()) for c in code_cells),
        "magic_lines": sum(line.lstrip().startswith(("%", "!")) for c in code_cells for line in c.source.splitlines()),
    }
    return nb, info


def write_notebook(path: Path, nb: Any) -> None:
    import nbformat

    path.write_text(nbformat.writes(nb) + "\n", encoding="utf-8")


TINY_NOTEBOOK = {
    "cells": [
        {
            "cell_type": "code",
            "id": "p",
            "metadata": {"tags": ["parameters"]},
            "execution_count": None,
            "outputs": [],
            "source": "n = 10",
        },
        {
            "cell_type": "code",
            "id": "i",
            "metadata": {},
            "execution_count": None,
            "outputs": [],
            "source": "import pandas as pd\n%matplotlib inline\n!pip install scikit-learn",
        },
        {
            "cell_type": "code",
            "id": "f",
            "metadata": {},
            "execution_count": None,
            "outputs": [],
            "source": "%%features g --keys k --event-time ts\ndf = pd.DataFrame({'k': range(n)})\n%snapshot df\ndf",
        },
        {
            "cell_type": "code",
            "id": "t",
            "metadata": {},
            "execution_count": None,
            "outputs": [],
            "source": "%%track --run-name r\nimport nbops\nnbops.log(a=1)",
        },
        {
            "cell_type": "code",
            "id": "x",
            "metadata": {"tags": ["inference"]},
            "execution_count": None,
            "outputs": [],
            "source": "%%time\nprint(n)\ndf.head()",
        },
    ],
    "metadata": {},
    "nbformat": 4,
    "nbformat_minor": 5,
}


# ======================================================================================
# Imports, measured in fresh subprocesses (``python -c``: nothing preloaded but site)
# ======================================================================================
#: Discovery: which modules opening a store and a first export import, and how long a
#: cold process takes for each step.  argv: notebook, work folder, output JSON path.
CHILD_DISCOVER = r"""
import time
t0 = time.perf_counter()
import nbops.exporting
t1 = time.perf_counter()
import sys
before_open = list(sys.modules)
import nbops
store = nbops.open(sys.argv[2] + "/store/.nbops")
t2 = time.perf_counter()
before_export = list(sys.modules)
result = nbops.exporting.export(sys.argv[1], out=sys.argv[2] + "/out", store=store)
t3 = time.perf_counter()
after = list(sys.modules)
import json
seen_open, seen_export = set(before_open), set(before_export)
json.dump({
    "import_s": t1 - t0, "open_s": t2 - t1, "export_s": t3 - t2,
    "base_modules": len(before_open),
    "open_modules": [m for m in before_export if m not in seen_open],
    "export_modules": [m for m in after if m not in seen_export],
    "version": result.version, "written": len(result.written),
}, open(sys.argv[3], "w"))
"""

#: Timing: import nbops.exporting, then the modules found above, phase by phase, in
#: their first-import order.  argv: the discovery JSON path, output JSON path.
CHILD_IMPORTS = r"""
import sys
import time
t0 = time.perf_counter()
import nbops.exporting
t1 = time.perf_counter()
sys.stderr.write("import time: 0 | 0 | ---phase open---\n")
import importlib
import json
found = json.load(open(sys.argv[1]))
times, failed = [t1 - t0], []
for phase in ("open_modules", "export_modules"):
    t = time.perf_counter()
    for name in found[phase]:
        if name not in sys.modules:
            try:
                importlib.import_module(name)
            except Exception:
                failed.append(name)
    times.append(time.perf_counter() - t)
    sys.stderr.write("import time: 0 | 0 | ---phase export---\n" if phase == "open_modules" else "")
json.dump({"times": times, "failed": failed}, open(sys.argv[2], "w"))
"""


def _child_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in _CALLER_ENV}
    src = str(HERE.parent / "src")
    env["PYTHONPATH"] = src + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


def _run_child(code: str, args: list[str], work: Path, importtime: bool = False) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, *(["-X", "importtime"] if importtime else []), "-c", code, *args]
    proc = subprocess.run(cmd, cwd=work, env=_child_env(), capture_output=True, text=True, timeout=600, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"child failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
    return proc


def _top_level_imports(stderr: str) -> tuple[dict[str, dict[str, int]], dict[str, list[tuple[str, int]]]]:
    """From ``-X importtime``, per phase: cumulative microseconds of the depth-0 imports by
    top-level package, and the modules with the most self time."""
    phases: dict[str, dict[str, int]] = {"exporting": {}, "open": {}, "export": {}}
    own: dict[str, list[tuple[str, int]]] = {k: [] for k in phases}
    phase = "exporting"
    for line in stderr.splitlines():
        if not line.startswith("import time:") or "self [us]" in line:
            continue
        parts = line.split("|", 2)
        if len(parts) != 3:
            continue
        cumulative, name = parts[1], parts[2]
        if name.strip().startswith("---phase"):
            phase = name.strip().removeprefix("---phase ").removesuffix("---")
            continue
        own[phase].append((name.strip(), int(parts[0].removeprefix("import time:").strip())))
        depth = (len(name) - len(name.lstrip(" ")) - 1) // 2  # " name" at depth 0, "   name" at 1, ...
        if depth != 0:
            continue
        top = name.strip().split(".")[0]
        phases[phase][top] = phases[phase].get(top, 0) + int(cumulative.strip())
    return phases, {k: sorted(v, key=lambda kv: -kv[1])[:5] for k, v in own.items()}


def measure_imports(notebook: Path, work: Path, runs: int) -> dict[str, Any]:
    """Cold-process figures: import nbops.exporting, first-use imports, first export."""
    discoveries = []
    for r in range(runs):
        d = work / f"discover{r}"
        d.mkdir()
        _run_child(CHILD_DISCOVER, [str(notebook), str(d), str(d / "found.json")], work)
        discoveries.append(json.loads((d / "found.json").read_text()))
    found_path = work / "discover0" / "found.json"
    timings = []
    for r in range(runs):
        out = work / f"imports{r}.json"
        _run_child(CHILD_IMPORTS, [str(found_path), str(out)], work)
        timings.append(json.loads(out.read_text()))
    proc = _run_child(CHILD_IMPORTS, [str(found_path), str(work / "importtime.json")], work, importtime=True)
    packages, heaviest = _top_level_imports(proc.stderr)
    first = discoveries[0]
    return {
        "import_exporting_s": [t["times"][0] for t in timings],
        "import_open_s": [t["times"][1] for t in timings],
        "import_export_s": [t["times"][2] for t in timings],
        "failed_imports": sorted({m for t in timings for m in t["failed"]}),
        "cold_import_s": [d["import_s"] for d in discoveries],
        "cold_open_s": [d["open_s"] for d in discoveries],
        "cold_export_s": [d["export_s"] for d in discoveries],
        "open_modules": len(first["open_modules"]),
        "export_modules": len(first["export_modules"]),
        "export_module_packages": sorted({m.split(".")[0] for m in first["export_modules"]}),
        "importtime_top_packages_us": packages,
        "importtime_heaviest_self_us": heaviest,
    }


# ======================================================================================
# Timing the export in this process
# ======================================================================================
def _file_states(folder: Path) -> dict[str, tuple[int, int, int]]:
    return {
        str(p.relative_to(folder)): (p.stat().st_ino, p.stat().st_size, p.stat().st_mtime_ns)
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def _catalog_state(store: Any) -> dict[str, tuple[int, int] | None]:
    out: dict[str, tuple[int, int] | None] = {}
    for name in ("catalog.db", "catalog.db-wal"):
        p = Path(store.root) / name
        out[name] = (p.stat().st_size, p.stat().st_mtime_ns) if p.exists() else None
    return out


def _export_rows(store: Any, stem: str) -> list[tuple[int, str]]:
    import sqlalchemy as sa

    from nbops.core import catalog as cat

    with store.catalog.read() as conn:
        rows = conn.execute(
            sa.select(cat.exports.c.version, cat.exports.c.digest).where(cat.exports.c.pipeline == stem)
        ).all()
    return [(int(r.version), r.digest) for r in rows]


@dataclass
class Round:
    first_s: float
    first_cpu_s: float
    unchanged_s: float
    unchanged_cpu_s: float
    plan_s: float
    version_first: int
    version_unchanged: int
    written_first: int
    written_unchanged: list[str]
    result_unchanged: bool
    files_same: bool
    catalog_rows: int
    catalog_file_changed: bool


def _timed(fn: Callable[[], Any]) -> tuple[Any, float, float]:
    import gc

    gc.collect()
    c0, t0 = time.process_time(), time.perf_counter()
    result = fn()
    return result, time.perf_counter() - t0, time.process_time() - c0


def run_rounds(notebook: Path, work: Path, repeats: int) -> tuple[list[Round], Any]:
    import nbops
    from nbops.exporting import export, plan

    rounds = []
    last = None
    for r in range(repeats):
        store = nbops.open(work / f"store{r}" / ".nbops")  # untimed: a fresh catalog for the record
        out = work / f"out{r}"
        first, t1, c1 = _timed(functools.partial(export, notebook, out=out, store=store))
        assert first.version == 1 and not first.unchanged and len(first.written) == len(first.files), first.summary()
        files_before = _file_states(out / first.stem)
        catalog_before = _catalog_state(store)
        again, t2, c2 = _timed(functools.partial(export, notebook, out=out, store=store))
        files_after = _file_states(out / again.stem)
        catalog_after = _catalog_state(store)
        _, t3, _ = _timed(lambda: plan(notebook))
        rows = _export_rows(store, first.stem)
        rounds.append(
            Round(
                t1,
                c1,
                t2,
                c2,
                t3,
                first.version,
                again.version,
                len(first.written),
                again.written,
                again.unchanged,
                files_before == files_after,
                len(rows),
                catalog_before != catalog_after,
            )
        )
        store.close()
        last = first
    return rounds, last


def check_generated(result: Any) -> dict[str, Any]:
    """Untimed: the modules compile; cells and lines per stage; findings."""
    errors = []
    for name, text in result.files.items():
        if name.endswith(".py"):
            try:
                compile(text, name, "exec")
            except SyntaxError as exc:
                errors.append(f"{name}: {exc}")
    return {
        "files": {name: len(text.splitlines()) for name, text in result.files.items()},
        "stage_cells": {s["module"]: len(s["cells"]) for s in result.manifest["stages"]},
        "requirements": result.manifest["requirements"],
        "findings": [f.kind for f in result.findings],
        "dropped_cells": len(result.manifest["dropped"]),
        "compile_errors": errors,
    }


def time_size(cells: int, seed: int, outputs: bool, work: Path, repeats: int) -> dict[str, Any]:
    import nbops
    from nbops.exporting import export

    nb, info = build_notebook(cells, seed, outputs)
    folder = work / f"size{cells}"
    folder.mkdir()
    path = folder / f"{STEM}.ipynb"
    write_notebook(path, nb)
    times = []
    for r in range(repeats):
        store = nbops.open(folder / f"store{r}" / ".nbops")
        _, t, _ = _timed(functools.partial(export, path, out=folder / f"out{r}", store=store))
        times.append(t)
        store.close()
    return {"cells": cells, "markdown": info["markdown_cells"], "times_s": times, "best_s": min(times)}


# ======================================================================================
# Where the time goes
# ======================================================================================
#: Stages of an export, as (label, depth): inclusive times from wrapped functions.
STAGE_ROWS = [
    ("export", 0),
    ("plan", 1),
    ("_read_cells (nbformat.reads)", 2),
    ("assign_stage", 2),
    ("translate", 2),
    ("TransformerManager() (IPython)", 3),
    ("TransformerManager.transform_cell (IPython)", 3),
    ("magic arguments (_parse)", 3),
    ("analyse", 2),
    ("select", 2),
    ("execution_order_findings", 2),
    ("render.module", 2),
    ("render.imported_modules", 2),
    ("render.requirements", 2),
    ("importlib.metadata.packages_distributions", 3),
    ("importlib.metadata.version", 3),
    ("_store_references", 2),
    ("_digest", 1),
    ("_record (catalog lookup/insert)", 1),
    ("_write", 1),
    ("ast.parse (all callers)", 1),
]


@contextlib.contextmanager
def stage_timers() -> Iterator[dict[str, list[float]]]:
    """Wrap the export's stages with timers (inclusive seconds, calls); restored on exit."""
    import ast
    import importlib.metadata

    from IPython.core.inputtransformer2 import TransformerManager

    import nbops.exporting as ex
    from nbops.exporting import render
    from nbops.exporting import translate as tr

    totals: dict[str, list[float]] = {label: [0.0, 0] for label, _ in STAGE_ROWS}
    targets = [
        (ex, "export", "export"),
        (ex, "plan", "plan"),
        (ex, "_read_cells", "_read_cells (nbformat.reads)"),
        (ex, "assign_stage", "assign_stage"),
        (tr, "translate", "translate"),
        (TransformerManager, "__init__", "TransformerManager() (IPython)"),
        (TransformerManager, "transform_cell", "TransformerManager.transform_cell (IPython)"),
        (tr, "_parse", "magic arguments (_parse)"),
        (ex, "analyse", "analyse"),
        (ex, "select", "select"),
        (ex, "execution_order_findings", "execution_order_findings"),
        (render, "module", "render.module"),
        (render, "imported_modules", "render.imported_modules"),
        (render, "requirements", "render.requirements"),
        (importlib.metadata, "packages_distributions", "importlib.metadata.packages_distributions"),
        (importlib.metadata, "version", "importlib.metadata.version"),
        (ex, "_store_references", "_store_references"),
        (ex, "_digest", "_digest"),
        (ex, "_record", "_record (catalog lookup/insert)"),
        (ex, "_write", "_write"),
        (ast, "parse", "ast.parse (all callers)"),
    ]
    saved = []
    for owner, attr, label in targets:
        original = owner.__dict__.get(attr) if isinstance(owner, type) else getattr(owner, attr, None)
        if original is None:  # renamed in src: that row stays at 0 calls
            continue
        saved.append((owner, attr, original))

        def wrapper(*a: Any, _f: Callable[..., Any] = original, _l: str = label, **kw: Any) -> Any:
            t0 = time.perf_counter()
            try:
                return _f(*a, **kw)
            finally:
                totals[_l][0] += time.perf_counter() - t0
                totals[_l][1] += 1

        functools.update_wrapper(wrapper, original)
        setattr(owner, attr, wrapper)
    try:
        yield totals
    finally:
        for owner, attr, original in reversed(saved):
            setattr(owner, attr, original)


def hot_spots(notebook: Path, repeats: int) -> dict[str, list[float]]:
    """In this (warm) process: the two largest costs next to their plain alternatives.

    nbformat.reads (parses, converts and validates against the JSON schema) against
    json.loads of the same text; importlib.metadata.packages_distributions() (reads
    every installed distribution's METADATA and, lacking top_level.txt, its RECORD).
    """
    import importlib.metadata

    import nbformat

    text = notebook.read_text(encoding="utf-8")
    out: dict[str, list[float]] = {"nbformat.reads": [], "json.loads": [], "packages_distributions": []}
    for _ in range(repeats):
        _, t, _ = _timed(lambda: nbformat.reads(text, as_version=4))
        out["nbformat.reads"].append(t)
        _, t, _ = _timed(lambda: json.loads(text))
        out["json.loads"].append(t)
        _, t, _ = _timed(importlib.metadata.packages_distributions)
        out["packages_distributions"].append(t)
    out["distributions"] = [float(len(list(importlib.metadata.distributions())))]
    return out


def stage_breakdown(notebook: Path, work: Path) -> dict[str, dict[str, list[float]]]:
    import nbops
    import nbops.exporting as ex

    store = nbops.open(work / "store-stages" / ".nbops")
    out: dict[str, dict[str, list[float]]] = {}
    for label in ("first", "unchanged"):
        with stage_timers() as totals:
            ex.export(notebook, out=work / "out-stages", store=store)
        out[label] = {k: list(v) for k, v in totals.items()}
    store.close()
    return out


def _short(filename: str) -> str:
    for marker in ("site-packages/", "/src/", "/lib/python3"):
        if marker in filename:
            tail = filename.split(marker, 1)[1]
            return tail.split("/", 1)[1] if marker == "/lib/python3" else tail
    return filename


def _package_of(key: tuple[str, int, str]) -> str:
    filename, _, func = key
    if filename == "~":
        return "builtins: " + func.strip("<>").replace("built-in method ", "").split(" of ")[0]
    short = _short(filename)
    if short.startswith("nbops/"):
        return "nbops." + Path(short).stem if short.count("/") > 1 else "nbops"
    return short.split("/")[0].removesuffix(".py")


def profile_export(notebook: Path, work: Path, top: int) -> dict[str, Any]:
    import nbops
    from nbops.exporting import export

    store = nbops.open(work / "store-profile" / ".nbops")
    prof = cProfile.Profile()
    prof.enable()
    export(notebook, out=work / "out-profile", store=store)
    prof.disable()
    store.close()
    stats = pstats.Stats(prof, stream=io.StringIO())
    entries = stats.stats  # type: ignore[attr-defined]
    total = sum(v[2] for v in entries.values())

    def row(key: tuple[str, int, str], v: tuple[Any, ...]) -> dict[str, Any]:
        return {
            "function": f"{_short(key[0])}:{key[1]}({key[2]})" if key[0] != "~" else key[2],
            "calls": v[1],
            "tottime_s": v[2],
            "cumtime_s": v[3],
        }

    by_own = sorted(entries.items(), key=lambda kv: -kv[1][2])[:top]
    ours = [(k, v) for k, v in entries.items() if "nbops/" in k[0]]
    by_cum = sorted(ours, key=lambda kv: -kv[1][3])[:top]
    packages: Counter[str] = Counter()
    for k, v in entries.items():
        packages[_package_of(k)] += v[2]
    return {
        "total_s": total,
        "top_own": [row(k, v) for k, v in by_own],
        "top_cumulative_nbops": [row(k, v) for k, v in by_cum],
        "own_time_by_package": [{"package": p, "tottime_s": t} for p, t in packages.most_common(top)],
    }


# ======================================================================================
# Reporting
# ======================================================================================
@dataclass
class Figure:
    key: str
    label: str
    value: str
    rounds: str = ""
    target: str = "-"
    ok: bool | None = None
    seconds: float | None = None


def _ms(seconds: float) -> str:
    return f"{seconds:.2f} s" if seconds >= 1 else f"{seconds * 1000:.0f} ms"


def _rounds(values: list[float]) -> str:
    return " ".join(f"{v:.3f}" for v in values)


def print_figures(figures: list[Figure]) -> None:
    head = f"{'#':<4} {'figure':<62} {'value':>12} {'target':>8}  {'result':<6} rounds (s)"
    print(head)
    print("-" * len(head))
    for f in figures:
        result = "info" if f.ok is None else ("PASS" if f.ok else "MISS")
        print(f"{f.key:<4} {f.label:<62} {f.value:>12} {f.target:>8}  {result:<6} {f.rounds}")


def _git_state() -> str:
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=HERE.parent,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "src"],
            cwd=HERE.parent,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "n/a"
    return head + ("+dirty" if dirty else "")


def _loadavg() -> str:
    try:
        return "/".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "n/a"


def _sources_digest() -> str:
    h = hashlib.sha256()
    for p in sorted((HERE.parent / "src" / "nbops" / "exporting").glob("*.py")):
        h.update(p.read_bytes())
    return h.hexdigest()[:12]


# ======================================================================================
# The benchmark
# ======================================================================================
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cells", type=int, default=200, help="code cells of the notebook (default 200)")
    parser.add_argument("--seed", type=int, default=20240601)
    parser.add_argument("--repeats", type=int, default=5, help="best of N for figures 1, 2 (default 5)")
    parser.add_argument("--import-runs", type=int, default=3, help="fresh subprocesses per import figure (default 3)")
    parser.add_argument(
        "--scale-cells",
        default="100,400",
        help="other notebook sizes timed for figure 4b, comma-separated ('' skips; default 100,400)",
    )
    parser.add_argument("--scale-repeats", type=int, default=3, help="best of N at the other sizes (default 3)")
    parser.add_argument("--no-outputs", action="store_true", help="build the notebook without cell outputs")
    parser.add_argument("--notebook", type=Path, help="measure this notebook instead of building one")
    parser.add_argument("--profile-top", type=int, default=12, help="rows of each profile table (default 12)")
    parser.add_argument("--tmpdir", default=None, help="where stores and outputs go (default: system temp)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    parser.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")
    args = parser.parse_args(argv)
    args.repeats = max(1, args.repeats)
    args.import_runs = max(1, args.import_runs)

    work = Path(tempfile.mkdtemp(prefix="nbops-bench-export-", dir=args.tmpdir)).resolve()
    try:
        return _run(args, work)
    finally:
        if args.keep:
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


def _run(args: argparse.Namespace, work: Path) -> int:
    os.environ["IPYTHONDIR"] = str(work / "ipython")
    import IPython
    import nbformat

    env = {
        "python": platform.python_version(),
        "nbformat": nbformat.__version__,
        "ipython": IPython.__version__,
        "cpus": os.cpu_count(),
        "git": _git_state(),
        "exporting_sources": _sources_digest(),
        "loadavg_start": _loadavg(),
        "repeats": args.repeats,
    }
    print(
        f"nbops export benchmark: python {env['python']}, nbformat {env['nbformat']}, IPython {env['ipython']}, "
        f"{env['cpus']} CPUs, git {env['git']}, exporting sources {env['exporting_sources']}, "
        f"load average {env['loadavg_start']}",
        flush=True,
    )

    # -- the notebook ------------------------------------------------------------------
    nb_dir = work / "nb"
    nb_dir.mkdir()
    if args.notebook:
        notebook = nb_dir / args.notebook.name
        shutil.copyfile(args.notebook, notebook)
        nb = nbformat.read(notebook, as_version=4)
        nb_info: dict[str, Any] = {
            "code_cells": sum(c.cell_type == "code" for c in nb.cells),
            "markdown_cells": sum(c.cell_type == "markdown" for c in nb.cells),
        }
    else:
        notebook = nb_dir / f"{STEM}.ipynb"
        nb, nb_info = build_notebook(args.cells, args.seed, not args.no_outputs)
        write_notebook(notebook, nb)
    nb_info["bytes"] = notebook.stat().st_size
    nb_info["sha256"] = hashlib.sha256(notebook.read_bytes()).hexdigest()[:16]
    print(
        f"notebook {notebook.name}: {nb_info['code_cells']} code cells, {nb_info['markdown_cells']} markdown cells, "
        f"{nb_info['bytes']:,} B (sha256 {nb_info['sha256']})"
    )
    if "kinds" in nb_info:
        print("  code cells by kind: " + ", ".join(f"{k} {v}" for k, v in nb_info["kinds"].items()))
        print(
            "  stage cells by how they get their stage: "
            + ", ".join(f"{k} {v}" for k, v in nb_info["stage_ways"].items())
            + f"; {nb_info['source_lines']} source lines, {nb_info['magic_lines']} magic / shell lines"
        )

    # -- 3. imports, cold processes --------------------------------------------------------
    print(f"[1/5] imports and a cold first export, {args.import_runs} fresh subprocess(es) each ...", flush=True)
    imports = measure_imports(notebook, work, args.import_runs)

    # -- 1, 2. export after imports ----------------------------------------------------------
    print(f"[2/5] export after imports, {args.repeats} rounds (fresh out dir and store each) ...", flush=True)
    import nbops
    from nbops.exporting import export

    warm = work / "warm"
    warm.mkdir()
    (warm / "tiny.ipynb").write_text(json.dumps(TINY_NOTEBOOK))
    warm_store = nbops.open(warm / ".nbops")
    export(warm / "tiny.ipynb", out=warm / "out", store=warm_store)  # every first-use import, untimed
    warm_store.close()
    rounds, result = run_rounds(notebook, work, args.repeats)
    generated = check_generated(result)

    # -- 4b. other sizes ---------------------------------------------------------------------
    sizes = []
    scale = [int(x) for x in args.scale_cells.split(",") if x.strip()] if not args.notebook else []
    if scale:
        print(f"[3/5] other notebook sizes {scale}, best of {args.scale_repeats} ...", flush=True)
        for cells in scale:
            sizes.append(time_size(cells, args.seed, not args.no_outputs, work, max(1, args.scale_repeats)))
    else:
        print("[3/5] other notebook sizes: skipped", flush=True)

    # -- where the time goes -------------------------------------------------------------------
    print("[4/5] stage timers (one first and one unchanged export, no profiler) ...", flush=True)
    stages = stage_breakdown(notebook, work)
    spots = hot_spots(notebook, min(args.repeats, 3))
    print("[5/5] cProfile of one more export ...", flush=True)
    profile = profile_export(notebook, work, args.profile_top)
    env["loadavg_end"] = _loadavg()

    # -- figures ---------------------------------------------------------------------------------
    first = [r.first_s for r in rounds]
    again = [r.unchanged_s for r in rounds]
    versions_kept = all(r.version_unchanged == r.version_first == 1 for r in rounds)
    nothing_rewritten = all(
        not r.written_unchanged and r.result_unchanged and r.files_same and r.catalog_rows == 1 for r in rounds
    )
    catalog_changed = sum(r.catalog_file_changed for r in rounds)
    n = nb_info["code_cells"]
    figures = [
        Figure(
            "1",
            f"export {n} cells, fresh out dir + fresh store (best of {args.repeats})",
            _ms(min(first)),
            _rounds(first),
            f"<={TARGET_SECONDS:g} s",
            min(first) <= TARGET_SECONDS,
            min(first),
        ),
        Figure(
            "1b",
            "  same, CPU time (process_time)",
            _ms(min(r.first_cpu_s for r in rounds)),
            _rounds([r.first_cpu_s for r in rounds]),
            seconds=min(r.first_cpu_s for r in rounds),
        ),
        Figure(
            "2",
            f"export again, unchanged (best of {args.repeats})",
            _ms(min(again)),
            _rounds(again),
            seconds=min(again),
        ),
        Figure(
            "2a",
            "  same, CPU time (process_time)",
            _ms(min(r.unchanged_cpu_s for r in rounds)),
            _rounds([r.unchanged_cpu_s for r in rounds]),
            seconds=min(r.unchanged_cpu_s for r in rounds),
        ),
        Figure(
            "2b",
            "  unchanged keeps its version (v1 -> v1, every round)",
            "kept" if versions_kept else "CHANGED",
            target="same",
            ok=versions_kept,
        ),
        Figure(
            "2c",
            "  unchanged rewrites nothing (written=[], inode/size/mtime, 1 row)",
            "0 files" if nothing_rewritten else "REWROTE",
            target="0 files",
            ok=nothing_rewritten,
        ),
        Figure(
            "2d",
            "  unchanged: catalog.db / -wal file changed (UPDATE out_dir)",
            f"{catalog_changed}/{len(rounds)} rounds",
        ),
        Figure(
            "3",
            f"cold: import nbops.exporting (best of {args.import_runs})",
            _ms(min(imports["import_exporting_s"])),
            _rounds(imports["import_exporting_s"]),
            seconds=min(imports["import_exporting_s"]),
        ),
        Figure(
            "3b",
            f"cold: + first-use imports of export() ({imports['export_modules']} modules)",
            _ms(min(imports["import_export_s"])),
            _rounds(imports["import_export_s"]),
            seconds=min(imports["import_export_s"]),
        ),
        Figure(
            "3c",
            f"cold: + imports of nbops.open() ({imports['open_modules']} modules)",
            _ms(min(imports["import_open_s"])),
            _rounds(imports["import_open_s"]),
            seconds=min(imports["import_open_s"]),
        ),
        Figure(
            "3d",
            "cold: first export in a fresh process (its imports included)",
            _ms(min(imports["cold_export_s"])),
            _rounds(imports["cold_export_s"]),
            seconds=min(imports["cold_export_s"]),
        ),
        Figure(
            "3e",
            "cold: nbops.open() of a new store (its imports included)",
            _ms(min(imports["cold_open_s"])),
            _rounds(imports["cold_open_s"]),
            seconds=min(imports["cold_open_s"]),
        ),
        Figure(
            "4",
            f"plan() alone, nothing written (best of {args.repeats})",
            _ms(min(r.plan_s for r in rounds)),
            _rounds([r.plan_s for r in rounds]),
            seconds=min(r.plan_s for r in rounds),
        ),
    ]
    for s in sizes:
        figures.append(
            Figure(
                "4b",
                f"export {s['cells']} cells, fresh out + store (best of {len(s['times_s'])}; "
                f"{s['best_s'] / s['cells'] * 1000:.1f} ms/cell)",
                _ms(s["best_s"]),
                _rounds(s["times_s"]),
                seconds=s["best_s"],
            )
        )

    # -- report ----------------------------------------------------------------------------------
    print(
        f"\nResults: {n} code cells + {nb_info['markdown_cells']} markdown, load average "
        f"{env['loadavg_start']} -> {env['loadavg_end']} (1/5/15 min; other load skews wall times, CPU less)\n"
    )
    print_figures(figures)
    print(
        "\nGenerated: "
        + ", ".join(f"{k} {v} lines" for k, v in generated["files"].items())
        + "; cells per module: "
        + ", ".join(f"{k} {v}" for k, v in generated["stage_cells"].items())
        + f"; {len(generated['findings'])} findings; {generated['dropped_cells']} cells with dropped magics/displays; "
        + (
            "all modules compile"
            if not generated["compile_errors"]
            else f"COMPILE ERRORS {generated['compile_errors']}"
        )
    )
    if imports["failed_imports"]:
        print(f"(modules not re-importable by name in the import child, skipped: {imports['failed_imports']})")
    for phase, label in (
        ("exporting", "import nbops.exporting"),
        ("export", "first-use imports of export()"),
        ("open", "imports of nbops.open()"),
    ):
        top = sorted(imports["importtime_top_packages_us"][phase].items(), key=lambda kv: -kv[1])[:8]
        print(f"-X importtime, {label}: " + ", ".join(f"{k} {v / 1000:.0f} ms" for k, v in top))
        print(
            "    heaviest modules (self time): "
            + ", ".join(f"{k} {v / 1000:.0f} ms" for k, v in imports["importtime_heaviest_self_us"][phase][:3])
        )

    print("\nStages of one export (wrapped timers, inclusive, no profiler): first | unchanged")
    base = stages["first"]["export"][0] or 1.0
    for label, depth in STAGE_ROWS:
        f_t, f_n = stages["first"][label]
        u_t, u_n = stages["unchanged"][label]
        print(
            f"  {'  ' * depth}{label:<{52 - 2 * depth}} {f_t * 1000:>8.1f} ms {f_t / base:>5.0%} {int(f_n):>5}x"
            f"  | {u_t * 1000:>8.1f} ms {int(u_n):>5}x"
        )

    print(
        f"\nHot spots, warm, best of {len(spots['json.loads'])}: nbformat.reads of the notebook "
        f"{_ms(min(spots['nbformat.reads']))} vs json.loads {_ms(min(spots['json.loads']))}; "
        f"importlib.metadata.packages_distributions() {_ms(min(spots['packages_distributions']))} "
        f"({int(spots['distributions'][0])} distributions installed; called once per export, not cached)"
    )

    print(
        f"\ncProfile of one export (profiled total {profile['total_s']:.2f} s; the profiler slows "
        "Python-heavy code ~2x):"
    )
    print(
        "  own time by package: "
        + ", ".join(f"{p['package']} {p['tottime_s'] * 1000:.0f} ms" for p in profile["own_time_by_package"])
    )
    print(f"  {'top functions by own time':<78} {'calls':>7} {'own':>8} {'cum':>8}")
    for r in profile["top_own"]:
        print(f"  {r['function'][:78]:<78} {r['calls']:>7} {r['tottime_s']:>8.3f} {r['cumtime_s']:>8.3f}")
    print(f"  {'nbops functions by cumulative time':<78} {'calls':>7} {'own':>8} {'cum':>8}")
    for r in profile["top_cumulative_nbops"]:
        print(f"  {r['function'][:78]:<78} {r['calls']:>7} {r['tottime_s']:>8.3f} {r['cumtime_s']:>8.3f}")

    misses = [f.key for f in figures if f.ok is False]
    if generated["compile_errors"]:
        misses.append("compile")
    print(f"\n{'ALL TARGETS MET' if not misses else 'MISSED: ' + ', '.join(misses)}")

    if args.json:
        doc = {
            "env": env,
            "notebook": nb_info,
            "figures": [asdict(f) for f in figures],
            "rounds": [asdict(r) for r in rounds],
            "imports": imports,
            "sizes": sizes,
            "generated": generated,
            "stages": stages,
            "hot_spots": spots,
            "profile": profile,
            "misses": misses,
        }
        Path(args.json).write_text(json.dumps(doc, indent=2, default=str) + "\n")
        print(f"wrote {args.json}")
    return 1 if (args.strict and misses) else 0


if __name__ == "__main__":
    sys.exit(main())
