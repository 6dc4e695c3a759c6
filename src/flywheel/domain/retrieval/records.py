"""Per-log checks for retrieval logs: which records can teach a retriever, and why not.

Every rejected log gets exactly one :class:`DropReason`, so the job can report where its
data went. Passage-level problems (a blank passage, an id that would corrupt the BEIR TSV)
are counted separately and only remove that passage, never the whole log.

Normalisation is deliberately modest (Unicode NFKC, case-fold, whitespace collapsed,
surrounding punctuation stripped): it merges queries a user would call "the same
question", without merging questions that differ in a word.
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from dataclasses import dataclass
from enum import StrEnum
from typing import Literal

from flywheel.domain.logs import RetrievalLog, RetrievedPassage

PositiveSource = Literal["used", "clicked", "used_or_clicked"]

_SPACE = re.compile(r"\s+")
_EDGE_PUNCT = "?!.,;:¿¡\"'`()[]{}<>"
#: A tab or newline in an id would split a ``qrels/test.tsv`` row.
_UNSAFE_ID = re.compile(r"[\t\r\n]")


class DropReason(StrEnum):
    """Why one retrieval log contributes no (query, positive) pair."""

    empty_query = "empty_query"
    no_retrieved = "no_retrieved"
    no_positives = "no_positives"
    positive_not_retrieved = "positive_not_retrieved"


class PassageIssue(StrEnum):
    """Why one retrieved passage was left out (the log itself may still be used)."""

    empty_text = "empty_text"
    unsafe_doc_id = "unsafe_doc_id"
    repeated_in_log = "repeated_in_log"


def normalise_query(text: str) -> str:
    """The de-duplication key of a query: NFKC, case-folded, spaces collapsed, edges trimmed."""
    folded = unicodedata.normalize("NFKC", text).casefold()
    return _SPACE.sub(" ", folded).strip().strip(_EDGE_PUNCT).strip()


def normalise_passage(text: str) -> str:
    """The exact-duplicate key of a passage text (same rules as queries)."""
    return normalise_query(text)


@dataclass(frozen=True, slots=True)
class UsableLog:
    """A retrieval log that passed the checks, reduced to what the dataset needs.

    ``passages`` keeps the log's own order after cleaning; ``positives`` are the selected
    ids that the retriever actually returned (we only trust ids whose text we hold).
    """

    query: str
    norm_query: str
    timestamp: int
    passages: tuple[RetrievedPassage, ...]
    positives: tuple[str, ...]


def select_positive_ids(log: RetrievalLog, source: PositiveSource) -> list[str]:
    """The ids the config treats as relevant for this log, de-duplicated, in logged order."""
    if source == "used":
        ids = log.used_doc_ids
    elif source == "clicked":
        ids = log.clicked_doc_ids
    else:
        ids = [*log.used_doc_ids, *log.clicked_doc_ids]
    return list(dict.fromkeys(ids))


def relevant_ids(log: RetrievalLog) -> set[str]:
    """Every id this log marks as used or clicked, whatever ``positive_source`` says.

    Used for false-negative exclusion: a passage someone clicked is too risky to train on as
    a negative even when only ``used`` passages count as positives.
    """
    return {*log.used_doc_ids, *log.clicked_doc_ids}


def clean_passages(
    passages: list[RetrievedPassage], issues: Counter[str]
) -> tuple[RetrievedPassage, ...]:
    """Drop blank passages, TSV-unsafe ids and repeats of an id (the first, best, one stays)."""
    kept: dict[str, RetrievedPassage] = {}
    for passage in passages:
        if _UNSAFE_ID.search(passage.doc_id):
            issues[PassageIssue.unsafe_doc_id] += 1
        elif not passage.text.strip():
            issues[PassageIssue.empty_text] += 1
        elif passage.doc_id in kept:
            issues[PassageIssue.repeated_in_log] += 1
        else:
            kept[passage.doc_id] = passage
    return tuple(kept.values())


def examine_log(
    log: RetrievalLog,
    *,
    positive_source: PositiveSource,
    passage_issues: Counter[str],
) -> UsableLog | DropReason:
    """Check one log; return its usable form or the single reason it cannot be used.

    Selected positive ids that the retriever did not return are dropped individually (the
    caller counts them via ``passage_issues['positive_id_not_retrieved']``); only when none
    remain does the whole log drop with ``positive_not_retrieved``.
    """
    norm = normalise_query(log.query)
    if not norm:
        return DropReason.empty_query
    passages = clean_passages(log.retrieved, passage_issues)
    if not passages:
        return DropReason.no_retrieved
    wanted = select_positive_ids(log, positive_source)
    if not wanted:
        return DropReason.no_positives
    returned = {p.doc_id for p in passages}
    positives = tuple(doc_id for doc_id in wanted if doc_id in returned)
    missing = len(wanted) - len(positives)
    if missing:
        passage_issues["positive_id_not_retrieved"] += missing
    if not positives:
        return DropReason.positive_not_retrieved
    return UsableLog(
        query=log.query.strip(),
        norm_query=norm,
        timestamp=log.timestamp,
        passages=passages,
        positives=positives,
    )


def reference_ranking(passages: tuple[RetrievedPassage, ...]) -> list[str] | None:
    """The production retriever's order for one query, or None when the log cannot tell.

    Ranks win when every passage has one; otherwise scores (higher first) when every
    passage has one. Ties keep the logged order. List order alone is not trusted: some
    applications log passages after re-sorting or filtering them.
    """
    if not passages:
        return None
    indexed = list(enumerate(passages))
    if all(p.rank is not None for p in passages):
        indexed.sort(key=lambda item: (item[1].rank, item[0]))
    elif all(p.score is not None for p in passages):
        indexed.sort(key=lambda item: (-(item[1].score or 0.0), item[0]))
    else:
        return None
    return [p.doc_id for _, p in indexed]
