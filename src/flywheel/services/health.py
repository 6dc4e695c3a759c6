"""Dependency health: ping each store, time it, and say whether the service can work."""

from __future__ import annotations

import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

import httpx

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


def nmp_pinger(
    base_url: str,
    *,
    token: str | None = None,
    verify: ssl.SSLContext | bool = True,
    timeout_s: float = 2.0,
) -> Callable[[], None]:
    """A one-item ``GET {base_url}/v1/namespaces`` on NMP's Entity Store, within ``timeout_s``.

    NMP has no health route common to every release; listing one namespace is the cheapest
    authenticated read, so it also catches a wrong ``NMP_TOKEN`` (an error status is "down").
    """
    headers = {"Authorization": f"Bearer {token}"} if token else {}

    def ping() -> None:
        with httpx.Client(timeout=timeout_s, headers=headers, verify=verify) as http:
            response = http.get(f"{base_url.rstrip('/')}/v1/namespaces", params={"page_size": 1})
        if response.status_code >= 400:
            raise FlywheelError(f"NMP Entity Store answered HTTP {response.status_code}")

    return ping


def _platform_check(
    platform_kind: str, platform_url: str | None, ping_platform: Callable[[], None] | None
) -> Check:
    # Never required: the API serves jobs and results without the platform; only running
    # steps need it, and they retry and report platform errors themselves.
    if platform_kind == "local":
        return Check(name="platform", status="embedded", required=False, detail="local")
    if ping_platform is None:
        return Check(
            name="platform",
            status="not configured",
            required=False,
            detail=f"{platform_kind} (not checked by the API)",
        )
    check = _ping("platform", ping_platform)
    where = f"{platform_kind} at {redact_url(platform_url)}" if platform_url else platform_kind
    return Check(
        name="platform",
        status=check.status,
        required=False,
        latency_ms=check.latency_ms,
        detail=where + (f": {check.detail}" if check.detail else ""),
    )


def check_health(
    *,
    state: StateStore,
    logs: LogStore,
    broker_url: str | None,
    platform_kind: str,
    ping_broker: Callable[[], None] | None = None,
    platform_url: str | None = None,
    ping_platform: Callable[[], None] | None = None,
) -> HealthReport:
    """Ping the stores, the Redis broker (when there is one) and a remote platform (if asked).

    ``ping_broker`` pings the broker at ``broker_url`` (``None`` with a URL: not checked).
    The local platform runs in-process, so it is reported ``embedded``, not pinged. A remote
    one is pinged with ``ping_platform`` (e.g. :func:`nmp_pinger` for ``platform_url``);
    without it it is ``not configured`` (not checked by the API). The platform is never
    required: being down is reported with its latency and reason but keeps health 200.
    """
    return HealthReport(
        checks=[
            _ping("state_store", state.ping),
            _ping("log_store", logs.ping),
            _broker_check(broker_url, ping_broker),
            _platform_check(platform_kind, platform_url, ping_platform),
        ]
    )
