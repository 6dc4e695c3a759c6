"""The workflow's brain: from a job's persisted state, decide the one next thing to do.

Pure functions over plain data (the job and its ``state`` dict); no I/O, no clock of its
own, no Celery. :mod:`flywheel.workflow.steps` executes what :func:`decide` returns.

The job DAG::

    pending ─initialize─▶ running
      datasets: build (long queue) ─▶ upload
                (log store down, FLYWHEEL_LOG_STORE_OUTAGE=wait: build ⟲ with capped backoff)
      judge:    remote: check ⟲ │ deployed: served? use it │ start ─▶ poll… ─▶ ready
                (local / none: ready at once)
      per candidate, concurrently, bounded by the GPU budget:
        waiting ─acquire─▶ queued (reason) ⟲ │ deploying ─start─▶ poll… ─ready─▶ active
        active:  base eval ‖ icl eval ‖ (customize ─▶ customized eval)     (llm_job)
                 base eval ‖ (customize ─▶ customized eval)                 (embedding_job)
        all work terminal (or the deployment failed) ─▶ shutting_down ─shutdown─▶ completed|failed
      every candidate ended ─(shutdown_judge)─finalize (long queue)─▶ completed | failed
    cancelling ─stop_all─▶ cancelled        (an abort: stop_all ─▶ failed with the reason)

Each action does one thing. Actions that *start* platform work first claim the job with a
compare-and-set write (``state.claim``), so two deliveries of the same step can never both
start it; a claim that outlives its lease belongs to a dead worker and is redone.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from flywheel.config.schema import CandidateModel, JobConfig
from flywheel.domain.jobs import TERMINAL_STATUSES, Job, JobStatus, JobType
from flywheel.workflow.judge import (
    J_FAILED,
    J_PENDING,
    J_QUEUED,
    J_READY,
    J_SHUT_DOWN,
    judge_gpus,
)

STATE_SCHEMA = 1

# Candidate statuses (also shown on the CandidateRun).
WAITING, QUEUED, DEPLOYING, ACTIVE, SHUTTING_DOWN = (
    "waiting",
    "queued",
    "deploying",
    "active",
    "shutting_down",
)
COMPLETED, FAILED, CANCELLED = "completed", "failed", "cancelled"
CANDIDATE_ENDED = frozenset({COMPLETED, FAILED, CANCELLED})

# Work-item statuses (evaluations and the customization).
W_WAITING, W_RUNNING, W_COMPLETED, W_FAILED, W_CANCELLED, W_SKIPPED = (
    "waiting",
    "running",
    "completed",
    "failed",
    "cancelled",
    "skipped",
)
WORK_ENDED = frozenset({W_COMPLETED, W_FAILED, W_CANCELLED, W_SKIPPED})

CUSTOMIZE = "customize"
"""Work-item key of the customization; the other keys are eval types (base, icl, customized)."""


class Kind(StrEnum):
    """What one step does."""

    initialize = "initialize"
    build_datasets = "build_datasets"
    upload_datasets = "upload_datasets"
    fail_datasets = "fail_datasets"
    acquire_capacity = "acquire_capacity"
    start_deployment = "start_deployment"
    poll_deployment = "poll_deployment"
    start_evaluation = "start_evaluation"
    poll_evaluation = "poll_evaluation"
    start_customization = "start_customization"
    poll_customization = "poll_customization"
    expire = "expire"
    check_judge = "check_judge"
    start_judge = "start_judge"
    poll_judge = "poll_judge"
    fail_judge = "fail_judge"
    shutdown_judge = "shutdown_judge"
    shutdown = "shutdown"
    finalize = "finalize"
    stop_all = "stop_all"


_CLAIMING = frozenset(
    {
        Kind.build_datasets,
        Kind.upload_datasets,
        Kind.start_deployment,
        Kind.start_evaluation,
        Kind.start_customization,
        Kind.start_judge,
    }
)
_LONG = frozenset({Kind.build_datasets, Kind.finalize})


@dataclass(frozen=True, slots=True)
class Action:
    """One step: its kind and, for candidate work, which candidate and which work item."""

    kind: Kind
    candidate: str | None = None
    item: str | None = None
    reason: str | None = None

    @property
    def key(self) -> str:
        """A stable identity (claims and retry counters are keyed by it)."""
        # "|" cannot occur in candidate names (see CandidateModel.name).
        return "|".join([self.kind.value, self.candidate or "", self.item or ""])

    @classmethod
    def from_key(cls, key: str) -> Action:
        """Inverse of :attr:`key`."""
        kind, candidate, item = key.split("|", 2)
        return cls(Kind(kind), candidate or None, item or None)

    @property
    def claims(self) -> bool:
        """True when the step starts platform work and must own the job first."""
        return self.kind in _CLAIMING

    @property
    def long(self) -> bool:
        """True for steps that run on the long queue."""
        return self.kind in _LONG


@dataclass(frozen=True, slots=True)
class Decision:
    """What to do now: run ``action``, or wait ``wait_s`` and look again, or nothing."""

    action: Action | None = None
    wait_s: float | None = None
    busy: bool = False
    """Another live step owns the job (its claim has not expired): do nothing now."""

    @property
    def done(self) -> bool:
        """Nothing will ever be left to do (the job ended or is gone)."""
        return self.action is None and self.wait_s is None and not self.busy


@dataclass(frozen=True, slots=True)
class Timing:
    """The engine's timing knobs (see :class:`~flywheel.workflow.options.WorkflowOptions`)."""

    poll_interval_ms: int
    capacity_retry_ms: int


