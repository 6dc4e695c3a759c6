"""A small client for OpenAI-compatible chat endpoints (vLLM, NIM, llama.cpp, OpenAI...).

Requests run concurrently up to a bound; each has a timeout, and transient failures
(connection errors, timeouts, 429 and 5xx) are retried with exponential backoff. A request
that still fails becomes an answer with an ``error``, so one bad item never sinks an
evaluation.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import httpx
from tenacity import (
    AsyncRetrying,
    retry_if_exception,
    stop_after_attempt,
    wait_exponential,
)

from flywheel.errors import PlatformError, PlatformUnavailable
from flywheel.platforms.local.models import ModelSource
from flywheel.platforms.local.tool_prompt import parse_reply

DEFAULT_TIMEOUT_S = 120.0
DEFAULT_ATTEMPTS = 4


@dataclass(frozen=True)
class EndpointAnswer:
    """One endpoint reply as an OpenAI assistant message (or the error that replaced it)."""

    message: dict[str, Any] | None
    latency_ms: float | None
    input_tokens: int | None
    output_tokens: int | None
    format_errors: int = 0
    error: str | None = None


def is_transient(exc: BaseException) -> bool:
    """Whether an HTTP failure is worth retrying (transport error, 429, 5xx)."""
    if isinstance(exc, httpx.TransportError):
        return True
    if isinstance(exc, httpx.HTTPStatusError):
        return exc.response.status_code == 429 or exc.response.status_code >= 500
    return False


def _headers(source: ModelSource) -> dict[str, str]:
    if source.api_key_env and os.environ.get(source.api_key_env):
        return {"Authorization": f"Bearer {os.environ[source.api_key_env]}"}
    return {}


def _base(source: ModelSource) -> str:
    url = source.endpoint_url or ""
    return url if url.endswith("/v1") else f"{url}/v1"


def list_models(source: ModelSource, *, timeout_s: float = 10.0) -> list[str]:
    """Model ids the endpoint serves (``GET /v1/models``)."""
    url = f"{_base(source)}/models"
    try:
        response = httpx.get(url, headers=_headers(source), timeout=timeout_s)
        response.raise_for_status()
    except httpx.TransportError as exc:
        raise PlatformUnavailable(f"endpoint {url} unreachable: {exc}") from exc
    except httpx.HTTPStatusError as exc:
        error = PlatformUnavailable if is_transient(exc) else PlatformError
        raise error(f"endpoint {url} answered {exc.response.status_code}") from exc
    return [str(m.get("id")) for m in response.json().get("data", [])]


def _message(choice: Mapping[str, Any]) -> tuple[dict[str, Any], int]:
    message = dict(choice.get("message") or {})
    message.setdefault("role", "assistant")
    content = message.get("content")
    if not message.get("tool_calls") and isinstance(content, str) and "<tool_call>" in content:
        parsed = parse_reply(content)  # a server that does not parse its model's tool calls
        return parsed.message, parsed.format_errors
    return message, 0


class EndpointClient:
    """Chat completions against one OpenAI-compatible model."""

    def __init__(
        self,
        source: ModelSource,
        *,
        concurrency: int,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        attempts: int = DEFAULT_ATTEMPTS,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.source = source
        self.concurrency = concurrency
        self.timeout_s = timeout_s
        self.attempts = attempts
        self.transport = transport

    async def _one(
        self,
        client: httpx.AsyncClient,
        chat: tuple[Sequence[Mapping[str, Any]], Sequence[Mapping[str, Any]] | None],
        max_new_tokens: int,
    ) -> EndpointAnswer:
        messages, tools = chat
        body: dict[str, Any] = {
            "model": self.source.endpoint_model,
            "messages": list(messages),
            "max_tokens": max_new_tokens,
            "temperature": 0,
        }
        if tools:
            body["tools"] = list(tools)
        started = time.perf_counter()
        try:
            async for attempt in AsyncRetrying(
                stop=stop_after_attempt(self.attempts),
                wait=wait_exponential(multiplier=0.5, max=10),
                retry=retry_if_exception(is_transient),
                reraise=True,
            ):
                with attempt:
                    started = time.perf_counter()
                    response = await client.post("/chat/completions", json=body)
                    response.raise_for_status()
        except (httpx.HTTPError, ValueError) as exc:
            detail = exc.response.text[:200] if isinstance(exc, httpx.HTTPStatusError) else ""
            return EndpointAnswer(None, None, None, None, error=f"{exc!r} {detail}".strip())
        latency_ms = (time.perf_counter() - started) * 1000
        data = response.json()
        choices = data.get("choices") or [{}]
        usage = data.get("usage") or {}
        message, errors = _message(choices[0])
        return EndpointAnswer(
            message=message,
            latency_ms=latency_ms,
            input_tokens=usage.get("prompt_tokens"),
            output_tokens=usage.get("completion_tokens"),
            format_errors=errors,
        )

    async def _all(
        self,
        chats: Sequence[tuple[Sequence[Mapping[str, Any]], Sequence[Mapping[str, Any]] | None]],
        max_new_tokens: int,
        should_stop: Callable[[], bool],
        on_item: Callable[[int], None],
    ) -> list[EndpointAnswer] | None:
        semaphore = asyncio.Semaphore(self.concurrency)
        done = 0
        stopped = False

        async def guarded(index: int) -> EndpointAnswer | None:
            nonlocal done, stopped
            async with semaphore:
                if stopped or should_stop():
                    stopped = True
                    return None
                answer = await self._one(client, chats[index], max_new_tokens)
            done += 1
            on_item(done)
            return answer

        async with httpx.AsyncClient(
            base_url=_base(self.source),
            headers=_headers(self.source),
            timeout=self.timeout_s,
            transport=self.transport,
        ) as client:
            answers = await asyncio.gather(*(guarded(i) for i in range(len(chats))))
        if stopped:
            return None
        return [a for a in answers if a is not None]

    def complete(
        self,
        chats: Sequence[tuple[Sequence[Mapping[str, Any]], Sequence[Mapping[str, Any]] | None]],
        *,
        max_new_tokens: int,
        should_stop: Callable[[], bool] = lambda: False,
        on_item: Callable[[int], None] = lambda done: None,
    ) -> list[EndpointAnswer] | None:
        """Answer every chat in order; ``None`` when ``should_stop`` asked to stop."""
        return asyncio.run(self._all(chats, max_new_tokens, should_stop, on_item))
