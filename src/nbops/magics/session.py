"""State one kernel's magics share: the store they work on."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from IPython.core.magic import Magics

from nbops.errors import NbopsError

if TYPE_CHECKING:
    from nbops.store import Store


@contextmanager
def without_secrets() -> Iterator[None]:
    """Let no credential of this kernel's settings (``NBOPS_CATALOG_URL``, ``MLFLOW_TRACKING_URI``, ...)
    through in the message of an nbops error raised inside: the magics show it in the notebook."""
    try:
        yield
    except NbopsError as exc:
        from nbops.core.redact import env_secrets, redact_text

        shown = redact_text(str(exc), *env_secrets())
        if shown != str(exc):
            exc.args = (shown,)
        raise


class KernelSession:
    """The store of one IPython shell, opened on first use (not at extension load)."""

    def __init__(self, shell: Any) -> None:
        self.shell = shell
        self._store: Store | None = None
        #: Cells running now: more than one while a magic runs part of its cell (``%%features``).
        self._depth = 0

    @property
    def store(self) -> Store:
        """The shell's store, found and opened as ``nbops.open()`` does on first use (no credential in its errors)."""
        if self._store is None:
            from nbops.store import open as open_store

            with without_secrets():
                self._store = open_store()
        return self._store

    def point_mlflow(self) -> None:
        """Let MLflow's own API use the store's backend from the start, if the store exists."""
        from nbops.core.paths import find_store_root, point_mlflow_at

        root = find_store_root()
        if root.is_dir():
            point_mlflow_at(root)

    def notebook_path(self) -> str | None:
        """The notebook this kernel runs, when the front end says (JupyterLab does)."""
        return self.shell.user_ns.get("__session__") or os.environ.get("JPY_SESSION_NAME") or None

    def pre_run_cell(self, info: Any) -> None:
        """A new cell: lineage starts afresh ("read in the same cell").

        A cell that a magic runs inside the user's cell (``%%features`` runs
        the lines before its last expression) belongs to that cell: its
        reads and its notebook cell id stay those of the outer cell.
        """
        if self._depth > 0 and not getattr(info, "store_history", True):
            self._depth += 1  # run by a magic inside the running cell
            return
        self._depth = 1  # a cell from the front end (store_history) always starts afresh
        source = getattr(info, "raw_cell", "") or ""
        from nbops import api

        api.clear_reads()
        api.set_context(
            {
                "notebook": self.notebook_path(),
                "cell_id": getattr(info, "cell_id", None),
                "cell_sha256": hashlib.sha256(source.encode()).hexdigest(),
            }
        )

    def post_run_cell(self, _result: Any) -> None:
        """A cell finished: the next one from the front end starts afresh."""
        self._depth = max(0, self._depth - 1)

    def use(self, path: str | os.PathLike[str]) -> Store:
        """Open the store at ``path`` and make it the shell's, closing the previous one only once it opened."""
        from nbops.store import open as open_store

        with without_secrets():
            new = open_store(path)
        self.close()
        self._store = new
        return new

    def close(self) -> None:
        """Close the shell's store, if open; the next use opens it again."""
        if self._store is not None:
            self._store.close()
            self._store = None


class SessionMagics(Magics):
    """Magics that work on the kernel's store: each class gets the shell's one :class:`KernelSession`."""

    def __init__(self, shell: Any, session: KernelSession) -> None:
        super().__init__(shell)
        self.session = session
