"""Outcomes joined back to logged predictions, and the per-window monitoring report (store, domain and CLI)."""

from __future__ import annotations

import datetime as dt
import math
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st
from scipy.stats import ks_2samp
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.metrics import roc_auc_score

from helpers.served import Fraud
from nbops.cli import main
from nbops.errors import CorruptDataError, InvalidInputError
from nbops.featurestore.drift import drift
from nbops.predictions.log import Prediction, PredictionLog
from nbops.predictions.monitor import MEASURES, Reference, deciding_window, monitor, parse_thresholds
from nbops.predictions.outcomes import log_outcomes, outcome_folder, read_outcomes

DAY = dt.datetime(2026, 11, 2, tzinfo=dt.UTC)


def write_log(root: Path, model: str, rows: list[Prediction]) -> None:
    with PredictionLog(root, model, 1, batch_rows=500) as log:
        for row in rows:
            assert log.log(row)


def classified_days(seed: int = 3) -> tuple[LogisticRegression, pd.DataFrame, list[Prediction]]:
    """A classifier trained on x ~ N(0, 1); day 1 is like training, day 2 shifted by 3 sigma."""
    rng = np.random.default_rng(seed)
    train = pd.DataFrame({"x": rng.normal(0, 1, 4_000)})
    train["label"] = train["x"] + rng.normal(0, 1, len(train)) > 0
    model = LogisticRegression().fit(train[["x"]], train["label"])
    rows = []
    for day, shift in ((0, 0.0), (1, 3.0)):
        xs = rng.normal(shift, 1, 500)
        labels = model.predict(pd.DataFrame({"x": xs}))
        scores = model.predict_proba(pd.DataFrame({"x": xs}))[:, 1]
        for i, (x, label, score) in enumerate(zip(xs, labels, scores, strict=True)):
            rows.append(
                Prediction(
                    request_id=f"d{day}-{i}",
                    keys={"id": i},
                    features={"x": float(x)},
                    prediction=bool(label),
                    score=float(score),
                    at=DAY + dt.timedelta(days=day, minutes=i),
                )
            )
    return model, train, rows


def test_windows_count_drift_and_performance_with_statuses(tmp_path: Path) -> None:
    model, train, rows = classified_days()
    write_log(tmp_path, "clf", rows)
    rng = np.random.default_rng(5)
    truth = [bool(r.prediction) if rng.random() < 0.8 else not r.prediction for r in rows[:500]]
    stored = log_outcomes(
        tmp_path, "clf", pd.DataFrame({"request_id": [r.request_id for r in rows[:500]], "label": truth}), "label"
    )
    assert stored == {"outcomes": 500, "already_recorded": 0, "matched": 500}

    reference = Reference.from_training(model, "1", ["x"], train)
    report = monitor(tmp_path, "clf", window="1D", reference=reference, drift=drift)
    assert report["window_start"].tolist() == [pd.Timestamp(DAY), pd.Timestamp(DAY + dt.timedelta(days=1))]
    assert report["predictions"].tolist() == [500, 500] and report["outcomes"].tolist() == [500, 0]
    first, second = report.iloc[0], report.iloc[1]
    assert first["accuracy"] == pytest.approx(np.mean([r.prediction == t for r, t in zip(rows, truth, strict=False)]))
    assert first["auc"] == pytest.approx(roc_auc_score(truth, [r.score for r in rows[:500]]))
    assert math.isnan(second["accuracy"]) and math.isnan(second["auc"])
    assert first["psi.x"] < 0.1 and second["psi.x"] > 0.25 and second["drifting_feature"] == "x"
    assert second["prediction_psi"] > 0.25
    # The label is in the training data: the AUC thresholds come from the model's AUC there.
    train_auc = roc_auc_score(train["label"], model.predict_proba(train[["x"]])[:, 1])
    assert report.attrs["thresholds"]["auc"] == pytest.approx((train_auc - 0.05, train_auc - 0.10))
    assert report.attrs["thresholds"]["psi"] == (0.1, 0.25)
    assert second["status"] == "alert" and "feature_psi_max" in second["reasons"] and "(x)" in second["reasons"]
    expected_first = "ok" if first["auc"] > train_auc - 0.05 else "warn" if first["auc"] > train_auc - 0.10 else "alert"
    assert first["status"] == expected_first

    # KS: the statistic D of each input and of the scores against the training data, as scipy computes it.
    for row, day in ((first, rows[:500]), (second, rows[500:])):
        xs = [r.features["x"] for r in day]
        assert row["ks.x"] == pytest.approx(ks_2samp(train["x"], xs).statistic) == row["feature_ks_max"]
        scores = [r.score for r in day]
        assert row["prediction_ks"] == pytest.approx(ks_2samp(reference.predictions, scores).statistic)
    assert first["feature_ks_max"] < 0.1 < 0.5 < second["feature_ks_max"]
    assert "ks" not in report.attrs["thresholds"]  # no default: the status above is PSI's and AUC's
    by_ks = monitor(tmp_path, "clf", reference=reference, drift=drift, thresholds={"psi": (50, 100), "ks": (0.1, 0.5)})
    assert by_ks.iloc[1]["status"] == "alert" and "feature_ks_max" in by_ks.iloc[1]["reasons"]
    assert "(x)" in by_ks.iloc[1]["reasons"] and "ks" not in by_ks.iloc[0]["reasons"]

    strict = monitor(tmp_path, "clf", reference=reference, drift=drift, thresholds={"accuracy": (0.99, 0.95)})
    assert strict.iloc[0]["status"] == "alert" and "accuracy" in strict.iloc[0]["reasons"]
    hours = monitor(tmp_path, "clf", window="6h", reference=reference, drift=drift)
    assert hours["predictions"].sum() == 1000 and len(hours) == 4  # 500 minutes a day: two 6-hour windows each


