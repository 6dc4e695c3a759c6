"""Prometheus metrics of the API, in a registry per app (so tests can build many apps)."""

from __future__ import annotations

from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Histogram


@dataclass
class ApiMetrics:
    """Jobs created and request latency by route template."""

    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        """Register the collectors in this app's registry."""
        self.jobs_created = Counter(
            "flywheel_jobs_created",
            "Jobs accepted by POST /api/jobs.",
            ["job_type"],
            registry=self.registry,
        )
        self.request_seconds = Histogram(
            "flywheel_http_request_duration_seconds",
            "HTTP request latency by route template, method and status.",
            ["route", "method", "status"],
            registry=self.registry,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
        )
