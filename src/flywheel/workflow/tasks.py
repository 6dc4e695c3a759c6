"""The Celery tasks: thin wrappers that hand ids to the step runner.

``flywheel.notify`` posts an ended job's summary to its completion webhook
(:mod:`.notify`); ``advance`` sends it when a step finds the job ended and not yet notified.

Arguments are ids only (``delete_artifacts`` also takes the platform handles, because the
job document is deleted right after the request). Every task is idempotent and
acknowledged late; nothing here waits on another task.

``delete_artifacts`` rides out a platform outage: each retry (``retry_backoff_s`` doubling
up to ``ARTIFACT_RETRY_MAX_BACKOFF_S``, at most ``ARTIFACT_DELETE_RETRIES`` times) carries
only the handles still left. Past that, what is left is logged at error level
(``artifacts_left``) and written to ``$FLYWHEEL_DATA_DIR/artifacts_left/<job_id>.json``,
since the job document that named them is gone.

A state store that does not answer (``StoreUnavailable``) is ridden out by retrying the
task itself with capped exponential backoff (``FLYWHEEL_WORKFLOW_STORE_RETRY_BACKOFF_S``
doubling up to ``STORE_RETRY_MAX_BACKOFF_S``) until the delays add up to
``STORE_OUTAGE_RIDE_OUT_S`` (120 s): a job resumes within a few seconds of the store's
return instead of waiting for the recovery sweep, which remains the net for longer outages.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import structlog
from celery import Task
from celery.exceptions import Retry

from flywheel.domain.jobs import JobId
from flywheel.errors import StoreUnavailable
from flywheel.settings import get_settings
from flywheel.workflow import runtime
from flywheel.workflow.celery_app import (
    ADVANCE_TASK,
    DELETE_ARTIFACTS_TASK,
    NOTIFY_TASK,
    SWEEP_TASK,
    app,
)
from flywheel.workflow.notify import notify as notify_once
from flywheel.workflow.steps import (
    ArtifactsUnavailable,
    Next,
    delete_artifacts,
    record_artifacts_left,
)
from flywheel.workflow.sweeper import sweep as sweep_once

log = structlog.get_logger(__name__)

#: Acknowledged only when done and redelivered if the worker dies; a transient failure
#: (the exception named per task) is retried with backoff a bounded number of times
#: (state-store outages: see :func:`_ride_out`).
_AT_LEAST_ONCE: dict[str, object] = {
    "bind": True,
    "acks_late": True,
    "reject_on_worker_lost": True,
    "ignore_result": True,
    "retry_backoff": True,
    "max_retries": 5,
}

ARTIFACT_DELETE_RETRIES = 8
"""Retries of ``delete_artifacts`` through a platform outage (about 8.5 minutes by default)."""
ARTIFACT_RETRY_MAX_BACKOFF_S = 300.0
"""Longest delay between two of those retries."""


def _ride_out(task: Task, exc: StoreUnavailable) -> Retry:
    """Retry ``task`` after the next capped backoff of a state-store outage.

    Returns the ``Retry`` to raise; re-raises ``exc`` once the ride-out budget is spent (the
    job is then left to the recovery sweep).
    """
    retries = int(task.request.retries)
    delay = runtime.options().store_retry_delay(retries)
    if delay is None:
        log.warning("state_store_outage_gave_up", retries=retries, error=str(exc))
        raise exc
    log.info("state_store_outage_retry", retry=retries + 1, countdown_s=delay, error=str(exc))
    # max_retries: our budget decides when to stop, not Celery's count.
    retry: Retry = task.retry(exc=exc, countdown=delay, max_retries=retries + 1)
    return retry


@app.task(name=ADVANCE_TASK, **_AT_LEAST_ONCE)  # type: ignore[untyped-decorator]
def advance(self: Task, job_id: str) -> None:
    """Do the next step of one job and schedule the one after it."""
    with structlog.contextvars.bound_contextvars(job_id=job_id, task_id=self.request.id):
        try:
            step = runtime.runner().advance(JobId(job_id), task_id=self.request.id)
        except StoreUnavailable as exc:
            raise _ride_out(self, exc) from exc
        if step.wait_s is not None:
            schedule(job_id, step)
        elif step.notify:
            notify.apply_async((job_id,), queue=runtime.options().steps_queue)


def schedule(job_id: str, step: Next) -> None:
    """Enqueue the next step of ``job_id`` (after its countdown, on its queue)."""
    options = runtime.options()
    advance.apply_async(
        (job_id,),
        countdown=step.wait_s or None,
        queue=options.long_queue if step.long else options.steps_queue,
    )


@app.task(name=SWEEP_TASK, ignore_result=True)  # type: ignore[untyped-decorator]
def sweep() -> None:
    """Re-enqueue stalled jobs, fail stuck ones, release leaked GPU leases."""
    services = runtime.services()
    report = sweep_once(
        state=services.state,
        capacity=services.capacity,
        platform=services.platform,
        options=services.options,
        enqueue=lambda job_id: schedule(job_id, Next(0.0)),
        now_ms=services.clock(),
    )
    if report.touched:
        log.info("workflow_sweep", **report.as_dict())


@app.task(  # type: ignore[untyped-decorator]
    name=DELETE_ARTIFACTS_TASK, **{**_AT_LEAST_ONCE, "max_retries": ARTIFACT_DELETE_RETRIES}
)
def delete_job_artifacts(self: Task, job_id: str, handles: list[dict[str, Any]]) -> None:
    """Remove a deleted job's platform artifacts and local files."""
    services = runtime.services()
    job_dir: Path = services.data_dir / "jobs" / job_id
    with structlog.contextvars.bound_contextvars(job_id=job_id, task_id=self.request.id):
        left: list[dict[str, Any]] = []
        try:
            errors = delete_artifacts(services.platform, handles, job_dir)
        except ArtifactsUnavailable as exc:
            if int(self.request.retries) < int(self.max_retries):
                # Permanent failures are not retried: report them now, retry the rest.
                _report_left(services.data_dir, job_id, [], exc.errors)
                raise _retry_deletion(self, job_id, exc) from exc
            shutil.rmtree(job_dir, ignore_errors=True)  # the platform's part is what is left
            errors, left = [*exc.errors, str(exc)], exc.left
        _report_left(services.data_dir, job_id, left, errors)


