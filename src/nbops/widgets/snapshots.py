"""``%snapshots [NAME]``: a dataset's versions; pick one to preview it, two to see their diff."""

from __future__ import annotations

from typing import TYPE_CHECKING

import ipywidgets as w

from nbops.widgets import data
from nbops.widgets.base import Pager, Panel, Table, escape, frame_html, pairs_html

if TYPE_CHECKING:
    import pandas as pd

    from nbops.core.refs import ColumnChange
    from nbops.store import Store

COLUMNS = ["version", "digest", "rows", "columns", "created", "message", "author"]


class SnapshotsPanel(Panel):
    """``%snapshots``: a dataset's versions, newest first; pick one to preview it, two to see their diff."""

    title = "Snapshots"

    def __init__(self, store: Store, name: str | None = None) -> None:
        super().__init__(store)
        self.dataset = w.Dropdown(description="dataset", options=[], layout=w.Layout(width="22em"))
        self.diff_keys = w.Text(
            placeholder="key columns, e.g. id (optional)",
            description="diff keys",
            continuous_update=False,
            layout=w.Layout(width="22em"),
        )
        self.pager = Pager(lambda _page: self.guard(self.show_page))
        self.versions = Table(
            name="snapshot-versions",
            multiple=True,
            max_selected=2,
            empty="no versions: snapshot a DataFrame with %snapshot df --name NAME",
        )
        self.detail = w.HTML()
        self.detail.add_class("nbops-detail")
        self.body.children = [
            w.HBox([self.dataset, self.diff_keys]),
            w.HTML("<small>Pick one version to preview it, two to compare them.</small>"),
            self.pager,
            self.versions,
            self.detail,
        ]
        self._history: pd.DataFrame | None = None
        self._history_of: str | None = None
        self._wanted = name
        self.on(self.dataset, "value", self.load_history)
        self.on(self.versions, "selected", self.show_selection)
        self.on(self.diff_keys, "value", self.show_selection)
        self.refresh()

    def load(self) -> None:
        """Read the dataset names again and show the chosen dataset's versions."""
        names = list(self.store.datasets()["name"])
        wanted = self._wanted or self.dataset.value
        if self._wanted and self._wanted not in names:
            from nbops.errors import NotFoundError

            raise NotFoundError(f"no dataset named {self._wanted!r}; known: {', '.join(names) or 'none yet'}")
        with self.quietly():
            self.dataset.options = names
            self.dataset.value = wanted if wanted in names else (names[0] if names else None)
        self._wanted = None
        self.load_history()

    def load_history(self) -> None:
        """Read the chosen dataset's versions, newest first; picking another dataset clears the selection."""
        name = self.dataset.value
        if name is None:
            self._history = None
            self.pager.set_total(0)
            self.versions.show(COLUMNS, [], [])
            self.status.value = "the store holds no datasets yet"
            return
        self._history = self.store.history(name).iloc[::-1].reset_index(drop=True)  # newest first
        other_dataset = name != self._history_of
        self.pager.set_total(len(self._history), first_page=other_dataset)
        if other_dataset:
            with self.quietly():
                self.versions.selected = []  # version numbers of another dataset mean other data
        self._history_of = name
        self.status.value = f"{escape(name)}: {len(self._history):,} versions"
        self.show_page()
        self.show_selection()

    def show_page(self) -> None:
        """Fill the versions table with the current page."""
        if self._history is None:
            return
        start, stop = self.pager.bounds()
        page = self._history.iloc[start:stop]
        rows = [
            [r.version, r.digest[:12], f"{r.rows:,}", r.columns, r.created, r.message, r.author]
            for r in page.itertuples()
        ]
        self.versions.show(COLUMNS, rows, [str(v) for v in page["version"]])

    def show_selection(self) -> None:
        """Preview the one picked version, or diff the two picked (matched by the diff keys, if given)."""
        picked = sorted(int(v) for v in self.versions.selected)
        name = self.dataset.value
        if not picked or name is None:
            self.detail.value = ""
        elif len(picked) == 1:
            self.detail.value = self._preview_html(name, picked[0])
        else:
            self.detail.value = self._diff_html(name, picked[0], picked[1])

    def _preview_html(self, name: str, version: int) -> str:
        ref = self.store.ref(name, version)
        frame = data.preview(self.store, name, version)
        return (
            f'<div data-nbops="snapshot-preview"><h4>{escape(ref.ref)}: first {len(frame)} of {ref.rows:,} rows</h4>'
            f"{frame_html(frame)}</div>"
        )

    def _diff_html(self, name: str, a: int, b: int) -> str:
        keys = [k.strip() for k in self.diff_keys.value.split(",") if k.strip()]
        sample = data.diff_sample(self.store, name, a, b, keys)
        d = sample.diff
        counts = [("rows", f"{d.rows_a:,} → {d.rows_b:,}"), ("added", f"{d.added:,}"), ("removed", f"{d.removed:,}")]
        if keys:
            counts.append(("changed", f"{d.changed:,}"))
        counts.append(("unchanged", f"{d.unchanged:,}"))
        schema = [(c.column, _column_change(c)) for c in d.schema_changes]
        parts = [
            f'<div data-nbops="snapshot-diff"><h4>{escape(name)} v{a} → v{b}</h4>',
            pairs_html(counts, "diff-counts"),
            "<h5>schema changes</h5>" + (pairs_html(schema, "diff-schema") if schema else "<i>none</i>"),
        ]
        if keys:
            parts.append(f"<h5>changed rows (sample, by {escape(', '.join(keys))})</h5>" + frame_html(sample.changed))
        else:
            parts.append("<small>Rows are compared whole; give key columns to see edits as changed rows.</small>")
        parts.append("<h5>added rows (sample)</h5>" + frame_html(sample.added))
        parts.append("<h5>removed rows (sample)</h5>" + frame_html(sample.removed))
        parts.append("</div>")
        return "".join(parts)


def _column_change(change: ColumnChange) -> str:
    if change.change == "added":
        return f"added ({change.after})"
    if change.change == "removed":
        return f"removed (was {change.before})"
    return f"type {change.before} → {change.after}"
