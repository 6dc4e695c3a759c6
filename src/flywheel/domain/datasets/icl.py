"""Few-shot (ICL) example selection under each candidate's own token budget (blueprint D9).

Budget of a candidate: ``min(context_length, max_context_length) − reserved_tokens``,
counted with the candidate's tokenizer when one is injected, else with
:func:`estimate_tokens` (UTF-8 bytes / 3, which over-counts real tokenizers). Candidates that
share a budget and a counter share one ICL eval set (:func:`group_budgets`).

Selection works in two steps so the expensive part runs once per eval item, not per budget:

* a *preference* (:class:`Preference`): ordered phases of train positions with quotas —
  ``uniform_distribution``: one phase, round robin over labels (the rotation starts at a
  different label for each eval item, so tools are spread across the set), shortest
  records first within a label; ``semantic_similarity``: the most similar train records
  (``int(max_examples × relevance_ratio)`` slots), then the best match of each label not yet
  covered, then the remaining most similar;
* :func:`fill_examples` walks the phases and keeps each example that still fits the budget
  after the eval prompt, up to ``max_examples``. Fewer than ``min_examples`` is reported on
  the outcome, not raised. A train record with the eval item's own prompt is never used.
"""

from __future__ import annotations

import heapq
import math
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
import orjson

from flywheel.domain.datasets.formats import example_turns, icl_item, prompt_of

TokenCounter = Callable[[str], int]
#: Loads the SFT row of the train record at a position (the caller owns the storage).
RowLoader = Callable[[int], Mapping[str, Any]]


def estimate_tokens(text: str) -> int:
    """A conservative token count: UTF-8 bytes / 3, rounded up (real tokenizers give fewer)."""
    return math.ceil(len(text.encode()) / 3)


def icl_budget(*, context_length: int, max_context_length: int, reserved_tokens: int) -> int:
    """Tokens a candidate's ICL prompt (examples + eval prompt) may use."""
    return min(context_length, max_context_length) - reserved_tokens


@dataclass(frozen=True)
class BudgetGroup:
    """Candidates that get the same ICL eval set: same budget, same token counter."""

    budget: int
    counter: TokenCounter
    candidates: tuple[str, ...]
    tokenizer: str  # "estimate" or "candidate"


def group_budgets(
    candidates: Sequence[tuple[str, int]],
    *,
    max_context_length: int,
    reserved_tokens: int,
    counters: Mapping[str, TokenCounter] | None = None,
) -> list[BudgetGroup]:
    """Group ``(name, context_length)`` candidates by (budget, counter), in first-seen order."""
    counters = counters or {}
    groups: dict[tuple[int, int], list[str]] = {}
    counter_of: dict[int, TokenCounter] = {}
    for name, context_length in candidates:
        counter = counters.get(name, estimate_tokens)
        budget = icl_budget(
            context_length=context_length,
            max_context_length=max_context_length,
            reserved_tokens=reserved_tokens,
        )
        counter_of[id(counter)] = counter
        groups.setdefault((budget, id(counter)), []).append(name)
    return [
        BudgetGroup(
            budget=budget,
            counter=counter_of[key],
            candidates=tuple(names),
            tokenizer="estimate" if counter_of[key] is estimate_tokens else "candidate",
        )
        for (budget, key), names in groups.items()
    ]


@dataclass(frozen=True, slots=True)
class PoolEntry:
    """A train record that may serve as an example."""

    position: int
    label: str
    size: int  # bytes of its SFT row; shortest first within a label
    prompt_key: bytes


@dataclass(frozen=True, slots=True)
class Preference:
    """Ordered phases of train positions; each phase fills at most ``quota`` slots."""

    phases: tuple[tuple[tuple[int, ...], int], ...]
    #: Phases whose entries are skipped once their label is already among the chosen.
    coverage_phases: frozenset[int] = frozenset()


def uniform_preferences(
    pool: Sequence[PoolEntry], *, n_items: int, max_examples: int
) -> list[Preference]:
    """Round robin over labels (commonest first, rotated per item), shortest first in a label."""
    by_label: dict[str, list[PoolEntry]] = defaultdict(list)
    for entry in pool:
        by_label[entry.label].append(entry)
    labels = sorted(by_label, key=lambda lab: (-len(by_label[lab]), lab))
    # nsmallest == sorted(...)[:max_examples] (the keys are unique), without sorting all.
    shortest = {
        lab: [
            e.position
            for e in heapq.nsmallest(
                max_examples, by_label[lab], key=lambda e: (e.size, e.position)
            )
        ]
        for lab in labels
    }
    out: list[Preference] = []
    for item in range(n_items):
        shift = item % len(labels) if labels else 0
        rotated = labels[shift:] + labels[:shift]
        order = [
            shortest[lab][r]
            for r in range(max_examples)
            for lab in rotated
            if r < len(shortest[lab])
        ]
        out.append(Preference(phases=((tuple(order), max_examples),)))
    return out


