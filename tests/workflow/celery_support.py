"""Real Celery workers in subprocesses for the workflow integration tests.

Each test gets its own queue/key prefix on the shared Redis (``REDIS_URL``, default
``redis://127.0.0.1:6379/0``) and deletes its keys afterwards; nothing else on that Redis is
touched. Without Redis the same tests can run on the embedded filesystem broker.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis

from flywheel.domain.jobs import TERMINAL_STATUSES, Job, JobId
from flywheel.settings import Settings
from flywheel.stores.base import StateStore
from flywheel.workflow.celery_app import create_celery_app
from flywheel.workflow.launcher import CeleryLauncher
from flywheel.workflow.options import WorkflowOptions
from tests.workflow.fake_platform import ENV_DB

REPO = Path(__file__).resolve().parents[2]
REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")


def redis_available() -> bool:
    """True when the test Redis answers."""
    try:
        return bool(redis.Redis.from_url(REDIS_URL, socket_timeout=2).ping())
    except redis.RedisError:
        return False


@dataclass
class Cluster:
    """Workers on one broker, and a launcher that talks to them."""

    data_dir: Path
    env: dict[str, str]
    options: WorkflowOptions
    launcher: CeleryLauncher
    state: StateStore
    workers: list[subprocess.Popen[bytes]] = field(default_factory=list)
    logs: list[Path] = field(default_factory=list)

    def start_worker(
        self, *, beat: bool = True, concurrency: int = 2, via_cli: bool = False
    ) -> subprocess.Popen[bytes]:
        """Start one worker process (its own process group, so it can be killed whole).

        ``via_cli`` starts it the way operators do, with ``flywheel worker``.
        """
        name = f"w{len(self.workers)}-{uuid.uuid4().hex[:6]}@%h"
        log_path = self.data_dir / f"worker{len(self.workers)}.log"
        if via_cli:
            args = [
                sys.executable, "-c", "from flywheel.cli import main; main()", "worker",
                "--concurrency", str(concurrency), "--beat" if beat else "--no-beat",
                "--hostname", name,
            ]  # fmt: skip
            return self._spawn(args, log_path)
        args = [
            sys.executable, "-m", "celery", "-A", "flywheel.workflow.celery_app", "worker",
            "-Q", f"{self.options.steps_queue},{self.options.long_queue}",
            "-c", str(concurrency), "-P", "prefork", "-n", name, "--loglevel", "WARNING",
            "--without-mingle", "--without-gossip", "--without-heartbeat",
        ]  # fmt: skip
        if beat:
            args.append("-B")
        return self._spawn(args, log_path)

    def _spawn(self, args: list[str], log_path: Path) -> subprocess.Popen[bytes]:
        with log_path.open("ab") as out:
            proc = subprocess.Popen(
                args, cwd=REPO, env=self.env, stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip
        self.workers.append(proc)
        self.logs.append(log_path)
        return proc

    def kill(self, proc: subprocess.Popen[bytes]) -> None:
        """SIGKILL a worker and its pool children (no shutdown hooks run)."""
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)

    def stop_all(self) -> None:
        """Stop every worker still running (killed: the test is over, its keys get deleted)."""
        for proc in self.workers:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
        for proc in self.workers:
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=5)

    def worker_output(self) -> str:
        """The tail of every worker's log (for failure messages)."""
        return "\n".join(p.read_text(errors="replace")[-3000:] for p in self.logs if p.exists())

    def wait_for(
        self, job_id: JobId, predicate: Callable[[Job], bool], timeout_s: float = 60
    ) -> Job:
        """Poll the state store until ``predicate(job)`` holds."""
        deadline = time.monotonic() + timeout_s
        job = self.state.get_job(job_id)
        while time.monotonic() < deadline:
            job = self.state.get_job(job_id)
            if predicate(job):
                return job
            time.sleep(0.05)
        raise AssertionError(
            f"job {job_id} stuck at {job.status.value}/{job.stage} after {timeout_s} s\n"
            f"state: {job.state}\nworkers:\n{self.worker_output()}"
        )

    def wait_done(self, job_id: JobId, timeout_s: float = 60) -> Job:
        """Wait until the job ends."""
        return self.wait_for(job_id, lambda j: j.status in TERMINAL_STATUSES, timeout_s)


def cluster_env(
    data_dir: Path, *, redis_url: str | None, prefix: str, **extra: Any
) -> dict[str, str]:
    """Environment of the worker processes."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FLYWHEEL_", "REDIS_URL"))}
    env.update(
        {
            # the repo first (the fake platform lives in tests/), then the caller's own path
            "PYTHONPATH": os.pathsep.join(
                [str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])]
            ),
            "FLYWHEEL_DATA_DIR": str(data_dir),
            "FLYWHEEL_PLATFORM": "tests.workflow.fake_platform:from_env",
            ENV_DB: str(data_dir / "fake_platform.db"),
            "FLYWHEEL_LOG_FORMAT": "console",
            "FLYWHEEL_LOG_LEVEL": "WARNING",
            "FLYWHEEL_WORKFLOW_QUEUE_PREFIX": prefix,
            "FLYWHEEL_WORKFLOW_POLL_INTERVAL_S": "0.05",
            "FLYWHEEL_WORKFLOW_CAPACITY_RETRY_S": "0.05",
            "FLYWHEEL_WORKFLOW_CLAIM_LEASE_S": "3",
            "FLYWHEEL_WORKFLOW_STALE_AFTER_S": "1.5",
            "FLYWHEEL_WORKFLOW_SWEEP_INTERVAL_S": "0.5",
            "FLYWHEEL_WORKFLOW_RETRY_BACKOFF_S": "0.05",
            "FLYWHEEL_WORKFLOW_VISIBILITY_TIMEOUT_S": "5",
            **{k: str(v) for k, v in extra.items()},
        }
    )
    if redis_url is not None:
        env["REDIS_URL"] = redis_url
    return env


def make_cluster(
    data_dir: Path, state: StateStore, *, redis_url: str | None, **extra: Any
) -> Iterator[Cluster]:
    """A cluster fixture body: yields, then stops workers and deletes the run's Redis keys."""
    prefix = f"fwtest-{uuid.uuid4().hex[:10]}."
    env = cluster_env(data_dir, redis_url=redis_url, prefix=prefix, **extra)
    options = WorkflowOptions(queue_prefix=prefix, visibility_timeout_s=5)
    settings = Settings(
        data_dir=data_dir, redis_url=redis_url, gpu_budget=int(extra.get("FLYWHEEL_GPU_BUDGET", 1))
    )
    app = create_celery_app(settings, options)
    cluster = Cluster(
        data_dir=data_dir,
        env=env,
        options=options,
        launcher=CeleryLauncher(app, state=state, options=options),
        state=state,
    )
    try:
        yield cluster
    finally:
        cluster.stop_all()
        if redis_url is not None:
            client = redis.Redis.from_url(redis_url)
            keys = list(client.scan_iter(match=f"{prefix}*", count=500))
            if keys:
                client.delete(*keys)
