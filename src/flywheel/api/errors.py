"""The one place that turns our exceptions into HTTP responses.

:data:`HTTP_STATUS` maps each :class:`~flywheel.errors.FlywheelError` class to a status; a
subclass inherits its nearest ancestor's. Anything else is a bug: a generic 500 whose
traceback goes to the log, never to the client.

Request validation errors (FastAPI's own 422s) and framework HTTP errors answer in the same
:class:`~flywheel.api.schemas.ErrorOut` shape as ours, so the schema documents one error body
and clients parse one.
"""

from __future__ import annotations

from typing import Any

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

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


#: Field errors spelled out in the ``detail`` message; all of them are in ``errors``.
_FIELDS_IN_DETAIL = 5


def _where(loc: tuple[Any, ...] | list[Any]) -> str:
    return ".".join(str(part) for part in loc if part != "body") or "body"


async def _invalid_request(request: Request, exc: Exception) -> JSONResponse:
    """FastAPI's request validation errors, as an ErrorOut naming every bad field.

    ``input`` and ``ctx`` are left out: they echo what the client sent (possibly secrets,
    possibly not JSON-serialisable) and the message already says what is expected.
    """
    assert isinstance(exc, RequestValidationError)  # registered for it only
    errors = [
        {"loc": list(error["loc"]), "msg": error["msg"], "type": error["type"]}
        for error in exc.errors()
    ]
    named = "; ".join(f"{_where(e['loc'])}: {e['msg']}" for e in errors[:_FIELDS_IN_DETAIL])
    more = len(errors) - _FIELDS_IN_DETAIL
    detail = f"invalid request: {named}" + (f" (and {more} more in `errors`)" if more > 0 else "")
    log.info("request_failed", status=422, error="RequestValidationError", detail=detail)
    return JSONResponse({"detail": detail, "errors": errors}, status_code=422)


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    """Framework HTTP errors (unknown path, wrong method, unreadable body) as ErrorOut.

    A body FastAPI could not decode (not UTF-8, so not JSON) is a 422 like any other
    malformed JSON body, rather than the framework's undocumented 400.
    """
    assert isinstance(exc, HTTPException)  # registered for it only
    if exc.status_code == 400 and isinstance(exc.__cause__, ValueError):
        detail = (
            f"request body is not valid JSON ({exc.__cause__}); send UTF-8 encoded JSON "
            "with Content-Type: application/json"
        )
        errors = [{"loc": ["body"], "msg": "not UTF-8 encoded JSON", "type": "json_invalid"}]
        return JSONResponse({"detail": detail, "errors": errors}, status_code=422)
    return JSONResponse(
        {"detail": str(exc.detail)}, status_code=exc.status_code, headers=exc.headers
    )


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.error("unhandled_error", path=request.url.path, exc_info=exc)
    return JSONResponse(
        {"detail": "internal server error; the request id in X-Request-ID finds it in the log"},
        status_code=500,
    )


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` entries documenting the error statuses a route may answer.

    Routers declare ``error_responses(401, 403, 503)`` for everything behind auth; listing
    401 adds two statuses every such route shares:

    - 429: the failed-authentication limiter refuses every attempt from an address that
      guessed wrong keys too often;
    - 422 as :class:`~flywheel.api.schemas.ErrorOut`: request validation answers in our error
      shape (see ``_invalid_request``), and documenting it here stops FastAPI from
      documenting its own ``HTTPValidationError`` body, which this API never sends.
    """
    from flywheel.api.schemas import ErrorOut

    documented = list(statuses)
    if 401 in documented:
        documented += [extra for extra in (422, 429) if extra not in documented]
    return {status: {"model": ErrorOut} for status in documented}


def install_error_handlers(app: FastAPI) -> None:
    """Register the table-driven handler and the catch-all."""
    app.add_exception_handler(FlywheelError, _flywheel_error)
    app.add_exception_handler(RequestValidationError, _invalid_request)
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected)
