"""``flywheel jobs|configs|keys|serve|openapi`` over the in-process API."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
from typer.testing import CliRunner

from flywheel.cli import configs as configs_cli
from flywheel.cli import jobs, keys, openapi, serve
from flywheel.cli.api_client import ApiClient, ApiError
from flywheel.domain.jobs import JobId, JobStatus
from flywheel.errors import ConfigError
from flywheel.services.auth import hash_key
from flywheel.settings import get_settings
from flywheel.stores.registry import open_state_store
from tests.api.conftest import Api

runner = CliRunner()


def _client(api: Api, who: str = "admin") -> ApiClient:
    api.client.headers.update(api.headers(who))
    return ApiClient(api.client)


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Path]:
    monkeypatch.setenv("FLYWHEEL_DATA_DIR", str(tmp_path / "data"))
    get_settings.cache_clear()
    yield tmp_path / "data"
    get_settings.cache_clear()


def test_jobs_create_list_show_cancel_delete(api: Api) -> None:
    client = _client(api)
    created = runner.invoke(
        jobs.app,
        ["create", "--client-id", "acme", "--workload-id", "router", "--eval-size", "5", "--json"],
        obj=client,
    )
    assert created.exit_code == 0, created.output
    job_id = orjson.loads(created.output)["id"]
    assert api.state.get_job(JobId(job_id)).config["data_split_config"]["eval_size"] == 5
    listed = runner.invoke(jobs.app, ["list", "--json"], obj=client)
    assert [j["id"] for j in orjson.loads(listed.output)["items"]] == [job_id]
    table = runner.invoke(jobs.app, ["list"], obj=client)
    assert "acme" in table.output
    shown = runner.invoke(jobs.app, ["show", job_id], obj=client)
    assert "smollm2-135m-instruct" in shown.output
    cancelled = runner.invoke(jobs.app, ["cancel", job_id], obj=client)
    assert "cancelled" in cancelled.output
    deleted = runner.invoke(jobs.app, ["delete", job_id], obj=client)
    assert deleted.exit_code == 0


def test_jobs_watch_ends_with_a_results_table(api: Api) -> None:
    client = _client(api)
    job_id = client.request(
        "POST", "/api/jobs", json={"client_id": "acme", "workload_id": "router"}
    )["id"]
    api.state.update_candidate_run(
        JobId(job_id),
        "smollm2-135m-instruct",
        {
            "status": "completed",
            "evaluations": [{"eval_type": "base", "scores": {"function_name_accuracy": 0.75}}],
        },
    )
    api.state.update_job(JobId(job_id), {"status": JobStatus.completed, "progress": 100.0})
    result = runner.invoke(jobs.app, ["watch", job_id, "--interval", "0"], obj=client)
    assert result.exit_code == 0, result.output
    assert "function_name_accuracy=0.750" in result.output
    assert "100%" in result.output


def test_api_errors_become_messages(api: Api) -> None:
    result = runner.invoke(jobs.app, ["show", "job_missing"], obj=_client(api))
    assert isinstance(result.exception, ApiError)
    assert "HTTP 404" in str(result.exception)
    anonymous = ApiClient(api.client)
    api.client.headers.pop("Authorization", None)
    denied = runner.invoke(jobs.app, ["list"], obj=anonymous)
    assert "FLYWHEEL_API_KEY" in str(denied.exception)


def test_configs_round_trip(api: Api, tmp_path: Path) -> None:
    client = _client(api)
    body = tmp_path / "small.yaml"
    body.write_text("data_split_config:\n  eval_size: 30\n")
    created = runner.invoke(configs_cli.app, ["create", "small", "--file", str(body)], obj=client)
    assert created.exit_code == 0, created.output
    body.write_text("data_split_config:\n  eval_size: 35\n")
    updated = runner.invoke(configs_cli.app, ["update", "small", "-f", str(body)], obj=client)
    assert "v2" in updated.output
    shown = runner.invoke(configs_cli.app, ["show", "small", "--json"], obj=client)
    assert orjson.loads(shown.output)["body"]["data_split_config"]["eval_size"] == 35
    listed = runner.invoke(configs_cli.app, ["list"], obj=client)
    assert "small" in listed.output
    deleted = runner.invoke(configs_cli.app, ["delete", "small"], obj=client)
    assert deleted.exit_code == 0
    body.write_text("- not a mapping\n")
    bad = runner.invoke(configs_cli.app, ["create", "x", "--file", str(body)], obj=client)
    assert isinstance(bad.exception, ConfigError)


def test_keys_create_writes_a_hashed_key_to_the_state_store(env: Path) -> None:
    result = runner.invoke(
        keys.app, ["create", "--role", "operator", "--client-id", "acme", "--json"]
    )
    assert result.exit_code == 0, result.output
    out = orjson.loads(result.output)
    assert out["key"].startswith("fw_")
    store = open_state_store(get_settings().state_store_url)
    try:
        stored = store.find_key(hash_key(out["key"]))
    finally:
        store.close()
    assert stored is not None
    assert stored.client_ids == ["acme"]


def test_serve_refuses_a_public_bind_without_auth(
    env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FLYWHEEL_AUTH_ENABLED", "false")
    get_settings.cache_clear()
    result = runner.invoke(serve.app, ["--host", "0.0.0.0"])
    assert isinstance(result.exception, ConfigError)
    assert serve.is_loopback("127.0.0.1")
    assert serve.is_loopback("::1")
    assert not serve.is_loopback("0.0.0.0")


def test_openapi_check_and_write(tmp_path: Path) -> None:
    out = tmp_path / "openapi.json"
    assert runner.invoke(openapi.app, ["--out", str(out), "--check"]).exit_code == 1
    assert runner.invoke(openapi.app, ["--out", str(out)]).exit_code == 0
    assert runner.invoke(openapi.app, ["--out", str(out), "--check"]).exit_code == 0
