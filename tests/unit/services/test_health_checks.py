"""``check_health``: the broker (embedded or a Redis ping) and the platform kind."""

from __future__ import annotations

from typing import Any, cast

import pytest
from tests.workflow.celery_support import REDIS_URL, redis_available

from flywheel.services.health import check_health, redis_pinger
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
