"""Wire models of the workload, promotion and caller endpoints (used by the console too)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from flywheel.domain.jobs import Promotion, Role
from flywheel.services.auth import Principal
from flywheel.services.promotions import PromotionOutcome


class MeOut(BaseModel):
    """The calling key: its role, and the clients it may see (null: all)."""

    role: Role
    key_id: str | None
    client_ids: list[str] | None
    auth_enabled: bool

    @classmethod
    def from_principal(cls, principal: Principal, *, auth_enabled: bool) -> MeOut:
        """Describe a principal."""
        return cls(
            role=principal.role,
            key_id=principal.key_id,
            client_ids=None if principal.client_ids is None else sorted(principal.client_ids),
            auth_enabled=auth_enabled,
        )


class WorkloadOut(BaseModel):
    """One ``(client_id, workload_id)`` pair the log store holds, with record counts."""

    client_id: str
    workload_id: str
    chat_records: int
    retrieval_records: int
    newest_timestamp: int | None = Field(description="Epoch milliseconds of the newest record.")


class WorkloadList(BaseModel):
    """Every pair the caller may see, sorted by client then workload."""

    items: list[WorkloadOut]


class PromotionIn(BaseModel):
    """Promote one variant of a completed job's candidate for this workload."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "job_id": "job_0123",
                    "candidate": "llama-3.2-1b-instruct",
                    "variant": "customized",
                    "note": "parity on tool calls at a tenth of the cost",
                    "expected_current": "prm_0187a3c9d2e4f5a6b1c2d3e4",
                }
            ]
        },
    )

    job_id: str = Field(min_length=1, max_length=200)
    candidate: str = Field(min_length=1, max_length=200)
    variant: Literal["base", "icl", "customized"]
    note: str = Field(default="", max_length=2000)
    expected_current: str | None = Field(
        max_length=200,
        description="Id of the promotion you saw in force (null: you saw none). Required: if "
        "another promotion or rollback happened since, the request is refused with 409.",
    )


class RollbackIn(BaseModel):
    """Roll back the promotion you saw in force."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"expected_current": "prm_0187a3c9d2e4f5a6b1c2d3e4"}]},
    )

    expected_current: str = Field(
        min_length=1,
        max_length=200,
        description="Id of the promotion in force that you mean to roll back; 409 if another "
        "promotion or rollback happened since.",
    )


class WebhookOut(BaseModel):
    """What the promotion webhook answered for one event (kept on the promotion)."""

    url: str
    delivered: bool
    attempts: int
    status_code: int | None
    error: str | None
    at: datetime = Field(description="When the last attempt ended.")


class PromotionOut(BaseModel):
    """A recorded promotion: what serves the workload, who decided, and the evidence."""

    id: str
    client_id: str
    workload_id: str
    model: str
    variant: str
    job_id: str | None
    scores: dict[str, Any]
    note: str
    promoted_by: str | None
    promoted_at: datetime
    rolled_back: bool
    webhook: WebhookOut | None = Field(
        description="Outcome of the webhook call announcing this promotion (null: no webhook "
        "is configured). A failed delivery does not undo the promotion."
    )
    rollback_webhook: WebhookOut | None = Field(
        description="Outcome of the webhook call announcing its rollback (null: not rolled "
        "back, or no webhook is configured)."
    )

    @classmethod
    def from_domain(cls, promotion: Promotion) -> PromotionOut:
        """Shape a stored promotion."""
        return cls.model_validate(promotion.model_dump())


class PromotionResult(BaseModel):
    """The promotion now in force (null after rolling back the only one), and what changed.

    ``webhook`` is this event's webhook outcome (null when none is configured); it is also
    kept on the promotion (``webhook``, or the rolled-back one's ``rollback_webhook``).
    """

    current: PromotionOut | None
    rolled_back: PromotionOut | None
    webhook: WebhookOut | None

    @classmethod
    def from_outcome(cls, outcome: PromotionOutcome) -> PromotionResult:
        """Shape a promote or rollback outcome."""
        return cls(
            current=PromotionOut.from_domain(outcome.promotion) if outcome.promotion else None,
            rolled_back=(
                PromotionOut.from_domain(outcome.rolled_back) if outcome.rolled_back else None
            ),
            webhook=(
                WebhookOut.model_validate(outcome.webhook.model_dump()) if outcome.webhook else None
            ),
        )


class PromotionList(BaseModel):
    """A workload's promotions, newest first, rolled-back ones included."""

    items: list[PromotionOut]
