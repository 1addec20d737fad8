"""Named fault points for crash and disk tests, armed by ``NBOPS_FAULT``.

Kill points.  ``NBOPS_FAULT=<point>`` kills the process with SIGKILL there.
The reliability tests set it in a writer process to prove that a ``kill -9``
at each step of a write leaves the store consistent::

    NBOPS_FAULT=before_catalog_commit python -c "import nbops; ..."

Points, in the order a snapshot or feature registration reaches them:

- ``after_temp_write``: a column file is written to ``tmp/``, not yet fsynced;
- ``before_publish``: it is fsynced, not yet linked under its digest;
- ``before_catalog_commit``: every object is published and the catalog
  transaction holds all its rows, not yet committed;
- ``after_catalog_commit``: the transaction committed, the call has not returned.

``between_published_commits`` is reached by ``publish`` after each Delta
version it adds (:mod:`nbops.featurestore.publish`).

Error points.  ``NBOPS_FAULT=<point>:ENOSPC`` (or ``:EIO``) makes the write
of a run's state at ``<point>`` fail with that ``OSError``, as a full or
failing disk would, every time it is reached.  Points, in the order a run
reaches them (:mod:`nbops.tracking.experiments`):

- ``run_start``: the new run's row in the tracking database;
- ``run_live_file``: the run's file in ``live_runs/``;
- ``run_cell_source``: the cell's source, the artifact ``cell.py``;
- ``run_metrics``: the metrics buffered by ``nbops.log``, written at the end;
- ``run_inputs``: the run's dataset inputs;
- ``run_lineage``: the lineage edges in the catalog;
- ``run_status``: the end-of-run status (the first attempt; the retry as
  FAILED goes through).

The variable is read once, at import; when it is unset, :func:`reached` and
:func:`io_error` are a comparison with an empty string.  It is a test hook,
not a setting.
"""

from __future__ import annotations

import errno
import os
import signal

FAULT_ENV = "NBOPS_FAULT"
POINTS = ("after_temp_write", "before_publish", "before_catalog_commit", "after_catalog_commit")
IO_POINTS = (
    "run_start",
    "run_live_file",
    "run_cell_source",
    "run_metrics",
    "run_inputs",
    "run_lineage",
    "run_status",
)
IO_ERRORS = {"ENOSPC": errno.ENOSPC, "EIO": errno.EIO}

_armed = os.environ.get(FAULT_ENV, "")


def reached(point: str) -> None:
    """Kill this process with SIGKILL if ``NBOPS_FAULT`` names ``point``."""
    if _armed and _armed == point:
        os.kill(os.getpid(), signal.SIGKILL)


def io_error(point: str, path: object = None) -> None:
    """Raise ``OSError(ENOSPC)`` or ``OSError(EIO)`` about ``path`` if ``NBOPS_FAULT`` is ``<point>:<error>``."""
    if _armed and _armed.startswith(point + ":"):
        number = IO_ERRORS.get(_armed[len(point) + 1 :])
        if number is not None:
            raise OSError(number, os.strerror(number), None if path is None else str(path))
