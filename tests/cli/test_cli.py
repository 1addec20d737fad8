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
    # What earlier tests of this process left in the environment (an MLflow URI set when a store opened
    # in-process) is not the user's: the command sees only what the test gives it.
    for inherited in ("NBOPS_HOME", "MLFLOW_TRACKING_URI", "NBOPS_MLFLOW_TRACKING_URI"):
        if env is None or inherited not in env:
            full_env.pop(inherited, None)
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
    assert [(cols[0], cols[1], cols[2], cols[3]) for cols in lines] == [
        ("other", "1", "1", "1"),
        ("raw", "2", "2", "4"),
    ]
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


@pytest.mark.slow
def test_ui_serves_the_store_runs_on_loopback_and_stops_with_its_server(project: Path) -> None:
    import json
    import time
    import urllib.request

    import psutil

    with nbops.open(project / ".nbops"), nbops.track(experiment="ui_check", run_name="r1") as run_:
        nbops.log(score=0.5)
    from helpers.servers import free_port

    port = free_port()
    env = {**os.environ}
    env.pop("NBOPS_HOME", None)
    env.pop("MLFLOW_TRACKING_URI", None)
    assert NBOPS is not None
    ui = subprocess.Popen(
        [NBOPS, "ui", "--port", str(port)],
        cwd=project,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as answer:
                    if answer.status == 200:
                        break
            except OSError:
                pass
            assert ui.poll() is None, ui.stdout.read() if ui.stdout else ""
            assert time.monotonic() < deadline, "the MLflow UI did not come up in 90 s"
            time.sleep(0.5)
        search = f"http://127.0.0.1:{port}/ajax-api/2.0/mlflow/runs/search"
        body = json.dumps({"experiment_ids": [run_.experiment_id]}).encode()
        request = urllib.request.Request(search, data=body, headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=10) as answer:
            runs = json.load(answer)["runs"]
        assert [r["info"]["run_id"] for r in runs] == [run_.run_id]
        family = [psutil.Process(ui.pid), *psutil.Process(ui.pid).children(recursive=True)]
        listening = set()
        for member in family:
            try:  # a short-lived helper (a worker MLflow starts and stops) may be gone by now
                connections = member.net_connections("tcp")
            except psutil.NoSuchProcess:
                continue
            listening |= {c.laddr.ip for c in connections if c.status == psutil.CONN_LISTEN}
        assert listening == {"127.0.0.1"}
    finally:
        children = psutil.Process(ui.pid).children(recursive=True) if ui.poll() is None else []
        ui.terminate()
        ui.wait(timeout=60)
    assert ui.returncode == 0
    assert not [c for c in children if c.is_running() and c.status() != psutil.STATUS_ZOMBIE]


def test_ui_with_a_tracking_server_prints_its_address_without_the_password(project: Path) -> None:
    shown = run(
        "ui",
        cwd=project,
        env={"MLFLOW_TRACKING_URI": "http://team:s3cret@127.0.0.1:9/", "NBOPS_HOME": str(project / ".nbops")},
    )
    assert shown.returncode == 0, shown.stderr
    assert "its UI is at http://team:***@127.0.0.1:9/" in shown.stdout and "s3cret" not in shown.stdout + shown.stderr
