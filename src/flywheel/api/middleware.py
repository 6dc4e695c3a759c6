"""ASGI middleware: a request id bound into the log context, latency by route, body size limit.

Written as plain ASGI (not ``BaseHTTPMiddleware``) so streaming bodies and context
variables pass through untouched.
"""

from __future__ import annotations

import re
import time
import uuid

import orjson
import structlog
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from flywheel.api.metrics import ApiMetrics

_SAFE_ID = re.compile(r"^[A-Za-z0-9._-]{1,128}$")


class RequestContextMiddleware:
    """Bind ``request_id`` for every log line of a request and echo it in ``X-Request-ID``."""

    def __init__(self, app: ASGIApp, *, metrics: ApiMetrics) -> None:
        """Wrap ``app``; observe latencies into ``metrics``."""
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Handle one request."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = dict(scope["headers"]).get(b"x-request-id", b"").decode("latin-1")
        # A caller's id is kept only if it is harmless in logs and headers.
        request_id = given if _SAFE_ID.match(given) else uuid.uuid4().hex
        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(request_id=request_id)
        status = 500
        start = time.perf_counter()

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message.setdefault("headers", [])
                message["headers"] = [
                    *message["headers"],
                    (b"x-request-id", request_id.encode()),
                ]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            route = scope.get("route")
            # The template (/api/jobs/{job_id}), never the raw path, keeps label cardinality low.
            template = getattr(route, "path", "unmatched")
            self.metrics.request_seconds.labels(
                route=template, method=scope["method"], status=str(status)
            ).observe(time.perf_counter() - start)


_CLOSE = (b"connection", b"close")

#: The setting an operator raises when legitimate bodies are refused.
LIMIT_SETTING = "FLYWHEEL_MAX_REQUEST_BYTES"


def too_large_detail(size: int, limit: int, *, declared: bool, path: str) -> str:
    """The 413 message: how big the body is, the limit, and what to do about it."""
    amount = f"{size} bytes" if declared else f"at least {size} bytes"
    smaller = (
        "split the logs into smaller batches, or load the file with `flywheel logs load`"
        if path.startswith("/api/logs")
        else "send a smaller body"
    )
    return (
        f"request body is {amount}, over the {limit}-byte limit; {smaller}, or raise the "
        f"server's {LIMIT_SETTING} setting"
    )


class BodyTooLarge(HTTPException):
    """Raised from ``receive`` once a streamed body passes the limit.

    An :class:`HTTPException` on purpose: FastAPI re-raises those from its body reading
    (anything else becomes a 400), so the app's own handler answers 413 as ErrorOut.
    """

    def __init__(self, size: int, limit: int, path: str) -> None:
        """Record the bytes seen so far and the limit."""
        super().__init__(413, too_large_detail(size, limit, declared=False, path=path))


def _declared_length(scope: Scope) -> int | None:
    """The request's Content-Length, or None when absent or malformed (then bytes are counted)."""
    for name, value in scope["headers"]:
        if name == b"content-length":
            return int(value) if value.isdigit() else None
    return None


class BodySizeLimitMiddleware:
    """Refuse any request body over ``max_bytes`` with 413, before a handler parses it.

    A declared ``Content-Length`` over the limit is answered at once, unread. A body with
    no (or a lying) length is counted as it streams: past the limit, ``receive`` raises
    :class:`BodyTooLarge`, which the app turns into a 413. Should the app answer anything
    else after that (a handler that swallowed it), the answer is replaced by the 413.
    Every route gets the limit, so no handler can forget it.
    """

    def __init__(self, app: ASGIApp, *, max_bytes: int) -> None:
        """Wrap ``app``; refuse bodies over ``max_bytes``."""
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Handle one request."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _declared_length(scope)
        if declared is not None and declared > self.max_bytes:
            detail = too_large_detail(declared, self.max_bytes, declared=True, path=scope["path"])
            await _send_413(send, detail)
            return
        await _Counted(self.app, self.max_bytes, scope["path"], receive, send).run(scope)


class _Counted:
    """One request whose body bytes are counted as the app reads them."""

    def __init__(self, app: ASGIApp, limit: int, path: str, receive: Receive, send: Send) -> None:
        self.app = app
        self.limit = limit
        self.path = path
        self.receive = receive
        self.send = send
        self.received = 0
        self.refused: BodyTooLarge | None = None
        self.started = False
        self.replaced = False

    async def run(self, scope: Scope) -> None:
        """Run the app; answer 413 ourselves if the refusal escaped it unanswered."""
        try:
            await self.app(scope, self.counted_receive, self.guarded_send)
        except BodyTooLarge as exc:
            if self.started:
                raise
            await _send_413(self.send, str(exc.detail))

    async def counted_receive(self) -> Message:
        """The next body chunk, or BodyTooLarge once the total passes the limit."""
        if self.refused is not None:
            raise self.refused
        message = await self.receive()
        if message["type"] == "http.request":
            self.received += len(message.get("body", b""))
            if self.received > self.limit:
                self.refused = BodyTooLarge(self.received, self.limit, self.path)
                raise self.refused
        return message

    async def guarded_send(self, message: Message) -> None:
        """Pass the app's answer through, unless it answered a refused body with non-413.

        After a refusal the connection is closed: the rest of the body was never read.
        """
        if self.replaced:
            return
        if message["type"] == "http.response.start":
            self.started = True
            if self.refused is not None and message["status"] != 413:
                self.replaced = True
                await _send_413(self.send, str(self.refused.detail))
                return
            if self.refused is not None:
                message["headers"] = [*message.get("headers", []), _CLOSE]
        await self.send(message)


async def _send_413(send: Send, detail: str) -> None:
    """A 413 in the API's ErrorOut shape; the connection closes (the body was not all read)."""
    body = orjson.dumps({"detail": detail})
    await send(
        {
            "type": "http.response.start",
            "status": 413,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                _CLOSE,
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
