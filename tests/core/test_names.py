"""Name validation: the fixed corpus of hostile names, a fuzz test, and the same checks through the store."""

from __future__ import annotations

import os
import sqlite3
import unicodedata
from pathlib import Path

import pandas as pd
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from helpers.names import BAD_NAMES
from nbops.core.names import MAX_NAME_LENGTH, validate_name
from nbops.errors import InvalidNameError, NbopsError
from nbops.store import Store

GOOD_NAMES = ["raw_tx", "a", "_", "_private", "A1", "tx-features", "x" * MAX_NAME_LENGTH, "Z_9-9"]


@pytest.mark.parametrize("name", GOOD_NAMES)
def test_good_names_are_returned_unchanged(name: str) -> None:
    assert validate_name(name, "snapshot") is name


@pytest.mark.parametrize(("name", "rule"), BAD_NAMES, ids=[repr(n)[:40] for n, _ in BAD_NAMES])
def test_bad_name_is_rejected_with_its_rule(name: object, rule: str) -> None:
    with pytest.raises(InvalidNameError) as info:
        validate_name(name, "snapshot")
    err = info.value
    assert err.rule == rule
    assert err.kind == "snapshot"
    assert err.name == name
    message = str(err)
    assert message.startswith("invalid snapshot name ")
    assert message.endswith(f"(rule: {rule})")
    # One except clause catches it, and it is also a ValueError for plain-Python callers.
    assert isinstance(err, NbopsError)
    assert isinstance(err, ValueError)


def test_nfc_and_nfd_forms_are_both_rejected() -> None:
    nfc, nfd = "caf\u00e9", "cafe\u0301"
    assert nfc != nfd and unicodedata.normalize("NFC", nfd) == nfc
    for name in (nfc, nfd):
        with pytest.raises(InvalidNameError, match=r"only ASCII characters .*\(rule: ascii\)"):
            validate_name(name)


def test_length_error_states_both_lengths() -> None:
    with pytest.raises(InvalidNameError, match=rf"300 characters; at most {MAX_NAME_LENGTH} are allowed"):
        validate_name("x" * 300)


def test_charset_error_lists_the_offending_characters() -> None:
    with pytest.raises(InvalidNameError, match=r"character\(s\) '%' not allowed"):
        validate_name("%2e%2e%2f")
    with pytest.raises(InvalidNameError, match="must not start with a digit or '-'"):
        validate_name("1abc")


@pytest.mark.parametrize("name", ["CON", "nul", "Aux", "PRN", "COM1", "lpt9"])
def test_windows_device_names_are_rejected_in_any_case(name: str) -> None:
    """``exports/NUL.parquet`` would be the null device on Windows."""
    with pytest.raises(InvalidNameError, match=r"device name on Windows .*\(rule: reserved\)") as info:
        validate_name(name)
    assert info.value.rule == "reserved"


@pytest.mark.parametrize("name", ["CONSOLE", "nul_", "AUX-1", "COM10", "LPT0", "com"])
def test_names_that_merely_start_like_device_names_are_accepted(name: str) -> None:
    assert validate_name(name) == name


def _assert_single_safe_component(name: str, root: Path) -> None:
    assert "/" not in name and "\\" not in name and os.sep not in name
    assert os.altsep is None or os.altsep not in name
    assert name not in (".", "..") and not Path(name).is_absolute()
    assert Path(name).parts == (name,)
    resolved = Path(root, name).resolve()
    assert resolved.parent == root.resolve()
    assert resolved.is_relative_to(root.resolve())


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(name=st.one_of(st.text(max_size=140), st.from_regex(r"[A-Za-z0-9_.\-/\\:@%]{0,12}", fullmatch=True)))
@example(name="..")
@example(name="a/../b")
@example(name="C:")
@example(name="x" * 129)
def test_any_text_is_either_returned_unchanged_or_rejected(name: str, tmp_path: Path) -> None:
    try:
        result = validate_name(name)
    except InvalidNameError as err:
        assert err.rule in {
            "type", "empty", "length", "control", "separator", "traversal", "drive", "reserved", "ascii", "charset",
        }  # fmt: skip
        assert f"(rule: {err.rule})" in str(err)
        return
    assert result is name
    assert 1 <= len(name) <= MAX_NAME_LENGTH and name.isascii()
    _assert_single_safe_component(name, tmp_path)


# -- through the store ---------------------------------------------------------
def _all_files(folder: Path) -> set[Path]:
    return {p for p in folder.rglob("*")}


CORPUS_FOR_STORE = [n for n, _ in BAD_NAMES]


@pytest.mark.parametrize("bad_name", CORPUS_FOR_STORE, ids=[repr(n)[:40] for n in CORPUS_FOR_STORE])
def test_snapshot_with_bad_name_writes_nothing_anywhere(
    bad_name: object, store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Rejected before any file is written: nothing inside the store, beside it, or in the working folder."""
    df = pd.DataFrame({"a": [1, 2, 3]})
    store.snapshot(df, "existing")
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    before_tree = _all_files(tmp_path)
    before_parent = set(tmp_path.parent.iterdir())
    abs_probe = Path("/abs")
    abs_existed = abs_probe.exists()

    with pytest.raises(InvalidNameError):
        store.snapshot(pd.DataFrame({"a": [4, 5, 6]}), bad_name)  # type: ignore[arg-type]

    assert _all_files(tmp_path) == before_tree
    assert set(tmp_path.parent.iterdir()) == before_parent
    assert abs_probe.exists() == abs_existed
    conn = sqlite3.connect(store.root / "catalog.db")
    try:
        assert conn.execute("SELECT name FROM datasets").fetchall() == [("existing",)]
        assert conn.execute("SELECT count(*) FROM snapshots").fetchone() == (1,)
    finally:
        conn.close()


@pytest.mark.parametrize("bad_name", ["../x", "/abs", "a\x00b", "caf\u00e9", ""])
def test_reading_with_bad_name_is_rejected_by_the_same_rules(bad_name: str, store: Store) -> None:
    for call in (store.load, store.history, store.ref):
        with pytest.raises(InvalidNameError):
            call(bad_name)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("fraud model v2", "fraud model v2"),
        ("50% model.", "50_ model"),
        ("a:b", "a_b"),
        ("x/y\\z", "x_y_z"),
        ("e\u0301te\u0301", "\u00e9t\u00e9"),
        ("CON", "Default"),
        ("   ", "Default"),
    ],
)
def test_a_notebook_name_becomes_a_valid_experiment_name(text: str, expected: str) -> None:
    from nbops.core.names import experiment_name_from, validate_experiment_name

    assert experiment_name_from(text) == expected
    assert validate_experiment_name(expected) == expected
