"""``/api/workloads``: logged workloads, and which model each one should use (promotions).

Applications poll ``GET /api/workloads/{client_id}/{workload_id}/model`` (viewer) to switch
model without a redeploy. Promoting and rolling back need the **operator** role: operators
already run the jobs whose evidence a promotion cites, and every promotion is recorded with
its author and can be rolled back; admins keep configs and keys.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path

from flywheel.api.deps import PrincipalDep, ServicesDep, require
from flywheel.api.errors import error_responses
from flywheel.api.workload_schemas import (
    PromotionIn,
    PromotionList,
    PromotionOut,
    PromotionResult,
    RollbackIn,
    WorkloadList,
    WorkloadOut,
)
from flywheel.domain.jobs import Role
from flywheel.domain.logs import ID_PATTERN
from flywheel.services import workloads
from flywheel.services.promotions import PromotionService
from flywheel.services.webhooks import WebhookSender

router = APIRouter(
    prefix="/api/workloads",
    tags=["workloads"],
    dependencies=[require(Role.viewer)],
    responses=error_responses(401, 403, 503),
)
_operator = [require(Role.operator)]
ClientId = Annotated[str, Path(pattern=ID_PATTERN)]
WorkloadId = Annotated[str, Path(pattern=ID_PATTERN)]


def _promotions(services: ServicesDep) -> PromotionService:
    settings = services.settings
    return PromotionService(
        state=services.state,
        webhook=WebhookSender.from_settings(
            url=settings.promotion_webhook_url,
            secret_env=settings.promotion_webhook_secret_env,
        ),
    )


PromotionsDep = Annotated[PromotionService, Depends(_promotions)]


@router.get("", summary="List workloads")
def list_workloads(services: ServicesDep, principal: PrincipalDep) -> WorkloadList:
    """List the (client, workload) pairs the log store holds, with record counts per kind."""
    summaries = workloads.list_workloads(services.logs, scope=principal.client_ids)
    return WorkloadList(
        items=[WorkloadOut.model_validate(w, from_attributes=True) for w in summaries]
    )


@router.get(
    "/{client_id}/{workload_id}/model",
    summary="The model a workload should use",
    responses=error_responses(404),
)
def get_workload_model(
    client_id: ClientId,
    workload_id: WorkloadId,
    promotions: PromotionsDep,
    principal: PrincipalDep,
) -> PromotionOut:
    """Return the promotion in force; 404 when none is (keep the configured model)."""
    return PromotionOut.from_domain(
        promotions.current(client_id, workload_id, scope=principal.client_ids)
    )


@router.get(
    "/{client_id}/{workload_id}/promotions",
    summary="Promotion history",
    responses=error_responses(404),
)
def list_promotions(
    client_id: ClientId,
    workload_id: WorkloadId,
    promotions: PromotionsDep,
    principal: PrincipalDep,
) -> PromotionList:
    """List a workload's promotions, newest first, rolled-back ones included."""
    history = promotions.history(client_id, workload_id, scope=principal.client_ids)
    return PromotionList(items=[PromotionOut.from_domain(p) for p in history])


@router.post(
    "/{client_id}/{workload_id}/promotions",
    status_code=201,
    dependencies=_operator,
    summary="Promote a candidate",
    responses=error_responses(404, 409, 413, 422),
)
def promote_candidate(
    client_id: ClientId,
    workload_id: WorkloadId,
    body: PromotionIn,
    promotions: PromotionsDep,
    principal: PrincipalDep,
) -> PromotionResult:
    """Record a promotion of a completed job's candidate variant and call the webhook.

    Needs the operator role (as running jobs does); every promotion records who made it
    and can be rolled back. ``expected_current`` is the promotion the caller saw in force:
    if another promotion or rollback happened since, the answer is 409 naming the one in
    force now. The webhook's outcome is returned and kept on the promotion, never raised.
    """
    return PromotionResult.from_outcome(
        promotions.promote(
            client_id,
            workload_id,
            job_id=body.job_id,
            candidate=body.candidate,
            variant=body.variant,
            expected_current=body.expected_current,
            note=body.note,
            promoted_by=principal.key_id,
            scope=principal.client_ids,
        )
    )


@router.post(
    "/{client_id}/{workload_id}/promotions/rollback",
    dependencies=_operator,
    summary="Roll back the current promotion",
    responses=error_responses(404, 409, 413),
)
def rollback_promotion(
    client_id: ClientId,
    workload_id: WorkloadId,
    body: RollbackIn,
    promotions: PromotionsDep,
    principal: PrincipalDep,
) -> PromotionResult:
    """Flag the promotion in force rolled back; the previous one is in force again.

    ``expected_current`` must be the promotion in force (409 naming the one that is,
    otherwise). The webhook's outcome is returned and kept on the rolled-back promotion.
    """
    return PromotionResult.from_outcome(
        promotions.rollback(
            client_id,
            workload_id,
            expected_current=body.expected_current,
            by=principal.key_id,
            scope=principal.client_ids,
        )
    )
