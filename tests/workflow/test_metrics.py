"""Prometheus metrics of the workflow (steps, stages, platform calls) and jobs by status."""

from __future__ import annotations

import socket
import urllib.request
from typing import Any

from prometheus_client import REGISTRY, generate_latest

from flywheel.api.metrics import ApiMetrics
from flywheel.domain.jobs import JobStatus
from flywheel.errors import StoreUnavailable
from flywheel.stores.base import StateStore
from flywheel.workflow import metrics
from flywheel.workflow.steps import StepRunner
from tests.workflow.fake_platform import FakePlatform
from tests.workflow.support import create_job, drive, llm_config


def _value(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_steps_stages_and_platform_calls_are_measured(
    runner: StepRunner, state: StateStore
) -> None:
    step, call, stage = (
        "flywheel_workflow_step_seconds_count",
        "flywheel_platform_call_seconds_count",
        "flywheel_workflow_stage_seconds_count",
    )
    watched: dict[str, tuple[str, dict[str, str]]] = {
        "finalize": (step, {"action": "finalize", "outcome": "ok"}),
        "deploy": (call, {"operation": "start_deployment"}),
        "job": (stage, {"stage": "job"}),
        "eval": (stage, {"stage": "evaluation"}),
    }
    before = {key: _value(name, **labels) for key, (name, labels) in watched.items()}
    job = create_job(state, llm_config(["a", "b"]))
    assert drive(runner, job.id).status is JobStatus.completed
    after = {key: _value(name, **labels) for key, (name, labels) in watched.items()}
    delta = {key: after[key] - before[key] for key in watched}
    # base, icl and customized for each of the two candidates
    assert delta == {"finalize": 1, "deploy": 2, "job": 1, "eval": 6}


def test_platform_errors_are_counted_by_operation_and_class(
    runner: StepRunner, state: StateStore, platform: FakePlatform
) -> None:
    labels = {"operation": "start_deployment", "error": "PlatformError"}
    before = _value("flywheel_platform_call_errors_total", **labels)
    failed_before = _value(
        "flywheel_workflow_step_seconds_count", action="start_deployment", outcome="failed"
    )
    platform.set_script(fail_start={"bad/deployment": "no such image"})
    job = create_job(state, llm_config(["bad", "good"], customize=False))
    assert drive(runner, job.id).status is JobStatus.completed
    assert _value("flywheel_platform_call_errors_total", **labels) == before + 1
    assert (
        _value("flywheel_workflow_step_seconds_count", action="start_deployment", outcome="failed")
        == failed_before + 1
    )


def test_instrument_is_idempotent_and_transparent(platform: FakePlatform) -> None:
    wrapped = metrics.instrument(platform)
    assert metrics.instrument(wrapped) is wrapped
    assert wrapped.name == "fake"


def test_jobs_by_status_are_counted_at_scrape_time(state: StateStore) -> None:
    api = ApiMetrics()
    api.watch_jobs(state)
    api.watch_jobs(state)  # once per app
    text = generate_latest(api.registry).decode()
    assert 'flywheel_jobs{status="pending"} 0.0' in text
    for _ in range(2):
        create_job(state, llm_config(["a"]))
    done = create_job(state, llm_config(["a"]))
    state.update_job(done.id, {"status": JobStatus.failed})
    text = generate_latest(api.registry).decode()
    assert 'flywheel_jobs{status="pending"} 2.0' in text
    assert 'flywheel_jobs{status="failed"} 1.0' in text
    assert 'flywheel_jobs{status="completed"} 0.0' in text


def test_a_store_that_is_down_does_not_fail_the_scrape() -> None:
    class Down:
        def count_jobs(self, **_: Any) -> int:
            raise StoreUnavailable("state store down")

    api = ApiMetrics()
    api.watch_jobs(Down())  # type: ignore[arg-type]
    text = generate_latest(api.registry).decode()
    assert "flywheel_jobs{" not in text
    assert "flywheel_http_request_duration_seconds" in text


def test_worker_exporter_serves_the_metrics() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    metrics.observe_step("initialize", "ok", 0.01)
    stop = metrics.start_exporter(port, addr="127.0.0.1")
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
            body = resp.read().decode()
    finally:
        stop()
    assert 'flywheel_workflow_step_seconds_count{action="initialize",outcome="ok"}' in body
