"""The judge stage: a job makes its LLM judge ready before any candidate deploys.

Driven in this process against real SQLite stores, the fake platform and, for a remote
judge, a real HTTP server on loopback (or a closed port, for an unreachable one).
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from flywheel.config.schema import LLMJudgeConfig
from flywheel.domain.jobs import Job, JobStatus
from flywheel.stores.base import LogStore, StateStore
from flywheel.workflow import engine
from flywheel.workflow.capacity import owner_key
from flywheel.workflow.engine import Kind
from flywheel.workflow.judge import JUDGE_OWNER, judge_candidate, models_url
from flywheel.workflow.steps import StepRunner, delete_artifacts, recorded_handles
from tests.workflow.fake_platform import FakePlatform
from tests.workflow.support import create_job, drive, llm_config, make_services

JUDGE = "judge-model"


class _Models(BaseHTTPRequestHandler):
    """``GET /v1/models`` of an OpenAI-compatible server that serves the judge."""

    def do_GET(self) -> None:
        body = json.dumps({"data": [{"id": JUDGE}]}).encode()
        status = 200 if self.path == "/v1/models" else 404
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        return


@pytest.fixture
def judge_server() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Models)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    server.shutdown()
    server.server_close()


def _closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/v1"


def _deployed(gpus: int = 1) -> LLMJudgeConfig:
    return LLMJudgeConfig(type="deployed", model_name=JUDGE, gpus=gpus)


def _judge_work(platform: FakePlatform, job: Job) -> list[dict[str, Any]]:
    return [
        w
        for w in platform.ledger()
        if w["job_id"] == job.id and w["kind"] == "deployment" and w["candidate"] == JUDGE
    ]


def _advance_until(runner: StepRunner, job: Job, kind: Kind, timeout_s: float = 20.0) -> Job:
    """Advance until the next action is ``kind`` (bounded in time)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        action = runner.peek(job.id).action
        if action is not None and action.kind is kind:
            return runner.s.state.get_job(job.id)
        step = runner.advance(job.id)
        if step.wait_s:
            time.sleep(min(step.wait_s, 0.1))
    raise AssertionError(f"never reached {kind}: {runner.s.state.get_job(job.id).state}")


def test_remote_judge_that_answers_is_ready_and_the_job_runs(
    runner: StepRunner, state: StateStore, platform: FakePlatform, judge_server: str
) -> None:
    config = llm_config(
        ["a"],
        customize=False,
        llm_judge_config=LLMJudgeConfig(type="remote", url=judge_server, model_name=JUDGE),
    )
    job = create_job(state, config)
    at_judge = _advance_until(runner, job, Kind.check_judge)
    assert at_judge.stage is not None
    assert at_judge.stage.startswith("judge: remote ")
    assert judge_server in at_judge.stage
    assert platform.ledger()[-1]["kind"] == "datasets"  # no candidate deployed before it
    done = drive(runner, job.id)
    assert done.status is JobStatus.completed, done.error
    judge = done.state["judge"]
    assert judge["status"] == "ready"
    assert judge["message"] == f"{judge_server} answers"


def test_unreachable_remote_judge_fails_the_job_naming_the_url_and_the_fix(
    runner: StepRunner, state: StateStore, platform: FakePlatform
) -> None:
    url = _closed_port_url()
    config = llm_config(
        ["a"], llm_judge_config=LLMJudgeConfig(type="remote", url=url, model_name=JUDGE)
    )
    job = create_job(state, config)
    done = drive(runner, job.id)
    assert done.status is JobStatus.failed
    error = done.error or ""
    assert f"LLM judge at {url} is not usable" in error, error
    assert "gave up after 3 retries" in error, error  # retried as a transient error first
    assert "fix llm_judge_config.url" in error, error
    assert [w["kind"] for w in platform.ledger() if w["job_id"] == job.id] == ["datasets"]
    assert done.state["judge"]["status"] == "failed"


def test_deployed_judge_is_started_leased_and_shut_down_with_the_job(
    state: StateStore, logs: LogStore, platform: FakePlatform, data_dir: Path
) -> None:
    services = make_services(
        state=state, logs=logs, platform=platform, data_dir=data_dir, gpu_budget=2
    )
    runner = StepRunner(services)
    platform.set_script(durations={"deployment": 0.3, "evaluation": 0.0, "customization": 0.0})
    job = create_job(state, llm_config(["a"], customize=False, llm_judge_config=_deployed()))
    starting = _advance_until(runner, job, Kind.poll_judge)
    assert starting.stage == f"judge: deployed {JUDGE}: deploying {JUDGE} for this job"
    assert services.capacity.leases() == {owner_key(job.id, JUDGE_OWNER): 1}
    assert [c["status"] for c in starting.state["candidates"].values()] == [engine.WAITING]
    # While the candidate runs, the judge's GPU still counts against the budget.
    active = _advance_until(runner, job, Kind.start_evaluation)
    assert services.capacity.leases() == {
        owner_key(job.id, JUDGE_OWNER): 1,
        owner_key(job.id, "a"): 1,
    }
    assert active.state["judge"]["owned"] is True
    done = drive(runner, job.id)
    assert done.status is JobStatus.completed, done.error
    [work] = _judge_work(platform, job)
    assert work["shut_down_at"] is not None
    assert done.state["judge"]["status"] == "shut_down"
    assert services.capacity.leases() == {}
    assert platform.live() == []


