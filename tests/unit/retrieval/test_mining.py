"""De-duplication by normalised query, and hard negatives without false negatives."""

from __future__ import annotations

from collections import Counter

from flywheel.domain.retrieval.mining import MergedQuery, merge_duplicates, mine_hard_negatives
from flywheel.domain.retrieval.records import UsableLog, examine_log
from tests.unit.retrieval.factories import make_log, passage_text


def _usable(*args: object, **kwargs: object) -> UsableLog:
    result = examine_log(
        make_log(*args, **kwargs),  # type: ignore[arg-type]
        positive_source="used_or_clicked",
        passage_issues=Counter(),
    )
    assert isinstance(result, UsableLog)
    return result


def _mine(
    query: MergedQuery,
    *,
    count: int = 3,
    excluded: set[str] | None = None,
    texts: dict[str, str] | None = None,
    reasons: Counter[str] | None = None,
) -> list[str]:
    text_of = {d: passage_text(d) for d in query.candidates} | (texts or {})
    return mine_hard_negatives(
        query,
        text_of=text_of,
        excluded_ids=excluded or set(),
        count=count,
        near_duplicate_threshold=0.9,
        reasons=reasons if reasons is not None else Counter(),
    )


def test_duplicates_merge_positives_and_keep_the_newest_text() -> None:
    old = _usable("reset password", ["a", "b", "c"], used=["a"], timestamp=1)
    new = _usable("Reset password?", ["b", "d", "a"], used=["b"], timestamp=2)
    merged = merge_duplicates([old, new])
    assert merged.query == "Reset password?"
    assert merged.positives == ("b", "a")  # newest log's positives first, none lost
    assert merged.log_count == 2
    assert merged.reference_run == ("b", "d", "a")


def test_merge_is_independent_of_input_order() -> None:
    logs = [
        _usable("reset password", ["a", "b", "c"], used=["a"], timestamp=1),
        _usable("reset password!", ["b", "d"], used=["b"], timestamp=2),
        _usable("RESET password", ["e", "a"], used=["e"], timestamp=2),
    ]
    assert merge_duplicates(logs) == merge_duplicates(logs[::-1])


def test_hard_negatives_are_the_highest_ranked_unused() -> None:
    query = merge_duplicates([_usable("q", ["n1", "p", "n2", "n3", "n4"], used=["p"])])
    assert _mine(query, count=3) == ["n1", "n2", "n3"]


def test_hard_negative_count_is_capped_by_what_the_logs_hold() -> None:
    query = merge_duplicates([_usable("q", ["p", "n1"], used=["p"])])
    assert _mine(query, count=5) == ["n1"]
    assert _mine(query, count=0) == []


def test_passage_used_for_the_same_query_elsewhere_is_never_a_negative() -> None:
    query = merge_duplicates([_usable("q", ["n1", "p", "other-used", "n2"], used=["p"])])
    reasons: Counter[str] = Counter()
    negatives = _mine(query, count=5, excluded={"other-used"}, reasons=reasons)
    assert "other-used" not in negatives
    assert negatives == ["n1", "n2"]
    assert reasons["relevant_for_same_query"] == 1


def test_positives_of_merged_duplicates_are_not_negatives_of_each_other() -> None:
    a = _usable("q", ["p1", "p2", "n1"], used=["p1"], timestamp=2)
    b = _usable("Q?", ["p2", "p1", "n2"], used=["p2"], timestamp=1)
    merged = merge_duplicates([a, b])
    negatives = _mine(merged, count=5)
    assert set(negatives) == {"n1", "n2"}


def test_exact_and_near_duplicates_of_positives_are_excluded() -> None:
    pos = "the quick brown fox jumps over the lazy dog near the river bank today"
    texts = {
        "p": pos,
        "copy": "The  quick brown fox jumps over the lazy dog near the river bank today.",
        "near": pos + " again",
        "far": "an unrelated passage about tax forms",
    }
    query = merge_duplicates([_usable("q", ["copy", "near", "p", "far"], used=["p"])])
    reasons: Counter[str] = Counter()
    assert _mine(query, count=5, texts=texts, reasons=reasons) == ["far"]
    assert reasons == Counter({"exact_duplicate_of_positive": 1, "near_duplicate_of_positive": 1})


def test_source_of_a_query_is_its_positives_majority_source() -> None:
    merged = merge_duplicates([_usable("q", ["p", "n"], used=["p"], source="faq")])
    assert merged.source == "faq"
    unsourced = merge_duplicates([_usable("q", ["p", "n"], used=["p"])])
    assert unsourced.source is None
