"""The one interface of object stores: content-addressed, immutable files (see :mod:`.local` and :mod:`.remote`)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, Protocol, TypeVar

#: How an object store names one of its files: a ``Path`` here, a ``RemoteObject`` remotely.
Handle = TypeVar("Handle")


class ObjectFiles(Protocol[Handle]):
    """An object store: immutable files named by their content's digest, each listed by a handle of one type.

    :class:`~nbops.core.objects.local.ObjectStore` (a folder) and
    :class:`~nbops.core.objects.remote.RemoteObjectStore` (any pyarrow file
    system: S3, GCS, Azure, ...) implement it; a handle listed by one store is
    only ever given back to it.
    """

    def location(self, digest: str) -> str:
        """Where object ``digest`` is (a path or URI), for messages."""

    def exists(self, digest: str) -> bool:
        """Whether object ``digest`` is stored."""

    def size(self, digest: str) -> int:
        """The size of object ``digest`` in bytes."""

    def source(self, digest: str) -> Any:
        """Something pyarrow reads object ``digest`` from (a path, a buffer)."""

    def random_access(self, digest: str) -> Any:
        """Something pyarrow reads parts of object ``digest`` from (a path; a ranged-read file remotely)."""

    def publish(self, digest: str, write: Callable[[Any], None], sound: Callable[[], bool] | None = None) -> int:
        """Store object ``digest`` written by ``write(sink)``, atomically and never over another; its size.

        An object already there is kept (content addresses: same name, same
        bytes) unless ``sound()`` says it is damaged.
        """

    def iter_objects(self) -> Iterator[tuple[str, Handle]]:
        """Every object file, as (digest, handle), in digest order."""

    def iter_tmp(self) -> Iterator[Handle]:
        """Temporary files of unfinished or abandoned writes."""

    def older_than(self, handle: Handle, seconds: float) -> bool:
        """Whether ``handle`` was last written at least ``seconds`` ago (False once it is gone)."""

    def size_of(self, handle: Handle) -> int:
        """The size of ``handle`` in bytes."""

    def remove(self, handle: Handle) -> None:
        """Delete one file this store listed; one already gone is no error."""
