"""``/api/jobs``: submit, list, inspect, cancel and delete flywheel jobs."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response

from flywheel.api.deps import JobsDep, PrincipalDep, require
from flywheel.api.errors import error_responses
from flywheel.api.schemas import JobAction, JobCreated, JobIn, JobOut, JobPage, JobSummary
from flywheel.domain.jobs import JobId, JobStatus, JobType, Role
from flywheel.domain.logs import ID_PATTERN
from flywheel.services.jobs import JobRequest

router = APIRouter(
    prefix="/api/jobs",
    tags=["jobs"],
    dependencies=[require(Role.viewer)],
    responses=error_responses(401, 403, 503),
)
_operator = [require(Role.operator)]


@router.post(
    "",
    status_code=202,
    dependencies=_operator,
    responses=error_responses(404, 413, 422),
    summary="Submit a job",
)
def create_job(body: JobIn, jobs: JobsDep, principal: PrincipalDep) -> JobCreated:
    """Resolve and snapshot the configuration, store a pending job and queue its workflow."""
    job = jobs.create(
        JobRequest(
            client_id=body.client_id,
            workload_id=body.workload_id,
            job_type=body.job_type,
            config_name=body.config_name,
            data_split_config=body.data_split_config,
        ),
        scope=principal.client_ids,
        created_by=principal.key_id,
    )
    return JobCreated(
        id=job.id, status=job.status, message="job accepted; it runs when a worker picks it up"
    )


@router.get("", summary="List jobs", response_model=JobPage, responses=error_responses(422))
def list_jobs(
    jobs: JobsDep,
    principal: PrincipalDep,
    status: JobStatus | None = None,
    client_id: Annotated[str | None, Query(pattern=ID_PATTERN)] = None,
    workload_id: Annotated[str | None, Query(pattern=ID_PATTERN)] = None,
    job_type: JobType | None = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Annotated[str | None, Query(max_length=512)] = None,
) -> Response:
    """List jobs newest first, filtered, one page at a time."""
    page = jobs.list(
        scope=principal.client_ids,
        status=status,
        client_id=client_id,
        workload_id=workload_id,
        job_type=job_type,
        limit=limit,
        cursor=cursor,
        summary=True,  # rows need no config snapshot or workflow state: skip loading them
    )
    body = JobPage(
        items=[JobSummary.from_domain(j) for j in page.items], next_cursor=page.next_cursor
    )
    # Serialized here, in this handler's worker thread: a returned model would be validated
    # a second time against ``response_model``, in one more thread-pool hop per request.
    return Response(body.model_dump_json(), media_type="application/json")


@router.get("/{job_id}", summary="Show a job", responses=error_responses(404))
def get_job(job_id: str, jobs: JobsDep, principal: PrincipalDep) -> JobOut:
    """Return a job with its configuration snapshot, datasets and candidate runs."""
    return JobOut.from_detail(jobs.get(JobId(job_id), scope=principal.client_ids))


@router.post(
    "/{job_id}/cancel",
    status_code=202,
    dependencies=_operator,
    summary="Cancel a job",
    responses=error_responses(404, 409),
)
def cancel_job(job_id: str, jobs: JobsDep, principal: PrincipalDep) -> JobAction:
    """Cancel a job: a pending one at once, a running one once its workflow stops."""
    job = jobs.cancel(JobId(job_id), scope=principal.client_ids)
    return JobAction(id=job.id, status=job.status, message=f"job is {job.status.value}")


@router.delete(
    "/{job_id}",
    dependencies=_operator,
    summary="Delete a job",
    responses=error_responses(404, 409),
)
def delete_job(job_id: str, jobs: JobsDep, principal: PrincipalDep) -> JobAction:
    """Delete a finished job's state; its platform artifacts are removed by the workflow."""
    jobs.delete(JobId(job_id), scope=principal.client_ids)
    return JobAction(id=job_id, status=None, message="job deleted")
