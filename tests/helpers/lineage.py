"""Walking a store's lineage graph upward."""

from __future__ import annotations

from nbops.store import Store


def ancestors(store: Store, ref: str) -> set[str]:
    """Every node upstream of ``ref`` in the store's lineage."""
    graph = store.lineage(ref)
    parents: dict[str, set[str]] = {}
    for edge in graph["edges"]:
        parents.setdefault(edge["child"], set()).add(edge["parent"])
    found: set[str] = set()
    todo = [graph["root"]]
    while todo:
        for parent in parents.get(todo.pop(), ()):
            if parent not in found:
                found.add(parent)
                todo.append(parent)
    return found
