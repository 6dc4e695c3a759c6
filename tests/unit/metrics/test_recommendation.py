"""Ranking candidates that pass the gate, with savings and latency."""

from __future__ import annotations

import orjson
import pytest

from flywheel.domain.metrics.gate import PairedScores, evaluate_gate
from flywheel.domain.metrics.recommendation import CandidateOutcome, recommend
from flywheel.domain.metrics.stats import LatencySummary


def outcome(name: str, *, correct: int, cost: float, p95: float | None = 100.0) -> CandidateOutcome:
    scores = PairedScores([1.0] * correct + [0.0] * (100 - correct), [1.0] * 100)
    gate = evaluate_gate(candidate=name, metrics={"accuracy": scores}, margin=0.05)
    latency = LatencySummary(
        p50_ms=None if p95 is None else p95 / 2, p95_ms=p95, mean_ms=p95, n=100
    )
    return CandidateOutcome(name=name, gate=gate, cost_per_1k_requests=cost, latency=latency)


def test_ranks_passing_candidates_by_cost_with_savings() -> None:
    rec = recommend(
        candidates=[
            outcome("mid", correct=100, cost=1.0, p95=300.0),
            outcome("cheap-but-bad", correct=60, cost=0.1),
            outcome("cheapest", correct=100, cost=0.5, p95=800.0),
        ],
        reference_cost_per_1k_requests=6.0,
        requests_last_30_days=300_000,
    )
    assert [r.name for r in rec.ranked] == ["cheapest", "mid"]
    best = rec.best
    assert best is not None
    assert best.rank == 1
    # (6.0 − 0.5) / 1000 × 300,000
    assert best.projected_monthly_savings == pytest.approx(1650.0)
    assert best.projected_monthly_cost == pytest.approx(150.0)
    assert best.p95_latency_ms == 800.0
    assert rec.reference_monthly_cost == pytest.approx(1800.0)
    assert [r.name for r in rec.rejected] == ["cheap-but-bad"]
    assert "accuracy: the candidate differs" in rec.rejected[0].reasons[0]
    payload = orjson.loads(orjson.dumps(rec.to_dict()))
    assert payload["ranked"][0]["name"] == "cheapest"
    assert payload["rejected"][0]["name"] == "cheap-but-bad"


def test_ties_break_on_p95_latency_then_name() -> None:
    rec = recommend(
        candidates=[
            outcome("b", correct=100, cost=1.0, p95=None),
            outcome("c", correct=100, cost=1.0, p95=200.0),
            outcome("a", correct=100, cost=1.0, p95=200.0),
            outcome("d", correct=100, cost=1.0, p95=100.0),
        ],
        reference_cost_per_1k_requests=2.0,
        requests_last_30_days=1000,
    )
    assert [r.name for r in rec.ranked] == ["d", "a", "c", "b"]


def test_dearer_candidate_is_flagged_with_negative_savings() -> None:
    rec = recommend(
        candidates=[outcome("big", correct=100, cost=9.0)],
        reference_cost_per_1k_requests=6.0,
        requests_last_30_days=1000,
    )
    assert rec.ranked[0].projected_monthly_savings == pytest.approx(-3.0)
    assert rec.ranked[0].note == "passes the gate but costs more than the reference"


def test_no_candidates() -> None:
    rec = recommend(candidates=[], reference_cost_per_1k_requests=6.0, requests_last_30_days=0)
    assert rec.best is None
    assert rec.to_dict()["ranked"] == []
