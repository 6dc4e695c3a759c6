"""API fixtures: an app on real stores, keys of every role, and seeded logs.

Every test that uses ``api`` (or ``stores``) runs twice: with the SQLite state store and with
the MongoDB one (``mongo_db_url`` from ``tests/conftest.py``: ``MONGODB_URL`` when set, else
the session's mongoeco wire-protocol server; a fresh database per test). The log store stays
SQLite: its Elasticsearch adapter has its own contract suite, and the API only counts logs.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI

with warnings.catch_warnings():
    # Starlette 1.x prefers httpx2 for its TestClient; httpx (what we ship) still works.
    warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient`")
    from fastapi.testclient import TestClient

__all__ = ["Api", "TestClient", "chat_log", "make_settings", "retrieval_log"]

from flywheel.api.app import create_app
from flywheel.domain.jobs import Role
from flywheel.domain.logs import ChatLog, RetrievalLog, RetrievedPassage
from flywheel.services.auth import create_key
from flywheel.services.workflow_port import DeferredLauncher
from flywheel.settings import Settings
from flywheel.stores.base import LogStore, StateStore
from flywheel.stores.registry import open_log_store, open_state_store


def chat_log(client_id: str, workload_id: str, n: int = 0) -> ChatLog:
    """One minimal valid chat record."""
    return ChatLog(
        client_id=client_id,
        workload_id=workload_id,
        timestamp=int(time.time() * 1000) - n,
        request={"model": "big", "messages": [{"role": "user", "content": f"hi {n}"}]},
        response={"choices": [{"message": {"role": "assistant", "content": "hello"}}]},
    )


def retrieval_log(client_id: str, workload_id: str) -> RetrievalLog:
    """One minimal valid retrieval record."""
    return RetrievalLog(
        client_id=client_id,
        workload_id=workload_id,
        timestamp=int(time.time() * 1000),
        query="what is a flywheel",
        retrieved=[RetrievedPassage(doc_id="d1", text="a wheel")],
        used_doc_ids=["d1"],
    )


@dataclass
class Api:
    """A running test app and what it was built from."""

    app: FastAPI
    client: TestClient
    state: StateStore
    logs: LogStore
    launcher: DeferredLauncher
    keys: dict[str, str]

    def headers(self, who: str) -> dict[str, str]:
        """Authorization headers for a seeded key (admin, operator, viewer, acme, globex)."""
        return {"Authorization": f"Bearer {self.keys[who]}"}


def make_settings(tmp_path: Path, **overrides: Any) -> Settings:
    """Settings isolated from the environment."""
    values: dict[str, Any] = {"data_dir": tmp_path, "auth_enabled": True, "config_path": None}
    values.update(overrides)
    return Settings(_env_file=None, **values)


@pytest.fixture(params=["sqlite", "mongodb"])
def state_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The URL of an empty state store, one per backend."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'state.db'}"
    url: str = request.getfixturevalue("mongo_db_url")
    return url


@pytest.fixture
def stores(tmp_path: Path, state_url: str) -> Iterator[tuple[StateStore, LogStore]]:
    state = open_state_store(state_url)
    logs = open_log_store(f"sqlite:///{tmp_path / 'logs.db'}")
    logs.write(
        [
            chat_log("acme", "router"),
            chat_log("globex", "router"),
            retrieval_log("acme", "rag"),
        ]
    )
    yield state, logs
    state.close()
    logs.close()


@pytest.fixture
def api(tmp_path: Path, stores: tuple[StateStore, LogStore]) -> Iterator[Api]:
    state, logs = stores
    keys = {
        "admin": create_key(state, role=Role.admin)[0],
        "operator": create_key(state, role=Role.operator)[0],
        "viewer": create_key(state, role=Role.viewer)[0],
        "acme": create_key(state, role=Role.operator, client_ids=["acme"])[0],
        "globex": create_key(state, role=Role.operator, client_ids=["globex"])[0],
    }
    launcher = DeferredLauncher()
    app = create_app(make_settings(tmp_path), state_store=state, log_store=logs, workflow=launcher)
    with TestClient(app, raise_server_exceptions=False) as client:
        yield Api(app=app, client=client, state=state, logs=logs, launcher=launcher, keys=keys)
