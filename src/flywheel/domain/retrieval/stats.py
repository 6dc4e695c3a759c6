"""Counts recorded for a retrieval dataset build: where every log went, and why.

The same numbers go into ``manifest.json`` and, when the build fails for lack of data, into
the error message, so an operator sees at which stage the records ran out.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any


@dataclass
class RetrievalDatasetStats:
    """Stage counts, drop reasons and quality counters of one build."""

    logs_read: int = 0
    chat_logs_converted: int = 0
    chat_logs_not_convertible: int = 0
    #: One reason per retrieval log that yields no (query, positive) pair.
    drop_reasons: Counter[str] = field(default_factory=Counter)
    #: Passage-level removals and positive ids the retriever never returned.
    passage_issues: Counter[str] = field(default_factory=Counter)
    usable_logs: int = 0
    unique_queries: int = 0
    #: Usable logs folded into a more recent log of the same normalised query.
    merged_duplicate_logs: int = 0
    #: Clusters of lexically near-duplicate queries with more than one member.
    near_duplicate_clusters: int = 0
    eval_queries: int = 0
    train_queries: int = 0
    val_queries: int = 0
    qrels: int = 0
    train_rows: int = 0
    val_rows: int = 0
    corpus_docs: int = 0
    #: Doc ids logged with more than one text (the most recent text is kept).
    doc_text_conflicts: int = 0
    hard_negatives: int = 0
    #: Train/val queries that got fewer than ``num_hard_negatives`` negatives.
    queries_short_of_negatives: int = 0
    negative_exclusions: Counter[str] = field(default_factory=Counter)
    truncated_texts: int = 0
    reference_run_queries: int = 0

    @property
    def dropped_logs(self) -> int:
        """Retrieval logs that yielded nothing."""
        return sum(self.drop_reasons.values())

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form, counters as sorted plain dicts."""
        out: dict[str, Any] = {}
        for name, value in vars(self).items():
            if isinstance(value, Counter):
                # str(): reason enums become plain keys that any JSON encoder accepts.
                value = {str(k): n for k, n in sorted(value.items())}
            out[name] = value
        out["dropped_logs"] = self.dropped_logs
        return out

    def stage_summary(self) -> str:
        """One line: the count at each stage, then the drop reasons."""
        reasons = ", ".join(f"{k}={v}" for k, v in sorted(self.drop_reasons.items())) or "none"
        return (
            f"logs read {self.logs_read} → usable {self.usable_logs} → unique queries "
            f"{self.unique_queries} (merged duplicates {self.merged_duplicate_logs}); "
            f"dropped {self.dropped_logs} ({reasons})"
        )
