"""Execute one decided action against the ports and write its result with compare-and-set.

:meth:`StepRunner.advance` is the whole body of the ``flywheel.advance`` task: load the
job, ask :func:`~flywheel.workflow.engine.decide` what to do, do that one thing, commit, and
say what to schedule next. It is safe to run any number of times, concurrently:

* an action that *starts* platform work first claims the job (a CAS write of
  ``state.claim``); a step that loses the claim does nothing, so work is started once;
* the handle is committed by the claimer even if the job moved meanwhile (a cancel), as
  long as the claim is still its own, so cancellation always finds it; if the claim was
  taken over (its lease expired), the step stops the work it started instead;
* every other action (polls, shutdowns, cancellation) is idempotent on the platform, and a
  lost compare-and-set simply drops its result: the next step redoes it.

Transient errors (platform or store unavailable) are retried with backoff a bounded number
of times; anything else fails the smallest scope that contains it: the work item, then the
candidate, then the job. A candidate's failure never fails the others. One exception: with
``FLYWHEEL_LOG_STORE_OUTAGE=wait`` the dataset step waits for an unreachable log store
(re-scheduled with capped backoff, never sleeping in a task) for up to
``FLYWHEEL_LOG_STORE_WAIT_MAX_S``, because an outage of the log store says nothing about the
job and a retry budget of seconds would fail every job queued during it.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import shutil
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import structlog

from flywheel.config.schema import CandidateModel, JobConfig
from flywheel.domain.jobs import (
    TERMINAL_STATUSES,
    CandidateRun,
    Job,
    JobId,
    JobStatus,
    JobType,
    utcnow,
)
from flywheel.domain.logs import LogKind
from flywheel.errors import (
    Conflict,
    NotFound,
    PlatformError,
    PlatformUnavailable,
    StoreUnavailable,
)
from flywheel.platforms.base import EvalType, Handle, ModelPlatform, WorkState
from flywheel.stores.base import LogStore, StateStore
from flywheel.workflow import engine, judge, metrics, scoring
from flywheel.workflow.capacity import CapacityLedger, owner_key
from flywheel.workflow.datasets import DatasetBuilder, dataset_files
from flywheel.workflow.engine import (
    CUSTOMIZE,
    Action,
    Decision,
    Kind,
    Timing,
    decide,
    iter_handles,
    job_config,
)
from flywheel.workflow.notify import pending as notification_pending
from flywheel.workflow.options import WorkflowOptions

log = structlog.get_logger(__name__)

State = dict[str, Any]
Mutation = Callable[[State], None]
_TRANSIENT = (PlatformUnavailable, StoreUnavailable)
_MONTH_MS = 30 * 24 * 3600 * 1000


def now_ms() -> int:
    """Wall-clock epoch milliseconds."""
    return int(time.time() * 1000)


def _iso(ms: int | None) -> str | None:
    return None if ms is None else datetime.fromtimestamp(ms / 1000, UTC).isoformat()


@dataclass(frozen=True, slots=True)
class Next:
    """What the task should schedule after this step."""

    wait_s: float | None
    """``None``: nothing (the job ended, or another step owns it); else the countdown."""
    long: bool = False
    """Send the next step to the long queue."""
    notify: bool = False
    """The job has ended and its completion is not notified yet: send ``flywheel.notify``."""


STOP = Next(None)


@dataclass
class Result:
    """The effect of one executed action, applied to a fresh copy of the state at commit."""

    mutate: Mutation
    changes: dict[str, Any] = field(default_factory=dict)
    expect_status: list[JobStatus] | None = None
    compensate: Callable[[], None] | None = None
    """Undo platform work if the commit is lost (the claim was taken over)."""
    touched: tuple[str, ...] | None = None
    """Candidates whose CandidateRun to refresh (None: all)."""
    retry: bool = False
    """A transient failure: only the retry counter changes; the action runs again."""
    handle: Handle | None = None
    """The platform handle a start action obtained."""
    wait_s: float | None = None
    """With ``retry``: the countdown before the action runs again (default: the backoff)."""


@dataclass
class WorkflowServices:
    """The ports one worker process uses."""

    state: StateStore
    logs: LogStore
    platform: ModelPlatform
    capacity: CapacityLedger
    datasets: DatasetBuilder
    options: WorkflowOptions
    gpu_budget: int
    data_dir: Path
    clock: Callable[[], int] = now_ms
    log_store_outage: str = "fail"
    """``FLYWHEEL_LOG_STORE_OUTAGE``: ``fail`` or ``wait`` (see the module docstring)."""
    log_store_wait_max_s: float = 3600.0
    """``FLYWHEEL_LOG_STORE_WAIT_MAX_S``: the longest wait for the log store in ``wait`` mode."""


class StepRunner:
    """Advances jobs one action at a time."""

    def __init__(self, services: WorkflowServices) -> None:
        """Use ``services`` (platform calls are measured, see :mod:`.metrics`)."""
        self.s = dataclasses.replace(services, platform=metrics.instrument(services.platform))
        opts = services.options
        self._timing = Timing(
            poll_interval_ms=int(opts.poll_interval_s * 1000),
            capacity_retry_ms=int(opts.capacity_retry_s * 1000),
        )

    # -- the step --------------------------------------------------------------------------
    def peek(self, job_id: JobId) -> Decision:
        """What the next step would do now (for choosing its queue)."""
        try:
            job = self.s.state.get_job(job_id)
        except NotFound:
            return Decision()
        return decide(job, now_ms=self.s.clock(), timing=self._timing)

    def advance(self, job_id: JobId, *, task_id: str | None = None) -> Next:
        """Do the one next thing for ``job_id`` and say what to schedule after it."""
        try:
            job = self.s.state.get_job(job_id)
        except NotFound:
            return STOP
        now = self.s.clock()
        decision = decide(job, now_ms=now, timing=self._timing, task_id=task_id)
        if decision.action is None:
            if decision.wait_s is None:
                return Next(None, notify=notification_pending(job))
            return Next(decision.wait_s)
        action = decision.action
        bound = structlog.contextvars.bound_contextvars(
            job_id=job_id,
            stage=job.stage or job.status.value,
            action=action.kind.value,
            candidate=action.candidate,
            item=action.item,
        )
        with bound:
            started = time.perf_counter()
            outcome = "lost"
            try:
                step, outcome = self._run(job, action, now=now, task_id=task_id)
                return step
            finally:
                metrics.observe_step(action.kind.value, outcome, time.perf_counter() - started)

    def _run(self, job: Job, action: Action, *, now: int, task_id: str | None) -> tuple[Next, str]:
        """Run ``action``; return what to schedule and the outcome (ok/retry/failed/lost)."""
        token: str | None = None
        if action.claims:
            token = uuid.uuid4().hex
            lease = (
                self.s.options.build_lease_s
                if action.kind is Kind.build_datasets
                else self.s.options.claim_lease_s
            )
            state = copy.deepcopy(job.state)
            state["claim"] = {
                "key": action.key,
                "task": task_id,
                "token": token,
                "until": now + int(lease * 1000),
            }
            if action.kind is Kind.build_datasets and state["datasets"]["started_at"] is None:
                state["datasets"]["started_at"] = now
            try:
                job = self.s.state.update_job(job.id, {"state": state}, expect_version=job.version)
            except (Conflict, NotFound):
                log.debug("step_claim_lost")
                return STOP, "lost"
        outcome = "ok"
        try:
            result = self._execute(job, action, now)
        except _TRANSIENT as exc:
            if (
                action.kind is Kind.build_datasets
                and isinstance(exc, StoreUnavailable)
                and self.s.log_store_outage == "wait"
            ):
                result = self._wait_for_log_store(job, action, exc, now)
            else:
                result = self._transient(job, action, exc)
            outcome = "retry" if result.retry else "failed"
            if result.retry:
                committed = self._commit(job, action, result, token)
                if committed is None:
                    return STOP, "lost"
                if result.wait_s is not None:
                    return Next(result.wait_s), outcome
                attempt = int(committed.state["retries"].get(action.key, 1))
                return Next(self.s.options.retry_backoff_s * 2 ** (attempt - 1)), outcome
        except Exception as exc:
            log.warning("step_failed", error=str(exc), exc_info=True)
            result = self._failure(job, action, _describe(exc))
            outcome = "failed"
        committed = self._commit(job, action, result, token)
        if committed is None:
            return STOP, "lost"
        if action.kind is Kind.finalize and committed.status in TERMINAL_STATUSES:
            metrics.observe_stages(committed.state.get("timings") or {})
        self._project(committed, result.touched)
        return self._next(committed), outcome

    def _next(self, job: Job) -> Next:
        decision = decide(job, now_ms=self.s.clock(), timing=self._timing)
        if decision.action is not None:
            return Next(0.0, long=decision.action.long)
        if decision.wait_s is not None:
            return Next(decision.wait_s)
        return Next(None, notify=notification_pending(job))

    def _commit(self, job: Job, action: Action, result: Result, token: str | None) -> Job | None:
        for _ in range(5):
            state = copy.deepcopy(job.state)
            result.mutate(state)
            if token is not None:
                state["claim"] = None
            if not result.retry:
                state.get("retries", {}).pop(action.key, None)
            state["last_step_at"] = self.s.clock()
            status = result.changes.get("status")
            if status in TERMINAL_STATUSES:
                # Ending the job: show the candidates' final state first, so that whoever
                # sees the job ended also sees its candidates ended (a lost commit is
                # projected again by the step that wins).
                self._project(job.model_copy(update={"state": state}), result.touched)
            changes: dict[str, Any] = {
                "state": state,
                "stage": status.value if status in TERMINAL_STATUSES else engine.stage_label(state),
                "progress": engine.progress_percent(state),
                **result.changes,
            }
            try:
                return self.s.state.update_job(
                    job.id, changes, expect_version=job.version, expect_status=result.expect_status
                )
            except NotFound:
                self._compensate(result, "job_deleted")
                return None
            except Conflict:
                if token is None:
                    log.debug("step_result_dropped")
                    return None
                try:
                    fresh = self.s.state.get_job(job.id)
                except NotFound:
                    self._compensate(result, "job_deleted")
                    return None
                if (fresh.state.get("claim") or {}).get("token") != token:
                    # Another step redid this start after our lease expired. With an
                    # idempotent platform it got (and recorded) the same work: keep it.
                    recorded = [h for *_, h in iter_handles(fresh.state)]
                    if result.handle is None or result.handle not in recorded:
                        self._compensate(result, "claim_taken_over")
                    return None
                job = fresh
        self._compensate(result, "commit_kept_conflicting")
        return None

    @staticmethod
    def _compensate(result: Result, why: str) -> None:
        """Undo the platform work of a step whose result cannot be recorded."""
        if result.compensate is not None:
            log.warning("step_result_lost_undoing_platform_work", reason=why)
            _best_effort(result.compensate)

    # -- errors ------------------------------------------------------------------------------
    def _transient(self, job: Job, action: Action, exc: Exception) -> Result:
        attempts = int(job.state.get("retries", {}).get(action.key, 0)) + 1
        if attempts > self.s.options.max_transient_retries:
            return self._failure(job, action, f"gave up after {attempts - 1} retries: {exc}")
        log.info("step_retry", attempt=attempts, error=str(exc))

        def mutate(state: State) -> None:
            state.setdefault("retries", {})[action.key] = attempts

        return Result(mutate, touched=(), retry=True)

    def _wait_for_log_store(self, job: Job, action: Action, exc: Exception, now: int) -> Result:
        """``wait`` mode: record the outage on the job and run the dataset step again later.

        The stage timeout restarts with the next attempt (``started_at`` is cleared): the
        wait has its own limit, ``log_store_wait_max_s``.
        """
        previous = job.state["datasets"].get("log_store_wait") or {}
        since = int(previous.get("since") or now)
        attempts = int(previous.get("attempts") or 0) + 1
        waited_s = (now - since) / 1000
        limit = self.s.log_store_wait_max_s
        if waited_s >= limit:
            return self._failure(
                job,
                action,
                f"the log store stayed unreachable for {waited_s:.0f} s, longer than "
                f"FLYWHEEL_LOG_STORE_WAIT_MAX_S={limit:g} ({_describe(exc)}); bring it back "
                "(or raise FLYWHEEL_LOG_STORE_WAIT_MAX_S) and run the job again",
            )
        delay = self.s.options.log_store_wait_delay(attempts)
        log.warning("datasets_waiting_for_log_store", attempt=attempts, error=str(exc))
        wait = {
            "since": since,
            "attempts": attempts,
            "error": _describe(exc),
            "next_at": now + int(delay * 1000),
        }

        def mutate(state: State) -> None:
            state["datasets"].update(log_store_wait=wait, started_at=None)

        return Result(mutate, touched=(), retry=True, wait_s=delay)

    def _failure(self, job: Job, action: Action, error: str) -> Result:
        """The result of an action that failed for good: fail the smallest scope."""
        name, item = action.candidate, action.item
        kind = action.kind
        if kind is Kind.initialize:
            return Result(
                lambda st: None,
                {"status": JobStatus.failed, "error": error, "finished_at": utcnow()},
                expect_status=[JobStatus.pending],
            )
        if kind in (Kind.build_datasets, Kind.upload_datasets, Kind.fail_datasets):

            def fail_datasets(st: State) -> None:
                st["datasets"]["status"] = "failed"
                st["datasets"]["error"] = f"datasets: {error}"

            return Result(fail_datasets, touched=())
        if kind is Kind.shutdown_judge:
            # The candidates' results stand; say what may still be running.
            self.s.capacity.release(owner_key(job.id, judge.JUDGE_OWNER))
            leftover = (
                f"LLM judge deployment {job.state['judge']['handle']} shutdown failed: {error}"
            )

            def judge_left(st: State) -> None:
                st["judge"].update(status=judge.J_SHUT_DOWN, lease=False, error=leftover)

            return Result(judge_left, {"warnings": [*job.warnings, leftover]}, touched=())
        if kind in (Kind.check_judge, Kind.start_judge, Kind.poll_judge, Kind.fail_judge):
            message = judge.failure_message(job_config(job).llm_judge_config, error)

            def fail_judge(st: State) -> None:
                st["judge"].update(status=judge.J_FAILED, error=message, reason=None)

            return Result(fail_judge, touched=())
        if kind is Kind.finalize:
            return Result(
                lambda st: None,
                {
                    "status": JobStatus.failed,
                    "error": f"finalize: {error}",
                    "finished_at": utcnow(),
                },
                expect_status=[JobStatus.running],
            )
        if kind is Kind.stop_all:
            # Could not stop everything even after retries: end the job and say what is left.
            left = [f"{k} {c}/{i or ''}".rstrip("/") for k, c, i, _ in iter_handles(job.state)]
            final = JobStatus.cancelled if job.status is JobStatus.cancelling else JobStatus.failed
            since = self.s.clock()
            # A 0-GPU lease marks the job for the sweep even when it holds no GPU lease
            # (served NIMs, CPU candidates): the sweep visits the jobs behind leases.
            with contextlib.suppress(StoreUnavailable):  # the sweep's own retries cover it
                self.s.capacity.acquire(owner_key(job.id, CLEANUP_OWNER), 0, self.s.gpu_budget)

            def cleanup_pending(st: State) -> None:
                # The sweep finishes the cleanup and only then frees the job's GPU leases.
                st[CLEANUP_PENDING] = {"error": str(error), "since": since, "attempts": 0}

            return Result(
                cleanup_pending,
                {
                    "status": final,
                    "finished_at": utcnow(),
                    "error": f"cleanup failed ({error}); may still be running: {left}",
                },
                expect_status=[job.status],
            )
        assert name is not None
        handle = _item_handle(job.state, name, item)
        if item is not None and kind in (
            Kind.start_evaluation,
            Kind.poll_evaluation,
            Kind.start_customization,
            Kind.poll_customization,
        ):
            if handle is not None:
                stop = (
                    self.s.platform.cancel_customization
                    if item == CUSTOMIZE
                    else self.s.platform.cancel_evaluation
                )
                _best_effort(lambda: stop(handle))

            def fail_item(st: State) -> None:
                w = st["candidates"][name]["work"][item]
                w.update(status=engine.W_FAILED, error=error, finished_at=self.s.clock())

            return Result(fail_item, touched=(name,))
        if kind is Kind.shutdown:

            def fail_shutdown(st: State) -> None:
                c = st["candidates"][name]
                c["deployment"]["error"] = f"shutdown failed: {error}"
                c.update(status=engine.FAILED, finished_at=self.s.clock())
                c["error"] = c["error"] or f"shutdown failed: {error}"

            return Result(fail_shutdown, touched=(name,))

        # Deployment-level (capacity, deployment start/poll, expire): the candidate fails;
        # its shutdown step releases whatever it holds.
        def fail_candidate(st: State) -> None:
            c = st["candidates"][name]
            c["error"] = c["error"] or error
            if c["deployment"]["status"] in ("none", "starting"):
                c["deployment"]["status"] = "failed"
                c["deployment"]["error"] = error
            for w in c["work"].values():
                if w["status"] == engine.W_WAITING:
                    w.update(status=engine.W_SKIPPED, error="candidate failed")
            c["status"] = engine.SHUTTING_DOWN

        return Result(fail_candidate, touched=(name,))

    # -- actions -----------------------------------------------------------------------------
    def _execute(self, job: Job, action: Action, now: int) -> Result:
        handler: dict[Kind, Callable[[Job, Action, int], Result]] = {
            Kind.initialize: self._initialize,
            Kind.build_datasets: self._build_datasets,
            Kind.upload_datasets: self._upload_datasets,
            Kind.fail_datasets: self._fail_datasets,
            Kind.acquire_capacity: self._acquire_capacity,
            Kind.start_deployment: self._start_deployment,
            Kind.poll_deployment: self._poll_deployment,
            Kind.start_evaluation: self._start_work,
            Kind.start_customization: self._start_work,
            Kind.poll_evaluation: self._poll_work,
            Kind.poll_customization: self._poll_work,
            Kind.expire: self._expire,
            Kind.check_judge: self._check_judge,
            Kind.start_judge: self._start_judge,
            Kind.poll_judge: self._poll_judge,
            Kind.fail_judge: self._fail_judge,
            Kind.shutdown_judge: self._shutdown_judge,
            Kind.shutdown: self._shutdown,
            Kind.finalize: self._finalize,
            Kind.stop_all: self._stop_all,
        }
        return handler[action.kind](job, action, now)

    def _initialize(self, job: Job, action: Action, now: int) -> Result:
        config = job_config(job)
        initial = engine.initial_state(job, config, now)
        changes: dict[str, Any] = {"status": JobStatus.running, "started_at": utcnow()}
        if not initial["candidates"]:
            wanted = "embedding" if job.job_type is JobType.embedding_job else "llm"
            changes = {
                "status": JobStatus.failed,
                "finished_at": utcnow(),
                "error": f"the configuration has no {wanted} candidates for a {job.job_type.value}",
            }

        def mutate(st: State) -> None:
            st.clear()
            st.update(copy.deepcopy(initial))

        return Result(mutate, changes, expect_status=[JobStatus.pending])

    def _build_datasets(self, job: Job, action: Action, now: int) -> Result:
        config = job_config(job)
        out_dir = self._job_dir(job.id) / "datasets" / uuid.uuid4().hex[:8]
        started = time.perf_counter()
        built = self.s.datasets.build(job, config, out_dir)
        seconds = round(time.perf_counter() - started, 3)

        def mutate(st: State) -> None:
            d = st["datasets"]
            wait = d.pop("log_store_wait", None)
            if wait is not None:
                d["log_store_waited_s"] = round((self.s.clock() - wait["since"]) / 1000, 3)
            d.update(
                status="built",
                dir=str(out_dir),
                files=dict(built.files),
                workload_type=built.workload_type,
                built_at=self.s.clock(),
                build_seconds=seconds,
            )

        datasets = [{"role": role, "path": path} for role, path in sorted(built.files.items())]
        return Result(
            mutate,
            {
                "dataset_stats": {**built.stats, "workload_type": built.workload_type},
                "datasets": datasets,
            },
            touched=(),
        )

    def _upload_datasets(self, job: Job, action: Action, now: int) -> Result:
        files = dataset_files(job.state["datasets"]["files"])
        handle = self.s.platform.upload_datasets(job_id=job.id, files=files)

        def mutate(st: State) -> None:
            st["datasets"].update(status="uploaded", handle=handle, uploaded_at=self.s.clock())

        return Result(
            mutate,
            touched=(),
            compensate=lambda: self.s.platform.delete_datasets(handle),
            handle=handle,
        )

    def _fail_datasets(self, job: Job, action: Action, now: int) -> Result:
        return self._failure(job, action, action.reason or "datasets stage failed")

    def _acquire_capacity(self, job: Job, action: Action, now: int) -> Result:
        name = _name(action)
        # What the candidate holds at its peak on this platform (NMP: a customized embedder
        # is served beside its base NIM), leased up front so the budget is never overrun.
        gpus = self.s.platform.peak_gpus(_candidate(job, name))
        budget = self.s.gpu_budget
        judge_state = job.state.get("judge") or {}
        held = int(judge_state.get("gpus") or 0) if judge_state.get("lease") else 0
        if gpus > budget - held:
            by_judge = f", of which this job's LLM judge holds {held}" if held else ""
            return self._failure(
                job,
                action,
                f"needs {gpus} GPU(s) at its peak on the {self.s.platform.name} platform but "
                f"the GPU budget (FLYWHEEL_GPU_BUDGET) is {budget}{by_judge}; it can never be "
                "scheduled",
            )
        if gpus == 0:
            granted, reason = True, None
        else:
            grant = self.s.capacity.acquire(owner_key(job.id, name), gpus, budget)
            granted = grant.granted
            reason = (
                None if granted else f"waiting for {gpus} GPU(s): {grant.in_use} of {budget} in use"
            )
        retry = now + self._timing.capacity_retry_ms

        def mutate(st: State) -> None:
            c = st["candidates"][name]
            if granted:
                c.update(
                    status=engine.DEPLOYING,
                    gpus=gpus,
                    lease=gpus > 0,
                    reason=None,
                    started_at=c["started_at"] or self.s.clock(),
                )
            else:
                c.update(status=engine.QUEUED, reason=reason, next_check_at=retry)

        return Result(mutate, touched=(name,))

    def _start_deployment(self, job: Job, action: Action, now: int) -> Result:
        name = _name(action)
        handle = self.s.platform.start_deployment(job_id=job.id, candidate=_candidate(job, name))

        def mutate(st: State) -> None:
            st["candidates"][name]["deployment"].update(
                status="starting", handle=handle, started_at=self.s.clock(), next_poll_at=0
            )

        return Result(
            mutate,
            touched=(name,),
            compensate=lambda: self.s.platform.shutdown_deployment(handle),
            handle=handle,
        )

    def _poll_deployment(self, job: Job, action: Action, now: int) -> Result:
        name = _name(action)
        handle = job.state["candidates"][name]["deployment"]["handle"]
        progress = self.s.platform.poll_deployment(handle)
        next_poll = now + self._timing.poll_interval_ms

        def mutate(st: State) -> None:
            c = st["candidates"][name]
            d = c["deployment"]
            if progress.state is WorkState.ready:
                d.update(status="ready", ready_at=self.s.clock())
                c["status"] = engine.ACTIVE
            elif progress.state in (WorkState.failed, WorkState.cancelled, WorkState.completed):
                error = (
                    f"deployment {progress.state.value}: {progress.message or 'no reason given'}"
                )
                d.update(status="failed", error=error)
                c["error"] = c["error"] or error
                for w in c["work"].values():
                    if w["status"] == engine.W_WAITING:
                        w.update(status=engine.W_SKIPPED, error="deployment failed")
                c["status"] = engine.SHUTTING_DOWN
            else:
                d.update(next_poll_at=next_poll, percent=progress.percent, message=progress.message)

        return Result(mutate, touched=(name,))

    def _start_work(self, job: Job, action: Action, now: int) -> Result:
        name, item = _name(action), _item(action)
        config = job_config(job)
        candidate = _candidate(job, name)
        cand = job.state["candidates"][name]
        datasets = job.state["datasets"]["handle"]
        platform = self.s.platform
        handle: Handle
        if item == CUSTOMIZE:
            handle = platform.start_customization(
                job_id=job.id, candidate=candidate, datasets=datasets, config=config
            )
            compensate: Callable[[], None] = lambda: platform.cancel_customization(handle)  # noqa: E731
        else:
            eval_type: EvalType = _eval_type(item)
            handle = platform.start_evaluation(
                job_id=job.id,
                candidate=candidate,
                eval_type=eval_type,
                datasets=datasets,
                config=config,
                deployment=cand["deployment"]["handle"],
                customization=cand["work"][CUSTOMIZE]["handle"] if item == "customized" else None,
            )
            compensate = lambda: platform.cancel_evaluation(handle)  # noqa: E731

        def mutate(st: State) -> None:
            st["candidates"][name]["work"][item].update(
                status=engine.W_RUNNING, handle=handle, started_at=self.s.clock(), next_poll_at=0
            )

        return Result(mutate, touched=(name,), compensate=compensate, handle=handle)

    def _poll_work(self, job: Job, action: Action, now: int) -> Result:
        name, item = _name(action), _item(action)
        handle = job.state["candidates"][name]["work"][item]["handle"]
        if item == CUSTOMIZE:
            progress = self.s.platform.poll_customization(handle)
        else:
            progress = self.s.platform.poll_evaluation(handle)
        next_poll = now + self._timing.poll_interval_ms
        ended = {
            WorkState.completed: engine.W_COMPLETED,
            WorkState.failed: engine.W_FAILED,
            WorkState.cancelled: engine.W_CANCELLED,
        }

        def mutate(st: State) -> None:
            w = st["candidates"][name]["work"][item]
            w.update(percent=progress.percent, details=dict(progress.details))
            if progress.state in ended:
                w.update(status=ended[progress.state], finished_at=self.s.clock())
                if progress.state is WorkState.completed:
                    w["percent"] = 100.0
                else:
                    w["error"] = progress.message or f"{progress.state.value} on the platform"
            else:
                w["next_poll_at"] = next_poll

        return Result(mutate, touched=(name,))

    def _expire(self, job: Job, action: Action, now: int) -> Result:
        name, item = _name(action), action.item
        reason = action.reason or "timed out"
        if item is None:
            return self._failure(job, action, reason)
        w = job.state["candidates"][name]["work"][item]
        stopped: dict[str, Any] | None = None
        if w["status"] == engine.W_RUNNING and w["handle"] is not None:
            if item == CUSTOMIZE:
                self.s.platform.cancel_customization(w["handle"])
            else:
                self.s.platform.cancel_evaluation(w["handle"])
            stopped = _stopped(
                "customization" if item == CUSTOMIZE else "evaluation",
                name,
                item,
                w["handle"],
                reason,
            )

        def mutate(st: State) -> None:
            work = st["candidates"][name]["work"][item]
            status = engine.W_SKIPPED if work["status"] == engine.W_WAITING else engine.W_FAILED
            work.update(status=status, error=reason, finished_at=self.s.clock())
            if stopped is not None:
                st.setdefault("stopped", []).append(stopped)

        return Result(mutate, touched=(name,))

    # -- the judge stage -------------------------------------------------------------------
    def _check_judge(self, job: Job, action: Action, now: int) -> Result:
        """A remote judge: one probe (unreachable: retried as a transient error)."""
        found = judge.probe_remote_judge(job_config(job).llm_judge_config)

        def mutate(st: State) -> None:
            st["judge"].update(
                status=judge.J_READY, ready_at=self.s.clock(), message=found, error=None
            )

        return Result(mutate, touched=())

    def _start_judge(self, job: Job, action: Action, now: int) -> Result:
        """A deployed judge: use the platform's if it serves one, else lease GPUs and deploy."""
        config = job_config(job).llm_judge_config
        model = str(config.model_name)
        platform = self.s.platform
        if platform.is_model_served(model):
            shared = (
                f"{model} is already served by the platform: shared, never shut down by this job"
            )

            def use_shared(st: State) -> None:
                st["judge"].update(
                    status=judge.J_READY,
                    shared=True,
                    owned=False,
                    reason=None,
                    ready_at=self.s.clock(),
                    message=shared,
                )

            return Result(use_shared, touched=())
        gpus = int(job.state["judge"]["gpus"])
        budget = self.s.gpu_budget
        if gpus > budget:
            return self._failure(
                job,
                action,
                f"it needs {gpus} GPU(s) but the GPU budget (FLYWHEEL_GPU_BUDGET) is {budget}",
            )
        owner = owner_key(job.id, judge.JUDGE_OWNER)
        if gpus > 0:
            grant = self.s.capacity.acquire(owner, gpus, budget)
            if not grant.granted:
                reason = f"waiting for {gpus} GPU(s): {grant.in_use} of {budget} in use"
                retry = now + self._timing.capacity_retry_ms

                def queue(st: State) -> None:
                    st["judge"].update(status=judge.J_QUEUED, reason=reason, next_check_at=retry)

                return Result(queue, touched=())
        handle = platform.start_deployment(job_id=job.id, candidate=judge.judge_candidate(config))

        def mutate(st: State) -> None:
            st["judge"].update(
                status=judge.J_STARTING,
                handle=handle,
                owned=True,
                lease=gpus > 0,
                reason=None,
                started_at=self.s.clock(),
                next_poll_at=0,
                message=f"deploying {model} for this job",
            )

        def undo() -> None:
            platform.shutdown_deployment(handle)
            self.s.capacity.release(owner)

        return Result(mutate, touched=(), compensate=undo, handle=handle)

    def _poll_judge(self, job: Job, action: Action, now: int) -> Result:
        """Poll the judge deployment this job started; a failed one fails the judge stage."""
        handle = job.state["judge"]["handle"]
        progress = self.s.platform.poll_deployment(handle)
        if progress.state in (WorkState.failed, WorkState.cancelled, WorkState.completed):
            return self._failure(
                job,
                action,
                f"its deployment {progress.state.value}: {progress.message or 'no reason given'}",
            )
        next_poll = now + self._timing.poll_interval_ms

        def mutate(st: State) -> None:
            j = st["judge"]
            if progress.state is WorkState.ready:
                j.update(status=judge.J_READY, ready_at=self.s.clock(), message=progress.message)
            else:
                j.update(next_poll_at=next_poll, message=progress.message or "starting")

        return Result(mutate, touched=())

    def _fail_judge(self, job: Job, action: Action, now: int) -> Result:
        return self._failure(job, action, action.reason or "the judge stage failed")

    def _shutdown_judge(self, job: Job, action: Action, now: int) -> Result:
        """Every candidate ended: shut down the judge this job deployed, free its GPUs."""
        self.s.platform.shutdown_deployment(job.state["judge"]["handle"])
        self.s.capacity.release(owner_key(job.id, judge.JUDGE_OWNER))

        def mutate(st: State) -> None:
            st["judge"].update(status=judge.J_SHUT_DOWN, lease=False, shut_down_at=self.s.clock())

        return Result(mutate, touched=())

    def _shutdown(self, job: Job, action: Action, now: int) -> Result:
        name = _name(action)
        cand = job.state["candidates"][name]
        deployment = cand["deployment"]
        if deployment["handle"] is not None and deployment["status"] != "shut_down":
            self.s.platform.shutdown_deployment(deployment["handle"])
        self.s.capacity.release(owner_key(job.id, name))

        def mutate(st: State) -> None:
            c = st["candidates"][name]
            if c["deployment"]["handle"] is not None:
                c["deployment"]["status"] = "shut_down"
                c["deployment"]["shut_down_at"] = self.s.clock()
            c["lease"] = False
            evaluated = any(
                w["status"] == engine.W_COMPLETED
                for item, w in c["work"].items()
                if item != CUSTOMIZE
            )
            if not evaluated and not c["error"]:
                errors = [f"{i}: {w['error']}" for i, w in c["work"].items() if w["error"]]
                c["error"] = "no evaluation completed" + (
                    f" ({'; '.join(errors)})" if errors else ""
                )
            c.update(
                status=engine.COMPLETED if evaluated else engine.FAILED, finished_at=self.s.clock()
            )

        return Result(mutate, touched=(name,))

    def _stop_all(self, job: Job, action: Action, now: int) -> Result:
        """Cancel every recorded evaluation and customization, shut down every deployment."""
        platform = self.s.platform
        stopped: list[dict[str, Any]] = []
        for kind, name, item, handle in iter_handles(job.state):
            if kind == "datasets":
                continue
            if kind == "judge":
                if engine.judge_to_shut_down(job.state):
                    platform.shutdown_deployment(handle)
                    stopped.append(_stopped(kind, name, item, handle, action.reason or "stopped"))
                continue
            cand = job.state["candidates"][name]
            if kind == "deployment":
                if cand["deployment"]["status"] == "shut_down":
                    continue
                platform.shutdown_deployment(handle)
            else:
                assert item is not None
                if cand["work"][item]["status"] != engine.W_RUNNING:
                    continue
                if kind == "customization":
                    platform.cancel_customization(handle)
                else:
                    platform.cancel_evaluation(handle)
            stopped.append(_stopped(kind, name, item, handle, action.reason or "stopped"))
        for name in job.state.get("candidates", {}):
            self.s.capacity.release(owner_key(job.id, name))
        self.s.capacity.release(owner_key(job.id, judge.JUDGE_OWNER))
        cancelled = job.status is JobStatus.cancelling
        reason = action.reason or "failed"

        def mutate(st: State) -> None:
            mark_stopped(st, stopped, at=self.s.clock(), cancelled=cancelled, reason=reason)

        summary = stop_summary(stopped)
        warnings = [*job.warnings]
        if stopped:
            warnings.append(f"stopped on {'cancel' if cancelled else 'failure'}: {summary}")
        warnings += self._release_leftovers(job)
        changes: dict[str, Any] = {
            "status": JobStatus.cancelled if cancelled else JobStatus.failed,
            "finished_at": utcnow(),
            "warnings": warnings,
        }
        if not cancelled:
            changes["error"] = reason
        return Result(mutate, changes, expect_status=[job.status])

    def _finalize(self, job: Job, action: Action, now: int) -> Result:
        config = job_config(job)
        state = job.state
        files = state["datasets"]["files"]
        per_item: dict[tuple[str, str], dict[str, Any]] = {}
        warnings = list(job.warnings)
        if job.job_type is JobType.embedding_job:
            recommendation = self._score_embedding(job, config, files, per_item)
        else:
            recommendation = self._score_llm(job, config, files, per_item, warnings)
        timings = _timings(state, now)
        recommendation["timings"] = timings
        evaluated = any(
            w["status"] == engine.W_COMPLETED
            for c in state["candidates"].values()
            for i, w in c["work"].items()
            if i != CUSTOMIZE
        )
        errors = [
            f"{name}: {c['error']}" for name, c in state["candidates"].items() if c.get("error")
        ]
        warnings += self._release_leftovers(job)

        def mutate(st: State) -> None:
            for (name, item), scores in per_item.items():
                st["candidates"][name]["work"][item]["scores"] = scores
            st["timings"] = timings

        changes: dict[str, Any] = {
            "status": JobStatus.completed if evaluated else JobStatus.failed,
            "finished_at": utcnow(),
            "recommendation": recommendation,
            "progress": 100.0,
            "warnings": warnings,
        }
        if not evaluated:
            changes["error"] = "no candidate could be evaluated: " + (
                "; ".join(errors) or "unknown"
            )
        elif errors:
            changes["warnings"] = [*warnings, *(f"candidate {e}" for e in errors)]
        return Result(mutate, changes, expect_status=[JobStatus.running])

    def _release_leftovers(self, job: Job) -> list[str]:
        """Stop platform work the job started but never recorded; warnings saying so.

        Runs when the job ends, after its recorded work was stopped: a start whose answer
        was lost past the retry budget left work with no handle (see ``release_job``). A
        platform that cannot be asked now costs a warning, never the job's result.
        """
        try:
            leftovers = self.s.platform.release_job(job.id)
        except PlatformError as exc:
            log.warning("leftover_platform_work_unchecked", error=_describe(exc))
            return [
                "could not check the platform for work this job started but never recorded "
                f"({_describe(exc)}); look for objects tagged with job id {job.id}"
            ]
        if not leftovers:
            return []
        log.warning("leftover_platform_work_stopped", stopped=leftovers)
        return [f"stopped platform work whose start answer was lost: {', '.join(leftovers)}"]

    # -- scoring helpers ---------------------------------------------------------------------
    def _completed_evals(self, job: Job) -> Iterable[tuple[str, str, Handle]]:
        for name, c in job.state["candidates"].items():
            for item, w in c["work"].items():
                if item != CUSTOMIZE and w["status"] == engine.W_COMPLETED:
                    yield name, item, w["handle"]

    def _score_llm(
        self,
        job: Job,
        config: JobConfig,
        files: Mapping[str, str],
        per_item: dict[tuple[str, str], dict[str, Any]],
        warnings: list[str],
    ) -> dict[str, Any]:
        tool_calling = job.state["datasets"].get("workload_type") != "generic"
        eval_file = Path(files["eval"])
        references = scoring.read_references(eval_file)
        variants: dict[str, Any] = {}
        for name, item, handle in self._completed_evals(job):
            outcome = self.s.platform.evaluation_outcome(handle)
            refs, judged_file = references, eval_file
            icl_file = files.get(f"icl:{name}")
            if item == "icl" and icl_file:
                refs, judged_file = scoring.read_references(Path(icl_file)), Path(icl_file)
            scores, gate_input = scoring.score_llm_eval(
                outcome=outcome,
                references=refs,
                candidate=_candidate(job, name),
                config=config,
                tool_calling=tool_calling,
                judge_tool_calling=scoring.judged_as_tool_calling_file(judged_file),
            )
            per_item[(name, item)] = scores
            if gate_input is not None:
                variants[f"{name}/{item}"] = gate_input
            else:
                warnings.append(f"{name}/{item}: no per-item predictions; not gated")
        requests = self.s.logs.count(
            job.client_id, job.workload_id, kind=LogKind.chat, since_ms=self.s.clock() - _MONTH_MS
        )
        if not variants:
            return {"ranked": [], "rejected": [], "best": None, "requests_last_30_days": requests}
        recommendation, gates = scoring.gate_and_recommend(
            variants=variants,
            config=config,
            reference_cost_per_1k=scoring.reference_cost(config, eval_file),
            requests_last_30_days=requests,
        )
        for variant, gate in gates.items():
            name, item = variant.rsplit("/", 1)
            per_item[(name, item)]["gate"] = gate
        return recommendation

    def _score_embedding(
        self,
        job: Job,
        config: JobConfig,
        files: Mapping[str, str],
        per_item: dict[tuple[str, str], dict[str, Any]],
    ) -> dict[str, Any]:
        qrels = scoring.read_qrels(Path(files["beir_dir"]))
        variants: dict[str, Any] = {}
        for name, item, handle in self._completed_evals(job):
            outcome = self.s.platform.evaluation_outcome(handle)
            scores = scoring.score_retrieval_eval(outcome=outcome, qrels=qrels, config=config)
            per_item[(name, item)] = scores
            variants[f"{name}/{item}"] = scores
        recommendation = scoring.rank_retrieval(variants)
        # The production retriever's own ranking, scored alike: a yardstick beside the
        # candidates, never one of them (it cannot be recommended or promoted).
        reference, missing = scoring.reference_row(
            datasets_root=Path(files["root"]), qrels=qrels, config=config
        )
        recommendation["reference"] = reference
        if missing is not None:
            recommendation["reference_note"] = missing
        return recommendation

    # -- projection and files ----------------------------------------------------------------
    def _job_dir(self, job_id: str) -> Path:
        return self.s.data_dir / "jobs" / job_id

    def _project(self, job: Job, touched: tuple[str, ...] | None) -> None:
        """Refresh the CandidateRun documents the API shows from the job's state."""
        candidates = job.state.get("candidates") or {}
        names = list(candidates) if touched is None else list(touched)
        for name in names:
            if name not in candidates:
                continue
            changes = project_candidate(candidates[name])
            try:
                try:
                    self.s.state.update_candidate_run(job.id, name, changes)
                except NotFound:
                    self.s.state.put_candidate_run(
                        CandidateRun(job_id=job.id, name=name, model_type=_model_type(job))
                    )
                    self.s.state.update_candidate_run(job.id, name, changes)
            except (StoreUnavailable, Conflict) as exc:  # the next step refreshes it again
                log.warning("candidate_projection_failed", candidate=name, error=str(exc))


