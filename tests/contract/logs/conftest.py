"""Fixtures for the log store contract: every test runs on SQLite and on Elasticsearch.

The Elasticsearch fixtures (``es_url``, ``es_admin``, ``es_index``) live in tests/conftest.py,
shared with the ingestion tests. Each test gets its own index, deleted (with its template)
afterwards.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from flywheel.stores.base import LogStore
from flywheel.stores.registry import open_log_store


@pytest.fixture(params=["sqlite", "elasticsearch"])
def log_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[LogStore]:
    """The same contract on each backend, opened through the registry as the app does."""
    if request.param == "sqlite":
        store = open_log_store(f"sqlite:///{tmp_path / 'db' / 'logs.db'}")
    else:
        url = request.getfixturevalue("es_url")
        store = open_log_store(url, index=request.getfixturevalue("es_index"))
    yield store
    store.close()
