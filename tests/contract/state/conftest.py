"""Fixtures for the state store contract: every test runs on SQLite and on MongoDB.

MongoDB is ``mongo_url`` from ``tests/conftest.py`` (``MONGODB_URL`` when set, else one
mongoeco wire-protocol server per session). Each test gets its own database (or SQLite file),
dropped afterwards.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from flywheel.stores.base import StateStore
from flywheel.stores.registry import open_state_store


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
