"""Auth: every route but health needs a key; roles nest; scoped keys see only their tenants."""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest
from fastapi.routing import APIRoute
from starlette.routing import BaseRoute, Route

from flywheel.api.app import create_app
from flywheel.domain.jobs import JobId, KeyId, Role
from flywheel.services.auth import FailedAuthLimiter, TooManyFailures, create_key, hash_key
from tests.api.conftest import Api, TestClient, make_settings

#: Health is open for probes; the API's own description (schema and docs pages) and the
#: console's page (static; its data comes from the authenticated API) hold no data.
OPEN_ROUTES = {"/api/health", "/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc", "/"}


def _walk(routes: Sequence[BaseRoute]) -> Iterator[Route]:
    for route in routes:
        included = getattr(route, "original_router", None)  # FastAPI's included-router node
        if included is not None:
            yield from _walk(included.routes)
        elif isinstance(route, Route):
            yield route


def _routes(api: Api) -> list[tuple[str, str]]:
    found: list[tuple[str, str]] = []
    for route in _walk(api.app.routes):
        assert route.methods is not None
        if route.path not in OPEN_ROUTES:
            path = re.sub(r"\{[^}]+\}", "x", route.path)
            found.extend((method, path) for method in sorted(route.methods - {"HEAD"}))
    return found


def test_route_walk_covers_the_openapi_paths(api: Api) -> None:
    walked = {r.path for r in _walk(api.app.routes) if isinstance(r, APIRoute)}
    assert walked == set(api.app.openapi()["paths"])


def test_every_route_but_health_needs_a_key(api: Api) -> None:
    api.app.state.services.limiter = FailedAuthLimiter(burst=1000)
    routes = _routes(api)
    assert len(routes) >= 12
    for method, path in routes:
        response = api.client.request(method, path)
        assert response.status_code == 401, (method, path)
        assert response.headers["www-authenticate"] == "Bearer"
        bad = api.client.request(method, path, headers={"Authorization": "Bearer fw_wrong"})
        assert bad.status_code == 401, (method, path)
    assert api.client.get("/api/health").status_code == 200


def test_roles_nest(api: Api) -> None:
    job = {"client_id": "acme", "workload_id": "router"}
    config = {"name": "c1", "job_type": "llm_job", "body": {}}
    assert api.client.post("/api/jobs", json=job, headers=api.headers("viewer")).status_code == 403
    assert api.client.get("/api/jobs", headers=api.headers("viewer")).status_code == 200
    assert api.client.get("/metrics", headers=api.headers("viewer")).status_code == 200
    assert (
        api.client.post("/api/jobs", json=job, headers=api.headers("operator")).status_code == 202
    )
    assert (
        api.client.post("/api/configs", json=config, headers=api.headers("operator")).status_code
        == 403
    )
    assert api.client.get("/api/keys", headers=api.headers("operator")).status_code == 403
    assert (
        api.client.post("/api/configs", json=config, headers=api.headers("admin")).status_code
        == 201
    )
    assert api.client.post("/api/jobs", json=job, headers=api.headers("admin")).status_code == 202


def test_keys_are_stored_hashed_and_can_be_revoked(api: Api) -> None:
    created = api.client.post(
        "/api/keys", json={"role": "viewer", "name": "ci"}, headers=api.headers("admin")
    )
    assert created.status_code == 201
    key = created.json()["key"]
    assert key.startswith("fw_")
    stored = api.state.find_key(hash_key(key))
    assert stored is not None
    assert key not in stored.model_dump_json()
    listed = api.client.get("/api/keys", headers=api.headers("admin")).json()["items"]
    assert all("key_hash" not in k and "key" not in k for k in listed)
    auth = {"Authorization": f"Bearer {key}"}
    assert api.client.get("/api/jobs", headers=auth).status_code == 200
    revoke = api.client.delete(f"/api/keys/{created.json()['id']}", headers=api.headers("admin"))
    assert revoke.status_code == 204
    assert api.client.get("/api/jobs", headers=auth).status_code == 401


def test_two_tenants_cannot_see_each_other(api: Api) -> None:
    acme, globex = api.headers("acme"), api.headers("globex")
    acme_job = api.client.post(
        "/api/jobs", json={"client_id": "acme", "workload_id": "router"}, headers=acme
    )
    assert acme_job.status_code == 202
    globex_job = api.client.post(
        "/api/jobs", json={"client_id": "globex", "workload_id": "router"}, headers=globex
    ).json()["id"]
    # Creating for the other tenant looks like an unknown client.
    cross = api.client.post(
        "/api/jobs", json={"client_id": "globex", "workload_id": "router"}, headers=acme
    )
    assert cross.status_code == 404
    listed = api.client.get("/api/jobs", headers=acme).json()["items"]
    assert [j["client_id"] for j in listed] == ["acme"]
    assert (
        api.client.get("/api/jobs", params={"client_id": "globex"}, headers=acme).json()["items"]
        == []
    )
    for method, path in (
        ("GET", f"/api/jobs/{globex_job}"),
        ("POST", f"/api/jobs/{globex_job}/cancel"),
        ("DELETE", f"/api/jobs/{globex_job}"),
    ):
        assert api.client.request(method, path, headers=acme).status_code == 404
    assert api.state.get_job(JobId(globex_job)).status == "pending"
    # Unscoped keys see both.
    everything = api.client.get("/api/jobs", headers=api.headers("viewer")).json()["items"]
    assert {j["client_id"] for j in everything} == {"acme", "globex"}


def _scoped_admin(api: Api, *client_ids: str) -> dict[str, str]:
    """Headers of a new admin key limited to ``client_ids``."""
    key = create_key(api.state, role=Role.admin, name="tenant-admin", client_ids=client_ids)[0]
    return {"Authorization": f"Bearer {key}"}


