"""Retrieval logs in, dataset rows out: the whole embedding-dataset build, without I/O.

Feed logs one at a time (:meth:`RetrievalDatasetAssembler.add`), so memory follows the
number of distinct queries and passages, not the number of logs; then call
:meth:`~RetrievalDatasetAssembler.finish`. The order in which logs arrive does not change
the result: every choice that could depend on it is broken by timestamp, then by content.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

from flywheel.domain.logs import ChatLog, RetrievalLog
from flywheel.domain.retrieval.beir import (
    CorpusBuilder,
    TokenCounter,
    Truncator,
    corpus_rows,
    qrels_lines,
    query_rows,
    reference_run,
    training_rows,
)
from flywheel.domain.retrieval.convert import retrieval_from_chat
from flywheel.domain.retrieval.mining import MergedQuery, merge_duplicates, mine_hard_negatives
from flywheel.domain.retrieval.records import (
    PositiveSource,
    UsableLog,
    clean_passages,
    examine_log,
    normalise_query,
    relevant_ids,
)
from flywheel.domain.retrieval.similarity import near_duplicate_groups
from flywheel.domain.retrieval.split import QuerySplit, SplitItem, SplitStrategy, split_queries
from flywheel.domain.retrieval.stats import RetrievalDatasetStats


@dataclass(frozen=True, slots=True)
class RetrievalDatasetSpec:
    """The settings a build reads (taken from the job's configuration snapshot)."""

    positive_source: PositiveSource = "used_or_clicked"
    num_hard_negatives: int = 5
    max_seq_length: int = 512
    negative_near_duplicate_threshold: float = 0.9
    #: Word-set Jaccard that ties queries into one split cluster; None: exact-normalised only.
    query_near_duplicate_threshold: float | None = None
    eval_size: int = 20
    val_ratio: float = 0.1
    min_total_records: int = 50
    random_seed: int | None = 42
    split_strategy: SplitStrategy = "stratified"


class NotEnoughQueries(ValueError):
    """Fewer usable queries than ``min_total_records``; ``stats`` says where they went."""

    def __init__(self, message: str, stats: RetrievalDatasetStats) -> None:
        super().__init__(message)
        self.stats = stats


@dataclass(frozen=True)
class RetrievalDataset:
    """Every row the build writes, plus its counts and split."""

    corpus: list[dict[str, str]]
    queries: list[dict[str, str]]
    qrels: list[str]
    training: list[dict[str, Any]]
    validation: list[dict[str, Any]]
    reference_run: dict[str, list[str]]
    split: QuerySplit
    stats: RetrievalDatasetStats


@dataclass
class RetrievalDatasetAssembler:
    """Accumulates logs, then builds the dataset (see the module docstring)."""

    spec: RetrievalDatasetSpec
    stats: RetrievalDatasetStats = field(default_factory=RetrievalDatasetStats)
    _corpus: CorpusBuilder = field(default_factory=CorpusBuilder)
    _usable: dict[str, list[UsableLog]] = field(default_factory=lambda: defaultdict(list))
    _relevant: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))

    def add(self, log: RetrievalLog | ChatLog) -> None:
        """Take one log; chat logs count only if they convert (see ``convert.py``)."""
        self.stats.logs_read += 1
        if isinstance(log, ChatLog):
            converted = retrieval_from_chat(log)
            if converted is None:
                self.stats.chat_logs_not_convertible += 1
                return
            self.stats.chat_logs_converted += 1
            log = converted
        # Every passage of every log belongs to the corpus, even when the log itself is
        # dropped: the eval corpus must look like the production index, distractors included.
        # Passage issues are counted once, by examine_log, hence the throwaway counter.
        self._corpus.add(clean_passages(log.retrieved, Counter()), log.timestamp)
        norm = normalise_query(log.query)
        if norm:
            self._relevant[norm].update(relevant_ids(log))
        result = examine_log(
            log,
            positive_source=self.spec.positive_source,
            passage_issues=self.stats.passage_issues,
        )
        if isinstance(result, UsableLog):
            self.stats.usable_logs += 1
            self._usable[result.norm_query].append(result)
        else:
            self.stats.drop_reasons[result] += 1

    def finish(self, *, token_counter: TokenCounter | None = None) -> RetrievalDataset:
        """Merge, split, mine and lay out the rows.

        Raises:
            NotEnoughQueries: fewer unique usable queries than ``min_total_records``.
        """
        spec, stats = self.spec, self.stats
        merged = [merge_duplicates(logs) for _, logs in sorted(self._usable.items())]
        stats.unique_queries = len(merged)
        stats.merged_duplicate_logs = stats.usable_logs - len(merged)
        if len(merged) < spec.min_total_records:
            raise NotEnoughQueries(
                f"only {len(merged)} usable unique queries, need min_total_records="
                f"{spec.min_total_records}: {stats.stage_summary()}",
                stats,
            )
        split = split_queries(
            self._split_items(merged),
            eval_size=spec.eval_size,
            val_ratio=spec.val_ratio,
            seed=spec.random_seed,
            strategy=spec.split_strategy,
        )
        by_id = {q.query_id: q for q in merged}
        eval_q = [by_id[i] for i in split.eval]
        train_q = [by_id[i] for i in split.train]
        val_q = [by_id[i] for i in split.val]

        text_of = self._corpus.texts()
        negatives = self._negatives([*train_q, *val_q], text_of)
        truncate = Truncator(spec.max_seq_length, token_counter)
        dataset = RetrievalDataset(
            corpus=corpus_rows(text_of),
            queries=query_rows(eval_q),
            qrels=qrels_lines(eval_q),
            training=training_rows(
                train_q, negatives=negatives, text_of=text_of, truncate=truncate
            ),
            validation=training_rows(
                val_q, negatives=negatives, text_of=text_of, truncate=truncate
            ),
            reference_run=reference_run(eval_q),
            split=split,
            stats=stats,
        )
        stats.eval_queries, stats.train_queries, stats.val_queries = map(
            len, (split.eval, split.train, split.val)
        )
        stats.qrels = len(dataset.qrels) - 1
        stats.train_rows, stats.val_rows = len(dataset.training), len(dataset.validation)
        stats.corpus_docs = len(dataset.corpus)
        stats.doc_text_conflicts = self._corpus.conflicting_ids
        stats.truncated_texts = truncate.truncated
        stats.reference_run_queries = len(dataset.reference_run)
        return dataset

    def _split_items(self, merged: list[MergedQuery]) -> list[SplitItem]:
        threshold = self.spec.query_near_duplicate_threshold
        if threshold is None:
            clusters = [q.query_id for q in merged]
        else:
            labels = near_duplicate_groups([q.norm_query for q in merged], threshold)
            clusters = [merged[label].query_id for label in labels]
            sizes: dict[str, int] = defaultdict(int)
            for c in clusters:
                sizes[c] += 1
            self.stats.near_duplicate_clusters = sum(1 for n in sizes.values() if n > 1)
        return [
            SplitItem(query_id=q.query_id, cluster=c, stratum=q.source, timestamp=q.timestamp)
            for q, c in zip(merged, clusters, strict=True)
        ]

    def _negatives(
        self, queries: list[MergedQuery], text_of: dict[str, str]
    ) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        wanted = self.spec.num_hard_negatives
        for q in queries:
            found = mine_hard_negatives(
                q,
                text_of=text_of,
                excluded_ids=self._relevant[q.norm_query],
                count=wanted,
                near_duplicate_threshold=self.spec.negative_near_duplicate_threshold,
                reasons=self.stats.negative_exclusions,
            )
            out[q.query_id] = found
            self.stats.hard_negatives += len(found)
            if len(found) < wanted:
                self.stats.queries_short_of_negatives += 1
        return out
