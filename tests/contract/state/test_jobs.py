"""State store contract: job create/get/update/delete/count, compare-and-set included."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone

import pytest

from flywheel.domain.jobs import JobId, JobStatus, JobType
from flywheel.errors import Conflict, NotFound, ValidationFailed
from flywheel.stores.base import StateStore
from tests.contract.state.factories import T0, at, job, run

PENDING = [JobStatus.pending]


def test_created_job_reads_back_equal(state_store: StateStore) -> None:
    full = job(
        job_type=JobType.embedding_job,
        stage="datasets",
        progress=12.5,
        config_name="cfg",
        config_version=2,
        config_hash="abc",
        config={"models": [{"name": "m", "ctx": 4096}], "nested": {"x": [1, 2.5, None]}},
        created_at=T0,
        started_at=at(1),
        created_by="alice",
        warnings=["few records"],
        dataset_stats={"eval": 10},
        datasets=[{"split": "eval", "path": "/d/eval.jsonl"}],
        recommendation={"model": "m"},
        state={"step": "deploy", "handles": {"m": "dep-1"}},
    )

    created = state_store.create_job(full)

    assert created == full
    assert state_store.get_job(full.id) == full


def test_get_unknown_job_raises_not_found(state_store: StateStore) -> None:
    with pytest.raises(NotFound):
        state_store.get_job(JobId("nope"))


def test_duplicate_job_id_raises_conflict(state_store: StateStore) -> None:
    first = state_store.create_job(job())

    with pytest.raises(Conflict):
        state_store.create_job(job(id=first.id, client_id="other"))
    assert state_store.get_job(first.id).client_id == "acme"


def test_timestamps_come_back_as_utc_milliseconds(state_store: StateStore) -> None:
    plus_two = timezone(timedelta(hours=2))
    given = datetime(2025, 3, 1, 14, 0, 0, 123456, tzinfo=plus_two)

    created = state_store.create_job(job(created_at=given, started_at=given))
    stored = state_store.get_job(created.id)

    expected = datetime(2025, 3, 1, 12, 0, 0, 123000, tzinfo=UTC)
    assert stored == created
    for value in (stored.created_at, stored.started_at, stored.updated_at):
        assert value is not None
        assert value.utcoffset() == timedelta(0)
    assert stored.created_at == expected
    assert stored.started_at == expected


def test_update_sets_fields_and_bumps_version(state_store: StateStore) -> None:
    created = state_store.create_job(job(created_at=T0, updated_at=T0))

    updated = state_store.update_job(
        created.id,
        {"status": JobStatus.running, "stage": "deploy", "progress": 40, "started_at": at(5)},
    )

    assert (updated.status, updated.stage, updated.progress) == (JobStatus.running, "deploy", 40)
    assert updated.started_at == at(5)
    assert updated.version == created.version + 1
    assert updated.updated_at > created.updated_at
    assert updated.created_at == created.created_at
    assert state_store.get_job(created.id) == updated


def test_only_one_of_two_workers_claims_a_pending_job(
    state_store: StateStore, open_store: Callable[[], StateStore]
) -> None:
    other_worker = open_store()
    created = state_store.create_job(job())

    state_store.update_job(created.id, {"status": JobStatus.running}, expect_status=PENDING)
    with pytest.raises(Conflict):
        other_worker.update_job(created.id, {"status": JobStatus.running}, expect_status=PENDING)

    assert other_worker.get_job(created.id).version == created.version + 1


def test_threads_racing_to_claim_a_job_have_exactly_one_winner(state_store: StateStore) -> None:
    created = state_store.create_job(job())
    contenders = 6
    start = threading.Barrier(contenders)
    outcomes: list[str] = []

    def claim(worker: int) -> None:
        start.wait()
        try:
            state_store.update_job(
                created.id,
                {"status": JobStatus.running, "stage": f"w{worker}"},
                expect_status=PENDING,
            )
            outcomes.append("won")
        except Conflict:
            outcomes.append("lost")

    threads = [threading.Thread(target=claim, args=(n,)) for n in range(contenders)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert sorted(outcomes) == ["lost"] * (contenders - 1) + ["won"]
    assert state_store.get_job(created.id).version == created.version + 1


def test_stale_expected_version_raises_conflict_and_changes_nothing(
    state_store: StateStore,
) -> None:
    created = state_store.create_job(job())
    moved = state_store.update_job(created.id, {"stage": "a"}, expect_version=created.version)

    with pytest.raises(Conflict):
        state_store.update_job(created.id, {"stage": "b"}, expect_version=created.version)

    assert state_store.get_job(created.id) == moved


def test_status_and_version_preconditions_apply_together(state_store: StateStore) -> None:
    created = state_store.create_job(job())

    with pytest.raises(Conflict):
        state_store.update_job(
            created.id, {"stage": "x"}, expect_status=[JobStatus.running], expect_version=0
        )
    done = state_store.update_job(
        created.id, {"stage": "x"}, expect_status=PENDING, expect_version=created.version
    )
    assert done.stage == "x"


def test_update_of_unknown_job_raises_not_found(state_store: StateStore) -> None:
    with pytest.raises(NotFound):
        state_store.update_job(JobId("nope"), {"stage": "x"})
    with pytest.raises(NotFound):
        state_store.update_job(
            JobId("nope"), {"stage": "x"}, expect_status=PENDING, expect_version=0
        )


@pytest.mark.parametrize(
    "changes",
    [{"bogus": 1}, {"id": "other"}, {"version": 7}, {"progress": 250}, {"status": "paused"}],
)
def test_invalid_changes_are_refused_before_writing(
    state_store: StateStore, changes: dict[str, object]
) -> None:
    created = state_store.create_job(job())

    with pytest.raises(ValidationFailed):
        state_store.update_job(created.id, changes)

    assert state_store.get_job(created.id) == created


def test_delete_removes_the_job_and_only_its_candidate_runs(state_store: StateStore) -> None:
    doomed, kept = state_store.create_job(job()), state_store.create_job(job())
    state_store.put_candidate_run(run(doomed.id, "m1"))
    state_store.put_candidate_run(run(kept.id, "m1"))

    state_store.delete_job(doomed.id)

    with pytest.raises(NotFound):
        state_store.get_job(doomed.id)
    assert state_store.list_candidate_runs(doomed.id) == []
    assert [r.name for r in state_store.list_candidate_runs(kept.id)] == ["m1"]


def test_delete_of_unknown_job_raises_not_found(state_store: StateStore) -> None:
    with pytest.raises(NotFound):
        state_store.delete_job(JobId("nope"))


def test_count_jobs_by_config_name_and_statuses(state_store: StateStore) -> None:
    for config_name, status in [
        ("cfg", JobStatus.pending),
        ("cfg", JobStatus.running),
        ("cfg", JobStatus.completed),
        ("other", JobStatus.running),
        (None, JobStatus.running),
    ]:
        state_store.create_job(job(config_name=config_name, status=status))

    active = [JobStatus.pending, JobStatus.running, JobStatus.cancelling]
    assert state_store.count_jobs() == 5
    assert state_store.count_jobs(config_name="cfg") == 3
    assert state_store.count_jobs(statuses=active) == 4
    assert state_store.count_jobs(config_name="cfg", statuses=active) == 2
    assert state_store.count_jobs(config_name="missing") == 0
    assert state_store.count_jobs(statuses=[]) == 0
