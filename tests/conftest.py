"""Fixtures shared across test packages: the MongoDB under test.

MongoDB is ``MONGODB_URL`` when set, else one mongoeco wire-protocol server started per
session (shared by the state-store contract tests and the API tests, so a run starts at most
one). Each test that asks for ``mongo_db_url`` gets its own database, dropped afterwards.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from urllib.parse import urlsplit, urlunsplit

import pytest
from pymongo import MongoClient

from tests.support.mongo_server import start_mongo_wire_server


@pytest.fixture(scope="session")
def mongo_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The MongoDB under test: MONGODB_URL, or a session-wide mongoeco server."""
    if url := os.environ.get("MONGODB_URL"):
        yield url
        return
    url, stop = start_mongo_wire_server(tmp_path_factory.mktemp("mongo"))
    yield url
    stop()


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
