"""Every notebook in notebooks/ runs top to bottom in a real kernel."""

from __future__ import annotations

import os
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

import nbops
from helpers import REPO
from nbops.core.paths import MARKER_ENV, URI_ENV

NOTEBOOKS = sorted((REPO / "notebooks").glob("*.ipynb"))


@pytest.fixture(autouse=True)
def _fresh_user(monkeypatch: pytest.MonkeyPatch) -> None:
    """The kernel starts as a new user's would: no tracking URI from an earlier test or the person running them."""
    monkeypatch.delenv(URI_ENV, raising=False)
    monkeypatch.delenv(MARKER_ENV, raising=False)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_executes(path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NBOPS_HOME", str(tmp_path / ".nbops"))
    nb = nbformat.read(path, as_version=4)
    original = path.read_bytes()
    NotebookClient(nb, kernel_name="python3", timeout=300, resources={"metadata": {"path": str(tmp_path)}}).execute()
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
    assert errors == []
    assert path.read_bytes() == original  # notebooks are read, never changed
    with nbops.open(tmp_path / ".nbops") as store:
        assert store.verify().ok
        assert store.summary()["snapshot_versions"] >= 1


def test_quickstart_outputs_tell_the_story(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NBOPS_HOME", str(tmp_path / ".nbops"))
    nb = nbformat.read(REPO / "notebooks" / "quickstart.ipynb", as_version=4)
    NotebookClient(nb, kernel_name="python3", timeout=300, resources={"metadata": {"path": str(tmp_path)}}).execute()
    text = "\n".join(
        o.get("text", "") + o.get("data", {}).get("text/plain", "")
        for c in nb.cells
        if c.cell_type == "code"
        for o in c.outputs
    )
    assert "raw_tx@1" in text and "first version" in text
    assert "raw_tx@2" in text and "changed; columns +amount_log" in text
    assert "unchanged: same content as the latest version" in text
    assert "loaded raw_tx@1 into march" in text
    assert os.fspath(tmp_path / ".nbops") in text
