"""Query de-duplication, positives and hard negatives.

Decisions (also in ``docs/embedding-datasets.md``):

* **Duplicates merge, they are not discarded.** Logs whose queries normalise to the same
  key become one query. Its text and reference ranking come from the most recent usable
  log; its positives are the union over all of them (most recent log first), because a
  second log that used a different passage is evidence, not noise.
* **No false negatives.** A passage any log marked used *or* clicked for the same
  normalised query — whether or not that log was usable, whatever ``positive_source`` says
  — is never a negative for it. Neither is a passage whose text equals a positive's after
  normalisation, or whose word-set Jaccard with a positive reaches the threshold.
* **Hard means highly ranked.** Candidates are ordered by their best position in any
  duplicate's ranking (the production ranking when logged, otherwise list order), ties to
  the more recent log; the first ``num_hard_negatives`` are kept.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from flywheel.domain.retrieval.records import UsableLog, normalise_passage, reference_ranking
from flywheel.domain.retrieval.similarity import jaccard, word_set


def query_id(norm_query: str) -> str:
    """A stable id derived from the normalised query, so reruns give the same ids."""
    return "q-" + hashlib.sha256(norm_query.encode("utf-8")).hexdigest()[:16]


@dataclass(frozen=True, slots=True)
class MergedQuery:
    """One de-duplicated query with everything its dataset rows need (ids only, no texts)."""

    query_id: str
    query: str
    norm_query: str
    timestamp: int
    log_count: int
    positives: tuple[str, ...]
    #: Every returned id, best position first (positives included; mining filters them).
    candidates: tuple[str, ...]
    #: The production retriever's order from the most recent log, if it logged ranks/scores.
    reference_run: tuple[str, ...] | None
    #: Most common ``source`` among the positives' passages, for stratification.
    source: str | None


def _order(log: UsableLog) -> list[str]:
    ranked = reference_ranking(log.passages)
    return ranked if ranked is not None else [p.doc_id for p in log.passages]


def merge_duplicates(logs: Sequence[UsableLog]) -> MergedQuery:
    """Merge the usable logs of one normalised query (see the module docstring)."""
    if not logs:
        raise ValueError("merge_duplicates needs at least one log")
    # Newest first; equal timestamps fall back to the query text so the result does not
    # depend on the order the store returned them.
    newest_first = sorted(logs, key=lambda log: (-log.timestamp, log.query))
    latest = newest_first[0]

    positives: dict[str, None] = {}
    best: dict[str, tuple[int, int]] = {}
    sources: Counter[str] = Counter()
    for age, log in enumerate(newest_first):
        positives.update(dict.fromkeys(log.positives))
        for position, doc_id in enumerate(_order(log)):
            key = (position, age)
            if doc_id not in best or key < best[doc_id]:
                best[doc_id] = key
        wanted = set(log.positives)
        sources.update(p.source for p in log.passages if p.doc_id in wanted and p.source)

    source = min(sources, key=lambda s: (-sources[s], s)) if sources else None
    ranking = reference_ranking(latest.passages)
    return MergedQuery(
        query_id=query_id(latest.norm_query),
        query=latest.query,
        norm_query=latest.norm_query,
        timestamp=latest.timestamp,
        log_count=len(logs),
        positives=tuple(positives),
        candidates=tuple(sorted(best, key=lambda d: (best[d], d))),
        reference_run=tuple(ranking) if ranking is not None else None,
        source=source,
    )


def mine_hard_negatives(
    query: MergedQuery,
    *,
    text_of: Mapping[str, str],
    excluded_ids: Iterable[str],
    count: int,
    near_duplicate_threshold: float,
    reasons: Counter[str],
) -> list[str]:
    """Pick up to ``count`` negative ids for one query; tally every exclusion in ``reasons``.

    Args:
        query: the merged query.
        text_of: passage text by id (the de-duplicated corpus).
        excluded_ids: ids used or clicked for this normalised query by any log.
        count: ``num_hard_negatives``.
        near_duplicate_threshold: word-set Jaccard at or above which a candidate counts as a
            near duplicate of a positive.
        reasons: counter of exclusion reasons, updated in place.

    Returns:
        Negative ids, hardest first. Fewer than ``count`` when the logs hold too few.
    """
    if count <= 0:
        return []
    excluded = set(excluded_ids) | set(query.positives)
    positive_keys = {normalise_passage(text_of[p]) for p in query.positives}
    positive_words = [word_set(text_of[p]) for p in query.positives]
    negatives: list[str] = []
    for doc_id in query.candidates:
        if doc_id in query.positives:
            continue
        if doc_id in excluded:
            reasons["relevant_for_same_query"] += 1
            continue
        text = text_of[doc_id]
        if normalise_passage(text) in positive_keys:
            reasons["exact_duplicate_of_positive"] += 1
            continue
        words = word_set(text)
        if any(jaccard(words, pw) >= near_duplicate_threshold for pw in positive_words):
            reasons["near_duplicate_of_positive"] += 1
            continue
        negatives.append(doc_id)
        if len(negatives) == count:
            break
    return negatives
