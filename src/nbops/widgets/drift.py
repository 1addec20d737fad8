"""``%drift GROUP A B``: PSI and KS per feature, drifting features first, with overlaid histograms."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import ipywidgets as w

from nbops.widgets import charts
from nbops.widgets.base import Chart, Panel, Table, escape

if TYPE_CHECKING:
    from nbops.store import Store

COLUMNS = [
    "feature",
    "kind",
    "drifting",
    "PSI",
    "KS statistic",
    "KS p-value",
    "max share change",
    "n reference",
    "n current",
]


class DriftPanel(Panel):
    """``%drift``: PSI and KS per feature of ``group`` between ``a`` and ``b`` (as ``store.drift``), drifting first.

    Pick a feature to see its reference and current distributions overlaid.
    """

    title = "Drift"

    def __init__(self, store: Store, group: str, a: Any = None, b: Any = None) -> None:
        super().__init__(store)
        self.group, self.a, self.b = group, a, b
        self.features = Table(name="drift-features", empty="no comparable features")
        self.chart = Chart("drift")
        self.body.children = [
            w.HTML("<small>Drifting features first. Pick a feature to see both distributions.</small>"),
            self.features,
            self.chart,
        ]
        self._report: Any = None
        self.on(self.features, "selected", self.draw)
        self.refresh()

    def load(self) -> None:
        """Compute the drift report again and list its features, selecting the most drifting one."""
        report = self.store.drift(self.group, self.a, self.b)
        self._report = report
        rows = [
            [
                r.feature,
                r.kind,
                r.drifting,
                r.psi,
                r.ks_statistic,
                r.ks_pvalue,
                r.max_share_change,
                r.n_reference,
                r.n_current,
            ]
            for r in report.itertuples()
        ]
        ids = [str(f) for f in report["feature"]]
        self.features.show(COLUMNS, rows, ids)
        drifting = int(report["drifting"].sum())
        self.status.value = (
            f"{escape(report.attrs.get('reference', ''))} → {escape(report.attrs.get('current', ''))}: "
            f"{drifting} of {len(report)} features drifting"
        )
        if ids and not self.features.selected:
            self.features.selected = ids[:1]  # the most drifting feature
        else:
            self.draw()

    def draw(self) -> None:
        """Draw the selected feature's reference and current histograms, overlaid."""
        if self._report is None or not self.features.selected:
            self.chart.show(None)
            return
        feature = self.features.selected[0]
        histogram = self._report.attrs.get("histograms", {}).get(feature)
        if histogram is None:
            self.chart.show(None)
            return
        reference = str(self._report.attrs.get("reference", "reference"))
        current = str(self._report.attrs.get("current", "current"))
        if reference == current:
            reference, current = f"{reference} (reference)", f"{current} (current)"
        self.chart.show(charts.overlaid_histogram(feature, histogram, reference, current), f"{feature} distributions")
