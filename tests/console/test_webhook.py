"""The promotion webhook against a real loopback HTTP receiver: signature, retries, failures."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest

from flywheel.api.app import create_app
from flywheel.services.webhooks import SIGNATURE_HEADER, WebhookSender, sign, verify
from flywheel.services.workflow_port import DeferredLauncher
from flywheel.stores.base import LogStore, StateStore
from tests.api.conftest import Api, TestClient, make_settings
from tests.console.conftest import CLIENT, WORKLOAD, keys_for
from tests.console.fixtures import Workflow, write_job_config
from tests.support.webhook_receiver import Receiver, serve_receiver

SECRET = "s3cret-for-tests"


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with serve_receiver("/hooks/model") as recv:
        yield recv


def _api(tmp_path: Path, stores: tuple[StateStore, LogStore], url: str) -> Iterator[Api]:
    state, logs = stores
    settings = make_settings(
        tmp_path,
        config_path=write_job_config(tmp_path / "config.yaml"),
        promotion_webhook_url=url,
        promotion_webhook_secret_env="FLYWHEEL_TEST_WEBHOOK_SECRET",
    )
    app = create_app(settings, state_store=state, log_store=logs, workflow=DeferredLauncher())
    with TestClient(app, raise_server_exceptions=False) as client:
        yield Api(
            app=app,
            client=client,
            state=state,
            logs=logs,
            launcher=DeferredLauncher(),
            keys=keys_for(state),
        )


def _finished(api: Api, workflow: Workflow) -> tuple[str, str]:
    """A job created through the API, run to completion by the real workflow."""
    job_id = api.client.post(
        "/api/jobs",
        json={"client_id": CLIENT, "workload_id": WORKLOAD},
        headers=api.headers("operator"),
    ).json()["id"]
    assert workflow.run(job_id).status == "completed"
    candidate = api.state.list_candidate_runs(job_id)[0].name
    return job_id, candidate


def _promotions(api: Api) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = api.client.get(
        f"/api/workloads/{CLIENT}/{WORKLOAD}/promotions", headers=api.headers("viewer")
    ).json()["items"]
    return items


def test_promotion_and_rollback_call_the_webhook_signed(
    tmp_path: Path,
    stores: tuple[StateStore, LogStore],
    workflow: Workflow,
    receiver: Receiver,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("FLYWHEEL_TEST_WEBHOOK_SECRET", SECRET)
    for api in _api(tmp_path, stores, receiver.url):
        job_id, candidate = _finished(api, workflow)
        out = api.client.post(
            f"/api/workloads/{CLIENT}/{WORKLOAD}/promotions",
            json={
                "job_id": job_id,
                "candidate": candidate,
                "variant": "icl",
                "note": "n",
                "expected_current": None,
            },
            headers=api.headers("operator"),
        ).json()
        assert out["webhook"] == {
            "url": receiver.url,
            "delivered": True,
            "attempts": 1,
            "status_code": 200,
            "error": None,
            "at": out["webhook"]["at"],
        }
        assert out["current"]["webhook"] == out["webhook"]
        headers, body = receiver.requests[-1]
        assert verify(body, SECRET, headers[SIGNATURE_HEADER])
        assert not verify(body + b" ", SECRET, headers[SIGNATURE_HEADER])
        event = orjson.loads(body)
        assert event["event"] == "promotion"
        assert (event["client_id"], event["workload_id"]) == (CLIENT, WORKLOAD)
        assert event["current"]["id"] == out["current"]["id"]
        assert event["current"]["model"] == candidate
        assert headers["X-Flywheel-Event"] == "promotion"

        rolled = api.client.post(
            f"/api/workloads/{CLIENT}/{WORKLOAD}/promotions/rollback",
            json={"expected_current": out["current"]["id"]},
            headers=api.headers("operator"),
        ).json()
        assert rolled["webhook"]["delivered"] is True
        assert _promotions(api)[0]["rollback_webhook"] == rolled["webhook"]
        headers, body = receiver.requests[-1]
        assert verify(body, SECRET, headers[SIGNATURE_HEADER])
        rollback = orjson.loads(body)
        assert rollback["event"] == "rollback"
        assert rollback["current"] is None
        assert rollback["rolled_back"]["id"] == out["current"]["id"]


def test_a_failing_webhook_is_recorded_on_the_promotion_not_raised(
    tmp_path: Path,
    stores: tuple[StateStore, LogStore],
    workflow: Workflow,
    receiver: Receiver,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("FLYWHEEL_TEST_WEBHOOK_SECRET", SECRET)
    receiver.statuses = [503] * 4 + [404]
    for api in _api(tmp_path, stores, receiver.url):
        job_id, candidate = _finished(api, workflow)
        before = datetime.now(UTC)
        response = api.client.post(
            f"/api/workloads/{CLIENT}/{WORKLOAD}/promotions",
            json={
                "job_id": job_id,
                "candidate": candidate,
                "variant": "base",
                "expected_current": None,
            },
            headers=api.headers("operator"),
        )
        assert response.status_code == 201
        hook = response.json()["webhook"]
        assert hook["delivered"] is False
        assert hook["attempts"] == 4
        assert hook["status_code"] == 503
        assert "failed after 4 attempt(s)" in hook["error"]
        assert datetime.fromisoformat(hook["at"]) >= before.replace(microsecond=0)
        # The promotion stands, and its record says the webhook failed, wherever it is read.
        model = api.client.get(
            f"/api/workloads/{CLIENT}/{WORKLOAD}/model", headers=api.headers("viewer")
        ).json()
        assert model["id"] == response.json()["current"]["id"]
        assert model["webhook"] == hook
        assert _promotions(api)[0]["webhook"] == hook

        # A refused rollback notification (4xx: not retried) is kept on the rolled-back one.
        rolled = api.client.post(
            f"/api/workloads/{CLIENT}/{WORKLOAD}/promotions/rollback",
            json={"expected_current": model["id"]},
            headers=api.headers("operator"),
        )
        assert rolled.status_code == 200
        kept = _promotions(api)[0]
        assert kept["rolled_back"] is True
        assert kept["webhook"] == hook
        assert kept["rollback_webhook"]["delivered"] is False
        assert kept["rollback_webhook"]["attempts"] == 1
        assert kept["rollback_webhook"]["status_code"] == 404
        assert "refused with HTTP 404" in kept["rollback_webhook"]["error"]


def test_sender_retries_transient_failures_then_delivers(receiver: Receiver) -> None:
    receiver.statuses = [500, 502]
    sender = WebhookSender(url=receiver.url, secret=SECRET, backoff_s=0.01, max_backoff_s=0.02)
    delivery = sender.send("promotion", {"x": 1})
    assert (delivery.delivered, delivery.attempts, delivery.status_code) == (True, 3, 200)
    bodies = [body for _, body in receiver.requests]
    assert len(set(bodies)) == 1  # the same signed body each time
    assert receiver.requests[0][0][SIGNATURE_HEADER] == sign(bodies[0], SECRET)


def test_sender_does_not_retry_a_refusal(receiver: Receiver) -> None:
    receiver.statuses = [400]
    sender = WebhookSender(url=receiver.url, secret=None, backoff_s=0.01)
    delivery = sender.send("promotion", {})
    assert (delivery.delivered, delivery.attempts, delivery.status_code) == (False, 1, 400)
    assert SIGNATURE_HEADER not in receiver.requests[0][0]


def test_sender_reports_an_unreachable_receiver() -> None:
    sender = WebhookSender(
        url="http://user:pw@127.0.0.1:9/hook?token=x",
        secret=SECRET,
        attempts=2,
        timeout_s=1.0,
        backoff_s=0.01,
    )
    delivery = sender.send("promotion", {})
    assert delivery.delivered is False
    assert delivery.attempts == 2
    assert delivery.status_code is None
    assert "ConnectError" in (delivery.error or "")
    assert delivery.url == "http://127.0.0.1:9/hook"  # no credentials, no query


def test_no_sender_without_a_url() -> None:
    assert WebhookSender.from_settings(url=None, secret_env="X") is None