def test_judge_already_served_is_shared_and_never_shut_down(
    runner: StepRunner, state: StateStore, platform: FakePlatform
) -> None:
    platform.set_script(served=[JUDGE])
    job = create_job(state, llm_config(["a"], customize=False, llm_judge_config=_deployed()))
    done = drive(runner, job.id)
    assert done.status is JobStatus.completed, done.error
    judge = done.state["judge"]
    assert (judge["status"], judge["shared"], judge["owned"]) == ("ready", True, False)
    assert "shared, never shut down by this job" in judge["message"]
    assert _judge_work(platform, job) == []  # nothing deployed, so nothing to shut down
    assert all(kind != "judge" for kind, *_ in engine.iter_handles(done.state))
    assert runner.s.capacity.leases() == {}


def test_cancel_while_the_judge_deploys_shuts_it_down(
    runner: StepRunner, state: StateStore, platform: FakePlatform
) -> None:
    platform.set_script(durations={"deployment": 60.0, "evaluation": 0.0, "customization": 0.0})
    job = create_job(state, llm_config(["a"], llm_judge_config=_deployed()))
    _advance_until(runner, job, Kind.poll_judge)
    state.update_job(job.id, {"status": JobStatus.cancelling})
    done = drive(runner, job.id)
    assert done.status is JobStatus.cancelled
    [work] = _judge_work(platform, job)
    assert work["shut_down_at"] is not None
    assert [s["kind"] for s in done.state["stopped"]] == ["judge"]
    assert runner.s.capacity.leases() == {}
    assert platform.live() == []


def test_failed_judge_deployment_fails_the_job_and_is_shut_down(
    runner: StepRunner, state: StateStore, platform: FakePlatform
) -> None:
    platform.set_script(fail={f"{JUDGE}/deployment": "image pull failed"})
    job = create_job(state, llm_config(["a"], llm_judge_config=_deployed()))
    done = drive(runner, job.id)
    assert done.status is JobStatus.failed
    error = done.error or ""
    assert f"LLM judge {JUDGE!r} could not be deployed" in error, error
    assert "image pull failed" in error, error
    assert [w["kind"] for w in platform.ledger() if w["job_id"] == job.id] == [
        "datasets",
        "deployment",
    ]  # no candidate was deployed
    [work] = _judge_work(platform, job)
    assert work["shut_down_at"] is not None
    assert runner.s.capacity.leases() == {}


def test_candidate_that_cannot_fit_beside_the_judge_fails_clearly(
    state: StateStore, logs: LogStore, platform: FakePlatform, data_dir: Path
) -> None:
    services = make_services(
        state=state, logs=logs, platform=platform, data_dir=data_dir, gpu_budget=2
    )
    runner = StepRunner(services)
    job = create_job(state, llm_config(["big"], gpus=2, llm_judge_config=_deployed()))
    done = drive(runner, job.id)
    assert done.status is JobStatus.failed
    run = state.list_candidate_runs(done.id)[0]
    assert "of which this job's LLM judge holds 1" in (run.error or ""), run.error
    assert services.capacity.leases() == {}
    assert platform.live() == []


def test_delete_artifacts_shuts_the_judge_down(
    runner: StepRunner, state: StateStore, platform: FakePlatform
) -> None:
    platform.set_script(durations={"deployment": 60.0, "evaluation": 0.0, "customization": 0.0})
    job = create_job(state, llm_config(["a"], llm_judge_config=_deployed()))
    at = _advance_until(runner, job, Kind.poll_judge)
    handles = recorded_handles(at.state)
    assert [h["kind"] for h in handles] == ["datasets", "judge"]
    assert delete_artifacts(platform, handles, None) == []
    [work] = _judge_work(platform, job)
    assert work["shut_down_at"] is not None


def test_judge_candidate_fills_the_nim_from_the_catalogue() -> None:
    judge = LLMJudgeConfig(type="deployed", model_name="meta/llama-3.3-70b-instruct-judge")
    candidate = judge_candidate(judge)
    assert candidate.gpus == 4  # from the catalogue: the judge config left gpus at 0
    assert candidate.nim.image_name == "nvcr.io/nim/meta/llama-3.3-70b-instruct"
    assert candidate.nim.image_tag == "1.8.5"
    assert candidate.nim.pvc_size == "200Gi"
    assert candidate.customization_enabled is False
    own = judge_candidate(judge.model_copy(update={"gpus": 2}))
    assert own.gpus == 2


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://h/v1", "https://h/v1/models"),
        ("https://h/v1/", "https://h/v1/models"),
        ("https://h", "https://h/v1/models"),
        ("https://h/v1/chat/completions", "https://h/v1/models"),
    ],
)
def test_models_url_accepts_the_usual_spellings(url: str, expected: str) -> None:
    assert models_url(url) == expected
