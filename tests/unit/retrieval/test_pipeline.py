"""The whole build, in memory: leakage, false negatives, corpus completeness, determinism."""

from __future__ import annotations

import random
from collections.abc import Iterable

import pytest

from flywheel.domain.logs import ChatLog, RetrievalLog
from flywheel.domain.retrieval import (
    DropReason,
    NotEnoughQueries,
    RetrievalDataset,
    RetrievalDatasetAssembler,
    RetrievalDatasetSpec,
    chat_from_retrieval,
    normalise_query,
)
from tests.unit.retrieval.factories import make_log, synthetic_logs

SPEC = RetrievalDatasetSpec(num_hard_negatives=3, eval_size=10, min_total_records=30)


def build(
    logs: Iterable[RetrievalLog | ChatLog], spec: RetrievalDatasetSpec = SPEC
) -> RetrievalDataset:
    assembler = RetrievalDatasetAssembler(spec)
    for log in logs:
        assembler.add(log)
    return assembler.finish()


def test_no_eval_query_or_its_normalised_duplicate_reaches_training() -> None:
    dataset = build(synthetic_logs(60, duplicates=40))
    eval_norms = {normalise_query(q["text"]) for q in dataset.queries}
    trained = {normalise_query(r["query"]) for r in [*dataset.training, *dataset.validation]}
    assert len(eval_norms) == 10
    assert not eval_norms & trained
    assert dataset.stats.merged_duplicate_logs == 40


def test_near_duplicate_queries_stay_in_one_split() -> None:
    logs = synthetic_logs(40)
    logs += [
        make_log(f"please how do I configure widget {i}", ["x", f"doc-{i}"], used=[f"doc-{i}"])
        for i in range(40)
    ]
    spec = RetrievalDatasetSpec(
        eval_size=10, min_total_records=30, query_near_duplicate_threshold=0.8
    )
    dataset = build(logs, spec)
    eval_widgets = {q["text"].rsplit(" ", 1)[1] for q in dataset.queries}
    train_widgets = {r["query"].rsplit(" ", 1)[1] for r in [*dataset.training, *dataset.validation]}
    assert not eval_widgets & train_widgets
    assert dataset.stats.near_duplicate_clusters == 40


def test_duplicate_query_positives_are_merged_into_rows() -> None:
    dataset = build(synthetic_logs(40, duplicates=40))
    by_query: dict[str, set[str]] = {}
    for row in dataset.training:
        by_query.setdefault(row["query"], set()).add(row["pos_doc"].split(" ", 1)[0])
    assert by_query, "some training rows"
    for query, docs in by_query.items():
        widget = query.rsplit(" ", 1)[1]
        assert docs == {f"doc-{widget}", f"alt-{widget}"}


def test_no_training_negative_is_used_for_that_query_anywhere() -> None:
    logs = synthetic_logs(40)
    # An older log of query 0..39 that used a distractor the newer log only retrieved.
    for log in list(logs):
        distractor = log.retrieved[0].doc_id
        logs.append(make_log(log.query.upper(), [distractor], clicked=[distractor], timestamp=1))
    used: dict[str, set[str]] = {}
    doc_id_of: dict[str, str] = {}
    for log in logs:
        key = normalise_query(log.query)
        used.setdefault(key, set()).update(log.used_doc_ids, log.clicked_doc_ids)
        doc_id_of.update({p.text: p.doc_id for p in log.retrieved})
    dataset = build(logs)
    for row in [*dataset.training, *dataset.validation]:
        negative_ids = {doc_id_of[t] for t in row["neg_doc"]}
        assert not negative_ids & used[normalise_query(row["query"])]
        assert len(row["neg_doc"]) <= 3


def test_hard_negative_count_is_honoured() -> None:
    dataset = build(synthetic_logs(40))
    assert all(len(r["neg_doc"]) == 3 for r in dataset.training)
    assert dataset.stats.queries_short_of_negatives == 0


def test_corpus_holds_every_passage_seen_even_from_dropped_logs() -> None:
    logs = synthetic_logs(40)
    logs.append(make_log("no positives here", ["lonely-1", "lonely-2"]))
    logs.append(make_log("   ", ["lonely-3"], used=["lonely-3"]))
    dataset = build(logs)
    corpus_ids = {row["_id"] for row in dataset.corpus}
    assert corpus_ids == {p.doc_id for log in logs for p in log.retrieved}
    qrel_docs = {line.split("\t")[1] for line in dataset.qrels[1:]}
    assert qrel_docs <= corpus_ids
    assert {line.split("\t")[0] for line in dataset.qrels[1:]} == {
        q["_id"] for q in dataset.queries
    }


def test_drop_reasons_are_counted() -> None:
    logs = synthetic_logs(40)
    logs += [
        make_log("  ", ["a"], used=["a"]),
        make_log("nothing", [], used=["a"]),
        make_log("unused", ["a", "b"]),
        make_log("ghost", ["a", "b"], used=["ghost"]),
        make_log("ghost two", ["a", "b"], used=["ghost"]),
    ]
    stats = build(logs).stats
    assert stats.drop_reasons == {
        DropReason.empty_query: 1,
        DropReason.no_retrieved: 1,
        DropReason.no_positives: 1,
        DropReason.positive_not_retrieved: 2,
    }
    assert stats.logs_read == 45
    assert stats.usable_logs == 40
    assert stats.passage_issues["positive_id_not_retrieved"] == 2


def test_too_few_queries_raise_with_the_counts() -> None:
    logs = [*synthetic_logs(12, duplicates=5), make_log("unused", ["a"])]
    with pytest.raises(NotEnoughQueries) as info:
        build(logs)
    message = str(info.value)
    assert "logs read 18" in message
    assert "unique queries 12" in message
    assert "no_positives=1" in message
    assert info.value.stats.unique_queries == 12


def test_build_is_deterministic_and_independent_of_log_order() -> None:
    logs = synthetic_logs(60, duplicates=20, sources=("faq", "manual"))
    shuffled = list(logs)
    random.Random(3).shuffle(shuffled)
    first, second = build(logs), build(shuffled)
    assert first.queries == second.queries
    assert first.training == second.training
    assert first.validation == second.validation
    assert first.corpus == second.corpus
    assert first.stats == second.stats


def test_reference_run_covers_eval_queries_with_logged_ranks() -> None:
    logs = synthetic_logs(40)
    logs = [
        log
        if i % 2
        else make_log(
            log.query,
            [p.doc_id for p in log.retrieved],
            used=log.used_doc_ids,
            timestamp=log.timestamp,
            ranked=False,
        )
        for i, log in enumerate(logs)
    ]
    dataset = build(logs)
    eval_ids = {q["_id"] for q in dataset.queries}
    assert set(dataset.reference_run) <= eval_ids
    assert dataset.stats.reference_run_queries == len(dataset.reference_run) > 0
    for ranking in dataset.reference_run.values():
        assert len(ranking) == 8


def test_chat_logs_in_the_documented_form_count() -> None:
    logs = synthetic_logs(40)
    chats: list[RetrievalLog | ChatLog] = [chat_from_retrieval(log) for log in logs]
    chats.append(ChatLog(client_id="a", workload_id="w", timestamp=0, request={}, response={}))
    dataset = build(chats)
    assert dataset.stats.chat_logs_converted == 40
    assert dataset.stats.chat_logs_not_convertible == 1
    assert dataset.stats.unique_queries == 40
