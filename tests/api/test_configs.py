"""/api/configs: validated writes, versions, optimistic concurrency and guarded deletes."""

from __future__ import annotations

from pathlib import Path

from httpx import Response

from flywheel.api.app import create_app
from flywheel.domain.jobs import JobId, JobStatus
from tests.api.conftest import Api, TestClient, make_settings

_BODY = {"data_split_config": {"eval_size": 30}}


def _create(api: Api, name: str = "small", body: object = None, **extra: object) -> Response:
    payload = {"name": name, "job_type": "llm_job", "body": _BODY if body is None else body}
    payload.update(extra)
    response: Response = api.client.post("/api/configs", json=payload, headers=api.headers("admin"))
    return response


def test_create_read_version_and_list(api: Api) -> None:
    admin = api.headers("admin")
    created = _create(api, description="thirty")
    assert created.status_code == 201, created.text
    assert created.json()["version"] == 1
    update = {"expected_version": 1, "body": {"data_split_config": {"eval_size": 40}}}
    second = api.client.put("/api/configs/small", json=update, headers=admin)
    assert second.status_code == 200, second.text
    assert second.json()["version"] == 2
    assert second.json()["description"] == "thirty"
    stale = api.client.put("/api/configs/small", json=update, headers=admin)
    assert stale.status_code == 409
    latest = api.client.get("/api/configs/small", headers=api.headers("viewer")).json()
    assert latest["body"]["data_split_config"]["eval_size"] == 40
    first = api.client.get("/api/configs/small", params={"version": 1}, headers=admin).json()
    assert first["body"] == _BODY
    versions = api.client.get("/api/configs/small/versions", headers=admin).json()["items"]
    assert [v["version"] for v in versions] == [1, 2]
    names = [c["name"] for c in api.client.get("/api/configs", headers=admin).json()["items"]]
    assert names == ["small"]


def test_invalid_bodies_get_field_errors(api: Api) -> None:
    bad = _create(api, body={"data_split_config": {"eval_size": -1}})
    assert bad.status_code == 422
    errors = bad.json()["errors"]
    assert errors[0]["loc"][:3] == ["body", "data_split_config", "eval_size"]
    typo = _create(api, body={"icl_confg": {}})
    assert typo.status_code == 422
    no_embedding = _create(
        api, body={"candidates": [{"name": "m", "model_type": "llm"}]}, job_type="embedding_job"
    )
    assert no_embedding.status_code == 422
    assert _create(api, name="bad name").status_code == 422
    assert _create(api, extra_field=1).status_code == 422


def test_duplicates_and_unknown_names(api: Api) -> None:
    admin = api.headers("admin")
    assert _create(api).status_code == 201
    assert _create(api).status_code == 409
    assert api.client.get("/api/configs/missing", headers=admin).status_code == 404
    assert (
        api.client.get("/api/configs/small", params={"version": 9}, headers=admin).status_code
        == 404
    )
    update = {"expected_version": 1, "body": {}}
    assert api.client.put("/api/configs/missing", json=update, headers=admin).status_code == 404
    assert api.client.delete("/api/configs/missing", headers=admin).status_code == 404


def test_delete_is_refused_while_an_active_job_uses_it_and_jobs_keep_their_snapshot(
    api: Api,
) -> None:
    admin = api.headers("admin")
    _create(api)
    job_id = api.client.post(
        "/api/jobs",
        json={"client_id": "acme", "workload_id": "router", "config_name": "small"},
        headers=admin,
    ).json()["id"]
    update = {"expected_version": 1, "body": {"data_split_config": {"eval_size": 45}}}
    api.client.put("/api/configs/small", json=update, headers=admin)
    job = api.client.get(f"/api/jobs/{job_id}", headers=admin).json()
    assert job["config"]["data_split_config"]["eval_size"] == 30
    assert job["config_version"] == 1
    assert api.client.delete("/api/configs/small", headers=admin).status_code == 409
    api.state.update_job(JobId(job_id), {"status": JobStatus.completed})
    assert api.client.delete("/api/configs/small", headers=admin).status_code == 204
    assert api.client.get("/api/configs/small", headers=admin).status_code == 404
    gone = api.client.post(
        "/api/jobs",
        json={"client_id": "acme", "workload_id": "router", "config_name": "small"},
        headers=admin,
    )
    assert gone.status_code == 404


