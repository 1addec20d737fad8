"""Module-level verbs: ``nbops.track``, ``nbops.log``, ``nbops.register_model``.

They work on the store most recently opened in this process (in a notebook,
the kernel's store), or on ``store=`` when given.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from nbops.core.session import (  # the process state, for the surfaces above
    active,
    active_runs,
    clear_reads,
    context,
    note_read,
    pipeline,
    set_context,
    start,
    stop,
    take_reads,
)
from nbops.errors import NbopsError

__all__ = [
    "active",
    "active_runs",
    "clear_reads",
    "context",
    "log",
    "note_read",
    "pipeline",
    "register_model",
    "set_context",
    "start",
    "stop",
    "take_reads",
    "track",
]

if TYPE_CHECKING:
    from nbops.store import Store
    from nbops.tracking.experiments import Run


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
    from nbops.tracking import experiments as tracking

    with tracking.track(_store(store), experiment, run_name, register_model, autolog, tags) as run:
        yield run


def log(step: int | None = None, **metrics: float) -> None:
    """Buffer metrics in the active nbops run; written as one batch when it ends."""
    run = active()
    if run is None:
        raise NbopsError("no nbops run is active; use %%track, %track start or `with nbops.track(...)`")
    run.log(step=step, **metrics)


def register_model(name: str, run_id: str | None = None, alias: str | None = None, store: Store | None = None) -> Any:
    """Register the model a run logged; ``alias="champion"`` makes ``models:/name@champion`` work."""
    from nbops.tracking import experiments as tracking

    return tracking.register_model(_store(store), name, run_id=run_id, alias=alias)
