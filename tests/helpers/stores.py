"""A store's content as data: catalog rows and files, to show that an operation changed nothing."""

from __future__ import annotations

import hashlib
import sqlite3
from pathlib import Path
from typing import Any

from nbops.store import Store

#: Catalog tables whose rows define what a store holds.
CATALOG_TABLES = ("alembic_version", "datasets", "objects", "snapshots", "snapshot_columns")
#: SQLite's own files change on reads and checkpoints; they are not store content.
_SQLITE_FILES = ("catalog.db", "catalog.db-wal", "catalog.db-shm", "catalog.db-journal")

StoreState = dict[str, Any]


def _file_fingerprint(path: Path) -> tuple[int, int, str]:
    st = path.stat()
    return st.st_size, st.st_mtime_ns, hashlib.sha256(path.read_bytes()).hexdigest()


def capture_state(store: Store) -> StoreState:
    """Every catalog row and every file (size, mtime, content hash) of a store."""
    files = {
        str(p.relative_to(store.root)): _file_fingerprint(p)
        for p in sorted(store.root.rglob("*"))
        if p.is_file() and p.name not in _SQLITE_FILES
    }
    conn = sqlite3.connect(f"file:{store.root / 'catalog.db'}?mode=ro", uri=True)
    try:
        rows = {t: sorted(conn.execute(f"SELECT * FROM {t}").fetchall(), key=repr) for t in CATALOG_TABLES}
    finally:
        conn.close()
    return {"files": files, "catalog": rows}


def files_by_content(path: Path) -> dict[str, str]:
    """Every file under ``path`` (none if it does not exist), by content: relative name -> SHA-256."""
    if not path.exists():
        return {}
    return {
        str(p.relative_to(path)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(path.rglob("*"))
        if p.is_file()
    }


def object_files(store: Store) -> set[Path]:
    """The object files on disk."""
    return set((store.root / "objects").rglob("*.parquet"))
