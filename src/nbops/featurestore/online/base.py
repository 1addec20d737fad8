"""The interface every online store implements, and the rows and plans they exchange.

An online store serves the latest row per key of the groups registered with
``online=True``.  The catalog's own table (:mod:`.catalog`) is always written,
in the commit's transaction, and is the record; a *shared* store (Redis,
:mod:`.redis`) gets each commit's rows pushed after the commit, and
:meth:`OnlineStore.sync_all` catches it up.  Adding a backend means adding one
module with a subclass of :class:`OnlineStore` and a line in
:data:`nbops.featurestore.online.BACKENDS`.
"""

from __future__ import annotations

import sqlite3
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pyarrow as pa

if TYPE_CHECKING:
    from nbops.featurestore.groups import _Version
    from nbops.store import Store

_CACHE_KIB = 65_536  # the page cache of the online store's read-only SQLite connection, at most


@dataclass(frozen=True)
class OnlineRow:
    """One key's latest row, as the catalog's online table holds it."""

    entity_key: str
    event_time_us: int
    commit_no: int
    feature_values: str  # JSON list, in feature order


@dataclass(frozen=True)
class GroupPlan:
    """How to serve one group version's features: resolved once, cached until the catalog's versions change."""

    version: _Version
    group: str
    outputs: dict[str, str]  # feature -> output column
    positions: dict[str, int]  # feature -> index in the stored value list
    stored_types: dict[str, pa.DataType]  # feature -> JSON-friendly type
    types: dict[str, pa.DataType]  # feature -> the group's type
    key_types: tuple[pa.DataType, ...]  # the key columns' types, in key order
    normalisers: tuple[Callable[[Any], Any], ...]  # requested key value -> canonical value, in key order


class OnlineStore(ABC):
    """Point lookups of the latest feature values by key, and the upkeep a shared store needs.

    ``plans`` is the cache of resolved plans (:func:`nbops.featurestore.serving.plan`),
    kept with the store object so that it lives as long as the connection;
    ``frame_labels`` the column labels of the frames it built, by column names.
    """

    #: True when rows are served from outside the catalog and must be pushed there.
    shared = False

    def __init__(self, store: Store) -> None:
        self.store = store
        self._sqlite: sqlite3.Connection | None = None
        self.plans: dict[tuple[tuple[str, ...], frozenset[str]], tuple[Any, list[GroupPlan]]] = {}
        self.frame_labels: dict[tuple[str, ...], Any] = {}  # pandas.Index, immutable but for its name

    def catalog_connection(self) -> sqlite3.Connection:
        """A read-only SQLite connection of the store's own to an embedded catalog (opened on first use)."""
        if self._sqlite is None:
            path = self.store.root / "catalog.db"
            self._sqlite = sqlite3.connect(f"file:{path}?mode=ro", uri=True, check_same_thread=False)
            self._sqlite.execute("PRAGMA busy_timeout = 60000")
            # Room for the online table's hot pages (SQLite's default is 2 MiB): a 1,000-key lookup then reads
            # its pages from memory, not one pread each.  Filled only as pages are read; SQLite drops it when
            # another connection commits, so it never serves old rows.  Not mmap: an I/O error there is SIGBUS.
            self._sqlite.execute(f"PRAGMA cache_size = -{_CACHE_KIB}")
        return self._sqlite

    def close(self) -> None:
        """Close the store's own connections (here: its SQLite connection, if it opened one)."""
        if self._sqlite is not None:
            self._sqlite.close()
            self._sqlite = None

    @abstractmethod
    def describe(self) -> str:
        """Where the rows are served from, for messages."""

    @abstractmethod
    def fetch(self, plan: GroupPlan, entity_keys: Sequence[str]) -> dict[str, str]:
        """The stored value lists (JSON) of the keys present, by entity key."""

    @abstractmethod
    def push(self, group: str, version: _Version, commit_no: int, rows: Sequence[OnlineRow]) -> None:
        """Copy a committed registration's rows here (nothing to do for the catalog's own table)."""

    @abstractmethod
    def sync_all(self) -> Iterable[tuple[str, int]]:
        """Catch up with the catalog: yields ``("group:version", rows sent)`` (nothing for the catalog's table)."""
