"""Steps against real SQLite stores and the fake platform, driven in this process."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from structlog.testing import capture_logs

from flywheel.config.schema import StageTimeouts
from flywheel.domain.jobs import TERMINAL_STATUSES, Job, JobId, JobStatus
from flywheel.errors import PlatformUnavailable
from flywheel.platforms.base import Progress
from flywheel.settings import get_settings
from flywheel.stores.base import LogStore, StateStore
from flywheel.workflow import engine, runtime, tasks
from flywheel.workflow.engine import Kind
from flywheel.workflow.steps import (
    ARTIFACTS_LEFT_DIR,
    ArtifactsUnavailable,
    StepRunner,
    WorkflowServices,
    delete_artifacts,
    recorded_handles,
)
from flywheel.workflow.sweeper import SweepReport, sweep
from tests.faults.fault_platform import FaultyPlatform
from tests.workflow.fake_platform import ENV_DB, FakePlatform
from tests.workflow.support import create_job, drive, fast_options, llm_config, make_services


def _until(runner: StepRunner, job_id: JobId, predicate: Any, timeout_s: float = 20.0) -> Job:
    """Advance until ``predicate(job)`` holds (bounded in time)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        job = runner.s.state.get_job(job_id)
        if predicate(job) or job.status in TERMINAL_STATUSES:
            break
        step = runner.advance(job_id)
        if step.wait_s:
            time.sleep(min(step.wait_s, 0.1))
    job = runner.s.state.get_job(job_id)
    assert predicate(job), job.state
    return job


def _next_kind(runner: StepRunner, job_id: JobId) -> Kind | None:
    action = runner.peek(job_id).action
    return None if action is None else action.kind


# Past the longest stage timeout of the default config, so the sweeper sees the job as stuck.
_PAST_EVERY_STAGE_TIMEOUT_MS = 3600 * 1000 * 24 + 10_000


def _job_stuck_deploying(
    runner: StepRunner, state: StateStore, platform: FakePlatform
) -> tuple[Job, int]:
    """Start a one-candidate job and drive it to a deployment that never becomes ready.

    The sweeper tests all need a job holding a lease and live platform work; returns the job
    and a clock reading late enough for the sweeper to call it stuck.
    """
    platform.set_script(durations={"deployment": 600.0, "evaluation": 0.0, "customization": 0.0})
    job = create_job(state, llm_config(["a"]))
    _until(runner, job.id, lambda j: _next_kind(runner, j.id) is Kind.poll_deployment)
    return job, runner.s.clock() + _PAST_EVERY_STAGE_TIMEOUT_MS


def _sweeper(
    services: WorkflowServices,
    state: StateStore,
    platform: FakePlatform,
    enqueue: Callable[[JobId], None] = lambda _: None,
) -> Callable[[int], SweepReport]:
    """A sweep at a given clock reading, with short stale/stuck limits so tests need no waiting."""
    options = fast_options(stale_after_s=1.0, stuck_grace_s=5.0)

    def sweep_at(now: int) -> SweepReport:
        return sweep(
            state=state, capacity=services.capacity, platform=platform, options=options,
            enqueue=enqueue, now_ms=now,
        )  # fmt: skip

    return sweep_at


def _job_queued_for_gpus(
    state: StateStore, logs: LogStore, platform: FakePlatform, data_dir: Any
) -> tuple[WorkflowServices, StepRunner, Job]:
    """A one-candidate job whose candidate waits in the queue: its one GPU is held elsewhere.

    The budget is 1 GPU and ``someone/else`` holds it; release that lease to let the job on.
    """
    services = make_services(
        state=state, logs=logs, platform=platform, data_dir=data_dir, gpu_budget=1
    )
    services.capacity.acquire("someone/else", 1, 1)
    runner = StepRunner(services)
    job = create_job(state, llm_config(["a"]))
    _until(
        runner,
        job.id,
        lambda j: j.state.get("candidates", {}).get("a", {}).get("status") == engine.QUEUED,
    )
    return services, runner, job


