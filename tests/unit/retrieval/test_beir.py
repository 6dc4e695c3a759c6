"""Output rows: truncation, the corpus builder, BEIR and training shapes."""

from __future__ import annotations

from flywheel.domain.retrieval.beir import (
    QRELS_HEADER,
    RESERVED_SPECIAL_TOKENS,
    CorpusBuilder,
    Truncator,
    corpus_rows,
    estimate_tokens,
    truncate_to_tokens,
)
from tests.unit.retrieval.factories import passage


def test_estimate_over_counts_english_and_cjk() -> None:
    english = "The retriever returns passages ranked by cosine similarity. " * 10
    assert estimate_tokens(english) >= len(english) / 4
    assert estimate_tokens("検索結果") == 4
    assert estimate_tokens("") == 0


def test_truncation_respects_the_budget_with_the_estimate() -> None:
    text = "word " * 1000
    cut = truncate_to_tokens(text, 100)
    assert estimate_tokens(cut) <= 100
    assert text.startswith(cut)
    assert truncate_to_tokens("short", 100) == "short"


def test_truncation_uses_an_injected_counter() -> None:
    def words(text: str) -> int:
        return len(text.split())

    cut = truncate_to_tokens("one two three four five six", 3, words)
    assert cut == "one two three"


def test_truncator_counts_cut_texts_and_reserves_special_tokens() -> None:
    truncate = Truncator(max_seq_length=RESERVED_SPECIAL_TOKENS + 10, counter=len)
    assert truncate("x" * 10) == "x" * 10
    assert truncate("y" * 11) == "y" * 10
    assert truncate.truncated == 1


def test_corpus_keeps_the_most_recent_text_and_counts_conflicts() -> None:
    corpus = CorpusBuilder()
    corpus.add([passage("a", text="new"), passage("b", text="same")], timestamp=5)
    corpus.add([passage("a", text="old"), passage("b", text="same")], timestamp=1)
    corpus.add([passage("c", text="only")], timestamp=3)
    assert corpus.texts() == {"a": "new", "b": "same", "c": "only"}
    assert corpus.conflicting_ids == 1


def test_corpus_builder_is_order_independent() -> None:
    batches = [([passage("a", text=t)], ts) for t, ts in [("x", 1), ("y", 2), ("z", 2)]]
    forward, backward = CorpusBuilder(), CorpusBuilder()
    for ps, ts in batches:
        forward.add(ps, ts)
    for ps, ts in reversed(batches):
        backward.add(ps, ts)
    assert forward.texts() == backward.texts() == {"a": "z"}


def test_corpus_rows_have_the_beir_fields() -> None:
    assert corpus_rows({"b": "B", "a": "A"}) == [
        {"_id": "a", "title": "", "text": "A"},
        {"_id": "b", "title": "", "text": "B"},
    ]
    assert QRELS_HEADER.split("\t") == ["query-id", "corpus-id", "score"]
