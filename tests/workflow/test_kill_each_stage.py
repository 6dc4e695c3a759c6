"""Kill -9 a worker in the middle of each stage: the job completes after a worker restarts.

One parametrised case per stage (and one embedding_job stage). Each starts a job on a real
Celery worker (Redis broker,
unique key prefix), holds the stage open with the fake platform's script (long durations,
or a ``hold`` gate for the steps that do no platform polling), waits until the persisted
state shows the stage in progress, SIGKILLs the worker's process group, releases the
stage, starts a fresh worker and checks that the job completed with every piece of
platform work started exactly once, nothing left running, every deployment shut down and
no GPU lease held.

Finalize is caught too: it is not a claiming step, so no claim marks it, but the job's
``stage`` reads ``finalizing`` and the fake's ``evaluation_outcome`` gate tells that the
scoring step is running inside the killed worker. The candidate's shutdown is caught the
same way, at the fake's ``shutdown_deployment`` gate.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from flywheel.domain.jobs import Job, JobStatus, JobType
from flywheel.stores.base import LogStore, StateStore
from flywheel.workflow import engine
from flywheel.workflow.capacity import RedisCapacity
from tests.workflow.celery_support import REDIS_URL, Cluster, make_cluster, redis_available
from tests.workflow.fake_platform import FakePlatform
from tests.workflow.support import create_job, embedding_config, llm_config

pytestmark = [
    pytest.mark.skipif(not redis_available(), reason=f"no Redis at {REDIS_URL}"),
    pytest.mark.timeout(120),
]

FAST = {"deployment": 0.0, "evaluation": 0.0, "customization": 0.0}
LONG = 120.0
CANDIDATE = "a"
# One candidate: datasets, its deployment, base/icl evaluations, customization, customized eval.
EXPECTED_WORK = {
    ("datasets", "", None),
    ("deployment", CANDIDATE, None),
    ("evaluation", CANDIDATE, "base"),
    ("evaluation", CANDIDATE, "icl"),
    ("customization", CANDIDATE, "customize"),
    ("evaluation", CANDIDATE, "customized"),
}
# An embedding_job has no ICL variant.
EXPECTED_EMBEDDING_WORK = EXPECTED_WORK - {("evaluation", CANDIDATE, "icl")}


@pytest.fixture
def cluster(data_dir: Path, state: StateStore, logs: LogStore) -> Iterator[Cluster]:
    # A build killed mid-way is redone once its claim (build_lease_s, 900 s by default)
    # expires, or when Redis redelivers its unacknowledged message. kombu only scans for
    # unacknowledged messages every unacked_restore_interval x unacked_restore_throttle
    # (10 x 10 s), so that redelivery comes ~100 s late however short the visibility
    # timeout: shrink the build lease instead, as the other leases are shrunk.
    yield from make_cluster(
        data_dir,
        state,
        redis_url=REDIS_URL,
        FLYWHEEL_GPU_BUDGET=1,
        FLYWHEEL_WORKFLOW_BUILD_LEASE_S=4,
    )


def _cand(job: Job) -> dict[str, Any]:
    return (job.state.get("candidates") or {}).get(CANDIDATE) or {}


def _work(job: Job, item: str) -> str | None:
    return ((_cand(job).get("work") or {}).get(item) or {}).get("status")


def _building(job: Job) -> bool:
    datasets = job.state.get("datasets") or {}
    claim = job.state.get("claim") or {}
    return (
        datasets.get("status") == "pending"
        and datasets.get("started_at") is not None
        and str(claim.get("key", "")).startswith(engine.Kind.build_datasets.value)
    )


def _deploying(job: Job) -> bool:
    return (_cand(job).get("deployment") or {}).get("status") == "starting"


def _running(item: str) -> Callable[[Job], bool]:
    return lambda job: _work(job, item) == engine.W_RUNNING


def _shutting_down(job: Job) -> bool:
    # Its shutdown step has not committed yet: every work item ended, the deployment is up.
    work = (_cand(job).get("work") or {}).values()
    ended = bool(work) and all(w["status"] in engine.WORK_ENDED for w in work)
    return ended and (_cand(job).get("deployment") or {}).get("status") == "ready"


def _finalizing(job: Job) -> bool:
    return job.status is JobStatus.running and job.stage == "finalizing"


def _reach_stage(cluster: Cluster, platform: FakePlatform, job: Job, stage: str) -> None:
    """Script the fake so that ``stage`` lasts, and wait until the job is in it."""
    if stage == "dataset_build":
        cluster.wait_for(job.id, _building)
        cluster.wait_for(job.id, lambda _: platform.held("build_datasets"))
    elif stage == "deployment":
        cluster.wait_for(job.id, _deploying)
    elif stage == "base_evaluation":
        cluster.wait_for(job.id, _running("base"))
    elif stage == "icl_evaluation":
        cluster.wait_for(job.id, _running("icl"))
    elif stage in ("customization", "embedding_customization"):
        cluster.wait_for(job.id, _running(engine.CUSTOMIZE))
    elif stage == "customized_evaluation":
        # Only the customized evaluation is long: base/icl end first, then evaluations
        # turn long and the customization is let finish.
        cluster.wait_for(job.id, _running(engine.CUSTOMIZE))
        cluster.wait_for(
            job.id, lambda j: _work(j, "base") == _work(j, "icl") == engine.W_COMPLETED
        )
        platform.set_script(durations={**FAST, "evaluation": LONG})
        cluster.wait_for(job.id, _running("customized"))
    elif stage == "shutdown":
        cluster.wait_for(job.id, _shutting_down)
        cluster.wait_for(job.id, lambda _: platform.held("shutdown_deployment"))
    elif stage == "finalize":
        cluster.wait_for(job.id, _finalizing)
        cluster.wait_for(job.id, lambda _: platform.held("evaluation_outcome"))
    else:  # pragma: no cover
        raise AssertionError(stage)


SCRIPTS: dict[str, dict[str, Any]] = {
    "dataset_build": {"hold": {"build_datasets": True}},
    "deployment": {"durations": {**FAST, "deployment": LONG}},
    "base_evaluation": {"durations": {**FAST, "evaluation": LONG}},
    "icl_evaluation": {"durations": {**FAST, "evaluation": LONG}},
    "customization": {"durations": {**FAST, "customization": LONG}},
    "customized_evaluation": {"durations": {**FAST, "customization": LONG}},
    "shutdown": {"hold": {"shutdown_deployment": True}},
    "finalize": {"hold": {"evaluation_outcome": True}},
    "embedding_customization": {"durations": {**FAST, "customization": LONG}},
}
EMBEDDING_STAGES = {"embedding_customization"}


@pytest.mark.parametrize("stage", list(SCRIPTS))
def test_kill_9_mid_stage_then_restart_completes_the_job(
    cluster: Cluster, state: StateStore, platform: FakePlatform, stage: str
) -> None:
    platform.set_script(**SCRIPTS[stage])
    embedding = stage in EMBEDDING_STAGES
    if embedding:
        job = create_job(state, embedding_config([CANDIDATE]), job_type=JobType.embedding_job)
    else:
        job = create_job(state, llm_config([CANDIDATE]))
    first = cluster.start_worker()
    cluster.launcher.enqueue(job.id)
    _reach_stage(cluster, platform, job, stage)

    cluster.kill(first)
    assert state.get_job(job.id).status is JobStatus.running
    # Let the stage end on the platform side; the fresh worker must pick the job up.
    platform.set_script(durations=FAST, hold={})
    cluster.start_worker()
    done = cluster.wait_done(job.id, timeout_s=60)

    assert done.status is JobStatus.completed, f"{done.error}\n{cluster.worker_output()}"
    ledger = platform.ledger()
    keys = [(w["kind"], w["candidate"], w["item"]) for w in ledger]
    expected = EXPECTED_EMBEDDING_WORK if embedding else EXPECTED_WORK
    assert sorted(keys, key=str) == sorted(expected, key=str), (
        f"platform work started twice or missing: {ledger}"
    )
    assert all(w["starts"] >= 1 for w in ledger)
    assert platform.live() == []
    assert all(w["shut_down_at"] is not None for w in ledger if w["kind"] == "deployment")
    leases = RedisCapacity.from_url(REDIS_URL, prefix=cluster.options.queue_prefix).leases()
    assert leases == {}, f"GPU leases still held: {leases}"
    assert done.state["claim"] is None
    run = state.list_candidate_runs(job.id)[0]
    assert run.status == "completed"
    assert run.deployment["status"] == "shut_down"
    assert not _cand(done)["lease"]
