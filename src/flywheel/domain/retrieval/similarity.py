"""Lexical near-duplicate detection for queries and passages (Jaccard over word sets).

Lexical rather than embedding similarity keeps the dataset build free of any model and
exactly reproducible. Query grouping uses the prefix-filter similarity join (Chaudhuri et
al., 2006): two sets with Jaccard ≥ t must share a token among the first
``|x| - ceil(t·|x|) + 1`` tokens of each, in one global rare-first order, so only pairs
that share such a token are compared — near-linear on real query logs instead of n².
"""

from __future__ import annotations

import math
import re
from collections import Counter, defaultdict
from collections.abc import Sequence

_WORD = re.compile(r"\w+")


def word_set(text: str) -> frozenset[str]:
    """The case-folded word tokens of ``text``."""
    return frozenset(_WORD.findall(text.casefold()))


def jaccard(a: frozenset[str], b: frozenset[str]) -> float:
    """|a ∩ b| / |a ∪ b|; two empty sets are identical (1.0)."""
    if not a and not b:
        return 1.0
    return len(a & b) / len(a | b)


def near_duplicate_groups(texts: Sequence[str], threshold: float) -> list[int]:
    """Label each text with a group id so texts with Jaccard ≥ ``threshold`` share one.

    Grouping is transitive (union-find), which is what a leakage guard needs: if a ~ b and
    b ~ c, all three must land in the same split. Returns, for each input index, the
    smallest index in its group (stable and independent of hash seeds).
    """
    if not 0 < threshold <= 1:
        raise ValueError(f"threshold must be in (0, 1], got {threshold}")
    sets = [word_set(t) for t in texts]
    frequency: Counter[str] = Counter(tok for s in sets for tok in s)
    parent = list(range(len(texts)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    def union(i: int, j: int) -> None:
        ri, rj = find(i), find(j)
        if ri != rj:
            parent[max(ri, rj)] = min(ri, rj)

    index: dict[str, list[int]] = defaultdict(list)
    for i, tokens in enumerate(sets):
        ordered = sorted(tokens, key=lambda tok: (frequency[tok], tok))
        prefix_len = len(ordered) - math.ceil(threshold * len(ordered)) + 1
        candidates: set[int] = set()
        for tok in ordered[:prefix_len]:
            candidates.update(index[tok])
            index[tok].append(i)
        if not tokens:
            # Empty word sets (punctuation-only texts) only match each other.
            candidates.update(index[""])
            index[""].append(i)
        for j in candidates:
            if find(i) != find(j) and jaccard(tokens, sets[j]) >= threshold:
                union(i, j)
    return [find(i) for i in range(len(texts))]
