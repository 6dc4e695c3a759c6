"""Promotions, workloads, the caller endpoint, results CSV and the console's static files."""

from __future__ import annotations

import csv
import io
from typing import Any

from tests.api.conftest import Api
from tests.console.conftest import CLIENT, WORKLOAD
from tests.console.fixtures import finish_job, start_job

MODEL = f"/api/workloads/{CLIENT}/{WORKLOAD}/model"
PROMOTIONS = f"/api/workloads/{CLIENT}/{WORKLOAD}/promotions"


def create_job(api: Api, who: str = "operator", **body: Any) -> str:
    response = api.client.post(
        "/api/jobs",
        json={"client_id": CLIENT, "workload_id": WORKLOAD, **body},
        headers=api.headers(who),
    )
    assert response.status_code == 202, response.text
    job_id: str = response.json()["id"]
    return job_id


def finished_job(api: Api, **kwargs: Any) -> dict[str, Any]:
    job_id = create_job(api)
    finish_job(api.state, job_id, **kwargs)
    job: dict[str, Any] = api.client.get(
        f"/api/jobs/{job_id}", headers=api.headers("viewer")
    ).json()
    assert job["status"] == "completed"
    return job


def promote(
    api: Api, job: dict[str, Any], variant: str, who: str = "operator", **extra: Any
) -> Any:
    candidate = job["candidates"][0]["name"]
    return api.client.post(
        PROMOTIONS,
        json={"job_id": job["id"], "candidate": candidate, "variant": variant, **extra},
        headers=api.headers(who),
    )


def test_me_reports_role_and_scope(api: Api) -> None:
    me = api.client.get("/api/auth/me", headers=api.headers("viewer")).json()
    assert me["role"] == "viewer"
    assert me["client_ids"] is None
    assert me["auth_enabled"] is True
    scoped = api.client.get("/api/auth/me", headers=api.headers("acme")).json()
    assert scoped == {**scoped, "role": "operator", "client_ids": ["acme"]}
    assert api.client.get("/api/auth/me").status_code == 401


def test_workloads_list_counts_per_kind_and_respects_scope(api: Api) -> None:
    items = api.client.get("/api/workloads", headers=api.headers("viewer")).json()["items"]
    pairs = {(i["client_id"], i["workload_id"]): i for i in items}
    assert list(pairs) == sorted(pairs)
    assert pairs[(CLIENT, WORKLOAD)]["chat_records"] == 64
    assert pairs[("acme", "rag")] == {
        **pairs[("acme", "rag")],
        "chat_records": 0,
        "retrieval_records": 1,
    }
    assert pairs[(CLIENT, WORKLOAD)]["newest_timestamp"] > 0
    scoped = api.client.get("/api/workloads", headers=api.headers("acme")).json()["items"]
    assert {i["client_id"] for i in scoped} == {"acme"}


def test_model_is_404_with_a_clear_message_until_something_is_promoted(api: Api) -> None:
    response = api.client.get(MODEL, headers=api.headers("viewer"))
    assert response.status_code == 404
    assert "no model has been promoted" in response.json()["detail"]
    assert api.client.get(MODEL).status_code == 401


def test_promote_records_evidence_and_serves_it_to_applications(api: Api) -> None:
    job = finished_job(api)
    response = promote(api, job, "customized", note="parity at a fraction of the cost")
    assert response.status_code == 201, response.text
    out = response.json()
    assert out["webhook"] is None  # none configured
    current = out["current"]
    candidate = job["candidates"][0]
    evaluation = next(e for e in candidate["evaluations"] if e["eval_type"] == "customized")
    assert current["model"] == candidate["customization"]["details"]["output_model"]
    assert current["variant"] == "customized"
    assert current["job_id"] == job["id"]
    assert current["note"] == "parity at a fraction of the cost"
    assert current["promoted_by"].startswith("key_")
    assert current["scores"]["candidate"] == candidate["name"]
    for metric in ("function_name_accuracy", "function_name_and_args_accuracy"):
        want = evaluation["scores"][metric]
        assert current["scores"][metric] == {
            k: want[k] for k in ("value", "ci_low", "ci_high", "n")
        }
    assert current["scores"]["latency_p95_ms"] == evaluation["scores"]["latency"]["p95_ms"]
    assert (
        current["scores"]["cost_per_1k_requests"]
        == evaluation["scores"]["cost"]["cost_per_1k_requests"]
    )

    served = api.client.get(MODEL, headers=api.headers("viewer")).json()
    assert served == current
    base = promote(api, job, "base").json()["current"]
    assert base["model"] == candidate["name"]
    assert api.client.get(MODEL, headers=api.headers("viewer")).json()["id"] == base["id"]


