"""``flywheel jobs|configs|keys|serve|openapi|demo`` over the in-process API."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import orjson
import pytest
from fastapi import FastAPI
from typer.testing import CliRunner

from flywheel.cli import configs as configs_cli
from flywheel.cli import jobs, keys, openapi, serve
from flywheel.cli.api_client import ApiClient, ApiError
from flywheel.cli.demo import serve_api
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


def _new_job(client: ApiClient) -> str:
    """Create a job through the API, as the CLI's user would; its id (the watch tests' subject)."""
    job_id: str = client.request(
        "POST", "/api/jobs", json={"client_id": "acme", "workload_id": "router"}
    )["id"]
    return job_id


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


def test_jobs_create_sends_every_split_override(api: Api) -> None:
    client = _client(api)
    args = ["create", "--client-id", "acme", "--workload-id", "router", "--json"]
    args += ["--eval-size", "6", "--val-ratio", "0.25", "--min-total-records", "12"]
    args += ["--limit", "40", "--random-seed", "9", "--no-parse-function-arguments"]
    args += ["--split-strategy", "time"]
    created = runner.invoke(jobs.app, args, obj=client)
    assert created.exit_code == 0, created.output
    split = api.state.get_job(JobId(orjson.loads(created.output)["id"])).config["data_split_config"]
    assert split["eval_size"] == 6
    assert split["val_ratio"] == 0.25
    assert split["min_total_records"] == 12
    assert split["limit"] == 40
    assert split["random_seed"] == 9
    assert split["parse_function_arguments"] is False
    assert split["split_strategy"] == "time"


def test_jobs_create_leaves_omitted_split_options_at_their_defaults(api: Api) -> None:
    client = _client(api)
    args = ["create", "--client-id", "acme", "--workload-id", "router", "--json"]
    created = runner.invoke(jobs.app, [*args, "--val-ratio", "0.3"], obj=client)
    assert created.exit_code == 0, created.output
    job = api.state.get_job(JobId(orjson.loads(created.output)["id"]))
    split = job.config["data_split_config"]
    assert split["val_ratio"] == 0.3
    assert (split["eval_size"], split["min_total_records"]) == (20, 50)
    refused = runner.invoke(jobs.app, [*args, "--val-ratio", "1.5"], obj=client)
    assert isinstance(refused.exception, ApiError)
    assert "val_ratio" in str(refused.exception)


def _complete_on_poll(api: Api, job_id: str, poll: int) -> list[int]:
    """Finish the job in the store just before GET number ``poll`` of it reaches the API."""
    polls: list[int] = []

    def on_request(request: httpx.Request) -> None:
        if request.method != "GET" or request.url.path != f"/api/jobs/{job_id}":
            return
        polls.append(len(polls) + 1)
        if len(polls) == poll:
            api.state.update_candidate_run(
                JobId(job_id),
                "smollm2-135m-instruct",
                {
                    "status": "completed",
                    "evaluations": [
                        {"eval_type": "base", "scores": {"function_name_accuracy": 0.5}}
                    ],
                },
            )
            api.state.update_job(JobId(job_id), {"status": JobStatus.completed, "progress": 100.0})

    api.client.event_hooks["request"].append(on_request)
    return polls


def test_jobs_watch_follows_a_running_job_until_it_completes(api: Api) -> None:
    client = _client(api)
    job_id = _new_job(client)
    api.state.update_job(JobId(job_id), {"status": JobStatus.running, "progress": 40.0})
    polls = _complete_on_poll(api, job_id, poll=3)
    result = runner.invoke(jobs.app, ["watch", job_id, "--interval", "0", "--json"], obj=client)
    assert result.exit_code == 0, result.output
    # Polls 1 and 2 saw it running, so watching went on; poll 3 saw it completed and stopped.
    assert polls == [1, 2, 3]
    final = orjson.loads(result.output[result.output.index("{") :])
    assert final["status"] == "completed"
    assert final["candidates"][0]["evaluations"][0]["scores"]["function_name_accuracy"] == 0.5


def test_jobs_watch_gives_up_at_its_timeout_on_a_running_job(api: Api) -> None:
    client = _client(api)
    job_id = _new_job(client)
    api.state.update_job(JobId(job_id), {"status": JobStatus.running, "progress": 40.0})
    polls = _complete_on_poll(api, job_id, poll=99)
    result = runner.invoke(
        jobs.app, ["watch", job_id, "--interval", "0", "--timeout", "0", "--json"], obj=client
    )
    assert result.exit_code == 0, result.output
    assert polls == [1]
    assert orjson.loads(result.output[result.output.index("{") :])["status"] == "running"


def test_jobs_watch_ends_with_a_results_table(api: Api) -> None:
    client = _client(api)
    job_id = _new_job(client)
    api.state.update_candidate_run(
        JobId(job_id),
        "smollm2-135m-instruct",
        {
            "status": "completed",
            "evaluations": [
                {
                    "eval_type": "base",
                    "scores": {
                        "function_name_accuracy": 0.75,
                        "per_tool": {"get_weather": {"n": 4}},
                        "confusion": [{"reference": "a", "predicted": "b", "count": 1}],
                    },
                }
            ],
        },
    )
    api.state.update_job(JobId(job_id), {"status": JobStatus.completed, "progress": 100.0})
    result = runner.invoke(jobs.app, ["watch", job_id, "--interval", "0"], obj=client)
    assert result.exit_code == 0, result.output
    assert "function_name_accuracy=0.750" in result.output
    # Breakdowns are laid out by the console and the CSV, not dumped into the table.
    assert "per_tool" not in result.output
    assert "confusion" not in result.output
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
    versions = runner.invoke(configs_cli.app, ["versions", "small", "--json"], obj=client)
    assert versions.exit_code == 0, versions.output
    bodies = [v["body"]["data_split_config"]["eval_size"] for v in orjson.loads(versions.output)]
    assert bodies == [30, 35]
    assert [v["version"] for v in orjson.loads(versions.output)] == [1, 2]
    table = runner.invoke(configs_cli.app, ["versions", "small"], obj=client)
    assert table.exit_code == 0, table.output
    assert "llm_job" in table.output
    missing = runner.invoke(configs_cli.app, ["versions", "nope"], obj=client)
    assert "HTTP 404" in str(missing.exception)
    deleted = runner.invoke(configs_cli.app, ["delete", "small", "--json"], obj=client)
    assert deleted.exit_code == 0, deleted.output
    assert orjson.loads(deleted.output) == {"name": "small", "deleted": True}
    gone = runner.invoke(configs_cli.app, ["show", "small"], obj=client)
    assert "HTTP 404" in str(gone.exception)
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


def _listening_addresses(port: int) -> set[str]:
    """Local addresses (hex, as the kernel writes them) of TCP sockets listening on ``port``."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            address, port_hex = local.split(":")
            if int(port_hex, 16) == port and state == "0A":  # 0A: LISTEN
                found.add(address)
    return found


def test_demo_serves_its_unauthenticated_api_on_loopback_only() -> None:
    app = FastAPI()

    @app.get("/ping")
    def ping() -> dict[str, str]:
        return {"pong": "yes"}

    with serve_api(app) as url:
        host, port = httpx.URL(url).host, httpx.URL(url).port
        assert host == "127.0.0.1"
        assert port is not None
        assert httpx.get(f"{url}/ping", timeout=5).json() == {"pong": "yes"}
        # 0100007F is 127.0.0.1; a wildcard bind would read 00000000 (or :: in tcp6).
        assert _listening_addresses(port) == {"0100007F"}
