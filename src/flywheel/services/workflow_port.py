"""The port through which the API hands jobs to the workflow, and its interim implementation.

The API only needs three things from the workflow: start a job that is now stored as
``pending``, stop one, and remove what a finished job left on the model platform. Keeping
that behind :class:`WorkflowLauncher` lets the API land (and be tested) before the Celery
workflow does; the workflow issue supplies the real launcher and ``create_app`` takes it
through its ``workflow=`` argument.
"""

from __future__ import annotations

import threading
from typing import Protocol

from flywheel.domain.jobs import JobId


class WorkflowLauncher(Protocol):
    """Starts, stops and cleans up job workflows."""

    def enqueue(self, job_id: JobId) -> None:
        """Schedule the workflow of a stored ``pending`` job.

        Called only after the job was written, so the first step can always load it.
        Must be idempotent: the same id may be enqueued twice (retries, recovery sweeps).

        Raises:
            PlatformUnavailable: the broker cannot be reached (the job stays pending and a
                recovery sweep will enqueue it again).
        """
        ...

    def cancel(self, job_id: JobId) -> None:
        """Ask the workflow to stop a job and release its platform work (asynchronous)."""
        ...

    def delete_artifacts(self, job_id: JobId) -> None:
        """Remove what a finished job left on the platform (datasets, adapters, results)."""
        ...


class DeferredLauncher:
    """An in-process launcher that only records what was asked of it.

    It runs nothing: jobs stay ``pending`` until a real workflow picks them up. It serves
    until the workflow issue lands a Celery-backed launcher, and in API tests, which assert
    on the recorded ids.
    """

    def __init__(self) -> None:
        """Start with nothing requested."""
        self._lock = threading.Lock()
        self.enqueued: list[JobId] = []
        self.cancelled: list[JobId] = []
        self.deleted: list[JobId] = []

    def enqueue(self, job_id: JobId) -> None:
        """Record that ``job_id`` should run."""
        with self._lock:
            self.enqueued.append(job_id)

    def cancel(self, job_id: JobId) -> None:
        """Record that ``job_id`` should stop."""
        with self._lock:
            self.cancelled.append(job_id)

    def delete_artifacts(self, job_id: JobId) -> None:
        """Record that ``job_id``'s platform artifacts should be removed."""
        with self._lock:
            self.deleted.append(job_id)
