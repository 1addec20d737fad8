"""Monitoring a model from its prediction log: per time window, drift, performance and a status.

For each window (``"1D"``, ``"6h"``, any pandas frequency) of the logged
predictions :func:`monitor` reports:

- ``predictions``: how many were logged in it;
- ``feature_psi_max`` and ``drifting_feature``: the largest PSI of any model
  input against the model's training data (and one ``psi.<input>`` column each);
- ``prediction_psi``: the PSI of the predictions (a binary classifier's scores)
  against the model's predictions on its training data;
- ``feature_ks_max`` and ``prediction_ks``: the same comparisons by the
  two-sample Kolmogorov-Smirnov statistic *D* (the largest gap between the two
  cumulative distributions, 0 to 1; one ``ks.<input>`` column per numeric
  input). *D* does not grow with the window's size as the test's p-value does,
  so it is what a threshold is put on; it has none by default;
- ``outcomes`` and, once there are any, ``accuracy`` and ``auc`` (classifiers)
  or ``rmse`` and ``mae`` (regressors), from the outcomes joined back
  (:mod:`nbops.predictions.outcomes`);
- ``status``: ``alert`` if any measure crosses its alert threshold, else
  ``warn`` if any crosses its warning threshold, else ``ok``; ``reasons`` says which.
  An input with no value at all in a window of ``min_rows`` or more (it has
  no PSI or KS to cross anything) is an ``alert`` too: a feature outage.

Thresholds (``thresholds={"psi": (warn, alert), "accuracy": (warn, alert), ...}``)
default to PSI 0.1 / 0.25 (the usual reading of PSI: moderate / major shift).
KS has no default threshold. A performance measure has none either unless
the training data holds the outcome column (the label): then it warns 0.05
and alerts 0.10 below the model's accuracy or AUC on its training data, or
10 % / 25 % above its RMSE or MAE there. A window with fewer than ``min_rows`` predictions (default 50) gets
no drift figures: PSI over a handful of rows is noise.

The PSI and KS computations are the feature store's drift code, handed in by
:meth:`nbops.Store.monitor` (this domain does not import the feature store).
"""

from __future__ import annotations

import contextlib
import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa

from nbops.errors import InvalidInputError
from nbops.predictions.log import read_predictions, saved_stats
from nbops.predictions.outcomes import join, plain_value, read_outcomes

if TYPE_CHECKING:
    import pandas as pd

#: (warn, alert) per measure; for accuracy and auc, lower is worse.
DEFAULT_THRESHOLDS: dict[str, tuple[float, float]] = {"psi": (0.1, 0.25)}
LOWER_IS_WORSE = ("accuracy", "auc")
#: What a threshold can be put on.
MEASURES = ("psi", "ks", "accuracy", "auc", "rmse", "mae")
#: The most training rows a reference keeps (a deterministic sample beyond it).
REFERENCE_ROWS = 100_000


@dataclass
class Reference:
    """What a model version's predictions are compared with: its training inputs and its predictions on them."""

    version: str
    inputs: list[str]
    frame: pd.DataFrame | None  # the training data (None: not saved, so no drift figures)
    predictions: np.ndarray | None
    task: str
    positive: Any = None  # a binary classifier's positive class

    @classmethod
    def from_training(cls, model: Any, version: str, inputs: list[str], frame: pd.DataFrame | None) -> Reference:
        """Predict once on (a sample of) the training data ``frame``."""
        classes = getattr(model, "classes_", None)
        task = "classifier" if classes is not None else "regressor"
        binary = classes is not None and len(classes) == 2 and hasattr(model, "predict_proba")
        positive = plain_value(classes[1]) if binary and classes is not None else None
        if frame is None:
            return cls(version, inputs, None, None, task, positive)
        if len(frame) > REFERENCE_ROWS:
            frame = frame.sample(REFERENCE_ROWS, random_state=0)
        frame = frame.reset_index(drop=True)
        x = frame[inputs]
        predicted = model.predict_proba(x)[:, 1] if binary else np.asarray(model.predict(x))
        return cls(version, inputs, frame, np.asarray(predicted), task, positive)


def predictions_frame(root: Path, model: str, version: int | None = None) -> pd.DataFrame:
    """The prediction log as a frame: request_id, at, model_version, one column per key and per feature,
    prediction and score."""
    return decoded_frame(read_predictions(root, model, version))


def decoded_frame(table: pa.Table) -> pd.DataFrame:
    """:func:`predictions_frame` of a table read already: its row ``i`` is the table's row ``i``."""
    import pandas as pd

    frame = table.select(["request_id", "at", "model_version"]).to_pandas()
    keys = pd.DataFrame([json.loads(t) for t in table["keys"].to_pylist()], index=frame.index)
    features = pd.DataFrame([json.loads(t) for t in table["features"].to_pylist()], index=frame.index)
    features = features[[c for c in features.columns if c not in keys.columns]]
    frame = pd.concat([frame, keys, features], axis=1)
    frame["prediction"] = [json.loads(t) for t in table["prediction"].to_pylist()]
    frame["score"] = table["score"].to_numpy(zero_copy_only=False)
    return frame