def project_candidate(cand: Mapping[str, Any]) -> dict[str, Any]:
    """The CandidateRun fields for one candidate's workflow state."""
    dep = cand["deployment"]
    evaluations = []
    for item, w in cand["work"].items():
        if item == CUSTOMIZE:
            continue
        evaluations.append(
            {
                "eval_type": item,
                "status": w["status"],
                "handle": w["handle"],
                "started_at": _iso(w["started_at"]),
                "finished_at": _iso(w["finished_at"]),
                "runtime_seconds": _seconds(w["started_at"], w["finished_at"]),
                "progress": w["percent"],
                "scores": w.get("scores"),
                "error": w["error"],
            }
        )
    customization = None
    if CUSTOMIZE in cand["work"]:
        w = cand["work"][CUSTOMIZE]
        customization = {
            "status": w["status"],
            "handle": w["handle"],
            "started_at": _iso(w["started_at"]),
            "finished_at": _iso(w["finished_at"]),
            "runtime_seconds": _seconds(w["started_at"], w["finished_at"]),
            "progress": w["percent"],
            "details": w["details"],
            "error": w["error"],
        }
    return {
        "status": cand["status"],
        "deployment": {
            "status": dep["status"],
            "handle": dep["handle"],
            "gpus": cand["gpus"],
            "reason": cand["reason"],
            "started_at": _iso(dep["started_at"]),
            "ready_at": _iso(dep["ready_at"]),
            "error": dep["error"],
        },
        "evaluations": evaluations,
        "customization": customization,
        "error": cand["error"],
    }


