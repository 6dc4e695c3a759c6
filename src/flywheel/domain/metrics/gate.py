"""The promotion gate: is a candidate non-inferior to the reference, overall and per tool?

Scores are paired per eval item (both models answered the same item), so each check
bootstraps the per-item differences ``candidate − reference`` and passes when the lower
bound of the CI of their mean is at least ``−margin``.

The reference's per-item scores are an **input**. For accuracy metrics the production
model's own answers are the ground truth, so its scores are all 1.0 and the check reduces to
"the candidate's mean is ≥ 1 − margin, with confidence". Keeping them an input lets the same
gate compare judge scores, where the reference is rated too, or compare against a previous
candidate.

Items where either score is ``None`` (a judge reply that could not be parsed) are dropped
from the pair and counted, so a flaky judge shows up instead of silently scoring 0.

The boundary counts as a pass (``ci_low ≥ −margin``, with a 1e-9 tolerance for float
rounding) so that ``margin = 0`` means "no worse than the reference" rather than "strictly
better", which a candidate could never show against a reference at 1.0.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from flywheel.domain.metrics.stats import (
    DEFAULT_CONFIDENCE,
    DEFAULT_RESAMPLES,
    DEFAULT_SEED,
    Score,
    paired_difference,
)

_TOLERANCE = 1e-9


@dataclass(frozen=True, slots=True)
class PairedScores:
    """Per-item scores of candidate and reference on the same items, in the same order."""

    candidate: Sequence[float | None]
    reference: Sequence[float | None]

    def __post_init__(self) -> None:
        if len(self.candidate) != len(self.reference):
            raise ValueError(
                f"paired scores need equal lengths: candidate={len(self.candidate)} "
                f"reference={len(self.reference)}"
            )


@dataclass(frozen=True, slots=True)
class GateCheck:
    """One non-inferiority check: one metric, overall (``tool is None``) or for one tool."""

    metric: str
    tool: str | None
    difference: Score
    margin: float
    passed: bool
    dropped_items: int
    reason: str | None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "metric": self.metric,
            "tool": self.tool,
            "difference": self.difference.to_dict(),
            "margin": self.margin,
            "passed": self.passed,
            "dropped_items": self.dropped_items,
            "reason": self.reason,
        }


@dataclass(frozen=True, slots=True)
class GateResult:
    """The gate's verdict on one candidate variant."""

    candidate: str
    passed: bool
    checks: tuple[GateCheck, ...]
    failing_tools: tuple[str, ...] = field(default=())

    @property
    def reasons(self) -> tuple[str, ...]:
        """Why the candidate failed, one sentence per failed check."""
        return tuple(c.reason for c in self.checks if not c.passed and c.reason)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "candidate": self.candidate,
            "passed": self.passed,
            "failing_tools": list(self.failing_tools),
            "reasons": list(self.reasons),
            "checks": [c.to_dict() for c in self.checks],
        }


def _fmt(x: float) -> str:
    return f"{x:+.3f}"


def check_non_inferiority(
    *,
    metric: str,
    scores: PairedScores,
    margin: float,
    tool: str | None = None,
    min_items: int = 1,
    n_resamples: int = DEFAULT_RESAMPLES,
    confidence: float = DEFAULT_CONFIDENCE,
    seed: int = DEFAULT_SEED,
) -> GateCheck:
    """Paired-bootstrap non-inferiority of candidate vs reference on one metric."""
    if margin < 0:
        raise ValueError(f"margin must not be negative, got {margin}")
    pairs = [
        (c, r)
        for c, r in zip(scores.candidate, scores.reference, strict=True)
        if c is not None and r is not None
    ]
    dropped = len(scores.candidate) - len(pairs)
    diff = paired_difference(
        [c for c, _ in pairs],
        [r for _, r in pairs],
        n_resamples=n_resamples,
        confidence=confidence,
        seed=seed,
    )
    where = f"{metric} for tool {tool!r}" if tool is not None else metric
    dropped_note = f"; {dropped} item(s) dropped for missing scores" if dropped else ""
    needed = max(min_items, 1)
    if diff.n < needed or diff.value is None:
        too_few = f"{where}: only {diff.n} scored item(s), at least {needed} needed{dropped_note}"
        return GateCheck(metric, tool, diff, margin, False, dropped, too_few)
    # n >= 1 always yields an interval; the fallbacks only satisfy the type checker.
    low = diff.ci_low if diff.ci_low is not None else diff.value
    high = diff.ci_high if diff.ci_high is not None else diff.value
    passed = low >= -margin - _TOLERANCE
    reason: str | None = None
    if not passed:
        reason = (
            f"{where}: the candidate differs from the reference by {_fmt(diff.value)} on "
            f"average ({round(confidence * 100)}% CI {_fmt(low)} to {_fmt(high)}, "
            f"n={diff.n}); the lower bound is below the allowed {_fmt(-margin)}{dropped_note}"
        )
    return GateCheck(metric, tool, diff, margin, passed, dropped, reason)


def evaluate_gate(
    *,
    candidate: str,
    metrics: Mapping[str, PairedScores],
    margin: float,
    tool_groups: Mapping[str, Sequence[int]] | None = None,
    require_per_tool: bool = True,
    min_items: int = 1,
    n_resamples: int = DEFAULT_RESAMPLES,
    confidence: float = DEFAULT_CONFIDENCE,
    seed: int = DEFAULT_SEED,
) -> GateResult:
    """Run every gated metric overall and, with ``tool_groups``, per tool.

    ``tool_groups`` maps a tool to the indices of the eval items whose *reference* called
    it (see ``toolcalls.group_by_reference_tool``); the grouping comes from the reference,
    so it is the same for every candidate. With ``require_per_tool`` a failing tool fails
    the candidate; otherwise per-tool checks are reported only. Small tools have wide
    intervals, so strict per-tool gating favours candidates evaluated on more data.
    """
    if not metrics:
        raise ValueError("the gate needs at least one metric")

    def check(name: str, scores: PairedScores, tool: str | None = None) -> GateCheck:
        return check_non_inferiority(
            metric=name,
            scores=scores,
            margin=margin,
            tool=tool,
            min_items=min_items,
            n_resamples=n_resamples,
            confidence=confidence,
            seed=seed,
        )

    overall = [check(name, scores) for name, scores in metrics.items()]
    per_tool = [
        check(
            name,
            PairedScores(
                candidate=[scores.candidate[i] for i in indices],
                reference=[scores.reference[i] for i in indices],
            ),
            tool,
        )
        for tool, indices in (tool_groups or {}).items()
        for name, scores in metrics.items()
    ]
    failing_tools = tuple(sorted({c.tool for c in per_tool if not c.passed and c.tool}))
    passed = all(c.passed for c in overall) and (not require_per_tool or not failing_tools)
    return GateResult(
        candidate=candidate,
        passed=passed,
        checks=(*overall, *per_tool),
        failing_tools=failing_tools,
    )
