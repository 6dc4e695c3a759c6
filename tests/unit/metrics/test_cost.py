"""Cost per 1k requests and monthly projections."""

from __future__ import annotations

import pytest

from flywheel.config.schema import Pricing
from flywheel.domain.metrics.cost import (
    cost_per_1k_requests,
    estimate_cost,
    monthly_cost,
    monthly_savings,
)

REFERENCE = Pricing(input_per_million_tokens=3.0, output_per_million_tokens=15.0)


def test_cost_per_1k_hand_computed() -> None:
    # (3 × 1000 + 15 × 200) / 1e6 = 0.006 per request → 6.0 per 1k
    assert cost_per_1k_requests(
        pricing=REFERENCE, mean_input_tokens=1000, mean_output_tokens=200
    ) == pytest.approx(6.0)


def test_estimate_cost_uses_means() -> None:
    estimate = estimate_cost(pricing=REFERENCE, input_tokens=[500, 1500], output_tokens=[100, 300])
    assert estimate.mean_input_tokens == 1000
    assert estimate.mean_output_tokens == 200
    assert estimate.cost_per_request == pytest.approx(0.006)
    assert estimate.cost_per_1k_requests == pytest.approx(6.0)
    assert estimate.n == 2
    assert estimate.to_dict()["cost_per_1k_requests"] == pytest.approx(6.0)


def test_estimate_cost_empty_and_free() -> None:
    assert estimate_cost(pricing=REFERENCE, input_tokens=[], output_tokens=[]).n == 0
    free = estimate_cost(pricing=Pricing(), input_tokens=[10], output_tokens=[10])
    assert free.cost_per_1k_requests == 0.0


def test_estimate_cost_rejects_mismatch_and_negative() -> None:
    with pytest.raises(ValueError, match="per request"):
        estimate_cost(pricing=REFERENCE, input_tokens=[1, 2], output_tokens=[1])
    with pytest.raises(ValueError, match="negative"):
        cost_per_1k_requests(pricing=REFERENCE, mean_input_tokens=-1, mean_output_tokens=0)
    with pytest.raises(ValueError, match="negative"):
        monthly_cost(cost_per_1k=1.0, requests_last_30_days=-1)


def test_monthly_projection_and_savings() -> None:
    assert monthly_cost(cost_per_1k=6.0, requests_last_30_days=300_000) == pytest.approx(1800.0)
    savings = monthly_savings(
        reference_cost_per_1k=6.0, candidate_cost_per_1k=0.5, requests_last_30_days=300_000
    )
    assert savings == pytest.approx(1650.0)
    dearer = monthly_savings(
        reference_cost_per_1k=1.0, candidate_cost_per_1k=2.0, requests_last_30_days=1000
    )
    assert dearer == pytest.approx(-1.0)
