"""Fixtures for the state store contract: every test runs on SQLite and on MongoDB.

MongoDB is ``MONGODB_URL`` when set, else one mongoeco wire-protocol server started per
session. Each test gets its own database (or SQLite file), dropped afterwards.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest
from pymongo import MongoClient

from flywheel.stores.base import StateStore
from flywheel.stores.registry import open_state_store
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


@pytest.fixture(params=["sqlite", "mongodb"])
def state_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The URL of an empty state store, one per backend."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'db' / 'state.db'}"
    url: str = request.getfixturevalue("mongo_db_url")
    return url


@pytest.fixture
def open_store(state_url: str) -> Iterator[Callable[[], StateStore]]:
    """Open more stores on the same data, as other workers would; all closed afterwards."""
    opened: list[StateStore] = []

    def open_one() -> StateStore:
        opened.append(open_state_store(state_url))
        return opened[-1]

    yield open_one
    for store in opened:
        store.close()


@pytest.fixture
def state_store(open_store: Callable[[], StateStore]) -> StateStore:
    """The store under test, opened through the registry as the app does."""
    return open_store()
