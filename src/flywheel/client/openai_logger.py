"""Log an application's OpenAI chat completions to Flywheel without slowing it down.

    logger = FlywheelLogger(HttpSink("https://flywheel.example", api_key=KEY))
    client = wrap_openai(OpenAI(), logger=logger, client_id="aiva", workload_id="router")
    client.chat.completions.create(model=..., messages=...)   # logged in the background
    ...
    logger.close()                                               # flushes what is queued

The application thread only snapshots the request and appends to a bounded in-memory queue;
converting, validating and sending happen on one background thread, in batches. When the
queue is full, records are dropped (the oldest by default) and counted: logging must never
block or break the application, so nothing here raises into it. The application's own
exceptions pass through unchanged.

Streamed completions (``stream=True``) are passed through unlogged and counted as
``skipped_streaming``: the response only exists once the application has consumed the stream.
``AsyncOpenAI`` clients work the same way (await the call as usual); delivery still happens
on the background thread, off the event loop.
"""

from __future__ import annotations

import inspect
import threading
import time
from collections import deque
from collections.abc import Awaitable, Mapping
from dataclasses import dataclass
from typing import Any, Literal, TypeVar, cast

import structlog

from flywheel.client.sinks import LogSink
from flywheel.domain.log_validation import RecordError, validate_log_record
from flywheel.domain.logs import ChatLog, RetrievalLog

_log = structlog.get_logger("flywheel.client")
T = TypeVar("T")
#: Request options that are transport settings or may carry secrets, not the prompt.
_DROPPED_KWARGS = frozenset({"extra_headers", "extra_query", "extra_body", "timeout"})


@dataclass(frozen=True, slots=True)
class LoggerStats:
    """Counters since the logger started (a snapshot)."""

    enqueued: int
    sent: int
    dropped: int
    invalid: int
    failed: int
    skipped_streaming: int
    queued: int


@dataclass(frozen=True, slots=True)
class _Completion:
    """A completion as captured on the application thread; converted later."""

    client_id: str
    workload_id: str
    timestamp_ms: int
    request: dict[str, Any]
    response: object


