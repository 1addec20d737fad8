"""The served-model store every test module of this folder starts from (one per module: ~8 s to build)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from helpers.served import Fraud, fraud_store


@pytest.fixture(scope="module")
def fraud(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fraud]:
    """A store with online features, saved training data and the model ``fraud`` (alias ``champion``)."""
    built = fraud_store(tmp_path_factory.mktemp("served") / ".nbops")
    try:
        yield built
    finally:
        built.store.close()