def test_integers_beyond_64_bits_are_422_or_404_never_500(api: Api) -> None:
    """Found on MongoDB (BSON has no wider integer); SQLite now answers the same."""
    admin = api.headers("admin")
    huge = 2**70
    created = _create(api, "big", body={"data_split_config": {"limit": huge}})
    assert created.status_code == 422, created.text
    assert created.json()["errors"][0]["loc"] == ["body", "data_split_config", "limit"]
    assert _create(api).status_code == 201
    old = api.client.get("/api/configs/small", params={"version": huge}, headers=admin)
    assert old.status_code == 404
    update = {"expected_version": huge, "body": _BODY}
    assert api.client.put("/api/configs/small", json=update, headers=admin).status_code == 409
    split = {"random_seed": huge}
    body = {"client_id": "acme", "workload_id": "router", "data_split_config": split}
    job = api.client.post("/api/jobs", json=body, headers=admin)
    assert job.status_code == 422, job.text
    assert job.json()["errors"][0]["loc"] == ["config", "data_split_config", "random_seed"]
    assert api.state.count_jobs() == 0


def test_credentials_in_a_url_are_refused_and_never_stored(api: Api) -> None:
    """Regression: a judge URL with user:pw@ was stored, shown back and broken in snapshots."""
    judge = {"type": "remote", "model_name": "judge", "url": "https://user:pw@judge.example/v1"}
    refused = _create(api, body={"llm_judge_config": judge})
    assert refused.status_code == 422
    error = refused.json()["errors"][0]
    assert error["loc"] == ["body", "llm_judge_config", "url"]
    assert "api_key_env" in error["msg"]
    assert "pw" not in refused.text
    assert api.client.get("/api/configs/small", headers=api.headers("admin")).status_code == 404
    judge.update(url="https://judge.example/v1", api_key_env="JUDGE_API_KEY")
    assert _create(api, body={"llm_judge_config": judge}).status_code == 201
    update = {
        "expected_version": 1,
        "body": {"candidates": [{"name": "m", "endpoint_url": "http://tok@llm.example/v1"}]},
    }
    put = api.client.put("/api/configs/small", json=update, headers=api.headers("admin"))
    assert put.status_code == 422
    assert put.json()["errors"][0]["loc"] == ["body", "candidates", 0, "endpoint_url"]


def test_a_config_body_over_the_size_limit_is_413(tmp_path: Path, api: Api) -> None:
    settings = make_settings(tmp_path, max_request_bytes=300)
    app = create_app(settings, state_store=api.state, log_store=api.logs)
    admin = api.headers("admin")
    small = {"name": "small", "job_type": "llm_job", "body": _BODY}
    big = {**small, "name": "big", "description": "x" * 400}  # valid, only too large
    with TestClient(app) as client:
        refused = client.post("/api/configs", json=big, headers=admin)
        assert refused.status_code == 413
        assert "300-byte limit" in refused.json()["detail"]
        assert "FLYWHEEL_MAX_REQUEST_BYTES" in refused.json()["detail"]
        streamed = client.post(  # chunked, no Content-Length: counted as it arrives
            "/api/configs",
            content=iter([b'{"name": "big", "description": "', b"x" * 400, b'", "body": {}}']),
            headers={**admin, "Content-Type": "application/json"},
        )
        assert streamed.status_code == 413, streamed.text
        assert "300-byte limit" in streamed.json()["detail"]
        assert client.get("/api/configs/big", headers=admin).status_code == 404
        assert client.post("/api/configs", json=small, headers=admin).status_code == 201
