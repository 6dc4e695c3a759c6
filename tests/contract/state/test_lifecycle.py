"""State store contract: health, unreachable backends, URLs, and SQLite across processes."""

from __future__ import annotations

import multiprocessing
import socket
from concurrent.futures import ProcessPoolExecutor
from contextlib import closing
from pathlib import Path

import pytest

from flywheel.domain.jobs import JobId, JobStatus
from flywheel.errors import ConfigError, Conflict, StoreUnavailable
from flywheel.stores.base import StateStore
from flywheel.stores.registry import open_state_store
from tests.contract.state.factories import job


def test_ping_answers(state_store: StateStore) -> None:
    state_store.ping()


def test_unreachable_mongodb_raises_store_unavailable() -> None:
    with socket.socket() as probe:  # a port that nothing listens on once closed
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]

    with pytest.raises(StoreUnavailable, match="MongoDB"):
        open_state_store(f"mongodb://127.0.0.1:{port}/x?serverSelectionTimeoutMS=300")


def test_sqlite_url_creates_missing_directories(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "state.db"

    open_state_store(f"sqlite:///{path}").close()

    assert path.is_file()


def test_sqlite_url_without_a_path_is_a_config_error() -> None:
    with pytest.raises(ConfigError):
        open_state_store("sqlite://")


def _claim_all(url: str, job_ids: list[JobId]) -> int:
    """One worker process: try to claim every job; return how many it won."""
    won = 0
    with closing(open_state_store(url)) as store:
        for job_id in job_ids:
            try:
                store.update_job(
                    job_id, {"status": JobStatus.running}, expect_status=[JobStatus.pending]
                )
                won += 1
            except Conflict:
                pass
    return won


def test_sqlite_claims_are_exclusive_across_processes(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'state.db'}"
    workers = 3
    with closing(open_state_store(url)) as store:
        job_ids = [store.create_job(job()).id for _ in range(12)]

        with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
            wins = list(pool.map(_claim_all, [url] * workers, [job_ids] * workers))

        assert sum(wins) == len(job_ids)
        assert {store.get_job(j).version for j in job_ids} == {1}
