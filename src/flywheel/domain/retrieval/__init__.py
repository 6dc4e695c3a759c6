"""Retrieval logs → embedding datasets (``embedding_job``): pure rules, no I/O.

Modules by step: :mod:`.records` (per-log checks, drop reasons), :mod:`.convert` (chat logs
of RAG apps → retrieval logs), :mod:`.mining` (de-duplication, positives, hard negatives),
:mod:`.similarity` (lexical near-duplicates), :mod:`.split` (query-level split),
:mod:`.beir` (output rows), :mod:`.stats` (counts), :mod:`.pipeline` (the whole build).
The rules are written up in ``docs/embedding-datasets.md``.
"""

from flywheel.domain.retrieval.beir import TokenCounter, estimate_tokens, truncate_to_tokens
from flywheel.domain.retrieval.convert import chat_from_retrieval, retrieval_from_chat
from flywheel.domain.retrieval.pipeline import (
    NotEnoughQueries,
    RetrievalDataset,
    RetrievalDatasetAssembler,
    RetrievalDatasetSpec,
)
from flywheel.domain.retrieval.records import DropReason, PassageIssue, normalise_query
from flywheel.domain.retrieval.split import QuerySplit, SplitItem, split_queries
from flywheel.domain.retrieval.stats import RetrievalDatasetStats

__all__ = [
    "DropReason",
    "NotEnoughQueries",
    "PassageIssue",
    "QuerySplit",
    "RetrievalDataset",
    "RetrievalDatasetAssembler",
    "RetrievalDatasetSpec",
    "RetrievalDatasetStats",
    "SplitItem",
    "TokenCounter",
    "chat_from_retrieval",
    "estimate_tokens",
    "normalise_query",
    "retrieval_from_chat",
    "split_queries",
    "truncate_to_tokens",
]
