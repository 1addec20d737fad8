"""What the tests' throwaway servers share: a free loopback port, waiting until one answers, stopping it.

``ServerProcess`` is the base of the Redis and S3 servers; ``running(server)`` starts one for a ``with`` block.

Used by ``pgserver.py``, ``redisserver.py``, ``s3server.py``, ``labharness.py``
and the tests that start ``nbops ui`` or ``mlflow server``.
"""

from __future__ import annotations

import contextlib
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Protocol, TypeVar


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


class ServerProcess:
    """A server the tests run as a child process: its own ``folder``, a free ``port``, and ``stop()``."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    def wait_for(self, answers: Callable[[], bool], what: str, log: Path, timeout: float) -> None:
        """Return once the started ``process`` ``answers()``; raise, quoting ``log``, if it exits or time runs out."""
        assert self.process is not None, "start the process first"
        wait_until_answering(self.process, answers, what, log, timeout)

    def stop(self) -> None:
        """End the process (if it runs); ``start()`` may be called again."""
        stop(self.process)
        self.process = None


class _Startable(Protocol):
    def start(self) -> None: ...

    def stop(self) -> None: ...


_S = TypeVar("_S", bound=_Startable)


@contextlib.contextmanager
def running(server: _S) -> Iterator[_S]:
    """``server`` started for the block, and stopped however the block ends."""
    server.start()
    try:
        yield server
    finally:
        server.stop()
