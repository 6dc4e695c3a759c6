"""The MongoDB state store goes away for a while in the middle of a running job.

The whole stack, on loopback: a mongoeco MongoDB wire server keeping its data in a SQLite
file (so a restart loses nothing, like a real ``mongod``), the API (``create_app`` with the
Celery launcher, auth on), a real Celery worker on the shared Redis under its own prefix,
and the fake platform with lifecycles of seconds. While candidates are deploying, evaluating
and training, the MongoDB server is stopped for ``FLYWHEEL_FAULT_OUTAGE_S`` seconds (default:
the issue's 30 s), then started again on the same port.

During the outage the API answers 503 with ``Retry-After`` and a message naming the MongoDB
state store (job list, job detail, job creation, and ``/api/health``), and the worker
survives. The job makes no progress (nothing can be committed), then resumes by itself,
promptly: every ``flywheel.advance`` that met the outage retries itself with capped
exponential backoff (``FLYWHEEL_WORKFLOW_STORE_RETRY_*``: 1 s doubling up to 8 s by
default, 2 s here, for up to 120 s), so the next retry after the restart carries the job
on. The recovery sweep cannot help here: its ``stale_after_s`` is set beyond the test's
whole duration, so the job could not complete if the tasks gave up. It completes with every
piece of platform work started once and every deployment shut down, and no task logged that
it gave up.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from flywheel.api.app import create_app
from flywheel.domain.jobs import Job, JobId, JobStatus, Role
from flywheel.services.auth import create_key
from flywheel.settings import Settings
from flywheel.stores.base import StateStore
from flywheel.stores.logs_sqlite import SqliteLogStore
from flywheel.stores.registry import open_state_store
from flywheel.workflow import engine
from flywheel.workflow.capacity import RedisCapacity
from tests.api.conftest import TestClient
from tests.faults.fault_platform import FaultyPlatform
from tests.faults.support import assert_invariants, describe, outage_s, write_job_config
from tests.support.mongo_server import start_mongo_wire_server
from tests.workflow.celery_support import REDIS_URL, Cluster, make_cluster, redis_available
from tests.workflow.fake_platform import ENV_DB
from tests.workflow.support import CLIENT, WORKLOAD, chat_logs

OUTAGE_S = outage_s()
SWEEP_STALE_AFTER_S = 600
"""Far beyond the test's bound: the sweeper never re-enqueues the job within the test."""

pytestmark = [
    pytest.mark.skipif(not redis_available(), reason=f"no Redis at {REDIS_URL}"),
    pytest.mark.timeout(120 + OUTAGE_S),  # a bound, not a timing: generous for a loaded CI box
]

# A short server-selection timeout so each request during the outage fails in ~1 s, not 5.
_MONGO_OPTIONS = "&serverSelectionTimeoutMS=1000"


@dataclass
class MongoServer:
    """A mongoeco server on a SQLite file, stoppable and restartable on its port."""

    dir: Path
    url: str = ""
    port: int = 0
    _stop: Any = None

    def start(self) -> None:
        url, self._stop = start_mongo_wire_server(
            self.dir, port=self.port, sqlite=self.dir / "mongo.sqlite"
        )
        self.port = int(url.split("://", 1)[1].split("/", 1)[0].rsplit(":", 1)[1])
        self.url = url + _MONGO_OPTIONS

    def stop(self) -> None:
        if self._stop is not None:
            self._stop()
            self._stop = None


@pytest.fixture
def mongo(tmp_path: Path) -> Iterator[MongoServer]:
    try:
        server = MongoServer(tmp_path / "mongo")
        server.start()
    except RuntimeError as exc:
        pytest.fail(f"cannot start the mongoeco test server (run scripts/test): {exc}")
    yield server
    server.stop()


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    path = tmp_path / "data"
    path.mkdir()
    logs = SqliteLogStore.from_url(f"sqlite:///{path / 'logs.db'}")
    logs.write(chat_logs(40))
    logs.close()
    return path


@pytest.fixture
def state(mongo: MongoServer) -> Iterator[StateStore]:
    store = open_state_store(mongo.url)
    yield store
    store.close()


@pytest.fixture
def cluster(data_dir: Path, state: StateStore, mongo: MongoServer) -> Iterator[Cluster]:
    for cluster in make_cluster(
        data_dir,
        state,
        redis_url=REDIS_URL,
        MONGODB_URL=mongo.url,
        FLYWHEEL_GPU_BUDGET=2,
        FLYWHEEL_PLATFORM="tests.faults.fault_platform:from_env",
        FLYWHEEL_WORKFLOW_STALE_AFTER_S=SWEEP_STALE_AFTER_S,
        # The default schedule (1 s doubling up to 8 s, for 120 s) with a 2 s cap, so the job
        # goes on within 2 s of the restart and the test stays well inside its bound.
        FLYWHEEL_WORKFLOW_STORE_RETRY_MAX_BACKOFF_S=2,
        **{ENV_DB: str(data_dir / "fake_platform.db")},
    ):
        cluster.env.pop("ELASTICSEARCH_URL", None)  # logs: the SQLite file in the data dir
        yield cluster


