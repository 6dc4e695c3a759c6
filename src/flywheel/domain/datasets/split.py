"""Eval / train / validation split: class-aware, deterministic for a seed, safe for rare classes.

Sizes are integers fixed first: ``eval = eval_size``; of the rest, ``validation =
ceil(val_ratio × rest)`` capped so that train keeps at least one record (0 when only one
record remains). Both cuts are stratified by the record's label (the sorted set of called
tool names, or ``no_tool``) with scikit-learn's ``train_test_split``.

Rare-class rule (scikit-learn needs every class to have two members and each side of a cut
to have room for one of every class), applied separately to each cut:

1. classes with a single member are pooled into one ``__rare__`` class;
2. a pool of exactly one record joins the smallest other class;
3. while there are more classes than either side of the cut can hold, the smallest class
   (ties: by name) joins the pool;
4. with fewer than two classes left, the cut is a seeded random split (not stratified).

So a singleton tool lands on either side at random (never a crash), and stratification is
as fine as the sizes allow. The :class:`SplitResult` says which cuts were stratified and
which classes were pooled.

``split_strategy="time"``: eval is the most recent ``eval_size`` records (timestamp
descending, pull order breaking ties), so no eval prompt predates training data; train and
validation are then cut as above.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt
from sklearn.model_selection import train_test_split

RARE = "__rare__"


@dataclass(frozen=True, slots=True)
class Cut:
    """One train_test_split: which indices went to the test side and how it was done."""

    test: tuple[int, ...]
    rest: tuple[int, ...]
    stratified: bool
    pooled: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class SplitResult:
    """Indices into the split's input, each tuple ascending."""

    eval: tuple[int, ...]
    train: tuple[int, ...]
    validation: tuple[int, ...]
    seed: int
    strategy: Literal["stratified", "time"]
    eval_stratified: bool
    validation_stratified: bool
    pooled_classes: tuple[str, ...]


def strata(
    labels: Sequence[str], *, n_test: int, n_train: int
) -> tuple[list[str] | None, tuple[str, ...]]:
    """Labels after the rare-class rule, or None when the cut cannot be stratified."""
    counts = Counter(labels)
    mapping = {label: label for label in counts}
    pooled = sorted(label for label, c in counts.items() if c < 2)
    for label in pooled:
        mapping[label] = RARE
    groups = Counter({label: c for label, c in counts.items() if c >= 2})
    pool = sum(counts[label] for label in pooled)

    def _smallest() -> str:
        return min(groups, key=lambda g: (groups[g], g))

    if pool == 1 and groups:
        target = _smallest()
        mapping[pooled[0]] = target
        groups[target] += 1
        pool = 0
    while groups and len(groups) + (1 if pool else 0) > min(n_test, n_train):
        victim = _smallest()
        pool += groups.pop(victim)
        pooled.append(victim)
        for label, to in mapping.items():
            if to == victim:
                mapping[label] = RARE
    if len(groups) + (1 if pool else 0) < 2 or (pool == 1):
        return None, tuple(pooled)
    return [mapping[label] for label in labels], tuple(pooled)


def _class_codes(labels: Sequence[str]) -> npt.NDArray[np.int64]:
    """Each label's rank among the sorted distinct labels.

    scikit-learn stratifies on ``np.unique(y, return_inverse=True)``; ranks give it the same
    classes in the same order as the strings would (so the same split for a seed), without
    a fixed-width string array of every record's label (~100 MB at 1M records).
    """
    rank = {label: i for i, label in enumerate(sorted(set(labels)))}
    return np.fromiter((rank[label] for label in labels), dtype=np.int64, count=len(labels))


def cut(indices: Sequence[int], labels: Sequence[str], *, n_test: int, seed: int) -> Cut:
    """Split ``indices`` into ``n_test`` and the rest, stratified by ``labels`` when possible."""
    n = len(indices)
    if not 0 <= n_test <= n:
        raise ValueError(f"cannot take {n_test} of {n} records")
    if n_test == 0 or n_test == n:
        test, rest = (tuple(indices), ()) if n_test == n else ((), tuple(indices))
        return Cut(tuple(sorted(test)), tuple(sorted(rest)), False, ())
    stratify, pooled = strata(labels, n_test=n_test, n_train=n - n_test)
    rest_arr, test_arr = train_test_split(
        np.asarray(indices),
        test_size=n_test,
        random_state=seed,
        shuffle=True,
        stratify=None if stratify is None else _class_codes(stratify),
    )
    return Cut(
        test=tuple(np.sort(test_arr).tolist()),
        rest=tuple(np.sort(rest_arr).tolist()),
        stratified=stratify is not None,
        pooled=pooled,
    )


def split_sizes(total: int, *, eval_size: int, val_ratio: float) -> tuple[int, int, int]:
    """``(eval, train, validation)`` sizes for ``total`` records (``total > eval_size``)."""
    if total <= eval_size:
        raise ValueError(f"{total} records cannot hold an eval set of {eval_size} and a train set")
    rest = total - eval_size
    val = min(math.ceil(val_ratio * rest), rest - 1)
    return eval_size, rest - val, val


def split_records(
    *,
    labels: Sequence[str],
    timestamps: Sequence[int],
    eval_size: int,
    val_ratio: float,
    seed: int,
    strategy: Literal["stratified", "time"] = "stratified",
) -> SplitResult:
    """Split records (given by their labels and timestamps, in pull order) into three sets.

    Raises:
        ValueError: there are not more records than ``eval_size``.
    """
    n = len(labels)
    n_eval, _, n_val = split_sizes(n, eval_size=eval_size, val_ratio=val_ratio)
    everything = range(n)
    if strategy == "time":
        newest = sorted(everything, key=lambda i: (-timestamps[i], i))
        first = Cut(tuple(sorted(newest[:n_eval])), tuple(sorted(newest[n_eval:])), False, ())
    else:
        first = cut(everything, labels, n_test=n_eval, seed=seed)
    second = cut(first.rest, [labels[i] for i in first.rest], n_test=n_val, seed=seed)
    return SplitResult(
        eval=first.test,
        train=second.rest,
        validation=second.test,
        seed=seed,
        strategy=strategy,
        eval_stratified=first.stratified,
        validation_stratified=second.stratified,
        pooled_classes=tuple(sorted(set(first.pooled) | set(second.pooled))),
    )
