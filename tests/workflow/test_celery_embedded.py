"""The same task code on the embedded broker (kombu filesystem transport, no server)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from flywheel.domain.jobs import JobStatus
from flywheel.settings import Settings
from flywheel.stores.base import LogStore, StateStore
from flywheel.workflow.celery_app import celery_config, create_celery_app, ensure_broker_dirs
from flywheel.workflow.options import WorkflowOptions
from tests.workflow.celery_support import Cluster, make_cluster
from tests.workflow.fake_platform import FakePlatform
from tests.workflow.support import create_job, llm_config

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def cluster(data_dir: Path, state: StateStore, logs: LogStore) -> Iterator[Cluster]:
    yield from make_cluster(data_dir, state, redis_url=None, FLYWHEEL_GPU_BUDGET=2)


def test_without_redis_the_broker_is_the_filesystem(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    config = celery_config(settings, WorkflowOptions())
    assert config["broker_url"] == "flywheelfs://"
    assert not (tmp_path / "broker").exists()  # nothing is created at import or config time
    ensure_broker_dirs(create_celery_app(settings).conf)
    assert (tmp_path / "broker" / "messages").is_dir()
    assert config["task_acks_late"] is True
    assert "task_always_eager" not in config


def test_with_redis_the_broker_is_redis(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, redis_url="redis://127.0.0.1:6379/3")
    config = celery_config(settings, WorkflowOptions(queue_prefix="p."))
    assert config["broker_url"] == "redis://127.0.0.1:6379/3"
    assert config["broker_transport_options"]["global_keyprefix"] == "p."
    assert config["task_default_queue"] == "p.flywheel.steps"


def test_llm_job_completes_on_the_embedded_broker(
    cluster: Cluster, state: StateStore, platform: FakePlatform
) -> None:
    job = create_job(state, llm_config(["a"]))
    cluster.start_worker(via_cli=True)  # `flywheel worker`, with the sweep
    cluster.launcher.enqueue(job.id)
    done = cluster.wait_done(job.id, timeout_s=90)
    assert done.status is JobStatus.completed, done.error
    assert platform.live() == []
    keys = [(w["kind"], w["candidate"], w["item"]) for w in platform.ledger()]
    assert len(keys) == len(set(keys))


def test_killed_worker_is_recovered_by_the_sweep_on_the_embedded_broker(
    cluster: Cluster, state: StateStore, platform: FakePlatform
) -> None:
    # The filesystem broker cannot redeliver: only the sweep brings the job back.
    platform.set_script(durations={"deployment": 0.0, "evaluation": 0.2, "customization": 2.0})
    job = create_job(state, llm_config(["a"]))
    first = cluster.start_worker(via_cli=True)
    cluster.launcher.enqueue(job.id)
    cluster.wait_for(
        job.id,
        lambda j: (
            bool(j.state.get("candidates"))
            and j.state["candidates"]["a"]["work"]["customize"]["status"] == "running"
        ),
    )
    cluster.kill(first)
    cluster.start_worker(via_cli=True)
    done = cluster.wait_done(job.id, timeout_s=90)
    assert done.status is JobStatus.completed, done.error
    keys = [(w["kind"], w["candidate"], w["item"]) for w in platform.ledger()]
    assert len(keys) == len(set(keys))
    assert platform.live() == []
