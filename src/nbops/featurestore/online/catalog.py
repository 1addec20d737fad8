"""The catalog's own online table: every ``online=True`` commit writes it in its own transaction.

On an embedded (SQLite) catalog a lookup uses the store's own read-only
connection, so a one-key lookup is one indexed query; on PostgreSQL it goes
through the catalog's SQLAlchemy engine.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

from nbops.core.repository import featurestore as records
from nbops.featurestore.online.base import GroupPlan, OnlineRow, OnlineStore

if TYPE_CHECKING:
    from nbops.featurestore.groups import _Version

_CHUNK = 500  # keys per IN (...) query


class CatalogOnlineStore(OnlineStore):
    """Point lookups in the catalog's ``online_features`` table (``online="embedded"``, the default)."""

    def describe(self) -> str:
        """Where the rows are served from, for messages."""
        return "the catalog's online table"

    def push(self, group: str, version: _Version, commit_no: int, rows: Sequence[OnlineRow]) -> None:
        """Nothing to do: the catalog's table was written in the commit's own transaction."""

    def sync_all(self) -> Iterable[tuple[str, int]]:
        """Nothing: the catalog's table is never behind."""
        return ()

    def fetch(self, plan: GroupPlan, entity_keys: Sequence[str]) -> dict[str, str]:
        """The stored value lists (JSON) of the keys present, by entity key."""
        return self.lookup(plan.version.id, entity_keys)

    def lookup(self, version_id: int, entity_keys: Sequence[str]) -> dict[str, str]:
        """The stored value lists (JSON) of the keys present in group version ``version_id``, read from the catalog."""
        found: dict[str, str] = {}
        if self.store.catalog.is_sqlite:
            db = self.catalog_connection()
            for start in range(0, len(entity_keys), _CHUNK):
                found.update(records.online_values_sqlite(db, version_id, entity_keys[start : start + _CHUNK]))
            return found
        with self.store.catalog.read() as conn:
            for start in range(0, len(entity_keys), _CHUNK):
                found.update(records.online_values(conn, version_id, entity_keys[start : start + _CHUNK]))
        return found
