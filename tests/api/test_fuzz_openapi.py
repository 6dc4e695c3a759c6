"""Schemathesis over every operation of the OpenAPI document: no 5xx, every response conforms.

Each case goes through ``case.call_and_validate``, so schemathesis' own checks judge it: no
server error, documented status code, documented content type and headers, body valid
against the response schema, schema-valid requests accepted (positive mode) and invalid ones
rejected (negative mode). Cases are driven by Hypothesis by hand (schemathesis' pytest loader
needs pytest<9). Four passes, each on both state stores:

- admin, positive and negative generation: everything is allowed, so the route code runs
  (negative generation covers the operations that have an input a request can violate, see
  ``_negatable``);
- a viewer key: reads answer, every write answers 403 (never 5xx);
- no key: every operation but ``/api/health`` answers 401.

Checks left out, with their reason:

- ``ignored_auth`` re-sends each successful case with a made-up key. The failed-auth limiter
  rightly counts those guesses, so after ten of them every call from the test client answers
  429 and the rest of the run would exercise nothing. The no-key pass below proves auth is
  enforced on every operation, and test_auth covers wrong keys.

``positive_data_acceptance`` also accepts 422 on the four operations whose schema-valid inputs
can still be semantically wrong (see ``_SEMANTIC_422``); the body of every such 422 is still
checked against the documented error schema. ``negative_data_rejection`` is off for
``POST /api/logs`` only, which answers 200 with per-record rejections by design (see
``_config``).
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.errors import FailureGroup
from schemathesis.specs.openapi.checks import ignored_auth

from flywheel.api.app import create_app
from flywheel.domain.jobs import JobType, NamedConfig, Role
from flywheel.services.auth import create_key
from flywheel.stores.base import LogStore, StateStore
from flywheel.stores.registry import open_log_store, open_state_store
from tests.api.conftest import TestClient, chat_log, make_settings

#: Operations whose schema-valid requests may still be refused with 422, and why.
_SEMANTIC_422 = {
    # a (client, workload) pair without logs: there is nothing to build datasets from
    "POST /api/jobs": "no logs for the pair",
    # an opaque cursor string that this API never issued
    "GET /api/jobs": "malformed page cursor",
    # a body the schema types as an object, but the job-type config model rejects
    "POST /api/configs": "invalid effective config",
    "PUT /api/configs/{name}": "invalid effective config",
}


def _config(headers: dict[str, str]) -> schemathesis.Config:
    """The run's configuration: the key to send, and the per-operation check settings.

    The key goes in the configuration rather than on each call so that schemathesis knows it
    is sent: negative cases then never count "Authorization missing" as the invalid part of
    a request that in fact carried a valid key.
    """
    return schemathesis.Config.from_dict(
        {
            "headers": headers,
            "operations": [
                {
                    "include-name": name,
                    "checks": {
                        "positive_data_acceptance": {
                            "expected-statuses": ["2xx", 401, 403, 404, 409, 422, 429]
                        }
                    },
                }
                for name in _SEMANTIC_422
            ]
            + [
                {
                    # Ingestion is record by record by design (docs/logs.md): a body that is not a
                    # JSON array is read as NDJSON and each unparseable line is reported rejected,
                    # with its reason, in a 200. A 422 would lose the valid records around it.
                    "include-name": "POST /api/logs",
                    "checks": {"negative_data_rejection": {"enabled": False}},
                }
            ],
        }
    )


#: Examples per operation and pass, sized so that all passes on both stores take ~2 minutes.
_PASSES = [
    pytest.param("admin", "positive", 15, id="admin-positive"),
    pytest.param("admin", "negative", 15, id="admin-negative"),
    pytest.param("viewer", "positive", 6, id="viewer"),
    pytest.param("anonymous", "positive", 3, id="no-key"),
]


class _Fixture:
    """The app under fuzzing, its stores and a key for each pass."""

    def __init__(self, tmp: Path, state_url: str) -> None:
        self.state: StateStore = open_state_store(state_url)
        self.logs: LogStore = open_log_store(f"sqlite:///{tmp / 'logs.db'}")
        self.logs.write([chat_log("aiva", "tool-router"), chat_log("acme", "router")])
        self.state.create_config(
            NamedConfig(name="small-models", version=1, job_type=JobType.llm_job, body={})
        )
        self.headers = {
            "admin": {"Authorization": f"Bearer {create_key(self.state, role=Role.admin)[0]}"},
            "viewer": {"Authorization": f"Bearer {create_key(self.state, role=Role.viewer)[0]}"},
            "anonymous": {},
        }
        self.app = create_app(make_settings(tmp), state_store=self.state, log_store=self.logs)

    def seed_job(self) -> None:
        """One real (pending) job, so lists and job reads return documents to validate."""
        with TestClient(self.app, raise_server_exceptions=False) as client:
            created = client.post(
                "/api/jobs",
                json={"client_id": "aiva", "workload_id": "tool-router"},
                headers=self.headers["admin"],
            )
        assert created.status_code == 202, created.text

    def close(self) -> None:
        self.state.close()
        self.logs.close()


def _negatable(operation: schemathesis.APIOperation) -> bool:
    """Whether the operation has an input that some request can violate.

    A body or a query parameter always can. A path parameter can only when its schema
    constrains it (a pattern, a length, a non-string type): every string is a valid free-form
    id, so for ``GET /api/jobs/{job_id}`` there is no invalid request to generate.
    """
    raw = operation.definition.raw
    if raw.get("requestBody"):
        return True
    for parameter in raw.get("parameters", []):
        schema = parameter.get("schema", {})
        if parameter.get("in") == "query" or set(schema) - {"type", "title", "description"}:
            return True
        if schema.get("type", "string") != "string":
            return True
    return False


@pytest.mark.parametrize(("who", "mode", "max_examples"), _PASSES)
def test_fuzzing_the_whole_schema_finds_no_5xx_and_no_schema_violation(
    tmp_path: Path, state_url: str, who: str, mode: str, max_examples: int
) -> None:
    fixture = _Fixture(tmp_path, state_url)
    try:
        _fuzz(fixture, who, mode, max_examples)
    finally:
        fixture.close()


def _fuzz(fixture: _Fixture, who: str, mode: str, max_examples: int) -> None:
    fixture.seed_job()
    schema = schemathesis.openapi.from_asgi(
        "/openapi.json", fixture.app, config=_config(fixture.headers[who])
    )
    operations = [result.ok() for result in schema.get_all_operations()]  # type: ignore[union-attr]
    labels = {operation.label for operation in operations}
    # The whole document: every resource, not a chosen subset.
    for expected in (
        "POST /api/logs",
        "POST /api/jobs",
        "GET /api/jobs/{job_id}/results.csv",
        "PUT /api/configs/{name}",
        "DELETE /api/keys/{key_id}",
        "POST /api/workloads/{client_id}/{workload_id}/promotions",
        "GET /api/auth/me",
        "GET /api/health",
        "GET /metrics",
    ):
        assert expected in labels, expected

    if mode == "negative":
        operations = [operation for operation in operations if _negatable(operation)]
        assert len(operations) >= 12
    failures: list[str] = []
    statuses: Counter[tuple[str, int]] = Counter()
    for operation in operations:

        @settings(
            max_examples=max_examples,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        @given(case=operation.as_strategy(generation_mode=GenerationMode(mode)))
        def run(case: Any) -> None:
            if who == "anonymous":  # schemathesis fills the declared bearer header itself
                case.headers = {
                    name: value
                    for name, value in (case.headers or {}).items()
                    if name.lower() != "authorization"
                }
            try:
                response = case.call_and_validate(excluded_checks=[ignored_auth])
            except FailureGroup as group:
                failures.extend(
                    f"{case.method} {case.formatted_path}: {failure.title}: {failure.message}"[
                        :1000
                    ]
                    for failure in group.exceptions
                )
                return
            statuses[(case.operation.label, response.status_code)] += 1

        run()

    assert failures == []
    seen = {label for label, _ in statuses}
    assert seen == {operation.label for operation in operations}  # each one really ran
    if who == "anonymous":
        assert {code for (label, code) in statuses if label != "GET /api/health"} == {401}
    if who == "viewer":
        writes = {code for (label, code) in statuses if not label.startswith("GET ")}
        assert writes == {403}
        assert any(code == 200 for (label, code) in statuses if label.startswith("GET "))
    if who == "admin" and mode == "positive":
        assert any(200 <= code < 300 for (label, code) in statuses if label.startswith("POST "))
