"""ASGI middleware: a request id bound into the log context, and latency by route.

Written as plain ASGI (not ``BaseHTTPMiddleware``) so streaming bodies and context
variables pass through untouched.
"""

from __future__ import annotations

import re
import time
import uuid

import structlog
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
