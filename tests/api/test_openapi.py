"""The committed OpenAPI document is current; fuzzing jobs and configs finds no 500."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode

from flywheel.api.app import create_app
from flywheel.cli.openapi import DEFAULT_PATH, openapi_document, render
from flywheel.domain.jobs import JobType, NamedConfig, Role
from flywheel.services.auth import create_key
from flywheel.stores.registry import open_log_store, open_state_store
from tests.api.conftest import chat_log, make_settings

ROOT = Path(__file__).resolve().parents[2]


def test_committed_openapi_is_current() -> None:
    committed = (ROOT / DEFAULT_PATH).read_bytes()
    assert committed == render(openapi_document()), "run `flywheel openapi` and commit the file"


def test_request_schemas_carry_examples() -> None:
    schemas = openapi_document()["components"]["schemas"]
    for name in ("JobIn", "ConfigIn", "ConfigUpdate", "KeyIn"):
        assert schemas[name]["examples"], name


def _fuzz_app(tmp: Path, state_url: str) -> tuple[Any, dict[str, str], list[Any]]:
    state = open_state_store(state_url)
    logs = open_log_store(f"sqlite:///{tmp / 'logs.db'}")
    logs.write([chat_log("aiva", "tool-router"), chat_log("acme", "router")])
    state.create_config(
        NamedConfig(name="small-models", version=1, job_type=JobType.llm_job, body={})
    )
    admin = {"Authorization": f"Bearer {create_key(state, role=Role.admin)[0]}"}
    app = create_app(make_settings(tmp), state_store=state, log_store=logs)
    return app, admin, [state, logs]


@pytest.mark.parametrize("mode", ["positive", "negative"])
def test_fuzzing_jobs_and_configs_finds_no_500(tmp_path: Path, state_url: str, mode: str) -> None:
    """Schemathesis cases per operation, driven by Hypothesis (its pytest loader needs pytest<9).

    Runs on both state stores: the collections stay small (a few hundred cases), so even the
    mongoeco server takes seconds.
    """
    app, admin, stores = _fuzz_app(tmp_path, state_url)
    schema = schemathesis.openapi.from_asgi("/openapi.json", app).include(
        path_regex=r"^/api/(jobs|configs)"
    )
    failures: list[str] = []
    calls: list[int] = []
    operations = [result.ok() for result in schema.get_all_operations()]  # type: ignore[union-attr]
    assert len(operations) >= 10

    for operation in operations:

        @settings(
            max_examples=25,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        @given(case=operation.as_strategy(generation_mode=GenerationMode(mode)))
        def run(case: Any) -> None:
            response = case.call(headers=admin)
            calls.append(response.status_code)
            if response.status_code >= 500:
                failures.append(f"{case.method} {case.path}: {response.text[:200]}")

        run()
    for store in stores:
        store.close()
    assert failures == []
    assert len(calls) >= 10 * len(operations)  # the run really exercised each operation
    if mode == "positive":
        assert any(code in (200, 201, 202, 204) for code in calls)