class ArtifactsUnavailable(PlatformUnavailable):
    """The platform did not answer for some artifacts of a deleted job: retry those.

    Raised by :func:`delete_artifacts` only after every handle was attempted, so a retry
    with :attr:`left` redoes only what is left (every delete is idempotent: one that already
    took effect is success).
    """

    def __init__(self, message: str, left: list[dict[str, Any]], errors: list[str]) -> None:
        """``left``: the handles to retry; ``errors``: permanent failures (not retried)."""
        super().__init__(message)
        self.left = left
        self.errors = errors

    def __reduce__(self) -> tuple[Any, ...]:
        # Celery may pickle the exception of a retried task: keep every field.
        return (type(self), (str(self), self.left, self.errors))


def delete_artifacts(
    platform: ModelPlatform, handles: Iterable[Mapping[str, Any]], job_dir: Path | None
) -> list[str]:
    """Remove everything a finished job left: platform datasets, evaluations, customizations.

    Deployments are shut down again (idempotent) in case one was left behind. Returns the
    permanent errors (each names the handle); an empty list means everything is gone. The
    job's local files are removed once no handle is left to retry.

    Raises:
        ArtifactsUnavailable: the platform was unavailable for some handles (the others were
            deleted); retry with its ``left`` handles.
    """
    errors: list[str] = []
    left: list[dict[str, Any]] = []
    unavailable: list[str] = []
    for entry in handles:
        kind, handle = entry["kind"], entry["handle"]
        try:
            _delete_one(platform, kind, handle)
        except PlatformUnavailable as exc:
            left.append(dict(entry))
            unavailable.append(f"{kind} {handle}: {_describe(exc)}")
        except Exception as exc:
            errors.append(f"{kind} {handle}: {_describe(exc)}")
    if left:
        raise ArtifactsUnavailable(
            f"the platform was unavailable while deleting {len(left)} artifact(s): "
            + "; ".join(unavailable),
            left,
            errors,
        )
    if job_dir is not None and job_dir.exists():
        shutil.rmtree(job_dir, ignore_errors=True)
    return errors


