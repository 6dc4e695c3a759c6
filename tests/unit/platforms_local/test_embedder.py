"""Text embeddings for the workflow: a tiny local model and a faked endpoint."""

from __future__ import annotations

from pathlib import Path

import httpx
import numpy as np
import orjson
import pytest

from flywheel.config.schema import EmbeddingModelRef
from flywheel.errors import PlatformError
from flywheel.platforms.local.embedder import (
    ENDPOINT_BATCH,
    EndpointTextEmbedder,
    LocalTextEmbedder,
    open_embedder,
)
from flywheel.platforms.local.models import ModelSource


def test_a_local_sentence_model_embeds_unit_rows(tmp_path: Path) -> None:
    from tests.support.tiny_models import build_tiny_sentence_model

    model_dir = build_tiny_sentence_model(tmp_path)
    embedder = open_embedder(EmbeddingModelRef(name="tiny", hf_model=str(model_dir)))
    assert isinstance(embedder, LocalTextEmbedder)
    rows = embedder.embed(["The weather in Paris is sunny.", "Book a table for two."])
    assert rows.shape == (2, 32)
    assert np.allclose(np.linalg.norm(rows, axis=1), 1.0, atol=1e-5)
    again = embedder.embed(["The weather in Paris is sunny."])
    assert np.allclose(again[0], rows[0], atol=1e-6)


def test_a_packaged_model_is_found(model_packages: Path) -> None:
    embedder = open_embedder(EmbeddingModelRef(name="m", python_package="fake_dir_pkg"))
    assert isinstance(embedder, LocalTextEmbedder)
    assert embedder.source.path == str(model_packages / "fake_dir_pkg" / "model")


def test_an_endpoint_is_called_in_batches() -> None:
    sizes: list[int] = []

    def handler(request: httpx.Request) -> httpx.Response:
        assert request.url.path == "/v1/embeddings"
        texts = orjson.loads(request.content)["input"]
        sizes.append(len(texts))
        data = [{"index": i, "embedding": [3.0, 4.0]} for i in reversed(range(len(texts)))]
        return httpx.Response(200, json={"data": data})

    embedder = open_embedder(
        EmbeddingModelRef(name="e", endpoint_url="http://emb.test", endpoint_model="m"),
        transport=httpx.MockTransport(handler),
    )
    assert isinstance(embedder, EndpointTextEmbedder)
    rows = embedder.embed([f"t{i}" for i in range(70)])
    embedder.close()
    assert sizes == [64, 6]
    assert rows.shape == (70, 2)
    assert np.allclose(rows[0], [0.6, 0.8])


def test_an_endpoint_that_refuses_is_a_platform_error() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(404, text="no such model")

    embedder = open_embedder(
        EmbeddingModelRef(name="e", endpoint_url="http://emb.test/v1", endpoint_model="m"),
        transport=httpx.MockTransport(handler),
    )
    with pytest.raises(PlatformError, match="404"):
        embedder.embed(["x"])


def test_an_endpoint_runs_batches_concurrently_up_to_the_bound() -> None:
    import threading

    # Two batches must be in flight together to pass the barrier: sequential calls would
    # break it (BrokenBarrierError -> a 500 -> PlatformError).
    barrier = threading.Barrier(2, timeout=10)
    lock = threading.Lock()
    in_flight, peak = [0], [0]

    def handler(request: httpx.Request) -> httpx.Response:
        with lock:
            in_flight[0] += 1
            peak[0] = max(peak[0], in_flight[0])
        try:
            barrier.wait()
        except threading.BrokenBarrierError:
            return httpx.Response(400, text="batches were not concurrent")
        finally:
            with lock:
                in_flight[0] -= 1
        texts = orjson.loads(request.content)["input"]
        data = [{"index": i, "embedding": [float(t[1:]), 1.0]} for i, t in enumerate(texts)]
        return httpx.Response(200, json={"data": data})

    source = ModelSource(
        kind="endpoint", name="e", endpoint_url="http://emb.test", endpoint_model="m"
    )
    embedder = EndpointTextEmbedder(source, concurrency=2, transport=httpx.MockTransport(handler))
    texts = [f"t{i}" for i in range(4 * ENDPOINT_BATCH)]
    rows = embedder.embed(texts)
    embedder.close()
    assert peak[0] == 2
    assert rows.shape == (len(texts), 2)
    expected = np.array([[float(i), 1.0] for i in range(len(texts))])
    expected /= np.linalg.norm(expected, axis=1, keepdims=True)
    assert np.allclose(rows, expected, atol=1e-6)  # batch order kept


@pytest.mark.parametrize(
    ("reply", "match"),
    [
        ({"data": [{"index": 0, "embedding": [1.0]}]}, "1 embeddings returned for 2 inputs"),
        ({"error": "overloaded"}, "not an OpenAI /v1/embeddings response"),
        (
            {"data": [{"index": 0, "embedding": [1.0]}, {"index": 1, "embedding": [1.0, 2.0]}]},
            "different lengths",
        ),
    ],
)
def test_a_malformed_endpoint_reply_is_a_clear_platform_error(
    reply: dict[str, object], match: str
) -> None:
    embedder = open_embedder(
        EmbeddingModelRef(name="e", endpoint_url="http://emb.test", endpoint_model="m"),
        transport=httpx.MockTransport(lambda request: httpx.Response(200, json=reply)),
    )
    with pytest.raises(PlatformError, match=match):
        embedder.embed(["a", "b"])
