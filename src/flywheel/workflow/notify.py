"""The completion webhook: a signed POST with a job's summary once the job has ended.

Sent by its own short task (``flywheel.notify``) *after* the step that ended the job
committed, never inside that step's compare-and-set write: a slow or broken receiver can
delay nothing and fail nothing. The signing and the retries with backoff are
:class:`~flywheel.services.webhooks.WebhookSender`'s (the promotion webhook's).

Where to: the job configuration's ``notification.webhook_url`` (with its ``secret_env``),
else the settings' ``FLYWHEEL_JOB_WEBHOOK_URL`` (with ``FLYWHEEL_JOB_WEBHOOK_SECRET_ENV``).
A secret is always taken together with its URL, so a configuration cannot have the
operator's secret sign messages to a URL of its own choosing.

Exactly-once as far as the receiver can tell: before sending, the task claims the job's
``state["notification"]`` with a compare-and-set write (``status: sending`` with a lease);
a redelivered or duplicate task finds ``sent`` (or ``failed``, or a live claim) and does
nothing. The outcome is recorded there (``status``, ``attempts``, ``status_code``,
``error``, ``at``); a failure also adds a line to ``Job.warnings``. The job's status never
changes.

MLflow tracking (``MLFLOW_TRACKING_URI``) hooks in here too, before the webhook: see
:func:`flywheel.tracking.record.track`, recorded in ``state["tracking"]``.
"""

from __future__ import annotations

import copy
import os
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import structlog

from flywheel.domain.jobs import TERMINAL_STATUSES, Job, JobId
from flywheel.errors import Conflict, NotFound
from flywheel.services.webhooks import Delivery, WebhookSender, safe_url
from flywheel.stores.base import StateStore
from flywheel.tracking.record import track
from flywheel.workflow.options import WorkflowOptions

log = structlog.get_logger(__name__)

EVENT = "job.finished"
"""The ``X-Flywheel-Event`` (and body ``event``) of the completion webhook."""

SENT, FAILED, SENDING = "sent", "failed", "sending"
_HEADLINE_METRICS = (
    "function_name_and_args_accuracy",
    "function_name_accuracy",
    "ndcg@10",
    "similarity",
)


@dataclass(frozen=True, slots=True)
class Target:
    """Where one job's completion is posted, and the name of its secret's env var."""

    url: str
    secret_env: str | None


def target(job: Job, *, default_url: str | None, default_secret_env: str | None) -> Target | None:
    """The job's webhook: its configuration's, else the settings' default (None: none)."""
    notification = (job.config or {}).get("notification") or {}
    url = notification.get("webhook_url")
    if url:
        return Target(url=str(url), secret_env=notification.get("secret_env") or None)
    if default_url:
        return Target(url=default_url, secret_env=default_secret_env or None)
    return None


def pending(job: Job) -> bool:
    """True when ``job`` ended and its completion has not been notified (nor given up on)."""
    if job.status not in TERMINAL_STATUSES:
        return False
    record = (job.state or {}).get("notification") or {}
    return record.get("status") not in (SENT, FAILED)


def _headline(scores: Mapping[str, Any], preferred: str | None) -> dict[str, Any] | None:
    names = [preferred] if preferred else []
    names += [*_HEADLINE_METRICS, *sorted(scores)]
    for name in names:
        value = scores.get(name) if name else None
        if isinstance(value, Mapping) and isinstance(value.get("value"), int | float):
            return {
                "metric": name,
                "value": value["value"],
                "ci_low": value.get("ci_low"),
                "ci_high": value.get("ci_high"),
            }
    return None


def summary(job: Job) -> dict[str, Any]:
    """The webhook's payload: what ended, how, how long it took, and what it recommends."""
    state = job.state or {}
    rec = job.recommendation or {}
    metric = rec.get("metric") if isinstance(rec.get("metric"), str) else None
    candidates: dict[str, Any] = {}
    for name, cand in (state.get("candidates") or {}).items():
        evaluations = {}
        for item, work in (cand.get("work") or {}).items():
            if item == "customize":
                continue
            evaluations[item] = {
                "status": work.get("status"),
                "headline": _headline(work.get("scores") or {}, metric),
            }
        candidates[name] = {
            "status": cand.get("status"),
            "error": cand.get("error"),
            "evaluations": evaluations,
        }
    started, finished = job.started_at, job.finished_at
    return {
        "job": {
            "id": job.id,
            "client_id": job.client_id,
            "workload_id": job.workload_id,
            "job_type": job.job_type.value,
            "status": job.status.value,
            "error": job.error,
            "warnings": len(job.warnings),
            "config_name": job.config_name,
            "config_version": job.config_version,
        },
        "timings": {
            "created_at": job.created_at.isoformat(),
            "started_at": started.isoformat() if started else None,
            "finished_at": finished.isoformat() if finished else None,
            "duration_s": round((finished - started).total_seconds(), 3)
            if started and finished
            else None,
            "stages": state.get("timings"),
        },
        "recommendation": {
            "best": rec.get("best"),
            "metric": metric,
            "ranked": [r.get("name") for r in rec.get("ranked") or [] if isinstance(r, Mapping)],
            "rejected": [
                r.get("name") for r in rec.get("rejected") or [] if isinstance(r, Mapping)
            ],
        }
        if rec
        else None,
        "candidates": candidates,
    }


