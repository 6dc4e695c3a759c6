"""Per-log checks: drop reasons, passage cleaning, positive selection, reference ranking."""

from __future__ import annotations

from collections import Counter

import pytest

from flywheel.domain.logs import RetrievalLog
from flywheel.domain.retrieval.records import (
    DropReason,
    PassageIssue,
    PositiveSource,
    UsableLog,
    examine_log,
    normalise_query,
    reference_ranking,
)
from tests.unit.retrieval.factories import make_log, passage


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("How do I reset my password?", "how do i reset my password"),
        ("  reset\tpassword\n", "Reset Password"),
        ("ｒｅｓｅｔ", "reset"),  # NFKC folds full-width letters
        ('"reset password."', "reset password"),
    ],
)
def test_normalise_query_merges_trivial_variants(a: str, b: str) -> None:
    assert normalise_query(a) == normalise_query(b)


def test_normalise_query_keeps_different_words_apart() -> None:
    assert normalise_query("reset my password") != normalise_query("reset your password")


def _examine(
    log: RetrievalLog, source: PositiveSource = "used_or_clicked"
) -> tuple[UsableLog | DropReason, Counter[str]]:
    issues: Counter[str] = Counter()
    return examine_log(log, positive_source=source, passage_issues=issues), issues


@pytest.mark.parametrize(
    ("log", "reason"),
    [
        (make_log("   ?? ", ["a"], used=["a"]), DropReason.empty_query),
        (make_log("q", [], used=["a"]), DropReason.no_retrieved),
        (make_log("q", ["a", "b"]), DropReason.no_positives),
        (make_log("q", ["a", "b"], used=["zzz"]), DropReason.positive_not_retrieved),
    ],
)
def test_each_unusable_log_gets_one_reason(log: RetrievalLog, reason: DropReason) -> None:
    result, _ = _examine(log)
    assert result == reason


def test_missing_positive_ids_are_counted_but_present_ones_kept() -> None:
    result, issues = _examine(make_log("q", ["a", "b"], used=["a", "ghost"]))
    assert isinstance(result, UsableLog)
    assert result.positives == ("a",)
    assert issues["positive_id_not_retrieved"] == 1


@pytest.mark.parametrize(
    ("source", "expected"),
    [("used", ("a",)), ("clicked", ("b",)), ("used_or_clicked", ("a", "b"))],
)
def test_positive_source_selects_ids(source: PositiveSource, expected: tuple[str, ...]) -> None:
    result, _ = _examine(make_log("q", ["a", "b", "c"], used=["a"], clicked=["b"]), source)
    assert isinstance(result, UsableLog)
    assert result.positives == expected


def test_clicked_only_log_has_no_positives_when_source_is_used() -> None:
    result, _ = _examine(make_log("q", ["a", "b"], clicked=["a"]), "used")
    assert result == DropReason.no_positives


def test_bad_passages_are_removed_individually() -> None:
    log = make_log("q", ["a"], used=["a"]).model_copy(
        update={
            "retrieved": [
                passage("a", rank=0),
                passage("bad\tid", rank=1),
                passage("blank", rank=2, text="   "),
                passage("a", rank=3, text="a repeat"),
            ]
        }
    )
    result, issues = _examine(log)
    assert isinstance(result, UsableLog)
    assert [p.doc_id for p in result.passages] == ["a"]
    assert issues == Counter(
        {
            PassageIssue.unsafe_doc_id: 1,
            PassageIssue.empty_text: 1,
            PassageIssue.repeated_in_log: 1,
        }
    )


def test_only_blank_passages_means_no_retrieved() -> None:
    log = make_log("q", ["a"], used=["a"], texts={"a": " "})
    result, _ = _examine(log)
    assert result == DropReason.no_retrieved


def test_reference_ranking_prefers_ranks_then_scores() -> None:
    by_rank = (passage("x", rank=2, score=0.9), passage("y", rank=0, score=0.1))
    assert reference_ranking(by_rank) == ["y", "x"]
    by_score = (passage("x", score=0.2), passage("y", score=0.8), passage("z", score=0.8))
    assert reference_ranking(by_score) == ["y", "z", "x"]
    partial = (passage("x", rank=0), passage("y"))
    assert reference_ranking(partial) is None
