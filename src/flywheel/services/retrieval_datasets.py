"""Build the datasets of an ``embedding_job`` from a workload's retrieval logs.

Streams the newest ``data_split_config.limit`` retrieval logs from the log store through
the pure pipeline (:mod:`flywheel.domain.retrieval`) and writes, under ``out_dir``::

    eval/corpus.jsonl  eval/queries.jsonl  eval/qrels/test.tsv   BEIR layout (NMP retriever eval)
    training/training.jsonl  validation/validation.jsonl        {"query","pos_doc","neg_doc"}
    reference_run.json                                          production ranking per eval query
    manifest.json                                               counts, drop reasons, sha256, config

The output is a pure function of the logs and the configuration: the manifest carries no
clock time, so a rerun over the same logs reproduces every byte (and every hash).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import orjson
import structlog

from flywheel.config.schema import JobConfig
from flywheel.domain.logs import LogKind
from flywheel.domain.retrieval import (
    NotEnoughQueries,
    QuerySplit,
    RetrievalDataset,
    RetrievalDatasetAssembler,
    RetrievalDatasetSpec,
    RetrievalDatasetStats,
    TokenCounter,
)
from flywheel.errors import DatasetError
from flywheel.services.dataset_files import DatasetFile, JsonlWriter
from flywheel.stores.base import LogStore

log = structlog.get_logger(__name__)

MANIFEST_VERSION = 1
CORPUS_FILE = "eval/corpus.jsonl"
QUERIES_FILE = "eval/queries.jsonl"
QRELS_FILE = "eval/qrels/test.tsv"
TRAINING_FILE = "training/training.jsonl"
VALIDATION_FILE = "validation/validation.jsonl"
REFERENCE_RUN_FILE = "reference_run.json"
MANIFEST_FILE = "manifest.json"


@dataclass(frozen=True)
class RetrievalDatasetResult:
    """Where the files went and what the build counted."""

    out_dir: Path
    #: Relative file name (e.g. ``eval/corpus.jsonl``) → absolute path.
    files: dict[str, Path]
    manifest_path: Path
    stats: RetrievalDatasetStats
    split: QuerySplit


def spec_from_config(config: JobConfig) -> RetrievalDatasetSpec:
    """The pipeline settings a job's configuration snapshot implies."""
    emb, split = config.embedding_config, config.data_split_config
    return RetrievalDatasetSpec(
        positive_source=emb.positive_source,
        num_hard_negatives=emb.num_hard_negatives,
        max_seq_length=emb.max_seq_length,
        negative_near_duplicate_threshold=emb.negative_near_duplicate_threshold,
        query_near_duplicate_threshold=split.near_duplicate_threshold,
        eval_size=split.eval_size,
        val_ratio=split.val_ratio,
        min_total_records=split.min_total_records,
        random_seed=split.random_seed,
        split_strategy=split.split_strategy,
    )


