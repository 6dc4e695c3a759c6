"""Console fixtures: the API on real SQLite stores with keys of every role and seeded logs,
and the real workflow (in process, fake model platform) to run the jobs it creates."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from flywheel.api.app import create_app
from flywheel.domain.jobs import Role
from flywheel.domain.logs import ChatLog
from flywheel.services.auth import create_key
from flywheel.services.workflow_port import DeferredLauncher
from flywheel.stores.base import LogStore, StateStore
from flywheel.stores.registry import open_log_store, open_state_store
from tests.api.conftest import Api, TestClient, make_settings, retrieval_log
from tests.console.fixtures import Workflow, write_job_config

CLIENT, WORKLOAD = "aiva", "tool-router"


def tool_log(client_id: str, workload_id: str, n: int) -> ChatLog:
    """A tool-calling chat record, distinct per ``n``."""
    tool = "get_weather" if n % 3 else "book_flight"
    return ChatLog(
        client_id=client_id,
        workload_id=workload_id,
        timestamp=int(time.time() * 1000) - n * 1000,
        request={
            "model": "big",
            "messages": [{"role": "user", "content": f"request number {n} about {tool}"}],
            "tools": [
                {"type": "function", "function": {"name": t, "parameters": {"type": "object"}}}
                for t in ("get_weather", "book_flight")
            ],
        },
        response={
            "choices": [
                {
                    "message": {
                        "role": "assistant",
                        "content": None,
                        "tool_calls": [
                            {
                                "id": f"c{n}",
                                "type": "function",
                                "function": {"name": tool, "arguments": f'{{"n": {n}}}'},
                            }
                        ],
                    }
                }
            ]
        },
    )


def seed_logs(logs: LogStore) -> None:
    """Tool-calling traffic for aiva/tool-router, a little for acme, and a retrieval pair."""
    logs.write([tool_log(CLIENT, WORKLOAD, n) for n in range(64)])
    logs.write([tool_log("acme", "router", n) for n in range(5)])
    logs.write([retrieval_log("acme", "rag")])


@pytest.fixture
def stores(tmp_path: Path) -> Iterator[tuple[StateStore, LogStore]]:
    state = open_state_store(f"sqlite:///{tmp_path / 'state.db'}")
    logs = open_log_store(f"sqlite:///{tmp_path / 'logs.db'}")
    seed_logs(logs)
    yield state, logs
    state.close()
    logs.close()


def keys_for(state: StateStore) -> dict[str, str]:
    """Plaintext keys of every role, and one scoped to acme."""
    return {
        "admin": create_key(state, role=Role.admin)[0],
        "operator": create_key(state, role=Role.operator)[0],
        "viewer": create_key(state, role=Role.viewer)[0],
        "acme": create_key(state, role=Role.operator, client_ids=["acme"])[0],
    }


@pytest.fixture
def api(tmp_path: Path, stores: tuple[StateStore, LogStore]) -> Iterator[Api]:
    state, logs = stores
    keys = keys_for(state)
    launcher = DeferredLauncher()
    settings = make_settings(tmp_path, config_path=write_job_config(tmp_path / "config.yaml"))
    app = create_app(settings, state_store=state, log_store=logs, workflow=launcher)
    with TestClient(app, raise_server_exceptions=False) as client:
        yield Api(app=app, client=client, state=state, logs=logs, launcher=launcher, keys=keys)


@pytest.fixture
def workflow(tmp_path: Path, stores: tuple[StateStore, LogStore]) -> Workflow:
    """The real workflow steps over the API's stores (jobs stay pending until run)."""
    state, logs = stores
    return Workflow.over(state, logs, tmp_path / "workflow")
