"""The injection corpus: text that would run code (or a shell command) if it were pasted into code.

Each payload, if executed, creates a file named ``MARKER``; tests check that
none appears.  Exported modules get them in ``tests/exporting/test_export.py``,
magic lines in a real shell in ``tests/system/test_reliability.py``.
"""

from __future__ import annotations

PAYLOADS = [
    "'); import os; os.system('touch MARKER'); ('",
    '"); import os; os.system("touch MARKER"); ("',
    "''' + __import__('os').system('touch MARKER') + '''",
    '""" + __import__("os").system("touch MARKER") + """',
    "{__import__('os').system('touch MARKER')}",
    "$(touch MARKER) $x ${x} `touch MARKER`",
    "\\n__import__('os').system('touch MARKER')\\",
    "# comment \\",
    "a\rimport os",
]
