"""Plain result objects returned by the store: references, diffs, reports.

Each has a readable text ``repr`` and an escaped ``_repr_html_`` for notebooks.
"""

from __future__ import annotations

import datetime as dt
import html
import re
from dataclasses import dataclass, field

from nbops.core.names import validate_name
from nbops.errors import InvalidNameError

_REF = re.compile(r"^(?P<name>[^@]*)@(?P<version>.*)$")


def parse_ref(ref: str, version: int | str | None = None, kind: str = "dataset") -> tuple[str, int | None]:
    """Split ``"name@3"`` into ``("name", 3)``; an explicit ``version`` must agree.

    >>> parse_ref("raw_tx@3")
    ('raw_tx', 3)
    """
    name, ref_version = ref, None
    if isinstance(ref, str) and "@" in ref:
        m = _REF.match(ref)
        assert m is not None
        name = m["name"]
        ref_version = _parse_version(m["version"], ref, kind)
    validate_name(name, kind)
    if version is not None:
        explicit = _parse_version(str(version), ref, kind) if not isinstance(version, int) else version
        if ref_version is not None and explicit != ref_version:
            raise InvalidNameError(
                kind, ref, "version", f"it names version {ref_version} but version={version!r} was passed"
            )
        ref_version = explicit
    if ref_version is not None and ref_version < 1:
        raise InvalidNameError(kind, ref, "version", f"versions start at 1, not {ref_version}")
    return name, ref_version


def _parse_version(text: str, ref: str, kind: str) -> int | None:
    if text in ("", "latest"):
        return None
    if not text.isdigit():
        raise InvalidNameError(kind, ref, "version", f"the part after '@' must be a version number, not {text!r}")
    return int(text)


def _table_html(title: str, rows: list[tuple[str, object]]) -> str:
    cells = "".join(
        f"<tr><th style='text-align:left'>{html.escape(k)}</th><td style='text-align:left'>{html.escape(str(v))}</td></tr>"
        for k, v in rows
    )
    return f"<div class='nbops-ref'><b>{html.escape(title)}</b><table>{cells}</table></div>"


@dataclass(frozen=True)
class SnapshotRef:
    """One version of a dataset: what ``store.snapshot`` returns."""

    name: str
    version: int
    digest: str
    rows: int
    columns: tuple[str, ...]
    created: dt.datetime
    message: str | None = None
    author: str | None = None
    bytes_written: int = 0
    #: False when the content equalled the latest version and nothing was written.
    new: bool = True
    #: A one-line summary of changes against the previous version, when known.
    changes: str | None = None

    @property
    def ref(self) -> str:
        """``name@version``, the text that names this version everywhere."""
        return f"{self.name}@{self.version}"

    @property
    def short_digest(self) -> str:
        """The first 12 hex digits of the digest, as summaries show it."""
        return self.digest[:12]

    def __str__(self) -> str:
        return self.ref

    def summary(self) -> str:
        """The ref, digest and size on one line (saying so when nothing was written), then the changes when known."""
        state = "" if self.new else " (unchanged: same content as the latest version, nothing written)"
        line = f"{self.ref}  digest {self.short_digest}  {self.rows:,} rows x {len(self.columns)} columns{state}"
        return f"{line}\n  {self.changes}" if self.changes else line

    def _repr_pretty_(self, p: object, cycle: bool) -> None:
        p.text(f"<SnapshotRef {self.summary()}>")  # type: ignore[attr-defined]

    def _repr_html_(self) -> str:
        rows: list[tuple[str, object]] = [
            ("version", self.version),
            ("digest", self.digest),
            ("rows", f"{self.rows:,}"),
            ("columns", ", ".join(self.columns)),
            ("created", self.created.isoformat(timespec="seconds")),
        ]
        if self.message:
            rows.append(("message", self.message))
        if not self.new:
            rows.append(("written", "nothing: same content as the latest version"))
        else:
            rows.append(("written", f"{self.bytes_written:,} bytes"))
        if self.changes:
            rows.append(("changes", self.changes))
        return _table_html(f"snapshot {self.ref}", rows)


@dataclass(frozen=True)
class ColumnChange:
    """One column that differs between two versions; ``before`` and ``after`` are its types (None where absent)."""

    column: str
    change: str  # "added", "removed" or "type"
    before: str | None
    after: str | None


@dataclass(frozen=True)
class SnapshotDiff:
    """What changed between two versions of a dataset.

    Without ``keys`` rows are compared as whole rows (a multiset of row
    hashes over the columns both versions share): an edited row counts as one
    removed and one added.  With ``keys`` rows are matched by key and an edit
    counts as changed.
    """

    name: str
    a: int
    b: int
    rows_a: int
    rows_b: int
    added: int
    removed: int
    changed: int
    unchanged: int
    keys: tuple[str, ...] = ()
    schema_changes: tuple[ColumnChange, ...] = field(default_factory=tuple)

    @property
    def identical(self) -> bool:
        """True when neither rows nor columns changed."""
        return not (self.added or self.removed or self.changed or self.schema_changes)

    def summary(self) -> str:
        """The changes on one line, e.g. ``vs v1: +3 rows, -1 rows; columns +fee``."""
        if self.identical:
            return f"no changes against v{self.a}"
        parts = [f"+{self.added:,} rows", f"-{self.removed:,} rows"]
        if self.keys:
            parts.append(f"~{self.changed:,} changed")
        text = f"vs v{self.a}: " + ", ".join(parts)
        if self.schema_changes:
            cols = []
            for c in self.schema_changes:
                if c.change == "added":
                    cols.append(f"+{c.column}")
                elif c.change == "removed":
                    cols.append(f"-{c.column}")
                else:
                    cols.append(f"{c.column} {c.before}->{c.after}")
            text += "; columns " + ", ".join(cols)
        return text

    def __str__(self) -> str:
        return f"{self.name} v{self.a}..v{self.b}: {self.summary()}"

    def _repr_pretty_(self, p: object, cycle: bool) -> None:
        p.text(f"<SnapshotDiff {self}>")  # type: ignore[attr-defined]

    def _repr_html_(self) -> str:
        rows: list[tuple[str, object]] = [
            ("rows", f"{self.rows_a:,} -> {self.rows_b:,}"),
            ("added", f"{self.added:,}"),
            ("removed", f"{self.removed:,}"),
        ]
        if self.keys:
            rows += [("changed", f"{self.changed:,}"), ("keys", ", ".join(self.keys))]
        rows.append(("unchanged", f"{self.unchanged:,}"))
        for c in self.schema_changes:
            rows.append((f"column {c.column}", f"{c.change}: {c.before or ''} -> {c.after or ''}"))
        return _table_html(f"{self.name} v{self.a} -> v{self.b}", rows)
