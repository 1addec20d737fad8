"""nbops: features, dataset snapshots, experiments and pipeline export, from a notebook.

``import nbops`` is cheap: the store, pandas, pyarrow, mlflow and duckdb load
on first use.  In IPython, ``%load_ext nbops`` (or the auto-load installed with
the package) adds the magics.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from nbops import _compat
from nbops._version import __version__

_compat.install()  # nbops.features, nbops.online, ...: the module paths before the layered layout

if TYPE_CHECKING:
    from nbops.api import log, pipeline, register_model, track
    from nbops.exporting import export
    from nbops.featurestore import expectations as expect
    from nbops.featurestore.groups import split_by_time
    from nbops.store import Store, open

__all__ = [
    "Store",
    "__version__",
    "expect",
    "export",
    "load_ipython_extension",
    "log",
    "open",
    "pipeline",
    "register_model",
    "split_by_time",
    "track",
    "unload_ipython_extension",
]


def load_ipython_extension(ipython: Any) -> None:
    """Called by ``%load_ext nbops`` and by the auto-load startup file."""
    from nbops.magics import load

    load(ipython)


def unload_ipython_extension(ipython: Any) -> None:
    """Called by ``%unload_ext nbops``: removes every magic ``load`` added."""
    from nbops.magics import unload

    unload(ipython)


def __getattr__(name: str) -> Any:
    if name in ("open", "Store"):
        from nbops import store

        return getattr(store, name)
    if name == "expect":  # nbops.expect.not_null("amount"), ...
        from nbops.featurestore import expectations

        return expectations
    if name == "export":
        from nbops.exporting import export

        return export
    if name in ("track", "log", "register_model", "pipeline"):
        from nbops import api

        return getattr(api, name)
    if name == "split_by_time":
        from nbops.featurestore.groups import split_by_time

        return split_by_time
    raise AttributeError(f"module 'nbops' has no attribute {name!r}")
