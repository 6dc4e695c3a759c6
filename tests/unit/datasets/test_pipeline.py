"""The streaming cleaner: reason counts, newest-wins dedup, context budget, windows."""

from __future__ import annotations

from flywheel.domain.datasets.icl import estimate_tokens
from flywheel.domain.datasets.pipeline import RecordCleaner
from flywheel.domain.datasets.records import DropReason
from tests.unit.datasets.factories import chat


def test_counts_add_up_and_newest_duplicate_wins() -> None:
    cleaner = RecordCleaner(parse_arguments=True)
    kept = [cleaner.offer(30, *chat("Same  question")), cleaner.offer(20, *chat("same question"))]
    bad = chat("x", call="f", arguments="{oops")
    kept.append(cleaner.offer(10, *bad))
    assert kept[0] is not None
    assert kept[0].record.timestamp == 30
    assert kept[1] is None
    assert kept[2] is None
    counts = cleaner.counts
    assert counts.pulled == 3
    assert counts.kept == 1
    assert counts.drops == {DropReason.duplicate: 1, DropReason.invalid_tool_arguments: 1}
    assert counts.pulled_window == (10, 30)
    assert counts.kept_window == (30, 30)
    assert "invalid_tool_arguments=1" in cleaner.describe()


def test_over_budget_of_every_candidate_is_dropped() -> None:
    long = "word " * 1800
    cleaner = RecordCleaner(
        parse_arguments=True,
        context_budgets=[(1000, estimate_tokens), (2000, lambda t: len(t.split()))],
    )
    assert cleaner.offer(1, *chat(long)) is not None  # fits the word counter of the 2000 window
    cleaner = RecordCleaner(parse_arguments=True, context_budgets=[(1000, estimate_tokens)])
    assert cleaner.offer(1, *chat(long)) is None
    assert cleaner.counts.drops[DropReason.over_context_budget] == 1
    assert cleaner.offer(2, *chat(long[:100])) is not None  # the dropped one shadows nothing


def test_near_duplicates_removed_when_configured() -> None:
    base = "please book a flight from paris to berlin next monday morning for two adults"
    cleaner = RecordCleaner(parse_arguments=True, near_duplicate_threshold=0.8)
    assert cleaner.offer(2, *chat(base)) is not None
    assert cleaner.offer(1, *chat(base + " thanks")) is None
    assert cleaner.counts.drops == {DropReason.near_duplicate: 1}
