"""Promotions, workloads, the caller endpoint, results CSV and the console's static files."""

from __future__ import annotations

import csv
import io
import threading
from typing import Any

from tests.api.conftest import Api
from tests.console.conftest import CLIENT, WORKLOAD
from tests.console.fixtures import CANDIDATE, Workflow

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


def finished_job(api: Api, workflow: Workflow) -> dict[str, Any]:
    """A job created through the API and run to its end by the real workflow."""
    job_id = create_job(api)
    done = workflow.run(job_id)
    assert done.status == "completed", done.error
    job: dict[str, Any] = api.client.get(
        f"/api/jobs/{job_id}", headers=api.headers("viewer")
    ).json()
    return job


def in_force(api: Api) -> str | None:
    """Id of the promotion in force, as a client reads it before changing it."""
    response = api.client.get(MODEL, headers=api.headers("viewer"))
    if response.status_code == 404:
        return None
    promotion_id: str = response.json()["id"]
    return promotion_id


def promote(
    api: Api, job: dict[str, Any], variant: str, who: str = "operator", **extra: Any
) -> Any:
    """Promote over what is in force now, unless ``expected_current`` is given."""
    candidate = job["candidates"][0]["name"]
    body = {"job_id": job["id"], "candidate": candidate, "variant": variant, **extra}
    body.setdefault("expected_current", in_force(api))
    return api.client.post(PROMOTIONS, json=body, headers=api.headers(who))


def rollback(api: Api, expected: str | None = None, who: str = "operator") -> Any:
    """Roll back what is in force now, unless ``expected`` is given."""
    body = {"expected_current": expected or in_force(api) or "none-in-force"}
    return api.client.post(f"{PROMOTIONS}/rollback", json=body, headers=api.headers(who))


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


def test_promote_records_evidence_and_serves_it_to_applications(
    api: Api, workflow: Workflow
) -> None:
    job = finished_job(api, workflow)
    response = promote(api, job, "customized", note="parity at a fraction of the cost")
    assert response.status_code == 201, response.text
    out = response.json()
    assert out["webhook"] is None  # none configured
    current = out["current"]
    assert current["webhook"] is None
    assert current["rollback_webhook"] is None
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


def test_promote_refuses_unfinished_jobs_and_missing_evaluations(
    api: Api, workflow: Workflow
) -> None:
    job_id = create_job(api)
    pending = api.client.get(f"/api/jobs/{job_id}", headers=api.headers("viewer")).json()
    response = promote(api, pending, "base")
    assert response.status_code == 409
    assert "pending" in response.json()["detail"]
    assert workflow.step(job_id).status == "running"
    response = promote(api, pending, "base")
    assert response.status_code == 409
    assert "running" in response.json()["detail"]

    # The platform fails the ICL evaluation: the job completes without an ICL score.
    workflow.platform.set_script(fail={f"{CANDIDATE}/evaluation/icl": "scripted failure"})
    job = finished_job(api, workflow)
    icl = next(e for e in job["candidates"][0]["evaluations"] if e["eval_type"] == "icl")
    assert icl["status"] == "failed"
    response = promote(api, job, "icl")
    assert response.status_code == 409
    assert "no completed icl evaluation" in response.json()["detail"]
    bad = api.client.post(
        PROMOTIONS,
        json={
            "job_id": job["id"],
            "candidate": "nope",
            "variant": "base",
            "expected_current": None,
        },
        headers=api.headers("operator"),
    )
    assert bad.status_code == 404
    assert promote(api, job, "best").status_code == 422


def test_promote_and_rollback_require_the_promotion_the_caller_saw(
    api: Api, workflow: Workflow
) -> None:
    job = finished_job(api, workflow)
    missing = api.client.post(
        PROMOTIONS,
        json={"job_id": job["id"], "candidate": CANDIDATE, "variant": "base"},
        headers=api.headers("operator"),
    )
    assert missing.status_code == 422
    assert "expected_current" in str(missing.json()["detail"])
    no_body = api.client.post(f"{PROMOTIONS}/rollback", headers=api.headers("operator"))
    assert no_body.status_code == 422


