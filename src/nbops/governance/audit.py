"""The audit trail as a table: who wrote or read which version of what, and when (UTC).

The rows are written by every writer in its own transaction
(:mod:`nbops.core.audit`); read-only mode is :func:`nbops.core.catalog.readonly`.
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING

from nbops.core.audit import event_rows

if TYPE_CHECKING:
    import pandas as pd

    from nbops.store import Store


def events(store: Store, name: str | None = None, since: dt.datetime | str | None = None) -> pd.DataFrame:
    """The audit trail, oldest first: at (UTC), actor, host, action, kind, name, version."""
    import pandas as pd

    with store.catalog.read() as conn:
        rows = event_rows(conn, name, None if since is None else _naive_utc(since))
    columns = ["at", "actor", "host", "action", "kind", "name", "version"]
    frame = pd.DataFrame([{c: getattr(r, c) for c in columns} for r in rows], columns=columns)
    frame["at"] = (
        pd.to_datetime(frame["at"]).dt.tz_localize("UTC") if len(frame) else pd.Series([], dtype="datetime64[us, UTC]")
    )
    return frame


def _naive_utc(value: dt.datetime | str) -> dt.datetime:
    """A time to compare with the catalog's naive UTC: naive means UTC, aware is converted."""
    import pandas as pd

    stamp = pd.Timestamp(value)
    if stamp.tzinfo is not None:
        stamp = stamp.tz_convert("UTC").tz_localize(None)
    naive: dt.datetime = stamp.to_pydatetime()
    return naive


__all__ = ["events"]