class FlywheelLogger:
    """Buffer log records and deliver them to a sink from a background thread."""

    def __init__(
        self,
        sink: LogSink,
        *,
        max_queue: int = 10_000,
        batch_size: int = 100,
        flush_interval_s: float = 1.0,
        overflow: Literal["drop_oldest", "drop_newest"] = "drop_oldest",
    ) -> None:
        if max_queue < 1 or batch_size < 1:
            raise ValueError("max_queue and batch_size must be at least 1")
        self._sink = sink
        self._max_queue = max_queue
        self._batch_size = batch_size
        self._interval = flush_interval_s
        self._drop_oldest = overflow == "drop_oldest"
        self._queue: deque[_Completion | Mapping[str, Any]] = deque()
        self._cond = threading.Condition()
        self._closing = False
        self._closed = False
        self._flush_requests = 0
        self._in_flight = 0
        self._counts = dict.fromkeys(
            ("enqueued", "sent", "dropped", "invalid", "failed", "skipped_streaming"), 0
        )
        self._thread = threading.Thread(target=self._run, name="flywheel-logger", daemon=True)
        self._thread.start()

    # -- application side (never blocks for long, never raises) -------------------------
    def log(self, record: Mapping[str, Any]) -> None:
        """Queue one raw record (chat or retrieval, as in docs/logs.md); validated later."""
        try:
            item = dict(record)  # the app may reuse its dict
        except Exception:
            self._bump("invalid")
            return
        self._put(item)

    def log_chat(
        self,
        *,
        client_id: str,
        workload_id: str,
        request: Mapping[str, Any],
        response: object,
        timestamp_ms: int | None = None,
    ) -> None:
        """Queue one chat completion; ``response`` may be a ChatCompletion or a dict."""
        try:
            item = _Completion(
                client_id=client_id,
                workload_id=workload_id,
                timestamp_ms=timestamp_ms if timestamp_ms is not None else _now_ms(),
                request=_snapshot(request),
                response=response,
            )
        except Exception:  # a request we cannot even copy is not worth breaking the app for
            self._bump("invalid")
            return
        self._put(item)

    def count_skipped_streaming(self) -> None:
        """Count a streamed completion that was passed through unlogged."""
        self._bump("skipped_streaming")

    def stats(self) -> LoggerStats:
        """A snapshot of the counters."""
        with self._cond:
            return LoggerStats(queued=len(self._queue), **self._counts)

    def flush(self, timeout_s: float = 10.0) -> bool:
        """Wait until everything queued so far has been handled; False on timeout."""
        with self._cond:
            self._flush_requests += 1
            self._cond.notify_all()
            try:
                return self._cond.wait_for(
                    lambda: (not self._queue and self._in_flight == 0) or self._closed,
                    timeout=timeout_s,
                )
            finally:
                self._flush_requests -= 1

    def close(self, timeout_s: float = 10.0) -> None:
        """Deliver what is queued (up to ``timeout_s``), stop the thread, close the sink."""
        with self._cond:
            if self._closing:
                return
            self._closing = True
            self._cond.notify_all()
        self._thread.join(timeout_s)
        try:
            self._sink.close()
        except Exception as exc:
            _log.warning("flywheel_log_sink_close_failed", error=type(exc).__name__)

    def __enter__(self) -> FlywheelLogger:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _put(self, item: _Completion | Mapping[str, Any]) -> None:
        with self._cond:
            if self._closing:
                self._counts["dropped"] += 1
                return
            if len(self._queue) >= self._max_queue:
                self._counts["dropped"] += 1
                if not self._drop_oldest:
                    return
                self._queue.popleft()
            self._queue.append(item)
            self._counts["enqueued"] += 1
            # Wake the worker only when it has something new to decide about.
            if len(self._queue) in (1, self._batch_size):
                self._cond.notify_all()

    def _bump(self, name: str, n: int = 1) -> None:
        with self._cond:
            self._counts[name] += n

    # -- background side ----------------------------------------------------------------
    def _run(self) -> None:
        try:
            while (items := self._next_batch()) is not None:
                try:
                    self._deliver(items)
                finally:
                    with self._cond:
                        self._in_flight = 0
                        self._cond.notify_all()
        finally:
            with self._cond:
                self._closed = True
                self._cond.notify_all()

    def _next_batch(self) -> list[_Completion | Mapping[str, Any]] | None:
        with self._cond:
            while not self._queue:
                if self._closing:
                    return None
                self._cond.wait()
            deadline = time.monotonic() + self._interval
            while len(self._queue) < self._batch_size and not (
                self._closing or self._flush_requests
            ):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._cond.wait(remaining)
            count = min(self._batch_size, len(self._queue))
            self._in_flight = count
            return [self._queue.popleft() for _ in range(count)]

    def _deliver(self, items: list[_Completion | Mapping[str, Any]]) -> None:
        records: list[ChatLog | RetrievalLog] = []
        for item in items:
            try:
                raw = _to_raw(item) if isinstance(item, _Completion) else item
                result = validate_log_record(raw)
            except Exception as exc:
                self._bump("invalid")
                _log.warning("flywheel_log_unconvertible", error=type(exc).__name__)
                continue
            if isinstance(result, RecordError):
                self._bump("invalid")
                _log.warning("flywheel_log_invalid", field=result.field, reason=result.reason)
            else:
                records.append(result.record)
        if not records:
            return
        try:
            self._sink.send(records)
        except Exception as exc:
            self._bump("failed", len(records))
            _log.warning("flywheel_log_delivery_failed", records=len(records), error=str(exc))
        else:
            self._bump("sent", len(records))


