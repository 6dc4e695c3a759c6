"""Promotions: a person decides which model serves a workload, with the job's evidence.

A promotion names a candidate variant (``base``, ``icl`` or ``customized``) of a
*completed* job for the job's own ``(client_id, workload_id)``; its scores (value, CI, n),
latency and cost are copied from the candidate run as evidence, so the record stays
meaningful after the job is deleted. The current model of a workload is its newest
promotion that is not rolled back; rolling back flags that one, so the one before it is
current again. Applications read the current one through
``GET /api/workloads/{client_id}/{workload_id}/model`` and may be told by a webhook.

Promoting and rolling back are compare-and-set: the caller names the promotion it saw in
force (``expected_current``), and the store refuses (``Conflict``) when another change came
first, so two people acting on the same screen cannot silently overwrite each other. The
webhook's outcome (delivered or not, attempts, status, error, when) is kept on the promotion:
a failed delivery never undoes the change, but it stays visible in the API and the console.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import structlog

from flywheel.domain.jobs import JobId, JobStatus, Promotion, WebhookOutcome
from flywheel.errors import Conflict, NotFound, StoreUnavailable, ValidationFailed
from flywheel.services.webhooks import Delivery, WebhookSender
from flywheel.stores.base import StateStore

log = structlog.get_logger(__name__)

Scope = frozenset[str] | None
Variant = Literal["base", "icl", "customized"]
VARIANTS: tuple[Variant, ...] = ("base", "icl", "customized")

#: Per-metric fields kept as evidence (the rest of a Score, e.g. notes, stays on the job).
_SCORE_FIELDS = ("value", "ci_low", "ci_high", "n")


@dataclass(frozen=True, slots=True)
class PromotionOutcome:
    """A recorded promotion (or the one a rollback made current) and the webhook's outcome."""

    promotion: Promotion | None
    rolled_back: Promotion | None
    webhook: WebhookOutcome | None


def _check_scope(client_id: str, scope: Scope) -> None:
    if scope is not None and client_id not in scope:
        raise NotFound(f"client {client_id!r} not found")


def evidence(scores: Mapping[str, Any]) -> dict[str, Any]:
    """The scores worth keeping with a promotion: each metric's value, CI and n; latency; cost."""
    kept: dict[str, Any] = {}
    for name, score in scores.items():
        if isinstance(score, Mapping) and "value" in score:
            kept[name] = {k: score.get(k) for k in _SCORE_FIELDS if k in score}
    latency = scores.get("latency")
    if isinstance(latency, Mapping):
        kept["latency_p50_ms"] = latency.get("p50_ms")
        kept["latency_p95_ms"] = latency.get("p95_ms")
    cost = scores.get("cost")
    if isinstance(cost, Mapping):
        kept["cost_per_1k_requests"] = cost.get("cost_per_1k_requests")
    return kept


