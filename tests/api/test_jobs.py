"""/api/jobs: submission, listing, detail, cancel and delete on real stores (both backends)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from flywheel.api.schemas import JobSummary
from flywheel.domain.jobs import JobId, JobStatus, JobType, NamedConfig
from flywheel.domain.logs import ChatLog
from flywheel.workflow.steps import StepRunner
from tests.api.conftest import Api
from tests.workflow.fake_platform import FakePlatform
from tests.workflow.support import chat_logs, drive, make_services


def _submit(api: Api, who: str = "operator", **body: Any) -> Any:
    payload = {"client_id": "acme", "workload_id": "router", **body}
    return api.client.post("/api/jobs", json=payload, headers=api.headers(who))


def test_submit_stores_a_pending_job_with_its_snapshot_and_enqueues_it(api: Api) -> None:
    response = _submit(api, data_split_config={"eval_size": 5, "random_seed": 7})
    assert response.status_code == 202, response.text
    body = response.json()
    assert body["status"] == "pending"
    assert set(body) == {"id", "status", "message"}
    job = api.state.get_job(JobId(body["id"]))
    assert job.status is JobStatus.pending
    assert job.config["data_split_config"]["eval_size"] == 5
    assert job.config["data_split_config"]["random_seed"] == 7
    assert job.config_hash
    assert api.launcher.enqueued == [job.id]
    detail = api.client.get(f"/api/jobs/{job.id}", headers=api.headers("viewer")).json()
    assert detail["config"] == job.config
    assert [c["name"] for c in detail["candidates"]] == ["smollm2-135m-instruct"]
    assert "state" not in detail


def test_submit_pins_the_named_config_version(api: Api) -> None:
    api.state.create_config(
        NamedConfig(
            name="big-eval",
            version=1,
            job_type=JobType.llm_job,
            body={"data_split_config": {"eval_size": 30}},
        )
    )
    response = _submit(api, config_name="big-eval")
    assert response.status_code == 202, response.text
    job = api.state.get_job(JobId(response.json()["id"]))
    assert (job.config_name, job.config_version) == ("big-eval", 1)
    assert job.config["data_split_config"]["eval_size"] == 30


def test_submit_errors(api: Api) -> None:
    assert _submit(api, config_name="nope").status_code == 404
    assert "nope" in _submit(api, config_name="nope").json()["detail"]
    assert _submit(api, surprise=1).status_code == 422
    assert _submit(api, client_id="bad id!").status_code == 422
    assert (
        _submit(api, data_split_config={"eval_size": 100, "min_total_records": 50}).status_code
        == 422
    )
    no_logs = _submit(api, workload_id="silent")
    assert no_logs.status_code == 422
    assert "no chat logs" in no_logs.json()["detail"]
    # The pair has retrieval logs only, so an llm_job has nothing to learn from.
    assert _submit(api, workload_id="rag").status_code == 422
    assert _submit(api, workload_id="rag", job_type="embedding_job").status_code == 202
    assert (
        api.client.post("/api/jobs", content=b"{", headers=api.headers("operator")).status_code
        == 422
    )


def test_named_config_for_another_job_type_is_refused(api: Api) -> None:
    api.state.create_config(
        NamedConfig(name="emb", version=1, job_type=JobType.embedding_job, body={})
    )
    response = _submit(api, config_name="emb")
    assert response.status_code == 422
    assert response.json()["errors"][0]["loc"] == ["body", "config_name"]


def test_list_is_newest_first_filtered_and_paginated(api: Api) -> None:
    ids = [_submit(api).json()["id"] for _ in range(5)]
    ids.append(_submit(api, client_id="globex").json()["id"])
    viewer = api.headers("viewer")
    page = api.client.get("/api/jobs", params={"limit": 2}, headers=viewer).json()
    assert [j["id"] for j in page["items"]] == ids[::-1][:2]
    # Listing rows are summaries: no configuration snapshot, datasets or workflow state.
    assert set(page["items"][0]) == set(JobSummary.model_fields)
    assert page["items"][0]["status"] == "pending"
    seen = [j["id"] for j in page["items"]]
    while page["next_cursor"]:
        page = api.client.get(
            "/api/jobs", params={"limit": 2, "cursor": page["next_cursor"]}, headers=viewer
        ).json()
        seen += [j["id"] for j in page["items"]]
    assert seen == ids[::-1]
    only = api.client.get("/api/jobs", params={"client_id": "globex"}, headers=viewer).json()
    assert [j["id"] for j in only["items"]] == [ids[-1]]
    pending = api.client.get("/api/jobs", params={"status": "running"}, headers=viewer).json()
    assert pending["items"] == []
    assert api.client.get("/api/jobs", params={"limit": 201}, headers=viewer).status_code == 422
    assert api.client.get("/api/jobs", params={"cursor": "%%%"}, headers=viewer).status_code == 422


def test_unknown_or_malformed_ids_are_404(api: Api) -> None:
    for job_id in ("job_missing", "123", "not-an-objectid", "%20"):
        for method, path in (
            ("GET", f"/api/jobs/{job_id}"),
            ("POST", f"/api/jobs/{job_id}/cancel"),
            ("DELETE", f"/api/jobs/{job_id}"),
        ):
            response = api.client.request(method, path, headers=api.headers("operator"))
            assert response.status_code == 404, (method, path, response.text)


def test_cancel_pending_then_running_then_terminal(api: Api) -> None:
    op = api.headers("operator")
    pending_id = _submit(api).json()["id"]
    response = api.client.post(f"/api/jobs/{pending_id}/cancel", headers=op)
    assert response.status_code == 202
    assert response.json()["status"] == "cancelled"
    assert api.client.post(f"/api/jobs/{pending_id}/cancel", headers=op).status_code == 409

    running_id = _submit(api).json()["id"]
    api.state.update_job(JobId(running_id), {"status": JobStatus.running})
    response = api.client.post(f"/api/jobs/{running_id}/cancel", headers=op)
    assert response.json()["status"] == "cancelling"
    assert JobId(running_id) in api.launcher.cancelled


def test_delete_refuses_active_jobs_and_removes_finished_ones(api: Api) -> None:
    op = api.headers("operator")
    job_id = _submit(api).json()["id"]
    assert api.client.delete(f"/api/jobs/{job_id}", headers=op).status_code == 409
    api.client.post(f"/api/jobs/{job_id}/cancel", headers=op)
    assert api.client.delete(f"/api/jobs/{job_id}", headers=op).status_code == 200
    assert api.launcher.deleted == [JobId(job_id)]
    assert api.client.get(f"/api/jobs/{job_id}", headers=op).status_code == 404


# ---- a job run through the workflow, read back through the API --------------------------

#: Tool-calling logs of acme/router, newest last (the fixture adds one plain chat, newer).
RUN_LOGS = chat_logs(40)


def _flawed_logs() -> list[ChatLog]:
    """Two records the dataset build drops, newer than the rest so any ``limit`` pulls them."""
    newest = RUN_LOGS[-1]
    duplicate = newest.model_copy(update={"timestamp": newest.timestamp + 500})
    error = newest.model_copy(
        update={"timestamp": newest.timestamp + 600, "response": {"error": {"message": "boom"}}}
    )
    return [duplicate, error]


def _run_job(api: Api, tmp_path: Path, split: dict[str, Any]) -> dict[str, Any]:
    """Submit through the API, run every step in this process on the fake platform, GET it."""
    api.logs.write([*RUN_LOGS, *_flawed_logs()])
    # A candidate with no local files: the build counts tokens by estimate, loading no
    # tokenizer, and the instant fake platform serves it.
    api.state.create_config(
        NamedConfig(
            name="fake-small",
            version=1,
            job_type=JobType.llm_job,
            body={"candidates": [{"name": "small", "python_package": None}]},
        )
    )
    response = _submit(api, config_name="fake-small", data_split_config=split)
    assert response.status_code == 202, response.text
    job_id = JobId(response.json()["id"])
    work = tmp_path / "workflow"
    work.mkdir()
    platform = FakePlatform(work / "platform.db")
    platform.set_script(accuracy={"small": 0.75})
    services = make_services(state=api.state, logs=api.logs, platform=platform, data_dir=work)
    done = drive(StepRunner(services), job_id)
    assert done.status is JobStatus.completed, done.error
    detail = api.client.get(f"/api/jobs/{job_id}", headers=api.headers("viewer"))
    assert detail.status_code == 200, detail.text
    body: dict[str, Any] = detail.json()
    return body


def _assert_score(score: dict[str, Any]) -> None:
    assert score["n"] > 0
    assert score["ci_low"] <= score["value"] <= score["ci_high"]
    assert score["confidence"] == 0.95


def test_a_finished_job_shows_dataset_stats_scores_and_timings(api: Api, tmp_path: Path) -> None:
    job = _run_job(api, tmp_path, {"eval_size": 8, "min_total_records": 20})
    assert (job["status"], job["progress"]) == ("completed", 100.0)
    assert job["created_at"] <= job["started_at"] <= job["finished_at"]

    stages = job["dataset_stats"]["stages"]
    # 40 tool calls, the fixture's plain chat and the two flawed records.
    assert stages["pulled"] == 43
    assert stages["dropped"] == {"error_response": 1, "duplicate": 1}
    assert stages["valid"] == 42
    assert stages["unique"] == 41
    assert stages["kept"] == 41
    splits = job["dataset_stats"]["splits"]
    assert set(splits) == {"eval", "train", "validation"}
    assert splits["eval"]["records"] == 8
    assert splits["train"]["records"] > 0
    assert splits["validation"]["records"] > 0
    assert sum(s["records"] for s in splits.values()) == stages["kept"]
    assert {r["role"] for r in job["datasets"]} >= {"eval", "train", "validation"}

    (candidate,) = job["candidates"]
    assert (candidate["name"], candidate["status"]) == ("small", "completed")
    evaluations = {e["eval_type"]: e for e in candidate["evaluations"]}
    assert set(evaluations) == {"base", "icl", "customized"}
    for evaluation in evaluations.values():
        assert evaluation["status"] == "completed", evaluation["error"]
        assert evaluation["started_at"] <= evaluation["finished_at"]
        assert evaluation["runtime_seconds"] >= 0
        for metric in ("function_name_accuracy", "function_name_and_args_accuracy"):
            _assert_score(evaluation["scores"][metric])
            assert evaluation["scores"][metric]["n"] == 8
    # The fake answers the first 75 % of the eval items like the reference.
    assert evaluations["base"]["scores"]["function_name_accuracy"]["value"] == 0.75
    assert candidate["customization"]["status"] == "completed"
    assert candidate["customization"]["runtime_seconds"] >= 0

    timings = job["recommendation"]["timings"]
    assert timings["total_s"] >= timings["datasets_s"] >= 0
    assert set(timings["candidates"]["small"]) >= {"deploy_s", "base_s", "icl_s", "total_s"}


def test_request_split_overrides_reach_the_run(api: Api, tmp_path: Path) -> None:
    split = {"eval_size": 6, "min_total_records": 20, "limit": 25, "random_seed": 7}
    job = _run_job(api, tmp_path, split)
    stats = job["dataset_stats"]
    assert job["config"]["data_split_config"]["limit"] == 25
    assert stats["stages"]["pulled"] == 25  # the limit caps what is read, newest first
    assert stats["splits"]["eval"]["records"] == 6
    assert stats["seed"] == 7
    (candidate,) = job["candidates"]
    assert {e["scores"]["function_name_accuracy"]["n"] for e in candidate["evaluations"]} == {6}
