"""``%monitor MODEL``: a served model's predictions, drift and performance per time window, with a status.

The panel draws the report of :meth:`nbops.Store.monitor` (one row per
window; see :mod:`nbops.predictions.monitor`): a header with the latest
window's status as a coloured badge, charts of the prediction count, of the
largest feature PSI and the prediction PSI against their thresholds, and of
the performance measures once outcomes are logged, then the windows, newest
first.  Pick a window to see its reasons and the PSI of every model input.

    >>> MonitorPanel(store, "fraud@champion", window="6h")  # doctest: +SKIP
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import ipywidgets as w

from nbops.widgets import charts
from nbops.widgets.base import Chart, Panel, Table, escape, pairs_html
from nbops.widgets.data import text

if TYPE_CHECKING:
    import pandas as pd

    from nbops.store import Store

#: Badge and chart colour of each status, worst last.
STATUS_COLOURS = {"ok": "#2e7d32", "warn": "#ef6c00", "alert": "#c62828"}
#: The performance measures a report may hold (classifiers: accuracy, auc; regressors: rmse, mae).
METRICS = ("accuracy", "auc", "rmse", "mae")
DRIFT_MEASURES = ("feature_psi_max", "prediction_psi")
FIXED_COLUMNS = [
    "window start (UTC)",
    "window end (UTC)",
    "status",
    "predictions",
    "outcomes",
    "feature PSI max",
    "drifting feature",
    "prediction PSI",
]
_THRESHOLD_COLOURS = {"warn": STATUS_COLOURS["warn"], "alert": STATUS_COLOURS["alert"]}


def _number(value: Any) -> float | None:
    """A finite number as a float (numpy scalars included), else None."""
    if isinstance(value, bool) or value is None:
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _iso(value: Any) -> str:
    """A window bound as ISO text (UTC), the form Vega-Lite reads as a time."""
    return value.isoformat() if isinstance(value, dt.datetime) else str(value)


def badge(status: str) -> str:
    """A status word on a coloured background; ``data-status`` holds the word."""
    colour = STATUS_COLOURS.get(status, "#757575")
    word = escape(status)
    return (
        f'<span class="nbops-status nbops-status-{word}" data-status="{word}" '
        f'style="background:{colour};color:#fff;border-radius:3px;padding:1px 7px;font-weight:bold">{word}</span>'
    )


# -- charts ----------------------------------------------------------------------------------
# Field names are fixed words; the model's input names only travel as data values.
_THRESHOLDS_NOTE = "dashed lines: warning (orange) and alert (red) thresholds"


def _ms(value: Any) -> float:
    """A window bound as milliseconds since the epoch, the form a Vega-Lite time scale's domain takes."""
    return float(value.timestamp() * 1000) if isinstance(value, dt.datetime) else float("nan")


def _time_axis(windows: Sequence[Mapping[str, Any]], field: str) -> dict[str, Any]:
    """The x encoding every chart shares: UTC, from the first window's start to the last one's end."""
    domain = [_ms(windows[0]["window_start"]), _ms(windows[-1]["window_end"])] if windows else []
    scale: dict[str, Any] = {"type": "utc"}
    if all(math.isfinite(v) for v in domain):
        scale["domain"] = domain
    return {"field": field, "type": "temporal", "title": "window (UTC)", "scale": scale}


def _window_fields(row: Mapping[str, Any]) -> dict[str, Any]:
    start, end = row["window_start"], row["window_end"]
    middle = start + (end - start) / 2 if isinstance(start, dt.datetime) else start
    return {"window": f"{text(start)} – {text(end)}", "start": _iso(start), "end": _iso(end), "middle": _iso(middle)}


def _layered(title: str, layers: list[dict[str, Any]], subtitle: str = "") -> dict[str, Any]:
    return {
        "$schema": charts.SCHEMA,
        "title": {"text": title, "subtitle": subtitle} if subtitle else title,
        "width": 420,
        "height": 140,
        "layer": layers,
        "config": {"view": {"stroke": None}},
    }


def _threshold_layers(limits: Mapping[str, Any], measures: Sequence[str]) -> list[dict[str, Any]]:
    """A dashed rule per warning and alert level of each measure in ``limits``."""
    layers = []
    for measure in measures:
        pair = limits.get(measure)
        if pair is None:
            continue
        for level, value in zip(("warn", "alert"), pair, strict=False):
            number = _number(value)
            if number is None:
                continue
            layers.append(
                {
                    "data": {"values": [{"threshold": f"{measure} {level}", "value": number}]},
                    "mark": {"type": "rule", "strokeDash": [5, 4], "color": _THRESHOLD_COLOURS[level], "tooltip": True},
                    "encoding": {"y": {"field": "value", "type": "quantitative"}},
                }
            )
    return layers


