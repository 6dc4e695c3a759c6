"""Bootstrap CIs, paired differences and latency percentiles, including degenerate input."""

from __future__ import annotations

import math
import warnings

import numpy as np
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flywheel.domain.metrics.stats import (
    bootstrap_mean,
    paired_difference,
    summarize_latency,
)


def test_empty_sample_has_no_value_and_no_nan() -> None:
    score = bootstrap_mean([])
    assert score.n == 0
    assert score.value is None
    assert score.degenerate
    assert score.note == "no samples (n=0)"
    assert orjson.loads(orjson.dumps(score.to_dict()))["value"] is None


def test_single_sample_is_degenerate_point() -> None:
    score = bootstrap_mean([0.7])
    assert (score.value, score.ci_low, score.ci_high, score.n) == (0.7, 0.7, 0.7, 1)
    assert score.degenerate
    assert score.note == "single sample"


def test_all_equal_values_are_degenerate_point() -> None:
    score = bootstrap_mean([1.0] * 50)
    assert (score.value, score.ci_low, score.ci_high) == (1.0, 1.0, 1.0)
    assert score.degenerate
    assert "all values equal" in (score.note or "")


def test_ci_of_binary_sample_is_sensible() -> None:
    values = [1.0] * 80 + [0.0] * 20
    score = bootstrap_mean(values, n_resamples=2000, seed=1)
    assert score.value == pytest.approx(0.8)
    assert not score.degenerate
    assert score.ci_low is not None
    assert score.ci_high is not None
    # normal approximation: 0.8 ± 1.96 * sqrt(0.16 / 100) = 0.8 ± 0.078
    assert score.ci_low == pytest.approx(0.722, abs=0.03)
    assert score.ci_high == pytest.approx(0.878, abs=0.03)
    assert score.confidence == 0.95


def test_confidence_level_widens_interval() -> None:
    values = np.random.default_rng(3).normal(size=60)
    narrow = bootstrap_mean(values, confidence=0.8)
    wide = bootstrap_mean(values, confidence=0.99)
    assert narrow.ci_low is not None
    assert wide.ci_low is not None
    assert wide.ci_low < narrow.ci_low


def test_no_warnings_on_degenerate_input() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for values in ([], [1.0], [0.0, 0.0], [1.0, 1.0, 1.0]):
            bootstrap_mean(values)
            paired_difference(values, values)
        summarize_latency([])


def test_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="NaN"):
        bootstrap_mean([1.0, math.nan])
    with pytest.raises(ValueError, match="1-D"):
        bootstrap_mean([[1.0, 2.0]])  # type: ignore[list-item]
    with pytest.raises(ValueError, match="confidence"):
        bootstrap_mean([1.0, 2.0], confidence=1.0)
    with pytest.raises(ValueError, match="n_resamples"):
        bootstrap_mean([1.0, 2.0], n_resamples=0)
    with pytest.raises(ValueError, match="equal lengths"):
        paired_difference([1.0], [1.0, 0.0])


def test_paired_difference_removes_item_difficulty() -> None:
    rng = np.random.default_rng(0)
    difficulty = rng.normal(0, 10, size=40)
    reference = difficulty
    candidate = difficulty - 0.1 + rng.normal(0, 0.01, size=40)
    diff = paired_difference(candidate, reference)
    assert diff.value == pytest.approx(-0.1, abs=0.01)
    assert diff.ci_low is not None
    assert diff.ci_high is not None
    assert diff.ci_high - diff.ci_low < 0.02  # unpaired, the interval would span ~±3


def test_large_sample_is_chunked_and_fast() -> None:
    values = np.random.default_rng(0).random(20_000)
    score = bootstrap_mean(values, n_resamples=1000)
    assert score.ci_low is not None
    assert score.ci_high is not None
    assert score.ci_low < 0.5 < score.ci_high


def test_latency_percentiles_hand_computed() -> None:
    latency = summarize_latency([float(x) for x in range(1, 101)])
    assert latency.p50_ms == pytest.approx(50.5)
    assert latency.p95_ms == pytest.approx(95.05)
    assert latency.mean_ms == pytest.approx(50.5)
    assert latency.n == 100
    assert summarize_latency([]).to_dict() == {
        "p50_ms": None,
        "p95_ms": None,
        "mean_ms": None,
        "n": 0,
    }
    one = summarize_latency([12.0])
    assert (one.p50_ms, one.p95_ms) == (12.0, 12.0)


samples = st.lists(st.floats(-1e3, 1e3, allow_nan=False), max_size=40)


@settings(max_examples=60, deadline=None)
@given(samples, st.integers(0, 2**32 - 1))
def test_ci_contains_point_and_is_deterministic(values: list[float], seed: int) -> None:
    first = bootstrap_mean(values, n_resamples=200, seed=seed)
    second = bootstrap_mean(values, n_resamples=200, seed=seed)
    assert first == second
    if values:
        assert first.value is not None
        assert first.ci_low is not None
        assert first.ci_high is not None
        assert first.ci_low <= first.value <= first.ci_high
        assert all(math.isfinite(x) for x in (first.value, first.ci_low, first.ci_high))
    assert first.n == len(values)
