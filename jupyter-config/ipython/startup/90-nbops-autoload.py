"""Load the nbops IPython extension in every kernel of this environment.

Installed by ``pip install nbops`` into ``<environment>/etc/ipython/startup/``.
Set ``NBOPS_NO_AUTOLOAD=1`` to turn it off; ``%load_ext nbops`` still works.
This file never stops a kernel from starting: a failure is one warning line.
"""


def _nbops_autoload() -> None:
    import os
    import sys

    if os.environ.get("NBOPS_NO_AUTOLOAD", "").strip().lower() in ("1", "true", "yes", "on"):
        return
    try:
        from IPython import get_ipython

        shell = get_ipython()
        if shell is None:
            return
        import nbops  # noqa: F401 - a clear ImportError here beats a status string below

        status = shell.extension_manager.load_extension("nbops")
        if status not in (None, "already loaded"):
            raise RuntimeError(status)
    except Exception as exc:  # noqa: BLE001 - a kernel must start whatever happens here
        print(
            f"nbops: auto-load failed ({exc!r}); run %load_ext nbops to retry, "
            "or set NBOPS_NO_AUTOLOAD=1 to stop trying",
            file=sys.stderr,
        )


_nbops_autoload()
del _nbops_autoload
