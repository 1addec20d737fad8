"""``nbops gc``: remove objects that no version refers to, and stale temporary files.

gc is the one command that deletes data, so it refuses on any doubt:

- the live set is marked from every table whose rows refer to objects
  (``snapshot_columns`` and ``feature_commit_columns``: snapshots, training
  sets saved with ``save_as`` and feature commits), never from the
  ``objects`` index, which could disagree;
- before anything is deleted the catalog's integrity check runs (SQLite
  ``quick_check`` and foreign keys, schema revision, references between
  versions, their columns and objects) and any problem stops gc;
- a catalog that refers to no object while objects exist on disk is refused
  outright: that is a replaced or re-initialised catalog far more often than
  a new store whose first writers were all killed (for that case, and only
  when asked by name: ``nbops gc --empty-catalog``);
- a temporary file whose writer (named by the pid in the file name) still
  runs is kept whatever the grace;
- only regular files directly inside the store's own ``objects/<xx>/`` and
  ``tmp/`` folders are removed; a symlink is never followed, and a symlinked
  ``objects`` or ``tmp`` folder stops gc;
- marking and deleting happen inside one catalog write transaction, which
  every snapshot and feature commit also needs to commit. A writer that
  published its objects before gc ran finds them gone when it commits and
  writes them again (``nbops.core.columns.object_rows``), so even ``--grace 0``
  beside running writers never leaves a commit without its data.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from nbops.core.objects.base import Handle, ObjectFiles
from nbops.core.objects.local import ObjectStore
from nbops.core.repository import maintenance as records
from nbops.errors import IntegrityError, StoreError

if TYPE_CHECKING:
    import sqlalchemy as sa

    from nbops.store import Store


@dataclass
class GcReport:
    """What ``store.gc()`` removed (or would remove, with ``dry_run``)."""

    dry_run: bool = False
    removed_orphans: list[str] = field(default_factory=list)
    removed_tmp: list[str] = field(default_factory=list)
    kept_recent: list[str] = field(default_factory=list)
    bytes_freed: int = 0

    def text(self) -> str:
        """The report as ``nbops gc`` prints it."""
        verb = "would remove" if self.dry_run else "removed"
        text = (
            f"{verb} {len(self.removed_orphans)} orphan objects and {len(self.removed_tmp)} temporary files "
            f"({self.bytes_freed:,} bytes)"
        )
        if self.kept_recent:
            text += (
                f"; kept {len(self.kept_recent)} recent files that a running writer may still commit "
                "(use --grace 0 when no writer is running)"
            )
        return text


def collect(store: Store, grace_seconds: float, dry_run: bool, empty_catalog: bool = False) -> GcReport:
    """Remove (or with ``dry_run`` list) orphan objects and temporary files older than ``grace_seconds``.

    ``empty_catalog=True`` lets gc collect beside a catalog that refers to no
    object: only for a new store whose first writers were all killed before
    they committed, when you know this catalog is the store's own.
    """
    _refuse_linked_folders(store)
    problems = store.catalog.integrity_problems()
    if problems:
        raise IntegrityError(
            f"gc refused: {store.catalog.describe()} failed its integrity check, so it cannot say which "
            f"objects are live ({'; '.join(problems[:5])}); nothing was removed. Restore the catalog from a backup"
        )
    # One call per kind of store, so that each is given back only its own handles (a Path, a RemoteObject).
    if isinstance(store.objects, ObjectStore):
        return _collect(store, store.objects, grace_seconds, dry_run, empty_catalog)
    return _collect(store, store.objects, grace_seconds, dry_run, empty_catalog)


def _collect(
    store: Store, objects: ObjectFiles[Handle], grace_seconds: float, dry_run: bool, empty_catalog: bool
) -> GcReport:
    """:func:`collect` once the catalog passed its checks; ``objects`` is ``store.objects``."""
    report = GcReport(dry_run=dry_run)
    transaction = store.catalog.read() if dry_run else store.catalog.write()
    with transaction as conn:
        live = records.live_digests(conn)
        on_disk = list(objects.iter_objects())
        if not live and on_disk and not empty_catalog:
            raise IntegrityError(
                f"gc refused: {store.catalog.describe()} refers to no object, yet {len(on_disk)} objects are "
                f"stored ({objects.location(on_disk[0][0])}, ...); a catalog that lost its versions must "
                "not decide what to delete, so nothing was removed. If this is a new store whose first writers "
                "were killed before they committed, run `nbops gc --empty-catalog`"
            )
        for digest, path in on_disk:
            if digest not in live:
                _remove(objects, report, report.removed_orphans, path, keep=not objects.older_than(path, grace_seconds))
        if not dry_run:
            _drop_unreferenced_rows(conn, live)
    for tmp in objects.iter_tmp():
        keep = _writer_alive(tmp) or not objects.older_than(tmp, grace_seconds)
        _remove(objects, report, report.removed_tmp, tmp, keep)
    return report


def _remove(objects: ObjectFiles[Handle], report: GcReport, removed: list[str], path: Handle, keep: bool) -> None:
    """Count one object or temporary file as kept or removed, and remove it unless this is a dry run."""
    if keep:
        report.kept_recent.append(str(path))
        return
    report.bytes_freed += objects.size_of(path)
    removed.append(str(path))
    if not report.dry_run:
        objects.remove(path)


def _writer_alive(tmp: Any) -> bool:
    """Whether the process that is writing this temporary file still runs (its pid is in the name).

    A temporary file is outside any transaction, so even ``--grace 0`` keeps
    the ones a live writer on this machine is still writing.
    """
    import os

    parts = getattr(tmp, "name", "").split(".")
    if len(parts) < 4 or not parts[1].isdigit():
        return False
    pid = int(parts[1])
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _drop_unreferenced_rows(conn: sa.Connection, live: Iterable[str]) -> None:
    """Rows of the objects index that no version refers to (their files are gone or orphans)."""
    live = set(live)
    records.drop_object_rows(conn, [d for d in records.object_digests(conn) if d not in live])


def _refuse_linked_folders(store: Store) -> None:
    folders: list[Any] = [getattr(store.objects, "objects_dir", None), getattr(store.objects, "tmp_dir", None)]
    for folder in folders:
        if folder is not None and folder.is_symlink():
            raise StoreError(
                f"gc refused: {folder} is a symbolic link, and gc never deletes through one. "
                "Make it a real folder of the store; nothing was removed"
            )
