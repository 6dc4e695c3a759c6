"""Fixtures for the log store contract: every test runs on SQLite and on Elasticsearch.

Elasticsearch is ``ELASTICSEARCH_URL`` when set, else noida-db's Elasticsearch API started
once per session. Each test gets its own index, deleted (with its template) afterwards.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from elasticsearch import Elasticsearch

from flywheel.stores.base import LogStore
from flywheel.stores.registry import open_log_store
from tests.support.es_server import start_es_server


@pytest.fixture(scope="session")
def es_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The Elasticsearch under test: ELASTICSEARCH_URL, or a session-wide noida-db server."""
    if url := os.environ.get("ELASTICSEARCH_URL"):
        yield url
        return
    url, stop = start_es_server(tmp_path_factory.mktemp("es"))
    yield url
    stop()


@pytest.fixture
def es_admin(es_url: str) -> Iterator[Elasticsearch]:
    """A bare client, for what the port does not expose (mappings, cleanup)."""
    client = Elasticsearch(es_url, request_timeout=30)
    yield client
    client.close()


@pytest.fixture
def es_index(es_admin: Elasticsearch) -> Iterator[str]:
    """A fresh index name, removed with its template after the test."""
    index = f"flywheel-test-{uuid.uuid4().hex[:12]}"
    yield index
    es_admin.options(ignore_status=404).indices.delete(index=index)
    es_admin.options(ignore_status=404).indices.delete_index_template(name=f"flywheel-logs-{index}")


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
