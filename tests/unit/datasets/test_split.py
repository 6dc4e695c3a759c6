"""Split properties: sizes, disjointness, determinism, stratification, rare classes, time."""

from __future__ import annotations

import math
from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flywheel.domain.datasets.split import RARE, split_records, split_sizes, strata

labels_st = st.lists(
    st.sampled_from(["a", "b", "c", "d", "no_tool", "solo1", "solo2"]), min_size=6, max_size=300
)


@given(
    labels=labels_st,
    eval_frac=st.floats(0.05, 0.6),
    val_ratio=st.floats(0.01, 0.9),
    seed=st.integers(0, 2**31 - 1),
)
@settings(max_examples=150, deadline=None)
def test_sizes_add_up_no_overlap_and_deterministic(
    labels: list[str], eval_frac: float, val_ratio: float, seed: int
) -> None:
    n = len(labels)
    eval_size = max(1, min(n - 1, int(n * eval_frac)))
    timestamps = list(range(n, 0, -1))
    result = split_records(
        labels=labels, timestamps=timestamps, eval_size=eval_size, val_ratio=val_ratio, seed=seed
    )
    parts = [set(result.eval), set(result.train), set(result.validation)]
    assert sum(map(len, parts)) == n
    assert set().union(*parts) == set(range(n))
    assert len(result.eval) == eval_size
    rest = n - eval_size
    assert len(result.validation) == min(math.ceil(val_ratio * rest), rest - 1)
    assert len(result.train) >= 1
    again = split_records(
        labels=labels, timestamps=timestamps, eval_size=eval_size, val_ratio=val_ratio, seed=seed
    )
    assert again == result


@given(
    counts=st.lists(st.integers(10, 80), min_size=2, max_size=5),
    seed=st.integers(0, 10_000),
)
@settings(max_examples=60, deadline=None)
def test_stratification_keeps_proportions(counts: list[int], seed: int) -> None:
    labels = [f"t{k}" for k, c in enumerate(counts) for _ in range(c)]
    n = len(labels)
    eval_size = max(len(counts), n // 5)
    result = split_records(
        labels=labels, timestamps=[0] * n, eval_size=eval_size, val_ratio=0.2, seed=seed
    )
    assert result.eval_stratified
    assert result.validation_stratified
    got = Counter(labels[i] for i in result.eval)
    for label, c in Counter(labels).items():
        expected = c * eval_size / n
        assert abs(got[label] - expected) <= 1.0 + 1e-9


def test_different_seeds_give_different_splits() -> None:
    labels = ["a", "b"] * 50
    one = split_records(labels=labels, timestamps=[0] * 100, eval_size=10, val_ratio=0.1, seed=1)
    two = split_records(labels=labels, timestamps=[0] * 100, eval_size=10, val_ratio=0.1, seed=2)
    assert one.eval != two.eval


def test_single_singleton_class_does_not_crash() -> None:
    labels = ["a"] * 30 + ["b"] * 30 + ["solo"]
    result = split_records(labels=labels, timestamps=[0] * 61, eval_size=10, val_ratio=0.2, seed=0)
    assert result.eval_stratified
    assert "solo" in result.pooled_classes
    assert 60 in set(result.eval) | set(result.train) | set(result.validation)


def test_several_singletons_pool_into_rare() -> None:
    mapped, pooled = strata(["a", "a", "b", "b", "x", "y"], n_test=3, n_train=3)
    assert mapped == ["a", "a", "b", "b", RARE, RARE]
    assert pooled == ("x", "y")


def test_a_lone_singleton_joins_the_smallest_class() -> None:
    mapped, _ = strata(["a"] * 5 + ["b"] * 3 + ["x"], n_test=3, n_train=6)
    assert mapped == ["a"] * 5 + ["b"] * 4


def test_more_classes_than_eval_slots_merges_smallest() -> None:
    labels = ["a"] * 20 + ["b"] * 10 + ["c"] * 3 + ["d"] * 2
    mapped, pooled = strata(labels, n_test=2, n_train=33)
    assert mapped is not None
    assert len(set(mapped)) == 2
    assert set(pooled) == {"b", "c", "d"}


def test_all_one_class_or_tiny_falls_back_to_random() -> None:
    assert strata(["a"] * 10, n_test=2, n_train=8)[0] is None
    assert strata(["a", "b"], n_test=1, n_train=1)[0] is None
    result = split_records(
        labels=["a", "b", "c"], timestamps=[3, 2, 1], eval_size=1, val_ratio=0.5, seed=0
    )
    assert not result.eval_stratified
    assert len(result.eval) == 1


def test_time_split_takes_the_newest_for_eval() -> None:
    labels = ["a", "b"] * 20
    timestamps = [100 - i for i in range(40)]
    timestamps[30] = 1000  # an out-of-order newest record
    result = split_records(
        labels=labels, timestamps=timestamps, eval_size=5, val_ratio=0.2, seed=0, strategy="time"
    )
    assert result.eval == (0, 1, 2, 3, 30)
    assert min(timestamps[i] for i in result.eval) >= max(timestamps[i] for i in result.train)


def test_sizes_validate() -> None:
    assert split_sizes(10, eval_size=3, val_ratio=0.1) == (3, 6, 1)
    assert split_sizes(4, eval_size=3, val_ratio=0.5) == (3, 1, 0)
    with pytest.raises(ValueError, match="cannot hold"):
        split_sizes(3, eval_size=3, val_ratio=0.1)
