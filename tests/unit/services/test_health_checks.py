"""``check_health``: the broker (embedded or a Redis ping) and the platform (local or NMP ping)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

import pytest
from tests.fake_nmp import run_fake_nmp
from tests.workflow.celery_support import REDIS_URL, redis_available

from flywheel.errors import FlywheelError
from flywheel.services.health import Check, HealthReport, check_health, nmp_pinger, redis_pinger
from flywheel.stores.base import LogStore, StateStore


class _Up:
    def ping(self) -> None:
        return None


def _checks(**kwargs: Any) -> dict[str, Any]:
    report = check_health(state=cast(StateStore, _Up()), logs=cast(LogStore, _Up()), **kwargs)
    return {c.name: c for c in report.checks}


def test_without_redis_the_broker_is_embedded_and_the_platform_local() -> None:
    checks = _checks(broker_url=None, platform_kind="local")
    assert checks["broker"].status == "embedded"
    assert checks["platform"].status == "embedded"
    assert checks["platform"].detail == "local"


def test_an_unreachable_redis_is_reported_down_without_failing_health() -> None:
    url = "redis://:secret@127.0.0.1:1/0"
    report = check_health(
        state=cast(StateStore, _Up()),
        logs=cast(LogStore, _Up()),
        broker_url=url,
        platform_kind="nemo",
        ping_broker=redis_pinger(url, timeout_s=0.5),
    )
    broker = {c.name: c for c in report.checks}["broker"]
    assert broker.status == "down"
    assert not broker.required
    assert report.healthy
    assert "secret" not in (broker.detail or "")
    platform = {c.name: c for c in report.checks}["platform"]
    assert platform.detail is not None
    assert platform.detail.startswith("nemo")


def test_a_reachable_redis_answers_the_ping() -> None:
    if not redis_available():
        pytest.fail("no Redis at REDIS_URL (tests need one; 127.0.0.1:6379 by default)")
    checks = _checks(
        broker_url=REDIS_URL, platform_kind="local", ping_broker=redis_pinger(REDIS_URL)
    )
    assert checks["broker"].status == "ok"
    assert checks["broker"].latency_ms is not None


def _platform(report: HealthReport) -> Check:
    return {c.name: c for c in report.checks}["platform"]


def _nemo_health(base_url: str, ping: Callable[[], None] | None) -> HealthReport:
    return check_health(
        state=cast(StateStore, _Up()),
        logs=cast(LogStore, _Up()),
        broker_url=None,
        platform_kind="nemo",
        platform_url=base_url,
        ping_platform=ping,
    )


def test_a_reachable_nmp_is_pinged_with_latency_and_the_token() -> None:
    with run_fake_nmp() as nmp:
        url = nmp.base_url
        report = _nemo_health(url, nmp_pinger(url, token="t0k"))
        assert nmp.state.requested("GET", "/v1/namespaces")
        assert "Bearer t0k" in nmp.state.authorizations
    platform = _platform(report)
    assert platform.status == "ok"
    assert platform.latency_ms is not None
    assert platform.latency_ms >= 0
    assert platform.detail == f"nemo at {url}"
    assert not platform.required
    assert report.healthy


def test_an_nmp_error_status_is_down_with_the_status_but_health_stays_ok() -> None:
    with run_fake_nmp() as nmp:
        nmp.state.inject(host="N", method="GET", path=r"^/v1/namespaces$", status=401)
        report = _nemo_health(nmp.base_url, nmp_pinger(nmp.base_url))
    platform = _platform(report)
    assert platform.status == "down"
    assert "HTTP 401" in (platform.detail or "")
    assert report.healthy


def test_a_stopped_nmp_is_down_but_not_required() -> None:
    with run_fake_nmp() as nmp:
        url = nmp.base_url
    # The server is stopped: its port now refuses connections.
    report = _nemo_health(url, nmp_pinger(url, timeout_s=0.5))
    platform = _platform(report)
    assert platform.status == "down"
    assert not platform.required
    assert platform.detail is not None
    assert platform.detail.startswith(f"nemo at {url}: ConnectError")
    assert report.healthy


def test_an_unpinged_nmp_is_reported_not_checked_and_its_url_password_hidden() -> None:
    unpinged = _platform(_nemo_health("http://u:pw@nmp:8080", None))
    assert unpinged.status == "not configured"
    assert unpinged.detail == "nemo (not checked by the API)"

    def refuse() -> None:
        raise FlywheelError("refused")

    down = _platform(_nemo_health("http://u:pw@nmp:8080", refuse))
    assert down.status == "down"
    assert "pw" not in (down.detail or "")
    assert (down.detail or "").endswith(": refused")
