"""The grammar of the magic lines that export translates: ``%%features``, ``%%track`` and ``%snapshot``.

The magics (:mod:`nbops.magics`) parse their lines with these declarations and
the exporter (:mod:`nbops.exporting.translate`) reads the same lines with the
same parsers, so a line that runs in the notebook means the same thing in the
exported module.  Neither imports the other: both stand on this module.

    >>> parse_line(parser("track"), "-e fraud -r 'first try'").run_name
    'first try'
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from IPython.core.error import UsageError
from IPython.core.magic_arguments import argument, magic_arguments

#: Each magic's arguments, in the order ``%magic?`` lists them.
ARGUMENTS: dict[str, tuple[Any, ...]] = {
    "features": (
        argument("group", nargs="?", help="feature group name"),
        argument("-k", "--keys", help="key column(s), comma-separated, e.g. --keys cc_num"),
        argument("-t", "--event-time", dest="event_time", help="the event-time column, e.g. --event-time ts"),
        argument("--online", action="store_true", help="also keep the latest row per key for online serving"),
        argument("--version", type=int, help="write into this version; a new number creates a new schema version"),
        argument("-d", "--description", help="what the group holds"),
        argument("--table", action="store_true", help="without a cell: return the catalog as a DataFrame, not a panel"),
    ),
    "track": (
        argument("verb", nargs="?", choices=["start", "stop"], help="line form only: start or stop a run"),
        argument("-e", "--experiment", help="MLflow experiment (default: the notebook's name)"),
        argument("-r", "--run-name", dest="run_name", help="name of the run"),
        argument("--register-model", dest="register_model", metavar="NAME", help="register the model the run logs"),
        argument("--autolog", action="store_true", help="turn on MLflow autologging (model logging stays off)"),
    ),
    "snapshot": (
        argument("dataframe", nargs="?", help="the variable holding the DataFrame to snapshot"),
        argument("-n", "--name", help="dataset name (default: the variable's name)"),
        argument("-m", "--message", help="a note stored with the version, e.g. -m 'march dump'"),
        argument("-k", "--keys", help="key column(s), comma-separated, to count changed rows in the summary"),
        argument("--load", metavar="NAME[@V]", help="load a version (latest by default) instead of storing one"),
        argument("--as", dest="as_var", metavar="VAR", help="with --load: the variable to load into (default: NAME)"),
    ),
}


def declare(name: str) -> Callable[[Any], Any]:
    """Decorate a magic with the arguments of :data:`ARGUMENTS` ``[name]`` (as ``@magic_arguments()`` and ``@argument``)."""

    def decorate(func: Any) -> Any:
        for declared in reversed(ARGUMENTS[name]):
            func = declared(func)
        return magic_arguments()(func)

    return decorate


_parsers: dict[str, Any] = {}


def parser(name: str) -> Any:
    """A function whose ``.parser`` reads the line of the magic ``name``, for :func:`parse_line`."""
    if name not in _parsers:

        def magic(line: str) -> None:
            """Stands for the magic: only its parser is used."""

        magic.__name__ = name
        _parsers[name] = declare(name)(magic)
    return _parsers[name]


def parse_line(magic: Callable[..., Any], line: str) -> Any:
    """Parse a magic's line with its ``magic_arguments`` parser, shell-style.

    Unlike ``parse_argstring`` this removes the quotes around a quoted
    argument (``-m "march dump"`` gives ``march dump``).  Errors are ``UsageError``.
    """
    # IPython's public home of it (per platform); the module does not list it in ``__all__``.
    from IPython.utils.process import arg_split  # type: ignore[attr-defined]

    try:
        words = arg_split(line, posix=True)
    except ValueError as exc:  # e.g. an unclosed quote
        raise UsageError(f"cannot read the arguments: {exc}; check the quotes") from None
    return magic.parser.parse_args(words)  # type: ignore[attr-defined]