# -- building and reading the state ------------------------------------------------------


def work_plan(candidate: CandidateModel, config: JobConfig, job_type: JobType) -> list[str]:
    """The work items of one candidate, in start order."""
    items = ["base"]
    if job_type is JobType.llm_job and config.icl_config.max_examples > 0:
        items.append("icl")
    if candidate.customization_enabled:
        items += [CUSTOMIZE, "customized"]
    return items


def _work(status: str = W_WAITING) -> dict[str, Any]:
    return {
        "status": status,
        "handle": None,
        "started_at": None,
        "finished_at": None,
        "next_poll_at": 0,
        "percent": None,
        "details": {},
        "error": None,
    }


def initial_state(job: Job, config: JobConfig, now_ms: int) -> dict[str, Any]:
    """The state a job starts running with."""
    candidates: dict[str, Any] = {}
    for c in config.candidates_for(job.job_type):
        candidates[c.name] = {
            "status": WAITING,
            "gpus": c.gpus,
            "lease": False,
            "reason": None,
            "next_check_at": 0,
            "error": None,
            "started_at": None,
            "finished_at": None,
            "deployment": {
                "status": "none",
                "handle": None,
                "started_at": None,
                "ready_at": None,
                "next_poll_at": 0,
                "error": None,
            },
            "work": {item: _work() for item in work_plan(c, config, job.job_type)},
        }
    judge = config.llm_judge_config
    return {
        "schema": STATE_SCHEMA,
        "judge": {
            "type": judge.type,
            "model": judge.model_name,
            "url": judge.url,
            # local: loaded by the evaluations themselves; none: nothing to prepare.
            "status": J_READY if judge.type in ("local", "none") else J_PENDING,
            "shared": False,
            "owned": False,
            "handle": None,
            "gpus": judge_gpus(judge) if judge.type == "deployed" else 0,
            "lease": False,
            "reason": None,
            "next_check_at": 0,
            "next_poll_at": 0,
            "started_at": None,
            "ready_at": None,
            "message": None,
            "error": None,
        },
        "started_at": now_ms,
        "last_step_at": now_ms,
        "claim": None,
        "retries": {},
        "abort": None,
        "datasets": {
            "status": "pending",
            "started_at": None,
            "built_at": None,
            "uploaded_at": None,
            "dir": None,
            "files": {},
            "handle": None,
            "error": None,
        },
        "candidates": candidates,
        "stopped": [],
    }


def job_config(job: Job) -> JobConfig:
    """The job's configuration snapshot, typed."""
    return JobConfig.model_validate(job.config)


def iter_handles(state: Mapping[str, Any]) -> Iterator[tuple[str, str, str | None, Any]]:
    """Every platform handle recorded in ``state``: ``(kind, candidate, item, handle)``.

    ``kind`` is ``datasets``, ``judge`` (a judge deployment the job started and owns; a
    shared judge has no handle), ``deployment``, ``evaluation`` or ``customization``.
    """
    datasets = state.get("datasets") or {}
    if datasets.get("handle"):
        yield "datasets", "", None, datasets["handle"]
    judge = state.get("judge") or {}
    if judge.get("handle"):
        yield "judge", "", None, judge["handle"]
    for name, cand in (state.get("candidates") or {}).items():
        if cand["deployment"].get("handle"):
            yield "deployment", name, None, cand["deployment"]["handle"]
        for item, work in cand["work"].items():
            if work.get("handle"):
                kind = "customization" if item == CUSTOMIZE else "evaluation"
                yield kind, name, item, work["handle"]


# -- deciding ------------------------------------------------------------------------------


