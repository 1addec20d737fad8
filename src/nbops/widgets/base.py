"""Building blocks of the panels: a selectable table, a clickable graph, a pager, a chart, a panel.

State lives in traits (what is shown, what is selected); the two custom
views (``static/table.js``, ``static/graph.js``) only draw it and report
clicks back, in a few dozen lines each through anywidget, bundled with the
package so nothing is fetched from the internet.  Everything a user typed
reaches the page as text: the custom views set ``textContent``, and the HTML
we write escapes every value (``html.escape`` or pandas' ``to_html``).
"""

from __future__ import annotations

import html
import traceback
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anywidget
import ipywidgets as w
import traitlets as t

from nbops.errors import NbopsError
from nbops.widgets import charts
from nbops.widgets.data import PAGE_SIZE, page_bounds, text

if TYPE_CHECKING:
    import pandas as pd

    from nbops.store import Store

_STATIC = Path(__file__).parent / "static"


def escape(value: Any) -> str:
    """``value`` as the text a table shows, escaped for HTML text and attribute values."""
    return html.escape(text(value), quote=True)


def frame_html(frame: pd.DataFrame, max_rows: int = 20) -> str:
    """A small table of values, escaped by pandas."""
    if frame is None or not len(frame.columns) or not len(frame):
        return "<i>none</i>"
    return str(
        frame.head(max_rows).to_html(index=False, escape=True, border=0, na_rep="", classes="nbops-values", max_cols=30)
    )


def pairs_html(rows: Sequence[tuple[str, Any]], name: str = "") -> str:
    """A two-column table of labels and values, escaped."""
    body = "".join(f"<tr><th>{escape(k)}</th><td>{escape(v)}</td></tr>" for k, v in rows)
    attr = f' data-nbops="{escape(name)}"' if name else ""
    return f'<table class="nbops-pairs"{attr}>{body}</table>'


class Table(anywidget.AnyWidget):
    """Rows of text; clicking a row selects it (``selected`` holds row ids)."""

    _esm = _STATIC / "table.js"
    _css = _STATIC / "panels.css"
    name = t.Unicode("").tag(sync=True)
    columns = t.List(t.Unicode()).tag(sync=True)
    rows = t.List(t.List()).tag(sync=True)
    row_ids = t.List(t.Unicode()).tag(sync=True)
    selected = t.List(t.Unicode()).tag(sync=True)
    multiple = t.Bool(False).tag(sync=True)
    #: With ``multiple``, picking one more drops the oldest pick beyond this many (0: no limit).
    max_selected = t.Int(0).tag(sync=True)
    empty = t.Unicode("nothing here yet").tag(sync=True)
    #: A word per row ("" for none), set as the row's ``data-mark`` for the style sheet (e.g. alert, warn).
    row_marks = t.List(t.Unicode()).tag(sync=True)

    def show(
        self,
        columns: Sequence[str],
        rows: Sequence[Sequence[Any]],
        ids: Sequence[str],
        marks: Sequence[str] | None = None,
    ) -> None:
        """Replace the rows; selections of rows still shown are kept."""
        ids = [str(i) for i in ids]
        keep = [s for s in self.selected if s in set(ids)]
        with self.hold_sync():
            self.columns = [str(c) for c in columns]
            self.rows = [[text(v) for v in row] for row in rows]
            self.row_marks = [str(m) for m in marks] if marks is not None else []
            self.row_ids = ids
            if keep != self.selected:
                self.selected = keep


class Graph(anywidget.AnyWidget):
    """A left-to-right graph of nodes at given positions; clicking a node selects it."""

    _esm = _STATIC / "graph.js"
    _css = _STATIC / "panels.css"
    name = t.Unicode("").tag(sync=True)
    nodes = t.List(t.Dict()).tag(sync=True)
    edges = t.List(t.Dict()).tag(sync=True)
    selected = t.Unicode("").tag(sync=True)
    width = t.Int(400).tag(sync=True)
    height = t.Int(100).tag(sync=True)
    node_width = t.Int(190).tag(sync=True)
    node_height = t.Int(36).tag(sync=True)


