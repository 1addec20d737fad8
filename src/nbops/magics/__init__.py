"""IPython magics: thin layers over the Python API, one ``Magics`` class per domain.

``load(shell)`` registers them and ``unload(shell)`` removes exactly what
``load`` added; both are safe to call twice.  Nothing heavy is imported here:
the store, pandas and pyarrow load when a magic first needs them.
"""

from __future__ import annotations

import weakref
from typing import Any

from IPython.core.magic import Magics

from nbops.magics.session import KernelSession

_LOADED: weakref.WeakKeyDictionary[Any, tuple[KernelSession, list[Magics]]] = weakref.WeakKeyDictionary()


def load(shell: Any) -> None:
    """Register nbops's magics and cell hooks on ``shell`` and point MLflow at the store; once per shell.

    nbops's log messages are shown on the notebook's stderr from then on.
    """
    if shell in _LOADED:
        return
    from nbops.core._logs import enable_console

    enable_console()
    from nbops.magics.export import ExportMagics
    from nbops.magics.features import FeatureMagics
    from nbops.magics.panels import PanelMagics
    from nbops.magics.snapshots import SnapshotMagics
    from nbops.magics.store import StoreMagics
    from nbops.magics.tracking import TrackingMagics

    session = KernelSession(shell)
    instances: list[Magics] = [
        StoreMagics(shell, session=session),
        SnapshotMagics(shell, session=session),
        FeatureMagics(shell, session=session),
        TrackingMagics(shell, session=session),
        ExportMagics(shell, session=session),
        PanelMagics(shell, session=session),
    ]
    for magics in instances:
        shell.register_magics(magics)
    shell.events.register("pre_run_cell", session.pre_run_cell)
    shell.events.register("post_run_cell", session.post_run_cell)
    session.point_mlflow()
    _LOADED[shell] = (session, instances)


def unload(shell: Any) -> None:
    """Remove what :func:`load` added to ``shell`` and release MLflow; nothing if it was not loaded."""
    entry = _LOADED.pop(shell, None)
    if entry is None:
        return
    session, instances = entry
    shell.events.unregister("pre_run_cell", session.pre_run_cell)
    shell.events.unregister("post_run_cell", session.post_run_cell)
    manager = shell.magics_manager
    for magics in instances:
        for kind, table in magics.magics.items():
            for name, method in table.items():
                if manager.magics[kind].get(name) == method:
                    del manager.magics[kind][name]
        if manager.registry.get(type(magics).__name__) is magics:
            del manager.registry[type(magics).__name__]
        if hasattr(shell, "configurables") and magics in shell.configurables:
            shell.configurables.remove(magics)
    session.close()
    from nbops import api
    from nbops.core.paths import release_mlflow

    api.clear_reads()
    api.set_context({})
    release_mlflow()


def is_loaded(shell: Any) -> bool:
    """Whether :func:`load` registered nbops on ``shell`` (and :func:`unload` has not removed it)."""
    return shell in _LOADED
