"""The API's way into the workflow: a :class:`~flywheel.services.workflow_port.WorkflowLauncher`
that sends Celery messages."""

from __future__ import annotations

import contextlib
from typing import Any

import structlog

from flywheel.domain.jobs import JobId, JobStatus
from flywheel.errors import Conflict, NotFound, PlatformUnavailable
from flywheel.logging import redact_url
from flywheel.settings import Settings
from flywheel.stores.base import StateStore
from flywheel.workflow.celery_app import (
    ADVANCE_TASK,
    DELETE_ARTIFACTS_TASK,
    create_celery_app,
    ensure_broker_dirs,
)
from flywheel.workflow.options import WorkflowOptions
from flywheel.workflow.steps import recorded_handles

log = structlog.get_logger(__name__)


class CeleryLauncher:
    """Starts, stops and cleans up job workflows by sending ``flywheel.*`` tasks."""

    def __init__(self, app: Any, *, state: StateStore, options: WorkflowOptions) -> None:
        """Send through the Celery ``app``; read handles from ``state``."""
        self._app = app
        self._state = state
        self._options = options
        ensure_broker_dirs(app.conf)

    def _send(self, name: str, args: list[Any]) -> None:
        try:
            self._app.send_task(name, args=args, queue=self._options.steps_queue)
        except Exception as exc:  # kombu/redis raise many types for "broker unreachable"
            broker = redact_url(str(self._app.conf.broker_url))
            raise PlatformUnavailable(
                f"workflow broker {broker} did not accept {name}: {exc}; the job stays as it "
                "is and the recovery sweep will enqueue it again"
            ) from exc

    def enqueue(self, job_id: JobId) -> None:
        """Schedule the first (or next) step of ``job_id``; duplicates are harmless."""
        self._send(ADVANCE_TASK, [job_id])

    def cancel(self, job_id: JobId) -> None:
        """Make sure the job is ``cancelling`` (unless it ended) and let a step stop its work."""
        # Already cancelling, cancelled while pending, ended or gone: nothing to change.
        with contextlib.suppress(Conflict, NotFound):
            self._state.update_job(
                job_id, {"status": JobStatus.cancelling}, expect_status=[JobStatus.running]
            )
        self._send(ADVANCE_TASK, [job_id])

    def delete_artifacts(self, job_id: JobId) -> None:
        """Ask a worker to delete every platform artifact the job recorded.

        The handles are read now and travel with the message: the caller deletes the job
        document right after this returns.
        """
        try:
            job = self._state.get_job(job_id)
        except NotFound:
            return
        handles = recorded_handles(job.state)
        self._send(DELETE_ARTIFACTS_TASK, [job_id, handles])


def create_launcher(
    settings: Settings, state: StateStore, options: WorkflowOptions | None = None
) -> CeleryLauncher:
    """The launcher for the configured broker (what ``create_app(workflow=...)`` takes)."""
    options = options or WorkflowOptions()
    return CeleryLauncher(create_celery_app(settings, options), state=state, options=options)
