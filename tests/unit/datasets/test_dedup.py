"""Exact and near-duplicate detection, determinism, scale, and the contamination check."""

from __future__ import annotations

import random
import time

from flywheel.domain.datasets.dedup import (
    NearDuplicateIndex,
    Shingler,
    find_contamination,
    jaccard,
    prompt_key,
)
from flywheel.domain.datasets.records import normalise_text


def test_normalisation_ignores_case_space_and_unicode_forms() -> None:
    assert normalise_text("  Hello\tWORLD \n") == "hello world"
    assert prompt_key("Ｈｅｌｌｏ  world") == prompt_key("hello world")
    assert prompt_key("hello world") != prompt_key("hello worlds")


def test_exact_jaccard_of_shingles() -> None:
    s = Shingler()
    a = s.shingles("a b c d e")
    assert jaccard(a, s.shingles("A  b c d e")) == 1.0
    assert jaccard(a, s.shingles("x y z w v")) == 0.0
    # 3 shingles vs 4 sharing 3: 3/4
    assert jaccard(a, s.shingles("a b c d e f")) == 0.75


def test_near_duplicates_keep_the_first_offered() -> None:
    index = NearDuplicateIndex(0.7)
    base = "please book a flight from paris to berlin next monday morning for two adults"
    assert index.add(base) is None
    assert index.add(base + " please") == 0  # Jaccard 12/13
    assert index.add("what is the refund policy for cancelled hotel bookings in winter") is None


def test_near_duplicate_is_deterministic_across_instances() -> None:
    rng = random.Random(3)
    words = [f"w{i}" for i in range(200)]
    texts = [" ".join(rng.choices(words, k=20)) for _ in range(300)]
    texts += [t + " extra" for t in texts[:50]]
    runs = []
    for _ in range(2):
        index = NearDuplicateIndex(0.8)
        runs.append([index.add(t) for t in texts])
    assert runs[0] == runs[1]
    assert sum(r is not None for r in runs[0][300:]) >= 45


def test_near_duplicate_scales_linearly() -> None:
    rng = random.Random(1)
    words = [f"w{i}" for i in range(5000)]
    index = NearDuplicateIndex(0.8)
    started = time.perf_counter()
    for _ in range(20_000):
        index.add(" ".join(rng.choices(words, k=25)))
    # Quadratic pairwise work would be 2e8 comparisons; LSH keeps this to seconds.
    assert time.perf_counter() - started < 30


def test_contamination_reports_exact_and_near() -> None:
    eval_items = [
        (
            0,
            prompt_key("book a flight to rome tomorrow for me please now"),
            "book a flight to rome tomorrow for me please now",
        ),
        (1, prompt_key("unrelated question about invoices"), "unrelated question about invoices"),
        (2, prompt_key("Cancel My Order"), "Cancel My Order"),
    ]
    train = [
        (10, prompt_key("cancel my order"), "cancel my order"),
        (11, prompt_key("x"), "book a flight to rome tomorrow for me please now thanks"),
    ]
    hits = find_contamination(eval_items=eval_items, train_items=train, near_threshold=0.7)
    assert [(h.eval_position, h.train_position, h.kind) for h in hits] == [
        (0, 11, "near"),
        (2, 10, "exact"),
    ]
    exact_only = find_contamination(eval_items=eval_items, train_items=train, near_threshold=None)
    assert [(h.eval_position, h.kind) for h in exact_only] == [(2, "exact")]


def test_contamination_finds_what_an_exhaustive_jaccard_check_finds() -> None:
    # The shared-shingle pre-filter must never hide a pair that reaches the threshold.
    rng = random.Random(7)
    vocab = [f"v{i}" for i in range(400)]
    evals = [" ".join(rng.choices(vocab, k=30)) for _ in range(15)]
    train: list[str] = [" ".join(rng.choices(vocab, k=30)) for _ in range(300)]
    for i, text in enumerate(evals[:10]):  # edited copies: 1 to 10 words replaced
        words = text.split()
        for k in range(i + 1):
            words[(k * 3) % len(words)] = f"edit{i}x{k}"
        train.append(" ".join(words))
    shingler = Shingler()
    threshold = 0.6
    expected = {
        e
        for e, text in enumerate(evals)
        if any(jaccard(shingler.shingles(text), shingler.shingles(t)) >= threshold for t in train)
    }
    hits = find_contamination(
        eval_items=[(e, prompt_key(t), t) for e, t in enumerate(evals)],
        train_items=[(100 + i, prompt_key(t), t) for i, t in enumerate(train)],
        near_threshold=threshold,
    )
    assert 0 < len(expected) < 10  # some edited copies are near, the heavily edited not
    assert {h.eval_position for h in hits} == expected


def test_contamination_still_checks_prompts_under_three_words() -> None:
    # Under three words a prompt is one order-free shingle: "flight book" ~ "book flight".
    hits = find_contamination(
        eval_items=[(0, prompt_key("book flight"), "book flight")],
        train_items=[(5, prompt_key("flight book"), "flight book")],
        near_threshold=0.8,
    )
    assert [(h.eval_position, h.train_position, h.kind) for h in hits] == [(0, 5, "near")]
