"""Platform 5xx and timeout bursts while jobs run on real Celery workers.

Workers on the shared Redis (their own queue/key prefix), the SQLite state store, and
:class:`~tests.faults.fault_platform.FaultyPlatform` with fault windows armed on its
start/poll calls. Retries: 6, backoff 0.1 s doubling, so one action retries for ~6.3 s.

* A burst **shorter** than that budget (503s, slow timeouts, and answers lost after the
  platform acted) on every start and poll: the job completes as if nothing happened; each
  piece of platform work exists once (a lost start answer is found again, not redone).
* A burst **longer** than the budget on one candidate's deployment start and on one
  evaluation's polls: only that candidate and that work item fail, each with the platform's
  message; the rest of the job completes, and nothing is left running on the platform.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from flywheel.domain.jobs import JobStatus
from flywheel.stores.logs_sqlite import SqliteLogStore
from flywheel.stores.state_sqlite import SqliteStateStore
from flywheel.workflow import engine
from flywheel.workflow.capacity import RedisCapacity
from tests.faults.fault_platform import FaultyPlatform
from tests.faults.support import assert_invariants, describe
from tests.workflow.celery_support import REDIS_URL, Cluster, make_cluster, redis_available
from tests.workflow.fake_platform import ENV_DB
from tests.workflow.support import chat_logs, create_job, llm_config

pytestmark = [
    pytest.mark.skipif(not redis_available(), reason=f"no Redis at {REDIS_URL}"),
    pytest.mark.timeout(90),
]

RETRIES = 6
BACKOFF_S = 0.1  # 0.1 + 0.2 + ... + 3.2: an action keeps retrying for ~6.3 s


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    path = tmp_path / "data"
    path.mkdir()
    logs = SqliteLogStore.from_url(f"sqlite:///{path / 'logs.db'}")
    logs.write(chat_logs(40))
    logs.close()
    return path


@pytest.fixture
def state(data_dir: Path) -> Iterator[SqliteStateStore]:
    store = SqliteStateStore.from_url(f"sqlite:///{data_dir / 'state.db'}")
    yield store
    store.close()


@pytest.fixture
def platform(data_dir: Path) -> FaultyPlatform:
    fake = FaultyPlatform(data_dir / "fake_platform.db")
    fake.set_script(durations={"deployment": 0.5, "evaluation": 1.0, "customization": 1.5})
    return fake


@pytest.fixture
def cluster(data_dir: Path, state: SqliteStateStore) -> Iterator[Cluster]:
    yield from make_cluster(
        data_dir,
        state,
        redis_url=REDIS_URL,
        FLYWHEEL_GPU_BUDGET=2,
        FLYWHEEL_PLATFORM="tests.faults.fault_platform:from_env",
        FLYWHEEL_WORKFLOW_MAX_TRANSIENT_RETRIES=RETRIES,
        FLYWHEEL_WORKFLOW_RETRY_BACKOFF_S=BACKOFF_S,
        **{ENV_DB: str(data_dir / "fake_platform.db")},
    )


def _capacity(cluster: Cluster) -> RedisCapacity:
    return RedisCapacity.from_url(REDIS_URL, prefix=cluster.options.queue_prefix)


def test_a_burst_within_the_retry_budget_is_absorbed(
    cluster: Cluster, state: SqliteStateStore, platform: FaultyPlatform
) -> None:
    # Each burst starts with the first call it matches, so it hits running work whatever
    # the workers' start-up time. Deployment starts: 1 s of 503s, then 1 s of timeouts.
    platform.inject("start_deployment", seconds=1.0, mode="unavailable", group="deploy")
    platform.inject("start_deployment", seconds=1.0, mode="timeout", after_s=1.0, group="deploy")
    # Evaluation and customization starts: for 1 s the platform acts but the answer is lost.
    starts = ("start_evaluation", "start_customization")
    platform.inject(starts, seconds=1.0, mode="lost_response", group="starts")
    # Every poll: 1.5 s of 503s from the first poll on.
    polls = ("poll_deployment", "poll_evaluation", "poll_customization")
    platform.inject(polls, seconds=1.5, mode="unavailable", group="polls")
    job = create_job(state, llm_config(["a", "b"]))
    cluster.start_worker(concurrency=4)
    cluster.launcher.enqueue(job.id)

    done = cluster.wait_done(job.id, timeout_s=60)

    assert done.status is JobStatus.completed, describe(done, cluster.worker_output())
    hits = platform.fault_hits()
    assert {h["mode"] for h in hits} == {"unavailable", "timeout", "lost_response"}, hits
    assert {h["op"] for h in hits} >= {"start_deployment", "poll_deployment", "start_evaluation"}
    # Lost start answers were retried and found the same work (starts > 1, one row each).
    restarted = [w for w in platform.ledger() if w["job_id"] == job.id and w["starts"] > 1]
    assert restarted, "no start was retried after a lost answer"
    for name, cand in done.state["candidates"].items():
        assert cand["status"] == engine.COMPLETED, (name, cand["error"])
        for item, work in cand["work"].items():
            assert work["status"] == engine.W_COMPLETED, (name, item, work["error"])
    assert not any(done.state.get("retries", {}).values()), done.state["retries"]
    assert_invariants(done, state=state, platform=platform, capacity=_capacity(cluster))


def test_a_burst_beyond_the_budget_fails_only_the_work_it_hits(
    cluster: Cluster, state: SqliteStateStore, platform: FaultyPlatform
) -> None:
    # Candidate b's deployment cannot be started (503) and a's icl evaluation cannot be
    # polled (timeouts) for far longer than the retry budget.
    platform.inject("start_deployment", seconds=120, mode="unavailable", candidate="b")
    platform.inject("poll_evaluation", seconds=120, mode="timeout", candidate="a", item="icl")
    job = create_job(state, llm_config(["a", "b"]))
    cluster.start_worker(concurrency=4)
    cluster.launcher.enqueue(job.id)

    done = cluster.wait_done(job.id, timeout_s=60)
    platform.clear_faults()

    assert done.status is JobStatus.completed, describe(done, cluster.worker_output())
    a, b = done.state["candidates"]["a"], done.state["candidates"]["b"]
    # b: the candidate failed with the platform's message, and never got a deployment.
    assert b["status"] == engine.FAILED
    assert f"gave up after {RETRIES} retries" in b["error"], b["error"]
    assert "start_deployment answered 503 Service Unavailable" in b["error"], b["error"]
    assert b["deployment"]["handle"] is None
    # a: only its icl evaluation failed (and was cancelled on the platform); the rest ran.
    assert a["status"] == engine.COMPLETED, a["error"]
    assert a["work"]["icl"]["status"] == engine.W_FAILED
    assert "poll_evaluation timed out" in a["work"]["icl"]["error"], a["work"]["icl"]
    assert a["work"]["base"]["status"] == engine.W_COMPLETED
    assert a["work"]["customized"]["status"] == engine.W_COMPLETED
    icl = next(w for w in platform.ledger() if w["job_id"] == job.id and w["item"] == "icl")
    assert icl["cancelled_at"] is not None, icl
    assert any("b" in w and "503" in w for w in done.warnings), done.warnings
    runs = {r.name: r for r in state.list_candidate_runs(job.id)}
    assert runs["b"].error == b["error"]
    assert_invariants(done, state=state, platform=platform, capacity=_capacity(cluster))


def test_lost_start_answers_beyond_the_budget_leave_no_deployment(
    cluster: Cluster, state: SqliteStateStore, platform: FaultyPlatform
) -> None:
    # Every start of b's deployment reaches the platform, which starts it, but the answer
    # never comes back (a timeout after the server acted), for longer than the budget.
    platform.inject("start_deployment", seconds=120, mode="lost_response", candidate="b")
    job = create_job(state, llm_config(["a", "b"], customize=False))
    cluster.start_worker(concurrency=4)
    cluster.launcher.enqueue(job.id)

    done = cluster.wait_done(job.id, timeout_s=60)
    platform.clear_faults()

    assert done.status is JobStatus.completed, describe(done, cluster.worker_output())
    b = done.state["candidates"]["b"]
    assert b["status"] == engine.FAILED
    assert "start_deployment timed out" in b["error"], b["error"]
    assert b["deployment"]["handle"] is None
    # The platform started a deployment for b that the job never learned about; the job's
    # end found it by the job id it was tagged with, stopped it, and said so.
    leaked = [w for w in platform.live() if w["job_id"] == job.id]
    assert leaked == [], f"leaked platform work: {leaked}"
    assert any(
        w["kind"] == "deployment" and w["candidate"] == "b" and w["shut_down_at"] is not None
        for w in platform.ledger()
        if w["job_id"] == job.id
    ), platform.ledger()
    assert any("start answer was lost" in w and "deployment" in w for w in done.warnings), (
        done.warnings
    )
