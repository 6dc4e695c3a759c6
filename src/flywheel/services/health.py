"""Dependency health: ping each store, time it, and say whether the service can work."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

from flywheel.errors import FlywheelError
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


def check_health(
    *, state: StateStore, logs: LogStore, broker_url_set: bool, platform_remote: bool
) -> HealthReport:
    """Ping the stores; report the broker and platform as not yet checked."""
    return HealthReport(
        checks=[
            _ping("state_store", state.ping),
            _ping("log_store", logs.ping),
            # Checked by the workflow and platform issues once their clients exist.
            Check(
                name="broker",
                status="not configured" if broker_url_set else "embedded",
                required=False,
            ),
            Check(
                name="platform",
                status="not configured" if platform_remote else "embedded",
                required=False,
            ),
        ]
    )
