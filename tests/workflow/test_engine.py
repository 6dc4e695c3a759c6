"""The pure decision function: the next action for each state, claims, timeouts."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from flywheel.config.schema import LLMJudgeConfig, StageTimeouts
from flywheel.domain.jobs import Job, JobId, JobStatus, JobType
from flywheel.workflow import engine
from flywheel.workflow.engine import Action, Kind, Timing, decide, initial_state
from tests.workflow.support import embedding_config, llm_config

NOW = 1_800_000_000_000
TIMING = Timing(poll_interval_ms=1000, capacity_retry_ms=5000)


def _job(
    status: JobStatus = JobStatus.running,
    *,
    names: tuple[str, ...] = ("a",),
    job_type: JobType = JobType.llm_job,
    customize: bool = True,
) -> Job:
    config = (
        embedding_config(list(names))
        if job_type is JobType.embedding_job
        else llm_config(list(names), customize=customize)
    )
    config = config.model_copy(
        update={
            "timeouts": StageTimeouts(datasets=60, deployment=60, evaluation=60, customization=60)
        }
    )
    job = Job(
        id=JobId("job_1"),
        client_id="c",
        workload_id="w",
        job_type=job_type,
        status=status,
        config=config.model_dump(mode="json"),
    )
    if status is not JobStatus.pending:
        job = job.model_copy(update={"state": initial_state(job, config, NOW - 1000)})
    return job


def _with(job: Job, **paths: Any) -> Job:
    """A copy of ``job`` whose state has ``paths`` set (``a__b__c=v`` → state[a][b][c] = v)."""
    state = copy.deepcopy(job.state)
    for path, value in paths.items():
        keys = path.split("__")
        node = state
        for key in keys[:-1]:
            node = node[key]
        node[keys[-1]] = value
    return job.model_copy(update={"state": state})


def _uploaded(job: Job) -> Job:
    return _with(job, datasets__status="uploaded", datasets__handle={"id": "ds"})


def _active(job: Job, name: str = "a") -> Job:
    job = _uploaded(job)
    return _with(
        job,
        **{
            f"candidates__{name}__status": engine.ACTIVE,
            f"candidates__{name}__deployment__status": "ready",
            f"candidates__{name}__deployment__handle": {"id": "dep"},
        },
    )


def _next(job: Job, now: int = NOW, task_id: str | None = None) -> Action | None:
    return decide(job, now_ms=now, timing=TIMING, task_id=task_id).action


def test_terminal_jobs_have_nothing_to_do() -> None:
    for status in (JobStatus.completed, JobStatus.failed, JobStatus.cancelled):
        assert decide(_job(status), now_ms=NOW, timing=TIMING).done


def test_pending_initializes() -> None:
    assert _next(_job(JobStatus.pending)) == Action(Kind.initialize)


def test_datasets_are_built_then_uploaded() -> None:
    job = _job()
    assert _next(job) == Action(Kind.build_datasets)
    assert _next(_with(job, datasets__status="built")) == Action(Kind.upload_datasets)


def test_datasets_timeout_fails_the_stage() -> None:
    job = _with(_job(), datasets__started_at=NOW - 61_000)
    action = _next(job)
    assert action is not None
    assert action.kind is Kind.fail_datasets
    assert action.reason == "datasets stage timed out after 60 s (timeouts.datasets)"


def test_failed_datasets_stop_the_job() -> None:
    job = _with(_job(), datasets__status="failed", datasets__error="datasets: too few")
    assert _next(job) == Action(Kind.stop_all, reason="datasets: too few")


def test_candidates_first_ask_for_capacity() -> None:
    job = _uploaded(_job(names=("a", "b")))
    assert _next(job) == Action(Kind.acquire_capacity, "a")


def test_queued_candidate_waits_for_its_retry_time() -> None:
    job = _with(
        _uploaded(_job()),
        candidates__a__status=engine.QUEUED,
        candidates__a__next_check_at=NOW + 700,
    )
    decision = decide(job, now_ms=NOW, timing=TIMING)
    assert decision.action is None
    assert decision.wait_s == pytest.approx(0.7)
    assert _next(job, NOW + 700) == Action(Kind.acquire_capacity, "a")


def test_deployment_is_started_then_polled_when_due() -> None:
    job = _with(_uploaded(_job()), candidates__a__status=engine.DEPLOYING)
    assert _next(job) == Action(Kind.start_deployment, "a")
    started = _with(
        job,
        candidates__a__deployment__status="starting",
        candidates__a__deployment__handle={"id": "d"},
        candidates__a__deployment__started_at=NOW - 10,
        candidates__a__deployment__next_poll_at=NOW + 500,
    )
    assert decide(started, now_ms=NOW, timing=TIMING).wait_s == pytest.approx(0.5)
    assert _next(started, NOW + 500) == Action(Kind.poll_deployment, "a")


def test_deployment_timeout_expires_the_candidate() -> None:
    job = _with(
        _uploaded(_job()),
        candidates__a__status=engine.DEPLOYING,
        candidates__a__deployment__status="starting",
        candidates__a__deployment__started_at=NOW - 61_000,
    )
    action = _next(job)
    assert action is not None
    assert action.kind is Kind.expire
    assert action.item is None


def test_active_candidate_starts_base_icl_and_customization_in_order() -> None:
    job = _active(_job())
    assert _next(job) == Action(Kind.start_evaluation, "a", "base")
    job = _with(
        job,
        candidates__a__work__base__status=engine.W_RUNNING,
        candidates__a__work__base__started_at=NOW,
        candidates__a__work__base__next_poll_at=NOW + 999,
    )
    assert _next(job) == Action(Kind.start_evaluation, "a", "icl")
    job = _with(
        job,
        candidates__a__work__icl__status=engine.W_RUNNING,
        candidates__a__work__icl__started_at=NOW,
        candidates__a__work__icl__next_poll_at=NOW + 999,
    )
    assert _next(job) == Action(Kind.start_customization, "a", "customize")


def test_due_polls_never_starve_a_start() -> None:
    # Polls recur; with polls first, running items polled back to back (fast poll interval,
    # slow platform) could keep the customization from ever starting.
    job = _active(_job())
    for item in ("base", "icl"):
        job = _with(
            job,
            **{
                f"candidates__a__work__{item}__status": engine.W_RUNNING,
                f"candidates__a__work__{item}__started_at": NOW,
                f"candidates__a__work__{item}__next_poll_at": NOW - 1,  # overdue
            },
        )
    assert _next(job) == Action(Kind.start_customization, "a", "customize")


def test_customized_eval_waits_for_the_customization() -> None:
    job = _active(_job())
    for item in ("base", "icl"):
        job = _with(job, **{f"candidates__a__work__{item}__status": engine.W_COMPLETED})
    job = _with(
        job,
        candidates__a__work__customize__status=engine.W_RUNNING,
        candidates__a__work__customize__started_at=NOW,
        candidates__a__work__customize__next_poll_at=NOW + 300,
    )
    assert decide(job, now_ms=NOW, timing=TIMING).wait_s == pytest.approx(0.3)
    assert _next(job, NOW + 300) == Action(Kind.poll_customization, "a", "customize")
    done = _with(job, candidates__a__work__customize__status=engine.W_COMPLETED)
    assert _next(done) == Action(Kind.start_evaluation, "a", "customized")
    failed = _with(job, candidates__a__work__customize__status=engine.W_FAILED)
    action = _next(failed)
    assert action is not None
    assert (action.kind, action.item) == (Kind.expire, "customized")


def test_embedding_candidates_have_no_icl() -> None:
    job = _job(job_type=JobType.embedding_job, names=("e",))
    assert list(job.state["candidates"]["e"]["work"]) == ["base", "customize", "customized"]


def test_running_work_past_its_timeout_expires() -> None:
    job = _with(
        _active(_job()),
        candidates__a__work__base__status=engine.W_RUNNING,
        candidates__a__work__base__started_at=NOW - 61_000,
    )
    action = _next(job)
    assert action is not None
    assert (action.kind, action.item) == (Kind.expire, "base")
    assert "timed out" in (action.reason or "")


def test_ended_work_shuts_the_candidate_down_then_finalize() -> None:
    job = _active(_job(customize=False))
    for item in ("base", "icl"):
        job = _with(job, **{f"candidates__a__work__{item}__status": engine.W_COMPLETED})
    assert _next(job) == Action(Kind.shutdown, "a")
    assert _next(_with(job, candidates__a__status=engine.COMPLETED)) == Action(Kind.finalize)


def test_one_failed_candidate_does_not_block_the_other() -> None:
    job = _uploaded(_job(names=("a", "b")))
    job = _with(job, candidates__a__status=engine.FAILED)
    assert _next(job) == Action(Kind.acquire_capacity, "b")


def test_cancelling_and_abort_stop_everything() -> None:
    job = _active(_job()).model_copy(update={"status": JobStatus.cancelling})
    assert _next(job) == Action(Kind.stop_all, reason="cancelled")
    aborted = _with(_active(_job()), abort="stuck")
    assert _next(aborted) == Action(Kind.stop_all, reason="stuck")


def test_a_live_claim_makes_others_wait_and_an_expired_one_is_redone() -> None:
    claim = {"key": "start_deployment|a|", "task": "t1", "token": "x", "until": NOW + 1000}
    job = _with(_uploaded(_job()), claim=claim)
    assert decide(job, now_ms=NOW, timing=TIMING).busy
    assert decide(job, now_ms=NOW, timing=TIMING, task_id="t1").action == Action(
        Kind.start_deployment, "a"
    )  # the redelivered task redoes its own claim
    assert _next(job, NOW + 1001) == Action(Kind.start_deployment, "a")


def test_cancel_overrides_an_expired_claim() -> None:
    claim = {"key": "start_deployment|a|", "task": "t1", "token": "x", "until": NOW - 1}
    job = _with(_uploaded(_job()), claim=claim).model_copy(update={"status": JobStatus.cancelling})
    assert _next(job) == Action(Kind.stop_all, reason="cancelled")


def test_action_keys_round_trip() -> None:
    for action in (Action(Kind.finalize), Action(Kind.poll_evaluation, "m:1", "icl")):
        assert Action.from_key(action.key) == Action(action.kind, action.candidate, action.item)


def test_iter_handles_lists_every_recorded_handle() -> None:
    job = _active(_job())
    job = _with(job, candidates__a__work__base__handle={"id": "ev"})
    kinds = sorted(k for k, *_ in engine.iter_handles(job.state))
    assert kinds == ["datasets", "deployment", "evaluation"]


def _with_judge(judge: Any, **paths: Any) -> Job:
    config = llm_config(
        ["a"],
        llm_judge_config=judge,
        timeouts=StageTimeouts(datasets=60, deployment=60, evaluation=60, customization=60),
    )
    job = Job(
        id=JobId("job_1"),
        client_id="c",
        workload_id="w",
        status=JobStatus.running,
        config=config.model_dump(mode="json"),
    )
    job = job.model_copy(update={"state": initial_state(job, config, NOW - 1000)})
    return _with(_uploaded(job), **paths)


def test_the_judge_stage_comes_between_datasets_and_candidates() -> None:
    remote = LLMJudgeConfig(type="remote", url="http://judge/v1", model_name="j")
    assert _next(_with_judge(remote)) == Action(Kind.check_judge)
    assert engine.stage_name(_with_judge(remote).state) == "judge"
    deployed = LLMJudgeConfig(type="deployed", model_name="j", gpus=1)
    assert _next(_with_judge(deployed)) == Action(Kind.start_judge)
    starting = _with_judge(
        deployed, judge__status="starting", judge__handle={"id": "j"}, judge__started_at=NOW
    )
    assert _next(starting) == Action(Kind.poll_judge)
    late = _with(starting, judge__started_at=NOW - 61_000)
    action = _next(late)
    assert action is not None
    assert action.kind is Kind.fail_judge
    assert "judge deployment not ready after 60 s" in (action.reason or "")
    failed = _with(starting, judge__status="failed", judge__error="LLM judge 'j' …")
    assert _next(failed) == Action(Kind.stop_all, reason="LLM judge 'j' …")
    for ready in (_with(starting, judge__status="ready"), _with_judge(LLMJudgeConfig())):
        assert _next(ready) == Action(Kind.acquire_capacity, "a")


def test_an_owned_judge_is_shut_down_before_finalize_a_shared_one_is_not() -> None:
    deployed = LLMJudgeConfig(type="deployed", model_name="j")
    ended = {"candidates__a__status": engine.COMPLETED}
    owned = _with_judge(deployed, judge__status="ready", judge__handle={"id": "j"}, **ended)
    assert _next(owned) == Action(Kind.shutdown_judge)
    assert _next(_with(owned, judge__status="shut_down")) == Action(Kind.finalize)
    shared = _with_judge(deployed, judge__status="ready", judge__shared=True, **ended)
    assert _next(shared) == Action(Kind.finalize)


def test_a_state_from_before_the_judge_stage_goes_on_to_the_candidates() -> None:
    job = _uploaded(_job())
    state = dict(job.state)
    del state["judge"]
    assert _next(job.model_copy(update={"state": state})) == Action(Kind.acquire_capacity, "a")


def test_datasets_waiting_for_the_log_store_wait_until_the_next_attempt() -> None:
    wait = {"since": NOW - 5000, "attempts": 2, "error": "Elasticsearch at http://es down"}
    job = _with(_job(), datasets__log_store_wait={**wait, "next_at": NOW + 2000})
    decision = decide(job, now_ms=NOW, timing=TIMING)
    assert decision.action is None
    assert decision.wait_s == 2.0
    assert _next(job, now=NOW + 2000) == Action(Kind.build_datasets)
    label = engine.stage_label(job.state)
    assert label.startswith("datasets: waiting for the log store (Elasticsearch at http://es")


def _progress_path(job: Job) -> list[dict[str, Any]]:
    """The states of a job from start to every candidate ended, one change at a time."""
    states = [job.state]

    def step(**paths: Any) -> None:
        nonlocal job
        job = _with(job, **paths)
        states.append(job.state)

    step(datasets__status="built")
    step(datasets__status="uploaded", datasets__handle={"id": "ds"})
    endings = [engine.W_COMPLETED, engine.W_FAILED, engine.W_CANCELLED, engine.W_SKIPPED]
    for name, cand in job.state["candidates"].items():
        step(**{f"candidates__{name}__status": engine.ACTIVE})
        for i, item in enumerate(cand["work"]):
            step(**{f"candidates__{name}__work__{item}__status": engine.W_RUNNING})
            step(**{f"candidates__{name}__work__{item}__status": endings[i % len(endings)]})
        step(**{f"candidates__{name}__status": engine.COMPLETED})
    return states


def test_progress_is_a_percentage_that_never_goes_back() -> None:
    for job in (_job(names=("a", "b")), _job(names=("e",), job_type=JobType.embedding_job)):
        values = [engine.progress_percent(state) for state in _progress_path(job)]
        assert all(0.0 <= v <= 100.0 for v in values), values
        assert values == sorted(values), values  # non-decreasing across the stages
        assert values[0] == 0.0
        assert values[-1] == 95.0  # all work ended; finalize sets the last 5 %
        assert len(set(values)) > len(values) // 3  # it moves, not just at the ends
