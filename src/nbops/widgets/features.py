"""``%features [GROUP]``: groups → versions → commits → features with statistics and histograms."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import ipywidgets as w

from nbops.widgets import charts, data
from nbops.widgets.base import Chart, Pager, Panel, Table, escape, pairs_html

if TYPE_CHECKING:
    import pandas as pd

    from nbops.store import Store

GROUP_COLUMNS = ["group", "version", "keys", "event time", "features", "commits", "rows", "online", "updated"]
COMMIT_COLUMNS = ["commit", "rows", "inserted", "updated", "rows visible", "created", "author", "validated"]
STAT_COLUMNS = ["kind", "type", "count", "nulls", "distinct", "min", "max", "mean", "std"]


class FeaturesPanel(Panel):
    """``%features``: the feature groups, searchable; pick a version for its commits, a commit for its details.

    A commit's details are its feature statistics and histograms, the
    group's expectations, its last validation and its lineage.
    """

    title = "Feature groups"

    def __init__(self, store: Store, group: str | None = None) -> None:
        super().__init__(store)
        self.search = w.Text(
            placeholder="search groups, features, descriptions",
            description="search",
            continuous_update=True,
            layout=w.Layout(width="28em"),
        )
        self.search.add_class("nbops-search")
        self._wanted = group
        if group:
            self.search.value = group
        self.pager = Pager(lambda _page: self.guard(self.show_groups))
        self.groups = Table(name="feature-groups", empty="no feature groups match")
        self.commits = Table(name="feature-commits", empty="pick a group version above")
        self.detail = w.HTML()
        self.detail.add_class("nbops-detail")
        self.histograms = Chart("histograms")
        self.lineage_button = w.Button(
            description="Lineage of this commit", icon="sitemap", disabled=True, layout=w.Layout(width="auto")
        )
        self.lineage_box = w.VBox()
        self.lineage_button.on_click(lambda _: self.guard(self.show_lineage))
        self.body.children = [
            self.search,
            self.pager,
            self.groups,
            w.HTML("<b>Commits</b>"),
            self.commits,
            self.detail,
            self.histograms,
            self.lineage_button,
            self.lineage_box,
        ]
        self._all: pd.DataFrame | None = None
        self._shown: pd.DataFrame | None = None
        self._needle = ""
        self.on(self.search, "value", self.filter_groups)
        self.on(self.groups, "selected", self.load_commits)
        self.on(self.commits, "selected", self.show_commit)
        self.refresh()

    def load(self) -> None:
        """Read the groups again; with a group asked for, select its latest version."""
        if self._wanted:
            self.store.feature_commits(self._wanted)  # a clear error for a bad or unknown name
        self._all = self.store.feature_groups()
        self.status.value = f"{self._all['group'].nunique():,} groups, {len(self._all):,} versions"
        self.filter_groups()
        if self._wanted:
            versions = self._all[self._all["group"] == self._wanted]["version"]
            self.groups.selected = [f"{self._wanted}:{versions.max()}"]  # its latest version
            self._wanted = None

    def filter_groups(self) -> None:
        """Keep the group versions whose name, features or description contain the search text."""
        if self._all is None:
            return
        needle = self.search.value.strip().lower()
        frame = self._all
        if needle:
            haystack = (frame["group"] + " " + frame["features"] + " " + frame["description"].fillna("")).str.lower()
            frame = frame[haystack.str.contains(needle, regex=False)]
        self._shown = frame.reset_index(drop=True)
        self.pager.set_total(len(self._shown), first_page=needle != self._needle)
        self._needle = needle
        self.show_groups()

    def show_groups(self) -> None:
        """Fill the groups table with the current page."""
        if self._shown is None:
            return
        start, stop = self.pager.bounds()
        page = self._shown.iloc[start:stop]
        rows = [
            [r.group, r.version, r.keys, r.event_time, r.features, r.commits, f"{r.rows:,}", r.online, r.updated]
            for r in page.itertuples()
        ]
        self.groups.show(GROUP_COLUMNS, rows, [f"{r.group}:{r.version}" for r in page.itertuples()])

    def _picked_group(self) -> tuple[str, int] | None:
        if not self.groups.selected:
            return None
        group, _, version = self.groups.selected[0].rpartition(":")
        return group, int(version)

    def load_commits(self) -> None:
        """List the picked group version's commits, newest first, and select the latest."""
        picked = self._picked_group()
        if picked is None:
            self.commits.show(COMMIT_COLUMNS, [], [])
            self.show_commit()
            return
        frame = self.store.feature_commits(*picked).iloc[::-1]  # newest first
        rows = [
            [
                r.commit,
                f"{r.rows:,}",
                f"{r.inserted:,}",
                f"{r.updated:,}",
                f"{r.total_rows:,}",
                r.created,
                r.author,
                r.validated,
            ]
            for r in frame.itertuples()
        ]
        ids = [str(c) for c in frame["commit"]]
        self.commits.show(COMMIT_COLUMNS, rows, ids)
        if ids and self.commits.selected != ids[:1]:
            self.commits.selected = ids[:1]  # the latest commit
        else:
            self.show_commit()

    def show_commit(self) -> None:
        """Show the picked commit's details and feature histograms."""
        picked = self._picked_group()
        self.lineage_box.children = []
        if picked is None or not self.commits.selected:
            self.detail.value = ""
            self.histograms.show(None)
            self.lineage_button.disabled = True
            return
        detail = data.group_detail(self.store, picked[0], picked[1], int(self.commits.selected[0]))
        self.detail.value = detail_html(detail)
        self.histograms.show(charts.small_histograms(detail["statistics"]), f"histograms of {detail['ref']}")
        self.lineage_button.disabled = False
        self._ref = detail["ref"]

    def show_lineage(self) -> None:
        """Open a lineage panel of the picked commit below it."""
        from nbops.widgets.lineage import LineagePanel

        nested = LineagePanel(self.store, self._ref)
        nested.add_class("nbops-nested")
        self.lineage_box.children = [nested]


