"""State store contract: newest-first job listing, filters, tenant scope and keyset paging."""

from __future__ import annotations

import base64
from typing import Any

import pytest

from flywheel.domain.jobs import Job, JobId, JobStatus, JobType
from flywheel.errors import ValidationFailed
from flywheel.stores.base import StateStore
from tests.contract.state.factories import T0, at, job


def _all_pages(store: StateStore, limit: int, status: JobStatus | None = None) -> list[list[JobId]]:
    """Follow ``next_cursor`` to the end; return each page's ids."""
    pages: list[list[JobId]] = []
    cursor: str | None = None
    while True:
        page = store.list_jobs(limit=limit, cursor=cursor, status=status)
        pages.append([item.id for item in page.items])
        if page.next_cursor is None:
            return pages
        cursor = page.next_cursor


def _ids(jobs: list[Job]) -> list[JobId]:
    return [item.id for item in jobs]


def test_jobs_are_listed_newest_first(state_store: StateStore) -> None:
    middle = state_store.create_job(job(created_at=at(10)))
    oldest = state_store.create_job(job(created_at=at(0)))
    newest = state_store.create_job(job(created_at=at(20)))

    page = state_store.list_jobs()

    assert _ids(page.items) == [newest.id, middle.id, oldest.id]
    assert page.next_cursor is None
    assert page.items[0] == newest


def test_each_filter_narrows_the_listing(state_store: StateStore) -> None:
    a = state_store.create_job(job(created_at=at(1), client_id="a", workload_id="w1"))
    b = state_store.create_job(
        job(created_at=at(2), client_id="b", workload_id="w1", status=JobStatus.running)
    )
    c = state_store.create_job(
        job(created_at=at(3), client_id="a", workload_id="w2", job_type=JobType.embedding_job)
    )

    assert _ids(state_store.list_jobs(status=JobStatus.running).items) == [b.id]
    assert _ids(state_store.list_jobs(client_id="a").items) == [c.id, a.id]
    assert _ids(state_store.list_jobs(workload_id="w1").items) == [b.id, a.id]
    assert _ids(state_store.list_jobs(job_type=JobType.embedding_job).items) == [c.id]
    assert _ids(state_store.list_jobs(client_id="a", workload_id="w1").items) == [a.id]
    assert state_store.list_jobs(status=JobStatus.failed).items == []


def test_client_ids_scope_hides_other_tenants(state_store: StateStore) -> None:
    a = state_store.create_job(job(created_at=at(1), client_id="a"))
    b = state_store.create_job(job(created_at=at(2), client_id="b"))
    state_store.create_job(job(created_at=at(3), client_id="c"))

    assert _ids(state_store.list_jobs(client_ids=["a", "b"]).items) == [b.id, a.id]
    assert _ids(state_store.list_jobs(client_ids=["a", "b"], client_id="a").items) == [a.id]
    assert state_store.list_jobs(client_ids=["a", "b"], client_id="c").items == []
    assert state_store.list_jobs(client_ids=[]).items == []


def test_pages_cover_every_job_once_in_order(state_store: StateStore) -> None:
    created = [state_store.create_job(job(created_at=at(n))) for n in range(25)]

    pages = _all_pages(state_store, limit=7)

    assert [len(page) for page in pages] == [7, 7, 7, 4]
    assert [i for page in pages for i in page] == [j.id for j in reversed(created)]


def test_a_full_last_page_has_no_cursor(state_store: StateStore) -> None:
    for n in range(6):
        state_store.create_job(job(created_at=at(n)))

    assert [len(page) for page in _all_pages(state_store, limit=3)] == [3, 3]


def test_equal_creation_times_are_ordered_by_id_across_pages(state_store: StateStore) -> None:
    tied = [state_store.create_job(job(id=JobId(f"tie-{n}"), created_at=T0)) for n in range(5)]
    later = state_store.create_job(job(created_at=at(1)))
    earlier = state_store.create_job(job(created_at=at(-1)))

    pages = _all_pages(state_store, limit=2)

    expected = [later.id, *sorted((j.id for j in tied), reverse=True), earlier.id]
    assert [i for page in pages for i in page] == expected