def _report_left(
    data_dir: Path, job_id: str, handles: list[dict[str, Any]], errors: list[str]
) -> None:
    """Leave a trace that outlives the deleted job document: an error log and a file."""
    if not errors:
        return
    where = record_artifacts_left(data_dir, job_id=job_id, handles=handles, errors=errors)
    log.error(
        "artifacts_left",
        job_id=job_id,
        handles=handles,
        errors=errors,
        record=str(where),
        fix="delete them on the platform by hand (each is tagged with the job id)",
    )


def _retry_deletion(task: Task, job_id: str, exc: ArtifactsUnavailable) -> Retry:
    """Retry ``delete_artifacts`` with only the handles left, after a doubling backoff."""
    retries = int(task.request.retries)
    delay = min(
        runtime.options().retry_backoff_s * 2 ** min(retries, 30), ARTIFACT_RETRY_MAX_BACKOFF_S
    )
    log.warning(
        "artifacts_delete_retry",
        retry=retries + 1,
        countdown_s=delay,
        left=len(exc.left),
        error=str(exc),
    )
    retry: Retry = task.retry(args=(job_id, exc.left), exc=exc, countdown=delay)
    return retry


@app.task(name=NOTIFY_TASK, **_AT_LEAST_ONCE)  # type: ignore[untyped-decorator]
def notify(self: Task, job_id: str) -> None:
    """POST an ended job's signed summary to its webhook, once; record the outcome on the job."""
    services = runtime.services()
    settings = get_settings()
    with structlog.contextvars.bound_contextvars(job_id=job_id, task_id=self.request.id):
        try:
            notify_once(
                services.state,
                JobId(job_id),
                options=services.options,
                now_ms=services.clock,
                default_url=settings.job_webhook_url,
                default_secret_env=settings.job_webhook_secret_env,
                mlflow_tracking_uri=settings.mlflow_tracking_uri,
                mlflow_experiment_name=settings.mlflow_experiment_name,
            )
        except StoreUnavailable as exc:
            raise _ride_out(self, exc) from exc
