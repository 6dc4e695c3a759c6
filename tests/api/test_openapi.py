"""The committed OpenAPI document is current and documents what the API really answers.

The schema-wide fuzzing is in test_fuzz_openapi; the regressions it found are pinned here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from flywheel.cli.openapi import DEFAULT_PATH, openapi_document, render
from tests.api.conftest import Api

ROOT = Path(__file__).resolve().parents[2]


def test_committed_openapi_is_current() -> None:
    committed = (ROOT / DEFAULT_PATH).read_bytes()
    assert committed == render(openapi_document()), "run `flywheel openapi` and commit the file"


def test_request_schemas_carry_examples() -> None:
    schemas = openapi_document()["components"]["schemas"]
    for name in ("JobIn", "ConfigIn", "ConfigUpdate", "KeyIn"):
        assert schemas[name]["examples"], name


def _operations() -> list[tuple[str, str, dict[str, Any]]]:
    paths: dict[str, dict[str, dict[str, Any]]] = openapi_document()["paths"]
    return [(method, path, op) for path, ops in paths.items() for method, op in ops.items()]


def test_every_authenticated_operation_documents_422_and_429_as_the_error_body() -> None:
    """Regression: the fuzzer met undocumented 429s and FastAPI-shaped 422s on every route."""
    error_ref = {"$ref": "#/components/schemas/ErrorOut"}
    for method, path, op in _operations():
        if path == "/api/health":
            continue
        responses = op["responses"]
        assert "401" in responses, (method, path)
        for status in ("401", "422", "429"):
            assert responses[status]["content"]["application/json"]["schema"] == error_ref, (
                method,
                path,
                status,
            )
    assert "HTTPValidationError" not in openapi_document()["components"]["schemas"]


def test_request_validation_errors_answer_in_the_error_shape_naming_the_field(api: Api) -> None:
    response = api.client.post(
        "/api/jobs", json={"client_id": "bad id!", "workload_id": "w"}, headers=api.headers("admin")
    )
    assert response.status_code == 422
    body = response.json()
    assert "client_id" in body["detail"]
    assert body["errors"][0]["loc"] == ["body", "client_id"]
    assert set(body["errors"][0]) == {"loc", "msg", "type"}  # no echo of the input


def test_a_body_that_is_not_utf8_is_a_422_naming_the_encoding_not_a_400(api: Api) -> None:
    response = api.client.post(
        "/api/keys",
        content=b"\xff\xfe{",
        headers={**api.headers("admin"), "Content-Type": "application/json"},
    )
    assert response.status_code == 422, response.text
    assert "UTF-8" in response.json()["detail"]


def test_results_csv_errors_are_json_as_documented(api: Api) -> None:
    op = openapi_document()["paths"]["/api/jobs/{job_id}/results.csv"]["get"]
    assert set(op["responses"]["200"]["content"]) == {"text/csv"}
    assert set(op["responses"]["404"]["content"]) == {"application/json"}
    missing = api.client.get("/api/jobs/job_nope/results.csv", headers=api.headers("viewer"))
    assert missing.status_code == 404
    assert missing.headers["content-type"].startswith("application/json")


def test_the_failed_auth_limiter_answers_a_documented_429_on_metrics(api: Api) -> None:
    statuses = [
        api.client.get("/metrics", headers={"Authorization": "Bearer fw_wrong"}).status_code
        for _ in range(12)
    ]
    assert statuses[0] == 401
    assert statuses[-1] == 429
    refused = api.client.get("/metrics", headers=api.headers("viewer"))
    assert refused.status_code == 429
    assert int(refused.headers["Retry-After"]) >= 1
    assert "429" in openapi_document()["paths"]["/metrics"]["get"]["responses"]
