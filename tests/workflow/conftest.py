"""Fixtures of the workflow tests: real SQLite stores seeded with logs, and the fake platform."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from flywheel.stores.logs_sqlite import SqliteLogStore
from flywheel.stores.state_sqlite import SqliteStateStore
from flywheel.workflow.steps import StepRunner, WorkflowServices
from tests.workflow.fake_platform import FakePlatform
from tests.workflow.support import chat_logs, make_services, retrieval_logs


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    path = tmp_path / "data"
    path.mkdir()
    return path


@pytest.fixture
def state(data_dir: Path) -> Iterator[SqliteStateStore]:
    store = SqliteStateStore.from_url(f"sqlite:///{data_dir / 'state.db'}")
    yield store
    store.close()


@pytest.fixture
def logs(data_dir: Path) -> Iterator[SqliteLogStore]:
    store = SqliteLogStore.from_url(f"sqlite:///{data_dir / 'logs.db'}")
    store.write(chat_logs(40))
    store.write(retrieval_logs(40))
    yield store
    store.close()


@pytest.fixture
def platform(data_dir: Path) -> FakePlatform:
    return FakePlatform(data_dir / "fake_platform.db")


@pytest.fixture
def services(
    state: SqliteStateStore, logs: SqliteLogStore, platform: FakePlatform, data_dir: Path
) -> WorkflowServices:
    return make_services(state=state, logs=logs, platform=platform, data_dir=data_dir)


@pytest.fixture
def runner(services: WorkflowServices) -> StepRunner:
    return StepRunner(services)
