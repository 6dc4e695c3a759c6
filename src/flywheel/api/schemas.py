"""Request and response models of the REST API.

These are the wire format only. They never double as storage documents: responses are built
from domain objects with ``from_domain`` and leave out internal fields (the workflow's
``state``, key hashes).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from flywheel.config.schema import DataSplitOverrides
from flywheel.domain.jobs import ApiKey, CandidateRun, Job, JobStatus, JobType, NamedConfig, Role
from flywheel.domain.logs import ID_PATTERN
from flywheel.services.health import HealthReport
from flywheel.services.jobs import JobDetail

CONFIG_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class JobIn(_In):
    """Start a flywheel job for one ``(client_id, workload_id)`` pair."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"client_id": "aiva", "workload_id": "tool-router"},
                {
                    "client_id": "aiva",
                    "workload_id": "tool-router",
                    "job_type": "llm_job",
                    "config_name": "small-models",
                    "data_split_config": {"eval_size": 50, "limit": 5000, "random_seed": 7},
                },
            ]
        },
    )

    client_id: str = Field(pattern=ID_PATTERN, description="Application or tenant.")
    workload_id: str = Field(pattern=ID_PATTERN, description="One kind of call in the app.")
    job_type: JobType = JobType.llm_job
    config_name: str | None = Field(
        default=None, pattern=CONFIG_NAME_PATTERN, description="Named config; null: defaults."
    )
    data_split_config: DataSplitOverrides | None = None


class JobCreated(BaseModel):
    """The accepted job. ``status`` is ``pending`` (the blueprint said ``queued``; D7)."""

    id: str
    status: JobStatus
    message: str


class JobSummary(BaseModel):
    """One row of the job listing."""

    id: str
    client_id: str
    workload_id: str
    job_type: JobType
    status: JobStatus
    stage: str | None
    progress: float
    config_name: str | None
    config_version: int | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    error: str | None

    @classmethod
    def from_domain(cls, job: Job) -> JobSummary:
        """Shape a stored job as a listing row."""
        return cls.model_validate(job.model_dump(include=set(cls.model_fields)))


class JobPage(BaseModel):
    """One page, newest first; pass ``next_cursor`` as ``cursor`` for the next (null: last)."""

    items: list[JobSummary]
    next_cursor: str | None


class CandidateOut(BaseModel):
    """One candidate model's deployment, evaluations and customization."""

    name: str
    model_type: str
    status: str
    deployment: dict[str, Any]
    evaluations: list[dict[str, Any]]
    customization: dict[str, Any] | None
    error: str | None
    created_at: datetime
    updated_at: datetime

    @classmethod
    def from_domain(cls, run: CandidateRun) -> CandidateOut:
        """Shape a stored candidate run."""
        return cls.model_validate(run.model_dump(include=set(cls.model_fields)))


class ScoreOut(BaseModel):
    """A mean with its bootstrap confidence interval (``null`` values: no samples)."""

    value: float | None
    ci_low: float | None
    ci_high: float | None
    n: int = Field(description="Sample size: queries (or eval items) the mean is over.")
    confidence: float
    degenerate: bool = False
    note: str | None = None


class ReferenceRowOut(BaseModel):
    """Embedding jobs: the production retriever's own logged ranking, scored like a candidate.

    A yardstick shown beside the candidates, never one of them: it is not ranked, recommended
    or promotable. Only eval queries with a logged production ranking are scored, so
    ``queries`` may be below ``eval_queries``.
    """

    name: str = Field(description='Always "production retriever".')
    source: str = Field(description="The dataset file the ranking came from.")
    queries: int = Field(description="Eval queries scored (those with a production ranking).")
    eval_queries: int = Field(description="All eval queries with relevant passages.")
    excluded_queries: int = Field(description="Eval queries left out: no production ranking.")
    metrics: dict[str, ScoreOut] = Field(
        description="recall@k, ndcg@10 and mrr@10, as for the candidates."
    )


#: Keys of the stored recommendation that :class:`JobOut` lifts into typed fields.
_REFERENCE_KEYS = ("reference", "reference_note")


