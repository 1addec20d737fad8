"""Named kill points for crash tests: ``NBOPS_FAULT=<point>`` kills the process there.

The reliability tests set ``NBOPS_FAULT`` in a writer process to prove that
a ``kill -9`` at each step of a write leaves the store consistent::

    NBOPS_FAULT=before_catalog_commit python -c "import nbops; ..."

Points, in the order a snapshot or feature registration reaches them:

- ``after_temp_write``: a column file is written to ``tmp/``, not yet fsynced;
- ``before_publish``: it is fsynced, not yet linked under its digest;
- ``before_catalog_commit``: every object is published and the catalog
  transaction holds all its rows, not yet committed;
- ``after_catalog_commit``: the transaction committed, the call has not returned.

The variable is read once, at import; when it is unset, :func:`reached` is a
comparison with an empty string.  It is a test hook, not a setting.
"""

from __future__ import annotations

import os
import signal

FAULT_ENV = "NBOPS_FAULT"
POINTS = ("after_temp_write", "before_publish", "before_catalog_commit", "after_catalog_commit")

_armed = os.environ.get(FAULT_ENV, "")


def reached(point: str) -> None:
    """Kill this process with SIGKILL if ``NBOPS_FAULT`` names ``point``."""
    if _armed and _armed == point:
        os.kill(os.getpid(), signal.SIGKILL)
