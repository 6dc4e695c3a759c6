"""State-store entities: jobs, candidate runs, named configs, API keys and promotions.

These are plain value objects. Stores persist and return them; services decide how they
change. Every mutable entity carries ``version``, bumped by each write, which stores use for
compare-and-set so two workers can never both move a job.
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Generic, NewType, TypeVar

from pydantic import BaseModel, ConfigDict, Field

JobId = NewType("JobId", str)
KeyId = NewType("KeyId", str)

T = TypeVar("T")


def utcnow() -> datetime:
    """Timezone-aware UTC now, truncated to milliseconds (what every store can round-trip)."""
    now = datetime.now(UTC)
    return now.replace(microsecond=(now.microsecond // 1000) * 1000)


class JobType(StrEnum):
    """What a job optimises: an LLM (chat/tool calling) or a retrieval embedding model."""

    llm_job = "llm_job"
    embedding_job = "embedding_job"


class JobStatus(StrEnum):
    """One vocabulary for the whole product (the blueprint mixed ``queued`` and ``pending``)."""

    pending = "pending"
    running = "running"
    cancelling = "cancelling"
    cancelled = "cancelled"
    completed = "completed"
    failed = "failed"


TERMINAL_STATUSES = frozenset({JobStatus.cancelled, JobStatus.completed, JobStatus.failed})
ACTIVE_STATUSES = frozenset({JobStatus.pending, JobStatus.running, JobStatus.cancelling})


class _Entity(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=False)


class Job(_Entity):
    """One flywheel run for a ``(client_id, workload_id)`` pair.

    ``config`` is the effective configuration snapshot (defaults ← named config ← request
    overrides), secrets removed; tasks read only this. ``state`` is the workflow's own
    persisted state machine, opaque to the store.
    """

    id: JobId
    client_id: str
    workload_id: str
    job_type: JobType = JobType.llm_job
    status: JobStatus = JobStatus.pending
    stage: str | None = None
    progress: float = Field(default=0.0, ge=0.0, le=100.0)
    config_name: str | None = None
    config_version: int | None = None
    config_hash: str | None = None
    config: dict[str, Any] = Field(default_factory=dict)
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)
    started_at: datetime | None = None
    finished_at: datetime | None = None
    created_by: str | None = None
    error: str | None = None
    warnings: list[str] = Field(default_factory=list)
    dataset_stats: dict[str, Any] | None = None
    datasets: list[dict[str, Any]] = Field(default_factory=list)
    recommendation: dict[str, Any] | None = None
    state: dict[str, Any] = Field(default_factory=dict)
    version: int = 0


class CandidateRun(_Entity):
    """One candidate model within a job: its deployment, evaluations and customization."""

    job_id: JobId
    name: str
    model_type: str = "llm"
    status: str = "pending"
    deployment: dict[str, Any] = Field(default_factory=dict)
    evaluations: list[dict[str, Any]] = Field(default_factory=list)
    customization: dict[str, Any] | None = None
    error: str | None = None
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)
    version: int = 0


class NamedConfig(_Entity):
    """One version of a named, partial job configuration for one job type."""

    name: str
    version: int
    job_type: JobType
    body: dict[str, Any]
    description: str = ""
    created_at: datetime = Field(default_factory=utcnow)
    created_by: str | None = None
    deleted: bool = False


class Role(StrEnum):
    """API roles, each including the rights of the ones below it."""

    viewer = "viewer"
    operator = "operator"
    admin = "admin"


class ApiKey(_Entity):
    """A stored API key: only its hash is kept."""

    id: KeyId
    key_hash: str
    role: Role
    name: str = ""
    client_ids: list[str] | None = Field(
        default=None, description="Tenants this key may see; None means all."
    )
    created_at: datetime = Field(default_factory=utcnow)
    revoked: bool = False


class WebhookOutcome(_Entity):
    """What the promotion webhook answered for one event, kept so a failure stays visible."""

    url: str = Field(description="scheme://host[:port]/path only: no credentials or query")
    delivered: bool
    attempts: int
    status_code: int | None = None
    error: str | None = None
    at: datetime = Field(default_factory=utcnow, description="When the last attempt ended.")


class Promotion(_Entity):
    """A decision to serve a model for a workload, with the evidence behind it."""

    id: str
    client_id: str
    workload_id: str
    model: str
    variant: str = Field(description="base, icl or customized")
    job_id: str | None = None
    scores: dict[str, Any] = Field(default_factory=dict)
    note: str = ""
    promoted_by: str | None = None
    promoted_at: datetime = Field(default_factory=utcnow)
    rolled_back: bool = False
    webhook: WebhookOutcome | None = Field(
        default=None, description="The promotion event's webhook outcome (None: none configured)."
    )
    rollback_webhook: WebhookOutcome | None = Field(
        default=None, description="The webhook outcome of the rollback that retired it."
    )


class Page(BaseModel, Generic[T]):
    """One page of a newest-first listing; pass ``next_cursor`` back to get the next."""

    items: list[T]
    next_cursor: str | None = None
