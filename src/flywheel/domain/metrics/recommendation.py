"""The recommendation: candidates that pass the gate, cheapest first, with projected savings.

``projected monthly savings = (reference cost − candidate cost) per request × requests in
the last 30 days``. Candidates are ranked by cost per 1k requests, then by p95 latency
(unknown latency last), then by name so the order is stable. Candidates that fail the gate
are listed with the gate's reasons in words, never silently dropped.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from flywheel.domain.metrics.cost import monthly_cost, monthly_savings
from flywheel.domain.metrics.gate import GateResult
from flywheel.domain.metrics.stats import LatencySummary


@dataclass(frozen=True, slots=True)
class CandidateOutcome:
    """What the recommendation needs to know about one evaluated candidate variant."""

    name: str
    gate: GateResult
    cost_per_1k_requests: float
    latency: LatencySummary


@dataclass(frozen=True, slots=True)
class RankedCandidate:
    """A candidate that passed the gate, with its economics."""

    rank: int
    name: str
    cost_per_1k_requests: float
    projected_monthly_cost: float
    projected_monthly_savings: float
    p50_latency_ms: float | None
    p95_latency_ms: float | None
    note: str | None


@dataclass(frozen=True, slots=True)
class RejectedCandidate:
    """A candidate that failed the gate, and why."""

    name: str
    failing_tools: tuple[str, ...]
    reasons: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Recommendation:
    """Ranked passing candidates (best first) and the rejected ones."""

    ranked: tuple[RankedCandidate, ...]
    rejected: tuple[RejectedCandidate, ...]
    reference_cost_per_1k_requests: float
    reference_monthly_cost: float
    requests_last_30_days: int

    @property
    def best(self) -> RankedCandidate | None:
        """The recommended candidate, if any passed."""
        return self.ranked[0] if self.ranked else None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "ranked": [_fields(r) for r in self.ranked],
            "rejected": [
                {"name": r.name, "failing_tools": list(r.failing_tools), "reasons": list(r.reasons)}
                for r in self.rejected
            ],
            "reference_cost_per_1k_requests": self.reference_cost_per_1k_requests,
            "reference_monthly_cost": self.reference_monthly_cost,
            "requests_last_30_days": self.requests_last_30_days,
        }


def _fields(row: RankedCandidate) -> dict[str, Any]:
    return {name: getattr(row, name) for name in row.__slots__}


def _rank_key(outcome: CandidateOutcome) -> tuple[float, float, str]:
    p95 = outcome.latency.p95_ms
    return (outcome.cost_per_1k_requests, math.inf if p95 is None else p95, outcome.name)


def recommend(
    *,
    candidates: Sequence[CandidateOutcome],
    reference_cost_per_1k_requests: float,
    requests_last_30_days: int,
) -> Recommendation:
    """Rank the candidates that passed the gate by cost and project their monthly savings."""
    passing = sorted((c for c in candidates if c.gate.passed), key=_rank_key)
    ranked = []
    for rank, outcome in enumerate(passing, start=1):
        savings = monthly_savings(
            reference_cost_per_1k=reference_cost_per_1k_requests,
            candidate_cost_per_1k=outcome.cost_per_1k_requests,
            requests_last_30_days=requests_last_30_days,
        )
        note = None
        if outcome.cost_per_1k_requests > reference_cost_per_1k_requests:
            note = "passes the gate but costs more than the reference"
        ranked.append(
            RankedCandidate(
                rank=rank,
                name=outcome.name,
                cost_per_1k_requests=outcome.cost_per_1k_requests,
                projected_monthly_cost=monthly_cost(
                    cost_per_1k=outcome.cost_per_1k_requests,
                    requests_last_30_days=requests_last_30_days,
                ),
                projected_monthly_savings=savings,
                p50_latency_ms=outcome.latency.p50_ms,
                p95_latency_ms=outcome.latency.p95_ms,
                note=note,
            )
        )
    rejected = tuple(
        RejectedCandidate(
            name=c.name,
            failing_tools=c.gate.failing_tools,
            reasons=c.gate.reasons or ("failed the gate",),
        )
        for c in sorted(candidates, key=lambda c: c.name)
        if not c.gate.passed
    )
    return Recommendation(
        ranked=tuple(ranked),
        rejected=rejected,
        reference_cost_per_1k_requests=reference_cost_per_1k_requests,
        reference_monthly_cost=monthly_cost(
            cost_per_1k=reference_cost_per_1k_requests,
            requests_last_30_days=requests_last_30_days,
        ),
        requests_last_30_days=requests_last_30_days,
    )
