"""What this process is doing, shared by every store object in it.

The kernel layer (or an exported pipeline) says which notebook, cell or
pipeline stage is running; every store notes what it reads, so that the next
write names those reads as its parents; nbops runs in progress hear every read
and write; and the stores opened here are remembered, newest last, for
:func:`nbops.store.current`.  All of it is process-wide because a cell may read
through one store object and write through another (``nbops.open().load(...)``
then ``%%features``).
"""

from __future__ import annotations

import weakref
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from nbops.store import Store
    from nbops.tracking.experiments import Run

#: nbops runs in progress in this process, innermost last.
_active: list[Run] = []
#: Artifacts read since the last write (or cell start), per store folder.
#: Process-wide because a cell may read through one store object and write
#: through another (``nbops.open().load(...)`` then ``%%features``).
_reads: dict[Path, list[tuple[str, str]]] = {}


_context: dict[str, Any] = {}


def context() -> dict[str, Any]:
    """A copy of what the kernel layer said is running (notebook, cell; pipeline and stage inside ``pipeline``)."""
    return dict(_context)


def set_context(values: Mapping[str, Any]) -> None:
    """The kernel layer says which notebook and cell is running."""
    _context.clear()
    _context.update(values)


@contextmanager
def pipeline(ref: str, stage: str) -> Iterator[None]:
    """Mark everything written inside as made by an exported pipeline (``pipeline=<stem>@<version>``).

    Exported modules wrap their body in this; it shows in the lineage of every
    feature commit, and as tags on every run, written inside.
    """
    previous = dict(_context)
    _context.update({"pipeline": ref, "stage": stage})
    try:
        yield
    finally:
        _context.clear()
        _context.update(previous)


def note_read(root: Path, kind: str, ref: str) -> None:
    """Remember that ``kind`` ``ref`` of the store at ``root`` was read: a parent of the next write there."""
    reads = _reads.setdefault(root, [])
    if (kind, ref) not in reads:
        reads.append((kind, ref))


def take_reads(root: Path) -> list[tuple[str, str]]:
    """The reads noted for the store at ``root`` since its last write, forgotten as they are returned."""
    return _reads.pop(root, [])


def clear_reads() -> None:
    """A new cell starts: lineage is "what the same cell read"."""
    _reads.clear()


#: Every store opened in this process, oldest first (weak: a store nobody holds is gone).
opened: list[weakref.ref[Store]] = []


def remember(store: Store) -> None:
    """A store was opened: the newest one is :func:`nbops.store.current`."""
    opened.append(weakref.ref(store))


def newest() -> Store | None:
    """The store most recently opened in this process that is still open (closed ones are forgotten)."""
    while opened:
        store = opened[-1]()
        if store is not None and not store.closed:
            return store
        opened.pop()
    return None


def open_stores() -> Iterator[Store]:
    """The stores of this process that are still open, newest first."""
    for ref in reversed(opened):
        store = ref()
        if store is not None and not store.closed:
            yield store


def start(run: Run) -> None:
    """Called by tracking.start_run: the run now hears every read and write."""
    _active.append(run)


def stop(run: Run) -> None:
    """Called by tracking.end_run: the run hears no more reads and writes."""
    if run in _active:
        _active.remove(run)


def active() -> Run | None:
    """The innermost nbops run in progress in this process, or None."""
    return _active[-1] if _active else None


def active_runs() -> list[Run]:
    """Every nbops run in progress in this process (they all record reads and writes)."""
    return list(_active)
