"""Our exception hierarchy.

Every error we raise on purpose derives from :class:`FlywheelError`. Adapters catch
foreign exceptions (driver, HTTP, SDK) and re-raise one of these ``from`` the original,
so callers never depend on a backend's exception types. Each edge (API, CLI, worker)
translates these classes once; the API uses a single status table.

    FlywheelError
    ├── ConfigError            bad settings or job configuration (fix the config)
    ├── ValidationFailed       bad input data, with per-field reasons
    ├── NotFound               the named thing does not exist (or is not visible to the caller)
    ├── Conflict               a lost compare-and-set, a duplicate, or a forbidding state
    ├── StoreUnavailable       a state or log store cannot be reached (transient)
    ├── DatasetError           the logs cannot make a usable dataset (counts say why)
    └── PlatformError          a model platform refused or failed a request
        └── PlatformUnavailable   transient platform failure; safe to retry
"""

from __future__ import annotations

from typing import Any


class FlywheelError(Exception):
    """Base for errors we raise on purpose."""


class ConfigError(FlywheelError):
    """Settings or a job configuration are invalid; the message names the field and the fix."""


class ValidationFailed(FlywheelError):
    """Input data failed validation.

    ``errors`` is a list of ``{"loc": [...], "msg": str}`` items, the same shape FastAPI uses,
    so the API can return them unchanged.
    """

    def __init__(self, message: str, errors: list[dict[str, Any]] | None = None) -> None:
        super().__init__(message)
        self.errors = errors or []


class NotFound(FlywheelError):
    """The requested object does not exist, or the caller may not see it."""


class Conflict(FlywheelError):
    """The object exists already, changed under us, or is in a state that forbids the action."""


class StoreUnavailable(FlywheelError):
    """A state or log store cannot be reached. Transient: retry later."""


class DatasetError(FlywheelError):
    """The logs cannot produce a usable dataset; the message gives the counts at each stage."""


class PlatformError(FlywheelError):
    """A model platform refused or failed a request; the message names the service and endpoint."""


class PlatformUnavailable(PlatformError):
    """Transient platform failure (timeout, 5xx, connection refused); safe to retry."""
