"""The corpus of hostile names, each with the rule that refuses it."""

from __future__ import annotations

from pathlib import Path

from nbops.core.names import MAX_NAME_LENGTH

# (name, rule) for every entry of the corpus in RELIABILITY.md plus the reference delimiters.
BAD_NAMES: list[tuple[object, str]] = [
    ("", "empty"),
    (".", "traversal"),
    ("..", "traversal"),
    ("../x", "separator"),
    ("/abs", "separator"),
    ("C:x", "drive"),
    ("a\\..\\b", "separator"),
    ("a\x00b", "control"),
    ("a\nb", "control"),
    ("x" * 300, "length"),
    ("x" * (MAX_NAME_LENGTH + 1), "length"),
    ("%2e%2e%2f", "charset"),
    ("evil\u202etxt.exe", "control"),  # RIGHT-TO-LEFT OVERRIDE
    ("a\u200bb", "control"),  # ZERO WIDTH SPACE
    ("caf\u00e9", "ascii"),  # NFC
    ("cafe\u0301", "ascii"),  # NFD of the same word
    ("\uff41", "ascii"),  # FULLWIDTH LATIN SMALL LETTER A, NFKC-equal to "a"
    ("a@1", "charset"),
    ("a:b", "drive"),  # a one-letter prefix and ':' is a Windows drive-relative path
    ("ab:c", "charset"),
    ("NUL", "reserved"),
    ("con", "reserved"),
    ("a.b", "charset"),
    ("1abc", "charset"),
    ("-x", "charset"),
    ("a b", "charset"),
    (None, "type"),
    (3, "type"),
    (b"raw_tx", "type"),
    (Path("raw_tx"), "type"),
]
