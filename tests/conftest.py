"""Fixtures shared across test packages: the MongoDB and the Elasticsearch under test.

MongoDB is ``MONGODB_URL`` when set, else one mongoeco wire-protocol server started per
session (shared by the state-store contract tests and the API tests, so a run starts at most
one). Each test that asks for ``mongo_db_url`` gets its own database, dropped afterwards.

Elasticsearch is ``ELASTICSEARCH_URL`` when set, else noida-db's Elasticsearch API started
once per session on first use (shared by the log-store contract and the ingestion tests).
Each test that asks for ``es_index`` gets its own index, deleted (with its template) afterwards.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest
from elasticsearch import Elasticsearch
from pymongo import MongoClient

from tests.support.es_server import start_es_server
from tests.support.mongo_server import start_mongo_wire_server


def _given_or_started(
    variable: str,
    start: Callable[[Path], tuple[str, Callable[[], None]]],
    tmp_path_factory: pytest.TempPathFactory,
    name: str,
) -> Iterator[str]:
    """The URL in ``variable`` when set (a real server, left alone), else one ``start``-ed here.

    A started server lives under a fresh temporary folder ``name`` and stops after the yield.
    """
    if url := os.environ.get(variable):
        yield url
        return
    url, stop = start(tmp_path_factory.mktemp(name))
    yield url
    stop()


@pytest.fixture(scope="session")
def mongo_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The MongoDB under test: MONGODB_URL, or a session-wide mongoeco server."""
    yield from _given_or_started("MONGODB_URL", start_mongo_wire_server, tmp_path_factory, "mongo")


@pytest.fixture
def mongo_db_url(mongo_url: str) -> Iterator[str]:
    """``mongo_url`` pointed at a fresh database, dropped after the test."""
    name = f"flywheel_test_{uuid.uuid4().hex[:12]}"
    url = urlunsplit(urlsplit(mongo_url)._replace(path=f"/{name}"))
    yield url
    admin: MongoClient[dict[str, object]] = MongoClient(url, serverSelectionTimeoutMS=5_000)
    try:
        admin.drop_database(name)
    finally:
        admin.close()


@pytest.fixture(scope="session")
def es_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The Elasticsearch under test: ELASTICSEARCH_URL, or a session-wide noida-db server."""
    yield from _given_or_started("ELASTICSEARCH_URL", start_es_server, tmp_path_factory, "es")


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
