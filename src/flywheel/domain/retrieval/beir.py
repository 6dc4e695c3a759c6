"""Row builders for the output formats: BEIR eval files and embedding training JSONL.

Everything here returns plain rows (dicts, strings); writing them is the service's job.

* BEIR (NMP ``retriever`` evaluation, nmp-api §9.4): ``corpus.jsonl`` rows
  ``{"_id", "title", "text"}``, ``queries.jsonl`` rows ``{"_id", "text"}`` and
  ``qrels/test.tsv`` with the header ``query-id<TAB>corpus-id<TAB>score``. ``title`` is
  always written, as ``""``: BEIR's loader turns a missing title into ``None``, which its
  sentence-transformers wrapper then concatenates and crashes on.
* Training (nmp-api §9.3): ``{"query", "pos_doc", "neg_doc": [...]}``, one line per
  (query, positive) pair, every text truncated to the model's ``max_seq_length``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from flywheel.domain.logs import RetrievedPassage
from flywheel.domain.retrieval.mining import MergedQuery

#: Counts tokens of one text; inject the model's tokenizer for exact truncation.
TokenCounter = Callable[[str], int]

QRELS_HEADER = "query-id\tcorpus-id\tscore"

#: Kept free of the budget for the special tokens (BOS/EOS, a "query:" prefix) the model adds.
RESERVED_SPECIAL_TOKENS = 8


def estimate_tokens(text: str) -> int:
    """A deliberately high token estimate: one token per three UTF-8 bytes, rounded up.

    Subword tokenizers average about four characters per token on English and roughly one
    token per CJK character (three bytes), so this over-counts both; truncating to it keeps
    a text under the real limit without loading a tokenizer.
    """
    return -(-len(text.encode("utf-8")) // 3)


def truncate_to_tokens(text: str, max_tokens: int, counter: TokenCounter | None = None) -> str:
    """The longest prefix of ``text`` that ``counter`` (default: the estimate) fits in budget.

    Binary search over the prefix length: ``O(log n)`` counter calls, correct for any counter
    that is monotone in the prefix length (all real tokenizers are, near enough).
    """
    count = counter or estimate_tokens
    if count(text) <= max_tokens:
        return text
    low, high = 0, len(text)
    while low < high:
        mid = (low + high + 1) // 2
        if count(text[:mid]) <= max_tokens:
            low = mid
        else:
            high = mid - 1
    return text[:low].rstrip()


@dataclass
class CorpusBuilder:
    """Every passage seen for the workload, one per ``doc_id``, most recent text kept.

    "Most recent" is by log timestamp, ties broken by the text itself, so the result does not
    depend on the order the store returns logs. ``conflicting_ids`` counts ids seen with more
    than one distinct text.
    """

    _docs: dict[str, tuple[int, str]] = field(default_factory=dict)
    _conflicts: set[str] = field(default_factory=set)

    def add(self, passages: Iterable[RetrievedPassage], timestamp: int) -> None:
        """Record the passages of one log."""
        for passage in passages:
            seen = self._docs.get(passage.doc_id)
            if seen is None:
                self._docs[passage.doc_id] = (timestamp, passage.text)
                continue
            if seen[1] != passage.text:
                self._conflicts.add(passage.doc_id)
                self._docs[passage.doc_id] = max(seen, (timestamp, passage.text))

    @property
    def conflicting_ids(self) -> int:
        """How many ids came with more than one text."""
        return len(self._conflicts)

    def texts(self) -> dict[str, str]:
        """Text by doc id."""
        return {doc_id: text for doc_id, (_, text) in self._docs.items()}


def corpus_rows(text_of: Mapping[str, str]) -> list[dict[str, str]]:
    """``corpus.jsonl`` rows, sorted by id."""
    return [{"_id": doc_id, "title": "", "text": text_of[doc_id]} for doc_id in sorted(text_of)]


def query_rows(queries: Sequence[MergedQuery]) -> list[dict[str, str]]:
    """``queries.jsonl`` rows, sorted by id."""
    ordered = sorted(queries, key=lambda q: q.query_id)
    return [{"_id": q.query_id, "text": q.query} for q in ordered]


def qrels_lines(queries: Sequence[MergedQuery]) -> list[str]:
    """``qrels/test.tsv`` lines, header first: every positive is relevant with score 1."""
    lines = [QRELS_HEADER]
    for q in sorted(queries, key=lambda q: q.query_id):
        lines.extend(f"{q.query_id}\t{doc_id}\t1" for doc_id in sorted(q.positives))
    return lines


@dataclass
class Truncator:
    """Truncates texts to ``max_seq_length`` and counts how many it had to cut."""

    max_seq_length: int
    counter: TokenCounter | None = None
    truncated: int = 0

    def __call__(self, text: str) -> str:
        budget = max(1, self.max_seq_length - RESERVED_SPECIAL_TOKENS)
        cut = truncate_to_tokens(text, budget, self.counter)
        if cut != text:
            self.truncated += 1
        return cut


def training_rows(
    queries: Sequence[MergedQuery],
    *,
    negatives: Mapping[str, Sequence[str]],
    text_of: Mapping[str, str],
    truncate: Callable[[str], str],
) -> list[dict[str, Any]]:
    """One ``{"query", "pos_doc", "neg_doc"}`` row per (query, positive), ordered by query id.

    All rows of a query share its hard negatives: the other positives are never among them,
    so no row pushes a relevant passage away.
    """
    rows: list[dict[str, Any]] = []
    for q in sorted(queries, key=lambda q: q.query_id):
        query_text = truncate(q.query)
        neg_docs = [truncate(text_of[d]) for d in negatives.get(q.query_id, ())]
        rows.extend(
            {"query": query_text, "pos_doc": truncate(text_of[p]), "neg_doc": neg_docs}
            for p in q.positives
        )
    return rows


def reference_run(queries: Sequence[MergedQuery]) -> dict[str, list[str]]:
    """The production retriever's ranked ids per query, for those whose logs carry a ranking.

    Scored against the same qrels, this is the reference row of the retrieval report.
    """
    return {
        q.query_id: list(q.reference_run)
        for q in sorted(queries, key=lambda q: q.query_id)
        if q.reference_run is not None
    }
