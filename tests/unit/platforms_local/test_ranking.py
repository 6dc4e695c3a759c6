"""Embedding evaluation's ranking: shared by in-process models and endpoints."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
from numpy.typing import NDArray

from flywheel.config.schema import CandidateModel, JobConfig
from flywheel.errors import PlatformError
from flywheel.platforms.local.jobfiles import Cancelled
from flywheel.platforms.local.ranking import (
    embed_texts,
    embedding_evaluation_spec,
    rank_by_similarity,
)


def _unit(rows: list[list[float]]) -> NDArray[np.float32]:
    matrix = np.asarray(rows, dtype=np.float32)
    return matrix / np.linalg.norm(matrix, axis=1, keepdims=True)


def test_ranking_is_by_cosine_best_first_with_ties_in_corpus_order() -> None:
    docs = _unit([[1, 0], [0, 1], [1, 1], [0, 1]])
    queries = _unit([[0, 1], [1, 0.1]])
    rankings = rank_by_similarity(
        doc_ids=["a", "b", "c", "d"], docs=docs, query_ids=["q1", "q2"], queries=queries, depth=3
    )
    assert rankings == {"q1": ["b", "d", "c"], "q2": ["a", "c", "b"]}


def test_an_empty_corpus_ranks_nothing() -> None:
    rankings = rank_by_similarity(
        doc_ids=[],
        docs=np.zeros((0, 0), dtype=np.float32),
        query_ids=["q1"],
        queries=_unit([[1, 0]]),
        depth=10,
    )
    assert rankings == {"q1": []}


class _Counting:
    def __init__(self) -> None:
        self.calls: list[int] = []

    def embed(self, texts: Sequence[str]) -> NDArray[np.float32]:
        self.calls.append(len(texts))
        return _unit([[1.0, float(len(t))] for t in texts])


def test_texts_are_embedded_in_chunks_and_cancellation_stops_between_them() -> None:
    embedder = _Counting()
    done: list[int] = []
    rows = embed_texts(embedder, ["x"] * 5, chunk=2, on_chunk=done.append)
    assert embedder.calls == [2, 2, 1]
    assert done == [2, 4, 5]
    assert rows.shape == (5, 2)

    asked = iter([False, True])
    with pytest.raises(Cancelled):
        embed_texts(embedder, ["x"] * 5, chunk=2, should_stop=lambda: next(asked))
    assert embedder.calls == [2, 2, 1, 2]  # one chunk, then the stop


def test_an_endpoint_spec_carries_its_concurrency_and_refuses_a_customized_variant(
    tmp_path: Path,
) -> None:
    candidate = CandidateModel(
        name="emb",
        model_type="embedding",
        endpoint_url="http://emb.test/",
        endpoint_model="m",
        api_key_env="EMB_KEY",
    )
    config = JobConfig(candidates=[candidate])
    datasets = {"beir_dir": str(tmp_path)}
    spec = embedding_evaluation_spec(
        candidate=candidate, datasets=datasets, config=config, customization=None
    )
    assert spec["model"] == {
        "kind": "endpoint",
        "name": "emb",
        "endpoint_url": "http://emb.test",
        "endpoint_model": "m",
        "api_key_env": "EMB_KEY",
    }
    assert spec["max_concurrency"] == config.evaluation_config.max_concurrency
    with pytest.raises(PlatformError, match="customization_enabled: false"):
        embedding_evaluation_spec(
            candidate=candidate,
            datasets=datasets,
            config=config,
            customization={"output_model": str(tmp_path)},
        )
