"""``%runs [EXPERIMENT]``: runs with params, metrics, status and inputs; pick runs to compare on a chart."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

import ipywidgets as w

from nbops.widgets import charts, data
from nbops.widgets.base import Chart, Panel, Table, escape, frame_html

if TYPE_CHECKING:
    from nbops.store import Store

#: Where ``nbops ui`` serves the MLflow UI unless told otherwise.
DEFAULT_UI_URL = "http://127.0.0.1:5000"
ALL = "*"
BY_RUN = "(each run)"
#: Metric and param columns shown in the table; every one is in the comparison below it.
TABLE_METRICS = 4
TABLE_PARAMS = 4


def ui_url() -> str:
    """Where the MLflow UI is: ``NBOPS_UI_URL``, else a tracking server the user set, else ``nbops ui``'s."""
    from urllib.parse import urlsplit, urlunsplit

    from nbops.core.paths import URI_ENV, user_set_uri

    if os.environ.get("NBOPS_UI_URL"):
        return os.environ["NBOPS_UI_URL"].rstrip("/")
    tracking = os.environ.get(URI_ENV, "")
    if user_set_uri() and tracking.startswith(("http://", "https://")):
        # The server serves its own UI; the link carries no credentials (the browser asks).
        parts = urlsplit(tracking)
        host = parts.hostname or ""
        netloc = f"{host}:{parts.port}" if parts.port else host
        return urlunsplit(parts._replace(netloc=netloc)).rstrip("/")
    return DEFAULT_UI_URL