def test_paging_keeps_the_filter(state_store: StateStore) -> None:
    running = []
    for n in range(9):
        status = JobStatus.running if n % 3 else JobStatus.pending
        created = state_store.create_job(job(created_at=at(n), status=status))
        if status is JobStatus.running:
            running.append(created.id)

    pages = _all_pages(state_store, limit=4, status=JobStatus.running)

    assert [i for page in pages for i in page] == list(reversed(running))


@pytest.mark.parametrize(
    "cursor",
    [
        "not a cursor!",
        base64.urlsafe_b64encode(b"{}").decode(),
        base64.urlsafe_b64encode(b'["yesterday", "job-1"]').decode(),
        base64.urlsafe_b64encode(b'["2025-03-01T12:00:00+00:00", 5]').decode(),
    ],
)
def test_malformed_cursor_raises_validation_failed(state_store: StateStore, cursor: str) -> None:
    with pytest.raises(ValidationFailed):
        state_store.list_jobs(cursor=cursor)


def test_non_positive_limit_raises_validation_failed(state_store: StateStore) -> None:
    with pytest.raises(ValidationFailed):
        state_store.list_jobs(limit=0)


def _heavy_job(n: int, **fields: Any) -> Job:
    """A finished job carrying every heavy field; ``fields`` override anything."""
    values: dict[str, Any] = {
        "created_at": at(n),
        "status": JobStatus.completed,
        "stage": "done",
        "progress": 100.0,
        "config_name": "big-eval",
        "config_version": 2,
        "config_hash": "abc",
        "config": {"data_split_config": {"eval_size": 20}, "nested": [{"x": 1}]},
        "started_at": at(n + 0.5),
        "finished_at": at(n + 0.75),
        "error": "boom",
        "warnings": ["few records"],
        "dataset_stats": {"eval": 20},
        "datasets": [{"name": "eval", "records": 20}],
        "recommendation": {"model": "small"},
        "state": {"step": "deploy", "attempt": 3},
    }
    return job(**(values | fields))


def test_summary_listing_leaves_only_the_heavy_fields_out(state_store: StateStore) -> None:
    stored = [state_store.create_job(_heavy_job(n)) for n in range(3)]
    stored.append(state_store.create_job(job(created_at=at(10))))  # all defaults
    heavy = {"config", "state", "datasets", "dataset_stats", "recommendation"}

    page = state_store.list_jobs(summary=True)

    assert _ids(page.items) == [j.id for j in reversed(stored)]
    for listed, original in zip(page.items, reversed(stored), strict=True):
        assert listed.model_dump(exclude=heavy) == original.model_dump(exclude=heavy)
        assert (listed.config, listed.state, listed.datasets) == ({}, {}, [])
        assert (listed.dataset_stats, listed.recommendation) == (None, None)
    # The default still returns whole jobs, and the job itself is untouched.
    assert state_store.list_jobs().items == list(reversed(stored))
    assert state_store.get_job(stored[0].id) == stored[0]


def test_summary_listing_filters_and_pages_like_the_full_one(state_store: StateStore) -> None:
    for n in range(7):
        status = JobStatus.running if n % 2 else JobStatus.completed
        state_store.create_job(_heavy_job(n, client_id=f"c{n % 3}", status=status))

    filters: dict[str, Any]
    for filters in (
        {},
        {"status": JobStatus.running},
        {"client_id": "c1"},
        {"client_ids": ["c0", "c2"]},
        {"workload_id": "router", "job_type": JobType.llm_job},
    ):
        full: list[JobId] = []
        brief: list[JobId] = []
        cursor: str | None = None
        while True:
            page = state_store.list_jobs(limit=2, cursor=cursor, **filters)
            summary_page = state_store.list_jobs(limit=2, cursor=cursor, summary=True, **filters)
            assert summary_page.next_cursor == page.next_cursor
            full += _ids(page.items)
            brief += _ids(summary_page.items)
            if (cursor := page.next_cursor) is None:
                break
        assert brief == full, filters
    assert state_store.list_jobs(client_ids=[], summary=True).items == []
