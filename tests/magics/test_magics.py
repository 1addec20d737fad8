"""The magics, driven in a fresh real InteractiveShell per test."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
from IPython.core.error import UsageError
from IPython.core.interactiveshell import InteractiveShell

import nbops
from helpers.shell import nbops_shell


@pytest.fixture
def shell(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[InteractiveShell]:
    with nbops_shell(tmp_path / ".nbops", monkeypatch) as ip:
        ip.run_cell("import pandas as pd\ndf = pd.DataFrame({'id': [1, 2, 3], 'x': [0.5, 1.5, 2.5]})")
        yield ip


def test_snapshot_stores_the_variable_under_its_own_name(shell: InteractiveShell, tmp_path: Path) -> None:
    ref = shell.run_line_magic("snapshot", 'df -m "march dump"')
    assert (ref.name, ref.version, ref.rows, ref.columns) == ("df", 1, 3, ("id", "x"))
    assert ref.message == "march dump"  # quotes are removed, spaces kept
    assert ref.changes == "first version"
    with nbops.open(tmp_path / ".nbops") as store:
        pd.testing.assert_frame_equal(store.load("df"), shell.user_ns["df"])


def test_snapshot_summary_counts_changes_against_previous_version(shell: InteractiveShell) -> None:
    shell.run_line_magic("snapshot", "df --name raw")
    shell.run_cell("df.loc[1, 'x'] = 9.0\ndf.loc[3] = [4, 4.5]\ndf['y'] = 1")
    ref = shell.run_line_magic("snapshot", "df --name raw --keys id")
    assert ref.version == 2
    assert ref.changes == "vs v1: +1 rows, -0 rows, ~1 changed; columns +y"
    assert "raw@2" in ref.summary() and ref.short_digest in ref.summary()


def test_unchanged_snapshot_says_so_and_keeps_the_version(shell: InteractiveShell) -> None:
    first = shell.run_line_magic("snapshot", "df")
    again = shell.run_line_magic("snapshot", "df")
    assert again.version == first.version and not again.new
    assert "unchanged" in again.summary()


def test_load_into_a_variable(shell: InteractiveShell, capsys: pytest.CaptureFixture[str]) -> None:
    shell.run_line_magic("snapshot", "df --name raw")
    shell.run_cell("df['x'] = 0.0")
    shell.run_line_magic("snapshot", "df --name raw")
    shell.run_line_magic("snapshot", "--load raw@1 --as old")
    assert shell.user_ns["old"]["x"].tolist() == [0.5, 1.5, 2.5]
    assert "loaded raw@1 into old" in capsys.readouterr().out
    shell.run_line_magic("snapshot", "--load raw")
    assert shell.user_ns["raw"]["x"].tolist() == [0.0, 0.0, 0.0]


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("", "name the DataFrame to snapshot"),
        ("missing", "no variable named 'missing'"),
        ("df.x", "must be a Python variable name"),
        ("__import__('os')", "must be a Python variable name"),
        ("df --name ../x", r"invalid snapshot name '../x'.*rule: separator"),
        ("df --name 'a b'", r"rule: charset"),
        ("n", "needs a pandas DataFrame or a pyarrow Table, not int"),
        ("--load nothing", "no snapshot named 'nothing'; known: none yet"),
        ("--load df@x", "rule: version"),
        ("--load df --as 1x", "--as must be a Python variable name"),
        ("df --as y", "--as only goes with --load"),
        ("df -m 'unclosed", "check the quotes"),
    ],
)
def test_bad_input_is_a_plain_usage_error_and_stores_nothing(
    shell: InteractiveShell, tmp_path: Path, line: str, message: str
) -> None:
    shell.user_ns["n"] = 3
    with pytest.raises(UsageError, match=message):
        shell.run_line_magic("snapshot", line)
    with nbops.open(tmp_path / ".nbops") as store:
        assert store.summary()["snapshot_versions"] == 0


def test_unknown_version_lists_what_exists(shell: InteractiveShell) -> None:
    shell.run_line_magic("snapshot", "df")
    with pytest.raises(UsageError, match=r"snapshot 'df' has no version 7; it has versions 1..1"):
        shell.run_line_magic("snapshot", "--load df@7")


def test_magic_lines_are_not_expanded_or_executed(shell: InteractiveShell, tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    shell.user_ns["marker"] = str(marker)
    for line in ["df -m '{open(marker, \"w\")}'", "df -m '$marker'"]:
        ref = shell.run_line_magic("snapshot", line)
        assert "{" in ref.message or "$" in ref.message
    assert not marker.exists()


def test_nbops_shows_and_switches_the_store(
    shell: InteractiveShell, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    shell.run_line_magic("snapshot", "df")
    shell.run_line_magic("nbops", "")
    out = capsys.readouterr().out
    assert str(tmp_path / ".nbops") in out and "1 (1 snapshot versions)" in out
    other = tmp_path / "other store" / ".nbops"
    shell.run_line_magic("nbops", f"use '{other}'")
    assert f"now uses the store at {other}" in capsys.readouterr().out
    shell.run_line_magic("snapshot", "df --name elsewhere")
    with nbops.open(other) as store:
        assert store.datasets()["name"].tolist() == ["elsewhere"]
    with pytest.raises(UsageError, match="invalid choice"):
        shell.run_line_magic("nbops", "frobnicate")


def test_nbops_use_refuses_a_folder_that_is_not_a_store(shell: InteractiveShell, tmp_path: Path) -> None:
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "todo.txt").write_text("keep me")
    with pytest.raises(UsageError, match="is not an nbops store"):
        shell.run_line_magic("nbops", f"use {tmp_path / 'notes'}")
    assert (tmp_path / "notes" / "todo.txt").read_text() == "keep me"


def test_help_is_the_docstring(shell: InteractiveShell) -> None:
    doc = shell.find_line_magic("snapshot").__doc__
    assert "--load NAME[@V]" in doc and "Snapshot a DataFrame" in doc


def test_show_changes_is_configurable(shell: InteractiveShell) -> None:
    shell.run_line_magic("config", "SnapshotMagics.show_changes = False")
    shell.run_line_magic("snapshot", "df")
    shell.run_cell("df['x'] = 1.0")
    assert shell.run_line_magic("snapshot", "df").changes is None


# -- %%features, %features, %drift ---------------------------------------------------------
FEATURE_CELL = """
feats = pd.DataFrame({
    "cc_num": [1, 2, 1],
    "ts": pd.to_datetime(["2026-01-01", "2026-01-01", "2026-01-02"], utc=True),
    "amount_mean": [10.0, 20.0, 15.0],
})
# the last expression is the frame
feats
"""


def test_features_cell_registers_its_last_expression(shell: InteractiveShell, tmp_path: Path) -> None:
    ref = shell.run_cell_magic("features", "tx --keys cc_num --event-time ts --online -d 'card activity'", FEATURE_CELL)
    assert (ref.group, ref.version, ref.commit, ref.rows) == ("tx", 1, 1, 3)
    assert ref.online and "amount_mean" in ref.statistics
    assert "feats" in shell.user_ns  # the cell ran in the user namespace
    html = ref._repr_html_()
    assert "tx:1@1" in html and "statistics" in html
    with nbops.open(tmp_path / ".nbops") as store:
        assert store.feature_groups()["description"].tolist() == ["card activity"]
        assert store.online_features(["tx.amount_mean"], keys={"cc_num": [1]})["amount_mean"].tolist() == [15.0]
    listing = shell.run_line_magic("features", "--table")
    assert listing["group"].tolist() == ["tx"]
    assert shell.run_line_magic("features", "tx --table")["commit"].tolist() == [1]
    panel = shell.run_line_magic("features", "tx")
    assert panel.groups.selected == ["tx:1"] and panel.commits.selected == ["1"]
    assert "amount_mean" in panel.detail.value


def test_features_cell_records_what_the_cell_read(shell: InteractiveShell, tmp_path: Path) -> None:
    shell.run_line_magic("snapshot", "df --name raw")
    cell = "raw = nbops.open().load('raw')\n" + FEATURE_CELL
    shell.run_cell("import nbops")
    ref = shell.run_cell_magic("features", "tx --keys cc_num --event-time ts", cell)
    from nbops.core import lineage

    with nbops.open(tmp_path / ".nbops") as store:
        assert lineage.parents(store.catalog, ("feature_commit", ref.ref)) == [("snapshot", "raw@1")]


@pytest.mark.parametrize(
    ("line", "cell", "message"),
    [
        ("tx --event-time ts", FEATURE_CELL, "usage: %%features GROUP --keys"),
        ("tx --keys cc_num --event-time ts", "x = 1", "last line of a %%features cell must be the feature DataFrame"),
        ("tx --keys cc_num --event-time ts", "1 +", "the cell does not parse"),
        ("tx --keys cc_num --event-time ts", "raise ValueError('boom')\nfeats", "the cell raised an error"),
        ("tx --keys nope --event-time ts", FEATURE_CELL, "column 'nope' is not in the frame"),
        ("../x --keys cc_num --event-time ts", FEATURE_CELL, "rule: separator"),
        ("tx --keys cc_num --event-time ts", "[1, 2]", "need a pandas DataFrame"),
    ],
)
def test_features_cell_errors_are_usage_errors_that_register_nothing(
    shell: InteractiveShell, tmp_path: Path, line: str, cell: str, message: str
) -> None:
    with pytest.raises(UsageError, match=message):
        shell.run_cell_magic("features", line, cell)
    with nbops.open(tmp_path / ".nbops") as store:
        assert store.summary()["feature_commits"] == 0


def test_drift_magic_compares_commits_and_a_variable(shell: InteractiveShell) -> None:
    shell.run_cell_magic("features", "tx --keys cc_num --event-time ts", FEATURE_CELL)
    later = FEATURE_CELL.replace("2026-01", "2026-02").replace("[10.0, 20.0, 15.0]", "[100.0, 200.0, 150.0]")
    shell.run_cell_magic("features", "tx --keys cc_num --event-time ts", later)
    report = shell.run_line_magic("drift", "tx --table")
    assert report["feature"].tolist() == ["amount_mean"] and bool(report["drifting"].iloc[0])
    assert shell.run_line_magic("drift", "tx 1 2 --table")["psi"].iloc[0] == report["psi"].iloc[0]
    against_frame = shell.run_line_magic("drift", "tx feats --table")
    assert len(against_frame) == 1
    panel = shell.run_line_magic("drift", "tx 1 2")
    assert panel.features.row_ids == ["amount_mean"] and panel.chart.spec is not None
    with pytest.raises(UsageError, match="no feature group named 'nope'"):
        shell.run_line_magic("drift", "nope")
    with pytest.raises(UsageError, match="no feature group named 'nope'"):
        shell.run_line_magic("drift", "nope --table")


def test_features_cell_keeps_the_notebook_cell_id_of_its_own_cell(shell: InteractiveShell, tmp_path: Path) -> None:
    """The lines a %%features cell runs before its last expression are part of that cell."""
    import json

    import sqlalchemy as sa

    from nbops.core import catalog as cat

    shell.run_cell(f"%%features tx --keys cc_num --event-time ts\n{FEATURE_CELL}", store_history=True, cell_id="cell-7")
    with nbops.open(tmp_path / ".nbops") as store, store.catalog.read() as conn:
        context = json.loads(conn.execute(sa.select(cat.feature_commits.c.lineage)).scalar_one())
    assert context["cell_id"] == "cell-7"
    assert (
        context["cell_sha256"]
        == hashlib.sha256(f"%%features tx --keys cc_num --event-time ts\n{FEATURE_CELL}".encode()).hexdigest()
    )
