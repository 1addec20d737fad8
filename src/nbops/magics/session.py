"""State one kernel's magics share: the store they work on."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from nbops.store import Store


class KernelSession:
    """The store of one IPython shell, opened on first use (not at extension load)."""

    def __init__(self, shell: Any) -> None:
        self.shell = shell
        self._store: Store | None = None

    @property
    def store(self) -> Store:
        if self._store is None:
            from nbops.store import open as open_store

            self._store = open_store()
        return self._store

    def use(self, path: str | os.PathLike[str]) -> Store:
        from nbops.store import open as open_store

        new = open_store(path)
        self.close()
        self._store = new
        return new

    def close(self) -> None:
        if self._store is not None:
            self._store.close()
            self._store = None
