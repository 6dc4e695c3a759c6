"""Structured logging: structlog with JSON lines, context bound per request, task and job.

Bind ``request_id``, ``task_id``, ``job_id`` and ``stage`` with
``structlog.contextvars.bind_contextvars``; every line then carries them, lines of libraries
that use the standard :mod:`logging` included (they are rendered by the same processors).
A redaction processor masks values of secret-looking keys so a careless
``log.info(..., api_key=k)`` never leaks a secret.
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
    # ``event`` is a name for our lines but the whole message for a library's line, which
    # may quote a URL with its password: only URL credentials are masked there.
    return {
        k: (redact_url(v) if k == "event" and isinstance(v, str) else redact({k: v})[k])
        for k, v in event_dict.items()
    }


def _shared_processors() -> list[Any]:
    """What every line gets, from structlog or from the standard library alike."""
    return [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        _redact_processor,
    ]


def _stdlib_fields(
    _logger: Any, _name: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    # Library lines (uvicorn access, Celery, httpx, Elasticsearch) name their logger.
    record = event_dict.get("_record")
    if isinstance(record, logging.LogRecord):
        event_dict.setdefault("logger", record.name)
    return event_dict


def configure_logging(*, fmt: str = "json", level: str = "INFO") -> None:
    """Configure structlog, and the standard library's root logger, once per process.

    Both write one line per event to stderr with the same processors: with ``fmt="json"``
    every line is a JSON object carrying the bound context (``request_id``, ``task_id``,
    ``job_id``, ``stage``), including lines of libraries that log through :mod:`logging`
    (uvicorn's access log, Celery, httpx, the store clients), which would otherwise be
    plain text without context.
    """
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if fmt == "json"
        else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    )
    structlog.configure(
        processors=[
            *_shared_processors(),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level.upper())),
        logger_factory=_stderr_logger,
        cache_logger_on_first_use=False,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[*_shared_processors(), _stdlib_fields],
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            renderer,
        ],
    )
    handler = _StderrHandler()
    handler.setFormatter(formatter)
    handler.set_name(_HANDLER_NAME)
    root = logging.getLogger()
    root.handlers = [h for h in root.handlers if h.get_name() != _HANDLER_NAME]
    root.addHandler(handler)
    root.setLevel(level.upper())
    # uvicorn configures its loggers only when given a log_config; without one (flywheel
    # serve) they must reach the root handler above.
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        uvicorn_logger = logging.getLogger(name)
        uvicorn_logger.handlers = []
        uvicorn_logger.propagate = True
        uvicorn_logger.setLevel(logging.NOTSET)  # the root's level decides


_HANDLER_NAME = "flywheel"


def _stderr_logger(*_: Any) -> structlog.PrintLogger:
    # The stderr of the moment, not of configuration time: a redirected or replaced
    # sys.stderr (Celery's worker, test capture) must not leave us writing to a closed file.
    return structlog.PrintLogger(sys.stderr)


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """A stream handler on whatever ``sys.stderr`` is when a record is emitted."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property
    def stream(self) -> Any:
        """The current ``sys.stderr``."""
        return sys.stderr

    @stream.setter
    def stream(self, _value: Any) -> None:
        return None
