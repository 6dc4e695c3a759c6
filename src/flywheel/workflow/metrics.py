"""Prometheus metrics of the workflow, observed in the worker processes.

* ``flywheel_workflow_step_seconds{action, outcome}``: one step (one action) from claim to
  commit; ``outcome`` is ``ok``, ``retry`` (transient error, retried), ``failed`` (the
  action failed for good and its scope was failed) or ``lost`` (another step won);
* ``flywheel_workflow_stage_seconds{stage}``: how long the stages of finished jobs took
  (``datasets``, ``deployment``, ``evaluation``, ``customization``, ``job``), observed once
  per job when finalize commits;
* ``flywheel_platform_call_seconds{operation}`` and
  ``flywheel_platform_call_errors_total{operation, error}``: every call the workflow makes
  to the model platform (``start_deployment``, ``poll_evaluation`` …), by error class.

They live in the process-wide registry. ``FLYWHEEL_WORKFLOW_METRICS_PORT`` makes the worker
serve them (``/metrics``) from its main process; with a prefork pool, set
``PROMETHEUS_MULTIPROC_DIR`` (an empty directory) too, so the pool processes' metrics are
aggregated (prometheus_client's multiprocess mode).
"""

from __future__ import annotations

import functools
import os
import time
from collections.abc import Callable, Mapping
from typing import Any, cast

import structlog
from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram, start_http_server

from flywheel.platforms.base import ModelPlatform

log = structlog.get_logger(__name__)

_STEP_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 120.0, 600.0)
_STAGE_BUCKETS = (1.0, 10.0, 30.0, 60.0, 300.0, 900.0, 1800.0, 3600.0, 7200.0, 21600.0, 86400.0)

STEP_SECONDS = Histogram(
    "flywheel_workflow_step_seconds",
    "Duration of one workflow step, by action and outcome.",
    ["action", "outcome"],
    buckets=_STEP_BUCKETS,
)
STAGE_SECONDS = Histogram(
    "flywheel_workflow_stage_seconds",
    "Duration of the stages of finished jobs (observed at finalize).",
    ["stage"],
    buckets=_STAGE_BUCKETS,
)
PLATFORM_SECONDS = Histogram(
    "flywheel_platform_call_seconds",
    "Latency of model-platform calls made by the workflow, by operation.",
    ["operation"],
    buckets=_STEP_BUCKETS,
)
PLATFORM_ERRORS = Counter(
    "flywheel_platform_call_errors",
    "Model-platform calls that raised, by operation and error class.",
    ["operation", "error"],
)


class InstrumentedPlatform:
    """A :class:`ModelPlatform` proxy that times every method call and counts its errors."""

    def __init__(self, inner: ModelPlatform) -> None:
        """Wrap ``inner``."""
        self.inner = inner

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self.inner, name)
        if name.startswith("_") or not callable(attr):
            return attr

        @functools.wraps(attr)
        def call(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                return attr(*args, **kwargs)
            except Exception as exc:
                PLATFORM_ERRORS.labels(operation=name, error=type(exc).__name__).inc()
                raise
            finally:
                PLATFORM_SECONDS.labels(operation=name).observe(time.perf_counter() - start)

        return call


def instrument(platform: ModelPlatform) -> ModelPlatform:
    """``platform`` with its calls measured (idempotent)."""
    if isinstance(platform, InstrumentedPlatform):
        return cast(ModelPlatform, platform)
    return cast(ModelPlatform, InstrumentedPlatform(platform))


def observe_step(action: str, outcome: str, seconds: float) -> None:
    """Record one step."""
    STEP_SECONDS.labels(action=action, outcome=outcome).observe(seconds)


def observe_stages(timings: Mapping[str, Any]) -> None:
    """Record a finished job's stage durations (finalize's ``timings``)."""

    def put(stage: str, value: Any) -> None:
        if isinstance(value, int | float):
            STAGE_SECONDS.labels(stage=stage).observe(float(value))

    put("datasets", timings.get("datasets_s"))
    put("job", timings.get("total_s"))
    for cand in (timings.get("candidates") or {}).values():
        put("deployment", cand.get("deploy_s"))
        put("customization", cand.get("customize_s"))
        for item in ("base", "icl", "customized"):
            put("evaluation", cand.get(f"{item}_s"))


def start_exporter(port: int, *, addr: str = "0.0.0.0") -> Callable[[], None]:  # noqa: S104
    """Serve this process's (or, in multiprocess mode, every pool process's) metrics."""
    registry: CollectorRegistry = REGISTRY
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    else:
        log.warning(
            "workflow_metrics_single_process",
            detail="PROMETHEUS_MULTIPROC_DIR is unset: only the worker's main process is "
            "measured; a prefork pool's steps are not",
        )
    server, thread = start_http_server(port, addr=addr, registry=registry)
    log.info("workflow_metrics_serving", port=port)

    def stop() -> None:
        server.shutdown()
        server.server_close()
        thread.join()

    return stop
