"""``%monitor MODEL``: a served model's windows, drift, performance and status, on a real served model.

One store serves the module (tests/helpers/served.py): ``fraud`` (a logistic
regression on online features, alias ``champion``) predicted on four days,
the last two with amounts four times larger, with outcomes logged for the
first three days; ``plain``, a regressor trained on a frame that is not in
the store (so no drift figures); ``idle``, registered and never used.  The
panel is driven from Python through a real IPython shell, then shown in a
real JupyterLab in headless Chromium.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
from IPython.core.error import UsageError
from IPython.core.interactiveshell import InteractiveShell
from sklearn.linear_model import LinearRegression

import nbops
from helpers.mlflowstate import forget_tracking_uri, reset_mlflow, untracked_setup
from helpers.served import fraud_store
from helpers.shell import nbops_shell
from nbops import api
from nbops.store import Store
from nbops.widgets import MonitorPanel

DAYS = [pd.Timestamp("2026-04-01", tz="UTC") + pd.Timedelta(days=d) for d in range(4)]
PER_DAY = 120
#: Outcomes wrong on this share of each day's predictions (None: no outcomes that day).
WRONG = [0.0, 0.25, 0.6, None]


@dataclass
class Served:
    root: Path
    ids: list[list[str]]  # fraud's request ids, per day


def _predict_fraud_days(store: Store) -> list[list[str]]:
    rng = np.random.default_rng(11)
    ids = []
    for day, start in enumerate(DAYS):
        amounts = rng.gamma(2.0, 40.0, PER_DAY) * (1 if day < 2 else 4)
        minutes = np.sort(rng.integers(0, 24 * 60, PER_DAY))
        out = store.predict(
            "fraud@champion",
            keys={"cc_num": rng.integers(1, 51, PER_DAY).tolist()},
            values={"amount": amounts.round(2).tolist()},
            event_time=[start + pd.Timedelta(minutes=int(m)) for m in minutes],
        )
        ids.append(out["request_id"].tolist())
        wrong = WRONG[day]
        if wrong is not None:
            flipped = int(wrong * PER_DAY)
            truth = [(not p) if i < flipped else bool(p) for i, p in enumerate(out["prediction"])]
            store.log_outcomes("fraud", pd.DataFrame({"request_id": ids[-1], "is_fraud": truth}), outcome="is_fraud")
    return ids


def _register_regressors(store: Store, frame: pd.DataFrame) -> None:
    """A linear regression of y on x, fitted on a frame that is not in the store, registered as ``plain`` and
    (the same logged model, without a second upload) as ``idle``."""
    with nbops.track(experiment="plain", run_name="plain", store=store, register_model="plain"):
        model = LinearRegression().fit(frame[["x"]], frame["y"])
        logged = mlflow.sklearn.log_model(model, name="model")
    mlflow.register_model(logged.model_uri, "idle")


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    root = tmp_path_factory.mktemp("monitor") / ".nbops"
    with untracked_setup():
        fraud = fraud_store(root)
        store = fraud.store
        try:
            ids = _predict_fraud_days(store)
            rng = np.random.default_rng(5)
            xy = pd.DataFrame({"x": rng.normal(0, 1, 200)})
            xy["y"] = 3 * xy["x"] + rng.normal(0, 0.5, 200)
            _register_regressors(store, xy)
            batch = xy.head(100)
            out = store.predict("plain", frame=batch[["x"]], event_time=[DAYS[d // 50] for d in range(100)])
            store.log_outcomes("plain", pd.DataFrame({"request_id": out["request_id"], "y": batch["y"]}), outcome="y")
        finally:
            store.close()
    yield Served(root, ids)


@pytest.fixture
def store(served: Served, monkeypatch: pytest.MonkeyPatch) -> Iterator[Store]:
    forget_tracking_uri(monkeypatch)
    api.clear_reads()
    s = nbops.open(served.root)
    try:
        yield s
    finally:
        s.close()
        reset_mlflow()


@pytest.fixture
def shell(served: Served, monkeypatch: pytest.MonkeyPatch) -> Iterator[InteractiveShell]:
    forget_tracking_uri(monkeypatch)
    with nbops_shell(served.root, monkeypatch) as ip:
        yield ip
    reset_mlflow()


def _statuses(panel: MonitorPanel) -> list[str]:
    column = panel.windows.columns.index("status")
    return [row[column] for row in panel.windows.rows]


def _badge(markup: str) -> str:
    return markup.split('data-status="', 1)[1].split('"', 1)[0]


# -- through the magic ---------------------------------------------------------------------------
def test_monitor_shows_windows_newest_first_charts_and_the_latest_status(shell: InteractiveShell) -> None:
    panel = shell.run_line_magic("monitor", "fraud@champion")
    assert isinstance(panel, MonitorPanel) and panel.last_error is None
    assert panel.windows.row_ids == [d.isoformat() for d in reversed(DAYS)]
    assert panel.windows.columns[:3] == ["window start (UTC)", "window end (UTC)", "status"]
    assert {"accuracy", "auc", "reasons"} <= set(panel.windows.columns)
    # Online features are the latest per card, far from their history in training: every window drifts.
    assert _statuses(panel) == ["alert"] * 4
    assert "fraud v1" in panel.status.value and _badge(panel.status.value) == "alert"
    assert "4: 0 ok, 0 warn, 4 alert" in panel.summary.value
    assert "0 dropped (queue full), 0 lost to write errors" in panel.summary.value
    assert "monitor-no-training-data" not in panel.summary.value and panel.message.value == ""

    volume = panel.volume.spec
    assert volume is not None
    bars = volume["layer"][0]["data"]["values"]
    assert [b["predictions"] for b in bars] == [PER_DAY] * 4 and {b["status"] for b in bars} == {"alert"}
    drift = panel.drift.spec
    assert drift is not None
    lines = drift["layer"][0]["data"]["values"]
    assert {v["measure"] for v in lines} == {"feature_psi_max", "prediction_psi"}
    assert [layer["data"]["values"][0]["value"] for layer in drift["layer"][1:]] == [0.1, 0.25]  # warn, alert
    performance = panel.performance.spec
    assert performance is not None
    accuracy = [v for v in performance["layer"][0]["data"]["values"] if v["measure"] == "accuracy"]
    assert [v["value"] for v in accuracy] == pytest.approx([1.0, 0.75, 0.4])  # no outcomes on the last day
    assert json.dumps([volume, drift, performance], allow_nan=False)  # plain JSON: no NaN reaches the page

    assert panel.windows.selected == [DAYS[-1].isoformat()]  # the latest window, explained
    assert 'data-nbops="monitor-window"' in panel.detail.value
    for name in ("PSI n_tx", "PSI amount_mean", "PSI amount", "feature_psi_max", "KS n_tx", "prediction KS"):
        assert name in panel.detail.value


def test_since_and_window_choose_the_windows(shell: InteractiveShell) -> None:
    panel = shell.run_line_magic("monitor", "fraud --window 12h --since 2026-04-03")
    starts = [pd.Timestamp(i) for i in panel.windows.row_ids]
    assert min(starts) >= DAYS[2] and len(starts) > 2 and all(s.hour in (0, 12) for s in starts)
    assert "windows of 12h" in panel.status.value


def test_a_model_with_no_predictions_says_so_and_a_refresh_shows_new_ones(
    shell: InteractiveShell, store: Store
) -> None:
    panel = shell.run_line_magic("monitor", "idle")
    assert panel.last_error is None and panel.windows.rows == []
    assert "No predictions logged for <b>idle</b> yet" in panel.message.value
    assert "no predictions yet" in panel.status.value and 'data-status="' not in panel.status.value
    assert panel.volume.spec is None and panel.drift.spec is None and panel.performance.spec is None

    store.predict("idle", frame=pd.DataFrame({"x": [0.0, 1.0]}), event_time=[DAYS[0], DAYS[0]])
    store.close()  # writes the log
    panel.refresh_button.click()
    assert panel.last_error is None and panel.message.value == ""
    assert panel.windows.row_ids == [DAYS[0].isoformat()] and _statuses(panel) == ["ok"]
    assert _badge(panel.status.value) == "ok"


def test_thresholds_on_the_magic_line_decide_the_statuses(shell: InteractiveShell) -> None:
    panel = shell.run_line_magic(
        "monitor", "fraud --threshold psi=50,100 --threshold accuracy=0.9,0.6 --threshold auc=0.01,0"
    )
    assert panel.last_error is None
    assert _statuses(panel) == ["ok", "alert", "warn", "ok"]  # what the same thresholds give in Python (below)
    assert "threshold accuracy" in panel.summary.value
    panel.refresh_button.click()  # a refresh keeps them
    assert _statuses(panel) == ["ok", "alert", "warn", "ok"]


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("nope", "no registered model 'nope'"),
        ("fraud --threshold psi=high", "--threshold 'psi=high': write NAME=WARN,ALERT"),
        ("fraud --threshold psi", "--threshold 'psi': write NAME=WARN,ALERT"),
        ("fraud --threshold psi=1,2 --threshold psi=2,3", "--threshold psi=... is given twice"),
        ("fraud --threshold latency=1,2", "no threshold named 'latency'"),
        ("fraud --threshold psi=0.3,0.1", "the alert level must be worse than the warning level"),
        ("fraud@nope", "registered model 'fraud' has no alias 'nope'"),
        ("fraud --window fortnightly", "window='fortnightly' is not a time span"),
        ("fraud --since yesterday", "--since 'yesterday' is not a time"),
    ],
)
def test_unknown_models_and_bad_arguments_fail_the_cell_with_the_reason(
    shell: InteractiveShell, line: str, message: str
) -> None:
    with pytest.raises(UsageError, match=message):
        shell.run_line_magic("monitor", line)


def test_the_error_shows_as_a_usage_error_without_a_traceback(
    shell: InteractiveShell, capsys: pytest.CaptureFixture[str]
) -> None:
    result = shell.run_cell("%monitor nope")
    assert not result.success
    shown = capsys.readouterr()
    assert "UsageError: no registered model 'nope'" in shown.err + shown.out
    assert "Traceback" not in shown.err + shown.out


# -- the panel on its own ------------------------------------------------------------------------
def test_thresholds_decide_each_windows_status_and_alert_windows_are_marked(store: Store) -> None:
    # PSI high enough to pass; accuracy decides: 1.0 ok, 0.75 warn, 0.4 alert, none ok.
    thresholds = {"psi": (50.0, 100.0), "accuracy": (0.9, 0.6), "auc": (0.01, 0.0)}
    panel = MonitorPanel(store, "fraud", thresholds=thresholds)
    assert panel.last_error is None
    assert _statuses(panel) == ["ok", "alert", "warn", "ok"]  # newest first
    assert panel.windows.row_marks == ["ok", "alert", "warn", "ok"]  # the style sheet tints warn and alert rows
    assert _badge(panel.status.value) == "ok"  # the latest window's
    assert "4: 2 ok, 1 warn, 1 alert" in panel.summary.value
    assert "threshold accuracy" in panel.summary.value
    assert [b["status"] for b in panel.volume.spec["layer"][0]["data"]["values"]] == ["ok", "warn", "alert", "ok"]
    rules = [layer["data"]["values"][0] for layer in panel.performance.spec["layer"][1:]]
    assert {"threshold": "accuracy alert", "value": 0.6} in rules

    alert = DAYS[2].isoformat()
    panel.windows.selected = [alert]
    assert 'data-status="alert"' in panel.detail.value and "accuracy 0.4 &lt;= 0.6" in panel.detail.value
    reasons = panel.windows.columns.index("reasons")
    assert panel.windows.rows[panel.windows.row_ids.index(alert)][reasons] == "accuracy 0.4 <= 0.6"


def test_the_header_judges_by_the_newest_window_with_drift_figures_and_counts_outcomes_left_out(
    store: Store,
) -> None:
    thresholds = {"psi": (50.0, 100.0), "accuracy": (0.9, 0.6), "auc": (0.01, 0.0)}
    panel = MonitorPanel(store, "fraud", thresholds=thresholds)
    report = panel.report.copy()
    assert list(report["status"]) == ["ok", "warn", "alert", "ok"]
    # The newest window as a day's first few requests: it has no drift figures, so the alert before it stands.
    report.loc[report.index[-1], "predictions"] = 10
    report.attrs = {**panel.report.attrs, "ambiguous_outcomes": 2}
    panel.show(report)
    assert _badge(panel.status.value) == "alert"
    assert "has 10 predictions, fewer than 50" in panel.status.value
    assert (
        "outcomes left out" in panel.summary.value and "2 name more than one logged prediction" in panel.summary.value
    )


def test_a_model_without_saved_training_data_says_so_and_charts_its_error(store: Store) -> None:
    panel = MonitorPanel(store, "plain", window="1D")
    assert panel.last_error is None
    assert 'data-nbops="monitor-no-training-data"' in panel.summary.value
    assert {"rmse", "mae"} <= set(panel.windows.columns) and "accuracy" not in panel.windows.columns
    assert panel.windows.row_ids == [DAYS[1].isoformat(), DAYS[0].isoformat()]
    assert panel.drift.spec is None  # no drift figures without a reference
    values = panel.performance.spec["layer"][0]["data"]["values"]
    assert {v["measure"] for v in values} == {"rmse", "mae"} and all(0 < v["value"] < 2 for v in values)


def test_the_panel_module_imports_nothing_heavy() -> None:
    code = (
        "import json, sys, nbops.widgets.monitor\n"
        "print(json.dumps([m for m in ('mlflow', 'duckdb', 'pandas', 'pyarrow') if m in sys.modules]))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []


# -- in JupyterLab -------------------------------------------------------------------------------
@pytest.mark.browser
@pytest.mark.slow
def test_monitor_panel_in_jupyterlab(served: Served, tmp_path: Path) -> None:
    from helpers.labharness import (
        JupyterLabServer,
        chromium_browser,
        lab_page,
        open_notebook,
        require_chromium,
        run_all,
        wait_for_all_cells_executed,
        write_notebook,
    )

    require_chromium()
    from playwright.sync_api import expect

    chart = ".vega-embed svg, .vega-embed canvas"
    notebooks = tmp_path / "notebooks"
    write_notebook(notebooks / "monitor.ipynb", ["%monitor fraud@champion"])
    started = time.perf_counter()
    with (
        JupyterLabServer(tmp_path / "server", notebooks, env={"NBOPS_HOME": str(served.root)}) as server,
        chromium_browser() as browser,
        lab_page(browser) as page,
    ):
        open_notebook(page, server, "monitor.ipynb")
        run_all(page)
        wait_for_all_cells_executed(page)
        box = page.locator(".nbops-panel-monitorpanel")
        expect(box).to_be_visible(timeout=30_000)
        expect(box.locator('[data-nbops="monitor-header"]')).to_contain_text("fraud v1")
        expect(box.locator('.nbops-status[data-status="alert"]').first).to_be_visible()
        for name in ("volume", "drift", "performance"):
            expect(box.locator(f".nbops-chart-monitor-{name}").locator(chart).first).to_be_visible(timeout=30_000)
        expect(box.locator(".nbops-chart-monitor-drift")).to_contain_text("drift against the training data")
        rows = box.locator('[data-nbops="monitor-windows"] tbody tr')
        expect(rows).to_have_count(4)
        expect(rows.first).to_have_attribute("aria-selected", "true")
        expect(rows.nth(1)).to_have_attribute("data-mark", "alert")  # every window here is alert: tinted red
        expect(rows.nth(1)).to_have_css("background-color", "rgb(255, 235, 238)")
        rows.nth(3).click()  # the oldest window
        expect(box.locator('[data-nbops="monitor-window"]')).to_contain_text("2026-04-01 00:00:00")
        shots = Path(os.environ.get("NBOPS_SCREENSHOT_DIR") or tmp_path)
        page.set_viewport_size({"width": 1280, "height": 2400})
        box.screenshot(path=str(shots / "panels-monitor.png"))
    print(f"%monitor opened in JupyterLab in {time.perf_counter() - started:.1f} s")