class PromotionService:
    """Promote a candidate variant, roll back, and answer which model a workload uses."""

    def __init__(self, *, state: StateStore, webhook: WebhookSender | None = None) -> None:
        """Record promotions in ``state``; tell ``webhook`` (if any) of each change."""
        self._state = state
        self._webhook = webhook

    def current(self, client_id: str, workload_id: str, *, scope: Scope = None) -> Promotion:
        """The promotion in force for a workload.

        Raises:
            NotFound: nothing promoted (or everything rolled back), or the client is out of scope.
        """
        _check_scope(client_id, scope)
        for promotion in self._state.list_promotions(client_id, workload_id):
            if not promotion.rolled_back:
                return promotion
        raise NotFound(
            f"no model has been promoted for client {client_id!r}, workload {workload_id!r}; "
            "the application keeps its configured model"
        )

    def history(self, client_id: str, workload_id: str, *, scope: Scope = None) -> list[Promotion]:
        """Every promotion of a workload, newest first, rolled-back ones included."""
        _check_scope(client_id, scope)
        return self._state.list_promotions(client_id, workload_id)

    def promote(
        self,
        client_id: str,
        workload_id: str,
        *,
        job_id: str,
        candidate: str,
        variant: Variant,
        expected_current: str | None,
        note: str = "",
        promoted_by: str | None = None,
        scope: Scope = None,
    ) -> PromotionOutcome:
        """Record a promotion of one variant of a completed job's candidate, then notify.

        ``expected_current`` is the id of the promotion the caller saw in force (None: none).

        Raises:
            NotFound: the job or candidate does not exist (or is out of scope).
            ValidationFailed: the job belongs to another workload.
            Conflict: the job is not completed, the variant has no completed evaluation, or
                the promotion in force is not ``expected_current`` any more.
        """
        _check_scope(client_id, scope)
        job = self._state.get_job(JobId(job_id))
        if scope is not None and job.client_id not in scope:
            raise NotFound(f"job {job_id} not found")
        if (job.client_id, job.workload_id) != (client_id, workload_id):
            raise ValidationFailed(
                f"job {job_id} is for {job.client_id}/{job.workload_id}, "
                f"not {client_id}/{workload_id}",
                [{"loc": ["body", "job_id"], "msg": "job belongs to another workload"}],
            )
        if job.status is not JobStatus.completed:
            raise Conflict(
                f"job {job_id} is {job.status.value}; only a completed job can be promoted from"
            )
        runs = {run.name: run for run in self._state.list_candidate_runs(job.id)}
        if candidate not in runs:
            raise NotFound(f"job {job_id} has no candidate {candidate!r}")
        run = runs[candidate]
        evaluation = next(
            (
                e
                for e in run.evaluations
                if e.get("eval_type") == variant
                and e.get("status") == "completed"
                and isinstance(e.get("scores"), Mapping)
            ),
            None,
        )
        if evaluation is None:
            raise Conflict(
                f"candidate {candidate!r} of job {job_id} has no completed {variant} evaluation "
                "to promote"
            )
        model = candidate
        if variant == "customized":
            details = (run.customization or {}).get("details") or {}
            model = str(details.get("output_model") or candidate)
        promotion = self._state.add_promotion(
            Promotion(
                # Time-ordered ids break ties of equal timestamps in newest-first listings.
                id=f"prm_{time.time_ns():016x}{uuid.uuid4().hex[:8]}",
                client_id=client_id,
                workload_id=workload_id,
                model=model,
                variant=variant,
                job_id=job.id,
                scores={"candidate": candidate, **evidence(evaluation["scores"])},
                note=note,
                promoted_by=promoted_by,
            ),
            expected_current=expected_current,
        )
        log.info(
            "model_promoted",
            client_id=client_id,
            workload_id=workload_id,
            job_id=job.id,
            promotion_id=promotion.id,
            replaced=expected_current,
        )
        delivery = self._notify("promotion", promotion, None)
        promotion = self._record(promotion, delivery, "promotion")
        return PromotionOutcome(promotion, None, promotion.webhook)

    def rollback(
        self,
        client_id: str,
        workload_id: str,
        *,
        expected_current: str,
        by: str | None = None,
        scope: Scope = None,
    ) -> PromotionOutcome:
        """Flag the current promotion rolled back; the previous one (if any) is current again.

        ``expected_current`` is the id of the promotion the caller saw in force and means
        to roll back.

        Raises:
            NotFound: the client is out of scope.
            Conflict: nothing is promoted, or the promotion in force is another one.
        """
        _check_scope(client_id, scope)
        rolled, now_current = self._state.roll_back_promotion(
            client_id, workload_id, expected_current=expected_current
        )
        log.info(
            "promotion_rolled_back",
            client_id=client_id,
            workload_id=workload_id,
            promotion_id=rolled.id,
            now_current=now_current.id if now_current else None,
            by=by,
        )
        delivery = self._notify("rollback", now_current, rolled)
        rolled = self._record(rolled, delivery, "rollback")
        return PromotionOutcome(now_current, rolled, rolled.rollback_webhook)

    def _notify(
        self, event: str, current: Promotion | None, rolled_back: Promotion | None
    ) -> Delivery | None:
        if self._webhook is None:
            return None
        pair = current or rolled_back
        assert pair is not None  # every event has one of them
        return self._webhook.send(
            event,
            {
                "client_id": pair.client_id,
                "workload_id": pair.workload_id,
                "current": current.model_dump(mode="json") if current else None,
                "rolled_back": rolled_back.model_dump(mode="json") if rolled_back else None,
            },
        )

    def _record(
        self,
        promotion: Promotion,
        delivery: Delivery | None,
        event: Literal["promotion", "rollback"],
    ) -> Promotion:
        """Keep the webhook's outcome on ``promotion``; the change itself already stands.

        A store outage here must not turn a recorded promotion into an error response, so
        it is logged and the promotion returned without the outcome.
        """
        if delivery is None:
            return promotion
        outcome = WebhookOutcome(
            url=delivery.url,
            delivered=delivery.delivered,
            attempts=delivery.attempts,
            status_code=delivery.status_code,
            error=delivery.error,
        )
        try:
            return self._state.record_promotion_webhook(promotion.id, outcome, event=event)
        except StoreUnavailable as exc:
            log.warning(
                "promotion_webhook_not_recorded",
                promotion_id=promotion.id,
                event=event,
                delivered=delivery.delivered,
                error=str(exc),
            )
            return promotion.model_copy(
                update={"webhook" if event == "promotion" else "rollback_webhook": outcome}
            )