def test_same_step_twice_starts_platform_work_once(
    runner: StepRunner, state: StateStore, platform: FakePlatform
) -> None:
    job = create_job(state, llm_config(["a"]))
    job = _until(runner, job.id, lambda j: _next_kind(runner, j.id) is Kind.start_deployment)
    stale = state.get_job(job.id)
    action = runner.peek(job.id).action
    assert action is not None
    runner._run(stale, action, now=runner.s.clock(), task_id="t1")
    # A duplicate delivery that loaded the job before the first one ran: its claim loses.
    runner._run(stale, action, now=runner.s.clock(), task_id="t2")
    # And a fresh re-run now sees the deployment already started and polls it instead.
    assert _next_kind(runner, job.id) is Kind.poll_deployment
    deployments = [w for w in platform.ledger() if w["kind"] == "deployment"]
    assert len(deployments) == 1
    assert deployments[0]["starts"] == 1  # the duplicate never even asked the platform


def test_lost_compare_and_set_makes_a_poll_a_no_op(
    runner: StepRunner, state: StateStore, platform: FakePlatform, monkeypatch: pytest.MonkeyPatch
) -> None:
    platform.set_script(durations={"deployment": 60.0, "evaluation": 0.0, "customization": 0.0})
    job = create_job(state, llm_config(["a"]))
    job = _until(runner, job.id, lambda j: _next_kind(runner, j.id) is Kind.poll_deployment)
    before = state.get_job(job.id)
    original = platform.poll_deployment

    def poll_and_interfere(handle: dict[str, Any]) -> Progress:
        state.update_job(job.id, {"warnings": ["someone else wrote"]})
        return original(handle)

    monkeypatch.setattr(platform, "poll_deployment", poll_and_interfere)
    step = runner.advance(job.id)
    after = state.get_job(job.id)
    assert step.wait_s is None  # dropped: the writer that won schedules the next step
    assert after.version == before.version + 1  # only the interfering write landed
    assert after.state == before.state


def test_handle_survives_a_cancel_racing_the_start(
    runner: StepRunner, state: StateStore, platform: FakePlatform, monkeypatch: pytest.MonkeyPatch
) -> None:
    job = create_job(state, llm_config(["a"]))
    job = _until(runner, job.id, lambda j: _next_kind(runner, j.id) is Kind.start_deployment)
    original = platform.start_deployment

    def start_while_cancelled(**kwargs: Any) -> dict[str, Any]:
        state.update_job(
            job.id, {"status": JobStatus.cancelling}, expect_status=[JobStatus.running]
        )
        return original(**kwargs)

    monkeypatch.setattr(platform, "start_deployment", start_while_cancelled)
    runner.advance(job.id)
    monkeypatch.setattr(platform, "start_deployment", original)
    recorded = state.get_job(job.id).state["candidates"]["a"]["deployment"]["handle"]
    assert recorded is not None  # committed despite the concurrent status change
    done = drive(runner, job.id)
    assert done.status is JobStatus.cancelled
    assert platform.live() == []
    assert [s["kind"] for s in done.state["stopped"]] == ["deployment"]


def test_failing_candidate_does_not_fail_the_others(
    runner: StepRunner, state: StateStore, platform: FakePlatform
) -> None:
    platform.set_script(fail={"bad/deployment": "image pull failed"})
    job = create_job(state, llm_config(["good", "bad"]))
    done = drive(runner, job.id)
    assert done.status is JobStatus.completed
    runs = {r.name: r for r in state.list_candidate_runs(job.id)}
    assert runs["good"].status == "completed"
    assert runs["bad"].status == "failed"
    assert "image pull failed" in (runs["bad"].error or "")
    assert any("bad" in w for w in done.warnings)
    assert platform.live() == []


def test_job_fails_when_nothing_could_be_evaluated(
    runner: StepRunner, state: StateStore, platform: FakePlatform
) -> None:
    platform.set_script(fail_start={"a/evaluation/base": "no", "a/evaluation/icl": "no"})
    job = create_job(state, llm_config(["a"], customize=False))
    done = drive(runner, job.id)
    assert done.status is JobStatus.failed
    assert "no candidate could be evaluated" in (done.error or "")
    assert platform.live() == []


def test_too_few_logs_fail_the_job_with_the_dataset_reason(
    runner: StepRunner, state: StateStore
) -> None:
    config = llm_config(["a"]).model_copy(
        update={
            "data_split_config": llm_config(["a"]).data_split_config.model_copy(
                update={"min_total_records": 500, "limit": 1000}
            )
        }
    )
    job = create_job(state, config)
    done = drive(runner, job.id)
    assert done.status is JobStatus.failed
    assert "datasets" in (done.error or "")
    assert "500" in (done.error or "")


