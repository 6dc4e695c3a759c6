"""The periodic sweep: a killed worker costs a delay, never a job.

Run every ``sweep_interval_s`` (Celery beat task ``flywheel.sweep``; any number of
concurrent sweeps is harmless, every effect is idempotent or compare-and-set):

* an active job whose last step is older than ``stale_after_s`` gets its next step
  enqueued again (the lost message, the killed worker, the broker that was down);
* a running job that made no progress for longer than its current stage's timeout plus
  ``stuck_grace_s`` is aborted with a reason: its next step stops its platform work and
  fails it; if even that never runs, a later sweep stops the work itself (every recorded
  handle, then ``platform.release_job``) and fails the job, naming what it stopped (and
  enqueues it once more, so its completion webhook is sent). While the platform cannot be
  reached the job is left as it is, GPU leases included, and the next sweep tries again:
  freeing the leases of deployments that may still run would over-commit the GPU budget;
* GPU leases whose job ended or vanished are released (after the stops above). A job that
  ended with its cleanup unfinished (``state.cleanup_pending``: the stop step ran out of
  retries) keeps its leases until a sweep has stopped its work and released it on the
  platform.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import structlog

from flywheel.config.schema import JobConfig
from flywheel.domain.jobs import TERMINAL_STATUSES, Job, JobId, JobStatus, utcnow
from flywheel.errors import Conflict, NotFound, PlatformError, PlatformUnavailable, StoreUnavailable
from flywheel.platforms.base import ModelPlatform
from flywheel.stores.base import StateStore
from flywheel.workflow.capacity import CapacityLedger
from flywheel.workflow.engine import stage_name
from flywheel.workflow.options import WorkflowOptions
from flywheel.workflow.steps import (
    CLEANUP_PENDING,
    handle_label,
    mark_stopped,
    project_candidate,
    stop_recorded_work,
)

log = structlog.get_logger(__name__)


@dataclass
class SweepReport:
    """What one sweep did."""

    enqueued: list[str] = field(default_factory=list)
    aborted: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    released: list[str] = field(default_factory=list)
    unreachable: list[str] = field(default_factory=list)
    """Jobs to fail whose platform work could not be stopped (platform unavailable): the
    next sweep tries again; their leases are kept meanwhile."""

    @property
    def touched(self) -> bool:
        """True when the sweep changed or enqueued anything."""
        return bool(
            self.enqueued or self.aborted or self.failed or self.released or self.unreachable
        )

    def as_dict(self) -> dict[str, Any]:
        """For logging."""
        return {
            "enqueued": self.enqueued,
            "aborted": self.aborted,
            "failed": self.failed,
            "released": self.released,
            "unreachable": self.unreachable,
        }


def _active_jobs(state: StateStore) -> Iterator[Job]:
    for status in (JobStatus.pending, JobStatus.running, JobStatus.cancelling):
        cursor: str | None = None
        while True:
            page = state.list_jobs(status=status, limit=200, cursor=cursor)
            yield from page.items
            if page.next_cursor is None:
                break
            cursor = page.next_cursor


def _last_step_ms(job: Job) -> int:
    last = job.state.get("last_step_at")
    if isinstance(last, int):
        return last
    return int(job.updated_at.timestamp() * 1000)


def stage_timeout_s(job: Job) -> int:
    """The timeout of the stage ``job`` is in (the longest one while candidates work)."""
    timeouts = JobConfig.model_validate(job.config).timeouts
    stage = stage_name(job.state)
    if stage == "datasets":
        return timeouts.datasets
    if stage in ("deploying", "judge"):
        return timeouts.deployment
    return max(timeouts.evaluation, timeouts.customization, timeouts.deployment)


def sweep(
    *,
    state: StateStore,
    capacity: CapacityLedger,
    platform: ModelPlatform,
    options: WorkflowOptions,
    enqueue: Callable[[JobId], None],
    now_ms: int,
) -> SweepReport:
    """One pass over active jobs and GPU leases (see the module docstring)."""
    report = SweepReport()
    for job in _active_jobs(state):
        try:
            _sweep_job(state, platform, job, options, enqueue, now_ms, report)
        except Exception as exc:  # one broken job must not stop the sweep of the others
            log.warning("sweep_job_failed", job_id=job.id, error=str(exc), exc_info=True)
    _release_orphan_leases(state, capacity, platform, report, now_ms)
    return report


def _sweep_job(
    state: StateStore,
    platform: ModelPlatform,
    job: Job,
    options: WorkflowOptions,
    enqueue: Callable[[JobId], None],
    now_ms: int,
    report: SweepReport,
) -> None:
    stale_ms = int(options.stale_after_s * 1000)
    grace_ms = int(options.stuck_grace_s * 1000)
    idle = now_ms - _last_step_ms(job)
    if idle <= stale_ms:
        return
    if job.status is JobStatus.running:
        limit = stage_timeout_s(job) * 1000 + grace_ms
        abort_at = job.state.get("abort_at")
        try:
            if isinstance(abort_at, int) and now_ms - abort_at > grace_ms:
                _fail(state, platform, job, now_ms, report)
                # Fall through: the step that finds it ended sends its completion webhook.
            if abort_at is None and idle > limit:
                _abort(state, job, idle, now_ms, report)
        except (Conflict, NotFound):
            return  # it moved meanwhile: it is not stuck
    try:
        enqueue(job.id)
        report.enqueued.append(job.id)
    except Exception as exc:  # broker down: the next sweep tries again
        log.warning("sweep_enqueue_failed", job_id=job.id, error=str(exc))


def _abort(state: StateStore, job: Job, idle_ms: int, now_ms: int, report: SweepReport) -> None:
    reason = (
        f"no progress for {idle_ms // 1000} s in stage {stage_name(job.state)!r} (beyond its "
        "timeout); workers may be crashing on this job"
    )
    new_state = {**job.state, "abort": reason, "abort_at": now_ms}
    state.update_job(job.id, {"state": new_state}, expect_version=job.version)
    report.aborted.append(job.id)


def _fail(
    state: StateStore, platform: ModelPlatform, job: Job, now_ms: int, report: SweepReport
) -> None:
    """Fail a job whose abort never ran, after stopping its platform work ourselves.

    A platform that cannot be reached leaves the job running (its leases held) with the
    attempt recorded in ``state.abort_cleanup``; the next sweep tries again.
    """
    reason = str(job.state.get("abort") or "aborted by the sweep")
    outcome = stop_recorded_work(platform, job.state, reason=reason)
    leftovers: list[str] = []
    try:
        if not outcome.unreachable:  # else the next sweep asks, once it answers again
            leftovers = platform.release_job(job.id)
    except PlatformUnavailable as exc:
        outcome.unreachable.append(f"release_job: {exc}")
    except PlatformError as exc:
        outcome.failed.append(f"release_job: {exc}")
    if outcome.unreachable:
        _note_unreachable(state, job, outcome.unreachable, now_ms)
        report.unreachable.append(job.id)
        return
    stopped = [handle_label(s["kind"], s["candidate"], s["item"]) for s in outcome.stopped]
    error = f"{reason}; its steps never ran, so the sweep stopped its platform work: " + (
        ", ".join(stopped) or "nothing was recorded"
    )
    if leftovers:
        error += f"; and work whose start answer was lost: {', '.join(leftovers)}"
    if outcome.failed:
        error += f"; could not stop, may still be running: {'; '.join(outcome.failed)}"
    new_state = copy.deepcopy(job.state)
    mark_stopped(new_state, outcome.stopped, at=now_ms, cancelled=False, reason=reason)
    failed = state.update_job(
        job.id,
        {
            "status": JobStatus.failed,
            "finished_at": utcnow(),
            "error": error,
            "stage": JobStatus.failed.value,
            "state": new_state,
        },
        expect_version=job.version,
    )
    report.failed.append(job.id)
    _project(state, failed)


def _note_unreachable(state: StateStore, job: Job, unreachable: list[str], now_ms: int) -> None:
    previous = job.state.get("abort_cleanup") or {}
    attempts = int(previous.get("attempts") or 0) + 1
    log.warning(
        "sweep_cleanup_unreachable", job_id=job.id, attempt=attempts, unreachable=unreachable
    )
    note = {"attempts": attempts, "at": now_ms, "unreachable": unreachable}
    state.update_job(
        job.id, {"state": {**job.state, "abort_cleanup": note}}, expect_version=job.version
    )


def _project(state: StateStore, job: Job) -> None:
    """Show the candidates' final state on their CandidateRun documents (best effort)."""
    for name, cand in (job.state.get("candidates") or {}).items():
        try:
            state.update_candidate_run(job.id, name, project_candidate(cand))
        except (NotFound, Conflict, StoreUnavailable) as exc:
            log.warning("sweep_projection_failed", job_id=job.id, candidate=name, error=str(exc))


