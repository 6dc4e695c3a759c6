"""ICL budgets per candidate, uniform and semantic selection, min/max examples, no self-leak."""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np

from flywheel.domain.datasets.formats import eval_item, sft_item
from flywheel.domain.datasets.icl import (
    ExampleCache,
    PoolEntry,
    estimate_tokens,
    fill_examples,
    group_budgets,
    icl_budget,
    semantic_preferences,
    uniform_preferences,
)
from flywheel.domain.datasets.records import ParsedRecord, parse_record
from tests.unit.datasets.factories import chat


def _row(user: str, call: str | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
    request, response = chat(user, call=call, tools=["t0", "t1", "t2"] if call else None)
    parsed = parse_record(1, request, response)
    assert isinstance(parsed, ParsedRecord)
    return eval_item(parsed, parse_arguments=True), sft_item(parsed, parse_arguments=True)


def test_budget_uses_candidate_context_cap_and_reserve() -> None:
    assert icl_budget(context_length=4096, max_context_length=32768, reserved_tokens=1000) == 3096
    assert icl_budget(context_length=65536, max_context_length=32768, reserved_tokens=1000) == 31768


def test_candidates_group_by_budget_and_counter() -> None:
    def tok(text: str) -> int:
        return len(text.split())

    groups = group_budgets(
        [("a", 4096), ("b", 4096), ("c", 8192), ("d", 4096)],
        max_context_length=32768,
        reserved_tokens=96,
        counters={"d": tok},
    )
    assert [(g.budget, g.candidates, g.tokenizer) for g in groups] == [
        (4000, ("a", "b"), "estimate"),
        (8096, ("c",), "estimate"),
        (4000, ("d",), "candidate"),
    ]


def test_estimate_over_counts_bytes() -> None:
    assert estimate_tokens("abcd") == 2
    assert estimate_tokens("é") == 1


def _pool(n: int, labels: list[str]) -> tuple[list[PoolEntry], dict[int, dict[str, Any]]]:
    rows, entries = {}, []
    for i in range(n):
        label = labels[i % len(labels)]
        _, sft = _row(
            f"train question {i} " + "pad " * (i % 7), call=label if label != "no_tool" else None
        )
        rows[i] = sft
        entries.append(PoolEntry(i, label, len(str(sft)), f"k{i}".encode()))
    return entries, rows


def test_uniform_spreads_across_tools_and_rotates() -> None:
    pool, _ = _pool(30, ["t0", "t1", "t2", "no_tool"])
    prefs = uniform_preferences(pool, n_items=4, max_examples=2)
    firsts = [pool[p.phases[0][0][0]].label for p in prefs]
    assert len(set(firsts)) == 4  # every item starts with a different label
    order = prefs[0].phases[0][0]
    assert Counter(pool[i].label for i in order[:4]) == Counter(
        {"t0": 1, "t1": 1, "t2": 1, "no_tool": 1}
    )


def _fill(
    pool: list[PoolEntry],
    rows: dict[int, dict[str, Any]],
    pref: Any,
    *,
    budget: int,
    eval_key: bytes = b"e",
    max_examples: int = 3,
    min_examples: int = 1,
) -> tuple[dict[str, Any], Any]:
    eval_row, _ = _row("the eval question")
    cache = ExampleCache(load=rows.__getitem__, counter=estimate_tokens)
    return fill_examples(
        eval_position=99,
        eval_row=eval_row,
        eval_key=eval_key,
        preference=pref,
        pool={e.position: e for e in pool},
        cache=cache,
        budget=budget,
        max_examples=max_examples,
        min_examples=min_examples,
    )


def test_examples_fit_the_budget_and_max() -> None:
    pool, rows = _pool(12, ["t0", "t1"])
    pref = uniform_preferences(pool, n_items=1, max_examples=3)[0]
    row, outcome = _fill(pool, rows, pref, budget=100_000)
    assert len(outcome.examples) == 3
    assert not outcome.below_min
    assert outcome.prompt_tokens <= 100_000
    small_row, small = _fill(pool, rows, pref, budget=outcome.prompt_tokens - 1)
    assert len(small.examples) < 3
    assert small.prompt_tokens <= outcome.prompt_tokens - 1
    assert len(row["request"]["messages"]) > len(small_row["request"]["messages"])


def test_too_small_budget_reports_below_min_without_crashing() -> None:
    pool, rows = _pool(6, ["t0"])
    pref = uniform_preferences(pool, n_items=1, max_examples=3)[0]
    row, outcome = _fill(pool, rows, pref, budget=10, min_examples=1)
    assert outcome.examples == ()
    assert outcome.below_min
    assert [m["role"] for m in row["request"]["messages"]] == ["system", "user"]


def test_never_uses_a_train_record_with_the_eval_prompt() -> None:
    pool, rows = _pool(6, ["t0"])
    pref = uniform_preferences(pool, n_items=1, max_examples=3)[0]
    _, outcome = _fill(
        pool, rows, pref, budget=100_000, eval_key=pool[pref.phases[0][0][0]].prompt_key
    )
    assert pref.phases[0][0][0] not in outcome.examples


def _toy_embed(texts: list[str]) -> np.ndarray:
    """Deterministic bag-of-letters embedding."""
    out = np.zeros((len(texts), 26))
    for i, t in enumerate(texts):
        for ch in t.lower():
            if "a" <= ch <= "z":
                out[i, ord(ch) - 97] += 1
    return out


def test_semantic_picks_nearest_then_covers_tools() -> None:
    texts = ["zzz zzz", "zzz zzy", "aaa bbb", "ccc ddd", "zzz zzx"]
    labels = ["t0", "t0", "t1", "t2", "t0"]
    pool = [PoolEntry(i, labels[i], 10, f"k{i}".encode()) for i in range(5)]
    ev = _toy_embed(["zzz"])
    tr = _toy_embed(texts)
    sims = (ev / np.linalg.norm(ev, axis=1, keepdims=True)) @ (
        tr / np.linalg.norm(tr, axis=1, keepdims=True)
    ).T
    pref = semantic_preferences(pool, sims, max_examples=3, relevance_ratio=0.34)[0]
    relevant, quota = pref.phases[0]
    assert quota == 1
    assert relevant[0] == 0  # exact letters match first
    coverage = pref.phases[1][0]
    assert {pool[i].label for i in coverage} == {"t0", "t1", "t2"}
    _, rows = _pool(5, labels)
    _, outcome = _fill(pool, rows, pref, budget=100_000)
    assert outcome.examples[0] == 0
    assert {labels[i] for i in outcome.examples} == {"t0", "t1", "t2"}
