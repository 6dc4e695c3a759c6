"""The completion webhook against a real loopback HTTP receiver.

In process (the step runner and :func:`flywheel.workflow.notify.notify`) for the signature,
the payload, retries, failures and idempotency; then once on real Celery workers and Redis.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from flywheel.config.schema import NotificationConfig
from flywheel.domain.jobs import JobStatus, JobType
from flywheel.services.webhooks import EVENT_HEADER, SIGNATURE_HEADER, verify
from flywheel.stores.base import LogStore, StateStore
from flywheel.workflow import notify
from flywheel.workflow.steps import StepRunner
from tests.support.webhook_receiver import Receiver, serve_receiver
from tests.workflow.celery_support import REDIS_URL, make_cluster, redis_available
from tests.workflow.fake_platform import FakePlatform
from tests.workflow.support import (
    create_job,
    drive,
    embedding_config,
    fast_options,
    llm_config,
)

SECRET_ENV = "FLYWHEEL_TEST_JOB_WEBHOOK_SECRET"
SECRET = "job-webhook-secret-for-tests"
OPTIONS = fast_options(notify_attempts=3, notify_backoff_s=0.01, notify_max_backoff_s=0.02)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with serve_receiver("/hooks/jobs") as recv:
        yield recv


@pytest.fixture
def secret(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv(SECRET_ENV, SECRET)
    return SECRET


def _notify(state: StateStore, job_id: Any, url: str | None, **kw: Any) -> str | None:
    return notify.notify(
        state,
        job_id,
        options=OPTIONS,
        now_ms=lambda: int(time.time() * 1000),
        default_url=url,
        default_secret_env=kw.pop("secret_env", SECRET_ENV),
        **kw,
    )


def test_ended_job_posts_a_signed_summary_once(
    runner: StepRunner, state: StateStore, platform: FakePlatform, receiver: Receiver, secret: str
) -> None:
    platform.set_script(accuracy={"good": 1.0, "weak": 0.25})
    job = create_job(state, llm_config(["good", "weak"]))
    done = drive(runner, job.id)
    assert done.status is JobStatus.completed
    assert runner.advance(job.id).notify  # the task would send flywheel.notify now

    assert _notify(state, job.id, receiver.url) == "sent"
    assert len(receiver.requests) == 1
    headers, body = receiver.requests[0]
    assert verify(body, secret, headers[SIGNATURE_HEADER])
    assert headers[EVENT_HEADER] == notify.EVENT
    payload = orjson.loads(body)
    assert payload["event"] == "job.finished"
    assert payload["job"] == {
        "id": job.id,
        "client_id": job.client_id,
        "workload_id": job.workload_id,
        "job_type": "llm_job",
        "status": "completed",
        "error": None,
        "warnings": len(done.warnings),
        "config_name": None,
        "config_version": None,
    }
    assert payload["timings"]["duration_s"] is not None
    assert payload["timings"]["stages"]["candidates"]["good"]["total_s"] is not None
    rec = payload["recommendation"]
    assert rec["best"].startswith("good/")
    assert set(rec["rejected"]) == {"weak/base", "weak/icl", "weak/customized"}
    weak = payload["candidates"]["weak"]["evaluations"]["base"]["headline"]
    assert weak["metric"] in ("function_name_and_args_accuracy", "function_name_accuracy")
    assert weak["ci_low"] <= weak["value"] <= weak["ci_high"]
    assert payload["candidates"]["good"]["evaluations"]["base"]["headline"]["value"] == 1.0

    after = state.get_job(job.id)
    record = after.state["notification"]
    assert record["status"] == "sent"
    assert record["attempts"] == 1
    assert record["signed"] is True
    assert record["url"] == receiver.url
    assert after.status is JobStatus.completed
    # A redelivered task (or a later step on the ended job) sends nothing again.
    assert not runner.advance(job.id).notify
    assert _notify(state, job.id, receiver.url) is None
    assert len(receiver.requests) == 1


def test_5xx_is_retried_with_backoff(
    runner: StepRunner, state: StateStore, receiver: Receiver, secret: str
) -> None:
    job = create_job(state, embedding_config(["embedder"]), job_type=JobType.embedding_job)
    drive(runner, job.id)
    receiver.statuses = [503, 502]
    assert _notify(state, job.id, receiver.url) == "sent"
    assert len(receiver.requests) == 3
    assert len({body for _, body in receiver.requests}) == 1  # the same signed body each time
    record = state.get_job(job.id).state["notification"]
    assert (record["status"], record["attempts"], record["status_code"]) == ("sent", 3, 200)
    headline = receiver.bodies()[0]["candidates"]["embedder"]["evaluations"]["base"]["headline"]
    assert headline["metric"] == "ndcg@10"


def test_failure_is_recorded_and_never_fails_the_job(
    runner: StepRunner, state: StateStore, receiver: Receiver, secret: str
) -> None:
    job = create_job(state, llm_config(["a"], customize=False))
    done = drive(runner, job.id)
    assert done.status is JobStatus.completed
    receiver.default = 500
    assert _notify(state, job.id, receiver.url) == "failed"
    assert len(receiver.requests) == OPTIONS.notify_attempts

    after = state.get_job(job.id)
    assert after.status is JobStatus.completed
    assert after.error is None
    assert after.recommendation == done.recommendation
    record = after.state["notification"]
    assert record["status"] == "failed"
    assert record["attempts"] == 3
    assert record["status_code"] == 500
    assert "failed after 3 attempt(s)" in record["error"]
    assert any(w.startswith("completion webhook failed") for w in after.warnings)
    # Given up for good: no endless re-sending on later deliveries.
    assert not runner.advance(job.id).notify
    assert _notify(state, job.id, receiver.url) is None
    assert len(receiver.requests) == 3


def test_unreachable_receiver_is_recorded(
    runner: StepRunner, state: StateStore, secret: str
) -> None:
    job = create_job(state, llm_config(["a"], customize=False))
    drive(runner, job.id)
    assert _notify(state, job.id, "http://127.0.0.1:9/nobody-listens") == "failed"
    record = state.get_job(job.id).state["notification"]
    assert record["attempts"] == 3
    assert record["status_code"] is None
    assert "ConnectError" in record["error"]


def test_the_configs_webhook_wins_and_a_missing_secret_sends_nothing(
    runner: StepRunner, state: StateStore, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("FLYWHEEL_TEST_UNSET_SECRET", raising=False)
    config = llm_config(["a"], customize=False).model_copy(
        update={
            "notification": NotificationConfig(
                webhook_url=receiver.url, secret_env="FLYWHEEL_TEST_UNSET_SECRET"
            )
        }
    )
    job = create_job(state, config)
    drive(runner, job.id)
    # The settings' default points elsewhere; the job's own configuration wins.
    assert _notify(state, job.id, "http://127.0.0.1:9/default") == "failed"
    assert receiver.requests == []
    record = state.get_job(job.id).state["notification"]
    assert "FLYWHEEL_TEST_UNSET_SECRET is not set" in record["error"]


def test_cancelled_and_unconfigured_jobs(
    runner: StepRunner, state: StateStore, receiver: Receiver
) -> None:
    job = create_job(state, llm_config(["a"], customize=False))
    state.update_job(job.id, {"status": JobStatus.cancelled})  # what the API does when pending
    assert runner.advance(job.id).notify
    # No webhook anywhere: nothing is sent or written.
    before = state.get_job(job.id).version
    assert _notify(state, job.id, None) is None
    assert state.get_job(job.id).version == before
    # Unsigned when no secret is named.
    assert _notify(state, job.id, receiver.url, secret_env=None) == "sent"
    headers, body = receiver.requests[0]
    assert SIGNATURE_HEADER not in headers
    assert orjson.loads(body)["job"]["status"] == "cancelled"
    assert state.get_job(job.id).state["notification"]["signed"] is False


def test_a_live_claim_keeps_a_concurrent_task_from_sending(
    runner: StepRunner, state: StateStore, receiver: Receiver, secret: str
) -> None:
    job = create_job(state, llm_config(["a"], customize=False))
    done = drive(runner, job.id)
    claim = {"status": "sending", "token": "other", "until": int(time.time() * 1000) + 60_000}
    state.update_job(job.id, {"state": {**done.state, "notification": claim}})
    assert _notify(state, job.id, receiver.url) is None
    assert receiver.requests == []
    # The claim of a task that died long ago is taken over.
    expired = {**claim, "until": 1}
    state.update_job(job.id, {"state": {**done.state, "notification": expired}})
    assert _notify(state, job.id, receiver.url) == "sent"
    assert len(receiver.requests) == 1


@pytest.mark.skipif(not redis_available(), reason=f"no Redis at {REDIS_URL}")
@pytest.mark.timeout(120)
def test_celery_workers_notify_once_after_the_job_ends(
    data_dir: Path,
    state: StateStore,
    logs: LogStore,
    platform: FakePlatform,
    receiver: Receiver,
) -> None:
    receiver.statuses = [503]  # the first attempt fails: the task retries it
    clusters = make_cluster(
        data_dir,
        state,
        redis_url=REDIS_URL,
        FLYWHEEL_JOB_WEBHOOK_URL=receiver.url,
        FLYWHEEL_JOB_WEBHOOK_SECRET_ENV=SECRET_ENV,
        FLYWHEEL_TEST_JOB_WEBHOOK_SECRET=SECRET,
        FLYWHEEL_WORKFLOW_NOTIFY_BACKOFF_S="0.05",
    )
    cluster = next(clusters)
    try:
        job = create_job(state, llm_config(["a", "b"]))
        cluster.start_worker()
        cluster.launcher.enqueue(job.id)
        done = cluster.wait_done(job.id)
        assert done.status is JobStatus.completed, done.error
        sent = cluster.wait_for(
            job.id, lambda j: (j.state.get("notification") or {}).get("status") == "sent"
        )
        assert sent.status is JobStatus.completed
        assert sent.state["notification"]["attempts"] == 2
        # A late duplicate of a step on the ended job must not send it again.
        cluster.launcher.enqueue(job.id)
        time.sleep(1.0)
        assert len(receiver.requests) == 2
        for headers, body in receiver.requests:
            assert verify(body, SECRET, headers[SIGNATURE_HEADER])
        assert receiver.bodies()[-1]["job"]["status"] == "completed"
    finally:
        clusters.close()