def _running_work(job: Job) -> bool:
    return any(
        w["status"] == engine.W_RUNNING
        for c in (job.state.get("candidates") or {}).values()
        for w in c["work"].values()
    )


def _wait_healthy(client: TestClient, timeout_s: float = 15.0) -> None:
    deadline = time.monotonic() + timeout_s
    while (health := client.get("/api/health")).status_code != 200:
        assert time.monotonic() < deadline, f"still unhealthy after the restart: {health.text}"
        time.sleep(0.2)


def _assert_503_naming_mongodb(response: Any) -> None:
    assert response.status_code == 503, response.text
    assert response.headers.get("Retry-After"), response.headers
    detail = response.json()["detail"]
    assert "MongoDB state store is unreachable" in detail, detail
    assert "Topology" not in detail, "internal hosts and ports must not reach clients"


def test_state_store_outage_pauses_the_job_and_its_tasks_resume_it(
    tmp_path: Path, mongo: MongoServer, state: StateStore, data_dir: Path, cluster: Cluster
) -> None:
    platform = FaultyPlatform(data_dir / "fake_platform.db")
    platform.set_script(durations={"deployment": 1.0, "evaluation": 3.0, "customization": 5.0})
    settings = Settings(
        _env_file=None,
        data_dir=data_dir,
        mongodb_url=mongo.url,
        redis_url=REDIS_URL,
        config_path=write_job_config(tmp_path / "job-config.yaml", ["a", "b"]),
        auth_enabled=True,
    )
    key = create_key(state, role=Role.operator)[0]
    auth = {"Authorization": f"Bearer {key}"}
    app = create_app(settings, state_store=state, workflow=cluster.launcher)
    body = {"client_id": CLIENT, "workload_id": WORKLOAD, "job_type": "llm_job"}
    with TestClient(app) as client:
        worker = cluster.start_worker(concurrency=4)
        created = client.post("/api/jobs", json=body, headers=auth)
        assert created.status_code == 202, created.text
        job_id = JobId(created.json()["id"])
        before = cluster.wait_for(job_id, _running_work, timeout_s=30)

        mongo.stop()
        down_at = time.monotonic()
        _assert_503_naming_mongodb(client.get("/api/jobs", headers=auth))
        _assert_503_naming_mongodb(client.get(f"/api/jobs/{job_id}", headers=auth))
        _assert_503_naming_mongodb(client.post("/api/jobs", json=body, headers=auth))
        health = client.get("/api/health")
        assert health.status_code == 503, health.text
        checks = {c["name"]: c for c in health.json()["checks"]}
        assert checks["state_store"]["status"] == "down", checks
        assert "MongoDB state store is unreachable" in checks["state_store"]["detail"]
        assert checks["log_store"]["status"] == "ok", checks
        time.sleep(max(0.0, OUTAGE_S - (time.monotonic() - down_at)))
        assert worker.poll() is None, f"the worker died:\n{cluster.worker_output()}"
        mongo.start()

        _wait_healthy(client)
        # Only the tasks' own retries can carry it on (the sweeper would wait 600 s).
        done = cluster.wait_done(job_id, timeout_s=40)
        assert worker.poll() is None, f"the worker died:\n{cluster.worker_output()}"
        shown = client.get(f"/api/jobs/{job_id}", headers=auth)
        assert shown.status_code == 200, shown.text
        assert shown.json()["status"] == "completed"
        # No lost job, no phantom one: the job created before the outage, and only it.
        listed = client.get("/api/jobs", headers=auth).json()
        assert [j["id"] for j in listed["items"]] == [job_id], listed

    assert done.status is JobStatus.completed, describe(done, cluster.worker_output())
    assert done.version > before.version  # it made progress after the outage
    assert "state_store_outage_gave_up" not in cluster.worker_output()
    for name, cand in done.state["candidates"].items():
        assert cand["status"] == engine.COMPLETED, (name, cand["error"])
        for item, work in cand["work"].items():
            assert work["status"] == engine.W_COMPLETED, (name, item, work["error"])
    capacity = RedisCapacity.from_url(REDIS_URL, prefix=cluster.options.queue_prefix)
    assert_invariants(done, state=state, platform=platform, capacity=capacity)
