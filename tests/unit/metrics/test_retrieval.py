"""Retrieval metrics against hand-computed values."""

from __future__ import annotations

import itertools
import math
import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from flywheel.domain.metrics.retrieval import evaluate_retrieval, mrr_at_k, ndcg_at_k, recall_at_k

RANKING = ["d1", "d2", "d3", "d4", "d5", "d6", "d7", "d8", "d9", "d10", "d11"]


def test_recall_hand_computed() -> None:
    rel = {"d2", "d5", "d11"}
    assert recall_at_k(RANKING, rel, 1) == 0.0
    assert recall_at_k(RANKING, rel, 5) == pytest.approx(2 / 3)
    assert recall_at_k(RANKING, rel, 10) == pytest.approx(2 / 3)
    assert recall_at_k(RANKING, rel, 11) == 1.0


def test_recall_is_not_capped_at_k() -> None:
    assert recall_at_k(["a", "b"], {"a", "b", "c", "d"}, 1) == 0.25


def test_ndcg_hand_computed() -> None:
    # relevant at ranks 2 and 5; two relevant overall
    dcg = 1 / math.log2(3) + 1 / math.log2(6)
    idcg = 1 / math.log2(2) + 1 / math.log2(3)
    assert ndcg_at_k(RANKING, {"d2", "d5"}, 10) == pytest.approx(dcg / idcg)
    assert ndcg_at_k(RANKING, {"d2", "d5"}, 10) == pytest.approx(0.6240505200)


def test_ndcg_ideal_and_zero() -> None:
    assert ndcg_at_k(["a", "b", "x"], {"a", "b"}, 10) == pytest.approx(1.0)
    assert ndcg_at_k(RANKING, {"zz"}, 10) == 0.0
    # relevant only at rank 11 is outside the cut
    assert ndcg_at_k(RANKING, {"d11"}, 10) == 0.0


def test_ndcg_idcg_uses_min_rel_k() -> None:
    # 12 relevant ids, all of the top 10 relevant: ideal, so 1.0
    rel = {f"d{i}" for i in range(1, 13)}
    assert ndcg_at_k(RANKING, rel, 10) == pytest.approx(1.0)


def test_mrr_hand_computed() -> None:
    assert mrr_at_k(RANKING, {"d3", "d7"}, 10) == pytest.approx(1 / 3)
    assert mrr_at_k(RANKING, {"d1"}, 10) == 1.0
    assert mrr_at_k(RANKING, {"d11"}, 10) == 0.0
    assert mrr_at_k(RANKING, set(), 10) == 0.0


def test_duplicates_count_once() -> None:
    # the repeat gains nothing and still takes rank 2
    assert recall_at_k(["a", "a", "b"], {"a", "b"}, 2) == 0.5
    assert recall_at_k(["a", "a", "b"], {"a", "b"}, 3) == 1.0
    assert mrr_at_k(["x", "x", "a"], {"a"}, 3) == pytest.approx(1 / 3)
    dcg = 1 + 1 / math.log2(4)
    idcg = 1 + 1 / math.log2(3)
    assert ndcg_at_k(["a", "a", "b"], {"a", "b"}, 10) == pytest.approx(dcg / idcg)


def test_undefined_and_bad_k() -> None:
    with pytest.raises(ValueError, match="undefined"):
        recall_at_k(["a"], set(), 1)
    with pytest.raises(ValueError, match="undefined"):
        ndcg_at_k(["a"], set(), 1)
    with pytest.raises(ValueError, match="k must be"):
        recall_at_k(["a"], {"a"}, 0)


def test_evaluate_retrieval_means_per_query_and_skips() -> None:
    report = evaluate_retrieval(
        runs=[["a", "b", "c"], ["x", "y", "q2"], ["z"]],
        qrels=[{"a"}, {"q2", "other"}, set()],
        query_ids=["q1", "q2", "q3"],
        n_resamples=100,
    )
    assert report.query_ids == ("q1", "q2")
    assert report.skipped_query_ids == ("q3",)
    assert report.per_query["recall@1"] == (1.0, 0.0)
    assert report.per_query["recall@5"] == (1.0, 0.5)
    assert report.per_query["mrr@10"] == pytest.approx((1.0, 1 / 3))
    q2_ndcg = (1 / math.log2(4)) / (1 + 1 / math.log2(3))
    assert report.per_query["ndcg@10"] == pytest.approx((1.0, q2_ndcg))
    assert report.metrics["recall@5"].value == pytest.approx(0.75)
    assert report.metrics["ndcg@10"].n == 2
    assert set(report.to_dict()["metrics"]) == {
        "recall@1",
        "recall@5",
        "recall@10",
        "ndcg@10",
        "mrr@10",
    }


