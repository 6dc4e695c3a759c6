"""The query-level split: a partition, clusters kept whole, deterministic, stratified."""

from __future__ import annotations

import random
from collections import Counter

from hypothesis import given, settings
from hypothesis import strategies as st

from flywheel.domain.retrieval.split import SplitItem, split_queries


@st.composite
def split_inputs(draw: st.DrawFn) -> tuple[list[SplitItem], int, float, int]:
    n = draw(st.integers(min_value=3, max_value=80))
    cluster_count = draw(st.integers(min_value=1, max_value=n))
    strata = draw(st.sampled_from([(None,), ("a", "b"), ("a", "b", "c", None)]))
    items = [
        SplitItem(
            query_id=f"q{i:03d}",
            cluster=f"c{draw(st.integers(0, cluster_count - 1))}",
            stratum=draw(st.sampled_from(strata)),
            timestamp=draw(st.integers(0, 10**6)),
        )
        for i in range(n)
    ]
    eval_size = draw(st.integers(min_value=1, max_value=n))
    val_ratio = draw(st.floats(min_value=0.01, max_value=0.99))
    seed = draw(st.integers(0, 2**32))
    return items, eval_size, val_ratio, seed


@settings(max_examples=150, deadline=None)
@given(split_inputs(), st.sampled_from(["stratified", "time"]))
def test_split_is_a_partition_that_keeps_clusters_whole(
    data: tuple[list[SplitItem], int, float, int], strategy: str
) -> None:
    items, eval_size, val_ratio, seed = data
    split = split_queries(
        items,
        eval_size=eval_size,
        val_ratio=val_ratio,
        seed=seed,
        strategy=strategy,  # type: ignore[arg-type]
    )
    parts = (set(split.eval), set(split.train), set(split.val))
    assert sum(map(len, parts)) == len(items)
    assert set().union(*parts) == {it.query_id for it in items}
    where = {q: i for i, part in enumerate(parts) for q in part}
    by_cluster: dict[str, set[int]] = {}
    for it in items:
        by_cluster.setdefault(it.cluster, set()).add(where[it.query_id])
    assert all(len(places) == 1 for places in by_cluster.values())
    assert split.eval, "eval is never empty"
    if len(by_cluster) > 1 and len(split.eval) < len(items):
        assert split.train, "training keeps at least one cluster when any remain"


@settings(max_examples=100, deadline=None)
@given(split_inputs())
def test_split_is_deterministic_and_ignores_input_order(
    data: tuple[list[SplitItem], int, float, int],
) -> None:
    items, eval_size, val_ratio, seed = data
    shuffled = list(items)
    random.Random(seed).shuffle(shuffled)
    first = split_queries(items, eval_size=eval_size, val_ratio=val_ratio, seed=seed)
    second = split_queries(shuffled, eval_size=eval_size, val_ratio=val_ratio, seed=seed)
    assert first == second


@settings(max_examples=100, deadline=None)
@given(st.integers(3, 200), st.integers(1, 50), st.integers(0, 1000))
def test_singleton_clusters_give_exactly_eval_size(n: int, eval_size: int, seed: int) -> None:
    items = [SplitItem(f"q{i}", f"q{i}", None, i) for i in range(n)]
    split = split_queries(items, eval_size=min(eval_size, n - 2), val_ratio=0.2, seed=seed)
    assert len(split.eval) == min(eval_size, n - 2)
    assert len(split.val) >= 1
    assert len(split.train) >= 1


def test_different_seeds_give_different_eval_sets() -> None:
    items = [SplitItem(f"q{i}", f"q{i}", None, i) for i in range(100)]
    a = split_queries(items, eval_size=20, val_ratio=0.1, seed=1)
    b = split_queries(items, eval_size=20, val_ratio=0.1, seed=2)
    assert a.eval != b.eval


def test_eval_is_stratified_by_source() -> None:
    items = [SplitItem(f"q{i}", f"q{i}", "faq" if i < 75 else "manual", i) for i in range(100)]
    split = split_queries(items, eval_size=20, val_ratio=0.1, seed=7)
    strata = Counter("faq" if int(q[1:]) < 75 else "manual" for q in split.eval)
    assert strata == Counter({"faq": 15, "manual": 5})


def test_time_strategy_holds_out_the_newest_queries() -> None:
    items = [SplitItem(f"q{i:02d}", f"q{i:02d}", None, timestamp=i) for i in range(40)]
    split = split_queries(items, eval_size=5, val_ratio=0.1, seed=0, strategy="time")
    assert split.eval == ("q35", "q36", "q37", "q38", "q39")