def test_promote_refuses_unfinished_jobs_and_missing_evaluations(api: Api) -> None:
    job_id = create_job(api)
    pending = api.client.get(f"/api/jobs/{job_id}", headers=api.headers("viewer")).json()
    response = promote(api, pending, "base")
    assert response.status_code == 409
    assert "pending" in response.json()["detail"]
    start_job(api.state, job_id)
    assert promote(api, pending, "base").status_code == 409

    base_only = finished_job(api, variants=("base",))
    response = promote(api, base_only, "icl")
    assert response.status_code == 409
    assert "no completed icl evaluation" in response.json()["detail"]
    bad = api.client.post(
        PROMOTIONS,
        json={"job_id": base_only["id"], "candidate": "nope", "variant": "base"},
        headers=api.headers("operator"),
    )
    assert bad.status_code == 404
    assert promote(api, base_only, "best").status_code == 422


def test_promote_checks_role_workload_and_scope(api: Api) -> None:
    job = finished_job(api)
    assert promote(api, job, "base", who="viewer").status_code == 403
    other = api.client.post(
        "/api/workloads/aiva/other/promotions",
        json={"job_id": job["id"], "candidate": job["candidates"][0]["name"], "variant": "base"},
        headers=api.headers("operator"),
    )
    assert other.status_code == 422
    assert "not aiva/other" in other.json()["detail"]
    assert promote(api, job, "base", who="acme").status_code == 404
    assert api.client.get(MODEL, headers=api.headers("acme")).status_code == 404
    assert api.client.get(PROMOTIONS, headers=api.headers("acme")).status_code == 404


def test_rollback_restores_the_previous_promotion(api: Api) -> None:
    job = finished_job(api)
    first = promote(api, job, "base").json()["current"]
    second = promote(api, job, "customized").json()["current"]
    assert api.client.get(MODEL, headers=api.headers("viewer")).json()["id"] == second["id"]
    assert (
        api.client.post(f"{PROMOTIONS}/rollback", headers=api.headers("viewer")).status_code == 403
    )

    out = api.client.post(f"{PROMOTIONS}/rollback", headers=api.headers("operator")).json()
    assert out["rolled_back"]["id"] == second["id"]
    assert out["rolled_back"]["rolled_back"] is True
    assert out["current"]["id"] == first["id"]
    assert api.client.get(MODEL, headers=api.headers("viewer")).json()["id"] == first["id"]

    history = api.client.get(PROMOTIONS, headers=api.headers("viewer")).json()["items"]
    assert [(p["id"], p["rolled_back"]) for p in history] == [
        (second["id"], True),
        (first["id"], False),
    ]
    last = api.client.post(f"{PROMOTIONS}/rollback", headers=api.headers("operator")).json()
    assert last["current"] is None
    assert api.client.get(MODEL, headers=api.headers("viewer")).status_code == 404
    again = api.client.post(f"{PROMOTIONS}/rollback", headers=api.headers("operator"))
    assert again.status_code == 409
    assert "nothing to roll back" in again.json()["detail"]


def test_results_csv_matches_the_job(api: Api) -> None:
    job = finished_job(api)
    response = api.client.get(f"/api/jobs/{job['id']}/results.csv", headers=api.headers("viewer"))
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/csv")
    assert "attachment" in response.headers["content-disposition"]
    rows = list(csv.DictReader(io.StringIO(response.text)))
    candidate = job["candidates"][0]
    for evaluation in candidate["evaluations"]:
        score = evaluation["scores"]["function_name_accuracy"]
        row = next(
            r
            for r in rows
            if r["variant"] == evaluation["eval_type"] and r["metric"] == "function_name_accuracy"
        )
        assert row["candidate"] == candidate["name"]
        assert float(row["value"]) == score["value"]
        assert float(row["ci_low"]) == score["ci_low"]
        assert float(row["ci_high"]) == score["ci_high"]
        assert int(row["n"]) == score["n"]
    assert any(r["metric"] == "latency_p95_ms" for r in rows)
    other = api.client.get(f"/api/jobs/{job['id']}/results.csv", headers=api.headers("acme"))
    assert other.status_code == 404


def test_console_is_served_without_auth_and_holds_no_data(api: Api) -> None:
    index = api.client.get("/")
    assert index.status_code == 200
    assert '<script type="module" src="/console/app.js">' in index.text
    assert "default-src 'self'" in index.headers["content-security-policy"]
    for asset in ("app.js", "api.js", "charts.js", "job.js", "app.css"):
        response = api.client.get(f"/console/{asset}")
        assert response.status_code == 200, asset
    assert "javascript" in api.client.get("/console/app.js").headers["content-type"]
    assert api.client.get("/console/../settings.py").status_code == 404
    paths = api.client.get("/openapi.json").json()["paths"]
    assert "/" not in paths
    assert "/api/workloads/{client_id}/{workload_id}/model" in paths
