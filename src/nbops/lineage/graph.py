"""The lineage graph of an artifact: its ancestors and descendants, from the edges every write records."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from nbops.core import lineage
from nbops.errors import InvalidInputError

if TYPE_CHECKING:
    from nbops.store import Store


def lineage_graph(store: Store, ref: str) -> dict[str, Any]:
    """The graph of ancestors and descendants of an artifact, as plain data.

    ``ref`` is ``name@v`` (snapshot), ``group:v@c`` (feature commit),
    ``run:<id>`` or ``model:<name>@<v>``.  Returns ``{"root": node, "nodes":
    [{"id", "kind", "ref"}], "edges": [{"parent", "child"}]}``.
    """
    root = _parse_artifact(ref)
    nodes: dict[tuple[str, str], dict[str, str]] = {}
    edges: list[dict[str, str]] = []

    def node_id(a: tuple[str, str]) -> str:
        return f"{a[0]}:{a[1]}"

    def add(a: tuple[str, str]) -> None:
        nodes.setdefault(a, {"id": node_id(a), "kind": a[0], "ref": a[1]})

    add(root)
    for direction in ("up", "down"):
        frontier, seen = [root], {root}
        while frontier:
            current = frontier.pop()
            nxt = (
                lineage.parents(store.catalog, current)
                if direction == "up"
                else lineage.children(store.catalog, current)
            )
            for other in nxt:
                add(other)
                parent, child = (other, current) if direction == "up" else (current, other)
                edge = {"parent": node_id(parent), "child": node_id(child)}
                if edge not in edges:
                    edges.append(edge)
                if other not in seen:
                    seen.add(other)
                    frontier.append(other)
    return {"root": node_id(root), "nodes": list(nodes.values()), "edges": edges}


def _parse_artifact(ref: str) -> tuple[str, str]:
    if not isinstance(ref, str) or not ref:
        raise InvalidInputError(f"{ref!r} is not an artifact reference")
    for prefix in ("run:", "model:", "pipeline:", "snapshot:", "feature_commit:", "training_set:"):
        if ref.startswith(prefix):
            return (prefix[:-1], ref[len(prefix) :])
    if ":" in ref and "@" in ref:
        return ("feature_commit", ref)
    if "@" in ref:
        return ("snapshot", ref)
    raise InvalidInputError(
        f"{ref!r} is not an artifact reference; write name@3 (snapshot), group:1@2 (feature commit), "
        "run:<id>, model:<name>@<version>, pipeline:<stem>@<version> or training_set:<digest>"
    )
