"""Where nbops's log messages are shown: ``nbops: <message>`` on stderr, in a notebook and the CLI.

The library only logs, each module to ``logging.getLogger(__name__)``: progress
at INFO, a problem the caller must know of that does not fail the call at
WARNING.  A program that imports nbops decides where those go; without any
configuration Python still shows the warnings on stderr.

The extension's ``load`` and the CLI's ``main`` are such programs: they call
:func:`enable_console`, which gives the ``nbops`` logger one handler writing
``nbops: <message>`` to whatever ``sys.stderr`` is when the message is emitted
(a notebook's stderr, pytest's capture), from INFO up.  It does so only if that
logger has no handler yet, so a handler a user put there first is kept.  The
logger then stops propagating: a user's own root handler (``logging.basicConfig``
in a notebook) would otherwise show every message a second time.  To send
nbops's messages to your own handlers instead, add one to
``logging.getLogger("nbops")`` before the extension loads.
"""

from __future__ import annotations

import logging
import sys

LOGGER = "nbops"


class _CurrentStderr(logging.Handler):
    """Writes each record to the ``sys.stderr`` of the moment it is emitted, not the one at creation."""

    def emit(self, record: logging.LogRecord) -> None:
        """Write ``nbops: <message>`` and a newline to the current stderr."""
        try:
            stream = sys.stderr
            stream.write(f"{self.format(record)}\n")
            stream.flush()
        except Exception:
            self.handleError(record)


def enable_console() -> None:
    """Show nbops's messages from INFO up as ``nbops: <message>`` on stderr; once per process.

    Does nothing when the ``nbops`` logger already has a handler (this one, or a user's).
    """
    logger = logging.getLogger(LOGGER)
    if logger.handlers:  # ours, from an earlier call, or the user's own: either way, keep it
        return
    handler = _CurrentStderr()
    handler.setFormatter(logging.Formatter("nbops: %(message)s"))
    logger.addHandler(handler)
    if logger.level == logging.NOTSET:
        logger.setLevel(logging.INFO)
    logger.propagate = False
