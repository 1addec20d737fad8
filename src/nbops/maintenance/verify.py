"""``nbops verify``: re-read every object and re-check every version's digest.

Every stored table (a snapshot version or a feature commit) is a list of
column objects plus a schema; its digest is recomputed from them, and each
object is read back and re-hashed at the type its tables record (Parquet
does not keep every Arrow type exactly, so objects are cast as ``load`` casts
them).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import pyarrow as pa

from nbops.core.columns import read_column, users_of
from nbops.core.hashing import combine_digest
from nbops.core.repository import maintenance as records
from nbops.errors import CorruptDataError, IntegrityError

if TYPE_CHECKING:
    import sqlalchemy as sa

    from nbops.store import Store


@dataclass
class _StoredTable:
    label: str
    digest: str
    schema: pa.Schema
    columns: list[str]


def _stored_tables(conn: sa.Connection) -> list[_StoredTable]:
    return [
        _StoredTable(label, digest, pa.ipc.read_schema(pa.py_buffer(schema)), columns)
        for label, digest, schema, columns in records.stored_versions(conn)
    ]


@dataclass
class VerifyReport:
    """What ``store.verify()`` found. ``ok`` is False on any mismatch or missing object."""

    objects_checked: int = 0
    versions_checked: int = 0
    mismatched_objects: list[str] = field(default_factory=list)
    missing_objects: list[str] = field(default_factory=list)
    unreadable_objects: list[str] = field(default_factory=list)
    mismatched_versions: list[str] = field(default_factory=list)
    orphans: list[str] = field(default_factory=list)
    tmp_files: list[str] = field(default_factory=list)
    catalog_problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when nothing is mismatched, missing, unreadable or inconsistent (orphans and temp files are fine)."""
        return not (
            self.mismatched_objects
            or self.missing_objects
            or self.unreadable_objects
            or self.mismatched_versions
            or self.catalog_problems
        )

    def raise_for_problems(self) -> None:
        """Raise :class:`IntegrityError` with :meth:`text` unless :attr:`ok`."""
        if not self.ok:
            raise IntegrityError(self.text())

    def text(self) -> str:
        """The report as ``nbops verify`` prints it."""
        lines = [
            f"checked {self.objects_checked} objects and {self.versions_checked} versions: "
            + ("OK" if self.ok else "PROBLEMS FOUND")
        ]
        for label, items in (
            ("catalog integrity", self.catalog_problems),
            ("object content does not match its digest", self.mismatched_objects),
            ("object referenced by the catalog is missing", self.missing_objects),
            ("object cannot be read (truncated or damaged)", self.unreadable_objects),
            ("version digest does not match its columns", self.mismatched_versions),
            ("orphan object (no catalog row; `nbops gc` removes it)", self.orphans),
            ("temporary file (`nbops gc` removes it)", self.tmp_files),
        ):
            for item in items:
                lines.append(f"  {label}: {item}")
        if self.mismatched_objects or self.missing_objects or self.unreadable_objects:
            lines.append(
                "  loading the versions named above fails with CorruptDataError; restore their objects with "
                "`nbops repair --from BACKUP_STORE_OR_URI`, or snapshot / register the same data again"
            )
        return "\n".join(lines)


def verify(store: Store) -> VerifyReport:
    """Recompute every version's digest, re-read and re-hash every object, and check the catalog (``nbops verify``)."""
    report = VerifyReport()
    with store.catalog.read() as conn:
        known = set(records.object_digests(conn))
        tables = _stored_tables(conn)

    object_types: dict[str, pa.DataType] = {}
    for table in tables:
        report.versions_checked += 1
        # One object per column, or per column and row block (a commit written by Spark's executors).
        width = len(table.schema)
        blocks_fit = bool(table.columns) and width > 0 and len(table.columns) % width == 0
        if not blocks_fit or combine_digest(table.schema, table.columns) != table.digest:
            report.mismatched_versions.append(table.label)
            continue
        for position, digest in enumerate(table.columns):
            object_types.setdefault(digest, table.schema.field(position % width).type)

    on_disk = dict(store.objects.iter_objects())
    for digest in sorted(known | set(object_types)):
        path = on_disk.get(digest)
        if path is None:
            report.missing_objects.append(f"{digest} ({store.objects.location(digest)})" + _users(store, digest))
            continue
        report.objects_checked += 1
        try:
            read_column(store, digest, object_types.get(digest))
        except CorruptDataError as exc:
            problem = str(exc).split(";", 1)[0].removeprefix("stored object ")
            target = report.mismatched_objects if "hashes to" in problem else report.unreadable_objects
            target.append(problem + _users(store, digest))
    report.catalog_problems = store.catalog.integrity_problems()
    report.orphans = [str(path) for digest, path in on_disk.items() if digest not in known]
    report.tmp_files = [str(p) for p in store.objects.iter_tmp()]
    return report


def _users(store: Store, digest: str) -> str:
    used_by = users_of(store, digest)
    return f" (used by {', '.join(used_by)})" if used_by else " (used by no version)"
