"""What the tests' throwaway servers share: a free loopback port, waiting until one answers, stopping it.

Used by ``pgserver.py``, ``redisserver.py``, ``s3server.py``, ``labharness.py``
and the tests that start ``nbops ui`` or ``mlflow server``.
"""

from __future__ import annotations

import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until_answering(
    process: subprocess.Popen[bytes], answers: Callable[[], bool], what: str, log: Path, timeout: float
) -> None:
    """Return once ``answers()``; raise, quoting the end of ``log``, if the process exits or time runs out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            text = log.read_text(errors="replace")[-2000:] if log.exists() else ""
            raise RuntimeError(f"{what} exited with {process.returncode}:\n{text}")
        if answers():
            return
        time.sleep(0.05)
    stop(process)
    raise RuntimeError(f"{what} did not answer within {timeout} s")


def stop(process: subprocess.Popen[bytes] | None, timeout: float = 10) -> None:
    """SIGTERM, then SIGKILL if it is still there after ``timeout`` seconds."""
    if process is None or process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
