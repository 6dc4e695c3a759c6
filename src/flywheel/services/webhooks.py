"""Signed webhooks: an HMAC-signed POST with bounded, backed-off retries.

Used for the promotion webhook (an application's model changed) and the job completion
webhook (:mod:`flywheel.workflow.notify`). The body is compact JSON;
``X-Flywheel-Signature: sha256=<hex>`` is the HMAC-SHA256 of the exact body bytes under the
shared secret, so a receiver verifies before parsing.
Delivery is retried with exponential backoff on connection errors, timeouts and 5xx (a
4xx means the receiver refused the content; retrying will not change its mind). A
delivery that still fails is returned and logged, never raised: the caller records it (a
promotion is already recorded and applications can always poll
``GET /api/workloads/{c}/{w}/model``; a job's notification outcome is kept on the job).
"""

from __future__ import annotations

import hashlib
import hmac
import os
from dataclasses import asdict, dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx
import orjson
import structlog
from tenacity import (
    RetryError,
    Retrying,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential,
)

log = structlog.get_logger(__name__)

SIGNATURE_HEADER = "X-Flywheel-Signature"
EVENT_HEADER = "X-Flywheel-Event"


class _Retryable(Exception):
    """A transient delivery failure (connection, timeout, 5xx)."""


@dataclass(frozen=True, slots=True)
class Delivery:
    """What happened to one webhook call."""

    url: str  # scheme://host[:port]/path only: never credentials or query strings
    delivered: bool
    attempts: int
    status_code: int | None = None
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (the API returns it with the promotion)."""
        return asdict(self)


def sign(body: bytes, secret: str) -> str:
    """The signature header value for ``body``: ``sha256=`` + hex HMAC-SHA256."""
    digest = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def verify(body: bytes, secret: str, signature: str) -> bool:
    """True when ``signature`` is the signature of ``body`` (constant-time compare)."""
    return hmac.compare_digest(sign(body, secret), signature)


def safe_url(url: str) -> str:
    """``url`` without credentials or query string (safe to log and to store)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}{parts.path}"


class WebhookSender:
    """POST signed events to one URL with bounded retries."""

    def __init__(
        self,
        *,
        url: str,
        secret: str | None,
        attempts: int = 4,
        timeout_s: float = 5.0,
        backoff_s: float = 0.5,
        max_backoff_s: float = 4.0,
        transport: httpx.BaseTransport | None = None,
        label: str = "promotion webhook",
    ) -> None:
        """Send to ``url``; sign when ``secret`` is set; retry up to ``attempts`` times.

        ``label`` names the webhook in errors and log events (``<label>_failed``).
        """
        self._url = url
        self._secret = secret
        self._attempts = attempts
        self._timeout_s = timeout_s
        self._backoff_s = backoff_s
        self._max_backoff_s = max_backoff_s
        self._transport = transport
        self._label = label
        self._event = label.replace(" ", "_")

    @classmethod
    def from_settings(cls, *, url: str | None, secret_env: str | None) -> WebhookSender | None:
        """A sender for the configured URL (None when none is set); the secret is read now."""
        if not url:
            return None
        secret = os.environ.get(secret_env) if secret_env else None
        return cls(url=url, secret=secret or None)

    def send(self, event: str, payload: dict[str, Any]) -> Delivery:
        """Deliver one event; return the outcome (failures are logged, not raised)."""
        body = orjson.dumps({"event": event, **payload})
        headers = {"Content-Type": "application/json", EVENT_HEADER: event}
        if self._secret:
            headers[SIGNATURE_HEADER] = sign(body, self._secret)
        attempts = 0
        last: httpx.Response | None = None

        def post(client: httpx.Client) -> httpx.Response:
            nonlocal attempts, last
            attempts += 1
            try:
                response = client.post(self._url, content=body, headers=headers)
            except httpx.HTTPError as exc:
                raise _Retryable(f"{type(exc).__name__}: {exc}") from exc
            last = response
            if response.status_code >= 500:
                raise _Retryable(f"HTTP {response.status_code}")
            return response

        retrying = Retrying(
            stop=stop_after_attempt(self._attempts),
            wait=wait_exponential(multiplier=self._backoff_s, max=self._max_backoff_s),
            retry=retry_if_exception_type(_Retryable),
            reraise=False,
        )
        url = safe_url(self._url)
        try:
            with httpx.Client(timeout=self._timeout_s, transport=self._transport) as client:
                response = retrying(post, client)
        except RetryError as exc:
            cause = exc.last_attempt.exception()
            delivery = Delivery(
                url=url,
                delivered=False,
                attempts=attempts,
                status_code=last.status_code if last is not None else None,
                error=f"{self._label} failed after {attempts} attempt(s): {cause}",
            )
            log.warning(f"{self._event}_failed", **delivery.to_dict())
            return delivery
        if response.is_success:
            log.info(f"{self._event}_delivered", url=url, attempts=attempts)
            return Delivery(
                url=url, delivered=True, attempts=attempts, status_code=response.status_code
            )
        delivery = Delivery(
            url=url,
            delivered=False,
            attempts=attempts,
            status_code=response.status_code,
            error=f"{self._label} refused with HTTP {response.status_code}",
        )
        log.warning(f"{self._event}_failed", **delivery.to_dict())
        return delivery
