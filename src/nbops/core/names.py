"""Validation of user-supplied names (snapshots, feature groups, experiments).

Names end up in catalog rows, file names of exports and references such as
``raw_tx@3`` or ``tx_features:2.amount``, so one strict rule set applies to all
of them::

    >>> validate_name("raw_tx", "snapshot")
    'raw_tx'

A name is 1 to 128 characters of ASCII letters, digits, ``_`` and ``-``, and
starts with a letter or ``_``.  That excludes path separators, ``..``, drive
letters, control characters, percent-encoding, look-alike Unicode, Windows
device names (``CON``, ``NUL``, ...) and the reference delimiters ``@``, ``:``
and ``.``.  The error names the broken rule.

Experiment names are freer, because the default experiment is the
notebook's name (``fraud model v2``): :func:`validate_experiment_name` allows
spaces, dots and non-ASCII letters, but keeps every rule that makes a name a
single safe folder name (the experiment's artifacts live in
``<store>/mlartifacts/<experiment>``)::

    >>> validate_experiment_name("fraud model v2", "experiment")
    'fraud model v2'
"""

from __future__ import annotations

import re
import unicodedata

from nbops.errors import InvalidNameError

MAX_NAME_LENGTH = 128
_ALLOWED = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*")
_WINDOWS_DEVICES = frozenset(["CON", "PRN", "AUX", "NUL"] + [f"{p}{i}" for p in ("COM", "LPT") for i in range(1, 10)])
_IDENTIFIER_HINT = "use ASCII letters, digits, '_' and '-', starting with a letter or '_'"


def _one_path_part(name: object, kind: str) -> str:
    """The rules every name keeps: a non-empty str of bounded length that is one safe path part."""
    if not isinstance(name, str):
        raise InvalidNameError(kind, name, "type", f"a name must be a str, not {type(name).__name__}")
    if name == "":
        raise InvalidNameError(kind, name, "empty", "a name cannot be empty")
    if len(name) > MAX_NAME_LENGTH:
        raise InvalidNameError(kind, name, "length", f"{len(name)} characters; at most {MAX_NAME_LENGTH} are allowed")
    if any(unicodedata.category(ch) in ("Cc", "Cf", "Zl", "Zp") for ch in name):
        raise InvalidNameError(kind, name, "control", "control or invisible formatting characters are not allowed")
    if "/" in name or "\\" in name:
        raise InvalidNameError(kind, name, "separator", "path separators '/' and '\\' are not allowed")
    if ".." in name or name == ".":
        raise InvalidNameError(kind, name, "traversal", "'.' and '..' are not allowed")
    if len(name) >= 2 and name[1] == ":" and name[0].isalpha():
        raise InvalidNameError(kind, name, "drive", "a drive prefix such as 'C:' is not allowed")
    return name


def validate_name(name: object, kind: str = "dataset") -> str:
    """Return ``name`` unchanged if it is a valid name, else raise InvalidNameError."""
    name = _one_path_part(name, kind)
    if name.split(".")[0].upper() in _WINDOWS_DEVICES:
        raise InvalidNameError(
            kind, name, "reserved", f"{name!r} is a device name on Windows (CON, PRN, AUX, NUL, COM1-9, LPT1-9)"
        )
    if not name.isascii():
        raise InvalidNameError(kind, name, "ascii", f"only ASCII characters are allowed; {_IDENTIFIER_HINT}")
    if not _ALLOWED.fullmatch(name):
        bad = sorted({ch for ch in name if not (ch.isalnum() or ch in "_-")})
        detail = f"character(s) {''.join(bad)!r} not allowed" if bad else "must not start with a digit or '-'"
        raise InvalidNameError(kind, name, "charset", f"{detail}; {_IDENTIFIER_HINT}")
    return name


#: Characters Windows does not allow in a folder name, and '%' (artifact
#: locations are URIs, where it would start an escape).
_EXPERIMENT_FORBIDDEN = frozenset('<>:"|?*%')


def validate_experiment_name(name: object, kind: str = "experiment") -> str:
    """Return ``name`` unchanged if it can name an experiment's artifact folder, else raise."""
    name = _one_path_part(name, kind)
    if name.split(".")[0].strip().upper() in _WINDOWS_DEVICES:
        raise InvalidNameError(
            kind, name, "reserved", f"{name!r} is a device name on Windows (CON, PRN, AUX, NUL, COM1-9, LPT1-9)"
        )
    if unicodedata.normalize("NFC", name) != name:
        # The NFD and NFC spellings of one word would be two experiments sharing one folder on macOS.
        raise InvalidNameError(
            kind, name, "normalization", f"not in Unicode NFC form; use {unicodedata.normalize('NFC', name)!r}"
        )
    bad = sorted({ch for ch in name if ch in _EXPERIMENT_FORBIDDEN})
    if bad:
        raise InvalidNameError(kind, name, "charset", f"character(s) {''.join(bad)!r} not allowed")
    if name != name.strip() or name.endswith("."):
        raise InvalidNameError(
            kind, name, "charset", "must not start or end with a space, nor end with '.' (Windows drops them)"
        )
    return name


def experiment_name_from(text: str) -> str:
    """A valid experiment name made from free text (a notebook's file name), e.g. ``50% model.`` -> ``50_ model``.

    Characters the rules refuse become ``_``; what cannot be mended gives ``Default``.
    """
    cleaned = unicodedata.normalize("NFC", text)
    cleaned = "".join(
        "_"
        if ch in _EXPERIMENT_FORBIDDEN or ch in "/\\" or unicodedata.category(ch) in ("Cc", "Cf", "Zl", "Zp")
        else ch
        for ch in cleaned
    )
    cleaned = cleaned.replace("..", "_").strip().rstrip(".").strip()[:MAX_NAME_LENGTH]
    try:
        return validate_experiment_name(cleaned)
    except InvalidNameError:
        return "Default"


def pipeline_name_from(text: str) -> str:
    """A valid pipeline name made from a notebook's file name, e.g. ``1_feature pipeline`` -> ``nb_1_feature_pipeline``.

    Letters with accents lose them, every other character the rules refuse
    becomes ``_``, and a name that does not start with a letter or ``_`` gets
    the prefix ``nb_``: a file name never blocks an export.

        >>> pipeline_name_from("1_feature_pipeline")
        'nb_1_feature_pipeline'
    """
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")
    cleaned = re.sub(r"[^A-Za-z0-9_-]+", "_", ascii_text).strip("_-") or "notebook"
    if not re.match(r"[A-Za-z_]", cleaned):
        cleaned = "nb_" + cleaned
    cleaned = cleaned[:MAX_NAME_LENGTH]
    try:
        return validate_name(cleaned, "pipeline")
    except InvalidNameError:  # a Windows device name such as CON
        return validate_name(cleaned[: MAX_NAME_LENGTH - 3] + "_nb", "pipeline")
