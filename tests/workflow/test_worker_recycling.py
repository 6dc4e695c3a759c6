"""Pool processes are recycled after a number of steps, and jobs do not notice.

A long-lived worker's pool process grows slowly (allocator fragmentation, caches: see
docs/benchmarks.md, soak). ``FLYWHEEL_WORKFLOW_MAX_TASKS_PER_CHILD`` bounds that by replacing
the process after N steps; this runs a whole job with N = 2 so the pool is replaced many
times mid-job, and checks the job ends as it would have without it.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from flywheel.domain.jobs import TERMINAL_STATUSES, JobStatus
from flywheel.settings import Settings
from flywheel.stores.base import LogStore, StateStore
from flywheel.workflow.celery_app import celery_config
from flywheel.workflow.options import WorkflowOptions
from tests.workflow.celery_support import REDIS_URL, Cluster, make_cluster, redis_available
from tests.workflow.fake_platform import FakePlatform
from tests.workflow.support import create_job, llm_config

pytestmark = [
    pytest.mark.skipif(not redis_available(), reason=f"no Redis at {REDIS_URL}"),
    pytest.mark.timeout(120),
]


@pytest.fixture
def cluster(data_dir: Path, state: StateStore, logs: LogStore) -> Iterator[Cluster]:
    yield from make_cluster(
        data_dir, state, redis_url=REDIS_URL, FLYWHEEL_WORKFLOW_MAX_TASKS_PER_CHILD=2
    )


def test_the_recycling_limits_reach_celery(tmp_path: Path) -> None:
    options = WorkflowOptions(max_tasks_per_child=50, max_memory_per_child_mb=300)
    config = celery_config(Settings(_env_file=None, data_dir=tmp_path), options)
    assert config["worker_max_tasks_per_child"] == 50
    assert config["worker_max_memory_per_child"] == 300 * 1024  # Celery counts KiB
    off = WorkflowOptions(max_tasks_per_child=0, max_memory_per_child_mb=0)
    config = celery_config(Settings(_env_file=None, data_dir=tmp_path), off)
    assert config["worker_max_tasks_per_child"] is None
    assert config["worker_max_memory_per_child"] is None


def test_a_job_completes_while_its_pool_processes_are_replaced(
    cluster: Cluster, state: StateStore, platform: FakePlatform
) -> None:
    platform.set_script(accuracy={"good": 1.0})
    job = create_job(state, llm_config(["good"]))
    worker = cluster.start_worker(beat=False, concurrency=1)
    cluster.launcher.enqueue(job.id)

    pool_pids: set[int] = set()
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        try:
            pool_pids |= {child.pid for child in psutil.Process(worker.pid).children()}
        except psutil.NoSuchProcess:
            break
        if state.get_job(job.id).status in TERMINAL_STATUSES:
            break
        time.sleep(0.02)
    done = cluster.wait_done(job.id)

    assert done.status is JobStatus.completed, done.error
    assert done.progress == 100.0
    # One pool process at a time, replaced every two steps: many were seen over the job.
    assert len(pool_pids) >= 3, pool_pids
    assert platform.live() == []
    assert state.get_job(job.id).state["claim"] is None
