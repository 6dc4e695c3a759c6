"""Shared pieces of the fault tests: the job configuration, the end-of-test invariants.

Every fault test ends with the same four checks (the issue's "no job stuck, no lost job, no
leaked platform resource, state consistent"), in :func:`assert_invariants`.
"""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path
from typing import Any

import yaml

from flywheel.domain.jobs import TERMINAL_STATUSES, Job
from flywheel.stores.base import StateStore
from flywheel.workflow import engine
from flywheel.workflow.capacity import RedisCapacity
from tests.faults.fault_platform import FaultyPlatform
from tests.workflow.support import llm_config

OUTAGE_ENV = "FLYWHEEL_FAULT_OUTAGE_S"
"""Seconds a store stays down (default: the issue's 30 s)."""


def outage_s(default: float = 30.0) -> float:
    """How long the state-store outage lasts (``FLYWHEEL_FAULT_OUTAGE_S`` overrides)."""
    return float(os.environ.get(OUTAGE_ENV, str(default)))


def write_job_config(path: Path, names: list[str]) -> Path:
    """A ``FLYWHEEL_CONFIG`` file whose candidates are ``names`` (1 GPU each, customized)."""
    config = llm_config(names).model_dump(mode="json", exclude_none=True)
    path.write_text(yaml.safe_dump(config))
    return path


def assert_invariants(
    job: Job,
    *,
    state: StateStore,
    platform: FaultyPlatform,
    capacity: RedisCapacity | None = None,
) -> None:
    """No job stuck, no lost job, no leaked platform resource, state consistent."""
    # Not stuck, not lost: the job ended and is still in the store with its candidates.
    assert job.status in TERMINAL_STATUSES, f"job stuck at {job.status.value}/{job.stage}"
    stored = state.get_job(job.id)
    assert stored.status is job.status
    st = stored.state
    # No leaked platform resource: every deployment shut down, no evaluation or training live.
    mine = [w for w in platform.ledger() if w["job_id"] == job.id]
    live = [w for w in platform.live() if w["job_id"] == job.id]
    assert live == [], f"platform work left running: {live}"
    for work in mine:
        if work["kind"] == "deployment":
            assert work["shut_down_at"] is not None, f"deployment not shut down: {work}"
    # Started once: one piece of platform work per natural key (retried starts deduplicated).
    keys = Counter((w["kind"], w["candidate"], w["item"]) for w in mine)
    assert all(n == 1 for n in keys.values()), f"platform work started twice: {keys}"
    # Every handle the platform handed out is recorded in the job (nothing orphaned).
    recorded = {h["id"] for *_, h in engine.iter_handles(st)}
    started = {w["id"] for w in mine}
    assert started <= recorded, f"platform work the job does not know: {started - recorded}"
    # State consistent: no claim left, every candidate ended, leases and retries cleared.
    assert st.get("claim") is None, st.get("claim")
    for name, cand in (st.get("candidates") or {}).items():
        assert cand["status"] in engine.CANDIDATE_ENDED, (name, cand["status"])
        assert not cand["lease"], f"{name} still holds a GPU lease"
        for item, work in cand["work"].items():
            assert work["status"] not in (engine.W_RUNNING, engine.W_WAITING), (name, item, work)
    runs = {r.name: r for r in state.list_candidate_runs(job.id)}
    for name, cand in (st.get("candidates") or {}).items():
        assert runs[name].status == cand["status"], (name, runs[name].status, cand["status"])
    if capacity is not None:
        held = {k: v for k, v in capacity.leases().items() if k.startswith(job.id)}
        assert held == {}, f"GPU leases not released: {held}"


def describe(job: Job, extra: Any = "") -> str:
    """A failure message with the job's whole story."""
    return f"{job.status.value}/{job.stage} error={job.error!r} warnings={job.warnings}\n{extra}"
