"""One local Spark session for the tests (``local[2]``), in a time zone that is not UTC.

The session's zone is ``America/New_York`` on purpose: nbops reads naive
times as UTC whatever the session says, and a test on a UTC session could not
tell. Without Java or PySpark the tests skip, or under CI (``$CI`` set) fail.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from typing import Any

import pytest

SESSION_TIME_ZONE = "America/New_York"


def _unavailable(reason: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"{reason}; CI is set, so the Spark tests may not be skipped", pytrace=False)
    pytest.skip(reason, allow_module_level=True)


@pytest.fixture(scope="session")
def spark() -> Iterator[Any]:
    """A running local Spark session, stopped at the end of the run."""
    if shutil.which("java") is None and not os.environ.get("JAVA_HOME"):
        _unavailable("no Java runtime (Spark needs Java 17)")
    try:
        from pyspark.sql import SparkSession
    except ImportError:
        _unavailable("PySpark is not installed")
    session = (
        SparkSession.builder.master("local[2]")
        .appName("nbops-tests")
        .config("spark.ui.enabled", "false")
        .config("spark.sql.shuffle.partitions", "4")
        .config("spark.sql.session.timeZone", SESSION_TIME_ZONE)
        .config("spark.driver.bindAddress", "127.0.0.1")
        .config("spark.driver.host", "127.0.0.1")
        .getOrCreate()
    )
    session.sparkContext.setLogLevel("ERROR")
    try:
        yield session
    finally:
        session.stop()