CLEANUP_OWNER = "cleanup"
"""Owner (under the job) of the 0-GPU lease that keeps a pending cleanup in the sweep's view."""
CLEANUP_PENDING = "cleanup_pending"
"""State key of an ended job whose platform work could not all be stopped: the recovery
sweep retries the stops and keeps the job's GPU leases until they succeed."""
ARTIFACTS_LEFT_DIR = "artifacts_left"
"""Under the data dir: one JSON file per deleted job whose artifacts could not be deleted."""


def record_artifacts_left(
    data_dir: Path, *, job_id: str, handles: list[dict[str, Any]], errors: list[str]
) -> Path:
    """Add what a deleted job left on the platform to ``<data_dir>/artifacts_left/<job_id>.json``.

    The job document is gone by then, so this file is what names the leftovers once logs
    have rotated; repeated records for one job accumulate. Returns the file's path.
    """
    path = data_dir / ARTIFACTS_LEFT_DIR / f"{job_id}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    record: dict[str, Any] = {"job_id": job_id, "handles": [], "errors": []}
    if path.exists():
        record = orjson.loads(path.read_bytes())
    record["handles"] += handles
    record["errors"] += errors
    record["updated_at"] = _iso(now_ms())
    tmp = path.with_suffix(f".{uuid.uuid4().hex[:8]}.tmp")
    tmp.write_bytes(orjson.dumps(record, option=orjson.OPT_INDENT_2))
    tmp.replace(path)
    return path


