"""Retrieval metrics for ``embedding_job``: recall@k, nDCG@k and MRR@k with binary relevance.

Definitions (reference blueprint §5.2), with ``rel`` the relevant ids of a query and ``R_k``
its top-k retrieved ids:

* recall@k = ``|rel ∩ R_k| / |rel|`` (not capped at k: with more than k relevant ids the
  best possible recall@k is below 1, as in pytrec_eval);
* nDCG@k = ``DCG@k / IDCG@k`` with ``DCG@k = Σ_{i≤k} g_i / log2(i+1)``, ``g_i ∈ {0, 1}``,
  and IDCG the DCG of the ideal order (all relevant ids first);
* MRR@k = ``1 / rank`` of the first relevant id in the top k, else 0.

All are averaged over queries, and the per-query values are kept for CIs and paired tests.
Queries without relevant ids are skipped (the metrics are undefined there) and counted.
A document retrieved twice counts once, at its first rank; the repeat still occupies its
rank (it is what the retriever returned), so padding a ranking with copies earns nothing.
Plain Python suffices (per query the work is O(k)); ``ranx`` would pull numba and pandas
into the API process for no gain.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Any

from flywheel.domain.metrics.stats import (
    DEFAULT_CONFIDENCE,
    DEFAULT_RESAMPLES,
    DEFAULT_SEED,
    Score,
    bootstrap_mean,
)

DEFAULT_RECALL_KS: tuple[int, ...] = (1, 5, 10)
#: Our metric names → NeMo Evaluator (BEIR/pytrec_eval) names, for cross-checking NMP results.
#: MRR@10 has no exact counterpart there (pytrec_eval's ``recip_rank`` is not cut at 10).
NMP_METRIC_NAMES = {
    "recall@1": "recall_1",
    "recall@5": "recall_5",
    "recall@10": "recall_10",
    "ndcg@10": "ndcg_cut_10",
}


def _gains(retrieved: Sequence[str], relevant: set[str], k: int) -> list[bool]:
    """Binary gains of the top k; a repeated id gains nothing but still takes its rank."""
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    seen: set[str] = set()
    gains: list[bool] = []
    for doc in retrieved[:k]:
        gains.append(doc in relevant and doc not in seen)
        seen.add(doc)
    return gains


def recall_at_k(retrieved: Sequence[str], relevant: Collection[str], k: int) -> float:
    """``|rel ∩ R_k| / |rel|``; raises when ``relevant`` is empty (undefined)."""
    if not relevant:
        raise ValueError("recall is undefined for a query without relevant documents")
    rel = set(relevant)
    return sum(_gains(retrieved, rel, k)) / len(rel)


def _dcg(gains: Sequence[bool]) -> float:
    return sum(1.0 / math.log2(i + 2) for i, g in enumerate(gains) if g)


def ndcg_at_k(retrieved: Sequence[str], relevant: Collection[str], k: int) -> float:
    """Binary-gain nDCG@k; raises when ``relevant`` is empty (undefined)."""
    if not relevant:
        raise ValueError("nDCG is undefined for a query without relevant documents")
    rel = set(relevant)
    dcg = _dcg(_gains(retrieved, rel, k))
    idcg = _dcg([True] * min(len(rel), k))
    return dcg / idcg


def mrr_at_k(retrieved: Sequence[str], relevant: Collection[str], k: int) -> float:
    """Reciprocal rank of the first relevant document within the top k, else 0."""
    for rank, gain in enumerate(_gains(retrieved, set(relevant), k), start=1):
        if gain:
            return 1.0 / rank
    return 0.0


@dataclass(frozen=True, slots=True)
class RetrievalReport:
    """Mean retrieval metrics with CIs, and the per-query values behind them."""

    metrics: dict[str, Score]
    per_query: dict[str, tuple[float, ...]]
    query_ids: tuple[str, ...]
    skipped_query_ids: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "metrics": {name: score.to_dict() for name, score in self.metrics.items()},
            "per_query": {name: list(values) for name, values in self.per_query.items()},
            "query_ids": list(self.query_ids),
            "skipped_query_ids": list(self.skipped_query_ids),
        }


def evaluate_retrieval(
    runs: Sequence[Sequence[str]],
    qrels: Sequence[Collection[str]],
    *,
    query_ids: Sequence[str] | None = None,
    recall_ks: Sequence[int] = DEFAULT_RECALL_KS,
    ndcg_k: int = 10,
    mrr_k: int = 10,
    n_resamples: int = DEFAULT_RESAMPLES,
    confidence: float = DEFAULT_CONFIDENCE,
    seed: int = DEFAULT_SEED,
) -> RetrievalReport:
    """Score ranked results ``runs[i]`` (best first) against relevant ids ``qrels[i]``."""
    if len(runs) != len(qrels):
        raise ValueError(f"need one ranking per query: {len(runs)} runs, {len(qrels)} qrels")
    ids = list(query_ids) if query_ids is not None else [str(i) for i in range(len(runs))]
    if len(ids) != len(runs):
        raise ValueError(f"need one query id per query: {len(ids)} ids, {len(runs)} runs")
    names = [f"recall@{k}" for k in recall_ks] + [f"ndcg@{ndcg_k}", f"mrr@{mrr_k}"]
    values: dict[str, list[float]] = {name: [] for name in names}
    kept: list[str] = []
    skipped: list[str] = []
    for qid, retrieved, relevant in zip(ids, runs, qrels, strict=True):
        if not relevant:
            skipped.append(qid)
            continue
        kept.append(qid)
        for k in recall_ks:
            values[f"recall@{k}"].append(recall_at_k(retrieved, relevant, k))
        values[f"ndcg@{ndcg_k}"].append(ndcg_at_k(retrieved, relevant, ndcg_k))
        values[f"mrr@{mrr_k}"].append(mrr_at_k(retrieved, relevant, mrr_k))
    metrics = {
        name: bootstrap_mean(v, n_resamples=n_resamples, confidence=confidence, seed=seed)
        for name, v in values.items()
    }
    return RetrievalReport(
        metrics=metrics,
        per_query={name: tuple(v) for name, v in values.items()},
        query_ids=tuple(kept),
        skipped_query_ids=tuple(skipped),
    )
