"""The Elasticsearch log store is down when a job's dataset step runs.

The API (``create_app`` with the Celery launcher) and a real Celery worker on the shared
Redis, logs in a noida-db Elasticsearch server, state in SQLite, the fake platform. The job
is created while Elasticsearch is up; the server is stopped before any worker runs the
dataset step.

There is no setting to make the dataset step *wait* for the log store: a log store that
stays unreachable fails the job. The step retries it as a transient error
(``FLYWHEEL_WORKFLOW_MAX_TRANSIENT_RETRIES`` times with exponential backoff from
``FLYWHEEL_WORKFLOW_RETRY_BACKOFF_S``), so an outage shorter than that budget is ridden out;
a longer one ends the job ``failed`` with an error naming Elasticsearch. No platform work
is started, no GPU lease is held, nothing is left pending.

Meanwhile the API keeps serving reads (the state store is fine) and answers 503, naming
Elasticsearch, where it needs the log store (``/api/health``, job creation).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from flywheel.api.app import create_app
from flywheel.domain.jobs import JobId, JobStatus
from flywheel.settings import Settings
from flywheel.stores.logs_elastic import ElasticLogStore
from flywheel.stores.state_sqlite import SqliteStateStore
from flywheel.workflow import engine
from flywheel.workflow.capacity import RedisCapacity
from tests.api.conftest import TestClient
from tests.faults.fault_platform import FaultyPlatform
from tests.faults.support import assert_invariants, describe, write_job_config
from tests.support.es_server import start_es_server
from tests.workflow.celery_support import REDIS_URL, Cluster, make_cluster, redis_available
from tests.workflow.fake_platform import ENV_DB
from tests.workflow.support import CLIENT, WORKLOAD, chat_logs

pytestmark = [
    pytest.mark.skipif(not redis_available(), reason=f"no Redis at {REDIS_URL}"),
    pytest.mark.timeout(90),
]

RETRIES = 3
INDEX = "flywheel-faults"


class EsServer:
    """A noida-db Elasticsearch server that the test can stop."""

    def __init__(self, tmp: Path) -> None:
        self.url, self._stop = start_es_server(tmp)
        self.stopped = False

    def stop(self) -> None:
        if not self.stopped:
            self._stop()
            self.stopped = True


@pytest.fixture
def es(tmp_path: Path) -> Iterator[EsServer]:
    try:
        server = EsServer(tmp_path / "es")
    except RuntimeError as exc:
        pytest.fail(f"cannot start the noida-db Elasticsearch test server: {exc}")
    yield server
    server.stop()


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    path = tmp_path / "data"
    path.mkdir()
    return path


@pytest.fixture
def state(data_dir: Path) -> Iterator[SqliteStateStore]:
    store = SqliteStateStore.from_url(f"sqlite:///{data_dir / 'state.db'}")
    yield store
    store.close()


@pytest.fixture
def cluster(data_dir: Path, state: SqliteStateStore, es: EsServer) -> Iterator[Cluster]:
    for cluster in make_cluster(
        data_dir,
        state,
        redis_url=REDIS_URL,
        ELASTICSEARCH_URL=es.url,
        ES_COLLECTION_NAME=INDEX,
        FLYWHEEL_GPU_BUDGET=2,
        FLYWHEEL_PLATFORM="tests.faults.fault_platform:from_env",
        FLYWHEEL_WORKFLOW_MAX_TRANSIENT_RETRIES=RETRIES,
        FLYWHEEL_WORKFLOW_RETRY_BACKOFF_S=0.2,
        **{ENV_DB: str(data_dir / "fake_platform.db")},
    ):
        cluster.env.pop("MONGODB_URL", None)  # state: the SQLite file in the data dir
        yield cluster


def _assert_503_naming_elasticsearch(response: Any) -> None:
    assert response.status_code == 503, response.text
    assert "Elasticsearch at" in response.json()["detail"], response.text


def test_log_store_down_at_the_dataset_step_fails_the_job_naming_it(
    tmp_path: Path, es: EsServer, state: SqliteStateStore, data_dir: Path, cluster: Cluster
) -> None:
    platform = FaultyPlatform(data_dir / "fake_platform.db")
    logs = ElasticLogStore.from_url(es.url, index=INDEX)
    logs.write(chat_logs(40))
    logs.close()
    settings = Settings(
        _env_file=None,
        data_dir=data_dir,
        elasticsearch_url=es.url,
        es_collection_name=INDEX,
        redis_url=REDIS_URL,
        config_path=write_job_config(tmp_path / "job-config.yaml", ["a", "b"]),
        auth_enabled=False,
    )
    app = create_app(settings, state_store=state, workflow=cluster.launcher)
    body = {"client_id": CLIENT, "workload_id": WORKLOAD, "job_type": "llm_job"}
    with TestClient(app) as client:
        created = client.post("/api/jobs", json=body)
        assert created.status_code == 202, created.text
        job_id = JobId(created.json()["id"])

        es.stop()  # before any worker runs: the dataset step will find it down
        health = client.get("/api/health")
        assert health.status_code == 503, health.text
        checks = {c["name"]: c for c in health.json()["checks"]}
        assert checks["log_store"]["status"] == "down", checks
        assert "Elasticsearch at" in checks["log_store"]["detail"], checks
        assert checks["state_store"]["status"] == "ok", checks
        _assert_503_naming_elasticsearch(client.post("/api/jobs", json=body))
        assert client.get("/api/jobs").status_code == 200  # reads need only the state store

        worker = cluster.start_worker(concurrency=2)
        done = cluster.wait_done(job_id, timeout_s=60)
        assert worker.poll() is None, f"the worker died:\n{cluster.worker_output()}"
        shown = client.get(f"/api/jobs/{job_id}").json()
        assert shown["status"] == "failed", shown
        assert [j["id"] for j in client.get("/api/jobs").json()["items"]] == [job_id]

    assert done.status is JobStatus.failed, describe(done, cluster.worker_output())
    assert done.error is not None
    assert f"datasets: gave up after {RETRIES} retries: Elasticsearch at" in done.error, done.error
    assert done.state["datasets"]["status"] == "failed"
    for name, cand in done.state["candidates"].items():
        assert cand["status"] == engine.FAILED, (name, cand["status"])
        assert "Elasticsearch" in cand["error"], cand["error"]
    assert [w for w in platform.ledger() if w["job_id"] == job_id] == []  # nothing started
    capacity = RedisCapacity.from_url(REDIS_URL, prefix=cluster.options.queue_prefix)
    assert_invariants(done, state=state, platform=platform, capacity=capacity)
