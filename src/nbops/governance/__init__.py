"""Governance: the audit trail (:mod:`.audit`: who wrote or read which version of what, and when) and read-only mode.

Read-only mode (``NBOPS_READONLY=1``, or read-only catalog credentials) is
checked by every writer before it writes: :func:`nbops.core.catalog.check_writable`.
"""

from nbops.core.catalog import READONLY_ENV as READONLY_ENV
from nbops.core.catalog import check_writable as check_writable
from nbops.core.catalog import readonly as readonly