def test_candidate_that_can_never_fit_the_budget_fails_clearly(
    state: StateStore, logs: LogStore, platform: FakePlatform, data_dir: Any
) -> None:
    services = make_services(
        state=state, logs=logs, platform=platform, data_dir=data_dir, gpu_budget=1
    )
    runner = StepRunner(services)
    config = llm_config(["big"], gpus=2)
    done = drive(runner, create_job(state, config).id)
    assert done.status is JobStatus.failed
    run = state.list_candidate_runs(done.id)[0]
    assert "GPU budget" in (run.error or "")


def test_the_lease_covers_what_the_platform_holds_at_its_peak(
    state: StateStore, logs: LogStore, platform: FakePlatform, data_dir: Any
) -> None:
    # The platform holds twice a candidate's own GPU at its peak (as NMP does while it
    # serves a customized embedder beside the base NIM): the lease is that, not ``gpus``.
    platform.set_script(peak_gpus={"wide": 2})
    services = make_services(
        state=state, logs=logs, platform=platform, data_dir=data_dir, gpu_budget=1
    )
    done = drive(StepRunner(services), create_job(state, llm_config(["wide"], gpus=1)).id)
    assert done.status is JobStatus.failed
    run = state.list_candidate_runs(done.id)[0]
    assert "needs 2 GPU(s) at its peak on the fake platform" in (run.error or ""), run.error

    services = make_services(
        state=state, logs=logs, platform=platform, data_dir=data_dir, gpu_budget=2
    )
    runner = StepRunner(services)
    job = create_job(state, llm_config(["wide"], gpus=1))
    leased = _until(
        runner,
        job.id,
        lambda j: j.state.get("candidates", {}).get("wide", {}).get("lease") is True,
    )
    assert leased.state["candidates"]["wide"]["gpus"] == 2
    assert sum(services.capacity.leases().values()) == 2
    assert drive(runner, job.id).status is JobStatus.completed
    assert services.capacity.leases() == {}


def test_queued_candidate_shows_the_reason(
    state: StateStore, logs: LogStore, platform: FakePlatform, data_dir: Any
) -> None:
    services, runner, job = _job_queued_for_gpus(state, logs, platform, data_dir)
    run = state.list_candidate_runs(job.id)[0]
    assert run.status == "queued"
    assert run.deployment["reason"] == "waiting for 1 GPU(s): 1 of 1 in use"
    services.capacity.release("someone/else")
    assert drive(runner, job.id).status is JobStatus.completed
    assert services.capacity.leases() == {}


