"""A throwaway PostgreSQL server for the tests: Debian's binaries, our own data folder.

The ``pg_server`` fixture (session scope) runs ``initdb`` into a temporary
folder and starts ``postgres`` on 127.0.0.1 on a free port, with its unix
socket inside that folder, so it never meets a server of the machine.  As
root it runs the server as the ``postgres`` user (PostgreSQL refuses to run
as root).  ``pg_url`` gives each test a new database of its own.

Without the binaries (``/usr/lib/postgresql/*/bin/initdb``) or the psycopg
driver the tests skip with the reason, except under CI (``$CI`` set), where
they fail: CI installs both, so a skip there would hide a broken set-up.
"""

from __future__ import annotations

import contextlib
import glob
import os
import secrets
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import NoReturn

import pytest

from helpers.servers import free_port

ADMIN = "nbops_admin"
_RUN_AS = "postgres"


def find_bin_dir() -> Path | None:
    """The newest installed server's ``bin`` folder (Debian: /usr/lib/postgresql/<major>/bin)."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parent.parent.name))
    return Path(found[-1]).parent if found else None


def unavailable(reason: str) -> NoReturn:
    """Skip, or under CI fail: these tests must not be skipped there."""
    if os.environ.get("CI"):
        pytest.fail(f"PostgreSQL tests cannot run under CI: {reason}", pytrace=False)
    pytest.skip(f"PostgreSQL tests skipped: {reason}")


class PgServer:
    """One running server; :meth:`create_database` makes a fresh database for a test."""

    def __init__(self, bin_dir: Path, base: Path) -> None:
        self.bin_dir = bin_dir
        self.base = base
        self.data = base / "data"
        self.socket_dir = base / "sock"
        self.log = base / "server.log"
        self.port = free_port()
        self.host = "127.0.0.1"
        self.password = secrets.token_urlsafe(18)
        self._as_root = os.geteuid() == 0
        self._databases = 0

    def _run(self, *argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        command = [str(self.bin_dir / argv[0]), *argv[1:]]
        if self._as_root:
            command = ["runuser", "-u", _RUN_AS, "--", *command]
        # the server's children must not inherit a working folder the postgres user cannot enter
        return subprocess.run(command, cwd=self.base, capture_output=True, text=True, check=check, timeout=120)

    def start(self) -> None:
        self.socket_dir.mkdir()
        pwfile = self.base / "pwfile"
        pwfile.write_text(self.password + "\n", encoding="utf-8")
        if self._as_root:
            shutil.chown(self.base, _RUN_AS)
            shutil.chown(self.socket_dir, _RUN_AS)
            shutil.chown(pwfile, _RUN_AS)
        pwfile.chmod(0o600)
        # Password checks over TCP (the tests connect as a client would), trust on the private socket.
        self._run("initdb", "-D", str(self.data), "-U", ADMIN, "--pwfile", str(pwfile), "--auth-host=scram-sha-256",
                  "--auth-local=trust", "-E", "UTF8", "--locale=C.UTF-8", "--no-sync")  # fmt: skip
        pwfile.unlink()
        options = (
            f"-c listen_addresses={self.host} -p {self.port} -c unix_socket_directories={self.socket_dir} "
            "-c fsync=off -c full_page_writes=off -c max_connections=200"
        )
        started = self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-o", options, "-w", "-t", "60",
                            "start", check=False)  # fmt: skip
        if started.returncode != 0:
            raise RuntimeError(f"postgres did not start:\n{started.stdout}{started.stderr}\n{self.log_tail()}")

    def log_tail(self) -> str:
        with contextlib.suppress(OSError):
            return self.log.read_text(encoding="utf-8", errors="replace")[-4000:]
        return ""

    def stop(self) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop", check=False)

    def url(self, database: str, user: str = ADMIN, password: str | None = None) -> str:
        """A client URL over TCP (``password`` defaults to the admin's)."""
        secret = self.password if password is None else password
        auth = f"{user}:{secret}" if secret else user
        return f"postgresql://{auth}@{self.host}:{self.port}/{database}"

    def admin_sql(self, *statements: str, database: str = "postgres") -> None:
        """Run statements as the admin, outside a transaction (CREATE DATABASE needs that)."""
        import psycopg

        with psycopg.connect(self.url(database), autocommit=True) as db:
            for statement in statements:
                db.execute(statement)  # type: ignore[arg-type]  # our own literals, no user text

    def create_database(self, prefix: str = "t") -> str:
        """A new, empty database; returns its name."""
        self._databases += 1
        name = f"{prefix}_{os.getpid()}_{self._databases}"
        self.admin_sql(f'CREATE DATABASE "{name}"')
        return name


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    bin_dir = find_bin_dir()
    if bin_dir is None:
        unavailable("no PostgreSQL server binaries in /usr/lib/postgresql/*/bin (apt-get install postgresql)")
    try:
        import psycopg  # noqa: F401
    except ImportError:
        unavailable("the psycopg driver is not installed (pip install 'nbops[postgres]')")
    # /tmp rather than pytest's tmp_path: the postgres user must be able to enter the folder.
    base = Path(tempfile.mkdtemp(prefix="nbops-pg-"))
    base.chmod(0o755)
    server = PgServer(bin_dir, base)
    try:
        server.start()
    except (OSError, subprocess.SubprocessError, RuntimeError) as exc:
        shutil.rmtree(base, ignore_errors=True)
        unavailable(f"the test server did not start: {exc}")
    try:
        yield server
    finally:
        server.stop()
        deadline = time.monotonic() + 30
        while (server.data / "postmaster.pid").exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def pg_database(pg_server: PgServer) -> str:
    """The name of a new database for this test."""
    return pg_server.create_database()


@pytest.fixture
def pg_url(pg_server: PgServer, pg_database: str) -> str:
    """A catalog URL (with the admin's password) to a new database for this test."""
    return pg_server.url(pg_database)
