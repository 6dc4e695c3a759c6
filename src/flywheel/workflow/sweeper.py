"""The periodic sweep: a killed worker costs a delay, never a job.

Run every ``sweep_interval_s`` (Celery beat task ``flywheel.sweep``; any number of
concurrent sweeps is harmless, every effect is idempotent or compare-and-set):

* an active job whose last step is older than ``stale_after_s`` gets its next step
  enqueued again (the lost message, the killed worker, the broker that was down);
* a running job that made no progress for longer than its current stage's timeout plus
  ``stuck_grace_s`` is aborted with a reason: its next step stops its platform work and
  fails it; if even that never runs, the next sweep fails it directly, naming what it may
  have left running (and enqueues it once more, so its completion webhook is sent);
* GPU leases whose job ended or vanished are released.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import structlog

from flywheel.config.schema import JobConfig
from flywheel.domain.jobs import TERMINAL_STATUSES, Job, JobId, JobStatus, utcnow
from flywheel.errors import Conflict, NotFound
from flywheel.stores.base import StateStore
from flywheel.workflow.capacity import CapacityLedger
from flywheel.workflow.engine import iter_handles, stage_name
from flywheel.workflow.options import WorkflowOptions

log = structlog.get_logger(__name__)


@dataclass
class SweepReport:
    """What one sweep did."""

    enqueued: list[str] = field(default_factory=list)
    aborted: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    released: list[str] = field(default_factory=list)

    @property
    def touched(self) -> bool:
        """True when the sweep changed or enqueued anything."""
        return bool(self.enqueued or self.aborted or self.failed or self.released)

    def as_dict(self) -> dict[str, Any]:
        """For logging."""
        return {
            "enqueued": self.enqueued,
            "aborted": self.aborted,
            "failed": self.failed,
            "released": self.released,
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
    options: WorkflowOptions,
    enqueue: Callable[[JobId], None],
    now_ms: int,
) -> SweepReport:
    """One pass over active jobs and GPU leases (see the module docstring)."""
    report = SweepReport()
    for job in _active_jobs(state):
        try:
            _sweep_job(state, job, options, enqueue, now_ms, report)
        except Exception as exc:  # one broken job must not stop the sweep of the others
            log.warning("sweep_job_failed", job_id=job.id, error=str(exc), exc_info=True)
    _release_orphan_leases(state, capacity, report)
    return report


def _sweep_job(
    state: StateStore,
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
                _fail(state, job, report)
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


def _fail(state: StateStore, job: Job, report: SweepReport) -> None:
    left = sorted(
        f"{kind} {name} {item or ''}".strip() for kind, name, item, _ in iter_handles(job.state)
    )
    state.update_job(
        job.id,
        {
            "status": JobStatus.failed,
            "finished_at": utcnow(),
            "error": f"{job.state.get('abort')}; cleanup never ran, platform work may remain: "
            f"{left}",
        },
        expect_version=job.version,
    )
    report.failed.append(job.id)


def _release_orphan_leases(
    state: StateStore, capacity: CapacityLedger, report: SweepReport
) -> None:
    for owner in capacity.leases():
        job_id = owner.split("/", 1)[0]
        try:
            job = state.get_job(JobId(job_id))
        except NotFound:
            job = None
        if job is None or job.status in TERMINAL_STATUSES:
            capacity.release(owner)
            report.released.append(owner)
