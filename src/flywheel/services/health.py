"""Dependency health: ping each store, time it, and say whether the service can work."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

from flywheel.errors import FlywheelError
from flywheel.logging import redact_url
from flywheel.stores.base import LogStore, StateStore

CheckStatus = Literal["ok", "down", "embedded", "not configured"]


@dataclass(frozen=True, slots=True)
class Check:
    """One dependency's state; ``required`` ones being down makes the service unhealthy."""

    name: str
    status: CheckStatus
    required: bool
    latency_ms: float | None = None
    detail: str | None = None


@dataclass(frozen=True, slots=True)
class HealthReport:
    """All checks and the overall verdict."""

    checks: list[Check] = field(default_factory=list)

    @property
    def healthy(self) -> bool:
        """True unless a required dependency is down."""
        return not any(c.required and c.status == "down" for c in self.checks)


def _ping(name: str, ping: Callable[[], None]) -> Check:
    start = time.perf_counter()
    try:
        ping()
    except FlywheelError as exc:
        return Check(name=name, status="down", required=True, detail=str(exc))
    except Exception as exc:  # a health check must report, never crash
        return Check(name=name, status="down", required=True, detail=f"{type(exc).__name__}: {exc}")
    latency = round((time.perf_counter() - start) * 1000, 2)
    return Check(name=name, status="ok", required=True, latency_ms=latency)


def _broker_check(broker_url: str | None, ping_broker: Callable[[], None] | None) -> Check:
    if broker_url is None:
        return Check(
            name="broker",
            status="embedded",
            required=False,
            detail="embedded filesystem broker under the data dir (no REDIS_URL)",
        )
    if ping_broker is None:
        return Check(name="broker", status="not configured", required=False)
    # Not required: reads keep working without the broker, and a job created meanwhile
    # stays pending until the recovery sweep enqueues it again.
    check = _ping("broker", ping_broker)
    return Check(
        name="broker",
        status=check.status,
        required=False,
        latency_ms=check.latency_ms,
        detail=f"redis at {redact_url(broker_url)}" + (f": {check.detail}" if check.detail else ""),
    )


def redis_pinger(url: str, *, timeout_s: float = 2.0) -> Callable[[], None]:
    """A ping of the Redis broker at ``url`` that gives up after ``timeout_s``."""

    def ping() -> None:
        import redis

        client = redis.Redis.from_url(
            url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s
        )
        try:
            client.ping()
        finally:
            client.close()

    return ping


def check_health(
    *,
    state: StateStore,
    logs: LogStore,
    broker_url: str | None,
    platform_kind: str,
    ping_broker: Callable[[], None] | None = None,
) -> HealthReport:
    """Ping the stores and the Redis broker (when there is one); name the model platform.

    ``ping_broker`` pings the broker at ``broker_url`` (``None`` with a URL: not checked).
    The platform is reported, not pinged: ``embedded`` for the local platform, ``not
    configured`` (not checked by the API) for a remote one; ``detail`` names its kind.
    """
    local = platform_kind == "local"
    return HealthReport(
        checks=[
            _ping("state_store", state.ping),
            _ping("log_store", logs.ping),
            _broker_check(broker_url, ping_broker),
            Check(
                name="platform",
                status="embedded" if local else "not configured",
                required=False,
                detail=platform_kind if local else f"{platform_kind} (not checked by the API)",
            ),
        ]
    )
