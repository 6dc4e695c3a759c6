"""Redis restarts in the middle of a run: the run completes, no platform work is done twice.

Each test starts its **own** ``redis-server`` on a free loopback port (never the shared
Redis of the other tests), runs a job on real Celery workers with the fake platform, kills
that Redis (SIGKILL: a crash, not a clean shutdown) while candidates are deploying,
evaluating and customizing, and starts it again on the same port. The worker must survive
it (see :class:`~flywheel.workflow.celery_app.ResilientConsumer`) and reconnect.

* ``aof``: ``--appendonly yes --appendfsync always``, as production should run the broker.
  Queued and unacknowledged messages survive the restart; workers reconnect and go on.
* ``volatile``: ``--save "" --appendonly no``. Every queued message (and the GPU lease
  table) is gone after the restart; the sweep (beat, in the worker) finds the job stale and
  enqueues its next step again, and the claims keep the redone steps from starting any
  platform work a second time.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis

from flywheel.domain.jobs import JobStatus
from flywheel.stores.base import LogStore, StateStore
from flywheel.workflow import engine
from tests.workflow.celery_support import make_cluster
from tests.workflow.fake_platform import FakePlatform
from tests.workflow.support import create_job, llm_config

REDIS_SERVER = shutil.which("redis-server")

pytestmark = [
    pytest.mark.skipif(REDIS_SERVER is None, reason="redis-server is not installed"),
    pytest.mark.timeout(90),
]

MODES = {
    "aof": ["--appendonly", "yes", "--appendfsync", "always"],
    "volatile": ["--save", "", "--appendonly", "no"],
}


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class RedisServer:
    """A private ``redis-server`` that can be crashed and started again on its port."""

    workdir: Path
    port: int
    args: list[str]
    mode: str
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        assert REDIS_SERVER is not None
        log = (self.workdir / "redis.log").open("ab")
        self.proc = subprocess.Popen(
            [
                REDIS_SERVER, "--port", str(self.port), "--bind", "127.0.0.1",
                "--dir", str(self.workdir), "--protected-mode", "yes", "--daemonize", "no",
                *self.args,
            ],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
        log.close()
        client = redis.Redis.from_url(self.url, socket_timeout=1, socket_connect_timeout=1)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            try:
                if client.ping():
                    return
            except redis.RedisError:
                pass
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        raise AssertionError(f"redis-server on {self.port} did not start:\n{self.log()}")

    def crash(self) -> None:
        assert self.proc is not None
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.crash()

    def log(self) -> str:
        path = self.workdir / "redis.log"
        return path.read_text(errors="replace")[-3000:] if path.exists() else ""


@pytest.fixture(params=sorted(MODES))
def own_redis(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[RedisServer]:
    workdir = tmp_path / "redis"
    workdir.mkdir()
    server = RedisServer(
        workdir=workdir, port=_free_port(), args=MODES[request.param], mode=request.param
    )
    assert server.port != 6379
    server.start()
    try:
        yield server
    finally:
        server.stop()


#: A key set just before the crash: gone after a volatile restart, so nothing survived.
_SENTINEL = "fwtest-redis-restart-sentinel"


def _busy(job: object) -> bool:
    """Candidates are mid-flight: a deployment, evaluation or customization is running."""
    cands = getattr(job, "state", {}).get("candidates") or {}
    return any(w["status"] == engine.W_RUNNING for c in cands.values() for w in c["work"].values())


def test_redis_restart_mid_run_completes_the_job(
    own_redis: RedisServer,
    data_dir: Path,
    state: StateStore,
    logs: LogStore,
    platform: FakePlatform,
) -> None:
    platform.set_script(durations={"deployment": 0.3, "evaluation": 1.0, "customization": 2.0})
    clusters = make_cluster(data_dir, state, redis_url=own_redis.url, FLYWHEEL_GPU_BUDGET=2)
    cluster = next(clusters)
    try:
        job = create_job(state, llm_config(["a", "b"]))
        worker = cluster.start_worker(concurrency=2)
        cluster.launcher.enqueue(job.id)
        cluster.wait_for(job.id, _busy, timeout_s=30)

        client = redis.Redis.from_url(own_redis.url)
        assert client.dbsize() > 0  # queues, unacknowledged messages, GPU leases
        client.set(_SENTINEL, b"written before the crash")
        own_redis.crash()
        time.sleep(1.0)  # the workers see the broker gone
        assert state.get_job(job.id).status is JobStatus.running
        own_redis.start()
        if own_redis.mode == "volatile":
            # Everything in flight is lost: only the sweep can bring the job back. (Not
            # "dbsize() == 0": reconnecting workers re-declare their queues at once.)
            assert client.exists(_SENTINEL) == 0

        done = cluster.wait_done(job.id, timeout_s=60)
        assert done.status is JobStatus.completed, (done.error, cluster.worker_output())
        keys = [(w["kind"], w["candidate"], w["item"]) for w in platform.ledger()]
        assert len(keys) == len(set(keys)) == 1 + 2 * 5, "platform work started twice"
        assert sum(w["starts"] for w in platform.ledger()) == len(keys)
        assert all(w["cancelled_at"] is None for w in platform.ledger())
        assert platform.live() == []
        runs = state.list_candidate_runs(job.id)
        assert {r.status for r in runs} == {"completed"}
        assert all(w.get("error") is None for r in runs for w in r.evaluations)
        # The same worker reconnected: Celery's consumer did not die with the connection.
        assert worker.poll() is None, cluster.worker_output()
        assert "Unrecoverable error" not in cluster.worker_output()
    finally:
        clusters.close()
