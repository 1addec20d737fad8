"""The installed ``nbops`` command, run as a user would."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

import nbops

NBOPS = shutil.which("nbops", path=str(Path(sys.executable).parent))
pytestmark = pytest.mark.skipif(NBOPS is None, reason="the nbops command is not installed (pip install -e .)")


def run(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, **(env or {})}
    full_env.pop("NBOPS_HOME", None) if env is None or "NBOPS_HOME" not in env else None
    assert NBOPS is not None
    return subprocess.run([NBOPS, *args], capture_output=True, text=True, cwd=cwd, env=full_env, timeout=600)


@pytest.fixture
def project(tmp_path: Path) -> Path:
    with nbops.open(tmp_path / ".nbops") as store:
        store.snapshot(pd.DataFrame({"a": [1, 2, 3]}), "raw", message="first")
        store.snapshot(pd.DataFrame({"a": [1, 2, 3, 4]}), "raw")
        store.snapshot(pd.DataFrame({"b": ["x"]}), "other")
    (tmp_path / "sub" / "dir").mkdir(parents=True)
    return tmp_path


def test_ls_and_show_find_the_store_upward(project: Path) -> None:
    ls = run("ls", cwd=project / "sub" / "dir")
    assert ls.returncode == 0, ls.stderr
    assert str(project / ".nbops") in ls.stdout
    lines = [line.split() for line in ls.stdout.splitlines()[2:]]
    assert [(cols[0], cols[1], cols[2], cols[3]) for cols in lines] == [("other", "1", "1", "1"), ("raw", "2", "2", "4")]
    show = run("show", "raw", cwd=project)
    assert show.returncode == 0 and "first" in show.stdout and len(show.stdout.splitlines()) == 3


def test_show_unknown_name_is_a_clear_error(project: Path) -> None:
    result = run("show", "nope", cwd=project)
    assert result.returncode == 2
    assert "no snapshot named 'nope'; known: other, raw" in result.stderr
    assert "Traceback" not in result.stderr


def test_verify_passes_then_catches_a_corrupted_object(project: Path) -> None:
    ok = run("verify", cwd=project)
    assert ok.returncode == 0 and "OK" in ok.stdout
    victim = next((project / ".nbops" / "objects").rglob("*.parquet"))
    victim.chmod(0o644)
    data = bytearray(victim.read_bytes())
    data[len(data) // 2] ^= 0xFF
    victim.write_bytes(bytes(data))
    bad = run("verify", cwd=project)
    assert bad.returncode == 1
    assert victim.name in bad.stdout and "PROBLEMS FOUND" in bad.stdout


def test_gc_removes_orphans_and_temp_files_but_not_versions(project: Path) -> None:
    store_root = project / ".nbops"
    orphan = store_root / "objects" / "ff" / ("f" * 32 + ".parquet")
    orphan.parent.mkdir(parents=True, exist_ok=True)
    orphan.write_bytes(b"half written")
    (store_root / "tmp").mkdir(exist_ok=True)
    tmp_file = store_root / "tmp" / "abc.123.tmp"
    tmp_file.write_bytes(b"partial")
    young = run("gc", cwd=project)
    assert young.returncode == 0 and "kept 2 recent files" in young.stdout and orphan.exists()
    dry = run("gc", "--grace", "0", "--dry-run", cwd=project)
    assert "would remove 1 orphan objects and 1 temporary files" in dry.stdout and orphan.exists()
    done = run("gc", "--grace", "0", cwd=project)
    assert "removed 1 orphan objects and 1 temporary files" in done.stdout
    assert not orphan.exists() and not tmp_file.exists()
    assert run("verify", cwd=project).returncode == 0
    with nbops.open(store_root) as store:
        assert store.load("raw")["a"].tolist() == [1, 2, 3, 4]


def test_store_option_and_nbops_home(project: Path, tmp_path_factory: pytest.TempPathFactory) -> None:
    elsewhere = tmp_path_factory.mktemp("elsewhere")
    by_option = run("--store", str(project / ".nbops"), "ls", cwd=elsewhere)
    assert "raw" in by_option.stdout
    by_env = run("ls", cwd=elsewhere, env={"NBOPS_HOME": str(project / ".nbops")})
    assert "raw" in by_env.stdout


def test_demo_runs_the_quickstart_on_a_fresh_store(tmp_path: Path) -> None:
    result = run("demo", "--dir", str(tmp_path / "demo"), cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "raw_tx" in result.stdout and "3 versions" in result.stdout
    assert "tx_features" in result.stdout and "1 feature groups (2 commits)" in result.stdout
    assert (tmp_path / "demo" / "quickstart.ipynb").exists()
    with nbops.open(tmp_path / "demo" / ".nbops") as store:
        assert store.verify().ok
        assert store.history("raw_tx")["version"].tolist() == [1, 2]