def _delete_one(platform: ModelPlatform, kind: str, handle: Handle) -> None:
    if kind == "datasets":
        platform.delete_datasets(handle)
    elif kind == "evaluation":
        platform.delete_evaluation(handle)
    elif kind == "customization":
        platform.delete_customization(handle)
    elif kind in ("deployment", "judge"):
        platform.shutdown_deployment(handle)


@dataclass
class StopOutcome:
    """What :func:`stop_recorded_work` did."""

    stopped: list[dict[str, Any]] = field(default_factory=list)
    """``state.stopped`` entries of the handles stopped."""
    failed: list[str] = field(default_factory=list)
    """Permanent failures, each naming its handle (retrying would not help)."""
    unreachable: list[str] = field(default_factory=list)
    """Handles the platform did not answer for (``PlatformUnavailable``): try again later."""


def stop_recorded_work(
    platform: ModelPlatform, state: Mapping[str, Any], *, reason: str
) -> StopOutcome:
    """Stop every recorded handle of a job, unconditionally (each stop is idempotent).

    For the sweeper's last-resort failure of a job whose own steps never run: it cannot
    trust the state's statuses, so it stops everything the state names, each handle
    attempted whatever happened to the others.
    """
    outcome = StopOutcome()
    for kind, name, item, handle in iter_handles(state):
        if kind == "datasets":
            continue
        label = handle_label(kind, name, item)
        try:
            if kind in ("deployment", "judge"):
                platform.shutdown_deployment(handle)
            elif kind == "customization":
                platform.cancel_customization(handle)
            else:
                platform.cancel_evaluation(handle)
        except PlatformUnavailable as exc:
            outcome.unreachable.append(f"{label}: {_describe(exc)}")
            continue
        except Exception as exc:
            outcome.failed.append(f"{label}: {_describe(exc)}")
            continue
        outcome.stopped.append(_stopped(kind, name, item, handle, reason))
    return outcome


