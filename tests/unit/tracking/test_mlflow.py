"""MLflow tracking of ended jobs, against a real MLflow file store read back with MlflowClient.

A job is run to its end by the real step runner (fake platform), then the completion task's
entry point (:func:`flywheel.workflow.notify.notify`) logs it.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from mlflow.tracking import MlflowClient

from flywheel.domain.jobs import Job, JobId, JobStatus
from flywheel.services.jobs import JobDetail
from flywheel.stores.base import StateStore
from flywheel.tracking.mlflow import COMPLETE_TAG, JOB_ID_TAG, KIND_TAG, MlflowTracker
from flywheel.workflow import notify
from flywheel.workflow.steps import StepRunner
from tests.workflow.fake_platform import FakePlatform
from tests.workflow.support import create_job, drive, fast_options, llm_config

EXPERIMENT = "flywheel-tests"


@pytest.fixture
def tracking_uri(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    # MLflow 3 keeps the file store for local use behind this switch.
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    return (tmp_path / "mlruns").as_uri()


def _notify(state: StateStore, job_id: JobId, uri: str) -> str | None:
    return notify.notify(
        state,
        job_id,
        options=fast_options(),
        now_ms=lambda: int(time.time() * 1000),
        mlflow_tracking_uri=uri,
        mlflow_experiment_name=EXPERIMENT,
    )


def _ended_job(runner: StepRunner, state: StateStore, platform: FakePlatform, tmp: Path) -> Job:
    platform.set_script(accuracy={"good": 1.0, "weak": 0.25})
    job = create_job(state, llm_config(["good", "weak"]))
    done = drive(runner, job.id)
    assert done.status is JobStatus.completed
    # The local platform's adapter manifest carries the loss curve: give "good" one.
    adapter = tmp / "adapter"
    adapter.mkdir()
    (adapter / "manifest.json").write_text(
        json.dumps({"metrics": {"train_loss": [2.0, 1.5, 1.2, 0.9], "val_loss": [1.4, 1.0]}})
    )
    run = next(r for r in state.list_candidate_runs(job.id) if r.name == "good")
    assert run.customization is not None
    custom = {**run.customization, "details": {"output_model": str(adapter)}}
    state.update_candidate_run(job.id, "good", {"customization": custom})
    return done


def _runs(client: MlflowClient, job_id: str) -> list[Any]:
    experiment = client.get_experiment_by_name(EXPERIMENT)
    assert experiment is not None
    return list(
        client.search_runs(
            [experiment.experiment_id], filter_string=f"tags.`{JOB_ID_TAG}` = '{job_id}'"
        )
    )


def test_an_ended_job_is_logged_as_a_parent_run_with_nested_evaluations_and_training(
    runner: StepRunner,
    state: StateStore,
    platform: FakePlatform,
    tracking_uri: str,
    tmp_path: Path,
) -> None:
    job = _ended_job(runner, state, platform, tmp_path)
    _notify(state, job.id, tracking_uri)

    client = MlflowClient(tracking_uri=tracking_uri)
    runs = _runs(client, job.id)
    parents = [r for r in runs if r.data.tags[KIND_TAG] == "job"]
    assert len(parents) == 1
    parent = parents[0]
    assert parent.info.status == "FINISHED"
    assert parent.data.tags["flywheel.status"] == "completed"
    assert parent.data.tags[COMPLETE_TAG] == "true"
    params = parent.data.params
    assert params["job_id"] == job.id
    assert params["client_id"] == job.client_id
    assert params["workload_id"] == job.workload_id
    assert params["job_type"] == "llm_job"
    assert params["eval_size"] == "8"
    assert json.loads(params["candidates"]) == ["good", "weak"]
    artifacts = {a.path for a in client.list_artifacts(parent.info.run_id)}
    assert artifacts == {"results.json", "results.csv"}
    results_json = Path(
        client.download_artifacts(parent.info.run_id, "results.json", str(tmp_path))
    )
    results = json.loads(results_json.read_text())
    assert results["job"]["id"] == job.id
    assert results["recommendation"]["best"].startswith("good/")

    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    evaluations = [r for r in children if r.data.tags[KIND_TAG] == "evaluation"]
    assert {(r.data.params["candidate"], r.data.params["eval_type"]) for r in evaluations} == {
        (name, variant) for name in ("good", "weak") for variant in ("base", "icl", "customized")
    }
    good_base = next(
        r.data
        for r in evaluations
        if r.data.params["candidate"] == "good" and r.data.params["eval_type"] == "base"
    )
    weak_base = next(
        r.data
        for r in evaluations
        if r.data.params["candidate"] == "weak" and r.data.params["eval_type"] == "base"
    )
    metric = "function_name_and_args_accuracy"
    assert good_base.metrics[metric] == 1.0
    assert weak_base.metrics[metric] < 1.0
    assert weak_base.metrics[f"{metric}.ci_low"] <= weak_base.metrics[metric]
    assert weak_base.metrics[f"{metric}.ci_high"] >= weak_base.metrics[metric]
    assert weak_base.metrics[f"{metric}.n"] == 8

    trainings = {
        r.data.params["candidate"]: r for r in children if r.data.tags[KIND_TAG] == "training"
    }
    assert set(trainings) == {"good", "weak"}
    good_training = trainings["good"]
    assert good_training.data.params["training.epochs"] == "2"
    assert good_training.data.params["lora.adapter_dim"] == "32"
    history = client.get_metric_history(good_training.info.run_id, "train_loss")
    assert [(m.step, m.value) for m in sorted(history, key=lambda m: m.step)] == [
        (1, 2.0),
        (2, 1.5),
        (3, 1.2),
        (4, 0.9),
    ]
    val = client.get_metric_history(good_training.info.run_id, "val_loss")
    assert sorted((m.step, m.value) for m in val) == [(1, 1.4), (2, 1.0)]

    record = state.get_job(job.id).state["tracking"]
    assert record["status"] == "logged"
    assert record["run_id"] == parent.info.run_id


def test_a_redelivered_notify_logs_nothing_twice(
    runner: StepRunner,
    state: StateStore,
    platform: FakePlatform,
    tracking_uri: str,
    tmp_path: Path,
) -> None:
    job = _ended_job(runner, state, platform, tmp_path)
    _notify(state, job.id, tracking_uri)
    client = MlflowClient(tracking_uri=tracking_uri)
    first = {r.info.run_id for r in _runs(client, job.id)}

    _notify(state, job.id, tracking_uri)  # the job's record says: done
    # A task that died after logging but before recording: only MLflow knows.
    job_now = state.get_job(job.id)
    forgotten = {k: v for k, v in job_now.state.items() if k != "tracking"}
    state.update_job(job.id, {"state": forgotten})
    _notify(state, job.id, tracking_uri)

    assert {r.info.run_id for r in _runs(client, job.id)} == first
    assert state.get_job(job.id).state["tracking"]["status"] == "logged"


def test_a_half_written_attempt_is_replaced(
    runner: StepRunner,
    state: StateStore,
    platform: FakePlatform,
    tracking_uri: str,
    tmp_path: Path,
) -> None:
    job = _ended_job(runner, state, platform, tmp_path)
    tracker = MlflowTracker(tracking_uri, EXPERIMENT)
    client = MlflowClient(tracking_uri=tracking_uri)
    # A crash right after the job run was created: no complete tag, no children.
    stale = client.create_run(
        tracker.experiment_id(), tags={JOB_ID_TAG: job.id, KIND_TAG: "job"}
    ).info.run_id

    detail = JobDetail(job=state.get_job(job.id), candidates=state.list_candidate_runs(job.id))
    run_id = tracker.log_job(detail)

    assert run_id != stale
    live = _runs(client, job.id)
    assert stale not in {r.info.run_id for r in live}
    assert [r.info.run_id for r in live if r.data.tags[KIND_TAG] == "job"] == [run_id]


def test_an_unreachable_mlflow_is_recorded_on_the_job_and_never_fails_it(
    runner: StepRunner,
    state: StateStore,
    platform: FakePlatform,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    job = _ended_job(runner, state, platform, tmp_path)
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "5")
    uri = "http://user:hunter2@127.0.0.1:9"  # discard port: connection refused

    _notify(state, job.id, uri)

    after = state.get_job(job.id)
    assert after.status is JobStatus.completed
    record = after.state["tracking"]
    assert record["status"] == "failed"
    assert "MLflow tracking at http://user:***@127.0.0.1:9 failed" in record["error"]
    assert "hunter2" not in json.dumps(after.state)
    assert after.warnings[-1] == record["error"]
    _notify(state, job.id, uri)  # given up on: no second warning
    assert len(state.get_job(job.id).warnings) == len(after.warnings)


def test_mlflow_missing_names_the_extra(
    runner: StepRunner,
    state: StateStore,
    platform: FakePlatform,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    job = _ended_job(runner, state, platform, tmp_path)
    monkeypatch.setitem(sys.modules, "mlflow.tracking", None)  # as if not installed

    _notify(state, job.id, (tmp_path / "mlruns").as_uri())

    record = state.get_job(job.id).state["tracking"]
    assert record["status"] == "failed"
    assert "flywheel[mlflow]" in record["error"]
    assert "MLFLOW_TRACKING_URI" in record["error"]


def test_a_live_claim_of_another_task_is_left_alone(
    runner: StepRunner,
    state: StateStore,
    platform: FakePlatform,
    tracking_uri: str,
    tmp_path: Path,
) -> None:
    job = _ended_job(runner, state, platform, tmp_path)
    now = int(time.time() * 1000)
    claim = {"status": "sending", "token": "other-task", "until": now + 60_000}
    state.update_job(job.id, {"state": {**state.get_job(job.id).state, "tracking": claim}})

    _notify(state, job.id, tracking_uri)

    assert state.get_job(job.id).state["tracking"] == claim
    experiment = MlflowClient(tracking_uri=tracking_uri).get_experiment_by_name(EXPERIMENT)
    assert experiment is None  # nothing was logged, not even the experiment created

    # Once the claim's lease has run out (its task died), the next task logs the job.
    expired = {**claim, "until": now - 1}
    state.update_job(job.id, {"state": {**state.get_job(job.id).state, "tracking": expired}})
    _notify(state, job.id, tracking_uri)
    assert state.get_job(job.id).state["tracking"]["status"] == "logged"
    assert len(_runs(MlflowClient(tracking_uri=tracking_uri), job.id)) > 1
