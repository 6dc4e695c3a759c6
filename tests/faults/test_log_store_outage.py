"""The Elasticsearch log store is down when a job's dataset step runs.

The API (``create_app`` with the Celery launcher) and a real Celery worker on the shared
Redis, logs in a noida-db Elasticsearch server, state in SQLite, the fake platform. The job
is created while Elasticsearch is up; the server is stopped before any worker runs the
dataset step.

``FLYWHEEL_LOG_STORE_OUTAGE`` says what the dataset step does about it:

* ``fail`` (the default): the step retries it as a transient error
  (``FLYWHEEL_WORKFLOW_MAX_TRANSIENT_RETRIES`` times with exponential backoff from
  ``FLYWHEEL_WORKFLOW_RETRY_BACKOFF_S``), so an outage shorter than that budget is ridden
  out; a longer one ends the job ``failed`` with an error naming Elasticsearch. No platform
  work is started, no GPU lease is held, nothing is left pending.
* ``wait``: the step re-schedules itself with capped backoff (short steps, no sleeping in a
  task) and the job's stage says it waits for the log store, naming Elasticsearch, for as
  long as it takes: when the server is restarted (same port, same data) the job goes on by
  itself and completes. Beyond ``FLYWHEEL_LOG_STORE_WAIT_MAX_S`` it fails naming the store.

Meanwhile the API keeps serving reads (the state store is fine) and answers 503, naming
Elasticsearch, where it needs the log store (``/api/health``, job creation).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from flywheel.api.app import create_app
from flywheel.domain.jobs import Job, JobId, JobStatus
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
    """A noida-db Elasticsearch server that the test can stop and restart on its port."""

    def __init__(self, tmp: Path) -> None:
        self._tmp = tmp
        self.url, self._stop = start_es_server(tmp)
        self.port = int(self.url.rsplit(":", 1)[1].split("/", 1)[0])
        self.stopped = False

    def stop(self) -> None:
        if not self.stopped:
            self._stop()
            self.stopped = True

    def start(self) -> None:
        """Restart it (same port, same data), like a node coming back."""
        if self.stopped:
            url, self._stop = start_es_server(self._tmp, port=self.port)
            assert url == self.url, (url, self.url)
            self.stopped = False


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
def clusters(
    data_dir: Path, state: SqliteStateStore, es: EsServer
) -> Iterator[Callable[..., Cluster]]:
    """Makes the test's cluster, with extra worker settings (the outage mode)."""
    made: list[Iterator[Cluster]] = []

    def make(**extra: Any) -> Cluster:
        body = make_cluster(
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
            **extra,
        )
        made.append(body)
        cluster = next(body)
        cluster.env.pop("MONGODB_URL", None)  # state: the SQLite file in the data dir
        return cluster

    yield make
    for body in made:
        body.close()  # stops its workers, deletes its Redis keys


@pytest.fixture
def cluster(clusters: Callable[..., Cluster]) -> Cluster:
    """The default mode: FLYWHEEL_LOG_STORE_OUTAGE unset (fail)."""
    return clusters()


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


def _app(
    tmp_path: Path, es: EsServer, state: SqliteStateStore, data_dir: Path, cluster: Cluster
) -> Any:
    """The API on the cluster's launcher, with the logs seeded in Elasticsearch."""
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
    return create_app(settings, state_store=state, workflow=cluster.launcher)


def _create_job_then_stop_es(client: TestClient, es: EsServer) -> JobId:
    """Create a job while Elasticsearch is up, then stop it before any worker runs."""
    body = {"client_id": CLIENT, "workload_id": WORKLOAD, "job_type": "llm_job"}
    created = client.post("/api/jobs", json=body)
    assert created.status_code == 202, created.text
    es.stop()  # the dataset step will find it down
    return JobId(created.json()["id"])


def _waited(attempts: int) -> Callable[[Job], bool]:
    def check(job: Job) -> bool:
        wait = (job.state.get("datasets") or {}).get("log_store_wait") or {}
        return int(wait.get("attempts") or 0) >= attempts

    return check


def test_wait_mode_waits_for_the_log_store_and_resumes_when_it_is_back(
    tmp_path: Path,
    es: EsServer,
    state: SqliteStateStore,
    data_dir: Path,
    clusters: Callable[..., Cluster],
) -> None:
    platform = FaultyPlatform(data_dir / "fake_platform.db")
    cluster = clusters(
        FLYWHEEL_LOG_STORE_OUTAGE="wait",
        FLYWHEEL_LOG_STORE_WAIT_MAX_S=120,
        FLYWHEEL_WORKFLOW_LOG_STORE_WAIT_MAX_BACKOFF_S=1,
    )
    with TestClient(_app(tmp_path, es, state, data_dir, cluster)) as client:
        job_id = _create_job_then_stop_es(client, es)
        worker = cluster.start_worker(concurrency=2)
        # More attempts than the fail mode's whole retry budget, and still waiting.
        waiting = cluster.wait_for(job_id, _waited(RETRIES + 2), timeout_s=40)
        assert waiting.status is JobStatus.running, describe(waiting)
        shown = client.get(f"/api/jobs/{job_id}").json()
        assert shown["status"] == "running", shown
        assert shown["stage"].startswith("datasets: waiting for the log store (Elasticsearch at")
        assert es.url in shown["stage"], shown["stage"]
        assert [w for w in platform.ledger() if w["job_id"] == job_id] == []

        es.start()
        done = cluster.wait_done(job_id, timeout_s=60)
        assert worker.poll() is None, f"the worker died:\n{cluster.worker_output()}"
        assert client.get(f"/api/jobs/{job_id}").json()["status"] == "completed"

    assert done.status is JobStatus.completed, describe(done, cluster.worker_output())
    datasets = done.state["datasets"]
    assert "log_store_wait" not in datasets  # the wait is over
    assert datasets["log_store_waited_s"] > 0
    for name, cand in done.state["candidates"].items():
        assert cand["status"] == engine.COMPLETED, (name, cand["error"])
    capacity = RedisCapacity.from_url(REDIS_URL, prefix=cluster.options.queue_prefix)
    assert_invariants(done, state=state, platform=platform, capacity=capacity)


def test_wait_mode_fails_naming_the_store_past_the_longest_wait(
    tmp_path: Path,
    es: EsServer,
    state: SqliteStateStore,
    data_dir: Path,
    clusters: Callable[..., Cluster],
) -> None:
    platform = FaultyPlatform(data_dir / "fake_platform.db")
    cluster = clusters(
        FLYWHEEL_LOG_STORE_OUTAGE="wait",
        FLYWHEEL_LOG_STORE_WAIT_MAX_S=2,
        FLYWHEEL_WORKFLOW_LOG_STORE_WAIT_MAX_BACKOFF_S=0.5,
    )
    with TestClient(_app(tmp_path, es, state, data_dir, cluster)) as client:
        job_id = _create_job_then_stop_es(client, es)
        cluster.start_worker(concurrency=2)
        done = cluster.wait_done(job_id, timeout_s=60)

    assert done.status is JobStatus.failed, describe(done, cluster.worker_output())
    error = done.error or ""
    assert "datasets: the log store stayed unreachable for" in error, error
    assert "FLYWHEEL_LOG_STORE_WAIT_MAX_S=2" in error, error
    assert "Elasticsearch at" in error, error
    assert "gave up after" not in error, error  # the wait, not the transient retries, ended it
    capacity = RedisCapacity.from_url(REDIS_URL, prefix=cluster.options.queue_prefix)
    assert_invariants(done, state=state, platform=platform, capacity=capacity)