class Pager(w.HBox):  # type: ignore[misc]  # ipywidgets has no type information
    """Previous / next over ``total`` rows in pages of ``size``; calls ``on_change(page)``."""

    def __init__(self, on_change: Callable[[int], None], size: int = PAGE_SIZE) -> None:
        self.page = 0
        self.size = size
        self.total = 0
        self._on_change = on_change
        self.previous = w.Button(description="◀ newer", layout=w.Layout(width="auto"))
        self.next = w.Button(description="older ▶", layout=w.Layout(width="auto"))
        self.label = w.HTML()
        self.previous.on_click(lambda _: self.go(self.page - 1))
        self.next.on_click(lambda _: self.go(self.page + 1))
        super().__init__([self.previous, self.label, self.next])
        self.add_class("nbops-pager")

    def set_total(self, total: int, first_page: bool = False) -> None:
        """New rows to page over: stay on this page (a refresh) or go to the first (new contents)."""
        self.total = total
        self.page = 0 if first_page else min(self.page, max(0, (total - 1) // self.size))
        self._update()

    def bounds(self) -> tuple[int, int]:
        """[start, stop) of the rows on the current page."""
        return page_bounds(self.page, self.total, self.size)

    def go(self, page: int) -> None:
        """Turn to ``page`` (clamped to the pages there are); calls ``on_change`` when the page changed."""
        pages = max(1, -(-self.total // self.size))
        page = min(max(page, 0), pages - 1)
        if page != self.page:
            self.page = page
            self._update()
            self._on_change(page)

    def _update(self) -> None:
        start, stop = self.bounds()
        self.label.value = f"{start + 1 if self.total else 0:,}–{stop:,} of {self.total:,}"
        self.previous.disabled = self.page == 0
        self.next.disabled = stop >= self.total


class Chart(w.Output):  # type: ignore[misc]  # ipywidgets has no type information
    """An output area holding one Vega-Lite chart; ``spec`` is what it shows."""

    def __init__(self, name: str = "") -> None:
        super().__init__()
        self.spec: dict[str, Any] | None = None
        self.add_class("nbops-chart")
        if name:
            self.add_class(f"nbops-chart-{name}")

    def show(self, spec: dict[str, Any] | None, description: str = "chart") -> None:
        """Show the Vega-Lite ``spec`` (None: nothing); ``description`` is the text for front ends that cannot draw."""
        self.spec = spec
        if spec is None:
            self.outputs: tuple[dict[str, Any], ...] = ()
        else:
            # Set the outputs directly: this works with or without a kernel capturing display().
            self.outputs = (
                {"output_type": "display_data", "data": charts.bundle(spec, description), "metadata": charts.METADATA},
            )


class Panel(w.VBox):  # type: ignore[misc]  # ipywidgets has no type information
    """A titled panel with a refresh control; subclasses fill ``body`` in ``load``.

    Every callback runs through :meth:`guard`: an error shows in the panel, in
    words (and, for a bug, with its traceback below), instead of vanishing in
    the kernel log.
    """

    title = "nbops"

    def __init__(self, store: Store) -> None:
        self.store = store
        self.last_error: BaseException | None = None
        self._quiet = False
        self.refresh_button = w.Button(
            description="Refresh", icon="refresh", tooltip="read the store again", layout=w.Layout(width="auto")
        )
        self.refresh_button.add_class("nbops-refresh")
        self.refresh_button.on_click(lambda _: self.refresh())
        self.status = w.HTML()
        self.error = w.HTML()
        self.trace = w.Output()
        self.body = w.VBox()
        header = w.HBox([w.HTML(f"<b>{escape(self.title)}</b>"), self.refresh_button, self.status])
        super().__init__([header, self.error, self.trace, self.body])
        self.add_class("nbops-panel")
        self.add_class(f"nbops-panel-{type(self).__name__.lower()}")

    def refresh(self) -> None:
        """Read the store again and redraw."""
        self.guard(self.load)

    def load(self) -> None:  # pragma: no cover - every panel overrides it
        """Read the store and fill ``body``; every panel defines it."""
        raise NotImplementedError

    def guard(self, action: Callable[..., Any], *args: Any) -> Any:
        """Run ``action(*args)`` and return its result; on an error, show it in the panel and return None."""
        try:
            result = action(*args)
        except Exception as exc:  # noqa: BLE001 - shown in the panel: a callback has nowhere else to report
            self.last_error = exc
            self.error.value = (
                f'<div class="nbops-error" style="color:#b00020">{escape(type(exc).__name__)}: {escape(exc)}</div>'
            )
            if not isinstance(exc, NbopsError):
                self.trace.append_stderr("".join(traceback.format_exception(exc)))
            return None
        self.error.value = ""
        return result

    def on(self, widget: w.Widget, names: str, handler: Callable[[], None]) -> None:
        """Call ``handler`` (guarded) when a trait of ``widget`` changes, unless :meth:`quietly`."""
        widget.observe(lambda _change: None if self._quiet else self.guard(handler), names=names)

    @contextmanager
    def quietly(self) -> Iterator[None]:
        """Change controls without their handlers running (the caller redraws once after)."""
        self._quiet = True
        try:
            yield
        finally:
            self._quiet = False
