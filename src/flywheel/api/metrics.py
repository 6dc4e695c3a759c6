"""Prometheus metrics of the API, in a registry per app (so tests can build many apps)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import structlog
from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from flywheel.domain.jobs import JobStatus
from flywheel.stores.base import StateStore

log = structlog.get_logger(__name__)


class JobStatusCollector(Collector):
    """``flywheel_jobs{status}``: jobs in the state store by status, counted at each scrape.

    Counted, not tracked: every API replica and every worker sees the same numbers, and
    nothing drifts when a worker dies mid-update. A store that does not answer leaves the
    family out of that scrape (and logs it) rather than failing ``/metrics``.
    """

    NAME = "flywheel_jobs"
    HELP = "Jobs in the state store by status (counted at scrape time)."

    def __init__(self, state: StateStore) -> None:
        """Count in ``state``."""
        self._state = state

    def describe(self) -> Iterator[Metric]:
        """The family, without samples (no store query at registration)."""
        yield GaugeMetricFamily(self.NAME, self.HELP, labels=["status"])

    def collect(self) -> Iterator[Metric]:
        """One sample per status."""
        family = GaugeMetricFamily(self.NAME, self.HELP, labels=["status"])
        try:
            for status in JobStatus:
                family.add_metric([status.value], self._state.count_jobs(statuses=[status]))
        except Exception as exc:  # a scrape must not fail because the store is down
            log.warning("job_status_metrics_failed", error=str(exc))
            return
        yield family


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
        self._jobs: JobStatusCollector | None = None

    def watch_jobs(self, state: StateStore) -> None:
        """Expose ``flywheel_jobs{status}`` counted in ``state`` (once per app)."""
        if self._jobs is None:
            self._jobs = JobStatusCollector(state)
            self.registry.register(self._jobs)
