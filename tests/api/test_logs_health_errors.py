"""/api/logs ingestion, /api/health, /metrics, and the error table's edge cases."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson

from flywheel.api.app import create_app
from flywheel.api.errors import HTTP_STATUS
from flywheel.domain.logs import LogKind
from flywheel.errors import FlywheelError, StoreUnavailable
from flywheel.stores.base import StateStore
from tests.api.conftest import Api, TestClient, make_settings


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
