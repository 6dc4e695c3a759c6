"""``/api/health`` (open, for probes) and ``/metrics`` (Prometheus; viewer key like the rest)."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from flywheel.api.deps import ServicesDep, require
from flywheel.api.errors import error_responses
from flywheel.api.schemas import HealthOut
from flywheel.domain.jobs import Role
from flywheel.services.health import check_health, redis_pinger

health_router = APIRouter(tags=["health"])
metrics_router = APIRouter(
    tags=["health"],
    dependencies=[require(Role.viewer)],
    responses=error_responses(401, 403, 503),
)


@health_router.get(
    "/api/health",
    summary="Health",
    response_model=HealthOut,
    responses={503: {"model": HealthOut, "description": "A required dependency is down."}},
)
def health(services: ServicesDep) -> JSONResponse:
    """Report each dependency's status and latency; 503 when a required one is down."""
    redis_url = services.settings.redis_url
    broker_url = redis_url.get_secret_value() if redis_url is not None else None
    report = check_health(
        state=services.state,
        logs=services.logs,
        broker_url=broker_url,
        platform_kind=services.settings.platform_kind,
        ping_broker=redis_pinger(broker_url) if broker_url is not None else None,
        platform_url=services.settings.nmp_base_url,
        ping_platform=services.ping_platform,
    )
    out = HealthOut.from_report(report)
    return JSONResponse(out.model_dump(mode="json"), status_code=200 if report.healthy else 503)


@metrics_router.get("/metrics", summary="Prometheus metrics", response_class=Response)
def metrics(services: ServicesDep) -> Response:
    """Expose the API's metrics in the Prometheus text format."""
    return Response(generate_latest(services.metrics.registry), media_type=CONTENT_TYPE_LATEST)
