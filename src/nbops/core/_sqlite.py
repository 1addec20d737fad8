"""Turning a SQLite database to WAL mode safely when several processes open it at once.

``PRAGMA journal_mode = WAL`` on a database still in rollback mode needs an
exclusive lock. Two connections that both read the file and then both ask
for that lock would deadlock, so SQLite fails one of them at once with
"database is locked" -- the busy timeout is not consulted. Several processes
opening a brand-new store hit exactly that, so the change is retried here
until the timeout. Once the file is in WAL mode (a property of the file) the
pragma is not run again.
"""

from __future__ import annotations

import sqlite3
import time

_FIRST_PAUSE_SECONDS = 0.002
_LONGEST_PAUSE_SECONDS = 0.1


def use_wal(connection: sqlite3.Connection, timeout: float) -> None:
    """Put the database behind ``connection`` in WAL mode, retrying the lock race for ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    pause = _FIRST_PAUSE_SECONDS
    while True:
        try:
            if connection.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
                connection.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() + pause > deadline:
                raise
        time.sleep(pause)
        pause = min(pause * 2, _LONGEST_PAUSE_SECONDS)
