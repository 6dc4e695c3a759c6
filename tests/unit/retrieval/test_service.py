"""build_retrieval_datasets over a fake log store: files, BEIR shape, manifest, errors."""

from __future__ import annotations

import csv
import hashlib
from pathlib import Path
from typing import Any, cast

import orjson
import pytest

from flywheel.config.schema import (
    CandidateModel,
    DataSplitConfig,
    EmbeddingJobConfig,
    JobConfig,
)
from flywheel.domain.logs import LogKind
from flywheel.domain.retrieval import chat_from_retrieval
from flywheel.errors import DatasetError
from flywheel.services.retrieval_datasets import build_retrieval_datasets
from flywheel.stores.base import LogStore
from tests.unit.retrieval.factories import FakeLogStore, make_log, synthetic_logs

CONFIG = JobConfig(
    candidates=[CandidateModel(name="embedder", model_type="embedding")],
    data_split_config=DataSplitConfig(eval_size=8, min_total_records=30, limit=500),
    embedding_config=EmbeddingJobConfig(num_hard_negatives=2, max_seq_length=64),
)


def _build(store: FakeLogStore, out: Path, **kwargs: Any) -> Any:
    return build_retrieval_datasets(
        log_store=cast(LogStore, store),
        client_id="acme",
        workload_id="rag",
        config=kwargs.pop("config", CONFIG),
        out_dir=out,
        **kwargs,
    )


def _jsonl(path: Path) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in path.read_bytes().splitlines()]


def test_writes_the_beir_and_training_layout(tmp_path: Path) -> None:
    store = FakeLogStore(list(synthetic_logs(50, duplicates=10)))
    result = _build(store, tmp_path)
    assert store.calls == [{"client_id": "acme", "limit": 500, "kind": LogKind.retrieval}]

    corpus = _jsonl(tmp_path / "eval/corpus.jsonl")
    queries = _jsonl(tmp_path / "eval/queries.jsonl")
    assert all(set(row) == {"_id", "title", "text"} for row in corpus)
    assert all(set(row) == {"_id", "text"} for row in queries)
    assert len(queries) == result.stats.eval_queries == 8

    with (tmp_path / "eval/qrels/test.tsv").open(newline="") as fh:
        rows = list(csv.reader(fh, delimiter="\t"))
    assert rows[0] == ["query-id", "corpus-id", "score"]
    assert {r[0] for r in rows[1:]} == {q["_id"] for q in queries}
    assert {r[1] for r in rows[1:]} <= {c["_id"] for c in corpus}
    assert all(r[2] == "1" for r in rows[1:])

    for name in ("training/training.jsonl", "validation/validation.jsonl"):
        lines = _jsonl(tmp_path / name)
        assert lines
        for line in lines:
            assert set(line) == {"query", "pos_doc", "neg_doc"}
            assert isinstance(line["neg_doc"], list)
            assert len(line["neg_doc"]) == 2

    run = orjson.loads((tmp_path / "reference_run.json").read_bytes())
    assert set(run) == {q["_id"] for q in queries}


def test_manifest_records_counts_hashes_and_config(tmp_path: Path) -> None:
    logs = [*synthetic_logs(40), make_log("never used", ["z1"])]
    result = _build(FakeLogStore(list(logs)), tmp_path)
    manifest = orjson.loads(result.manifest_path.read_bytes())
    for name, info in manifest["files"].items():
        data = (tmp_path / name).read_bytes()
        assert info["sha256"] == hashlib.sha256(data).hexdigest()
        assert info["bytes"] == len(data)
    assert manifest["counts"]["drop_reasons"] == {"no_positives": 1}
    assert manifest["counts"]["logs_read"] == 41
    assert manifest["config"]["embedding_config"]["num_hard_negatives"] == 2
    assert manifest["files"]["eval/qrels/test.tsv"]["rows"] == result.stats.qrels
    assert set(result.files) == {*manifest["files"], "manifest.json"}


def test_rebuild_is_byte_identical(tmp_path: Path) -> None:
    logs = synthetic_logs(50, duplicates=10, sources=("faq", "api"))
    _build(FakeLogStore(list(logs)), tmp_path / "a")
    _build(FakeLogStore(list(reversed(logs))), tmp_path / "b")
    for path in sorted((tmp_path / "a").rglob("*")):
        if path.is_file():
            assert (
                path.read_bytes()
                == (tmp_path / "b" / path.relative_to(tmp_path / "a")).read_bytes()
            )


def test_truncates_to_max_seq_length_with_an_injected_counter(tmp_path: Path) -> None:
    logs = synthetic_logs(40)
    long_text = "token " * 500
    logs = [
        make_log(
            log.query,
            [p.doc_id for p in log.retrieved],
            used=log.used_doc_ids,
            timestamp=log.timestamp,
            texts={p.doc_id: long_text for p in log.retrieved},
        )
        for log in logs
    ]
    result = _build(FakeLogStore(list(logs)), tmp_path, token_counter=lambda t: len(t.split()))
    row = _jsonl(tmp_path / "training/training.jsonl")[0]
    assert len(row["pos_doc"].split()) == 64 - 8
    assert result.stats.truncated_texts > 0
    corpus = _jsonl(tmp_path / "eval/corpus.jsonl")
    assert corpus[0]["text"] == long_text  # the eval corpus is never truncated


def test_too_few_queries_is_a_dataset_error_with_stage_counts(tmp_path: Path) -> None:
    store = FakeLogStore([*synthetic_logs(10), make_log("q", ["a"]), make_log(" ", ["b"])])
    with pytest.raises(DatasetError, match=r"acme/rag.*logs read 12 .*no_positives=1"):
        _build(store, tmp_path)
    assert not (tmp_path / "manifest.json").exists()


def test_include_chat_reads_converted_chat_logs(tmp_path: Path) -> None:
    store = FakeLogStore([chat_from_retrieval(log) for log in synthetic_logs(40)])
    result = _build(store, tmp_path, include_chat=True)
    assert store.calls[0]["kind"] is None
    assert result.stats.chat_logs_converted == 40