def build_retrieval_datasets(
    *,
    log_store: LogStore,
    client_id: str,
    workload_id: str,
    config: JobConfig,
    out_dir: Path,
    token_counter: TokenCounter | None = None,
    include_chat: bool = False,
) -> RetrievalDatasetResult:
    """Build and write the eval, training and validation sets of one workload.

    ``token_counter`` (the candidate's tokenizer) makes truncation exact; without it a
    conservative estimate is used. ``include_chat`` also reads the workload's chat logs and
    converts those in the documented RAG form (``docs/embedding-datasets.md``).

    Raises:
        DatasetError: fewer usable unique queries than ``min_total_records``; the message
            gives the count at each stage and the drop reasons.
    """
    spec = spec_from_config(config)
    assembler = RetrievalDatasetAssembler(spec)
    records = log_store.iter_recent(
        client_id,
        workload_id,
        limit=config.data_split_config.limit,
        kind=None if include_chat else LogKind.retrieval,
    )
    for record in records:
        assembler.add(record)
    try:
        dataset = assembler.finish(token_counter=token_counter)
    except NotEnoughQueries as exc:
        log.warning("retrieval_datasets_insufficient", **_brief(exc.stats))
        raise DatasetError(
            f"{client_id}/{workload_id}: cannot build an embedding dataset: {exc}"
        ) from exc

    out_dir = Path(out_dir)
    files = _write_files(dataset, out_dir)
    manifest = {
        "manifest_version": MANIFEST_VERSION,
        "client_id": client_id,
        "workload_id": workload_id,
        "include_chat": include_chat,
        "token_counter": "injected" if token_counter is not None else "estimate",
        "config": {
            "embedding_config": config.embedding_config.model_dump(mode="json"),
            "data_split_config": config.data_split_config.model_dump(mode="json"),
        },
        "spec": asdict(spec),
        "counts": dataset.stats.to_dict(),
        "files": files,
    }
    manifest_path = out_dir / MANIFEST_FILE
    _write_bytes(manifest_path, orjson.dumps(manifest, option=orjson.OPT_INDENT_2) + b"\n")
    log.info("retrieval_datasets_built", **_brief(dataset.stats))
    return RetrievalDatasetResult(
        out_dir=out_dir,
        files={name: out_dir / name for name in [*files, MANIFEST_FILE]},
        manifest_path=manifest_path,
        stats=dataset.stats,
        split=dataset.split,
    )


def _brief(stats: RetrievalDatasetStats) -> dict[str, Any]:
    return {
        "logs_read": stats.logs_read,
        "usable_logs": stats.usable_logs,
        "unique_queries": stats.unique_queries,
        "dropped_logs": stats.dropped_logs,
        "eval_queries": stats.eval_queries,
        "train_rows": stats.train_rows,
        "val_rows": stats.val_rows,
    }


def _jsonl_lines(rows: Iterable[Any]) -> Iterator[bytes]:
    return (orjson.dumps(row) for row in rows)


def _file_lines(dataset: RetrievalDataset) -> dict[str, tuple[Iterable[bytes], int]]:
    """Each output file as lazily rendered lines (without newlines) and its row count.

    Lines are rendered one at a time as the file is written, so a large corpus never
    exists twice in memory (once as rows, once as the file's bytes).
    """
    return {
        CORPUS_FILE: (_jsonl_lines(dataset.corpus), len(dataset.corpus)),
        QUERIES_FILE: (_jsonl_lines(dataset.queries), len(dataset.queries)),
        QRELS_FILE: ((line.encode() for line in dataset.qrels), len(dataset.qrels) - 1),
        TRAINING_FILE: (_jsonl_lines(dataset.training), len(dataset.training)),
        VALIDATION_FILE: (_jsonl_lines(dataset.validation), len(dataset.validation)),
        # One JSON document, not JSONL: a single "line" whose newline ends the file.
        REFERENCE_RUN_FILE: (
            [orjson.dumps(dataset.reference_run, option=orjson.OPT_INDENT_2)],
            len(dataset.reference_run),
        ),
    }


def _write_files(dataset: RetrievalDataset, out_dir: Path) -> dict[str, dict[str, Any]]:
    described: dict[str, dict[str, Any]] = {}
    for name, (lines, rows) in _file_lines(dataset).items():
        written = _write_lines(out_dir / name, lines)
        described[name] = {"sha256": written.sha256, "bytes": written.bytes, "rows": rows}
    return described


def _write_lines(path: Path, lines: Iterable[bytes]) -> DatasetFile:
    """Stream newline-terminated lines to ``path``, hashing as they go.

    The file appears under its name only when complete (temporary name, then rename), so a
    killed worker never leaves half a file that a rerun would trust.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = JsonlWriter(path)
    try:
        for line in lines:
            writer.write(line)
    except BaseException:
        writer.abort()
        raise
    return writer.commit()


def _write_bytes(path: Path, data: bytes) -> None:
    """Write via a temporary file and rename, so a killed worker never leaves half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)
