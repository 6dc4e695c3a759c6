"""Small entity builders for the state store contract tests."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from typing import Any

from flywheel.domain.jobs import ApiKey, CandidateRun, Job, JobId, KeyId, NamedConfig, Promotion

T0 = datetime(2025, 3, 1, 12, 0, 0, 123000, tzinfo=UTC)
_ids = itertools.count(1)


def at(seconds: float) -> datetime:
    """``T0`` plus ``seconds``: deterministic, distinct creation times."""
    return T0 + timedelta(seconds=seconds)


def job(**fields: Any) -> Job:
    """A pending job with a unique id; ``fields`` override anything."""
    values: dict[str, Any] = {
        "id": JobId(f"job-{next(_ids):05d}"),
        "client_id": "acme",
        "workload_id": "router",
    }
    return Job(**(values | fields))


def run(job_id: JobId, name: str, **fields: Any) -> CandidateRun:
    """A pending candidate run of ``job_id``."""
    return CandidateRun(job_id=job_id, name=name, **fields)


def config(name: str, body: dict[str, Any] | None = None, **fields: Any) -> NamedConfig:
    """A named config; stores assign the version, so ``version`` here is a placeholder."""
    values: dict[str, Any] = {"version": 1, "job_type": "llm_job", "body": body or {"a": 1}}
    return NamedConfig(name=name, **(values | fields))


def key(**fields: Any) -> ApiKey:
    """A viewer key with a unique id and hash."""
    n = next(_ids)
    values: dict[str, Any] = {"id": KeyId(f"key-{n}"), "key_hash": f"hash-{n}", "role": "viewer"}
    return ApiKey(**(values | fields))


def promotion(**fields: Any) -> Promotion:
    """A promotion of a base model for acme/router."""
    values: dict[str, Any] = {
        "id": f"promo-{next(_ids)}",
        "client_id": "acme",
        "workload_id": "router",
        "model": "small-model",
        "variant": "base",
    }
    return Promotion(**(values | fields))