def test_transient_errors_are_retried_then_fail_the_item(
    runner: StepRunner, state: StateStore, platform: FakePlatform, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = {"n": 0}

    def unavailable(handle: dict[str, Any]) -> Progress:
        calls["n"] += 1
        raise PlatformUnavailable("evaluator: 503")

    monkeypatch.setattr(platform, "poll_evaluation", unavailable)
    job = create_job(state, llm_config(["a"], customize=False))
    done = drive(runner, job.id)
    assert done.status is JobStatus.failed
    assert calls["n"] == 2 * (runner.s.options.max_transient_retries + 1)  # base and icl
    run = state.list_candidate_runs(job.id)[0]
    assert all("gave up after 3 retries" in (e["error"] or "") for e in run.evaluations)


def test_cancel_stops_every_recorded_handle(
    runner: StepRunner, state: StateStore, platform: FakePlatform
) -> None:
    platform.set_script(durations={"deployment": 0.0, "evaluation": 60.0, "customization": 60.0})
    job = create_job(state, llm_config(["a", "b"]))
    _until(
        runner,
        job.id,
        lambda j: (
            all(
                w["status"] == engine.W_RUNNING
                for c in j.state.get("candidates", {}).values()
                for i, w in c["work"].items()
                if i != "customized"
            )
            and bool(j.state.get("candidates"))
        ),
    )
    state.update_job(job.id, {"status": JobStatus.cancelling})
    done = drive(runner, job.id)
    assert done.status is JobStatus.cancelled
    stopped = sorted((s["kind"], s["candidate"], s["item"]) for s in done.state["stopped"])
    assert len(stopped) == 8  # 2 × (deployment, base, icl, customization)
    assert platform.live() == []
    assert {r.status for r in state.list_candidate_runs(job.id)} == {"cancelled"}


def test_delete_artifacts_removes_every_handle(
    runner: StepRunner, state: StateStore, platform: FakePlatform, data_dir: Any
) -> None:
    done = drive(runner, create_job(state, llm_config(["a"])).id)
    handles = recorded_handles(done.state)
    job_dir = data_dir / "jobs" / done.id
    assert job_dir.exists()
    assert delete_artifacts(platform, handles, job_dir) == []
    deleted = {w["id"] for w in platform.ledger() if w["deleted_at"] is not None}
    expected = {h["handle"]["id"] for h in handles if h["kind"] != "deployment"}
    assert expected
    assert expected <= deleted
    assert not job_dir.exists()


def test_sweeper_reenqueues_stale_jobs_and_aborts_stuck_ones(
    services: WorkflowServices, runner: StepRunner, state: StateStore, platform: FakePlatform
) -> None:
    job, stuck = _job_stuck_deploying(runner, state, platform)
    enqueued: list[str] = []
    sweep_at = _sweeper(services, state, platform, enqueue=enqueued.append)
    now = runner.s.clock()
    report = sweep_at(now)
    assert enqueued == []
    assert not report.touched
    sweep_at(now + 2_000)
    assert enqueued == [job.id]
    report = sweep_at(stuck)
    assert report.aborted == [job.id]
    done = drive(runner, job.id)
    assert done.status is JobStatus.failed
    assert "no progress" in (done.error or "")
    assert platform.live() == []


def test_sweeper_releases_leases_of_ended_jobs(
    services: WorkflowServices, state: StateStore, platform: FakePlatform
) -> None:
    services.capacity.acquire("job_gone/a", 1, 4)
    report = sweep(
        state=state,
        capacity=services.capacity,
        platform=platform,
        options=fast_options(),
        enqueue=lambda _: None,
        now_ms=services.clock(),
    )
    assert report.released == ["job_gone/a"]
    assert services.capacity.leases() == {}


def test_sweeper_fails_a_job_whose_abort_never_runs(
    services: WorkflowServices, runner: StepRunner, state: StateStore, platform: FakePlatform
) -> None:
    job, stuck = _job_stuck_deploying(runner, state, platform)
    sweep_at = _sweeper(services, state, platform)
    assert sweep_at(stuck).aborted == [job.id]
    assert services.capacity.leases() == {f"{job.id}/a": 1}
    report = sweep_at(stuck + 6_000)
    assert report.failed == [job.id]
    assert report.released == [f"{job.id}/a"]  # only once its deployment was shut down
    failed = state.get_job(job.id)
    assert failed.status is JobStatus.failed
    assert "stopped its platform work: deployment a" in (failed.error or ""), failed.error
    # Nothing is left live on the platform, and the state says so.
    assert platform.live() == []
    (deployment,) = [w for w in platform.ledger() if w["kind"] == "deployment"]
    assert deployment["shut_down_at"] is not None
    assert [s["kind"] for s in failed.state["stopped"]] == ["deployment"]
    cand = failed.state["candidates"]["a"]
    assert (cand["status"], cand["lease"]) == (engine.FAILED, False)
    assert cand["deployment"]["status"] == "shut_down"
    assert services.capacity.leases() == {}
    assert state.list_candidate_runs(job.id)[0].status == "failed"


def test_sweeper_keeps_the_leases_of_a_job_it_cannot_stop_and_tries_again(
    services: WorkflowServices, runner: StepRunner, state: StateStore, data_dir: Any
) -> None:
    platform = FaultyPlatform(data_dir / "fake_platform.db")  # the fixture's platform, faulty
    job, stuck = _job_stuck_deploying(runner, state, platform)
    sweep_at = _sweeper(services, state, platform)
    assert sweep_at(stuck).aborted == [job.id]
    platform.fail_next("shutdown_deployment", times=1)
    report = sweep_at(stuck + 6_000)
    assert (report.unreachable, report.failed, report.released) == ([job.id], [], [])
    waiting = state.get_job(job.id)
    assert waiting.status is JobStatus.running  # not failed while its deployment may run
    assert waiting.state["abort_cleanup"]["attempts"] == 1
    assert "503" in waiting.state["abort_cleanup"]["unreachable"][0]
    assert services.capacity.leases() == {f"{job.id}/a": 1}  # the GPU stays accounted for
    assert len(platform.live()) == 1

    report = sweep_at(stuck + 7_000)  # the platform answers again
    assert (report.failed, report.released) == ([job.id], [f"{job.id}/a"])
    assert state.get_job(job.id).status is JobStatus.failed
    assert platform.live() == []
    assert services.capacity.leases() == {}


def test_work_started_for_a_job_deleted_meanwhile_is_undone(
    runner: StepRunner, state: StateStore, platform: FakePlatform, monkeypatch: pytest.MonkeyPatch
) -> None:
    job = create_job(state, llm_config(["a"]))
    _until(runner, job.id, lambda j: _next_kind(runner, j.id) is Kind.start_deployment)
    original = platform.start_deployment

    def start_then_delete(**kwargs: Any) -> dict[str, Any]:
        handle = original(**kwargs)
        state.delete_job(job.id)
        return handle

    monkeypatch.setattr(platform, "start_deployment", start_then_delete)
    assert runner.advance(job.id).wait_s is None
    assert platform.live() == []


def test_a_step_whose_claim_was_taken_over_keeps_the_work_the_new_owner_recorded(
    services: WorkflowServices, runner: StepRunner, state: StateStore, platform: FakePlatform,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    job = create_job(state, llm_config(["a"]))
    _until(runner, job.id, lambda j: _next_kind(runner, j.id) is Kind.start_deployment)
    later = runner.s.clock() + 10_000_000  # far beyond the claim lease
    other = StepRunner(dataclasses.replace(services, clock=lambda: later))
    original = platform.start_deployment
    calls: list[int] = []

    def slow_start(**kwargs: Any) -> dict[str, Any]:
        calls.append(1)
        handle = original(**kwargs)
        if len(calls) == 1:  # while the first step is "slow", a second one takes over
            other.advance(job.id)
        return handle

    monkeypatch.setattr(platform, "start_deployment", slow_start)
    runner.advance(job.id)
    (deployment,) = [w for w in platform.ledger() if w["kind"] == "deployment"]
    assert deployment["starts"] == 2  # asked twice, one deployment
    assert deployment["shut_down_at"] is None  # the loser did not undo the recorded work
    recorded = state.get_job(job.id).state["candidates"]["a"]["deployment"]["handle"]
    assert recorded["id"] == deployment["id"]


# -- deleting a job's artifacts through a platform outage -------------------------------------


def _forget_worker_caches() -> None:
    for cached in (get_settings, runtime.options, runtime.services, runtime.runner):
        cached.cache_clear()


@pytest.fixture
def worker(data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FaultyPlatform]:
    """This process as a worker (``runtime``) over the test's data dir and a faulty platform."""
    for name in ("MONGODB_URL", "ELASTICSEARCH_URL", "REDIS_URL", "NMP_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("FLYWHEEL_DATA_DIR", str(data_dir))
    monkeypatch.setenv("FLYWHEEL_PLATFORM", "tests.faults.fault_platform:from_env")
    monkeypatch.setenv(ENV_DB, str(data_dir / "fake_platform.db"))
    _forget_worker_caches()
    yield FaultyPlatform(data_dir / "fake_platform.db")
    _forget_worker_caches()


def _deleted(platform: FakePlatform) -> set[str]:
    return {w["id"] for w in platform.ledger() if w["deleted_at"] is not None}


def _artifact_ids(handles: list[dict[str, Any]]) -> set[str]:
    return {h["handle"]["id"] for h in handles if h["kind"] != "deployment"}


def test_delete_artifacts_tries_every_handle_then_names_those_left(
    runner: StepRunner, state: StateStore, data_dir: Path
) -> None:
    done = drive(runner, create_job(state, llm_config(["a"])).id)
    handles = recorded_handles(done.state)
    job_dir = data_dir / "jobs" / done.id
    platform = FaultyPlatform(data_dir / "fake_platform.db")
    platform.fail_next("delete_datasets", times=1)
    with pytest.raises(ArtifactsUnavailable, match="503") as caught:
        delete_artifacts(platform, handles, job_dir)
    assert [h["kind"] for h in caught.value.left] == ["datasets"]
    assert caught.value.errors == []
    others = _artifact_ids([h for h in handles if h["kind"] != "datasets"])
    assert others <= _deleted(platform)  # the outage of one delete did not stop the others
    assert job_dir.exists()  # kept until nothing is left to retry
    assert delete_artifacts(platform, caught.value.left, job_dir) == []
    assert _artifact_ids(handles) <= _deleted(platform)
    assert not job_dir.exists()


def test_delete_task_retries_through_an_outage_until_everything_is_deleted(
    runner: StepRunner, state: StateStore, data_dir: Path, worker: FaultyPlatform
) -> None:
    done = drive(runner, create_job(state, llm_config(["a"])).id)
    handles = recorded_handles(done.state)
    worker.fail_next("delete_customization", times=2)  # unavailable twice, then fine
    with capture_logs() as logs:
        tasks.delete_job_artifacts.apply(args=(done.id, handles))  # retries run eagerly
    retries = [e for e in logs if e["event"] == "artifacts_delete_retry"]
    assert [e["left"] for e in retries] == [1, 1]  # each retry redoes only what is left
    assert len(worker.fault_hits()) == 2
    assert _artifact_ids(handles) <= _deleted(worker)
    assert not (data_dir / "jobs" / done.id).exists()
    assert not any(e["log_level"] == "error" for e in logs)
    assert not (data_dir / ARTIFACTS_LEFT_DIR).exists()


def test_delete_task_out_of_retries_leaves_a_durable_trace(
    runner: StepRunner, state: StateStore, data_dir: Path, worker: FaultyPlatform
) -> None:
    done = drive(runner, create_job(state, llm_config(["a"], customize=False)).id)
    handles = recorded_handles(done.state)
    (datasets,) = [h for h in handles if h["kind"] == "datasets"]
    worker.fail_next("delete_datasets", times=1000)
    with capture_logs() as logs:
        tasks.delete_job_artifacts.apply(args=(done.id, handles))
    assert len(worker.fault_hits()) == tasks.ARTIFACT_DELETE_RETRIES + 1
    (left,) = [e for e in logs if e["event"] == "artifacts_left"]
    assert left["log_level"] == "error"
    assert (left["job_id"], left["handles"]) == (done.id, [datasets])
    record = orjson.loads((data_dir / ARTIFACTS_LEFT_DIR / f"{done.id}.json").read_bytes())
    assert (record["job_id"], record["handles"]) == (done.id, [datasets])
    assert "503" in record["errors"][0]
    assert _artifact_ids([h for h in handles if h["kind"] != "datasets"]) <= _deleted(worker)


# -- per-stage timeouts and cancelling a queued candidate -------------------------------------


def test_work_timeouts_cancel_the_platform_work_and_name_the_setting(
    runner: StepRunner, state: StateStore, platform: FakePlatform
) -> None:
    platform.set_script(durations={"deployment": 0.0, "evaluation": 60.0, "customization": 60.0})
    timeouts = StageTimeouts(evaluation=1, customization=1)
    done = drive(runner, create_job(state, llm_config(["a"]), timeouts=timeouts).id)
    work = done.state["candidates"]["a"]["work"]
    for item in ("base", "icl"):
        assert work[item]["status"] == engine.W_FAILED
        assert work[item]["error"] == f"{item} evaluation timed out after 1 s (timeouts.evaluation)"
    assert work["customize"]["status"] == engine.W_FAILED
    assert (
        work["customize"]["error"] == "customization timed out after 1 s (timeouts.customization)"
    )
    assert work["customized"]["status"] == engine.W_SKIPPED  # never started
    running = {(w["kind"], w["item"]): w for w in platform.ledger() if w["kind"] != "datasets"}
    for key in [("evaluation", "base"), ("evaluation", "icl"), ("customization", "customize")]:
        assert running[key]["cancelled_at"] is not None, key  # stopped on the platform
    assert ("evaluation", "customized") not in running
    stopped = sorted((s["kind"], s["item"]) for s in done.state["stopped"])
    assert stopped == [
        ("customization", "customize"),
        ("evaluation", "base"),
        ("evaluation", "icl"),
    ]
    assert done.status is JobStatus.failed
    assert "timed out after 1 s" in (done.error or "")
    assert platform.live() == []


def test_deployment_timeout_shuts_the_deployment_down(
    runner: StepRunner, state: StateStore, platform: FakePlatform
) -> None:
    platform.set_script(durations={"deployment": 60.0, "evaluation": 0.0, "customization": 0.0})
    timeouts = StageTimeouts(deployment=1)
    done = drive(runner, create_job(state, llm_config(["a"]), timeouts=timeouts).id)
    cand = done.state["candidates"]["a"]
    assert cand["status"] == engine.FAILED
    assert cand["error"] == "deployment not ready after 1 s (timeouts.deployment)"
    assert {w["status"] for w in cand["work"].values()} == {engine.W_SKIPPED}
    (deployment,) = [w for w in platform.ledger() if w["kind"] == "deployment"]
    assert deployment["shut_down_at"] is not None
    assert platform.live() == []
    assert runner.s.capacity.leases() == {}


def test_cancelling_a_candidate_queued_for_gpus_starts_nothing_and_holds_nothing(
    state: StateStore, logs: LogStore, platform: FakePlatform, data_dir: Any
) -> None:
    services, runner, job = _job_queued_for_gpus(state, logs, platform, data_dir)
    state.update_job(job.id, {"status": JobStatus.cancelling})
    done = drive(runner, job.id)
    assert done.status is JobStatus.cancelled
    assert [w["kind"] for w in platform.ledger()] == ["datasets"]  # no deployment started
    assert done.state["stopped"] == []
    assert not done.state["candidates"]["a"]["lease"]
    assert services.capacity.leases() == {"someone/else": 1}  # the job holds no GPU
    assert state.list_candidate_runs(job.id)[0].status == "cancelled"
    # The freed place is really free: once the other holder leaves, the whole budget is there.
    services.capacity.release("someone/else")
    assert services.capacity.acquire("next/job", 1, 1).granted


def test_a_job_whose_cleanup_failed_keeps_its_leases_until_the_sweep_finishes_it(
    state: StateStore, logs: LogStore, data_dir: Any
) -> None:
    faulty = FaultyPlatform(data_dir / "fake_platform.db")
    services = make_services(state=state, logs=logs, platform=faulty, data_dir=data_dir)
    runner = StepRunner(services)
    job, _ = _job_stuck_deploying(runner, state, faulty)
    faulty.fail_next("shutdown_deployment", times=1000)  # out of retries: the stop step gives up
    state.update_job(job.id, {"status": JobStatus.cancelling})
    ended = drive(runner, job.id)
    assert ended.status is JobStatus.cancelled
    assert "cleanup failed" in (ended.error or ""), ended.error
    assert ended.state["cleanup_pending"]["attempts"] == 0
    held = {f"{job.id}/a": 1, f"{job.id}/cleanup": 0}  # the GPU, and the sweep's marker
    assert services.capacity.leases() == held
    sweep_at = _sweeper(services, state, faulty)

    report = sweep_at(services.clock())  # the platform still refuses: nothing is freed
    assert (report.released, report.unreachable) == ([], [job.id])
    assert services.capacity.leases() == held
    assert len(faulty.live()) == 1
    assert state.get_job(job.id).state["cleanup_pending"]["attempts"] == 1

    faulty.clear_faults()
    report = sweep_at(services.clock())  # it answers again: stopped, then the GPU is freed
    assert sorted(report.released) == sorted(held)
    assert faulty.live() == []
    assert services.capacity.leases() == {}
    after = state.get_job(job.id)
    assert "cleanup_pending" not in after.state
    assert any("cleanup finished by the recovery sweep: deployment a" in w for w in after.warnings)
    assert sweep_at(services.clock()).released == []  # done once


def test_a_pending_cleanup_is_finished_even_when_the_job_holds_no_gpu(
    state: StateStore, logs: LogStore, data_dir: Any
) -> None:
    """CPU candidates (and served NIMs) lease no GPU: the 0-GPU marker keeps them in view."""
    faulty = FaultyPlatform(data_dir / "fake_platform.db")
    services = make_services(state=state, logs=logs, platform=faulty, data_dir=data_dir)
    runner = StepRunner(services)
    faulty.set_script(durations={"deployment": 600.0, "evaluation": 0.0, "customization": 0.0})
    job = create_job(state, llm_config(["a"], gpus=0))
    _until(runner, job.id, lambda j: _next_kind(runner, j.id) is Kind.poll_deployment)
    assert services.capacity.leases() == {}
    faulty.fail_next("shutdown_deployment", times=1000)
    state.update_job(job.id, {"status": JobStatus.cancelling})
    assert "cleanup failed" in (drive(runner, job.id).error or "")
    assert services.capacity.leases() == {f"{job.id}/cleanup": 0}
    assert len(faulty.live()) == 1
    faulty.clear_faults()
    report = _sweeper(services, state, faulty)(services.clock())
    assert report.released == [f"{job.id}/cleanup"]
    assert faulty.live() == []  # the deployment the stop step could not shut down
    assert "cleanup_pending" not in state.get_job(job.id).state
