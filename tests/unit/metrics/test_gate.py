"""The paired non-inferiority gate, overall and per tool."""

from __future__ import annotations

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flywheel.domain.metrics.gate import (
    GateResult,
    PairedScores,
    check_non_inferiority,
    evaluate_gate,
)


def accuracy(correct: int, total: int) -> PairedScores:
    """Candidate accuracy items against the reference's own answers (all 1.0)."""
    return PairedScores(
        candidate=[1.0] * correct + [0.0] * (total - correct), reference=[1.0] * total
    )


def test_perfect_candidate_passes_even_with_zero_margin() -> None:
    check = check_non_inferiority(metric="acc", scores=accuracy(30, 30), margin=0.0)
    assert check.passed
    assert check.difference.degenerate
    assert check.reason is None


def test_clearly_worse_candidate_fails_with_reason() -> None:
    check = check_non_inferiority(metric="acc", scores=accuracy(60, 100), margin=0.05)
    assert not check.passed
    assert check.difference.value == pytest.approx(-0.4)
    assert check.reason is not None
    assert check.reason.startswith("acc: the candidate differs from the reference by -0.400")
    assert "below the allowed -0.050" in check.reason


def test_lower_bound_decides_not_the_mean() -> None:
    # mean 0.97 is within the margin, but with n=30 the lower bound is not
    small = check_non_inferiority(metric="acc", scores=accuracy(29, 30), margin=0.05)
    assert small.difference.value == pytest.approx(-1 / 30)
    assert small.difference.ci_low is not None
    assert small.difference.ci_low < -0.05
    assert not small.passed
    # same mean with many more items: the lower bound is inside the margin
    large = check_non_inferiority(metric="acc", scores=accuracy(970, 1000), margin=0.05)
    assert large.passed


def test_boundary_counts_as_pass() -> None:
    # every resample of a constant difference is exactly −margin (up to float rounding)
    check = check_non_inferiority(
        metric="judge",
        scores=PairedScores(candidate=[0.95] * 10, reference=[1.0] * 10),
        margin=0.05,
    )
    assert check.passed


def test_reference_scores_are_an_input_relative_judge_scores() -> None:
    # judge scores where the reference is rated too: the candidate is better on average
    cand = [0.9, 0.8, 1.0, 0.7, 0.9, 0.8, 1.0, 0.9]
    ref = [0.8, 0.8, 0.9, 0.7, 0.8, 0.8, 0.9, 0.8]
    check = check_non_inferiority(
        metric="judge_similarity", scores=PairedScores(cand, ref), margin=0.0
    )
    assert check.difference.value == pytest.approx(0.0625)
    assert check.passed


def test_missing_scores_are_dropped_and_counted() -> None:
    scores = PairedScores(candidate=[1.0, None, 1.0, 0.5], reference=[1.0, 1.0, None, 0.5])
    check = check_non_inferiority(metric="judge", scores=scores, margin=0.1)
    assert check.dropped_items == 2
    assert check.difference.n == 2
    assert check.passed


def test_no_items_fails_explaining_why() -> None:
    check = check_non_inferiority(
        metric="judge", scores=PairedScores([None, None], [1.0, 1.0]), margin=0.1
    )
    assert not check.passed
    assert check.reason == (
        "judge: only 0 scored item(s), at least 1 needed; 2 item(s) dropped for missing scores"
    )


def test_min_items() -> None:
    check = check_non_inferiority(metric="acc", scores=accuracy(3, 3), margin=0.1, min_items=5)
    assert not check.passed


def test_validation() -> None:
    with pytest.raises(ValueError, match="equal lengths"):
        PairedScores([1.0], [])
    with pytest.raises(ValueError, match="margin"):
        check_non_inferiority(metric="acc", scores=accuracy(1, 1), margin=-0.1)
    with pytest.raises(ValueError, match="at least one metric"):
        evaluate_gate(candidate="c", metrics={}, margin=0.1)


def _gate(require_per_tool: bool) -> GateResult:
    # 40 items of tool "a" (all right) and 10 of tool "b" (half right)
    cand = [1.0] * 40 + [1.0] * 5 + [0.0] * 5
    metrics = {"function_name_and_args_accuracy": PairedScores(cand, [1.0] * 50)}
    groups = {"a": tuple(range(40)), "b": tuple(range(40, 50))}
    return evaluate_gate(
        candidate="small-lora",
        metrics=metrics,
        margin=0.15,
        tool_groups=groups,
        require_per_tool=require_per_tool,
    )


def test_gate_reports_failing_tools() -> None:
    result = _gate(require_per_tool=True)
    overall, tool_a, tool_b = result.checks
    assert overall.tool is None
    assert overall.difference.value == pytest.approx(-0.1)
    assert tool_a.passed
    assert not tool_b.passed
    assert result.failing_tools == ("b",)
    assert not result.passed
    assert any("for tool 'b'" in reason for reason in result.reasons)
    payload = orjson.loads(orjson.dumps(result.to_dict()))
    assert payload["failing_tools"] == ["b"]
    assert len(payload["checks"]) == 3


def test_gate_can_report_tools_without_requiring_them() -> None:
    result = _gate(require_per_tool=False)
    assert result.failing_tools == ("b",)
    assert result.passed == result.checks[0].passed


def test_gate_is_deterministic() -> None:
    assert _gate(True) == _gate(True)


# -- properties ----------------------------------------------------------------------------

unit_scores = st.lists(
    st.floats(0.0, 1.0, allow_nan=False, allow_infinity=False), min_size=1, max_size=40
)
margins = st.floats(0.0, 1.0, allow_nan=False, allow_infinity=False)


@settings(max_examples=60)
@given(unit_scores, margins)
def test_a_candidate_identical_to_the_reference_passes_at_any_margin(
    scores: list[float], margin: float
) -> None:
    check = check_non_inferiority(
        metric="acc",
        scores=PairedScores(candidate=list(scores), reference=list(scores)),
        margin=margin,
        n_resamples=200,
    )
    assert check.passed, check.reason
    assert check.difference.value == 0.0


@st.composite
def paired(draw: st.DrawFn) -> PairedScores:
    n = draw(st.integers(1, 40))
    values = st.floats(0.0, 1.0, allow_nan=False, allow_infinity=False)
    return PairedScores(
        candidate=draw(st.lists(values, min_size=n, max_size=n)),
        reference=draw(st.lists(values, min_size=n, max_size=n)),
    )


@settings(max_examples=60)
@given(paired(), margins, margins)
def test_passing_is_monotone_in_the_margin(scores: PairedScores, a: float, b: float) -> None:
    low, high = sorted((a, b))
    strict = check_non_inferiority(metric="acc", scores=scores, margin=low, n_resamples=200)
    loose = check_non_inferiority(metric="acc", scores=scores, margin=high, n_resamples=200)
    assert strict.difference == loose.difference  # the margin moves the bar, not the interval
    if strict.passed:
        assert loose.passed
