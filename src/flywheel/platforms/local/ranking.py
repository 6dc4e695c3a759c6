"""Embedding evaluation: rank a BEIR corpus for every judged query.

The candidate embeds the corpus (``corpus.jsonl``) and the queries that have qrels
(``queries.jsonl``, ``qrels/test.tsv``), in-process with sentence-transformers or through an
OpenAI-compatible ``/v1/embeddings`` endpoint (:mod:`flywheel.platforms.local.embedder`:
batched, with bounded concurrency, timeouts and retries). Both paths give unit-length rows
to the same ranking code, cosine similarity best first, and the result is ``rankings``
(query id → ranked doc ids), which the workflow scores with the shared retrieval metrics.
So an endpoint and an in-process copy of the same model rank identically.

An endpoint has no weights here, so it has no fine-tuned variant: a ``customized``
evaluation of one is refused, as its customization is.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from flywheel.config.schema import CandidateModel, JobConfig
from flywheel.errors import PlatformError
from flywheel.platforms.base import Handle
from flywheel.platforms.local.embedder import ENDPOINT_BATCH, TextEmbedder
from flywheel.platforms.local.jobfiles import Cancelled, WorkDir, read_jsonl, write_json_atomic
from flywheel.platforms.local.models import ModelSource, candidate_source

RANK_DEPTH = 100
#: Texts embedded between two cancellation checks / progress reports (in-process).
LOCAL_CHUNK = 256
#: Queries scored against the corpus at once, so the score matrix stays small.
QUERY_BLOCK = 256


def embedding_evaluation_spec(
    *,
    candidate: CandidateModel,
    datasets: Handle,
    config: JobConfig,
    customization: Handle | None,
) -> dict[str, Any]:
    """The worker spec for ranking the BEIR eval set with a (customized) embedding model."""
    if not datasets.get("beir_dir"):
        raise PlatformError("local platform: the embedding job has no BEIR eval directory")
    source = candidate_source(candidate)
    if customization is not None:
        if source.kind == "endpoint":
            raise PlatformError(
                f"local platform: {candidate.name!r} is served by the endpoint "
                f"{source.endpoint_url} and has no fine-tuned model to evaluate; "
                "set customization_enabled: false for it"
            )
        source = ModelSource(kind="hf", name=candidate.name, path=customization["output_model"])
    return {
        "kind": "embedding_evaluation",
        "model": source.to_dict(),
        "beir_dir": datasets["beir_dir"],
        "depth": max(RANK_DEPTH, *config.embedding_config.recall_k),
        "max_seq_length": config.embedding_config.max_seq_length,
        "max_concurrency": config.evaluation_config.max_concurrency,
    }


def read_beir(beir: Path) -> tuple[dict[str, str], dict[str, str]]:
    """``(corpus, queries)``: doc id → title and text; query id → text, judged queries only."""
    corpus = {
        str(d["_id"]): f"{d.get('title') or ''} {d.get('text') or ''}".strip()
        for d in read_jsonl(beir / "corpus.jsonl")
    }
    judged = {
        line.split("\t")[0]
        for line in (beir / "qrels" / "test.tsv").read_text(encoding="utf-8").splitlines()[1:]
        if line.strip()
    }
    queries = {
        str(q["_id"]): str(q["text"])
        for q in read_jsonl(beir / "queries.jsonl")
        if str(q["_id"]) in judged
    }
    return corpus, queries


def embed_texts(
    embedder: TextEmbedder,
    texts: Sequence[str],
    *,
    chunk: int,
    should_stop: Callable[[], bool] = lambda: False,
    on_chunk: Callable[[int], None] = lambda done: None,
) -> NDArray[np.float32]:
    """Unit rows for ``texts``, ``chunk`` at a time, checking for cancellation in between."""
    parts: list[NDArray[np.float32]] = []
    for start in range(0, len(texts), chunk):
        if should_stop():
            raise Cancelled
        parts.append(embedder.embed(list(texts[start : start + chunk])))
        on_chunk(min(start + chunk, len(texts)))
    return np.vstack(parts) if parts else np.zeros((0, 0), dtype=np.float32)


def rank_by_similarity(
    *,
    doc_ids: Sequence[str],
    docs: NDArray[np.float32],
    query_ids: Sequence[str],
    queries: NDArray[np.float32],
    depth: int,
) -> dict[str, list[str]]:
    """Query id → doc ids by cosine similarity of unit rows, best first (ties: corpus order)."""
    k = min(depth, len(doc_ids))
    if k == 0:
        return {q: [] for q in query_ids}
    rankings: dict[str, list[str]] = {}
    for start in range(0, len(query_ids), QUERY_BLOCK):
        scores = queries[start : start + QUERY_BLOCK] @ docs.T
        order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
        for query_id, row in zip(query_ids[start : start + QUERY_BLOCK], order, strict=True):
            rankings[query_id] = [doc_ids[i] for i in row]
    return rankings


def open_ranking_embedder(spec: Mapping[str, Any]) -> tuple[TextEmbedder, int]:
    """The embedder a spec names and how many texts to embed per chunk."""
    from flywheel.platforms.local.embedder import EndpointTextEmbedder, LocalTextEmbedder

    source = ModelSource.from_dict(spec["model"])
    if source.kind == "endpoint":
        concurrency = int(spec.get("max_concurrency", 8))
        # A chunk fills every concurrent slot with one full batch.
        embedder = EndpointTextEmbedder(source, concurrency=concurrency)
        return embedder, ENDPOINT_BATCH * concurrency
    local = LocalTextEmbedder(
        source,
        torch_threads=int(spec.get("torch_threads", 0)),
        max_seq_length=int(spec["max_seq_length"]),
    )
    return local, LOCAL_CHUNK


def run_embedding_evaluation(work: WorkDir, spec: Mapping[str, Any]) -> None:
    """Worker entry: rank the BEIR corpus for every query with qrels."""
    work.report("running", percent=0.0, message="loading model")
    corpus, queries = read_beir(Path(spec["beir_dir"]))
    doc_ids, query_ids = list(corpus), list(queries)
    total = max(len(doc_ids) + len(query_ids), 1)
    embedder, chunk = open_ranking_embedder(spec)

    def progress(phase: str, done: int, offset: int) -> None:
        work.report(
            "running",
            percent=round(95 * (offset + done) / total, 1),
            message=f"embedding {phase}: {done}",
            details={"phase": phase, "done": done},
        )

    try:
        docs = embed_texts(
            embedder,
            [corpus[d] for d in doc_ids],
            chunk=chunk,
            should_stop=work.cancel_requested,
            on_chunk=lambda done: progress("passages", done, 0),
        )
        embedded = embed_texts(
            embedder,
            [queries[q] for q in query_ids],
            chunk=chunk,
            should_stop=work.cancel_requested,
            on_chunk=lambda done: progress("queries", done, len(doc_ids)),
        )
    finally:
        close = getattr(embedder, "close", None)
        if close is not None:
            close()
    rankings = rank_by_similarity(
        doc_ids=doc_ids,
        docs=docs,
        query_ids=query_ids,
        queries=embedded,
        depth=int(spec["depth"]),
    )
    write_json_atomic(
        work.result,
        {"rankings": rankings, "artifacts": {"result_file": str(work.result)}},
    )
    work.report("completed", percent=100.0, message=f"{len(queries)} queries ranked")
