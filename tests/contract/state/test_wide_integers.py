"""State store contract: integers beyond 64 bits are refused alike by every backend.

BSON cannot encode them and SQLite's INTEGER is 64-bit; found when the API suite first ran on
MongoDB (a config body with a huge ``limit`` was a 500 there, a 201 on SQLite).
"""

from __future__ import annotations

import pytest

from flywheel.domain.jobs import JobId
from flywheel.errors import Conflict, NotFound, ValidationFailed
from flywheel.stores.base import StateStore
from tests.contract.state.factories import config, job, run

HUGE = 2**70


def test_huge_integers_in_documents_are_refused_before_writing(state_store: StateStore) -> None:
    with pytest.raises(ValidationFailed) as caught:
        state_store.create_config(config("big", {"data_split_config": {"limit": HUGE}}))
    assert caught.value.errors[0]["loc"] == ["body", "data_split_config", "limit"]
    with pytest.raises(ValidationFailed):
        state_store.create_job(job(config={"seeds": [1, -HUGE]}))
    created = state_store.create_job(job())
    with pytest.raises(ValidationFailed) as caught:
        state_store.update_job(created.id, {"state": {"attempts": HUGE}})
    assert caught.value.errors[0]["loc"] == ["state", "attempts"]
    state_store.put_candidate_run(run(created.id, "a"))
    with pytest.raises(ValidationFailed):
        state_store.update_candidate_run(created.id, "a", {"deployment": {"n": HUGE}})

    assert state_store.list_configs() == []
    assert state_store.list_jobs().items == [created]
    assert state_store.list_candidate_runs(created.id)[0].version == 0
    # The 64-bit extremes themselves are fine.
    edge = state_store.create_job(job(state={"lo": -(2**63), "hi": 2**63 - 1}))
    assert state_store.get_job(edge.id).state == {"lo": -(2**63), "hi": 2**63 - 1}


def test_huge_integers_in_lookups_match_nothing(state_store: StateStore) -> None:
    state_store.create_config(config("big"))
    created = state_store.create_job(job())
    state_store.put_candidate_run(run(created.id, "a"))

    with pytest.raises(NotFound):
        state_store.get_config("big", version=HUGE)
    with pytest.raises(Conflict):
        state_store.update_job(created.id, {"stage": "x"}, expect_version=HUGE)
    with pytest.raises(NotFound):
        state_store.update_job(JobId("job-missing"), {"stage": "x"}, expect_version=HUGE)
    with pytest.raises(Conflict):
        state_store.update_candidate_run(created.id, "a", {"status": "x"}, expect_version=HUGE)
    with pytest.raises(Conflict):
        state_store.add_config_version(config("big"), expect_version=HUGE)
    with pytest.raises(ValidationFailed):
        state_store.list_jobs(limit=HUGE)
    assert state_store.get_job(created.id).version == 0
