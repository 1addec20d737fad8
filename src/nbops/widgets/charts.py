"""Vega-Lite specifications for the panels' charts.

JupyterLab renders ``application/vnd.vegalite.v5+json`` with the Vega it ships
(no CDN, no extra front-end package), and the same output shows in VS Code and
in exported HTML with nbconvert's renderers.  The specs are plain dicts, so
their content is tested in Python.  Field names in a spec are fixed words
(``value``, ``bin``, ...): user text only ever travels as data values, which
Vega draws as text, never as field paths or expressions.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

MIME = "application/vnd.vegalite.v5+json"
SCHEMA = "https://vega.github.io/schema/vega-lite/v5.json"  # an identifier; never fetched
#: Output metadata for JupyterLab's renderer: SVG (text stays text, in the page
#: and in screenshots) and no actions menu (its "Open in Vega Editor" is a web link).
METADATA = {MIME: {"embed_options": {"renderer": "svg", "actions": False}}}


def _base(title: str, data: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    return {"$schema": SCHEMA, "title": title, "data": {"values": data}, "config": {"view": {"stroke": None}}, **extra}


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def metric_by_run(metric: str, runs: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """One bar per run: the metric's value."""
    data = [
        {"run": f"{r['run_name']} ({r['run_id'][:6]})", "value": r["metrics"][metric]}
        for r in runs
        if _finite(r["metrics"].get(metric))
    ]
    return _base(
        f"{metric} by run",
        data,
        mark={"type": "bar", "tooltip": True},
        encoding={
            "x": {"field": "run", "type": "nominal", "sort": None, "title": "run"},
            "y": {"field": "value", "type": "quantitative", "title": metric},
        },
        width={"step": 40},
        height=220,
    )


def metric_against_param(metric: str, param: str, runs: Sequence[dict[str, Any]], numeric: bool) -> dict[str, Any]:
    """One point per run: the metric against a parameter (numeric axis when every value is a number)."""
    data = [
        {
            "run": f"{r['run_name']} ({r['run_id'][:6]})",
            "param": float(r["params"][param]) if numeric else r["params"][param],
            "value": r["metrics"][metric],
        }
        for r in runs
        if _finite(r["metrics"].get(metric)) and param in r["params"]
    ]
    return _base(
        f"{metric} against {param}",
        data,
        mark={"type": "point", "filled": True, "size": 80, "tooltip": True},
        encoding={
            "x": {"field": "param", "type": "quantitative" if numeric else "nominal", "title": param},
            "y": {"field": "value", "type": "quantitative", "title": metric},
            "color": {"field": "run", "type": "nominal", "title": "run"},
        },
        width=320,
        height=220,
    )


def _histogram_rows(feature: str, histogram: dict[str, Any], sides: Sequence[tuple[str, str]]) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    numeric = histogram["kind"] in ("numeric", "datetime")
    bins = histogram["bins"]
    for key, label in sides:
        for i, share in enumerate(histogram[key]):
            if numeric:
                rows.append({"feature": feature, "side": label, "start": bins[i], "end": bins[i + 1], "share": share})
            else:
                rows.append({"feature": feature, "side": label, "bin": bins[i], "share": share})
    return rows


def overlaid_histogram(feature: str, histogram: dict[str, Any], reference: str, current: str) -> dict[str, Any]:
    """Both sides' shares per bin, drawn over each other."""
    numeric = histogram["kind"] in ("numeric", "datetime")
    data = _histogram_rows(feature, histogram, [("reference", reference), ("current", current)])
    color = {"field": "side", "type": "nominal", "title": None, "scale": {"domain": [reference, current]}}
    if numeric:
        encoding = {
            "x": {"field": "start", "type": "quantitative", "bin": {"binned": True}, "title": feature},
            "x2": {"field": "end"},
            "y": {"field": "share", "type": "quantitative", "stack": None, "title": "share of rows"},
            "color": color,
        }
    else:
        encoding = {
            "x": {"field": "bin", "type": "nominal", "sort": None, "title": feature},
            "xOffset": {"field": "side", "type": "nominal"},
            "y": {"field": "share", "type": "quantitative", "title": "share of rows"},
            "color": color,
        }
    return _base(
        f"{feature}: {reference} vs {current}",
        data,
        mark={"type": "bar", "opacity": 0.55, "tooltip": True},
        encoding=encoding,
        width=360,
        height=180,
    )


def small_histograms(statistics: dict[str, Any]) -> dict[str, Any]:
    """A small histogram per feature from stored statistics (numeric: bins; others: top values)."""
    charts = []
    for feature, stats in statistics.items():
        histogram = stats.get("histogram")
        if histogram and histogram.get("counts"):
            edges, counts = histogram["edges"], histogram["counts"]
            data = [{"start": edges[i], "end": edges[i + 1], "count": c} for i, c in enumerate(counts)]
            encoding = {
                "x": {"field": "start", "type": "quantitative", "bin": {"binned": True}, "title": None},
                "x2": {"field": "end"},
                "y": {"field": "count", "type": "quantitative", "title": None},
            }
        elif stats.get("top"):
            data = [{"value": str(v), "count": n} for v, n in stats["top"][:10]]
            encoding = {
                "x": {"field": "value", "type": "nominal", "sort": "-y", "title": None},
                "y": {"field": "count", "type": "quantitative", "title": None},
            }
        else:
            continue
        charts.append(
            {
                "title": {"text": feature, "fontSize": 11},
                "data": {"values": data},
                "mark": {"type": "bar", "tooltip": True},
                "encoding": encoding,
                "width": 140,
                "height": 60,
            }
        )
    return {"$schema": SCHEMA, "concat": charts, "columns": 4, "config": {"view": {"stroke": None}}}


def bundle(spec: dict[str, Any], description: str) -> dict[str, Any]:
    """A display bundle: the chart, and a text line for front ends that cannot draw it."""
    return {MIME: spec, "text/plain": description}
