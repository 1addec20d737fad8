"""A real ``redis-server`` for the tests: own port, own folder, no persistence, on 127.0.0.1 only.

Without the binary the tests that need it skip and say why, except under CI
(``CI`` set), where they fail: a broken Redis setup cannot pass for green.
Debian: ``apt-get install redis-server``; ``.ci/run`` installs it.

    from helpers.redisserver import redis_server_fixture  # noqa: F401  (provides the redis_server fixture)
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from helpers.servers import ServerProcess, running

START_TIMEOUT_SECONDS = 10


class RedisServer(ServerProcess):
    """One ``redis-server`` process; ``url`` is where it listens, ``stop()``/``start()`` take it down and up."""

    #: More ``redis-server`` options, for a subclass (e.g. ``["--requirepass", secret]``).
    extra_args: tuple[str, ...] = ()

    def __init__(self, binary: str, folder: Path) -> None:
        super().__init__(folder)
        self.binary = binary
        self.url = f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(
            [
                self.binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                *self.extra_args,
                "--dir",
                str(self.folder),
                "--logfile",
                str(self.folder / "redis.log"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self.wait_for(self.ping, f"redis-server on port {self.port}", self.folder / "redis.log", START_TIMEOUT_SECONDS)

    def ping(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as s:
                s.sendall(b"PING\r\n")
                return s.recv(16).startswith(b"+PONG")
        except OSError:
            return False


def redis_binary() -> str:
    """The ``redis-server`` path, or skip (fail under CI) with the reason."""
    binary = shutil.which("redis-server")
    if binary is None:
        reason = (
            "redis-server is not installed (Debian: apt-get install redis-server); the Redis online store tests need it"
        )
        if os.environ.get("CI"):
            pytest.fail(f"{reason}; CI is set, so this is a failure, not a skip")
        pytest.skip(reason)
    return binary


@pytest.fixture(scope="module", name="redis_server")
def redis_server_fixture(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """A running server for the module's tests (stopped at the end)."""
    with running(RedisServer(redis_binary(), tmp_path_factory.mktemp("redis"))) as server:
        yield server