def wrap_openai(client: T, *, logger: FlywheelLogger, client_id: str, workload_id: str) -> T:
    """Return ``client`` (``OpenAI`` or ``AsyncOpenAI``) with chat completions logged.

    Only ``client.chat.completions.create`` is intercepted; every other attribute is the
    client's own. The result is typed as the client's class for editors, but is a proxy.
    """
    return cast(T, _LoggedClient(client, _Context(logger, client_id, workload_id)))


@dataclass(frozen=True, slots=True)
class _Context:
    logger: FlywheelLogger
    client_id: str
    workload_id: str


class _LoggedClient:
    def __init__(self, inner: Any, ctx: _Context) -> None:
        self._inner = inner
        self._ctx = ctx

    @property
    def chat(self) -> _LoggedChat:
        return _LoggedChat(self._inner.chat, self._ctx)

    def with_options(self, *args: Any, **kwargs: Any) -> _LoggedClient:
        return _LoggedClient(self._inner.with_options(*args, **kwargs), self._ctx)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


class _LoggedChat:
    def __init__(self, inner: Any, ctx: _Context) -> None:
        self._inner = inner
        self._ctx = ctx

    @property
    def completions(self) -> _LoggedCompletions:
        return _LoggedCompletions(self._inner.completions, self._ctx)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


class _LoggedCompletions:
    def __init__(self, inner: Any, ctx: _Context) -> None:
        self._inner = inner
        self._ctx = ctx

    def create(self, *args: Any, **kwargs: Any) -> Any:
        """Call through; log the request and the response in the background."""
        if kwargs.get("stream"):
            self._ctx.logger.count_skipped_streaming()
            return self._inner.create(*args, **kwargs)
        started = _now_ms()
        result = self._inner.create(*args, **kwargs)
        if inspect.isawaitable(result):
            return self._finish_async(result, kwargs, started)
        self._record(kwargs, result, started)
        return result

    async def _finish_async(
        self, pending: Awaitable[Any], kwargs: dict[str, Any], started: int
    ) -> Any:
        result = await pending
        self._record(kwargs, result, started)
        return result

    def _record(self, kwargs: dict[str, Any], result: object, started: int) -> None:
        try:
            self._ctx.logger.log_chat(
                client_id=self._ctx.client_id,
                workload_id=self._ctx.workload_id,
                request=kwargs,
                response=result,
                timestamp_ms=started,
            )
        except Exception:  # log_chat does not raise; this guards the app against our bugs
            return

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def _snapshot(request: Mapping[str, Any]) -> dict[str, Any]:
    """Copy what the app may mutate after the call (it appends to ``messages``)."""
    return {
        key: list(value) if isinstance(value, list | tuple) else value
        for key, value in request.items()
        if key not in _DROPPED_KWARGS and type(value).__name__ not in ("NotGiven", "Omit")
    }


def _to_raw(item: _Completion) -> dict[str, Any]:
    request: dict[str, Any] = {}
    for key, value in item.request.items():
        try:
            request[key] = _jsonable(value)
        except TypeError:
            continue  # e.g. a callback or client object: not part of the prompt
    return {
        "kind": "chat",
        "client_id": item.client_id,
        "workload_id": item.workload_id,
        "timestamp": item.timestamp_ms,
        "request": request,
        "response": _dump(item.response, exclude_none=False),
    }


def _jsonable(value: object, depth: int = 0) -> Any:
    if depth > 64:
        raise TypeError("too deeply nested")
    if value is None or isinstance(value, str | int | float | bool):
        return value
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v, depth + 1) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v, depth + 1) for v in value]
    if hasattr(value, "model_dump"):
        return _dump(value, exclude_none=True)
    raise TypeError(f"cannot log a {type(value).__name__}")


def _dump(value: object, *, exclude_none: bool) -> Any:
    if isinstance(value, Mapping):
        return dict(value)
    dump = getattr(value, "model_dump", None)
    if dump is None:
        raise TypeError(f"cannot log a {type(value).__name__} response")
    return dump(mode="json", exclude_none=exclude_none, warnings=False)