def decide(job: Job, *, now_ms: int, timing: Timing, task_id: str | None = None) -> Decision:
    """The next action for ``job`` at ``now_ms`` (``task_id``: the asking Celery task)."""
    if job.status in TERMINAL_STATUSES:
        return Decision()
    if job.status is JobStatus.pending:
        return Decision(Action(Kind.initialize))
    state = job.state
    claim = state.get("claim")
    if claim is not None:
        # A claimed action that never committed: its worker is still at it (busy), or it
        # died (lease expired, or this is the redelivery of that very task): redo it.
        mine = task_id is not None and claim.get("task") == task_id
        if claim["until"] > now_ms and not mine:
            return Decision(busy=True)
        action = Action.from_key(claim["key"])
        if job.status is JobStatus.running and state.get("abort") is None:
            return Decision(action)
    if job.status is JobStatus.cancelling:
        return Decision(Action(Kind.stop_all, reason="cancelled"))
    if state.get("abort"):
        return Decision(Action(Kind.stop_all, reason=str(state["abort"])))
    config = job_config(job)

    datasets = state["datasets"]
    if datasets["status"] == "failed":
        return Decision(Action(Kind.stop_all, reason=datasets["error"] or "datasets failed"))
    if datasets["status"] == "pending":
        wait = datasets.get("log_store_wait")
        if wait is not None and wait["next_at"] > now_ms:
            return Decision(wait_s=max(wait["next_at"] - now_ms, 1) / 1000)
        started = datasets.get("started_at")
        limit_ms = config.timeouts.datasets * 1000
        if started is not None and now_ms - started > limit_ms:
            return Decision(
                Action(
                    Kind.fail_datasets,
                    reason=f"datasets stage timed out after {config.timeouts.datasets} s "
                    "(timeouts.datasets)",
                )
            )
        return Decision(Action(Kind.build_datasets))
    if datasets["status"] == "built":
        return Decision(Action(Kind.upload_datasets))

    judge = state.get("judge")  # absent in states written before the judge stage existed
    if judge is not None and judge["status"] not in (J_READY, J_SHUT_DOWN):
        return _decide_judge(judge, config, now_ms=now_ms, timing=timing)
    return _decide_candidates(state, config, now_ms=now_ms, timing=timing)


def _decide_judge(
    judge: Mapping[str, Any], config: JobConfig, *, now_ms: int, timing: Timing
) -> Decision:
    """The judge stage: make the judge ready before any candidate deploys."""
    status = judge["status"]
    if status == J_FAILED:
        return Decision(Action(Kind.stop_all, reason=judge["error"] or "the LLM judge failed"))
    if judge["type"] == "remote":
        return Decision(Action(Kind.check_judge))
    if status in (J_PENDING, J_QUEUED):
        due = int(judge["next_check_at"])
        if due > now_ms:
            return Decision(wait_s=max(due - now_ms, 1) / 1000)
        return Decision(Action(Kind.start_judge))
    # starting
    deadline = judge["started_at"] + config.timeouts.deployment * 1000
    if now_ms > deadline:
        reason = (
            f"judge deployment not ready after {config.timeouts.deployment} s (timeouts.deployment)"
        )
        return Decision(Action(Kind.fail_judge, reason=reason))
    due = int(judge["next_poll_at"])
    if due > now_ms:
        return Decision(wait_s=max(min(due, deadline + 1) - now_ms, 1) / 1000)
    return Decision(Action(Kind.poll_judge))


def judge_to_shut_down(state: Mapping[str, Any]) -> bool:
    """True when the job started a judge deployment that is not shut down yet."""
    judge = state.get("judge") or {}
    return bool(judge.get("handle")) and judge.get("status") != J_SHUT_DOWN


def _decide_candidates(
    state: Mapping[str, Any], config: JobConfig, *, now_ms: int, timing: Timing
) -> Decision:
    by_name = {c.name: c for c in config.candidates}
    # Priority: free capacity first, then end overdue work, then start new work, then poll,
    # then ask for capacity. Within a class, candidates in configuration order. Starts come
    # before polls because each item starts once, while polls recur: with polls first, a
    # few running items polled back to back could starve every start.
    buckets: dict[int, list[Action]] = {0: [], 1: [], 2: [], 3: [], 4: []}
    due: list[int] = []
    for name, cand in state["candidates"].items():
        if cand["status"] in CANDIDATE_ENDED:
            continue
        for rank, action, when in _candidate_actions(name, cand, by_name[name], config, timing):
            if when <= now_ms:
                buckets[rank].append(action)
            else:
                due.append(when)
    for rank in sorted(buckets):
        if buckets[rank]:
            return Decision(buckets[rank][0])
    if all(c["status"] in CANDIDATE_ENDED for c in state["candidates"].values()):
        if judge_to_shut_down(state):
            return Decision(Action(Kind.shutdown_judge))
        return Decision(Action(Kind.finalize))
    wait_ms = (min(due) - now_ms) if due else timing.poll_interval_ms
    return Decision(wait_s=max(wait_ms, 1) / 1000)


