"""Split queries — never passages — into eval, train and validation.

The unit of the split is a *cluster*: a de-duplicated query together with its lexical
near-duplicates (when a threshold is configured). A cluster lands wholly in one split, so
no eval query, nor anything that normalises or nearly matches it, reaches training. A
passage may appear in several splits; that is intended (a retriever is judged on finding
known passages for unseen questions).

Determinism: clusters are sorted by their smallest query id before any shuffling, so the
same logs and ``random_seed`` give the same split whatever order the store returned them.
"""

from __future__ import annotations

import math
import random
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

SplitStrategy = Literal["stratified", "time"]
_UNKNOWN = "\x00unknown"  # sorts first and cannot collide with a real source name


@dataclass(frozen=True, slots=True)
class SplitItem:
    """What the split needs to know about one query."""

    query_id: str
    cluster: str
    stratum: str | None
    timestamp: int


@dataclass(frozen=True, slots=True)
class QuerySplit:
    """Query ids per split, each sorted."""

    eval: tuple[str, ...]
    train: tuple[str, ...]
    val: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class _Cluster:
    key: str
    members: tuple[str, ...]
    stratum: str
    timestamp: int


def _clusters(items: Sequence[SplitItem]) -> list[_Cluster]:
    grouped: dict[str, list[SplitItem]] = defaultdict(list)
    for item in items:
        grouped[item.cluster].append(item)
    clusters = []
    for members in grouped.values():
        members.sort(key=lambda it: it.query_id)
        strata = sorted({m.stratum for m in members if m.stratum is not None})
        clusters.append(
            _Cluster(
                key=members[0].query_id,
                members=tuple(m.query_id for m in members),
                stratum=strata[0] if strata else _UNKNOWN,
                timestamp=max(m.timestamp for m in members),
            )
        )
    clusters.sort(key=lambda c: c.key)
    return clusters


def _take(ordered: Sequence[_Cluster], target: int) -> list[_Cluster]:
    taken: list[_Cluster] = []
    size = 0
    for cluster in ordered:
        if size >= target:
            break
        taken.append(cluster)
        size += len(cluster.members)
    return taken


def _quotas(sizes: dict[str, int], target: int) -> dict[str, int]:
    """Largest-remainder apportionment of ``target`` queries over strata by size."""
    total = sum(sizes.values())
    exact = {s: target * n / total for s, n in sizes.items()}
    quotas = {s: math.floor(v) for s, v in exact.items()}
    spare = target - sum(quotas.values())
    for s in sorted(exact, key=lambda s: (quotas[s] - exact[s], s))[:spare]:
        quotas[s] += 1
    return quotas


def _pick(
    clusters: Sequence[_Cluster], target: int, rng: random.Random, stratify: bool
) -> list[_Cluster]:
    if target <= 0:
        return []
    if not stratify:
        shuffled = list(clusters)
        rng.shuffle(shuffled)
        return _take(shuffled, target)
    by_stratum: dict[str, list[_Cluster]] = defaultdict(list)
    for cluster in clusters:
        by_stratum[cluster.stratum].append(cluster)
    quotas = _quotas({s: sum(len(c.members) for c in cs) for s, cs in by_stratum.items()}, target)
    picked: list[_Cluster] = []
    for stratum in sorted(by_stratum):
        members = by_stratum[stratum]
        rng.shuffle(members)
        picked.extend(_take(members, quotas[stratum]))
    return picked


def split_queries(
    items: Sequence[SplitItem],
    *,
    eval_size: int,
    val_ratio: float,
    seed: int | None,
    strategy: SplitStrategy = "stratified",
) -> QuerySplit:
    """Assign every query to exactly one of eval / train / val.

    Args:
        items: one per de-duplicated query; ``cluster`` ties near-duplicates together.
        eval_size: queries held out for evaluation (a cluster is never cut, so the eval set
            can exceed this by less than one cluster).
        val_ratio: share of the remaining queries for validation; at least one validation
            query when two or more clusters remain, and training always keeps one cluster.
        seed: ``random_seed``; None draws fresh randomness (not reproducible).
        strategy: ``stratified`` — random, proportional by ``stratum`` when any item has one;
            ``time`` — eval takes the most recent clusters, the rest is split as above.

    Returns:
        The three id sets, sorted.
    """
    rng = random.Random(seed)
    clusters = _clusters(items)
    stratify = any(c.stratum != _UNKNOWN for c in clusters)
    if strategy == "time":
        newest = sorted(clusters, key=lambda c: (-c.timestamp, c.key))
        eval_part = _take(newest, eval_size)
    else:
        eval_part = _pick(clusters, eval_size, rng, stratify)
    held = {c.key for c in eval_part}
    rest = [c for c in clusters if c.key not in held]

    rest_size = sum(len(c.members) for c in rest)
    val_target = min(max(1, round(rest_size * val_ratio)), rest_size - 1) if len(rest) > 1 else 0
    val_part = _pick(rest, val_target, rng, stratify)
    if len(val_part) == len(rest):  # a large cluster swallowed everything: keep one to train on
        val_part = val_part[:-1]
    in_val = {c.key for c in val_part}
    train_part = [c for c in rest if c.key not in in_val]

    def ids(part: Sequence[_Cluster]) -> tuple[str, ...]:
        return tuple(sorted(q for c in part for q in c.members))

    return QuerySplit(eval=ids(eval_part), train=ids(train_part), val=ids(val_part))
