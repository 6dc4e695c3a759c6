"""State store contract: candidate runs (idempotent put, insertion order, compare-and-set)."""

from __future__ import annotations

import pytest

from flywheel.domain.jobs import JobId
from flywheel.errors import Conflict, NotFound, ValidationFailed
from flywheel.stores.base import StateStore
from tests.contract.state.factories import job, run


@pytest.fixture
def job_id(state_store: StateStore) -> JobId:
    return state_store.create_job(job()).id


def test_put_is_idempotent_and_returns_the_stored_run(
    state_store: StateStore, job_id: JobId
) -> None:
    first = state_store.put_candidate_run(run(job_id, "m1", deployment={"name": "dep-1"}))

    again = state_store.put_candidate_run(run(job_id, "m1", deployment={"name": "dep-2"}))

    assert again == first
    assert again.deployment == {"name": "dep-1"}
    assert state_store.list_candidate_runs(job_id) == [first]


def test_runs_are_listed_per_job_in_insertion_order(state_store: StateStore, job_id: JobId) -> None:
    other = state_store.create_job(job()).id
    for name in ["zeta", "alpha", "mid"]:
        state_store.put_candidate_run(run(job_id, name))
    state_store.put_candidate_run(run(other, "alpha"))

    assert [r.name for r in state_store.list_candidate_runs(job_id)] == ["zeta", "alpha", "mid"]
    assert [r.name for r in state_store.list_candidate_runs(other)] == ["alpha"]
    assert state_store.list_candidate_runs(JobId("nope")) == []


def test_update_bumps_version_and_checks_it(state_store: StateStore, job_id: JobId) -> None:
    stored = state_store.put_candidate_run(run(job_id, "m1"))

    updated = state_store.update_candidate_run(
        job_id,
        "m1",
        {"status": "evaluating", "evaluations": [{"kind": "base", "score": 0.9}]},
        expect_version=stored.version,
    )

    assert (updated.status, updated.version) == ("evaluating", stored.version + 1)
    assert updated.evaluations == [{"kind": "base", "score": 0.9}]
    assert state_store.list_candidate_runs(job_id) == [updated]
    with pytest.raises(Conflict):
        state_store.update_candidate_run(
            job_id, "m1", {"status": "x"}, expect_version=stored.version
        )
    assert state_store.list_candidate_runs(job_id) == [updated]


def test_update_without_expected_version_always_applies(
    state_store: StateStore, job_id: JobId
) -> None:
    state_store.put_candidate_run(run(job_id, "m1"))
    state_store.update_candidate_run(job_id, "m1", {"status": "a"})

    assert state_store.update_candidate_run(job_id, "m1", {"status": "b"}).version == 2


def test_update_of_unknown_run_raises_not_found(state_store: StateStore, job_id: JobId) -> None:
    with pytest.raises(NotFound):
        state_store.update_candidate_run(job_id, "missing", {"status": "x"})
    with pytest.raises(NotFound):
        state_store.update_candidate_run(job_id, "missing", {"status": "x"}, expect_version=0)


def test_update_refuses_identity_fields(state_store: StateStore, job_id: JobId) -> None:
    state_store.put_candidate_run(run(job_id, "m1"))

    with pytest.raises(ValidationFailed):
        state_store.update_candidate_run(job_id, "m1", {"name": "m2"})