def mark_stopped(
    st: State, stopped: list[dict[str, Any]], *, at: int, cancelled: bool, reason: str
) -> None:
    """Write into a job's state that all its work was stopped and its leases released.

    Shared by ``stop_all`` and the sweeper's last-resort failure, so that both leave the
    same state: every candidate ended, nothing running, no lease held, ``stopped`` listed.
    """
    st["claim"] = None  # a claim left by a dead step: nothing will commit it now
    st.setdefault("stopped", []).extend(stopped)
    if st.get("judge"):
        j = st["judge"]
        j["lease"] = False
        if j["handle"] is not None:
            j.update(status=judge.J_SHUT_DOWN, shut_down_at=at)
    for c in st.get("candidates", {}).values():
        if c["deployment"]["handle"] is not None:
            c["deployment"]["status"] = "shut_down"
        c["lease"] = False
        for w in c["work"].values():
            if w["status"] in (engine.W_RUNNING, engine.W_WAITING):
                w.update(status=engine.W_CANCELLED, finished_at=at)
        if c["status"] not in engine.CANDIDATE_ENDED:
            c["status"] = engine.CANCELLED if cancelled else engine.FAILED
            c["finished_at"] = at
            if not cancelled:
                c["error"] = c["error"] or f"job failed: {reason}"


