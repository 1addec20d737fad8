"""Where an empty %%track cell spends its time: timers wrapped around the main calls it makes."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from typing import Any


# -- breakdown of a %%track cell -----------------------------------------------------------
class Breakdown:
    """Exclusive wall time of selected functions, by wrapping them (no profiler)."""

    def __init__(self) -> None:
        self.totals: dict[str, float] = {}
        self.calls: dict[str, int] = {}
        self._stack: list[list[float]] = []  # per active timer: [child time]
        self._undo: list[Callable[[], None]] = []

    @contextlib.contextmanager
    def timer(self, label: str) -> Iterator[None]:
        self._stack.append([0.0])
        t0 = time.perf_counter()
        try:
            yield
        finally:
            elapsed = time.perf_counter() - t0
            children = self._stack.pop()[0]
            self.totals[label] = self.totals.get(label, 0.0) + elapsed - children
            self.calls[label] = self.calls.get(label, 0) + 1
            if self._stack:
                self._stack[-1][0] += elapsed

    def wrap(self, owner: Any, attr: str, label: str) -> None:
        original = getattr(owner, attr)
        is_cm = label.endswith("[cm]")
        label = label.removesuffix(" [cm]")

        if is_cm:  # a @contextmanager function: time the with-block it opens, body included

            @contextlib.contextmanager
            def wrapper(*args: Any, **kwargs: Any) -> Iterator[Any]:
                with self.timer(label), original(*args, **kwargs) as value:
                    yield value
        else:

            def wrapper(*args: Any, **kwargs: Any) -> Any:
                with self.timer(label):
                    return original(*args, **kwargs)

        setattr(owner, attr, wrapper)
        self._undo.append(lambda: setattr(owner, attr, original))

    def restore(self) -> None:
        while self._undo:
            self._undo.pop()()

    def reset(self) -> None:
        self.totals.clear()
        self.calls.clear()


def instrument(bd: Breakdown) -> None:
    import mlflow
    from mlflow.tracking._tracking_service.client import TrackingServiceClient

    from nbops.core.catalog import Catalog
    from nbops.magics import tracking as magic_tracking
    from nbops.tracking import experiments as tracking

    bd.wrap(magic_tracking, "parse_line", "magic: argument parsing")
    bd.wrap(tracking, "ensure_backend", "nbops: ensure_backend")
    bd.wrap(tracking, "experiment_id", "nbops: experiment_id (get_experiment_by_name)")
    bd.wrap(tracking, "_git_commit", "nbops: _git_commit (git rev-parse subprocess)")
    bd.wrap(tracking, "_process_started", "nbops: _process_started (psutil)")
    bd.wrap(Catalog, "write", "nbops: catalog write txns (active_runs, lineage) [cm]")
    bd.wrap(mlflow, "start_run", "mlflow.start_run")
    bd.wrap(mlflow, "log_text", "mlflow.log_text(cell.py) without get_run")
    bd.wrap(TrackingServiceClient, "_get_artifact_repo", "mlflow: artifact repo lookup (get_run)")
    bd.wrap(tracking, "_log_inputs", "nbops: _log_inputs (no inputs)")
    bd.wrap(mlflow, "end_run", "mlflow.end_run")