def test_a_stale_promotion_or_rollback_is_refused_with_409_naming_the_one_in_force(
    api: Api, workflow: Workflow
) -> None:
    job = finished_job(api, workflow)
    first = promote(api, job, "base").json()["current"]
    # Two operators looked at the same screen (first in force); one promotes first.
    second = promote(api, job, "customized", expected_current=first["id"]).json()["current"]

    late = promote(api, job, "icl", expected_current=first["id"])
    assert late.status_code == 409
    detail = late.json()["detail"]
    assert f"you saw promotion {first['id']}" in detail
    assert f"promotion {second['id']} is in force now ({second['model']}, customized" in detail
    assert f"retry with expected_current={second['id']!r}" in detail
    stale_rollback = rollback(api, expected=first["id"])
    assert stale_rollback.status_code == 409
    assert f"promotion {second['id']} is in force now" in stale_rollback.json()["detail"]
    blind = promote(api, job, "icl", expected_current=None)
    assert blind.status_code == 409
    assert "you saw no promotion" in blind.json()["detail"]
    assert in_force(api) == second["id"]
    history = api.client.get(PROMOTIONS, headers=api.headers("viewer")).json()["items"]
    assert [p["id"] for p in history] == [second["id"], first["id"]]


def test_concurrent_promotions_through_the_api_have_exactly_one_winner(
    api: Api, workflow: Workflow
) -> None:
    job = finished_job(api, workflow)
    contenders = 4
    start = threading.Barrier(contenders)
    statuses: list[int] = []

    def contend(variant: str) -> None:
        start.wait()
        statuses.append(promote(api, job, variant, expected_current=None).status_code)

    variants = ["base", "icl", "customized", "base"][:contenders]
    threads = [threading.Thread(target=contend, args=(v,)) for v in variants]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert sorted(statuses) == [201] + [409] * (contenders - 1)
    history = api.client.get(PROMOTIONS, headers=api.headers("viewer")).json()["items"]
    assert len(history) == 1
    assert in_force(api) == history[0]["id"]


def test_promote_checks_role_workload_and_scope(api: Api, workflow: Workflow) -> None:
    job = finished_job(api, workflow)
    assert promote(api, job, "base", who="viewer").status_code == 403
    other = api.client.post(
        "/api/workloads/aiva/other/promotions",
        json={
            "job_id": job["id"],
            "candidate": job["candidates"][0]["name"],
            "variant": "base",
            "expected_current": None,
        },
        headers=api.headers("operator"),
    )
    assert other.status_code == 422
    assert "not aiva/other" in other.json()["detail"]
    assert promote(api, job, "base", who="acme").status_code == 404
    assert api.client.get(MODEL, headers=api.headers("acme")).status_code == 404
    assert api.client.get(PROMOTIONS, headers=api.headers("acme")).status_code == 404


def test_rollback_restores_the_previous_promotion(api: Api, workflow: Workflow) -> None:
    job = finished_job(api, workflow)
    first = promote(api, job, "base").json()["current"]
    second = promote(api, job, "customized").json()["current"]
    assert in_force(api) == second["id"]
    assert rollback(api, who="viewer").status_code == 403

    out = rollback(api, expected=second["id"]).json()
    assert out["rolled_back"]["id"] == second["id"]
    assert out["rolled_back"]["rolled_back"] is True
    assert out["current"]["id"] == first["id"]
    assert in_force(api) == first["id"]

    history = api.client.get(PROMOTIONS, headers=api.headers("viewer")).json()["items"]
    assert [(p["id"], p["rolled_back"]) for p in history] == [
        (second["id"], True),
        (first["id"], False),
    ]
    last = rollback(api, expected=first["id"]).json()
    assert last["current"] is None
    assert api.client.get(MODEL, headers=api.headers("viewer")).status_code == 404
    again = rollback(api, expected=first["id"])
    assert again.status_code == 409
    assert "no model is promoted now" in again.json()["detail"]


def test_results_csv_matches_the_job(api: Api, workflow: Workflow) -> None:
    job = finished_job(api, workflow)
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