def _release_orphan_leases(
    state: StateStore,
    capacity: CapacityLedger,
    platform: ModelPlatform,
    report: SweepReport,
    now_ms: int,
) -> None:
    cleaned: dict[str, bool] = {}  # job id -> its pending cleanup is done (once per sweep)
    for owner in capacity.leases():
        job_id = owner.split("/", 1)[0]
        try:
            job = state.get_job(JobId(job_id))
        except NotFound:
            job = None
        if job is not None and job.status not in TERMINAL_STATUSES:
            continue
        if job is not None and job.state.get(CLEANUP_PENDING):
            if job_id not in cleaned:
                try:
                    cleaned[job_id] = _finish_cleanup(state, platform, job, now_ms, report)
                except Exception as exc:  # one job's cleanup must not block every other lease
                    log.warning("sweep_cleanup_error", job_id=job_id, error=str(exc), exc_info=True)
                    cleaned[job_id] = False
            if not cleaned[job_id]:
                continue  # its deployments may still hold the GPUs
        capacity.release(owner)
        report.released.append(owner)


CLEANUP_MAX_ATTEMPTS = 30
"""Sweeps that retry a pending cleanup the platform refuses outright (not one it cannot be
reached for: that is retried for as long as it lasts) before its leases are let go."""


def _finish_cleanup(
    state: StateStore, platform: ModelPlatform, job: Job, now_ms: int, report: SweepReport
) -> bool:
    """Stop what an ended job's own stop step could not; True once nothing is left.

    Every recorded handle is stopped again (each stop is idempotent), then the platform
    releases whatever else it holds for the job. Until that succeeds the attempt is
    recorded on the job and its leases stay, so the GPU budget is never over-committed.
    """
    reason = "cleanup finished by the recovery sweep"
    outcome = stop_recorded_work(platform, job.state, reason=reason)
    leftovers: list[str] = []
    if not outcome.unreachable and not outcome.failed:
        try:
            leftovers = platform.release_job(job.id)
        except PlatformUnavailable as exc:
            outcome.unreachable.append(f"release_job: {exc}")
        except PlatformError as exc:
            outcome.failed.append(f"release_job: {exc}")
    problems = [*outcome.unreachable, *outcome.failed]
    pending = dict(job.state[CLEANUP_PENDING])
    attempts = int(pending.get("attempts") or 0) + 1
    if problems and attempts > CLEANUP_MAX_ATTEMPTS and not outcome.unreachable:
        # Permanent refusals only (the platform answers, and says no): waiting longer cannot
        # help, so the leases go and the job says what may still run.
        log.error("sweep_cleanup_given_up", job_id=job.id, attempts=attempts, left=problems)
        leftovers, problems = [f"given up after {attempts - 1} attempts: {'; '.join(problems)}"], []
    try:
        if problems:
            pending.update(attempts=attempts, at=now_ms, left=problems)
            log.warning("sweep_cleanup_pending", job_id=job.id, attempt=pending["attempts"],
                        left=problems)  # fmt: skip
            state.update_job(
                job.id,
                {"state": {**job.state, CLEANUP_PENDING: pending}},
                expect_version=job.version,
            )
            report.unreachable.append(job.id)
            return False
        new_state = {k: v for k, v in job.state.items() if k != CLEANUP_PENDING}
        done = [handle_label(s["kind"], s["candidate"], s["item"]) for s in outcome.stopped]
        note = f"{reason}: {', '.join([*done, *leftovers]) or 'nothing was left running'}"
        state.update_job(
            job.id,
            {"state": new_state, "warnings": [*job.warnings, note]},
            expect_version=job.version,
        )
    except (Conflict, NotFound):
        return False  # it moved meanwhile: the next sweep looks again
    log.info("sweep_cleanup_finished", job_id=job.id, stopped=done, leftovers=leftovers)
    return True