def detail_html(detail: dict[str, Any]) -> str:
    """A commit's details (from :func:`nbops.widgets.data.group_detail`) as HTML, every value escaped."""
    stats = detail["statistics"]
    head = "".join(f"<th>{escape(c)}</th>" for c in ["feature", *STAT_COLUMNS])
    body = "".join(
        "<tr>" + f"<th>{escape(name)}</th>" + "".join(f"<td>{escape(s.get(c))}</td>" for c in STAT_COLUMNS) + "</tr>"
        for name, s in stats.items()
    )
    rules = detail["expectations"]
    rules_html = (
        pairs_html([(r.get("rule", "rule"), _rule_text(r)) for r in rules], "expectations")
        if rules
        else "<i>none declared</i>"
    )
    validation = detail["validation"]
    if validation is None:
        validation_html = "<i>not validated (no expectations when it was written)</i>"
    else:
        results = [
            (r.get("label") or r.get("rule"), "passed" if r.get("passed") else f"failed: {r.get('message', '')}")
            for r in validation.get("results", [])
        ]
        validation_html = pairs_html([("result", validation.get("summary", "")), *results], "validation")
    context = detail["context"]
    written_by = [(k, context[k]) for k in ("notebook", "cell_id", "pipeline") if context.get(k)]
    return (
        f'<div data-nbops="feature-detail"><h4>{escape(detail["ref"])}</h4>'
        + pairs_html(
            [
                ("online", detail["online"]),
                ("description", detail["description"] or ""),
                ("digest", detail["digest"]),
                ("rows written", f"{detail['rows']:,}"),
                ("rows visible", f"{detail['total_rows']:,}"),
                ("created", detail["created"]),
                ("author", detail["author"] or ""),
                *written_by,
            ],
            "commit",
        )
        + f'<h5>features</h5><table class="nbops-values" data-nbops="feature-statistics"><tr>{head}</tr>{body}</table>'
        + f"<h5>expectations</h5>{rules_html}<h5>last validation</h5>{validation_html}"
        + "<h5>lineage</h5>"
        + pairs_html(
            [
                ("made from", ", ".join(detail["parents"]) or "nothing recorded"),
                ("used by", ", ".join(detail["children"]) or "nothing yet"),
            ],
            "feature-lineage",
        )
        + "</div>"
    )


def _rule_text(rule: dict[str, Any]) -> str:
    return ", ".join(f"{k}={data.text(v)}" for k, v in rule.items() if k != "rule")
