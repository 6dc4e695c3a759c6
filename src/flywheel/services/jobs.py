"""Job submission and lifecycle: create (resolve + snapshot + enqueue), list, get, cancel, delete.

Every method takes the caller's tenant ``scope`` (None: all clients). A job outside the
scope answers exactly like a missing one, so one tenant cannot probe another's ids.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import structlog

from flywheel.config.resolve import config_hash, resolve_job_config
from flywheel.config.schema import DataSplitOverrides, JobConfig
from flywheel.domain.jobs import (
    ACTIVE_STATUSES,
    TERMINAL_STATUSES,
    CandidateRun,
    Job,
    JobId,
    JobStatus,
    JobType,
    Page,
    utcnow,
)
from flywheel.domain.logs import LogKind
from flywheel.errors import Conflict, NotFound, ValidationFailed
from flywheel.logging import redact
from flywheel.services.workflow_port import WorkflowLauncher
from flywheel.stores.base import LogStore, StateStore

log = structlog.get_logger(__name__)

Scope = frozenset[str] | None

_LOG_KIND = {JobType.llm_job: LogKind.chat, JobType.embedding_job: LogKind.retrieval}


@dataclass(frozen=True, slots=True)
class JobRequest:
    """What a caller asks for; everything else is resolved from configuration."""

    client_id: str
    workload_id: str
    job_type: JobType = JobType.llm_job
    config_name: str | None = None
    data_split_config: DataSplitOverrides | None = None


@dataclass(frozen=True, slots=True)
class JobDetail:
    """A job with its candidate runs."""

    job: Job
    candidates: list[CandidateRun]


def _scrub(value: Any) -> Any:
    """Mask credentials inside string values (``https://u:pw@host`` URLs) of a snapshot.

    ``logging.redact`` also masks values by *key name*, which here would destroy valid
    settings (``max_new_tokens``, ``reserved_tokens``) and the ``api_key_env`` variable
    *names* tasks need. The schema already forbids secret values, so only the URL rule applies.
    """
    if isinstance(value, Mapping):
        return {k: _scrub(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_scrub(v) for v in value]
    return redact(value) if isinstance(value, str) else value


def _in_scope(job: Job, scope: Scope) -> Job:
    if scope is not None and job.client_id not in scope:
        raise NotFound(f"job {job.id} not found")
    return job


class JobService:
    """Submit jobs and move them through their lifecycle on the caller's behalf."""

    def __init__(
        self,
        *,
        state: StateStore,
        logs: LogStore,
        launcher: WorkflowLauncher,
        base_config: Mapping[str, Any],
        on_created: Callable[[Job], None] | None = None,
    ) -> None:
        """Wire the ports; ``on_created`` is told of each new job (metrics)."""
        self._state = state
        self._logs = logs
        self._launcher = launcher
        self._base = base_config
        self._on_created = on_created

    def _resolve(self, request: JobRequest) -> tuple[JobConfig, str | None, int | None]:
        if request.config_name is None:
            named: dict[str, Any] | None = None
            version: int | None = None
        else:
            try:
                named_config = self._state.get_config(request.config_name)
            except NotFound as exc:
                raise NotFound(f"config {request.config_name!r} not found") from exc
            if named_config.job_type is not request.job_type:
                raise ValidationFailed(
                    f"config {request.config_name!r} is for {named_config.job_type.value}, "
                    f"not {request.job_type.value}",
                    [{"loc": ["body", "config_name"], "msg": "job_type does not match"}],
                )
            named, version = named_config.body, named_config.version
        config = resolve_job_config(
            self._base,
            job_type=request.job_type,
            named=named,
            overrides=request.data_split_config,
        )
        return config, request.config_name, version

    def create(
        self, request: JobRequest, *, scope: Scope = None, created_by: str | None = None
    ) -> Job:
        """Resolve and snapshot the configuration, store a pending job, and enqueue it."""
        if scope is not None and request.client_id not in scope:
            raise NotFound(f"client {request.client_id!r} not found")
        config, config_name, config_version = self._resolve(request)
        kind = _LOG_KIND[request.job_type]
        if self._logs.count(request.client_id, request.workload_id, kind=kind) == 0:
            raise ValidationFailed(
                f"no {kind.value} logs for client {request.client_id!r}, workload "
                f"{request.workload_id!r}; load logs first (POST /api/logs or "
                "`flywheel logs load`)",
                [{"loc": ["body", "workload_id"], "msg": f"no {kind.value} logs for this pair"}],
            )
        snapshot = JobConfig.model_validate(_scrub(config.model_dump(mode="json")))
        job = self._state.create_job(
            Job(
                id=JobId(f"job_{uuid.uuid4().hex}"),
                client_id=request.client_id,
                workload_id=request.workload_id,
                job_type=request.job_type,
                config_name=config_name,
                config_version=config_version,
                config_hash=config_hash(snapshot),
                config=snapshot.model_dump(mode="json"),
                created_by=created_by,
            )
        )
        for candidate in snapshot.candidates_for(request.job_type):
            self._state.put_candidate_run(
                CandidateRun(job_id=job.id, name=candidate.name, model_type=candidate.model_type)
            )
        # Enqueue only after the write the workflow depends on has succeeded.
        self._launcher.enqueue(job.id)
        log.info("job_submitted", job_id=job.id, job_type=job.job_type.value)
        if self._on_created is not None:
            self._on_created(job)
        return job

    def list(
        self,
        *,
        scope: Scope = None,
        status: JobStatus | None = None,
        client_id: str | None = None,
        workload_id: str | None = None,
        job_type: JobType | None = None,
        limit: int = 50,
        cursor: str | None = None,
        summary: bool = False,
    ) -> Page[Job]:
        """Newest first, filtered, one page at a time.

        ``summary=True``: the jobs lack their heavy fields (see ``StateStore.list_jobs``).
        """
        return self._state.list_jobs(
            status=status,
            client_id=client_id,
            client_ids=scope,
            workload_id=workload_id,
            job_type=job_type,
            limit=limit,
            cursor=cursor,
            summary=summary,
        )

    def get(self, job_id: JobId, *, scope: Scope = None) -> JobDetail:
        """The job and its candidate runs."""
        job = _in_scope(self._state.get_job(job_id), scope)
        return JobDetail(job=job, candidates=self._state.list_candidate_runs(job.id))

    def cancel(self, job_id: JobId, *, scope: Scope = None) -> Job:
        """Cancel a job: a pending one at once, a running one via the workflow."""
        job = _in_scope(self._state.get_job(job_id), scope)
        if job.status in TERMINAL_STATUSES:
            raise Conflict(f"job {job_id} is already {job.status.value}")
        if job.status is JobStatus.pending:
            try:
                job = self._state.update_job(
                    job.id,
                    {"status": JobStatus.cancelled, "finished_at": utcnow()},
                    expect_status=[JobStatus.pending],
                )
            except Conflict:
                return self.cancel(job_id, scope=scope)  # a worker picked it up meanwhile
        elif job.status is JobStatus.running:
            try:
                job = self._state.update_job(
                    job.id, {"status": JobStatus.cancelling}, expect_status=[JobStatus.running]
                )
            except Conflict:
                return self.cancel(job_id, scope=scope)  # it finished or moved meanwhile
        # Also for pending jobs: the launcher drops a queued workflow it has not started.
        self._launcher.cancel(job.id)
        log.info("job_cancel_requested", job_id=job.id, status=job.status.value)
        return job

    def delete(self, job_id: JobId, *, scope: Scope = None) -> None:
        """Delete a finished job's state and ask the workflow to remove its platform artifacts."""
        job = _in_scope(self._state.get_job(job_id), scope)
        if job.status in ACTIVE_STATUSES:
            raise Conflict(f"job {job_id} is {job.status.value}; cancel it and wait until it ends")
        self._launcher.delete_artifacts(job.id)
        self._state.delete_job(job.id)
        log.info("job_deleted", job_id=job.id)