def recorded_handles(state: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Every handle in a job's state as ``{"kind", "candidate", "item", "handle"}`` dicts."""
    return [
        {"kind": kind, "candidate": name, "item": item, "handle": handle}
        for kind, name, item, handle in iter_handles(state)
    ]


# -- small helpers ---------------------------------------------------------------------------


def _describe(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text if len(text) <= 2000 else text[:2000] + "…"


def _best_effort(fn: Callable[[], None]) -> None:
    try:
        fn()
    except Exception as exc:
        log.warning("compensation_failed", error=_describe(exc))


def _name(action: Action) -> str:
    assert action.candidate is not None
    return action.candidate


def _item(action: Action) -> str:
    assert action.item is not None
    return action.item


def _eval_type(item: str) -> EvalType:
    if item == "base":
        return "base"
    if item == "icl":
        return "icl"
    if item == "customized":
        return "customized"
    raise ValueError(f"unknown evaluation {item!r}")


def _candidate(job: Job, name: str) -> CandidateModel:
    for c in job_config(job).candidates:
        if c.name == name:
            return c
    raise NotFound(f"candidate {name!r} is not in job {job.id}'s configuration")


def _model_type(job: Job) -> str:
    return "embedding" if job.job_type is JobType.embedding_job else "llm"


def _item_handle(state: Mapping[str, Any], name: str, item: str | None) -> Any:
    cand = state["candidates"][name]
    if item is None:
        return cand["deployment"]["handle"]
    return cand["work"][item]["handle"]


def _stopped(kind: str, name: str, item: str | None, handle: Any, reason: str) -> dict[str, Any]:
    return {
        "kind": kind,
        "candidate": name,
        "item": item,
        "handle": handle,
        "reason": reason,
        "at": _iso(now_ms()),
    }


def handle_label(kind: str, name: str, item: str | None) -> str:
    """``"deployment a"``, ``"evaluation a/base"``, ``"judge"``: a handle named for people."""
    return " ".join([kind, "/".join(x for x in (name, item) if x)]).strip()


def stop_summary(stopped: list[dict[str, Any]]) -> str:
    """``"1 deployment(s), 2 evaluation(s)"``: what a list of ``state.stopped`` entries stopped."""
    counts: dict[str, int] = {}
    for s in stopped:
        counts[s["kind"]] = counts.get(s["kind"], 0) + 1
    return ", ".join(f"{n} {kind}(s)" for kind, n in sorted(counts.items()))


def _seconds(start: int | None, end: int | None) -> float | None:
    if start is None or end is None:
        return None
    return round((end - start) / 1000, 3)


def _timings(state: Mapping[str, Any], now: int) -> dict[str, Any]:
    d = state["datasets"]
    candidates: dict[str, Any] = {}
    for name, c in state["candidates"].items():
        dep = c["deployment"]
        candidates[name] = {
            "deploy_s": _seconds(dep["started_at"], dep["ready_at"]),
            "total_s": _seconds(c["started_at"], c["finished_at"]),
            **{
                f"{item}_s": _seconds(w["started_at"], w["finished_at"])
                for item, w in c["work"].items()
            },
        }
    return {
        "datasets_build_s": d.get("build_seconds"),
        "datasets_s": _seconds(d["started_at"], d["uploaded_at"]),
        "total_s": _seconds(state["started_at"], now),
        "candidates": candidates,
    }
