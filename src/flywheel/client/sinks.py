"""Where :class:`~flywheel.client.openai_logger.FlywheelLogger` delivers validated records.

A sink is called only from the logger's background thread, one batch at a time, so it may
block (network, disk) without slowing the application. It raises on failure; the logger
counts the lost records and carries on.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import httpx
import orjson
from pydantic import SecretStr
from tenacity import (
    Retrying,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential,
)

from flywheel.domain.logs import ChatLog, RetrievalLog
from flywheel.errors import FlywheelError
from flywheel.stores.base import LogStore

NDJSON = "application/x-ndjson"


class LogDeliveryFailed(FlywheelError):
    """A batch of log records could not be delivered (after retries, where they apply)."""


class _Transient(LogDeliveryFailed):
    """A failure worth retrying: connection trouble, 429 or 5xx."""


class LogSink(Protocol):
    """Receives batches of validated records from the logger's background thread."""

    def send(self, records: Sequence[ChatLog | RetrievalLog]) -> None:
        """Deliver one batch.

        Raises:
            LogDeliveryFailed: the batch was not delivered (the logger counts it as lost).
        """
        ...

    def close(self) -> None:
        """Release connections; called once by ``FlywheelLogger.close``."""
        ...


class StoreSink:
    """Write records straight into a log store (same process as the store, e.g. jobs or demos).

    The store stays the caller's: :meth:`close` does not close it.
    """

    def __init__(self, store: LogStore) -> None:
        self._store = store

    def send(self, records: Sequence[ChatLog | RetrievalLog]) -> None:
        """Write the batch."""
        self._store.write(records)

    def close(self) -> None:
        """Nothing to release; the store belongs to the caller."""


class HttpSink:
    """POST batches as NDJSON to a Flywheel API's ``/api/logs``.

    Connection errors, 429 and 5xx are retried with exponential backoff; other 4xx answers
    are not (the batch itself is at fault). ``transport`` lets tests fake the server.
    """

    def __init__(
        self,
        api_url: str,
        api_key: str | SecretStr | None = None,
        *,
        timeout_s: float = 10.0,
        max_attempts: int = 4,
        backoff_s: float = 0.5,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        headers = {"Content-Type": NDJSON, "User-Agent": "flywheel-logger"}
        if api_key is not None:
            secret = api_key.get_secret_value() if isinstance(api_key, SecretStr) else api_key
            headers["Authorization"] = f"Bearer {secret}"
        self._client = httpx.Client(
            base_url=api_url.rstrip("/"), headers=headers, timeout=timeout_s, transport=transport
        )
        self._max_attempts = max_attempts
        self._backoff_s = backoff_s

    def __repr__(self) -> str:  # never show the key
        return f"HttpSink({str(self._client.base_url)!r})"

    def send(self, records: Sequence[ChatLog | RetrievalLog]) -> None:
        """POST the batch; retry transient failures.

        Raises:
            LogDeliveryFailed: the API refused the batch or stayed unreachable.
        """
        body = b"".join(orjson.dumps(r.model_dump(mode="json")) + b"\n" for r in records)
        retrying = Retrying(
            stop=stop_after_attempt(self._max_attempts),
            wait=wait_exponential(multiplier=self._backoff_s, max=30),
            retry=retry_if_exception_type(_Transient),
            reraise=True,
        )
        for attempt in retrying:
            with attempt:
                self._post(body)

    def _post(self, body: bytes) -> None:
        try:
            response = self._client.post("/api/logs", content=body)
        except httpx.TransportError as exc:
            raise _Transient(f"Flywheel API unreachable at /api/logs: {exc}") from exc
        status = response.status_code
        if status == 429 or status >= 500:
            raise _Transient(f"Flywheel API /api/logs answered {status}")
        if status >= 400:
            raise LogDeliveryFailed(f"Flywheel API /api/logs refused the batch with {status}")

    def close(self) -> None:
        """Close the HTTP client."""
        self._client.close()
