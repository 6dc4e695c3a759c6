"""The embedding dataset build over a real SQLite log store, from ingestion-shaped records."""

from __future__ import annotations

import csv
import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from flywheel.config.schema import CandidateModel, DataSplitConfig, EmbeddingJobConfig, JobConfig
from flywheel.domain.logs import ChatLog, LogKind, RetrievalLog, RetrievedPassage
from flywheel.domain.retrieval import (
    RetrievalDatasetAssembler,
    chat_from_retrieval,
    normalise_query,
)
from flywheel.errors import DatasetError
from flywheel.services.retrieval_datasets import build_retrieval_datasets, spec_from_config
from flywheel.stores.logs_sqlite import SqliteLogStore

CONFIG = JobConfig(
    candidates=[CandidateModel(name="embedder", model_type="embedding")],
    data_split_config=DataSplitConfig(eval_size=10, min_total_records=40, limit=5000),
    embedding_config=EmbeddingJobConfig(num_hard_negatives=3),
)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SqliteLogStore]:
    log_store = SqliteLogStore.from_url(f"sqlite:///{tmp_path / 'logs.db'}")
    yield log_store
    log_store.close()


def _logs(n: int, *, workload: str = "rag") -> list[RetrievalLog]:
    logs = []
    for i in range(n):
        docs = [f"kb-{(i * 7 + k) % 97}" for k in range(6)]
        docs.insert(2, f"answer-{i}")
        logs.append(
            RetrievalLog(
                client_id="acme",
                workload_id=workload,
                timestamp=1_700_000_000_000 + i,
                query=f"How is setting {i} changed?",
                retrieved=[
                    RetrievedPassage(
                        doc_id=d,
                        text=f"{d}: documentation paragraph number {d[3:]} of the manual",
                        rank=r,
                        score=1 - r / 10,
                        source="manual" if i % 3 else "faq",
                    )
                    for r, d in enumerate(docs)
                ],
                used_doc_ids=[f"answer-{i}"],
                clicked_doc_ids=[docs[0]] if i % 5 == 0 else [],
            )
        )
    return logs


def test_build_from_sqlite_store(store: SqliteLogStore, tmp_path: Path) -> None:
    logs = _logs(80)
    # Older duplicates of the first 20 queries, noise from another workload, and chat logs.
    dupes = [
        log.model_copy(update={"query": log.query.upper(), "timestamp": 1}) for log in logs[:20]
    ]
    records: list[RetrievalLog | ChatLog] = [*logs, *dupes, *_logs(30, workload="other")]
    records.append(chat_from_retrieval(logs[0]))
    store.write(records)

    out = tmp_path / "datasets"
    result = build_retrieval_datasets(
        log_store=store, client_id="acme", workload_id="rag", config=CONFIG, out_dir=out
    )
    stats = result.stats
    assert stats.logs_read == 100  # the chat log and the other workload are not read
    assert stats.unique_queries == 80
    assert stats.merged_duplicate_logs == 20
    assert (stats.eval_queries, stats.train_queries + stats.val_queries) == (10, 70)

    queries = [orjson.loads(x) for x in (out / "eval/queries.jsonl").read_bytes().splitlines()]
    corpus = [orjson.loads(x) for x in (out / "eval/corpus.jsonl").read_bytes().splitlines()]
    train = [orjson.loads(x) for x in (out / "training/training.jsonl").read_bytes().splitlines()]
    val = [orjson.loads(x) for x in (out / "validation/validation.jsonl").read_bytes().splitlines()]

    eval_norms = {normalise_query(q["text"]) for q in queries}
    assert not eval_norms & {normalise_query(r["query"]) for r in [*train, *val]}
    assert {c["_id"] for c in corpus} == {p.doc_id for log in logs for p in log.retrieved}
    with (out / "eval/qrels/test.tsv").open(newline="") as fh:
        qrels = list(csv.reader(fh, delimiter="\t"))
    assert qrels[0] == ["query-id", "corpus-id", "score"]
    assert {r[0] for r in qrels[1:]} == {q["_id"] for q in queries}
    assert all(len(r["neg_doc"]) == 3 for r in [*train, *val])

    run = orjson.loads((out / "reference_run.json").read_bytes())
    assert set(run) == {q["_id"] for q in queries}
    manifest = orjson.loads(result.manifest_path.read_bytes())
    for name, info in manifest["files"].items():
        assert hashlib.sha256((out / name).read_bytes()).hexdigest() == info["sha256"]

    again = build_retrieval_datasets(
        log_store=store, client_id="acme", workload_id="rag", config=CONFIG, out_dir=tmp_path / "b"
    )
    assert orjson.loads(again.manifest_path.read_bytes()) == manifest


def test_sparse_workload_fails_with_counts(store: SqliteLogStore, tmp_path: Path) -> None:
    logs = _logs(15)
    store.write([*logs, logs[0].model_copy(update={"used_doc_ids": [], "clicked_doc_ids": []})])
    with pytest.raises(DatasetError, match=r"logs read 16 .*unique queries 15.*no_positives=1"):
        build_retrieval_datasets(
            log_store=store, client_id="acme", workload_id="rag", config=CONFIG, out_dir=tmp_path
        )


def _in_memory_golden(store: SqliteLogStore) -> dict[str, bytes]:
    """Every file's bytes as the build rendered them before it streamed: whole in memory."""
    assembler = RetrievalDatasetAssembler(spec_from_config(CONFIG))
    for record in store.iter_recent(
        "acme", "rag", limit=CONFIG.data_split_config.limit, kind=LogKind.retrieval
    ):
        assembler.add(record)
    dataset = assembler.finish()

    def jsonl(rows: list[Any]) -> bytes:
        return b"".join(orjson.dumps(row) + b"\n" for row in rows)

    return {
        "eval/corpus.jsonl": jsonl(dataset.corpus),
        "eval/queries.jsonl": jsonl(dataset.queries),
        "eval/qrels/test.tsv": "".join(f"{line}\n" for line in dataset.qrels).encode(),
        "training/training.jsonl": jsonl(dataset.training),
        "validation/validation.jsonl": jsonl(dataset.validation),
        "reference_run.json": orjson.dumps(dataset.reference_run, option=orjson.OPT_INDENT_2)
        + b"\n",
    }


def test_streamed_files_equal_the_in_memory_rendering(
    store: SqliteLogStore, tmp_path: Path
) -> None:
    store.write(_logs(60))
    out = tmp_path / "datasets"
    result = build_retrieval_datasets(
        log_store=store, client_id="acme", workload_id="rag", config=CONFIG, out_dir=out
    )
    golden = _in_memory_golden(store)
    manifest = orjson.loads(result.manifest_path.read_bytes())
    assert set(manifest["files"]) == set(golden)
    for name, expected in golden.items():
        assert (out / name).read_bytes() == expected, name
        info = manifest["files"][name]
        assert info["sha256"] == hashlib.sha256(expected).hexdigest()
        assert info["bytes"] == len(expected)
    assert (
        manifest["files"]["eval/qrels/test.tsv"]["rows"]
        == golden["eval/qrels/test.tsv"].count(b"\n") - 1
    )  # the header is not a row
    assert manifest["files"]["reference_run.json"]["rows"] == result.stats.eval_queries
    leftovers = [p.name for p in out.rglob("*") if p.name.endswith((".partial", ".tmp"))]
    assert leftovers == []  # every file was renamed into place