def monitor(
    root: Path,
    model: str,
    window: str = "1D",
    version: int | None = None,
    reference: Reference | None = None,
    thresholds: Mapping[str, Any] | None = None,
    since: Any = None,
    drift: Callable[..., pd.DataFrame] | None = None,
    min_rows: int = 50,
) -> pd.DataFrame:
    """One row per window of ``model``'s logged predictions; see the module docstring."""
    import pandas as pd

    try:
        step = pd.tseries.frequencies.to_offset(window)
    except (ValueError, TypeError):
        raise InvalidInputError(f"window={window!r} is not a time span; write '1D', '6h' or '30min'") from None
    table = read_predictions(root, model, version)
    if reference is not None and version is None:  # the version the reference describes
        import pyarrow.compute as pc

        table = table.filter(pc.equal(table["model_version"], reference.version))
    frame = decoded_frame(table) if table.num_rows else None
    ambiguous = 0
    if frame is not None:
        # Outcomes go to the rows they name, by position in the one table read: a request id a client used
        # twice must not carry one prediction's outcome to the other.
        matched = join(table, read_outcomes(root, model))
        ambiguous = int(matched.attrs.get("ambiguous", 0))
        outcome = pd.Series(matched["outcome"].to_numpy(dtype=object), index=matched["row"].to_numpy(dtype="int64"))
        frame["outcome"] = outcome.reindex(frame.index)
    if since is not None:
        try:
            start = pd.Timestamp(since)
        except (ValueError, TypeError):
            raise InvalidInputError(
                f"since={since!r} is not a time; write e.g. 2026-11-01 or 2026-11-01T09:00"
            ) from None
        if pd.isna(start):
            raise InvalidInputError("since= is a missing time")
    if since is not None and frame is not None:
        start = start.tz_localize("UTC") if start.tzinfo is None else start.tz_convert("UTC")
        frame = frame[frame["at"] >= start]
    limits = _thresholds(thresholds, reference, root, model)
    columns = ["window_start", "window_end", "predictions", "outcomes", "feature_psi_max", "drifting_feature"]
    columns += ["prediction_psi", "feature_ks_max", "prediction_ks", *(_metric_names(reference)), "status", "reasons"]
    if frame is None or frame.empty:
        report = pd.DataFrame(columns=columns)
        report.attrs.update(_attrs(root, model, reference, limits), ambiguous_outcomes=ambiguous, min_rows=min_rows)
        return report
    frame["window_start"] = frame["at"].dt.floor(step) if _fixed(step) else frame["at"].dt.to_period(step).dt.start_time
    rows = []
    inputs = reference.inputs if reference is not None else []
    for start, part in frame.groupby("window_start", sort=True):
        row: dict[str, Any] = {"window_start": start, "window_end": start + step, "predictions": len(part)}
        known = part[part["outcome"].notna()]
        row["outcomes"] = len(known)
        row.update(_drift(part, reference, drift, min_rows))
        row.update(_performance(known, reference))
        row["status"], row["reasons"] = _status(row, limits)
        rows.append(row)
    report = pd.DataFrame(rows)
    per_input = [f"{m}.{i}" for m in ("psi", "ks") for i in inputs if f"{m}.{i}" in report.columns]
    report = report[[c for c in columns if c in report.columns] + per_input]
    # Outcomes naming more than one logged prediction are left out of the performance figures, and counted.
    report.attrs.update(_attrs(root, model, reference, limits), ambiguous_outcomes=ambiguous, min_rows=min_rows)
    return report


def deciding_window(report: pd.DataFrame) -> tuple[int | None, str]:
    """The row whose status stands for the model now, and a note when it is not the newest window.

    The newest window, unless drift is measured (the training data was saved)
    and it holds fewer than ``min_rows`` predictions, so has no drift figures:
    a day's first few requests would read ``ok`` and hide an alert. Then it is
    the newest window with enough predictions. ``None`` for an empty report.
    """
    if report.empty:
        return None, ""
    newest = len(report) - 1
    least = int(report.attrs.get("min_rows", 0))
    if not report.attrs.get("has_training_data") or int(report["predictions"].iloc[newest]) >= least:
        return newest, ""
    full = [i for i, n in enumerate(report["predictions"]) if int(n) >= least]
    if not full:
        return newest, f"every window has fewer than {least} predictions, so no drift figures"
    start = report["window_start"].iloc[newest]
    return full[-1], (
        f"the newest window ({start}) has {int(report['predictions'].iloc[newest])} predictions, fewer than "
        f"{least}, so no drift figures yet"
    )