class JobOut(JobSummary):
    """A job in full: its configuration snapshot, datasets, candidates and outcome."""

    config_hash: str | None
    config: dict[str, Any]
    dataset_stats: dict[str, Any] | None
    datasets: list[dict[str, Any]]
    recommendation: dict[str, Any] | None
    reference: ReferenceRowOut | None = Field(
        default=None,
        description="Embedding jobs: the production retriever's row (null: none; see "
        "reference_note).",
    )
    reference_note: str | None = Field(
        default=None, description="Why a finished embedding job has no reference row."
    )
    warnings: list[str]
    created_by: str | None
    updated_at: datetime
    candidates: list[CandidateOut]

    @classmethod
    def from_detail(cls, detail: JobDetail) -> JobOut:
        """Shape a job with its candidate runs.

        Finalize stores the reference row inside the recommendation (the one results field
        a job has); it is lifted out here so the wire format types it and it appears once.
        """
        fields = set(cls.model_fields) - {"candidates", *_REFERENCE_KEYS}
        stored = detail.job.recommendation
        recommendation = (
            None
            if stored is None
            else {k: v for k, v in stored.items() if k not in _REFERENCE_KEYS}
        )
        return cls.model_validate(
            {
                **detail.job.model_dump(include=fields),
                "recommendation": recommendation,
                "reference": (stored or {}).get("reference"),
                "reference_note": (stored or {}).get("reference_note"),
                "candidates": [CandidateOut.from_domain(c) for c in detail.candidates],
            }
        )


class JobAction(BaseModel):
    """The outcome of a cancel or delete."""

    id: str
    status: JobStatus | None
    message: str


_CONFIG_EXAMPLE: dict[str, Any] = {
    "name": "small-models",
    "job_type": "llm_job",
    "description": "Two small candidates, bigger eval set",
    "body": {
        "candidates": [{"name": "llama-3.2-1b-instruct", "context_length": 8192}],
        "data_split_config": {"eval_size": 50},
    },
}


class ConfigIn(_In):
    """A new named config: a partial job configuration over the defaults."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [_CONFIG_EXAMPLE]})

    name: str = Field(pattern=CONFIG_NAME_PATTERN)
    job_type: JobType = JobType.llm_job
    description: str = Field(default="", max_length=2000)
    body: dict[str, Any] = Field(description="Partial job configuration; validated on write.")


class ConfigUpdate(_In):
    """A new version of a named config; ``expected_version`` is the version you edited."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"expected_version": 1, "body": {"data_split_config": {"eval_size": 80}}}]
        },
    )

    expected_version: int = Field(ge=1)
    job_type: JobType | None = None
    description: str | None = Field(default=None, max_length=2000)
    body: dict[str, Any]


class ConfigOut(BaseModel):
    """One version of a named config."""

    name: str
    version: int
    job_type: JobType
    description: str
    body: dict[str, Any]
    created_at: datetime
    created_by: str | None

    @classmethod
    def from_domain(cls, config: NamedConfig) -> ConfigOut:
        """Shape a stored config version."""
        return cls.model_validate(config.model_dump(include=set(cls.model_fields)))


class ConfigList(BaseModel):
    """Named configs (latest versions) or one config's versions."""

    items: list[ConfigOut]


class KeyIn(_In):
    """A new API key; ``client_ids`` limits it to those tenants."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"role": "operator", "name": "ci", "client_ids": ["aiva"]}]
        },
    )

    role: Role
    name: str = Field(default="", max_length=200)
    client_ids: list[str] | None = Field(default=None, min_length=1)


class KeyOut(BaseModel):
    """A stored key, without its hash."""

    id: str
    role: Role
    name: str
    client_ids: list[str] | None
    created_at: datetime
    revoked: bool

    @classmethod
    def from_domain(cls, key: ApiKey) -> KeyOut:
        """Shape a stored key, leaving out its hash."""
        return cls.model_validate(key.model_dump(include=set(cls.model_fields)))


class KeyCreated(KeyOut):
    """A new key; ``key`` is shown only in this response."""

    key: str


class KeyList(BaseModel):
    """All keys, newest first."""

    items: list[KeyOut]


class IngestOut(BaseModel):
    """What one ``POST /api/logs`` stored and rejected (per-record reasons in ``errors``)."""

    model_config = ConfigDict(extra="allow")

    accepted: int
    rejected: int
    written: int
    message: str
    errors: list[dict[str, Any]]
    errors_truncated: bool


class CheckOut(BaseModel):
    """One dependency."""

    name: str
    status: Literal["ok", "down", "embedded", "not configured"]
    required: bool
    latency_ms: float | None
    detail: str | None


class HealthOut(BaseModel):
    """Overall ``ok`` or ``unavailable`` (503) and each dependency."""

    status: Literal["ok", "unavailable"]
    checks: list[CheckOut]

    @classmethod
    def from_report(cls, report: HealthReport) -> HealthOut:
        """Shape a health report."""
        return cls(
            status="ok" if report.healthy else "unavailable",
            checks=[
                CheckOut(
                    name=c.name,
                    status=c.status,
                    required=c.required,
                    latency_ms=c.latency_ms,
                    detail=c.detail,
                )
                for c in report.checks
            ],
        )


class ErrorOut(BaseModel):
    """Every error response: a message, and field errors for 422s."""

    detail: str
    errors: list[dict[str, Any]] = Field(default_factory=list)
