"""/api/logs ingestion, /api/health, /metrics, and the error table's edge cases."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from flywheel.api.app import create_app
from flywheel.api.errors import HTTP_STATUS
from flywheel.api.middleware import BodySizeLimitMiddleware
from flywheel.cli.openapi import openapi_document
from flywheel.domain.logs import LogKind
from flywheel.errors import FlywheelError, StoreUnavailable
from flywheel.stores.base import StateStore
from tests.api.conftest import Api, TestClient, make_settings
from tests.fake_nmp import run_fake_nmp


def _record(client_id: str = "acme", workload_id: str = "w2", n: int = 0) -> dict[str, Any]:
    return {
        "client_id": client_id,
        "workload_id": workload_id,
        "timestamp": 1_735_689_600_000 + n,
        "request": {"model": "big", "messages": [{"role": "user", "content": f"q{n}"}]},
        "response": {"choices": [{"message": {"role": "assistant", "content": "a"}}]},
    }


def test_json_array_and_ndjson_are_ingested_with_per_record_errors(api: Api) -> None:
    op = api.headers("operator")
    body = [_record(n=1), {"client_id": "acme"}, _record(n=2)]
    report = api.client.post("/api/logs", json=body, headers=op).json()
    assert (report["accepted"], report["rejected"]) == (2, 1)
    assert report["errors"][0]["index"] == 1
    ndjson = b"\n".join(orjson.dumps(_record(n=i)) for i in range(3, 6))
    response = api.client.post(
        "/api/logs", content=ndjson, headers={**op, "Content-Type": "application/x-ndjson"}
    )
    assert response.json()["accepted"] == 3
    assert api.logs.count("acme", "w2", kind=LogKind.chat) == 5


def test_scoped_keys_cannot_write_other_tenants_logs(api: Api) -> None:
    body = [_record("acme", n=1), _record("globex", n=2)]
    report = api.client.post("/api/logs", json=body, headers=api.headers("acme")).json()
    assert (report["accepted"], report["rejected"], report["written"]) == (1, 1, 1)
    assert "globex" in report["errors"][0]["reason"]
    assert api.logs.count("globex", "w2") == 0


def test_oversized_bodies_are_413(tmp_path: Path, api: Api) -> None:
    settings = make_settings(tmp_path, max_request_bytes=100)
    app = create_app(settings, state_store=api.state, log_store=api.logs)
    with TestClient(app) as client:
        response = client.post("/api/logs", json=[_record()] * 5, headers=api.headers("operator"))
        assert response.status_code == 413
        assert "100-byte limit" in response.json()["detail"]


def _chunks(*parts: bytes) -> Iterator[bytes]:
    """A body httpx sends chunked, with no Content-Length (a generator has no known size)."""
    yield from parts


def test_a_chunked_log_body_over_the_limit_is_413(tmp_path: Path, api: Api) -> None:
    settings = make_settings(tmp_path, max_request_bytes=300)
    app = create_app(settings, state_store=api.state, log_store=api.logs)
    before = api.logs.count("acme", "w2")
    records = [orjson.dumps(_record(n=n)) for n in range(5)]
    with TestClient(app) as client:
        request = client.build_request(
            "POST",
            "/api/logs",
            content=_chunks(b"[", b",".join(records), b"]"),
            headers={**api.headers("operator"), "Content-Type": "application/json"},
        )
        assert "content-length" not in request.headers
        assert request.headers["transfer-encoding"] == "chunked"
        response = client.send(request)
        assert response.status_code == 413, response.text
        detail = response.json()["detail"]
        assert "300-byte limit" in detail
        assert "flywheel logs load" in detail
        assert "FLYWHEEL_MAX_REQUEST_BYTES" in detail
        assert response.headers["connection"] == "close"  # the rest of the body was not read
        small = client.post("/api/logs", json=[_record(n=9)], headers=api.headers("operator"))
        assert small.json()["accepted"] == 1
    assert api.logs.count("acme", "w2") == before + 1


def _body_operations() -> list[tuple[str, str]]:
    """(method, path) of every documented operation that takes a request body."""
    paths: dict[str, dict[str, dict[str, Any]]] = openapi_document()["paths"]
    return [
        (method.upper(), re.sub(r"\{[^}]+\}", "x", path))
        for path, ops in paths.items()
        for method, op in ops.items()
        if "requestBody" in op
    ]


def test_every_body_is_limited_and_the_413_is_documented(tmp_path: Path, api: Api) -> None:
    """Regression: only /api/logs had a limit; configs, jobs, keys, promotions took any size."""
    operations = _body_operations()
    assert {p for _, p in operations} >= {"/api/configs", "/api/jobs", "/api/keys", "/api/logs"}
    error_ref = {"$ref": "#/components/schemas/ErrorOut"}
    paths = openapi_document()["paths"]
    for path, ops in paths.items():
        for method, op in ops.items():
            if "requestBody" in op:
                schema = op["responses"]["413"]["content"]["application/json"]["schema"]
                assert schema == error_ref, (method, path)
    settings = make_settings(tmp_path, max_request_bytes=64)
    app = create_app(settings, state_store=api.state, log_store=api.logs)
    keys_before = len(api.state.list_keys())
    with TestClient(app) as client:
        for method, path in operations:
            for content in (b"{}" + b" " * 64, _chunks(b"{}", b" " * 64)):
                response = client.request(
                    method,
                    path,
                    content=content,
                    headers={**api.headers("admin"), "Content-Type": "application/json"},
                )
                assert response.status_code == 413, (method, path, response.text)
                assert "64-byte limit" in response.json()["detail"]
                assert response.headers["x-request-id"]
    assert len(api.state.list_keys()) == keys_before


def test_a_valid_job_over_the_limit_is_413_and_not_stored(tmp_path: Path, api: Api) -> None:
    settings = make_settings(tmp_path, max_request_bytes=200)
    app = create_app(settings, state_store=api.state, log_store=api.logs)
    job = orjson.dumps({"client_id": "acme", "workload_id": "router"})
    headers = {**api.headers("operator"), "Content-Type": "application/json"}
    with TestClient(app) as client:
        padded = client.post("/api/jobs", content=job + b" " * 200, headers=headers)  # valid JSON
        assert padded.status_code == 413
        assert "200-byte limit" in padded.json()["detail"]
        assert api.state.count_jobs() == 0
        assert client.post("/api/jobs", content=job, headers=headers).status_code == 202
    assert api.state.count_jobs() == 1


def test_a_handler_that_swallows_the_refusal_still_answers_413() -> None:
    """Whatever a handler makes of the refused read, the client gets the documented 413."""
    inner = FastAPI()

    @inner.post("/swallow")
    async def swallow(request: Request) -> JSONResponse:
        try:
            await request.body()
        except Exception:  # a careless handler
            return JSONResponse({"detail": "bad body"}, status_code=400)
        return JSONResponse({"read": True})

    app = BodySizeLimitMiddleware(inner, max_bytes=10)
    with TestClient(app) as client:
        response = client.post("/swallow", content=_chunks(b"0123456789", b"abc"))
        assert response.status_code == 413
        assert "10-byte limit" in response.json()["detail"]
        assert client.post("/swallow", content=_chunks(b"0123456789")).json() == {"read": True}


def test_viewers_cannot_ingest(api: Api) -> None:
    assert api.client.post("/api/logs", json=[], headers=api.headers("viewer")).status_code == 403


def test_health_reports_each_dependency(api: Api) -> None:
    response = api.client.get("/api/health")
    assert response.status_code == 200
    checks = {c["name"]: c for c in response.json()["checks"]}
    assert checks["state_store"]["status"] == "ok"
    assert checks["state_store"]["latency_ms"] >= 0
    assert checks["log_store"]["status"] == "ok"
    assert checks["broker"]["status"] == "embedded"
    assert checks["platform"]["status"] == "embedded"
    assert response.headers["x-request-id"]


class _DownStore:
    """A state store whose every call fails as an unreachable database would."""

    def __init__(self, real: StateStore) -> None:
        self._real = real
        self.down = False

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._real, name)
        if not callable(attr) or not self.down or name == "close":
            return attr

        def fail(*_args: Any, **_kwargs: Any) -> Any:
            raise StoreUnavailable("state store at sqlite:///x is unreachable")

        return fail


def test_an_unreachable_store_is_503_never_500(tmp_path: Path, api: Api) -> None:
    down = _DownStore(api.state)
    settings = make_settings(tmp_path, auth_enabled=False)
    app = create_app(settings, state_store=down, log_store=api.logs)
    with TestClient(app, raise_server_exceptions=False) as client:
        down.down = True
        health = client.get("/api/health")
        assert health.status_code == 503
        assert health.json()["status"] == "unavailable"
        listing = client.get("/api/jobs")
        assert listing.status_code == 503
        assert "unreachable" in listing.json()["detail"]
        assert listing.headers["retry-after"]


def test_unexpected_errors_are_a_generic_500(tmp_path: Path, api: Api) -> None:
    class Broken(_DownStore):
        def list_jobs(self, **_kwargs: Any) -> Any:
            raise RuntimeError("secret internals")

    settings = make_settings(tmp_path, auth_enabled=False)
    app = create_app(settings, state_store=Broken(api.state), log_store=api.logs)
    with TestClient(app, raise_server_exceptions=False) as client:
        response = client.get("/api/jobs")
        assert response.status_code == 500
        assert "secret" not in response.text


def test_every_error_class_has_a_status() -> None:
    # Every class of our hierarchy (flywheel.errors) has its own row in the one table.
    classes: list[type[FlywheelError]] = [
        c for c in FlywheelError.__subclasses__() if c.__module__ == "flywheel.errors"
    ]
    missing = [c.__name__ for c in classes if c not in HTTP_STATUS]
    assert missing == []
    assert all(400 <= status < 600 for status in HTTP_STATUS.values())


def test_metrics_count_jobs_and_latency(api: Api) -> None:
    api.client.post(
        "/api/jobs",
        json={"client_id": "acme", "workload_id": "router"},
        headers=api.headers("operator"),
    )
    text = api.client.get("/metrics", headers=api.headers("viewer")).text
    assert 'flywheel_jobs_created_total{job_type="llm_job"} 1.0' in text
    assert 'route="/api/jobs"' in text
    assert 'flywheel_jobs{status="pending"} 1.0' in text


def test_cors_allows_configured_origins(tmp_path: Path, api: Api) -> None:
    settings = make_settings(tmp_path, cors_origins=["https://console.example"])
    app = create_app(settings, state_store=api.state, log_store=api.logs)
    with TestClient(app) as client:
        response = client.options(
            "/api/jobs",
            headers={
                "Origin": "https://console.example",
                "Access-Control-Request-Method": "GET",
            },
        )
        assert response.headers["access-control-allow-origin"] == "https://console.example"


def test_health_pings_nmp_when_it_is_the_platform(
    tmp_path: Path, stores: tuple[StateStore, Any]
) -> None:
    """In NMP mode the probe reaches NMP with the token; NMP down is reported, health stays 200."""
    state, logs = stores
    with run_fake_nmp() as nmp:
        settings = make_settings(tmp_path, nmp_base_url=nmp.base_url, nmp_token="s3cret")
        app = create_app(settings, state_store=state, log_store=logs)
        with TestClient(app, raise_server_exceptions=False) as client:
            up = client.get("/api/health")
            assert up.status_code == 200
            platform = _check(up.json(), "platform")
            assert platform["status"] == "ok", platform
            assert platform["latency_ms"] is not None
            assert nmp.state.requested("GET", "/v1/namespaces")
            assert "Bearer s3cret" in nmp.state.authorizations
            nmp.state.inject(host="N", method="GET", path=r"^/v1/namespaces$", status=503)
            down = client.get("/api/health")
    assert down.status_code == 200  # the platform is never required
    assert _check(down.json(), "platform")["status"] == "down"
    assert "HTTP 503" in _check(down.json(), "platform")["detail"]


def _check(body: dict[str, Any], name: str) -> dict[str, Any]:
    checks: dict[str, dict[str, Any]] = {c["name"]: c for c in body["checks"]}
    return checks[name]
