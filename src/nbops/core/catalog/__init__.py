"""The catalog's tables, its one interface (:class:`Catalog`) and what every backend shares.

The catalog is the commit point of the store: data files are published first,
then one catalog transaction makes a version visible.  It goes through
SQLAlchemy Core so that the same queries and the same Alembic migrations
(``nbops/core/catalog/migrations``) run on the embedded SQLite file and on a shared
PostgreSQL server; opening a catalog upgrades it to the head revision under
the write lock.

Every write transaction reads the latest version of something and inserts the
next one, so writers of the same thing must be serialised:

- on SQLite, WAL (readers never block the writer), a busy timeout, and
  ``BEGIN IMMEDIATE``: the database's one write lock is taken at the start;
- on PostgreSQL, transaction-scoped advisory locks taken first thing in the
  transaction: ``write(("dataset", name))`` locks that one name (and shares a
  catalog-wide lock), ``write()`` without a name takes the catalog-wide lock
  exclusively, like ``BEGIN IMMEDIATE``.  Under READ COMMITTED every statement
  after the lock sees what earlier holders committed.  The unique constraints
  on (parent, number) stay as the last line of defence.

Passwords: ``Catalog.url`` and every message name the server, the database and
the user, never the password (see :func:`public_url`).

The interface and the tables are in :mod:`.base`; each backend is one
module (:mod:`.sqlite`, :mod:`.postgres`), and ``Catalog(url)`` chooses it by
the URL's database.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from nbops.core.catalog.base import (
    APPLICATION_ID,
    BUSY_TIMEOUT_SECONDS,
    CATALOG_FILE,
    CONNECT_TIMEOUT_SECONDS,
    CORE_TABLES,
    KNOWN_REVISIONS,
    READONLY_ENV,
    SCHEMA_HEAD,
    Catalog,
    as_utc,
    catalog_url,
    check_writable,
    current_revision,
    datasets,
    exports,
    feature_commit_columns,
    feature_commits,
    feature_group_versions,
    feature_groups,
    implementation,
    inserted_id,
    lineage_edges,
    metadata,
    objects,
    online_features,
    open_catalog,
    public_url,
    readonly,
    same_catalog,
    snapshot_columns,
    snapshots,
    utcnow,
)
from nbops.core.catalog.postgres import PostgresCatalog
from nbops.core.catalog.sqlite import SqliteCatalog, check_catalog_file

if TYPE_CHECKING:
    import sqlalchemy as sa
    from sqlalchemy.engine import Engine

__all__ = [
    "APPLICATION_ID",
    "BUSY_TIMEOUT_SECONDS",
    "CATALOG_FILE",
    "CONNECT_TIMEOUT_SECONDS",
    "CORE_TABLES",
    "Catalog",
    "KNOWN_REVISIONS",
    "PostgresCatalog",
    "READONLY_ENV",
    "SCHEMA_HEAD",
    "SqliteCatalog",
    "as_utc",
    "catalog_url",
    "check_catalog_file",
    "check_writable",
    "current_revision",
    "datasets",
    "exports",
    "feature_commit_columns",
    "feature_commits",
    "feature_group_versions",
    "feature_groups",
    "implementation",
    "inserted_id",
    "lineage_edges",
    "metadata",
    "objects",
    "online_features",
    "open_catalog",
    "public_url",
    "readonly",
    "same_catalog",
    "snapshot_columns",
    "snapshots",
    "utcnow",
]


def _create_engine(url: sa.URL) -> Engine:
    """The engine the catalog of ``url`` would use (without opening a catalog on it)."""
    return implementation(url).create_engine(url)
