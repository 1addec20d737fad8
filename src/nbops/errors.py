"""Every exception class of nbops (raised by the Python API and the tools).

Every error a user can cause derives from :class:`NbopsError`, so a script can
catch them all with one ``except``.  Magics turn them into IPython's
``UsageError`` with the same message.
"""

from __future__ import annotations

import errno
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from nbops.featurestore.expectations import ValidationReport


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


class UnknownKeysError(NotFoundError):
    """Entity keys with no row in the online store; ``keys`` lists them, as they were asked."""

    def __init__(self, message: str, keys: list[dict[str, object]]) -> None:
        super().__init__(message)
        self.keys = keys


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


class ExportError(NbopsError):
    """The notebook cannot be exported as it is; the message names the cell."""


class PublishError(NbopsError):
    """Feature commits cannot be published to the table asked for; the message says why and what to do.

    Raised before a version is written when the cause is known up front (a type
    Delta cannot hold, a table holding something else); the versions written
    before stay valid.
    """


class BadObjectError(Exception):
    """What is wrong with one object, before the catalog is asked who uses it."""


class SchemaChangeError(NbopsError):
    """The frame's columns differ from the version's; a new version must be asked for."""


class DuplicateKeysError(NbopsError, ValueError):
    """One insert holds the same (keys, event time) more than once."""


class TrackingError(NbopsError):
    """A run could not be started, ended or registered."""


class RunWriteError(TrackingError):
    """The disk refused a write of a run's state (full, over quota, or failing); the run ended FAILED.

    ``errno``, ``what`` and ``path`` say which write failed where; ``original``
    is the exception the write raised (an ``OSError``, or MLflow's or the
    database driver's own error).
    """

    def __init__(
        self, number: int, what: str, path: str, outcome: str = "", original: BaseException | None = None
    ) -> None:
        self.errno, self.what, self.path, self.outcome, self.original = number, what, path, outcome, original
        name = errno.errorcode.get(number, str(number))
        if number == errno.ENOSPC:
            message = f"disk full (ENOSPC) while writing {what} at {path}; free space and run it again"
        elif number == getattr(errno, "EDQUOT", None):
            message = f"disk quota exceeded ({name}) while writing {what} at {path}; free space and run it again"
        else:
            message = (
                f"I/O error ({name}) while writing {what} at {path}; "
                "check the disk (the system log names the device) and run it again"
            )
        super().__init__(f"{message}; {outcome}" if outcome else message)

    def with_outcome(self, outcome: str) -> RunWriteError:
        """The same error, saying what became of the run."""
        return RunWriteError(self.errno, self.what, self.path, outcome, self.original)


class InvalidExpectationError(NbopsError, ValueError):
    """A rule definition that cannot be used: unknown rule, missing column, bad bound."""


class ValidationError(NbopsError):
    """Data broke one or more expectations; ``report`` holds the details.

    The message is ``report.text()``, so a traceback names the rows and columns.
    """

    def __init__(self, report: ValidationReport) -> None:
        self.report = report
        super().__init__(report.text())

    def __reduce__(self) -> tuple[Any, ...]:  # keep the report across processes
        return (type(self), (self.report,))