def test_a_regressor_reports_rmse_and_mae_and_few_rows_give_no_drift(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    train = pd.DataFrame({"x": rng.normal(0, 1, 500)})
    train["y"] = 2 * train["x"] + 1
    model = LinearRegression().fit(train[["x"]], train["y"])
    xs = rng.normal(0, 1, 30)
    preds = model.predict(pd.DataFrame({"x": xs}))
    write_log(
        tmp_path,
        "reg",
        [
            Prediction(f"r{i}", {"id": i}, {"x": float(x)}, float(p), at=DAY + dt.timedelta(minutes=i))
            for i, (x, p) in enumerate(zip(xs, preds, strict=True))
        ],
    )
    truth = preds + np.linspace(-1, 1, 30)
    log_outcomes(tmp_path, "reg", pd.DataFrame({"request_id": [f"r{i}" for i in range(30)], "y": truth}), "y")
    report = monitor(tmp_path, "reg", reference=Reference.from_training(model, "1", ["x"], train), drift=drift)
    row = report.iloc[0]
    err = preds - truth
    assert row["rmse"] == pytest.approx(np.sqrt(np.mean(err**2))) and row["mae"] == pytest.approx(np.mean(np.abs(err)))
    assert math.isnan(row["feature_psi_max"])  # 30 rows: under min_rows, no PSI
    assert row["status"] == "alert"  # RMSE far above the training data's (where it is 0): thresholds from it


def test_outcomes_by_keys_and_event_time_are_matched_and_conflicts_refused(tmp_path: Path) -> None:
    _, _, rows = classified_days()
    write_log(tmp_path, "clf", rows[:10])
    by_keys = pd.DataFrame(
        {"id": [0, 1, 2], "when": [DAY, DAY + dt.timedelta(minutes=1), DAY + dt.timedelta(hours=5)], "label": [1, 0, 1]}
    )
    assert log_outcomes(tmp_path, "clf", by_keys, "label", event_time="when") == {
        "outcomes": 3,
        "already_recorded": 0,
        "matched": 2,  # the third names a time with no prediction: kept, unmatched
    }
    assert log_outcomes(tmp_path, "clf", by_keys, "label", event_time="when")["already_recorded"] == 3
    before = read_outcomes(tmp_path, "clf")
    with pytest.raises(InvalidInputError, match="differ from ones recorded before"):
        log_outcomes(tmp_path, "clf", by_keys.assign(label=[0, 0, 1]), "label", event_time="when")
    ids = pd.DataFrame({"request_id": ["d0-5", "d0-5"], "label": [True, False]})
    with pytest.raises(InvalidInputError, match="two different outcomes for d0-5"):
        log_outcomes(tmp_path, "clf", ids, "label")
    for bad, message in [
        (pd.DataFrame({"request_id": ["d0-1"], "label": [None]}), "missing values"),
        (pd.DataFrame({"request_id": ["d0-1"]}), "no column 'label'"),
        (pd.DataFrame({"id": [1], "label": [1]}), "request_id column, or key columns"),
        (pd.DataFrame({"request_id": [""], "label": [1]}), "non-empty strings"),
        ([{"request_id": "d0-1", "label": 1}], "must be a pandas DataFrame"),
    ]:
        with pytest.raises(InvalidInputError, match=message):
            log_outcomes(tmp_path, "clf", bad, "label")  # type: ignore[arg-type]
    assert read_outcomes(tmp_path, "clf").equals(before)  # nothing refused was stored


def test_an_outcome_naming_two_predictions_is_refused_or_left_out_and_monitoring_goes_on(tmp_path: Path) -> None:
    model, train, rows = classified_days()
    day = rows[:100]
    # A client reused request id d0-7, and card 3 was predicted twice at one event time.
    again = [replace(day[7], features={"x": -5.0}), replace(day[3], request_id="other")]
    write_log(tmp_path, "clf", day + again)
    for outcomes, event_time in [
        (pd.DataFrame({"request_id": ["d0-1", "d0-7"], "label": [True, True]}), None),
        (pd.DataFrame({"id": [1, 3], "when": [day[1].at, day[3].at], "label": [True, True]}), "when"),
    ]:
        with pytest.raises(InvalidInputError, match="1 outcomes each name more than one logged prediction"):
            log_outcomes(tmp_path, "clf", outcomes, "label", event_time=event_time)
    assert read_outcomes(tmp_path, "clf").num_rows == 0  # nothing stored, the unambiguous one neither
    ids = [r.request_id for r in day[10:60]]
    assert log_outcomes(tmp_path, "clf", pd.DataFrame({"request_id": ids, "label": [True] * 50}), "label") == {
        "outcomes": 50,
        "already_recorded": 0,
        "matched": 50,  # this call's outcomes, not the model's
    }
    # A prediction logged again under an id that already has an outcome: that outcome is left out, and counted.
    write_log(tmp_path, "clf", [replace(day[10], features={"x": 9.0})])
    reference = Reference.from_training(model, "1", ["x"], train)
    report = monitor(tmp_path, "clf", reference=reference, drift=drift)
    assert report.attrs["ambiguous_outcomes"] == 1 and report["outcomes"].sum() == 49
    kept = [r.prediction for r in day[11:60]]
    assert report.iloc[0]["accuracy"] == pytest.approx(np.mean(kept))
    assert (
        log_outcomes(tmp_path, "clf", pd.DataFrame({"request_id": ["d0-80"], "label": [False]}), "label")["matched"]
        == 1
    )


def test_an_outcome_by_keys_reaches_only_its_row_and_a_whole_float_key_is_the_int_key(tmp_path: Path) -> None:
    model, train, rows = classified_days()
    day = rows[:100]
    # Row 5 reuses row 4's request id (another card, another time); row 6 was sent with the key 6.0.
    day[5] = replace(day[5], request_id=day[4].request_id)
    day[6] = replace(day[6], keys={"id": 6.0})
    write_log(tmp_path, "clf", day)
    truth = pd.DataFrame({"id": [4, 6], "when": [day[4].at, day[6].at], "label": [not day[4].prediction, True]})
    assert log_outcomes(tmp_path, "clf", truth, "label", event_time="when")["matched"] == 2
    report = monitor(tmp_path, "clf", reference=Reference.from_training(model, "1", ["x"], train), drift=drift)
    assert report["outcomes"].sum() == 2  # not 3: row 5 shares row 4's request id, not its outcome
    assert report.iloc[0]["accuracy"] == pytest.approx(np.mean([False, day[6].prediction is True]))
    assert report.attrs["ambiguous_outcomes"] == 0


def test_an_input_with_no_values_in_a_window_is_an_alert_not_a_gap(tmp_path: Path) -> None:
    model, train, rows = classified_days()
    outage = [replace(r, features={"x": None}) for r in rows[500:]]  # day 2: the feature store went dark
    write_log(tmp_path, "clf", rows[:500] + outage)
    report = monitor(tmp_path, "clf", reference=Reference.from_training(model, "1", ["x"], train), drift=drift)
    calm, dark = report.iloc[0], report.iloc[1]
    assert math.isnan(dark["psi.x"]) and math.isnan(dark["ks.x"])
    assert dark["status"] == "alert" and "x has no values in 500 predictions" in dark["reasons"]
    assert "no values" not in calm["reasons"]


def test_a_damaged_outcome_batch_is_refused_naming_it(tmp_path: Path) -> None:
    _, _, rows = classified_days()
    write_log(tmp_path, "clf", rows[:5])
    log_outcomes(tmp_path, "clf", pd.DataFrame({"request_id": ["d0-1"], "label": [True]}), "label")
    (batch,) = outcome_folder(tmp_path, "clf").glob("*.parquet")
    data = bytearray(batch.read_bytes())
    data[len(data) // 2] ^= 0xFF
    batch.write_bytes(bytes(data))
    with pytest.raises(CorruptDataError, match=batch.name):
        read_outcomes(tmp_path, "clf")
    with pytest.raises(CorruptDataError):
        monitor(tmp_path, "clf")


def test_bad_windows_and_thresholds_are_refused(tmp_path: Path) -> None:
    _, _, rows = classified_days()
    write_log(tmp_path, "clf", rows[:5])
    with pytest.raises(InvalidInputError, match="not a time span"):
        monitor(tmp_path, "clf", window="fortnightish")
    with pytest.raises(InvalidInputError, match="no threshold named 'f1'"):
        monitor(tmp_path, "clf", thresholds={"f1": (0.5, 0.4)})
    with pytest.raises(InvalidInputError, match="worse than the warning"):
        monitor(tmp_path, "clf", thresholds={"auc": (0.6, 0.7)})
    assert monitor(tmp_path, "nobody").empty


# -- through the store and the command line ---------------------------------------------------------------


def nbops_cli(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "nbops.cli", "--store", str(root), *args],
        capture_output=True,
        text=True,
        timeout=180,
        env={k: v for k, v in __import__("os").environ.items() if k != "MLFLOW_TRACKING_URI"},
    )


def test_the_store_monitors_against_the_training_data_in_the_models_lineage(
    fraud: Fraud, capsys: pytest.CaptureFixture[str]
) -> None:
    store, train = fraud.store, fraud.train
    rng = np.random.default_rng(11)
    ids = []
    for day, factor in ((0, 1.0), (1, 8.0)):
        sample = train.sample(300, random_state=day)
        got = store.predict(
            "fraud@champion",
            keys={"cc_num": sample["cc_num"].tolist()},
            values={"amount": (sample["amount"] * factor).tolist()},
            event_time=DAY + dt.timedelta(days=day, hours=1),
        )
        ids.append(got)
    outcomes = ids[0].assign(is_fraud=rng.random(300) < 0.1)[["request_id", "is_fraud"]]
    assert store.log_outcomes("fraud", outcomes, outcome="is_fraud")["matched"] == 300
    report = store.monitor("fraud", window="1D")
    assert report.attrs["has_training_data"] and report.attrs["reference_version"] == "1"
    assert report["predictions"].tolist() == [300, 300] and report["outcomes"].tolist() == [300, 0]
    assert report.iloc[1]["psi.amount"] > 0.25 > report.iloc[0]["psi.amount"]
    assert report.iloc[1]["status"] == "alert"
    assert not math.isnan(report.iloc[0]["auc"])

    alert = nbops_cli(store.root, "monitor", "fraud", "--window", "1D")
    assert alert.returncode == 1, alert.stderr
    assert "status: alert" in alert.stdout and "0 dropped" in alert.stdout

    # The other cases run the same command in this process (each subprocess costs seconds of imports).
    def here(*args: str) -> tuple[int, str, str]:
        code = main(["--store", str(store.root), "monitor", *args])
        shown = capsys.readouterr()
        return code, shown.out, shown.err

    code, out, _ = here("fraud@champion", "--threshold", "psi=50,100", "--threshold", "auc=0,0")
    assert code == 0 and "status: ok" in out, out
    code, out, _ = here("fraud", "--since", "2030-01-01")
    assert code == 0 and "no predictions logged yet" in out
    code, _, err = here("fraud", "--threshold", "psi=high")
    assert code == 2 and "NAME=WARN,ALERT" in err

    # The next day's first requests: too few for drift figures, so they must not hide yesterday's alert.
    first = train.sample(10, random_state=5)
    store.predict(
        "fraud@champion",
        keys={"cc_num": first["cc_num"].tolist()},
        values={"amount": first["amount"].tolist()},
        event_time=DAY + dt.timedelta(days=2, hours=1),
    )
    store._flush_predictions()
    report = store.monitor("fraud", window="1D")
    assert report["predictions"].tolist() == [300, 300, 10] and report.iloc[2]["status"] == "ok"
    assert deciding_window(report)[0] == 1 and "fewer than 50" in deciding_window(report)[1]
    code, out, _ = here("fraud")
    assert code == 1, out
    assert "model: fraud v1" in out and "note: the newest window" in out
    assert "status: alert (latest window with drift figures, 2026-11-03" in out
    code, out, _ = here("fraud", "--any")
    alerts = int((report["status"] == "alert").sum())
    assert code == 1 and f"status: alert ({alerts} of 3 windows alert" in out


@given(
    st.lists(
        st.tuples(
            st.sampled_from(MEASURES),
            st.floats(allow_nan=False),
            st.floats(allow_nan=False),
        ),
        unique_by=lambda t: t[0],
    )
)
def test_thresholds_written_on_a_command_line_read_back_as_numbers(pairs: list[tuple[str, float, float]]) -> None:
    texts = [f"{name}={warn!r},{alert!r}" for name, warn, alert in pairs]
    assert parse_thresholds(texts) == {name: (warn, alert) for name, warn, alert in pairs}
