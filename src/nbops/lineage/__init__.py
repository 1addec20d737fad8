"""Lineage: what each artifact was made from and what was made from it (:mod:`.graph`).

Every writer records its edges, and frames carry their provenance, through
:mod:`nbops.core.lineage`, in the write's own transaction.  ``nbops.lineage``
was that module before the layered layout; its names still resolve here, with
a DeprecationWarning.
"""

from nbops._compat import forwarding

__getattr__ = forwarding(__name__, "nbops.core.lineage")
