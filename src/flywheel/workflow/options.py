"""Workflow tuning knobs, read from ``FLYWHEEL_WORKFLOW_*`` environment variables.

These are operational settings of the worker fleet (how often to poll, when a step counts
as stale), not part of a job's configuration: they never change what a job computes, only
how quickly the workflow notices things. Tests shrink them to milliseconds.
"""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class WorkflowOptions(BaseSettings):
    """Timing and queue settings of the workflow engine."""

    model_config = SettingsConfigDict(env_prefix="FLYWHEEL_WORKFLOW_", extra="ignore", frozen=True)

    poll_interval_s: float = Field(
        default=10.0, gt=0, description="Delay between two polls of the same platform work."
    )
    capacity_retry_s: float = Field(
        default=15.0, gt=0, description="Delay before a queued candidate asks for GPUs again."
    )
    claim_lease_s: float = Field(
        default=120.0,
        gt=0,
        description="How long a step that starts platform work owns the job before another "
        "step may assume it died and redo the start.",
    )
    build_lease_s: float = Field(
        default=900.0, gt=0, description="The same, for the dataset build (a long step)."
    )
    stale_after_s: float = Field(
        default=300.0,
        gt=0,
        description="The sweeper re-enqueues an active job whose last step is older than this.",
    )
    sweep_interval_s: float = Field(default=60.0, gt=0, description="How often the sweeper runs.")
    stuck_grace_s: float = Field(
        default=600.0,
        ge=0,
        description="Beyond its stage timeout plus this, a job that makes no progress is failed.",
    )
    max_transient_retries: int = Field(
        default=5, ge=0, description="Retries of one action on transient platform/store errors."
    )
    retry_backoff_s: float = Field(default=2.0, gt=0, description="First retry delay; doubles.")
    log_store_wait_max_backoff_s: float = Field(
        default=60.0,
        gt=0,
        description="FLYWHEEL_LOG_STORE_OUTAGE=wait: longest delay between two attempts of a "
        "dataset step waiting for the log store (the delay starts at retry_backoff_s and "
        "doubles).",
    )
    store_retry_backoff_s: float = Field(
        default=1.0,
        gt=0,
        description="State store unreachable: first delay before a task (advance, notify) "
        "is retried; doubles up to store_retry_max_backoff_s.",
    )
    store_retry_max_backoff_s: float = Field(
        default=8.0,
        gt=0,
        description="State store unreachable: longest delay between two retries of a task, "
        "so the job resumes at most this long after the store is back.",
    )
    store_outage_ride_out_s: float = Field(
        default=120.0,
        ge=0,
        description="State store unreachable: a task keeps retrying until its delays add up "
        "to this; beyond it the task gives up and the recovery sweep re-enqueues the job.",
    )
    visibility_timeout_s: float = Field(
        default=3600.0,
        gt=0,
        description="Redis broker: an unacknowledged message is redelivered after this.",
    )
    embedded_broker_poll_s: float = Field(
        default=0.02,
        gt=0,
        description="Embedded (filesystem) broker: how often a worker looks for new messages.",
    )
    notify_attempts: int = Field(
        default=4, ge=1, description="Completion webhook: attempts (connection errors, 5xx)."
    )
    notify_backoff_s: float = Field(
        default=1.0, gt=0, description="Completion webhook: first retry delay; doubles."
    )
    notify_max_backoff_s: float = Field(
        default=8.0, gt=0, description="Completion webhook: longest delay between attempts."
    )
    notify_timeout_s: float = Field(
        default=10.0, gt=0, description="Completion webhook: timeout of one POST."
    )
    max_tasks_per_child: int = Field(
        default=1000,
        ge=0,
        description="A worker's pool process is replaced after this many steps (0: never). "
        "Bounds the slow growth of a long-lived Python process (allocator fragmentation, "
        "caches); replacing one costs a fork, and no step is interrupted.",
    )
    max_memory_per_child_mb: int = Field(
        default=1024,
        ge=0,
        description="A pool process whose resident memory exceeds this after a step is "
        "replaced (0: never), so one large dataset build does not pin its peak memory for "
        "the worker's whole life.",
    )
    metrics_port: int = Field(
        default=0,
        ge=0,
        le=65535,
        description="Serve the worker's Prometheus metrics on this port (0: off); see "
        "flywheel.workflow.metrics for PROMETHEUS_MULTIPROC_DIR.",
    )
    queue_prefix: str = Field(
        default="",
        pattern=r"^[A-Za-z0-9_.-]*$",
        description="Prefix for queue names and broker keys (isolates test runs, tenants).",
    )

    def store_retry_delay(self, retries: int) -> float | None:
        """Countdown of a task's next retry after ``retries`` failed ones on a state-store
        outage (capped exponential backoff), or ``None`` once the ride-out budget is spent.

        Capped rather than plain doubling so that a long outage does not leave a task
        asleep for minutes after the store came back.
        """

        def delay(i: int) -> float:
            # 2**30 × any backoff is far beyond any cap; the bound keeps floats finite.
            return float(
                min(self.store_retry_backoff_s * 2 ** min(i, 30), self.store_retry_max_backoff_s)
            )

        if sum(delay(i) for i in range(retries)) >= self.store_outage_ride_out_s:
            return None
        return delay(retries)

    def log_store_wait_delay(self, attempts: int) -> float:
        """Countdown before attempt ``attempts + 1`` of a dataset step waiting for the log store."""
        exponent = min(max(attempts - 1, 0), 30)  # 2**30 × any backoff is far beyond the cap
        return float(min(self.retry_backoff_s * 2**exponent, self.log_store_wait_max_backoff_s))

    @property
    def steps_queue(self) -> str:
        """Queue of short steps: polls, starts, shutdowns, cancellation."""
        return f"{self.queue_prefix}flywheel.steps"

    @property
    def long_queue(self) -> str:
        """Queue of long steps: dataset building and finalization (scoring)."""
        return f"{self.queue_prefix}flywheel.long"
