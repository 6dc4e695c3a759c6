"""Dependencies: the services built once in ``create_app``'s lifespan, and authentication.

Dependencies that only read memory are ``async`` on purpose: FastAPI runs sync ones in the
thread pool, and a hop per dependency per request was a measurable share of list latency.

Handlers take what they need through the ``Annotated`` aliases below. Routers declare their
minimum role with ``dependencies=[require(Role.viewer)]`` so that no route is open by
accident; routes needing more add their own ``require``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from fastapi.params import Depends as DependsParam
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.concurrency import run_in_threadpool

from flywheel.api.metrics import ApiMetrics
from flywheel.domain.jobs import Role
from flywheel.services.auth import (
    ANONYMOUS_ADMIN,
    FailedAuthLimiter,
    Principal,
    Unauthenticated,
    authenticate,
)
from flywheel.services.configs import ConfigService
from flywheel.services.jobs import JobService
from flywheel.settings import Settings
from flywheel.stores.base import LogStore, StateStore


@dataclass
class Services:
    """Everything handlers use, built once per app."""

    settings: Settings
    state: StateStore
    logs: LogStore
    jobs: JobService
    configs: ConfigService
    limiter: FailedAuthLimiter
    metrics: ApiMetrics
    ping_platform: Callable[[], None] | None = None
    """Pings a remote platform for ``/api/health`` (built once: its TLS setup logs)."""


async def get_services(request: Request) -> Services:
    """The app's services (set by the lifespan)."""
    services: Services = request.app.state.services
    return services


ServicesDep = Annotated[Services, Depends(get_services)]


async def _jobs(services: ServicesDep) -> JobService:
    return services.jobs


async def _configs(services: ServicesDep) -> ConfigService:
    return services.configs


JobsDep = Annotated[JobService, Depends(_jobs)]
ConfigsDep = Annotated[ConfigService, Depends(_configs)]

_bearer = HTTPBearer(auto_error=False, description="An API key: `Authorization: Bearer fw_...`")


async def get_principal(
    request: Request,
    services: ServicesDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    """Authenticate the caller (once per request; FastAPI caches the result)."""
    if not services.settings.auth_enabled:
        return ANONYMOUS_ADMIN
    address = request.client.host if request.client else "unknown"
    services.limiter.check(address)
    token = credentials.credentials if credentials else None
    try:
        # The store lookup blocks, so it runs in the thread pool, off the event loop.
        return await run_in_threadpool(authenticate, services.state, token)
    except Unauthenticated:
        if token:  # only a wrong key is a guess; a missing one is a misconfigured client
            services.limiter.record_failure(address)
        raise


PrincipalDep = Annotated[Principal, Depends(get_principal)]


def require(role: Role) -> DependsParam:
    """A dependency that admits callers whose role includes ``role``."""

    async def check(principal: PrincipalDep) -> None:
        principal.require(role)

    check.__name__ = f"require_{role.value}"
    dependency: DependsParam = Depends(check)
    return dependency
