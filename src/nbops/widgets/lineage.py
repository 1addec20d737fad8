"""``%lineage NAME[@V]``: where an artifact came from and what was made from it, drawn; pick a node for details."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import ipywidgets as w

from nbops.widgets import data
from nbops.widgets.base import Graph, Panel, escape, pairs_html

if TYPE_CHECKING:
    from nbops.store import Store


class LineagePanel(Panel):
    """``%lineage``: what ``ref`` was made from (left) and what was made from it (right); click a node for details."""

    title = "Lineage"

    def __init__(self, store: Store, ref: str) -> None:
        super().__init__(store)
        self.ref = ref
        self.graph = Graph(name="lineage")
        self.detail = w.HTML()
        self.detail.add_class("nbops-detail")
        self.body.children = [
            w.HTML(
                "<small>Raw data on the left, what was made from it to the right. Click a node for its details.</small>"
            ),
            self.graph,
            self.detail,
        ]
        self._nodes: dict[str, dict[str, Any]] = {}
        self.on(self.graph, "selected", self.show_node)
        self.refresh()

    def load(self) -> None:
        """Read the lineage again and redraw it, keeping the selected node when it is still there."""
        graph = data.lineage_graph(self.store, self.ref)
        drawn = data.layout(graph)
        self._nodes = {n["id"]: n for n in drawn["nodes"]}
        with self.graph.hold_sync():
            for key in ("nodes", "edges", "width", "height", "node_width", "node_height"):
                setattr(self.graph, key, drawn[key])
            if self.graph.selected not in self._nodes:
                self.graph.selected = graph["root"]
        self.status.value = f"{escape(self.ref)}: {len(drawn['nodes'])} artifacts, {len(drawn['edges'])} links"
        self.show_node()

    def show_node(self) -> None:
        """Show the selected node's details and what it was made from and used by."""
        node = self._nodes.get(self.graph.selected)
        if node is None:
            self.detail.value = ""
            return
        rows = data.node_details(self.store, node)
        parents = [e["parent"] for e in self.graph.edges if e["child"] == node["id"]]
        children = [e["child"] for e in self.graph.edges if e["parent"] == node["id"]]
        rows += [
            ("made from", ", ".join(parents) or "nothing recorded"),
            ("used by", ", ".join(children) or "nothing yet"),
        ]
        self.detail.value = f'<div data-nbops="lineage-detail"><h4>{escape(node["id"])}</h4>{pairs_html(rows)}</div>'
