"""Endpoints the console needs beyond the resources: who am I, and results as CSV."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import PlainTextResponse, Response

from flywheel.api.deps import JobsDep, PrincipalDep, ServicesDep, require
from flywheel.api.errors import error_responses
from flywheel.api.workload_schemas import MeOut
from flywheel.domain.jobs import JobId, Role
from flywheel.services.results import results_csv

auth_router = APIRouter(
    prefix="/api/auth",
    tags=["auth"],
    dependencies=[require(Role.viewer)],
    responses=error_responses(401, 403, 503),
)
results_router = APIRouter(
    prefix="/api/jobs",
    tags=["jobs"],
    dependencies=[require(Role.viewer)],
    responses=error_responses(401, 403, 503),
)


@auth_router.get("/me", summary="Who am I")
async def get_me(principal: PrincipalDep, services: ServicesDep) -> MeOut:
    """Return the calling key's role and client scope (the console hides what it cannot do)."""
    return MeOut.from_principal(principal, auth_enabled=services.settings.auth_enabled)


@results_router.get(
    "/{job_id}/results.csv",
    summary="Results as CSV",
    # A media-type-less class, so the error statuses stay documented as JSON (what they are)
    # instead of inheriting text/plain; the 200 is documented as text/csv just below.
    response_class=Response,
    responses={
        200: {"content": {"text/csv": {"schema": {"type": "string"}}}},
        **error_responses(404),
    },
)
def get_results_csv(job_id: str, jobs: JobsDep, principal: PrincipalDep) -> PlainTextResponse:
    """Return one row per candidate, variant and metric: value, CI bounds and n."""
    detail = jobs.get(JobId(job_id), scope=principal.client_ids)
    return PlainTextResponse(
        results_csv(detail),
        media_type="text/csv",
        headers={"Content-Disposition": f'attachment; filename="{detail.job.id}-results.csv"'},
    )
