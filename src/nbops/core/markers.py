"""Small JSON files in a store folder that say where its parts live (``store.json``, ``data.json``).

Each holds one key, e.g. ``{"catalog": "postgresql+psycopg://etl@db/nbops"}``,
never a credential: :func:`write` leaves out the password and every secret
query parameter of the value (:func:`nbops.core.redact.without_credentials`), so the
next open takes them from where they belong (PGPASSWORD, ~/.pgpass, the AWS
credential chain).  It is published without overwriting: racing openers of a
new store either record the same place or the later one fails.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

from nbops.core.redact import redact_url, without_credentials
from nbops.errors import StoreError


def read(root: Path, filename: str, key: str, example: str) -> str | None:
    """The value recorded under ``key`` in ``root/filename``, or None if there is no such file."""
    marker = root / filename
    try:
        text = marker.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise StoreError(f"cannot read {marker}: {exc}") from None
    try:
        value = json.loads(text)[key]
        if not isinstance(value, str):
            raise TypeError(value)
    except (ValueError, KeyError, TypeError):
        raise StoreError(
            f"{marker} is damaged: it must be JSON naming the store's {key}, e.g. {json.dumps({key: example})}"
        ) from None
    return value


def write(root: Path, filename: str, key: str, value: str, same: Callable[[str, str], bool]) -> None:
    """Record ``value``, without its credentials; if another process recorded a place first,
    it must be the ``same`` one."""
    value = without_credentials(value)
    marker = root / filename
    temporary = root / f".{filename}.{os.getpid()}.tmp"
    with temporary.open("w", encoding="utf-8") as file:
        json.dump({key: value}, file, indent=1)
        file.write("\n")
        file.flush()
        os.fsync(file.fileno())
    try:
        os.link(temporary, marker)  # never replaces an existing marker
    except FileExistsError:
        recorded = read(root, filename, key, value) or ""
        if not same(recorded, value):
            raise StoreError(
                f"{root} was just given the {key} {redact_url(recorded)} by another process, not {value}"
            ) from None
    finally:
        temporary.unlink(missing_ok=True)