Sender = Callable[[Target, str | None], WebhookSender]


def default_sender(options: WorkflowOptions) -> Sender:
    """Build :class:`WebhookSender` s with the options' retry policy."""

    def build(where: Target, secret: str | None) -> WebhookSender:
        return WebhookSender(
            url=where.url,
            secret=secret,
            attempts=options.notify_attempts,
            timeout_s=options.notify_timeout_s,
            backoff_s=options.notify_backoff_s,
            max_backoff_s=options.notify_max_backoff_s,
            label="job webhook",
        )

    return build


def _lease_ms(options: WorkflowOptions) -> int:
    worst = options.notify_attempts * (options.notify_timeout_s + options.notify_max_backoff_s)
    return int((worst + 30) * 1000)


def notify(
    state: StateStore,
    job_id: JobId,
    *,
    options: WorkflowOptions,
    now_ms: Callable[[], int],
    default_url: str | None = None,
    default_secret_env: str | None = None,
    sender: Sender | None = None,
    mlflow_tracking_uri: str | None = None,
    mlflow_experiment_name: str = "flywheel",
) -> str | None:
    """Post ``job_id``'s summary once; record the outcome. Returns it (None: nothing to do).

    First, when ``mlflow_tracking_uri`` is given, log the ended job to MLflow once
    (:func:`~flywheel.tracking.record.track`); its outcome is recorded apart from the
    webhook's. Every line logged meanwhile carries ``job_id`` and ``stage=notify``.
    """
    with structlog.contextvars.bound_contextvars(job_id=job_id, stage="notify"):
        return _notify(
            state,
            job_id,
            options=options,
            now_ms=now_ms,
            default_url=default_url,
            default_secret_env=default_secret_env,
            sender=sender,
            mlflow_tracking_uri=mlflow_tracking_uri,
            mlflow_experiment_name=mlflow_experiment_name,
        )


def _notify(
    state: StateStore,
    job_id: JobId,
    *,
    options: WorkflowOptions,
    now_ms: Callable[[], int],
    default_url: str | None,
    default_secret_env: str | None,
    sender: Sender | None,
    mlflow_tracking_uri: str | None,
    mlflow_experiment_name: str,
) -> str | None:
    try:
        job = state.get_job(job_id)
    except NotFound:
        return None
    if mlflow_tracking_uri and job.status in TERMINAL_STATUSES:
        job = track(
            state,
            job,
            tracking_uri=mlflow_tracking_uri,
            experiment_name=mlflow_experiment_name,
            now_ms=now_ms,
        )
    if not pending(job):
        return None
    where = target(job, default_url=default_url, default_secret_env=default_secret_env)
    if where is None:
        return None
    record = (job.state or {}).get("notification") or {}
    now = now_ms()
    if record.get("status") == SENDING and int(record.get("until") or 0) > now:
        return None  # another task is sending it right now
    token = uuid.uuid4().hex
    attempts_before = int(record.get("attempts") or 0)
    claim = {
        "status": SENDING,
        "url": safe_url(where.url),
        "token": token,
        "until": now + _lease_ms(options),
        "attempts": attempts_before,
    }
    try:
        job = _write(state, job, claim)
    except (Conflict, NotFound):
        return None  # a concurrent task claimed it (or the job is gone)

    if where.secret_env and not os.environ.get(where.secret_env):
        delivery = Delivery(
            url=safe_url(where.url),
            delivered=False,
            attempts=0,
            error=f"job webhook not sent: the secret's env var {where.secret_env} is not set",
        )
        log.warning("job_webhook_failed", job_id=job_id, **delivery.to_dict())
    else:
        secret = os.environ.get(where.secret_env) if where.secret_env else None
        build = sender or default_sender(options)
        delivery = build(where, secret).send(EVENT, summary(job))
    outcome = {
        "status": SENT if delivery.delivered else FAILED,
        "url": delivery.url,
        "attempts": attempts_before + delivery.attempts,
        "status_code": delivery.status_code,
        "error": delivery.error,
        "signed": bool(where.secret_env),
        "at": now_ms(),
    }
    _record(state, job_id, token, outcome)
    return str(outcome["status"])


def _write(state: StateStore, job: Job, record: dict[str, Any], warning: str | None = None) -> Job:
    new_state = copy.deepcopy(job.state or {})
    new_state["notification"] = record
    changes: dict[str, Any] = {"state": new_state}
    if warning is not None:
        changes["warnings"] = [*job.warnings, warning]
    return state.update_job(job.id, changes, expect_version=job.version, expect_status=[job.status])


def _record(state: StateStore, job_id: JobId, token: str, outcome: dict[str, Any]) -> None:
    warning = None
    if outcome["status"] == FAILED:
        warning = f"completion webhook failed: {outcome['error']}"
    for _ in range(5):
        try:
            job = state.get_job(job_id)
        except NotFound:
            return
        current = (job.state or {}).get("notification") or {}
        if current.get("token") != token:
            log.info("job_webhook_claim_taken_over", job_id=job_id)
            return
        try:
            _write(state, job, outcome, warning)
            return
        except NotFound:
            return
        except Conflict:
            continue
    log.warning("job_webhook_outcome_not_recorded", job_id=job_id, **outcome)
