"""Structured logging: structlog with JSON lines, context bound per request, task and job.

Bind ``request_id``, ``task_id``, ``job_id`` and ``stage`` with
``structlog.contextvars.bind_contextvars``; every line then carries them. A redaction
processor masks values of secret-looking keys so a careless ``log.info(..., api_key=k)``
never leaks a secret.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Mapping, MutableMapping
from typing import Any

import structlog

_SECRET_KEY = re.compile(r"(pass(word)?|secret|token|api[_-]?key|authorization|credential)", re.I)
_URL_CREDENTIALS = re.compile(
    r"(?P<scheme>[a-z][a-z0-9+.-]*://)(?P<user>[^:/@\s]*):[^@/\s]+@", re.I
)
REDACTED = "***"


def redact_url(url: str) -> str:
    """Mask the password of a URL's userinfo (``mongodb://u:p@h`` → ``mongodb://u:***@h``)."""
    return _URL_CREDENTIALS.sub(lambda m: f"{m['scheme']}{m['user']}:{REDACTED}@", url)


def redact(value: Any) -> Any:
    """Return ``value`` with secret-looking keys masked and URL passwords removed, recursively."""
    if isinstance(value, Mapping):
        return {
            k: (REDACTED if isinstance(k, str) and _SECRET_KEY.search(k) and v else redact(v))
            for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return [redact(v) for v in value]
    if isinstance(value, str):
        return redact_url(value)
    return value


def _redact_processor(
    _logger: Any, _name: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    return {k: (v if k == "event" else redact({k: v})[k]) for k, v in event_dict.items()}


def configure_logging(*, fmt: str = "json", level: str = "INFO") -> None:
    """Configure structlog (and route stdlib logging through the same level) once per process."""
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if fmt == "json"
        else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            _redact_processor,
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level.upper())),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=False,
    )
    logging.basicConfig(level=level.upper(), stream=sys.stderr, format="%(message)s")
