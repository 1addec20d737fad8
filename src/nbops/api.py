"""Module-level verbs: ``nbops.track``, ``nbops.log``, ``nbops.register_model``.

They work on the store most recently opened in this process (in a notebook,
the kernel's store), or on ``store=`` when given.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nbops.errors import NbopsError

if TYPE_CHECKING:
    from nbops.store import Store
    from nbops.tracking import Run

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


def _store(store: Store | None) -> Store:
    from nbops.store import current

    return store if store is not None else current()


@contextmanager
def track(
    experiment: str | None = None,
    run_name: str | None = None,
    register_model: str | None = None,
    autolog: bool = False,
    tags: Mapping[str, str] | None = None,
    store: Store | None = None,
) -> Iterator[Run]:
    """Run a block inside an MLflow run that records the data it reads and writes.

    >>> with nbops.track(experiment="fraud", run_name="rf") as run:   # doctest: +SKIP
    ...     nbops.log(auc=0.91)
    """
    from nbops import tracking

    with tracking.track(_store(store), experiment, run_name, register_model, autolog, tags) as run:
        yield run


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


def log(step: int | None = None, **metrics: float) -> None:
    """Buffer metrics in the active nbops run; written as one batch when it ends."""
    run = active()
    if run is None:
        raise NbopsError("no nbops run is active; use %%track, %track start or `with nbops.track(...)`")
    run.log(step=step, **metrics)


def register_model(name: str, run_id: str | None = None, alias: str | None = None, store: Store | None = None) -> Any:
    """Register the model a run logged; ``alias="champion"`` makes ``models:/name@champion`` work."""
    from nbops import tracking

    return tracking.register_model(_store(store), name, run_id=run_id, alias=alias)