def _fixed(step: Any) -> bool:
    try:
        _ = step.nanos
    except ValueError:
        return False
    return True


def _metric_names(reference: Reference | None) -> list[str]:
    if reference is None:
        return ["accuracy", "auc", "rmse", "mae"]
    return ["accuracy", "auc"] if reference.task == "classifier" else ["rmse", "mae"]


def _attrs(
    root: Path, model: str, reference: Reference | None, limits: dict[str, tuple[float, float]]
) -> dict[str, Any]:
    stats = saved_stats(root, model, reference.version if reference is not None else None)
    return {
        "model": model,
        "reference_version": reference.version if reference is not None else None,
        "has_training_data": reference is not None and reference.frame is not None,
        "thresholds": limits,
        "dropped": stats.get("dropped", 0),
        "failed": stats.get("failed", 0),
    }


def _drift(
    part: pd.DataFrame, reference: Reference | None, drift: Callable[..., pd.DataFrame] | None, min_rows: int
) -> dict[str, Any]:
    import pandas as pd

    out: dict[str, Any] = {
        "feature_psi_max": math.nan,
        "drifting_feature": None,
        "prediction_psi": math.nan,
        "feature_ks_max": math.nan,
        "prediction_ks": math.nan,
    }
    if reference is None or reference.frame is None or drift is None or len(part) < min_rows:
        return out
    present = [i for i in reference.inputs if i in part.columns]
    current = part[present].reset_index(drop=True)
    base = reference.frame[present]
    for column in present:  # the log holds JSON values: give them the training data's types back
        with contextlib.suppress(ValueError, TypeError):
            current[column] = current[column].astype(base[column].dtype)
    # An input with no value at all in the window has no PSI or KS: an outage, said as such (not left out).
    out["empty_inputs"] = [c for c in present if current[c].isna().all() and base[c].notna().any()]
    report = drift(base, current, columns=present)
    psi = dict(zip(report["feature"], report["psi"], strict=True))
    ks = dict(zip(report["feature"], report["ks_statistic"], strict=True))
    for column in present:
        out[f"psi.{column}"] = float(psi.get(column, math.nan))
        out[f"ks.{column}"] = float(ks.get(column, math.nan))  # NaN for a categorical input: KS needs an order
    finite = {k: v for k, v in psi.items() if isinstance(v, float) and math.isfinite(v)}
    if finite:
        worst = max(finite, key=lambda k: finite[k])
        out["feature_psi_max"], out["drifting_feature"] = finite[worst], worst
    finite_ks = {k: float(v) for k, v in ks.items() if isinstance(v, float) and math.isfinite(v)}
    if finite_ks:
        widest = max(finite_ks, key=lambda k: finite_ks[k])
        out["feature_ks_max"], out["ks_feature"] = finite_ks[widest], widest  # ks_feature: for the reasons only
    if reference.predictions is not None:
        scored = part["score"].notna().all() and reference.positive is not None
        values = part["score"] if scored else pd.to_numeric(part["prediction"], errors="coerce")
        if values.notna().all():
            shown = drift(
                pd.DataFrame({"prediction": reference.predictions.astype("float64")}),
                pd.DataFrame({"prediction": values.astype("float64").to_numpy()}),
            )
            out["prediction_psi"] = float(shown["psi"].iloc[0])
            out["prediction_ks"] = float(shown["ks_statistic"].iloc[0])
    return out


def _performance(known: pd.DataFrame, reference: Reference | None) -> dict[str, Any]:
    task = reference.task if reference is not None else _guess_task(known)
    out = {"accuracy": math.nan, "auc": math.nan} if task == "classifier" else {"rmse": math.nan, "mae": math.nan}
    if known.empty:
        return out
    truth = [json.loads(t) for t in known["outcome"]]
    predicted = list(known["prediction"])
    if task == "classifier":
        out["accuracy"] = float(np.mean([p == t for p, t in zip(predicted, truth, strict=True)]))
        if reference is not None and reference.positive is not None and known["score"].notna().all():
            out["auc"] = _auc(np.asarray([t == reference.positive for t in truth]), known["score"].to_numpy())
    else:
        try:
            err = np.asarray(predicted, dtype="float64") - np.asarray(truth, dtype="float64")
        except (TypeError, ValueError):
            return out
        out["rmse"], out["mae"] = float(np.sqrt(np.mean(err**2))), float(np.mean(np.abs(err)))
    return out


def _guess_task(known: pd.DataFrame) -> str:
    values = known["prediction"].tolist()
    return "regressor" if values and all(isinstance(v, float) for v in values) else "classifier"


