"""Exceptions raised by the nbops Python API.

Every error a user can cause derives from :class:`NbopsError`, so a script can
catch them all with one ``except``.  Magics turn them into IPython's
``UsageError`` with the same message.
"""

from __future__ import annotations


class NbopsError(Exception):
    """Base class of every error nbops raises on purpose."""


class InvalidNameError(NbopsError, ValueError):
    """A user-supplied name breaks one of the naming rules (the message names it)."""

    def __init__(self, kind: str, name: object, rule: str, detail: str) -> None:
        self.kind = kind
        self.name = name
        self.rule = rule
        super().__init__(f"invalid {kind} name {name!r}: {detail} (rule: {rule})")


class NotFoundError(NbopsError, LookupError):
    """A name or version that the store does not hold."""

    def __str__(self) -> str:  # LookupError would quote the message like a key
        return str(self.args[0]) if self.args else ""


class InvalidInputError(NbopsError, TypeError):
    """An argument of the wrong kind, e.g. a list where a DataFrame is needed."""


class StoreError(NbopsError):
    """The store cannot be opened or used (wrong layout, newer schema, ...)."""


class ReadOnlyError(StoreError):
    """A write was asked of a read-only process (``NBOPS_READONLY``) or through read-only credentials."""


class IntegrityError(NbopsError):
    """Stored data no longer matches its content address."""


class CorruptDataError(IntegrityError):
    """A stored object read back does not match its digest (or is missing, or truncated).

    The message names the object, the snapshot versions and feature commits
    that use it, and the command that repairs it (``nbops repair``).
    ``digest`` and ``used_by`` carry the same facts for code.
    """

    def __init__(self, message: str, digest: str = "", used_by: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.digest = digest
        self.used_by = used_by


class CatalogError(StoreError):
    """The catalog file or database is not an nbops catalog: empty, foreign or corrupt. Nothing was changed."""


class OnlineStoreError(NbopsError):
    """The online store cannot serve a lookup: unreachable, or missing a group's rows."""


class OnlineSyncWarning(UserWarning):
    """A registration committed, but its rows did not reach the shared online store."""