def _key_id(api: Api, who: str) -> KeyId:
    stored = api.state.find_key(hash_key(api.keys[who]))
    assert stored is not None
    return stored.id


def test_a_scoped_admin_cannot_create_a_wider_key(api: Api) -> None:
    """Regression: an acme-only admin minted an unscoped key that read globex's jobs."""
    acme_admin = _scoped_admin(api, "acme")
    globex_job = api.client.post(
        "/api/jobs",
        json={"client_id": "globex", "workload_id": "router"},
        headers=api.headers("globex"),
    ).json()["id"]
    before = len(api.state.list_keys())
    unscoped = api.client.post("/api/keys", json={"role": "viewer"}, headers=acme_admin)
    assert unscoped.status_code == 403
    assert "unscoped" in unscoped.json()["detail"]
    wider = api.client.post(
        "/api/keys", json={"role": "admin", "client_ids": ["acme", "globex"]}, headers=acme_admin
    )
    assert wider.status_code == 403
    assert "['globex']" in wider.json()["detail"]
    assert len(api.state.list_keys()) == before  # nothing was stored
    narrow = api.client.post(
        "/api/keys", json={"role": "viewer", "client_ids": ["acme"]}, headers=acme_admin
    )
    assert narrow.status_code == 201, narrow.text
    assert narrow.json()["client_ids"] == ["acme"]
    minted = {"Authorization": f"Bearer {narrow.json()['key']}"}
    assert api.client.get(f"/api/jobs/{globex_job}", headers=minted).status_code == 404
    # An unscoped admin still creates keys of any scope.
    anything = api.client.post("/api/keys", json={"role": "viewer"}, headers=api.headers("admin"))
    assert anything.status_code == 201


def test_a_scoped_admin_lists_and_revokes_only_keys_in_its_scope(api: Api) -> None:
    acme_admin = _scoped_admin(api, "acme")
    listed = api.client.get("/api/keys", headers=acme_admin).json()["items"]
    assert listed, "the acme keys are visible"
    assert all(k["client_ids"] == ["acme"] for k in listed)
    assert _key_id(api, "acme") in {k["id"] for k in listed}
    for outside in ("globex", "admin", "viewer"):  # another tenant's, and unscoped keys
        revoke = api.client.delete(f"/api/keys/{_key_id(api, outside)}", headers=acme_admin)
        assert revoke.status_code == 404, outside
        assert api.client.get("/api/jobs", headers=api.headers(outside)).status_code == 200
    assert api.client.delete("/api/keys/key_nope", headers=acme_admin).status_code == 404
    inside = api.client.delete(f"/api/keys/{_key_id(api, 'acme')}", headers=acme_admin)
    assert inside.status_code == 204
    assert api.client.get("/api/jobs", headers=api.headers("acme")).status_code == 401
    # Unscoped admins see every key, whatever its scope.
    every = api.client.get("/api/keys", headers=api.headers("admin")).json()["items"]
    assert {_key_id(api, "globex"), _key_id(api, "viewer")} <= {k["id"] for k in every}


def test_failed_auth_is_rate_limited_per_address(api: Api) -> None:
    bad = {"Authorization": "Bearer fw_guess"}
    codes = [api.client.get("/api/jobs", headers=bad).status_code for _ in range(12)]
    assert codes[:10] == [401] * 10
    assert codes[10:] == [429, 429]
    locked = api.client.get("/api/jobs", headers=api.headers("admin"))
    assert locked.status_code == 429
    assert int(locked.headers["retry-after"]) >= 1


def test_limiter_refills(monkeypatch: pytest.MonkeyPatch) -> None:
    limiter = FailedAuthLimiter(burst=1, refill_s=0.01)
    limiter.record_failure("1.2.3.4")
    with pytest.raises(TooManyFailures):
        limiter.check("1.2.3.4")
    limiter.check("5.6.7.8")
    import time

    time.sleep(0.02)
    limiter.check("1.2.3.4")


def test_auth_disabled_admits_anyone(tmp_path: Path, api: Api) -> None:
    app = create_app(
        make_settings(tmp_path, auth_enabled=False), state_store=api.state, log_store=api.logs
    )
    with TestClient(app) as client:
        assert client.get("/api/jobs").status_code == 200
        assert client.get("/api/keys").status_code == 200


def test_a_scoped_admin_cannot_write_the_named_configs_every_tenant_shares(api: Api) -> None:
    """A tenant's admin could otherwise send another tenant's jobs to its own judge/webhook."""
    api.client.post(
        "/api/configs",
        json={"name": "prod", "job_type": "llm_job", "body": {}},
        headers=api.headers("admin"),
    ).raise_for_status()
    acme_admin = _scoped_admin(api, "acme")
    hook = {"notification": {"webhook_url": "http://acme.example/steal"}}
    attempts = {
        "create": api.client.post(
            "/api/configs",
            json={"name": "mine", "job_type": "llm_job", "body": hook},
            headers=acme_admin,
        ),
        "update": api.client.put(
            "/api/configs/prod", json={"body": hook, "expected_version": 1}, headers=acme_admin
        ),
        "delete": api.client.delete("/api/configs/prod", headers=acme_admin),
    }
    for what, response in attempts.items():
        assert response.status_code == 403, (what, response.text)
        assert "shared by every tenant" in response.json()["detail"]
    # Nothing changed, and the scoped admin still reads them like any viewer.
    shown = api.client.get("/api/configs/prod", headers=acme_admin)
    assert shown.status_code == 200
    assert shown.json()["version"] == 1
    assert shown.json()["body"] == {}
    assert api.client.get("/api/configs/mine", headers=api.headers("admin")).status_code == 404