def test_evaluate_retrieval_validates_lengths_and_empty() -> None:
    with pytest.raises(ValueError, match="one ranking per query"):
        evaluate_retrieval([["a"]], [])
    with pytest.raises(ValueError, match="one query id"):
        evaluate_retrieval([["a"]], [{"a"}], query_ids=[])
    empty = evaluate_retrieval([], [])
    assert empty.metrics["ndcg@10"].value is None


doc_ids = st.sampled_from([f"d{i}" for i in range(15)])


@given(st.lists(doc_ids, max_size=20), st.sets(doc_ids, min_size=1, max_size=6))
def test_recall_monotone_in_k_and_bounded(retrieved: list[str], relevant: set[str]) -> None:
    values = [recall_at_k(retrieved, relevant, k) for k in range(1, 21)]
    assert all(a <= b for a, b in itertools.pairwise(values))
    for fn in (recall_at_k, ndcg_at_k, mrr_at_k):
        assert 0.0 <= fn(retrieved, relevant, 10) <= 1.0 + 1e-12


# -- properties of nDCG@10 and MRR@10 -------------------------------------------------------

corpus = [f"d{i}" for i in range(30)]


@st.composite
def ranked_queries(draw: st.DrawFn) -> tuple[list[str], set[str]]:
    """A ranking (distinct ids, any length up to the corpus) and a non-empty relevant set."""
    ranking = draw(st.permutations(corpus).map(lambda p: list(p)))
    ranking = ranking[: draw(st.integers(0, len(corpus)))]
    relevant = draw(st.sets(st.sampled_from(corpus), min_size=1, max_size=12))
    return ranking, relevant


@given(ranked_queries())
def test_ndcg_and_mrr_are_bounded(query: tuple[list[str], set[str]]) -> None:
    ranking, relevant = query
    assert 0.0 <= ndcg_at_k(ranking, relevant, 10) <= 1.0 + 1e-12
    assert 0.0 <= mrr_at_k(ranking, relevant, 10) <= 1.0
    hit = any(d in relevant for d in ranking[:10])
    assert (ndcg_at_k(ranking, relevant, 10) > 0) is hit
    assert (mrr_at_k(ranking, relevant, 10) > 0) is hit


@given(ranked_queries(), st.randoms(use_true_random=False))
def test_what_follows_the_cutoff_does_not_count(
    query: tuple[list[str], set[str]], rng: random.Random
) -> None:
    ranking, relevant = query
    tail = ranking[10:]
    rng.shuffle(tail)
    reordered = ranking[:10] + tail
    assert ndcg_at_k(reordered, relevant, 10) == ndcg_at_k(ranking, relevant, 10)
    assert mrr_at_k(reordered, relevant, 10) == mrr_at_k(ranking, relevant, 10)


@given(ranked_queries(), st.randoms(use_true_random=False))
def test_the_order_of_irrelevant_documents_does_not_count(
    query: tuple[list[str], set[str]], rng: random.Random
) -> None:
    ranking, relevant = query
    slots = [i for i, d in enumerate(ranking) if d not in relevant]
    shuffled = [ranking[i] for i in slots]
    rng.shuffle(shuffled)
    reordered = list(ranking)
    for slot, doc in zip(slots, shuffled, strict=True):
        reordered[slot] = doc  # relevant documents keep their ranks
    assert ndcg_at_k(reordered, relevant, 10) == pytest.approx(ndcg_at_k(ranking, relevant, 10))
    assert mrr_at_k(reordered, relevant, 10) == mrr_at_k(ranking, relevant, 10)


@given(st.sets(st.sampled_from(corpus), min_size=1, max_size=15), st.randoms())
def test_a_perfect_ranking_scores_one(relevant: set[str], rng: random.Random) -> None:
    first = sorted(relevant)
    rng.shuffle(first)  # any order of the relevant documents is perfect
    rest = [d for d in corpus if d not in relevant]
    rng.shuffle(rest)
    ranking = first + rest
    assert ndcg_at_k(ranking, relevant, 10) == pytest.approx(1.0)
    assert mrr_at_k(ranking, relevant, 10) == 1.0
