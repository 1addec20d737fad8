"""Argument parsing shared by the magics: errors are plain ``UsageError``s."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from IPython.core.error import UsageError

from nbops.errors import NbopsError

if TYPE_CHECKING:
    from IPython.core.interactiveshell import InteractiveShell
    from IPython.core.magic import Magics


@contextmanager
def usage_errors() -> Iterator[None]:
    """Turn the API's own errors into a ``UsageError`` with the same message."""
    try:
        yield
    except NbopsError as exc:
        raise UsageError(str(exc)) from None


def variable_name(text: str, what: str) -> str:
    """A user-namespace variable name, checked (never evaluated as code)."""
    import keyword

    if not text.isidentifier() or keyword.iskeyword(text):
        raise UsageError(f"{what} must be a Python variable name, e.g. df; got {text!r}")
    return text


def shell_of(magics: Magics) -> InteractiveShell:
    """The shell a magics class runs in: always set, the extension registers them with one."""
    assert magics.shell is not None
    return magics.shell


def lookup(shell: Any, name: str, what: str = "a DataFrame") -> Any:
    variable_name(name, "the variable")
    if name not in shell.user_ns:
        raise UsageError(f"no variable named {name!r} in this notebook; give the name of a variable holding {what}")
    return shell.user_ns[name]
