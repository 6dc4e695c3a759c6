"""A whole job, end to end, on the embedded stack: nothing faked.

The API (``create_app`` with the Celery launcher), a real ``flywheel worker`` process on the
embedded filesystem broker (started the way ``flywheel serve`` starts it), the real
:class:`~flywheel.platforms.local.LocalPlatform` with tiny random models (evaluations and
LoRA / sentence-transformers training in their own worker processes, one torch thread).
Logs go in through ``POST /api/logs``, the job through ``POST /api/jobs``; the test polls
``GET /api/jobs/{id}`` until the job ends and checks every part of the result.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml

from flywheel.api.app import create_app
from flywheel.cli.embedded_worker import EmbeddedWorker
from flywheel.settings import Settings
from flywheel.stores.state_sqlite import SqliteStateStore
from flywheel.workflow.launcher import create_launcher
from tests.api.conftest import TestClient
from tests.e2e.conftest import tiny_job_config, worker_env
from tests.workflow.support import CLIENT, RAG, WORKLOAD, chat_logs, retrieval_logs

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

JOB_DEADLINE_S = 180.0


@dataclass
class Stack:
    """The API client and the worker, sharing one data dir."""

    client: TestClient
    worker: EmbeddedWorker
    log_file: Path

    def worker_output(self) -> str:
        """The tail of the worker's log (for failure messages)."""
        return self.log_file.read_text(errors="replace")[-4000:] if self.log_file.exists() else ""

    def run_job(self, workload_id: str, job_type: str) -> dict[str, Any]:
        """Create a job through the API and poll it until it ends; its final body."""
        created = self.client.post(
            "/api/jobs",
            json={"client_id": CLIENT, "workload_id": workload_id, "job_type": job_type},
        )
        assert created.status_code in (200, 201, 202), created.text
        job_id = created.json()["id"]
        deadline = time.monotonic() + JOB_DEADLINE_S
        body: dict[str, Any] = {}
        while time.monotonic() < deadline:
            body = self.client.get(f"/api/jobs/{job_id}").json()
            if body["status"] in ("completed", "failed", "cancelled"):
                if dump := os.environ.get("FLYWHEEL_E2E_DUMP"):
                    Path(dump, f"{job_type}.json").write_bytes(orjson.dumps(body))
                return body
            assert self.worker.alive(), f"the worker died:\n{self.worker_output()}"
            time.sleep(0.5)
        raise AssertionError(
            f"job {job_id} still {body.get('status')}/{body.get('stage')} after "
            f"{JOB_DEADLINE_S} s\n{orjson.dumps(body).decode()[:3000]}\n{self.worker_output()}"
        )


@pytest.fixture(scope="module")
def stack(
    tmp_path_factory: pytest.TempPathFactory, tiny_models: tuple[Path, Path]
) -> Iterator[Stack]:
    root = tmp_path_factory.mktemp("e2e")
    data_dir = root / "data"
    data_dir.mkdir()
    config_path = root / "job-config.yaml"
    config_path.write_text(yaml.safe_dump(tiny_job_config(*tiny_models)))
    settings = Settings(data_dir=data_dir, config_path=config_path, auth_enabled=False)
    state = SqliteStateStore.from_url(settings.state_store_url)
    log_file = root / "worker.log"
    worker = EmbeddedWorker(env=worker_env(data_dir, config_path), log_file=log_file)
    app = create_app(settings, state_store=state, workflow=create_launcher(settings, state))
    try:
        with worker, TestClient(app) as client:
            logs = [r.model_dump(mode="json") for r in [*chat_logs(40), *retrieval_logs(40)]]
            ingested = client.post("/api/logs", json=logs)
            assert ingested.status_code == 200, ingested.text
            assert ingested.json()["accepted"] == 80
            yield Stack(client=client, worker=worker, log_file=log_file)
        assert worker.pid is None  # stopped with the context
    finally:
        state.close()


def _ci(score: dict[str, Any]) -> None:
    assert score["n"] > 0
    assert score["value"] is not None
    assert score["ci_low"] <= score["value"] <= score["ci_high"]


def test_llm_job_runs_end_to_end_on_the_local_platform(stack: Stack) -> None:
    job = stack.run_job(WORKLOAD, "llm_job")
    assert job["status"] == "completed", (job.get("error"), job.get("warnings"))
    assert job["progress"] == 100.0

    stats = job["dataset_stats"]
    assert stats, "dataset stats are recorded"
    assert job["datasets"], "dataset files are listed"

    (candidate,) = job["candidates"]
    assert candidate["name"] == "tiny-llama"
    assert candidate["status"] == "completed", candidate["error"]
    evals = {e["eval_type"]: e for e in candidate["evaluations"]}
    assert set(evals) == {"base", "icl", "customized"}
    for eval_type, evaluation in evals.items():
        assert evaluation["status"] == "completed", (eval_type, evaluation["error"])
        scores = evaluation["scores"]
        for metric in ("function_name_accuracy", "function_name_and_args_accuracy"):
            _ci(scores[metric])
        assert scores["latency"]["p50_ms"] is not None
        assert scores["cost"]["cost_per_1k_requests"] >= 0

    customization = candidate["customization"]
    assert customization["status"] == "completed", customization["error"]
    details = customization["details"]
    assert details["output_model"]
    assert Path(details["output_model"], "manifest.json").is_file()
    manifest = orjson.loads(Path(details["output_model"], "manifest.json").read_bytes())
    assert manifest["metrics"]["train_loss"]
    losses = details["train_loss"]  # the API shows the loss curve
    assert losses
    assert all(loss > 0 for loss in losses)

    assert job["recommendation"] is not None


def test_embedding_job_runs_end_to_end_on_the_local_platform(stack: Stack) -> None:
    job = stack.run_job(RAG, "embedding_job")
    assert job["status"] == "completed", (job.get("error"), job.get("warnings"))
    assert job["dataset_stats"]

    (candidate,) = job["candidates"]
    assert candidate["name"] == "tiny-bert"
    evals = {e["eval_type"]: e for e in candidate["evaluations"]}
    assert set(evals) == {"base", "customized"}
    for eval_type, evaluation in evals.items():
        assert evaluation["status"] == "completed", (eval_type, evaluation["error"])
        for metric in ("recall@5", "ndcg@10"):
            _ci(evaluation["scores"][metric])
    customization = candidate["customization"]
    assert customization["status"] == "completed", customization["error"]
    assert Path(customization["details"]["output_model"]).is_dir()
    assert job["recommendation"] is not None
