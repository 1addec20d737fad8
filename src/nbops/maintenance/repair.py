"""``nbops repair``: put back the objects that stored versions need, from copies that prove themselves.

Every object a snapshot version or feature commit refers to is read and
checked against its digest (as ``nbops verify`` does).  Each one that is
missing, truncated or altered is looked for in the sources given (another
store folder, e.g. a backup or a teammate's copy, or a data root URI such as
``s3://bucket/team``); a copy is taken only if it hashes to the digest, and
it replaces the damaged file atomically.  What no source holds is listed
with the versions that need it, and stays as it is: repair never deletes.

A damaged object is also rewritten whenever the same data is snapshotted or
registered again (a write that finds its object present checks it first).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nbops.core.columns import object_is_sound, publish_column, read_verified, users_of
from nbops.core.repository import maintenance as records
from nbops.errors import BadObjectError, StoreError

if TYPE_CHECKING:
    import pyarrow as pa

    from nbops.store import Store


@dataclass
class RepairReport:
    """What ``store.repair()`` found and did; ``ok`` once every referenced object is sound."""

    dry_run: bool = False
    objects_checked: int = 0
    repaired: list[str] = field(default_factory=list)
    unrepaired: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when every damaged or missing object was restored (or, in a dry run, could be)."""
        return not self.unrepaired

    def text(self) -> str:
        """The report as ``nbops repair`` prints it: counts, each object, and what to do about the rest."""
        verb = "would restore" if self.dry_run else "restored"
        lines = [
            f"checked {self.objects_checked} objects: {len(self.repaired)} {verb}, "
            f"{len(self.unrepaired)} could not be restored"
        ]
        lines += [f"  {verb}: {item}" for item in self.repaired]
        lines += [f"  not restored: {item}" for item in self.unrepaired]
        if self.unrepaired:
            lines.append(
                "  give a store or data root that holds them with --from, or snapshot / register the same "
                "data again (the write replaces the damaged object); loading those versions fails until then"
            )
        return "\n".join(lines)


def repair(store: Store, sources: Sequence[str | Path] = (), dry_run: bool = False) -> RepairReport:
    """Restore every damaged or missing object from the first source whose copy hashes right."""
    report = RepairReport(dry_run=dry_run)
    donors = [_open_source(s) for s in sources]
    for digest, type_ in _referenced_objects(store).items():
        report.objects_checked += 1
        if object_is_sound(store.objects, digest, type_):
            continue
        used_by = users_of(store, digest)
        label = f"{store.objects.location(digest)} (used by {', '.join(used_by) or 'no version'})"
        column = _good_copy(donors, digest, type_)
        if column is None:
            report.unrepaired.append(label)
            continue
        if not dry_run:
            publish_column(store, digest, column, replace=True)
        report.repaired.append(label)
    return report


def _referenced_objects(store: Store) -> dict[str, pa.DataType]:
    """Every object digest a version or commit refers to, with the Arrow type its table records."""
    import pyarrow as pa

    types: dict[str, pa.DataType] = {}
    schemas: dict[bytes, pa.Schema] = {}
    with store.catalog.read() as conn:
        for schema_bytes, position, digest in records.referenced_columns(conn):
            if schema_bytes is None:
                continue
            if schema_bytes not in schemas:
                schemas[schema_bytes] = pa.ipc.read_schema(pa.py_buffer(schema_bytes))
            schema = schemas[schema_bytes]
            if len(schema):  # a commit's row blocks repeat its columns: position = block * width + column
                types.setdefault(digest, schema.field(position % len(schema)).type)
    return dict(sorted(types.items()))


def _open_source(source: str | Path) -> Any:
    """An object store to copy from: a store folder (its ``objects/``) or a data root URI."""
    from nbops.core.objects.local import ObjectStore

    text = str(source)
    if "://" in text:
        from nbops.core.objects.remote import RemoteObjectStore

        return RemoteObjectStore(text)
    folder = Path(text).expanduser()
    if not (folder / "objects").is_dir():
        raise StoreError(f"--from {text}: there is no objects/ folder there; give a store folder or a data root URI")
    return ObjectStore(folder.resolve())


def _good_copy(donors: Sequence[Any], digest: str, type_: pa.DataType) -> pa.ChunkedArray | None:
    for donor in donors:
        try:
            return read_verified(donor, digest, type_)
        except (BadObjectError, OSError, ValueError):
            continue
    return None