def _candidate_actions(
    name: str,
    cand: Mapping[str, Any],
    candidate: CandidateModel,
    config: JobConfig,
    timing: Timing,
) -> Iterator[tuple[int, Action, int]]:
    """``(priority, action, due_at_ms)`` for everything this candidate could do next."""
    status = cand["status"]
    if status in (WAITING, QUEUED):
        yield 4, Action(Kind.acquire_capacity, name), int(cand["next_check_at"])
        return
    if status == SHUTTING_DOWN:
        yield 0, Action(Kind.shutdown, name), 0
        return
    deployment = cand["deployment"]
    if status == DEPLOYING:
        if deployment["status"] == "none":
            yield 2, Action(Kind.start_deployment, name), 0
        elif deployment["status"] == "starting":
            deadline = deployment["started_at"] + config.timeouts.deployment * 1000
            yield (
                1,
                Action(
                    Kind.expire,
                    name,
                    reason=f"deployment not ready after {config.timeouts.deployment} s "
                    "(timeouts.deployment)",
                ),
                deadline + 1,
            )
            yield 3, Action(Kind.poll_deployment, name), int(deployment["next_poll_at"])
        return
    # active
    work = cand["work"]
    for item, w in work.items():
        if w["status"] == W_WAITING:
            if item == "customized":
                dep = work[CUSTOMIZE]["status"]
                if dep == W_COMPLETED:
                    yield 2, Action(Kind.start_evaluation, name, item), 0
                # a failed/cancelled customization makes this item skipped (see steps)
                elif dep in WORK_ENDED:
                    yield (
                        1,
                        Action(Kind.expire, name, item, reason="customization did not complete"),
                        0,
                    )
            elif item == CUSTOMIZE:
                yield 2, Action(Kind.start_customization, name, item), 0
            else:
                yield 2, Action(Kind.start_evaluation, name, item), 0
        elif w["status"] == W_RUNNING:
            setting = "customization" if item == CUSTOMIZE else "evaluation"
            seconds = getattr(config.timeouts, setting)
            what = "customization" if item == CUSTOMIZE else f"{item} evaluation"
            reason = f"{what} timed out after {seconds} s (timeouts.{setting})"
            yield (
                1,
                Action(Kind.expire, name, item, reason=reason),
                w["started_at"] + seconds * 1000 + 1,
            )
            kind = Kind.poll_customization if item == CUSTOMIZE else Kind.poll_evaluation
            yield 3, Action(kind, name, item), int(w["next_poll_at"])
    if all(w["status"] in WORK_ENDED for w in work.values()):
        yield 0, Action(Kind.shutdown, name), 0


def progress_percent(state: Mapping[str, Any]) -> float:
    """A rough overall progress in [0, 100] from the state (datasets 10 %, work 85 %)."""
    datasets = state.get("datasets") or {}
    done = 10.0 if datasets.get("status") == "uploaded" else 0.0
    items = [w for c in state.get("candidates", {}).values() for w in c["work"].values()]
    if items:
        ended = sum(1 for w in items if w["status"] in WORK_ENDED)
        done += 85.0 * ended / len(items)
    return min(done, 95.0)


def stage_name(state: Mapping[str, Any]) -> str:
    """A one-word description of where the job stands (see :func:`stage_label`)."""
    datasets = state.get("datasets") or {}
    if datasets.get("status") in ("pending", "built"):
        return "datasets"
    judge = state.get("judge") or {}
    if judge and judge.get("status") not in (J_READY, J_SHUT_DOWN):
        return "judge"
    statuses = {c["status"] for c in state.get("candidates", {}).values()}
    if statuses <= CANDIDATE_ENDED:
        return "finalizing"
    for stage in (DEPLOYING, ACTIVE, QUEUED, SHUTTING_DOWN, WAITING):
        if stage in statuses:
            return {ACTIVE: "evaluating"}.get(stage, stage)
    return "running"


def stage_label(state: Mapping[str, Any]) -> str:
    """``Job.stage``: the stage's name, with what it waits for when it waits on something
    outside the job (the log store in ``wait`` mode, the LLM judge)."""
    stage = stage_name(state)
    datasets = state.get("datasets") or {}
    wait = datasets.get("log_store_wait")
    if stage == "datasets" and wait is not None:
        error = str(wait["error"])
        error = error if len(error) <= 300 else error[:300] + "…"
        return (
            f"datasets: waiting for the log store ({error}); attempt "
            f"{wait['attempts']}, retrying by itself until it answers"
        )
    if stage == "judge":
        judge = state["judge"]
        what = judge["url"] if judge["type"] == "remote" else judge["model"]
        detail = judge.get("reason") or judge.get("message") or judge["status"]
        return f"judge: {judge['type']} {what}: {detail}"
    return stage
