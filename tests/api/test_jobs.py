"""/api/jobs: submission, listing, detail, cancel and delete on real stores (both backends)."""

from __future__ import annotations

from typing import Any

from flywheel.api.schemas import JobSummary
from flywheel.domain.jobs import JobId, JobStatus, JobType, NamedConfig
from tests.api.conftest import Api


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
