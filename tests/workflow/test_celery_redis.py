"""Whole jobs on real Celery workers and the real Redis broker, with the fake platform.

Each test runs its own workers on its own queue/key prefix and cleans up its Redis keys.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest

from flywheel.domain.jobs import JobStatus, JobType
from flywheel.stores.base import LogStore, StateStore
from flywheel.workflow import engine
from tests.workflow.celery_support import REDIS_URL, Cluster, make_cluster, redis_available
from tests.workflow.fake_platform import FakePlatform
from tests.workflow.support import create_job, embedding_config, llm_config

pytestmark = [
    pytest.mark.skipif(not redis_available(), reason=f"no Redis at {REDIS_URL}"),
    pytest.mark.timeout(120),
]


@pytest.fixture
def cluster(data_dir: Path, state: StateStore, logs: LogStore) -> Iterator[Cluster]:
    yield from make_cluster(data_dir, state, redis_url=REDIS_URL, FLYWHEEL_GPU_BUDGET=2)


def _keys(platform: FakePlatform) -> list[tuple[str, str, str, str | None]]:
    return [(w["job_id"], w["kind"], w["candidate"], w["item"]) for w in platform.ledger()]


def test_llm_job_runs_to_completion(
    cluster: Cluster, state: StateStore, platform: FakePlatform
) -> None:
    platform.set_script(accuracy={"good": 1.0, "weak": 0.25})
    job = create_job(state, llm_config(["good", "weak"]))
    cluster.start_worker()
    cluster.launcher.enqueue(job.id)
    done = cluster.wait_done(job.id)

    assert done.status is JobStatus.completed, done.error
    assert done.stage == "completed"
    assert done.progress == 100.0
    assert done.started_at is not None
    assert done.finished_at is not None
    assert {d["role"] for d in done.datasets} >= {"eval", "train", "validation", "icl:good"}
    assert done.dataset_stats is not None
    rec = done.recommendation
    assert rec is not None
    assert rec["best"] is not None
    assert rec["best"].startswith("good/")
    assert {r["name"] for r in rec["rejected"]} == {"weak/base", "weak/icl", "weak/customized"}
    assert rec["timings"]["candidates"]["good"]["total_s"] is not None
    runs = {r.name: r for r in state.list_candidate_runs(job.id)}
    for run in runs.values():
        assert run.status == "completed"
        assert run.deployment["status"] == "shut_down"
        assert [e["eval_type"] for e in run.evaluations] == ["base", "icl", "customized"]
        assert all(e["status"] == "completed" for e in run.evaluations)
        assert run.customization is not None
        assert run.customization["status"] == "completed"
    base = runs["weak"].evaluations[0]["scores"]["function_name_accuracy"]
    assert base["value"] == pytest.approx(0.25)
    assert base["ci_low"] <= 0.25 <= base["ci_high"]
    # Exactly one piece of platform work per (candidate, kind, item); nothing left running.
    keys = _keys(platform)
    assert len(keys) == len(set(keys)) == 1 + 2 * 5
    assert platform.live() == []
    assert state.get_job(job.id).state["claim"] is None


def test_embedding_job_runs_to_completion(
    cluster: Cluster, state: StateStore, platform: FakePlatform
) -> None:
    job = create_job(state, embedding_config(["embedder"]), job_type=JobType.embedding_job)
    cluster.start_worker()
    cluster.launcher.enqueue(job.id)
    done = cluster.wait_done(job.id)

    assert done.status is JobStatus.completed, done.error
    run = state.list_candidate_runs(job.id)[0]
    assert [e["eval_type"] for e in run.evaluations] == ["base", "customized"]
    scores = run.evaluations[0]["scores"]
    assert set(scores) >= {"recall@1", "recall@5", "recall@10", "ndcg@10", "mrr@10"}
    assert scores["ndcg@10"]["value"] == pytest.approx(1.0)
    assert done.recommendation is not None
    assert done.recommendation["metric"] == "ndcg@10"
    assert sorted(k[1] for k in _keys(platform)) == [
        "customization", "datasets", "deployment", "evaluation", "evaluation",
    ]  # fmt: skip
    assert platform.live() == []


def _running(kind: str) -> Any:
    def check(job: Any) -> bool:
        cands = job.state.get("candidates") or {}
        if kind == "deployment":
            return any(c["deployment"]["status"] == "starting" for c in cands.values())
        items = ("customize",) if kind == "customization" else ("base", "icl")
        return any(
            c["work"][i]["status"] == engine.W_RUNNING for c in cands.values() for i in items
        )

    return check


@pytest.mark.parametrize("stage", ["deployment", "customization", "evaluation"])
def test_cancel_stops_platform_work(
    cluster: Cluster, state: StateStore, platform: FakePlatform, stage: str
) -> None:
    durations = {"deployment": 0.0, "evaluation": 0.0, "customization": 0.0, stage: 120.0}
    platform.set_script(durations=durations)
    job = create_job(state, llm_config(["a", "b"]))
    cluster.start_worker()
    cluster.launcher.enqueue(job.id)
    cluster.wait_for(job.id, _running(stage))
    cluster.launcher.cancel(job.id)
    done = cluster.wait_done(job.id)

    assert done.status is JobStatus.cancelled
    assert platform.live() == []
    stopped = {(s["kind"], s["candidate"], s["item"]) for s in done.state["stopped"]}
    for work in platform.ledger():
        if work["kind"] == "deployment":
            assert work["shut_down_at"] is not None
            assert ("deployment", work["candidate"], None) in stopped
        elif work["kind"] == "datasets":
            continue
        elif work["cancelled_at"] is not None:
            kind = "customization" if work["kind"] == "customization" else "evaluation"
            assert (kind, work["candidate"], work["item"]) in stopped
    assert any(
        k == stage or (stage == "customization" and k == "customization") for k, _, _ in stopped
    )
    assert {r.status for r in state.list_candidate_runs(job.id)} <= {"cancelled", "completed"}
    assert any("stopped on cancel" in w for w in done.warnings)


def test_gpu_budget_bounds_concurrent_deployments_across_jobs(
    cluster: Cluster, state: StateStore, platform: FakePlatform
) -> None:
    platform.set_script(durations={"deployment": 0.1, "evaluation": 0.2, "customization": 0.3})
    jobs = [create_job(state, llm_config(["a", "b", "c"], gpus=1)) for _ in range(2)]
    cluster.start_worker(concurrency=2)
    for job in jobs:
        cluster.launcher.enqueue(job.id)
    queued_seen = False
    for job in jobs:

        def seen(j: Any) -> bool:
            nonlocal queued_seen
            if any(
                c["status"] == engine.QUEUED for c in (j.state.get("candidates") or {}).values()
            ):
                queued_seen = True
            return j.status.value in ("completed", "failed", "cancelled")

        done = cluster.wait_for(job.id, seen, timeout_s=90)
        assert done.status is JobStatus.completed, done.error

    deployments = [w for w in platform.ledger() if w["kind"] == "deployment"]
    assert len(deployments) == 6
    events = sorted(
        [(w["started_at"], 1) for w in deployments]
        + [(w["shut_down_at"], -1) for w in deployments],
        key=lambda e: (e[0], e[1]),
    )
    level, peak = 0, 0
    for _, delta in events:
        level += delta
        peak = max(peak, level)
    assert peak == 2  # used the budget fully, never more
    assert queued_seen
    runs = [r for job in jobs for r in state.list_candidate_runs(job.id)]
    assert all(r.status == "completed" for r in runs)
    assert all(a <= b for a, b in pairwise(sorted(w["started_at"] for w in deployments)))


def test_killed_worker_costs_a_delay_not_the_job(
    cluster: Cluster, state: StateStore, platform: FakePlatform
) -> None:
    platform.set_script(durations={"deployment": 0.0, "evaluation": 0.3, "customization": 2.0})
    job = create_job(state, llm_config(["a", "b"]))
    first = cluster.start_worker()
    cluster.launcher.enqueue(job.id)
    cluster.wait_for(job.id, _running("customization"))
    cluster.kill(first)
    mid = state.get_job(job.id)
    assert mid.status is JobStatus.running

    cluster.start_worker()
    done = cluster.wait_done(job.id, timeout_s=90)
    assert done.status is JobStatus.completed, done.error
    keys = _keys(platform)
    assert len(keys) == len(set(keys)), "platform work started twice"
    # Nothing the job recorded was cancelled by a step that lost its claim.
    assert all(w["cancelled_at"] is None for w in platform.ledger())
    assert platform.live() == []


def test_delete_artifacts_removes_platform_work_after_the_job_is_gone(
    cluster: Cluster, state: StateStore, platform: FakePlatform, data_dir: Path
) -> None:
    job = create_job(state, llm_config(["a"], customize=False))
    cluster.start_worker()
    cluster.launcher.enqueue(job.id)
    assert cluster.wait_done(job.id).status is JobStatus.completed
    cluster.launcher.delete_artifacts(job.id)
    state.delete_job(job.id)  # what JobService.delete does right after
    deadline = time.monotonic() + 30
    expected = {w["id"] for w in platform.ledger() if w["kind"] in ("datasets", "evaluation")}
    while time.monotonic() < deadline:
        deleted = {w["id"] for w in platform.ledger() if w["deleted_at"] is not None}
        if expected <= deleted and not (data_dir / "jobs" / job.id).exists():
            break
        time.sleep(0.05)
    else:
        raise AssertionError(f"artifacts left: {platform.ledger()}\n{cluster.worker_output()}")
