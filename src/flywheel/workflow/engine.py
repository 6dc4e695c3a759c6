"""The workflow's brain: from a job's persisted state, decide the one next thing to do.

Pure functions over plain data (the job and its ``state`` dict); no I/O, no clock of its
own, no Celery. :mod:`flywheel.workflow.steps` executes what :func:`decide` returns.

The job DAG::

    pending ─initialize─▶ running
      datasets: build (long queue) ─▶ upload
      per candidate, concurrently, bounded by the GPU budget:
        waiting ─acquire─▶ queued (reason) ⟲ │ deploying ─start─▶ poll… ─ready─▶ active
        active:  base eval ‖ icl eval ‖ (customize ─▶ customized eval)     (llm_job)
                 base eval ‖ (customize ─▶ customized eval)                 (embedding_job)
        all work terminal (or the deployment failed) ─▶ shutting_down ─shutdown─▶ completed|failed
      every candidate ended ─finalize (long queue)─▶ completed | failed
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
    return {
        "schema": STATE_SCHEMA,
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

    ``kind`` is ``datasets``, ``deployment``, ``evaluation`` or ``customization``.
    """
    datasets = state.get("datasets") or {}
    if datasets.get("handle"):
        yield "datasets", "", None, datasets["handle"]
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
        started = datasets.get("started_at")
        limit_ms = config.timeouts.datasets * 1000
        if started is not None and now_ms - started > limit_ms:
            return Decision(
                Action(
                    Kind.fail_datasets,
                    reason=f"datasets stage timed out after {config.timeouts.datasets} s",
                )
            )
        return Decision(Action(Kind.build_datasets))
    if datasets["status"] == "built":
        return Decision(Action(Kind.upload_datasets))

    return _decide_candidates(state, config, now_ms=now_ms, timing=timing)


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
                    reason=f"deployment not ready after {config.timeouts.deployment} s",
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
            seconds = (
                config.timeouts.customization if item == CUSTOMIZE else config.timeouts.evaluation
            )
            what = "customization" if item == CUSTOMIZE else f"{item} evaluation"
            yield (
                1,
                Action(Kind.expire, name, item, reason=f"{what} timed out after {seconds} s"),
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
    """A one-word description of where the job stands (``Job.stage``)."""
    datasets = state.get("datasets") or {}
    if datasets.get("status") in ("pending", "built"):
        return "datasets"
    statuses = {c["status"] for c in state.get("candidates", {}).values()}
    if statuses <= CANDIDATE_ENDED:
        return "finalizing"
    for stage in (DEPLOYING, ACTIVE, QUEUED, SHUTTING_DOWN, WAITING):
        if stage in statuses:
            return {ACTIVE: "evaluating"}.get(stage, stage)
    return "running"
