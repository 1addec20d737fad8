"""A real ``mlflow server`` for the tests, on 127.0.0.1 and a free port, as a team runs it.

``running_server(backend, artifacts)`` starts ``python -m mlflow server`` on
the database ``backend`` (its ``--backend-store-uri``) with artifacts proxied
through it to the folder ``artifacts`` (``--artifacts-destination``), waits
until ``/health`` answers, and stops its whole process group on exit.  Used
by ``test_mlflow_server.py`` and ``test_migrate_runs.py``.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

from mlflow import MlflowClient

from helpers.servers import free_port
from nbops.core.paths import MARKER_ENV, URI_ENV

#: ``mlflow server`` runs its migrations on a new database first: seconds, not minutes.
SERVER_START_TIMEOUT = 120.0


@dataclass
class MlflowServer:
    uri: str  # http://127.0.0.1:<port>
    artifacts: Path | str  # what --artifacts-destination points at: a folder or a URI
    log: Path

    def client(self) -> MlflowClient:
        return MlflowClient(tracking_uri=self.uri)

    def log_tail(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")[-4000:]


def healthy(uri: str) -> bool:
    try:
        with urllib.request.urlopen(f"{uri}/health", timeout=2) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def stop_group(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM the server's whole process group, then SIGKILL what is left.

    ``mlflow server`` starts uvicorn and job workers of its own; killing only
    the first process would leave them serving (and holding database connections).
    """
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    with suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=15)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        try:
            os.killpg(proc.pid, 0)  # anyone of the group still alive?
        except ProcessLookupError:
            break
        time.sleep(0.1)
    else:
        with suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
    if proc.poll() is None:
        proc.wait(timeout=15)


@contextmanager
def running_server(backend: str, artifacts: Path | str, log: Path) -> Iterator[MlflowServer]:
    """``mlflow server`` on ``backend`` with artifacts in ``artifacts``; raises RuntimeError if it does not start."""
    port = free_port()
    server = MlflowServer(f"http://127.0.0.1:{port}", artifacts, log)
    # The server must not inherit a tracking URI of the person running the tests.
    env = {k: v for k, v in os.environ.items() if k not in (URI_ENV, MARKER_ENV, "NBOPS_HOME")}
    # Its job runner (GenAI evaluation jobs, nothing nbops uses) starts seven more
    # processes that each import MLflow: seconds of start-up for nothing here.
    env["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] = "false"
    command = [
        sys.executable, "-m", "mlflow", "server",
        "--backend-store-uri", backend,
        "--serve-artifacts", "--artifacts-destination", str(artifacts),
        "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
    ]  # fmt: skip
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            command, cwd=log.parent, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        deadline = time.monotonic() + SERVER_START_TIMEOUT
        while not healthy(server.uri):
            if proc.poll() is not None:
                raise RuntimeError(f"mlflow server exited with {proc.returncode}:\n{server.log_tail()}")
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"mlflow server not healthy after {SERVER_START_TIMEOUT:.0f} s:\n{server.log_tail()}"
                )
            time.sleep(0.2)
        yield server
    finally:
        stop_group(proc)
