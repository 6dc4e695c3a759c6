"""The one place that turns our exceptions into HTTP responses.

:data:`HTTP_STATUS` maps each :class:`~flywheel.errors.FlywheelError` class to a status; a
subclass inherits its nearest ancestor's. Anything else is a bug: a generic 500 whose
traceback goes to the log, never to the client.
"""

from __future__ import annotations

from typing import Any

import structlog
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from flywheel.errors import (
    ConfigError,
    Conflict,
    DatasetError,
    FlywheelError,
    NotFound,
    PlatformError,
    PlatformUnavailable,
    StoreUnavailable,
    ValidationFailed,
)
from flywheel.services.auth import Forbidden, TooManyFailures, Unauthenticated
from flywheel.services.ingestion import PayloadTooLarge

log = structlog.get_logger(__name__)

HTTP_STATUS: dict[type[FlywheelError], int] = {
    Unauthenticated: 401,
    Forbidden: 403,
    NotFound: 404,
    Conflict: 409,
    PayloadTooLarge: 413,
    ValidationFailed: 422,
    DatasetError: 422,
    TooManyFailures: 429,
    ConfigError: 500,
    PlatformError: 502,
    StoreUnavailable: 503,
    PlatformUnavailable: 503,
}

#: Headers some statuses need so clients know what to do next.
_RETRY_AFTER_S = "5"


def status_for(exc: FlywheelError) -> int:
    """The status of the nearest class of ``exc`` in the table (500 if none)."""
    for cls in type(exc).__mro__:
        if cls in HTTP_STATUS:
            return HTTP_STATUS[cls]
    return 500


def _headers(exc: FlywheelError, status: int) -> dict[str, str]:
    if isinstance(exc, Unauthenticated):
        return {"WWW-Authenticate": "Bearer"}
    if isinstance(exc, TooManyFailures):
        return {"Retry-After": str(exc.retry_after_s)}
    if status == 503:
        return {"Retry-After": _RETRY_AFTER_S}
    return {}


async def _flywheel_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, FlywheelError)  # registered for FlywheelError only
    status = status_for(exc)
    body: dict[str, Any] = {"detail": str(exc)}
    if isinstance(exc, ValidationFailed):
        body["errors"] = exc.errors
    log.info("request_failed", status=status, error=type(exc).__name__, detail=str(exc))
    return JSONResponse(body, status_code=status, headers=_headers(exc, status))


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.error("unhandled_error", path=request.url.path, exc_info=exc)
    return JSONResponse(
        {"detail": "internal server error; the request id in X-Request-ID finds it in the log"},
        status_code=500,
    )


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` entries documenting the error statuses a route may answer."""
    from flywheel.api.schemas import ErrorOut

    return {status: {"model": ErrorOut} for status in statuses}


def install_error_handlers(app: FastAPI) -> None:
    """Register the table-driven handler and the catch-all."""
    app.add_exception_handler(FlywheelError, _flywheel_error)
    app.add_exception_handler(Exception, _unexpected)
