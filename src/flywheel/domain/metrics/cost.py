"""Serving cost per 1k requests and its monthly projection.

``cost per 1k = (in_price × mean input tokens + out_price × mean output tokens) / 1e6 × 1000``
with prices per million tokens. Each model is costed on its own token counts where known
(tokenizers differ); the caller supplies them. A "month" is the last 30 days of logged
traffic: the caller passes that count, so projections need no clock here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any, Protocol

import numpy as np

from flywheel.domain.metrics.stats import as_float_array

TOKENS_PER_PRICE_UNIT = 1_000_000
REQUESTS_PER_COST_UNIT = 1_000


class PriceTable(Protocol):
    """Prices per million tokens; ``flywheel.config.schema.Pricing`` satisfies it."""

    @property
    def input_per_million_tokens(self) -> float: ...

    @property
    def output_per_million_tokens(self) -> float: ...


@dataclass(frozen=True, slots=True)
class CostEstimate:
    """Estimated serving cost of one model on the eval traffic."""

    mean_input_tokens: float
    mean_output_tokens: float
    cost_per_request: float
    cost_per_1k_requests: float
    n: int

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return asdict(self)


def cost_per_1k_requests(
    *, pricing: PriceTable, mean_input_tokens: float, mean_output_tokens: float
) -> float:
    """Cost of 1,000 requests of the given mean size."""
    if mean_input_tokens < 0 or mean_output_tokens < 0:
        raise ValueError("token counts must not be negative")
    per_request = (
        pricing.input_per_million_tokens * mean_input_tokens
        + pricing.output_per_million_tokens * mean_output_tokens
    ) / TOKENS_PER_PRICE_UNIT
    return per_request * REQUESTS_PER_COST_UNIT


def estimate_cost(
    *,
    pricing: PriceTable,
    input_tokens: Sequence[float],
    output_tokens: Sequence[float],
) -> CostEstimate:
    """Cost estimate from per-request token counts (for example the eval responses' usage).

    With no requests the estimate is zero cost with ``n == 0``; callers should not rank a
    candidate on that.
    """
    inputs = as_float_array(input_tokens, what="input_tokens")
    outputs = as_float_array(output_tokens, what="output_tokens")
    if inputs.size != outputs.size:
        raise ValueError(
            f"need input and output tokens per request: {inputs.size} vs {outputs.size}"
        )
    mean_in = float(np.mean(inputs)) if inputs.size else 0.0
    mean_out = float(np.mean(outputs)) if outputs.size else 0.0
    per_1k = cost_per_1k_requests(
        pricing=pricing, mean_input_tokens=mean_in, mean_output_tokens=mean_out
    )
    return CostEstimate(
        mean_input_tokens=mean_in,
        mean_output_tokens=mean_out,
        cost_per_request=per_1k / REQUESTS_PER_COST_UNIT,
        cost_per_1k_requests=per_1k,
        n=int(inputs.size),
    )


def monthly_cost(*, cost_per_1k: float, requests_last_30_days: int) -> float:
    """Projected cost of a month of the workload's current traffic."""
    if requests_last_30_days < 0:
        raise ValueError("requests_last_30_days must not be negative")
    return cost_per_1k / REQUESTS_PER_COST_UNIT * requests_last_30_days


def monthly_savings(
    *, reference_cost_per_1k: float, candidate_cost_per_1k: float, requests_last_30_days: int
) -> float:
    """``(reference − candidate) cost per request × monthly volume``; negative if dearer."""
    return monthly_cost(
        cost_per_1k=reference_cost_per_1k - candidate_cost_per_1k,
        requests_last_30_days=requests_last_30_days,
    )
