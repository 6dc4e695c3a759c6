"""Uncertainty for every reported score: bootstrap CIs, paired differences, latency percentiles.

Eval sets are small (tens to a few hundred items), so a bare mean invites over-reading a
two-point difference. Every score therefore travels as a :class:`Score` with its confidence
interval and sample size.

We use a vectorised numpy percentile bootstrap rather than ``scipy.stats.bootstrap``:
scipy warns (``DegenerateDataWarning``) and returns NaN for BCa on constant or single-item
samples, which are routine here (a candidate that gets everything right), while our pytest
treats warnings as errors and the API must never emit NaN. Degenerate inputs are handled
explicitly instead: the point estimate is returned with ``ci_low == ci_high == value`` and a
note that says why.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

#: Default resamples; the job's ``evaluation_config.bootstrap_samples`` overrides it.
DEFAULT_RESAMPLES = 1000
DEFAULT_CONFIDENCE = 0.95
DEFAULT_SEED = 0
# Bound the (resamples x n) index matrix so memory stays flat for large eval sets.
_MAX_CHUNK_ELEMENTS = 4_000_000

FloatArray = NDArray[np.float64]


@dataclass(frozen=True, slots=True)
class Score:
    """A mean with its bootstrap confidence interval.

    ``value``/``ci_low``/``ci_high`` are ``None`` only when ``n == 0`` (no data is not a
    score of 0). ``degenerate`` is true when no interval could be estimated (``n < 2`` or
    all values equal); then the interval collapses onto the point and ``note`` says why.
    """

    value: float | None
    ci_low: float | None
    ci_high: float | None
    n: int
    confidence: float
    degenerate: bool = False
    note: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (the API exposes it as is)."""
        return asdict(self)


@dataclass(frozen=True, slots=True)
class LatencySummary:
    """Latency percentiles in milliseconds; ``None`` when there were no requests."""

    p50_ms: float | None
    p95_ms: float | None
    mean_ms: float | None
    n: int

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return asdict(self)


def as_float_array(values: Sequence[float] | FloatArray, *, what: str = "values") -> FloatArray:
    """Convert to a 1-D float array, refusing NaN/inf so they cannot leak into a report."""
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != 1:
        raise ValueError(f"{what}: expected a 1-D sequence, got shape {array.shape}")
    if array.size and not np.all(np.isfinite(array)):
        raise ValueError(f"{what}: contains NaN or infinite values")
    return array


def _check_params(n_resamples: int, confidence: float) -> None:
    if n_resamples < 1:
        raise ValueError(f"n_resamples must be positive, got {n_resamples}")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")


def _resample_means(
    values: FloatArray, *, n_resamples: int, rng: np.random.Generator
) -> FloatArray:
    n = values.size
    chunk = max(1, _MAX_CHUNK_ELEMENTS // n)
    parts: list[FloatArray] = []
    done = 0
    while done < n_resamples:
        size = min(chunk, n_resamples - done)
        idx = rng.integers(0, n, size=(size, n))
        parts.append(values[idx].mean(axis=1))
        done += size
    return np.concatenate(parts)


def bootstrap_mean(
    values: Sequence[float] | FloatArray,
    *,
    n_resamples: int = DEFAULT_RESAMPLES,
    confidence: float = DEFAULT_CONFIDENCE,
    seed: int = DEFAULT_SEED,
) -> Score:
    """Mean of ``values`` with a percentile-bootstrap CI; deterministic for a given seed.

    The interval is widened, if needed, to contain the point estimate: with tiny or very
    skewed samples the percentile interval can miss the mean by rounding, and a report whose
    interval excludes its own value only confuses readers.
    """
    _check_params(n_resamples, confidence)
    array = as_float_array(values)
    n = int(array.size)
    if n == 0:
        return Score(None, None, None, 0, confidence, degenerate=True, note="no samples (n=0)")
    point = float(array.mean())
    if n == 1:
        return Score(point, point, point, 1, confidence, degenerate=True, note="single sample")
    if float(np.ptp(array)) == 0.0:
        return Score(
            point,
            point,
            point,
            n,
            confidence,
            degenerate=True,
            note="all values equal; no variation to resample",
        )
    rng = np.random.default_rng(seed)
    means = _resample_means(array, n_resamples=n_resamples, rng=rng)
    alpha = (1.0 - confidence) / 2.0
    low, high = np.percentile(means, [100.0 * alpha, 100.0 * (1.0 - alpha)])
    return Score(
        point,
        min(float(low), point),
        max(float(high), point),
        n,
        confidence,
    )


def paired_difference(
    candidate: Sequence[float] | FloatArray,
    reference: Sequence[float] | FloatArray,
    *,
    n_resamples: int = DEFAULT_RESAMPLES,
    confidence: float = DEFAULT_CONFIDENCE,
    seed: int = DEFAULT_SEED,
) -> Score:
    """Mean of ``candidate - reference`` per eval item, with a paired bootstrap CI.

    Both models answered the same items, so items are resampled together; resampling the
    per-item differences is exactly that, and it removes the item-difficulty variance an
    unpaired comparison would carry.
    """
    cand = as_float_array(candidate, what="candidate")
    ref = as_float_array(reference, what="reference")
    if cand.shape != ref.shape:
        raise ValueError(
            f"paired scores need equal lengths, got candidate={cand.size} reference={ref.size}"
        )
    return bootstrap_mean(cand - ref, n_resamples=n_resamples, confidence=confidence, seed=seed)


def summarize_latency(latencies_ms: Sequence[float] | FloatArray) -> LatencySummary:
    """p50/p95/mean latency (linear interpolation between order statistics)."""
    array = as_float_array(latencies_ms, what="latencies_ms")
    if array.size == 0:
        return LatencySummary(None, None, None, 0)
    p50, p95 = np.percentile(array, [50.0, 95.0])
    return LatencySummary(float(p50), float(p95), float(array.mean()), int(array.size))