def volume_chart(windows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """One bar per window spanning it: how many predictions were logged, coloured by the window's status."""
    data = [{**_window_fields(r), "predictions": int(r["predictions"]), "status": str(r["status"])} for r in windows]
    layer = {
        "data": {"values": data},
        "mark": {"type": "bar", "stroke": "#fff", "strokeWidth": 1},
        "encoding": {
            "x": _time_axis(windows, "start"),
            "x2": {"field": "end"},
            "y": {"field": "predictions", "type": "quantitative", "title": "predictions"},
            "y2": {"datum": 0},
            "color": {
                "field": "status",
                "type": "nominal",
                "title": "status",
                "scale": {"domain": list(STATUS_COLOURS), "range": list(STATUS_COLOURS.values())},
            },
            "tooltip": [{"field": "window"}, {"field": "predictions"}, {"field": "status"}],
        },
    }
    return _layered("predictions per window", [layer])


def measures_chart(
    title: str,
    windows: Sequence[Mapping[str, Any]],
    measures: Sequence[str],
    limits: Mapping[str, Any],
    axis: str,
    limited: Sequence[str] | None = None,
) -> dict[str, Any]:
    """A line per measure through the windows' middles (missing values left out), with the threshold rules
    of ``limited`` (default: of the measures themselves)."""
    data = [
        {**_window_fields(r), "measure": m, "value": v}
        for r in windows
        for m in measures
        if (v := _number(r.get(m))) is not None
    ]
    line = {
        "data": {"values": data},
        "mark": {"type": "line", "point": True},
        "encoding": {
            "x": _time_axis(windows, "middle"),
            "y": {"field": "value", "type": "quantitative", "title": axis},
            "color": {"field": "measure", "type": "nominal", "title": None, "scale": {"domain": list(measures)}},
            "tooltip": [{"field": "window"}, {"field": "measure"}, {"field": "value", "format": ".4g"}],
        },
    }
    rules = _threshold_layers(limits, measures if limited is None else limited)
    return _layered(title, [line, *rules], _THRESHOLDS_NOTE if rules else "")


# -- the panel -------------------------------------------------------------------------------
class MonitorPanel(Panel):
    """``%monitor``: ``store.monitor(model, window, ...)`` over time; pick a window to see why it has its status.

    ``model`` is ``"fraud"`` (the newest version with logged predictions), ``"fraud/2"`` or
    ``"fraud@champion"`` (the version the alias names when the panel reads the
    store: a refresh follows the alias).  ``thresholds`` and ``since`` are
    :meth:`~nbops.Store.monitor`'s.
    """

    title = "Monitor"

    def __init__(
        self,
        store: Store,
        model: str,
        window: str = "1D",
        since: dt.datetime | str | None = None,
        thresholds: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(store)
        self.model, self.window, self.since, self.thresholds = model, window, since, thresholds
        self.report: pd.DataFrame | None = None
        self.summary = w.HTML()
        self.message = w.HTML()
        self.volume = Chart("monitor-volume")
        self.drift = Chart("monitor-drift")
        self.performance = Chart("monitor-performance")
        self.windows = Table(name="monitor-windows", empty="no windows")
        self.detail = w.HTML()
        self.detail.add_class("nbops-detail")
        self.body.children = [
            self.summary,
            self.message,
            self.volume,
            self.drift,
            self.performance,
            w.HTML("<small>Newest window first. Pick a window to see its reasons and the PSI of each input.</small>"),
            self.windows,
            self.detail,
        ]
        self._rows: dict[str, dict[str, Any]] = {}
        self._inputs: list[str] = []
        self.on(self.windows, "selected", self.explain)
        self.refresh()

    def load(self) -> None:
        """Compute the report again (an alias is looked up again) and show it."""
        self.show(self.store.monitor(self.model, window=self.window, thresholds=self.thresholds, since=self.since))

    def show(self, report: pd.DataFrame) -> None:
        """Draw a report of :meth:`~nbops.Store.monitor`: header, charts, windows; the latest window picked."""
        self.report = report
        attrs = report.attrs
        model = str(attrs.get("model") or self.model)
        windows: list[dict[str, Any]] = report.to_dict("records")
        metrics = [m for m in METRICS if m in report.columns]
        inputs = [c for c in report.columns if str(c).startswith("psi.")]
        limits: Mapping[str, Any] = attrs.get("thresholds") or {}

        version = attrs.get("reference_version")
        shown = f"{model} v{version}" if version is not None else f"{model} (every version)"
        from nbops.predictions.monitor import deciding_window  # the report is here: pandas is loaded

        row, note = deciding_window(report)
        latest = str(windows[row]["status"]) if row is not None else None
        self.status.value = (
            f'<span data-nbops="monitor-header"><b>{escape(shown)}</b> · windows of {escape(self.window)} · '
            + (f"latest: {badge(latest)}" if latest is not None else "no predictions yet")
            + (f' <span data-nbops="monitor-note">({escape(note)})</span>' if note else "")
            + "</span>"
        )
        self.summary.value = self._summary(windows, attrs)
        if not windows:
            since = f" since {text(self.since)}" if self.since is not None else ""
            self.message.value = (
                f'<div data-nbops="monitor-empty" style="padding:6px 0">No predictions logged for '
                f"<b>{escape(model)}</b>{escape(since)} yet: predict with <code>store.predict</code> or "
                "<code>nbops serve</code>, then refresh.</div>"
            )
        else:
            self.message.value = ""
        self.volume.show(volume_chart(windows) if windows else None, "predictions per window")
        has_drift = any(_number(r.get(m)) is not None for r in windows for m in DRIFT_MEASURES)
        self.drift.show(
            measures_chart("drift against the training data", windows, DRIFT_MEASURES, limits, "PSI", ["psi"])
            if has_drift
            else None,
            "PSI per window",
        )
        has_outcomes = sum(int(r["outcomes"]) for r in windows) > 0
        self.performance.show(
            measures_chart("performance where outcomes are known", windows, metrics, limits, "value")
            if has_outcomes and metrics
            else None,
            "performance per window",
        )

        newest_first = windows[::-1]
        ids = [_iso(r["window_start"]) for r in newest_first]
        self._rows = dict(zip(ids, newest_first, strict=True))
        columns = [*FIXED_COLUMNS, *metrics, "reasons"]
        rows = [
            [
                r["window_start"],
                r["window_end"],
                r["status"],
                r["predictions"],
                r["outcomes"],
                r["feature_psi_max"],
                r["drifting_feature"],
                r["prediction_psi"],
                *(r[m] for m in metrics),
                r["reasons"],
            ]
            for r in newest_first
        ]
        self.windows.show(columns, rows, ids, marks=[r["status"] for r in newest_first])
        self._inputs = inputs
        if ids and not self.windows.selected:
            self.windows.selected = ids[:1]  # the latest window
        else:
            self.explain()

    def _summary(self, windows: Sequence[Mapping[str, Any]], attrs: Mapping[str, Any]) -> str:
        counts = {s: sum(1 for r in windows if r["status"] == s) for s in STATUS_COLOURS}
        rows: list[tuple[str, Any]] = [
            (
                "windows",
                (f"{len(windows)}: " + ", ".join(f"{n} {s}" for s, n in counts.items())) if windows else "none",
            ),
            ("predictions", sum(int(r["predictions"]) for r in windows)),
            ("outcomes", sum(int(r["outcomes"]) for r in windows)),
            (
                "prediction log",
                f"{attrs.get('dropped', 0)} dropped (queue full), {attrs.get('failed', 0)} lost to write errors",
            ),
        ]
        if attrs.get("ambiguous_outcomes"):
            rows.append(
                (
                    "outcomes left out",
                    f"{attrs['ambiguous_outcomes']} name more than one logged prediction (a request id used twice)",
                )
            )
        if self.since is not None:
            rows.append(("since", self.since))
        limits = attrs.get("thresholds") or {}
        rows += [(f"threshold {name}", f"warn {pair[0]:.3g}, alert {pair[1]:.3g}") for name, pair in limits.items()]
        note = ""
        if not attrs.get("has_training_data", True):
            note = (
                '<div data-nbops="monitor-no-training-data" style="color:#8a6d00">No saved training data in the '
                "model's lineage, so no drift figures: build its training data with "
                "<code>store.training_data(..., save_as=...)</code> and train on that.</div>"
            )
        return note + pairs_html(rows, "monitor-summary")

    def explain(self) -> None:
        """Show the picked window: its status, reasons, counts, measures and the PSI and KS of every input."""
        row = self._rows.get(self.windows.selected[0]) if self.windows.selected else None
        if row is None:
            self.detail.value = ""
            return
        pairs: list[tuple[str, Any]] = [
            ("window", f"{text(row['window_start'])} – {text(row['window_end'])} (UTC)"),
            ("status", row["status"]),
            ("reasons", row["reasons"] or "none"),
            ("predictions", row["predictions"]),
            ("outcomes", row["outcomes"]),
            ("prediction PSI", row["prediction_psi"]),
            ("prediction KS", row.get("prediction_ks")),
            *((m, row[m]) for m in METRICS if m in row),
            *((f"PSI {c.removeprefix('psi.')}", row.get(c)) for c in self._inputs),
            *((f"KS {c.removeprefix('psi.')}", row.get(f"ks.{c.removeprefix('psi.')}")) for c in self._inputs),
        ]
        self.detail.value = f"<h4>Window {badge(str(row['status']))}</h4>" + pairs_html(pairs, "monitor-window")