def semantic_preferences(
    pool: Sequence[PoolEntry],
    similarities: npt.NDArray[np.floating[Any]],
    *,
    max_examples: int,
    relevance_ratio: float,
) -> list[Preference]:
    """Per eval item (a row of ``similarities`` against ``pool``): relevant, coverage, rest."""
    relevant = int(max_examples * relevance_ratio)
    top_k = min(len(pool), max(5 * max_examples, max_examples + 8))
    labels = np.asarray([e.label for e in pool])
    positions = np.asarray([e.position for e in pool])
    members = {lab: np.flatnonzero(labels == lab) for lab in np.unique(labels)}
    out: list[Preference] = []
    for row in similarities:
        if top_k == 0:
            out.append(Preference(phases=()))
            continue
        top = np.argpartition(-row, top_k - 1)[:top_k]
        top = top[np.lexsort((positions[top], -row[top]))]
        best = sorted(
            (
                (float(row[idx[np.argmax(row[idx])]]), int(idx[np.argmax(row[idx])]))
                for idx in members.values()
            ),
            key=lambda pair: (-pair[0], pair[1]),
        )
        ranked = tuple(int(positions[i]) for i in top)
        coverage = tuple(int(positions[i]) for _, i in best)
        out.append(
            Preference(
                phases=((ranked, relevant), (coverage, max_examples), (ranked, max_examples)),
                coverage_phases=frozenset({1}),
            )
        )
    return out


@dataclass(frozen=True, slots=True)
class IclOutcome:
    """What one eval item got under one budget."""

    eval_position: int
    examples: tuple[int, ...]
    prompt_tokens: int
    below_min: bool


@dataclass
class ExampleCache:
    """Rendered example turns and their token counts, shared across eval items of a budget."""

    load: RowLoader
    counter: TokenCounter
    _turns: dict[int, list[Mapping[str, Any]]] = field(default_factory=dict)
    _tokens: dict[int, int] = field(default_factory=dict)

    def turns(self, position: int) -> list[Mapping[str, Any]]:
        if position not in self._turns:
            self._turns[position] = example_turns(self.load(position), index=0)
        return self._turns[position]

    def tokens(self, position: int) -> int:
        if position not in self._tokens:
            self._tokens[position] = self.counter(orjson.dumps(self.turns(position)).decode())
        return self._tokens[position]


def fill_examples(
    *,
    eval_position: int,
    eval_row: Mapping[str, Any],
    eval_key: bytes,
    preference: Preference,
    pool: Mapping[int, PoolEntry],
    cache: ExampleCache,
    budget: int,
    max_examples: int,
    min_examples: int,
) -> tuple[dict[str, Any], IclOutcome]:
    """Pick examples that fit ``budget`` and build the ICL row for one eval item."""
    count = cache.counter
    available = budget - count(orjson.dumps(prompt_of(eval_row)).decode())
    chosen: list[int] = []
    covered: set[str] = set()
    for phase_no, (positions, quota) in enumerate(preference.phases):
        taken = 0
        for pos in positions:
            if len(chosen) >= max_examples or taken >= quota:
                break
            entry = pool[pos]
            if pos in chosen or entry.prompt_key == eval_key:
                continue
            if phase_no in preference.coverage_phases and entry.label in covered:
                continue
            cost = cache.tokens(pos)
            if cost <= available:
                chosen.append(pos)
                covered.add(entry.label)
                available -= cost
                taken += 1
    # Tokenizers are not additive across JSON pieces: re-count the whole prompt and drop
    # examples from the end until it truly fits.
    while True:
        shots = [example_turns(cache.load(pos), index=k) for k, pos in enumerate(chosen)]
        row = icl_item(eval_row, shots)
        tokens = count(orjson.dumps(prompt_of(row)).decode())
        if tokens <= budget or not chosen:
            break
        chosen.pop()
    outcome = IclOutcome(
        eval_position=eval_position,
        examples=tuple(chosen),
        prompt_tokens=tokens,
        below_min=len(chosen) < min_examples,
    )
    return row, outcome
