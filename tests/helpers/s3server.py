"""A real S3-compatible server for the tests: moto's server mode, own port, on 127.0.0.1 only.

moto is a test dependency (``pip install -e '.[test]'``), so these tests
always run. The server speaks the S3 HTTP API; nbops reaches it through
pyarrow's S3 filesystem exactly as it reaches AWS or MinIO.

    from helpers.s3server import s3_server_fixture  # noqa: F401  (provides the s3_server fixture)
"""

from __future__ import annotations

import os
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from helpers.servers import ServerProcess, running

START_TIMEOUT_SECONDS = 30

#: moto accepts any credentials; fixed ones keep pyarrow from looking for real ones (and from
#: asking the EC2 metadata service, which would cost seconds per open).
CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "nbops-test",
    "AWS_SECRET_ACCESS_KEY": "nbops-test-secret",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_EC2_METADATA_DISABLED": "true",
}


class S3Server(ServerProcess):
    """One ``python -m moto.server`` process; ``uri(bucket, prefix)`` is a data root on it."""

    def __init__(self, folder: Path) -> None:
        super().__init__(folder)
        self.endpoint = f"127.0.0.1:{self.port}"

    def uri(self, bucket: str, prefix: str = "") -> str:
        path = f"{bucket}/{prefix}".rstrip("/")
        return f"s3://{path}?endpoint_override={self.endpoint}&scheme=http&region=us-east-1"

    def start(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        log = (self.folder / "moto.log").open("wb")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, **CREDENTIALS},
        )
        log.close()
        self.wait_for(self.answers, f"moto.server on {self.endpoint}", self.folder / "moto.log", START_TIMEOUT_SECONDS)

    def answers(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://{self.endpoint}/", timeout=1) as response:
                return bool(response.status < 500)
        except urllib.error.HTTPError as exc:
            return exc.code < 500
        except OSError:
            return False

    def filesystem(self) -> object:
        """A pyarrow S3 filesystem on this server, to create buckets and look at objects."""
        from pyarrow import fs

        return fs.S3FileSystem(
            access_key=CREDENTIALS["AWS_ACCESS_KEY_ID"],
            secret_key=CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
            region="us-east-1",
            scheme="http",
            endpoint_override=self.endpoint,
            allow_bucket_creation=True,
        )

    def create_bucket(self, name: str) -> None:
        self.filesystem().create_dir(name)  # type: ignore[attr-defined]


@pytest.fixture(scope="session", name="s3_server")
def s3_server_fixture(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    with running(S3Server(tmp_path_factory.mktemp("s3server"))) as server:
        yield server
