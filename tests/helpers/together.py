"""Interpreters started together, released at the same moment through a ``go`` file, and checked when done."""

from __future__ import annotations

import contextlib
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

Procs = list[subprocess.Popen[str]]


def start_python(args: list[str], env: dict[str, str]) -> subprocess.Popen[str]:
    """This interpreter running ``args`` in ``env``, its stdout and stderr captured as text."""
    return subprocess.Popen([sys.executable, *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def release_when_ready(procs: Procs, ready: Callable[[], bool], go: Path, wait: float, poll: float) -> None:
    """Write ``go`` once ``ready()``, or sooner if one of ``procs`` has exited or ``wait`` seconds have passed."""
    deadline = time.monotonic() + wait
    while not ready():
        if any(p.poll() is not None for p in procs) or time.monotonic() > deadline:
            break
        time.sleep(poll)
    go.touch()


@contextlib.contextmanager
def reaped(procs: Procs) -> Iterator[Procs]:
    """``procs`` for the block; any still running when it ends (a timeout, a failure) are killed and waited for."""
    try:
        yield procs
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()


def assert_all_exited_zero(procs: Procs, outputs: list[tuple[str, str]], what: str, tail: int) -> None:
    """Each of ``procs`` exited with 0; otherwise fail quoting the last ``tail`` characters of its stderr."""
    for p, (_, err) in zip(procs, outputs, strict=True):
        assert p.returncode == 0, f"{what} failed with code {p.returncode}:\n{err[-tail:]}"
