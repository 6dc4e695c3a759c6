"""Logging an ended job to MLflow once, with the outcome recorded on the job.

Called by the completion task (:func:`flywheel.workflow.notify.notify`) before the webhook.
The record lives in ``Job.state["tracking"]``: ``sending`` (a claim with a lease),
then ``logged`` (with the MLflow ``run_id``) or ``failed`` (with the error).
"""

from __future__ import annotations

import copy
import uuid
from collections.abc import Callable
from typing import Any

import structlog

from flywheel.domain.jobs import Job
from flywheel.errors import Conflict, NotFound, StoreUnavailable
from flywheel.logging import redact_url
from flywheel.services.jobs import JobDetail
from flywheel.stores.base import StateStore

log = structlog.get_logger(__name__)

TRACKED, FAILED, SENDING = "logged", "failed", "sending"


def track(
    state: StateStore,
    job: Job,
    *,
    tracking_uri: str,
    experiment_name: str,
    now_ms: Callable[[], int],
) -> Job:
    """Log ``job`` to MLflow unless done (or given up on); record it in ``state["tracking"]``.

    Never fails the job: an unreachable MLflow, or mlflow not installed, is logged, recorded
    (``status: failed`` with the error) and added to ``Job.warnings``, as a failed webhook is.
    Like the webhook, a task first claims the record (``status: sending`` with a lease), so
    two concurrent tasks do not both log; the MLflow side is idempotent too (see
    :mod:`flywheel.tracking.mlflow`), so a task redelivered after logging but before
    recording logs nothing twice. Returns the job as it is afterwards.

    Raises:
        StoreUnavailable: the state store failed (the task retries).
    """
    record = (job.state or {}).get("tracking") or {}
    if record.get("status") in (TRACKED, FAILED):
        return job
    now = now_ms()
    if record.get("status") == SENDING and int(record.get("until") or 0) > now:
        return job  # another task is logging it right now
    where = redact_url(tracking_uri)
    token = uuid.uuid4().hex
    claim = {"status": SENDING, "uri": where, "token": token, "until": now + TRACKING_LEASE_MS}
    try:
        job = _set_tracking(state, job, claim, None)
    except (Conflict, NotFound):
        return _current(state, job)  # a concurrent task claimed it (or the job is gone)

    outcome: dict[str, Any] = {"uri": where, "experiment": experiment_name, "token": token}
    warning = None
    try:
        from flywheel.tracking.mlflow import MlflowTracker

        detail = JobDetail(job=job, candidates=state.list_candidate_runs(job.id))
        tracker = MlflowTracker(tracking_uri, experiment_name)
        outcome |= {"status": TRACKED, "run_id": tracker.log_job(detail)}
        log.info("mlflow_tracked", job_id=job.id, run_id=outcome["run_id"], uri=where)
    except StoreUnavailable:
        raise
    except Exception as exc:
        # The exception may quote the URL with its credentials: mask them.
        error = redact_url(f"MLflow tracking at {where} failed: {type(exc).__name__}: {exc}")
        error = error[:1000]
        log.warning("mlflow_tracking_failed", job_id=job.id, uri=where, error=error)
        outcome |= {"status": FAILED, "error": error}
        warning = error
    outcome["at"] = now_ms()
    for _ in range(5):
        try:
            current = state.get_job(job.id)
        except NotFound:
            return job
        if ((current.state or {}).get("tracking") or {}).get("token") != token:
            log.info("mlflow_tracking_claim_taken_over")
            return current
        try:
            return _set_tracking(state, current, outcome, warning)
        except NotFound:
            return current
        except Conflict:
            continue
    log.warning("mlflow_tracking_outcome_not_recorded", **outcome)
    return _current(state, job)


TRACKING_LEASE_MS = 15 * 60 * 1000
"""How long a tracking claim holds: longer than MLflow's client retries by default."""


def _set_tracking(state: StateStore, job: Job, record: dict[str, Any], warning: str | None) -> Job:
    new_state = copy.deepcopy(job.state or {})
    new_state["tracking"] = record
    changes: dict[str, Any] = {"state": new_state}
    if warning is not None:
        changes["warnings"] = [*job.warnings, warning]
    return state.update_job(job.id, changes, expect_version=job.version, expect_status=[job.status])


def _current(state: StateStore, job: Job) -> Job:
    try:
        return state.get_job(job.id)
    except NotFound:
        return job
