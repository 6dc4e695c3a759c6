"""The state stores' queries use indexes, so listings stay fast as jobs pile up.

SQLite: every statement a store call runs is captured as executed (values bound) and put to
``EXPLAIN QUERY PLAN``; a plan step ``SCAN <table>`` without an index is a full table scan.
MongoDB: the indexes the store declares (``_INDEXES``) exist on the server after opening.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest
from pymongo import MongoClient

from flywheel.domain.jobs import JobStatus, JobType
from flywheel.stores.base import StateStore
from flywheel.stores.registry import open_state_store
from flywheel.stores.state_mongo import _INDEXES
from flywheel.stores.state_sqlite import SqliteStateStore
from tests.contract.state import factories as f

#: A plan step that reads a whole table: "SCAN jobs", not "SCAN jobs USING INDEX ...".
_FULL_SCAN = re.compile(r"^SCAN (TABLE )?\w+$")
_STATEMENT = re.compile(r"^\s*(SELECT|UPDATE|DELETE)\b", re.IGNORECASE)


class _Traced:
    """A SQLite state store whose executed statements are recorded for EXPLAIN."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.store = SqliteStateStore(path)
        self.statements: list[str] = []
        # Single-threaded, the pool lends its one connection to every call: trace it.
        with self.store._db.connection() as conn:
            conn.set_trace_callback(self.statements.append)

    def plans(self, call: Callable[[StateStore], object]) -> dict[str, list[str]]:
        """Run ``call`` and return each query it executed with its plan steps."""
        self.statements.clear()
        call(self.store)
        queries = [s for s in self.statements if _STATEMENT.match(s)]
        assert queries, "the call ran no query"
        with closing(sqlite3.connect(self.path)) as conn:
            return {
                sql: [row[3] for row in conn.execute(f"EXPLAIN QUERY PLAN {sql}")]
                for sql in queries
            }


@pytest.fixture
def traced(tmp_path: Path) -> Iterator[_Traced]:
    traced = _Traced(tmp_path / "state.db")
    store = traced.store
    for i, status in enumerate(JobStatus):
        store.create_job(f.job(status=status, created_at=f.at(i), config_name="nightly"))
        store.create_job(f.job(client_id="globex", workload_id="kb", created_at=f.at(i + 0.5)))
    store.create_key(f.key(key_hash="known-hash"))
    store.add_promotion(f.promotion(), expected_current=None)
    yield traced
    store.close()


def _cursor(store: StateStore) -> str:
    cursor = store.list_jobs(limit=1).next_cursor
    assert cursor is not None
    return cursor


CALLS: dict[str, Callable[[StateStore], object]] = {
    "list_jobs": lambda s: s.list_jobs(),
    "list_jobs summary": lambda s: s.list_jobs(summary=True),
    "list_jobs status": lambda s: s.list_jobs(status=JobStatus.running),
    "list_jobs client": lambda s: s.list_jobs(client_id="acme"),
    "list_jobs client scope": lambda s: s.list_jobs(client_ids=["acme", "globex"]),
    "list_jobs workload": lambda s: s.list_jobs(workload_id="kb"),
    "list_jobs client and workload": lambda s: s.list_jobs(client_id="acme", workload_id="router"),
    "list_jobs type": lambda s: s.list_jobs(job_type=JobType.llm_job),
    "list_jobs status and client": lambda s: s.list_jobs(
        status=JobStatus.pending, client_id="acme"
    ),
    "get_job": lambda s: s.get_job(s.list_jobs(limit=1).items[0].id),
    "count_jobs": lambda s: s.count_jobs(),
    "count_jobs config": lambda s: s.count_jobs(config_name="nightly"),
    "count_jobs statuses": lambda s: s.count_jobs(statuses=[JobStatus.pending, JobStatus.running]),
    "count_jobs config and statuses": lambda s: s.count_jobs(
        config_name="nightly", statuses=[JobStatus.running]
    ),
    "find_key": lambda s: s.find_key("known-hash"),
    "list_keys": lambda s: s.list_keys(),
    "list_promotions": lambda s: s.list_promotions("acme", "router"),
    "current_promotion": lambda s: s.add_promotion(
        f.promotion(), expected_current=s.list_promotions("acme", "router")[0].id
    ),
}


@pytest.mark.parametrize("name", CALLS)
def test_sqlite_queries_use_an_index(traced: _Traced, name: str) -> None:
    for sql, steps in traced.plans(CALLS[name]).items():
        scans = [step for step in steps if _FULL_SCAN.match(step)]
        assert not scans, f"{name}: {sql!r} reads a whole table: {steps}"


def test_sqlite_cursor_pages_seek_instead_of_scanning(traced: _Traced) -> None:
    cursor = _cursor(traced.store)

    plans = traced.plans(lambda s: s.list_jobs(cursor=cursor, limit=2))

    [(sql, steps)] = [(sql, steps) for sql, steps in plans.items() if "created_ms" in sql]
    assert any(step.startswith("SEARCH jobs USING") for step in steps), steps
    assert not any("TEMP B-TREE" in step for step in steps), f"{sql!r} sorts in memory: {steps}"


@pytest.mark.parametrize(
    "name",
    [n for n in CALLS if n.startswith("list_jobs") and n != "list_jobs client scope"],
)
def test_sqlite_job_listings_are_served_in_index_order(traced: _Traced, name: str) -> None:
    # The newest-first order comes from the index: no sort of every matching row per page.
    for sql, steps in traced.plans(CALLS[name]).items():
        if "ORDER BY created_ms" in sql:
            assert not any("TEMP B-TREE" in step for step in steps), f"{sql!r}: {steps}"


def _key_patterns(indexes: list[dict[str, Any]]) -> set[tuple[tuple[str, int], ...]]:
    return {tuple((field, int(order)) for field, order in ix["key"].items()) for ix in indexes}


def test_mongo_store_creates_every_declared_index(mongo_db_url: str) -> None:
    store = open_state_store(mongo_db_url)
    store.close()
    client: MongoClient[dict[str, Any]] = MongoClient(mongo_db_url, serverSelectionTimeoutMS=5_000)
    try:
        db = client.get_default_database()
        for collection, declared in _INDEXES.items():
            present = _key_patterns(list(db[collection].list_indexes()))
            for keys, unique in declared:
                assert tuple(keys) in present, f"{collection}: index {keys} missing"
                if unique:
                    [ix] = [
                        ix
                        for ix in db[collection].list_indexes()
                        if tuple(ix["key"].items()) == tuple(keys)
                    ]
                    assert ix.get("unique") is True, f"{collection}: {keys} should be unique"
    finally:
        client.close()