class RunsPanel(Panel):
    """``%runs``: MLflow runs of one experiment or all, newest first; pick runs to compare them on a chart."""

    title = "Runs"

    def __init__(self, store: Store, experiment: str | None = None) -> None:
        super().__init__(store)
        self.experiment = w.Dropdown(description="experiment", options=[], layout=w.Layout(width="24em"))
        self.previous = w.Button(description="◀ newer", layout=w.Layout(width="auto"))
        self.next = w.Button(description="older ▶", layout=w.Layout(width="auto"))
        self.page_label = w.HTML()
        self.previous.on_click(lambda _: self.guard(self.turn, -1))
        self.next.on_click(lambda _: self.guard(self.turn, 1))
        self.runs = Table(name="runs", multiple=True, empty="no runs yet: run a cell with %%track")
        self.metric = w.Dropdown(description="metric", options=[], layout=w.Layout(width="20em"))
        self.axis = w.Dropdown(description="against", options=[BY_RUN], layout=w.Layout(width="20em"))
        self.chart = Chart("runs")
        self.comparison = w.HTML()
        self.comparison.add_class("nbops-detail")
        self.link = w.HTML()
        self.body.children = [
            w.HBox([self.experiment, self.link]),
            w.HBox([self.previous, self.page_label, self.next]),
            w.HTML("<small>Pick runs to compare them.</small>"),
            self.runs,
            w.HBox([self.metric, self.axis]),
            self.chart,
            self.comparison,
        ]
        self._tokens: list[str | None] = [None]  # the page token of each page seen so far
        self._page = 0
        self._next: str | None = None
        self._shown: dict[str, dict[str, Any]] = {}
        self._wanted = experiment
        self.on(self.experiment, "value", self.first_page)
        self.on(self.runs, "selected", self.compare)
        self.on(self.metric, "value", self.draw)
        self.on(self.axis, "value", self.draw)
        self.refresh()

    def load(self) -> None:
        """Read the experiments again and show the newest runs of the chosen one."""
        found = data.experiments(self.store)
        options = [("all experiments", ALL), *[(name, eid) for eid, name in found]]
        wanted = self.experiment.value
        if self._wanted is not None:
            matches = [eid for eid, name in found if name == self._wanted]
            if not matches:
                from nbops.errors import NotFoundError

                names = ", ".join(name for _, name in found) or "none yet"
                raise NotFoundError(f"no experiment named {self._wanted!r}; known: {names}")
            wanted, self._wanted = matches[0], None
        with self.quietly():
            self.experiment.options = options
            self.experiment.value = wanted if wanted in [v for _, v in options] else ALL
        self.first_page()

    def _ids(self) -> list[str]:
        value = self.experiment.value
        if value in (None, ALL):
            return [eid for _, eid in self.experiment.options if eid != ALL]
        return [value]

    def first_page(self) -> None:
        """Show the newest runs of the chosen experiment."""
        self._tokens, self._page = [None], 0
        self.show_page()

    def turn(self, step: int) -> None:
        """Go one page older (``step`` > 0) or newer (``step`` < 0), when there is one."""
        if step > 0 and self._next is not None:
            self._page += 1
            del self._tokens[self._page :]
            self._tokens.append(self._next)
        elif step < 0 and self._page > 0:
            self._page -= 1
        self.show_page()

    def show_page(self) -> None:
        """Fill the runs table with the current page."""
        page = data.runs_page(self.store, self._ids(), self._tokens[self._page])
        self._next = page.next_token
        self._shown = {r["run_id"]: r for r in page.runs}
        metrics, params = page.metrics[:TABLE_METRICS], page.params[:TABLE_PARAMS]
        columns = ["run", "status", "started", "seconds", "inputs", *metrics, *(f"{p} (param)" for p in params)]
        rows = [
            [
                r["run_name"],
                r["status"],
                r["start_time"],
                r["duration_s"],
                r["inputs"],
                *(r["metrics"].get(m) for m in metrics),
                *(r["params"].get(p) for p in params),
            ]
            for r in page.runs
        ]
        self.runs.show(columns, rows, [r["run_id"] for r in page.runs])
        first = self._page * data.PAGE_SIZE
        self.page_label.value = f"runs {first + 1 if page.runs else 0:,}–{first + len(page.runs):,}"
        self.previous.disabled = self._page == 0
        self.next.disabled = self._next is None
        self.status.value = f"page {self._page + 1}"
        self.link.value = self._link_html()
        self.compare()

    def _picked(self) -> list[dict[str, Any]]:
        return [self._shown[i] for i in self.runs.selected if i in self._shown]

    def compare(self) -> None:
        """Offer the picked runs' metrics and params as chart choices, and tabulate the runs side by side."""
        picked = self._picked()
        metrics = sorted({m for r in picked for m in r["metrics"]})
        params = sorted({p for r in picked for p in r["params"]})
        with self.quietly():
            metric = self.metric.value
            self.metric.options = metrics
            self.metric.value = metric if metric in metrics else (metrics[0] if metrics else None)
            axis = self.axis.value if self.axis.value in params else BY_RUN
            self.axis.options = [BY_RUN, *params]
            self.axis.value = axis
        self.link.value = self._link_html()
        self.comparison.value = self._comparison_html(picked)
        self.draw()

    def draw(self) -> None:
        """Chart the chosen metric of the picked runs, per run or against the chosen param."""
        picked = self._picked()
        metric = self.metric.value
        if not picked or not metric:
            self.chart.show(None)
            return
        if self.axis.value in (None, BY_RUN):
            spec = charts.metric_by_run(metric, picked)
        else:
            param = self.axis.value
            values = [r["params"].get(param) for r in picked if param in r["params"]]
            numeric = bool(values) and all(data.as_number(v) is not None for v in values)
            spec = charts.metric_against_param(metric, param, picked, numeric)
        self.chart.show(spec, spec["title"])

    def _comparison_html(self, picked: list[dict[str, Any]]) -> str:
        if not picked:
            return ""
        import pandas as pd

        fields: dict[str, dict[str, Any]] = {}
        for r in picked:
            column = f"{r['run_name']} ({r['run_id'][:6]})"
            fields.setdefault("status", {})[column] = r["status"]
            fields.setdefault("inputs", {})[column] = data.text(r["inputs"])
            for k, v in r["params"].items():
                fields.setdefault(f"param {k}", {})[column] = v
            for k, v in r["metrics"].items():
                fields.setdefault(f"metric {k}", {})[column] = data.text(v)
        frame = pd.DataFrame.from_dict(fields, orient="index").rename_axis("field").reset_index()
        return f'<div data-nbops="runs-comparison">{frame_html(frame, max_rows=200)}</div>'

    def _link_html(self) -> str:
        base = ui_url()
        picked = self._picked()
        if len(picked) == 1:
            run = picked[0]
            href = f"{base}/#/experiments/{run['experiment_id']}/runs/{run['run_id']}"
        elif self.experiment.value not in (None, ALL):
            href = f"{base}/#/experiments/{self.experiment.value}"
        else:
            href = f"{base}/"
        return (
            f'<a href="{escape(href)}" target="_blank" rel="noopener" data-nbops="mlflow-ui">Open in the MLflow UI</a>'
            " <small>(start it with <code>nbops ui</code>)</small>"
        )
