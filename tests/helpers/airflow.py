"""A real Airflow 3 in a virtualenv of its own, and ``airflow`` commands run against a throwaway home.

Airflow pins hundreds of packages; installed beside nbops it would decide
nbops's versions. So the tests install it once per machine into its own
virtualenv (``~/.cache/nbops-tests/airflow-<version>``, reused while it is
complete) and run its ``airflow`` command in subprocesses. The DAG's tasks run
the exported modules with this suite's interpreter (``NBOPS_PIPELINE_PYTHON``),
as a deployment would run them with the pipelines' own environment.

Without network access to the package index the install fails: the tests
skip, or under CI (``$CI`` set) fail, so a broken set-up cannot pass for green.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

#: The Airflow the tests run: the major version the generated DAG is written for.
AIRFLOW_REQUIREMENT = "apache-airflow>=3.0,<4"
INSTALL_TIMEOUT_SECONDS = 900
VENV = Path.home() / ".cache" / "nbops-tests" / "airflow-3"


def airflow_command() -> Path:
    """The ``airflow`` executable of the tests' own Airflow virtualenv, installed first if need be."""
    command = VENV / "bin" / "airflow"
    done = VENV / ".installed"
    if done.is_file() and command.is_file():
        return command
    VENV.parent.mkdir(parents=True, exist_ok=True)
    base = getattr(sys, "_base_executable", sys.executable)
    steps = [
        [base, "-m", "venv", "--clear", str(VENV)],
        [str(VENV / "bin" / "python"), "-m", "pip", "install", "--quiet", AIRFLOW_REQUIREMENT],
    ]
    for step in steps:
        try:
            result = subprocess.run(step, capture_output=True, text=True, timeout=INSTALL_TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:
            _unavailable(f"installing Airflow took over {INSTALL_TIMEOUT_SECONDS} s")
        if result.returncode != 0:
            _unavailable(f"installing Airflow failed ({' '.join(step[:4])}...):\n{result.stderr[-2000:]}")
    done.write_text(AIRFLOW_REQUIREMENT)
    return command


def _unavailable(reason: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"{reason}; CI is set, so the Airflow tests may not be skipped", pytrace=False)
    pytest.skip(reason)


def airflow_env(home: Path, dags: Path, store: Path) -> dict[str, str]:
    """Airflow on a SQLite metadata database in ``home``, reading DAGs from ``dags``; nbops on ``store``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "MLFLOW_TRACKING", "NBOPS_"))}
    env.update(
        {
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(dags),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
            "NBOPS_HOME": str(store),
            "NBOPS_PIPELINE_PYTHON": sys.executable,
        }
    )
    return env


def airflow(
    command: Path, args: list[str], env: dict[str, str], timeout: float = 600
) -> subprocess.CompletedProcess[str]:
    """Run ``airflow ARGS`` in ``env``; output captured as text."""
    return subprocess.run([str(command), *args], env=env, capture_output=True, text=True, timeout=timeout)