def _auc(positive: np.ndarray, scores: np.ndarray) -> float:
    """The area under the ROC curve (Mann-Whitney U); NaN when only one class is present."""
    from scipy.stats import rankdata

    n_pos = int(positive.sum())
    n_neg = len(positive) - n_pos
    if n_pos == 0 or n_neg == 0:
        return math.nan
    ranks = rankdata(scores)
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def parse_thresholds(texts: Sequence[str]) -> dict[str, tuple[float, float]]:
    """``["psi=0.2,0.3", "auc=0.8,0.7"]`` (the command line's form) as ``{"psi": (0.2, 0.3), ...}``.

    Only the form is checked here; :func:`monitor` checks the names and that alert is worse than warn.
    """
    thresholds = {}
    for text in texts:
        measure, sep, pair = text.partition("=")
        try:
            warn, alert = (float(v) for v in pair.split(","))
        except ValueError:
            raise InvalidInputError(f"--threshold {text!r}: write NAME=WARN,ALERT, e.g. psi=0.1,0.25") from None
        if not sep or not measure.strip():
            raise InvalidInputError(f"--threshold {text!r}: write NAME=WARN,ALERT, e.g. psi=0.1,0.25")
        if measure.strip() in thresholds:
            raise InvalidInputError(f"--threshold {measure.strip()}=... is given twice")
        thresholds[measure.strip()] = (warn, alert)
    return thresholds


def _thresholds(
    given: Mapping[str, Any] | None, reference: Reference | None, root: Path, model: str
) -> dict[str, tuple[float, float]]:
    limits = dict(DEFAULT_THRESHOLDS)
    limits.update(_training_limits(reference, root, model))
    for name, pair in (given or {}).items():
        if name not in MEASURES:
            raise InvalidInputError(f"no threshold named {name!r}; use {', '.join(MEASURES)}")
        try:
            warn, alert = (float(v) for v in pair)
        except (TypeError, ValueError):
            raise InvalidInputError(f"thresholds[{name!r}] is (warn, alert), two numbers; got {pair!r}") from None
        worse = (alert <= warn) if name in LOWER_IS_WORSE else (alert >= warn)
        if not worse:
            raise InvalidInputError(f"thresholds[{name!r}]: the alert level must be worse than the warning level")
        limits[name] = (warn, alert)
    return limits


def _training_limits(reference: Reference | None, root: Path, model: str) -> dict[str, tuple[float, float]]:
    """Performance thresholds from the model's own performance on its training data, when it holds the label."""
    if reference is None or reference.frame is None or reference.predictions is None:
        return {}
    names = set(read_outcomes(root, model)["name"].to_pylist())
    label = next((n for n in names if n in reference.frame.columns), None)
    if label is None:
        return {}
    truth = reference.frame[label].to_numpy()
    if reference.task == "classifier":
        limits = {}
        if reference.positive is not None:
            auc = _auc(np.asarray([plain_value(t) == reference.positive for t in truth]), reference.predictions)
            if math.isfinite(auc):
                limits["auc"] = (auc - 0.05, auc - 0.10)
        return limits
    try:
        err = reference.predictions.astype("float64") - truth.astype("float64")
    except (TypeError, ValueError):
        return {}
    rmse, mae = float(np.sqrt(np.mean(err**2))), float(np.mean(np.abs(err)))
    return {"rmse": (rmse * 1.10, rmse * 1.25), "mae": (mae * 1.10, mae * 1.25)}


def _status(row: Mapping[str, Any], limits: Mapping[str, tuple[float, float]]) -> tuple[str, str]:
    level, reasons = 0, []
    for name in row.get("empty_inputs") or []:
        level = 2
        reasons.append(f"{name} has no values in {row['predictions']} predictions")
    measures = {
        "psi": [("feature_psi_max", row.get("feature_psi_max")), ("prediction_psi", row.get("prediction_psi"))],
        "ks": [("feature_ks_max", row.get("feature_ks_max")), ("prediction_ks", row.get("prediction_ks"))],
    }
    for metric in ("accuracy", "auc", "rmse", "mae"):
        measures[metric] = [(metric, row.get(metric))]
    for name, (warn, alert) in limits.items():
        for shown, value in measures.get(name, []):
            if value is None or not isinstance(value, float | int) or not math.isfinite(value):
                continue
            lower = name in LOWER_IS_WORSE
            crossed = (
                2
                if (value <= alert if lower else value >= alert)
                else 1
                if (value <= warn if lower else value >= warn)
                else 0
            )
            if crossed:
                level = max(level, crossed)
                what = f"{shown} {value:.3g}"
                named = {"feature_psi_max": "drifting_feature", "feature_ks_max": "ks_feature"}.get(shown)
                if named and row.get(named):
                    what += f" ({row[named]})"
                reasons.append(f"{what} {'<=' if lower else '>='} {alert if crossed == 2 else warn:.3g}")
    return ("ok", "warn", "alert")[level], "; ".join(reasons)
