"""``flywheel serve`` for the benchmarks: the API as operators run it, on a free loopback port.

The soak and the orchestration benchmark drive the real HTTP API of a subprocess beside real
Celery workers (the tests' :class:`~tests.workflow.celery_support.Cluster`), so what they time
includes HTTP, auth and config resolution, not only the workflow.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
from tests.workflow.celery_support import REPO, Cluster
from tests.workflow.fake_platform import FakePlatform
from tests.workflow.support import chat_logs, llm_config

from flywheel.domain.jobs import JobType, NamedConfig, Role
from flywheel.services.auth import create_key
from flywheel.stores.logs_sqlite import SqliteLogStore
from flywheel.stores.state_sqlite import SqliteStateStore

START_TIMEOUT_S = 60.0


def prepare_service(
    data_dir: Path, *, candidates: list[str], gpus: int, config_name: str
) -> tuple[SqliteStateStore, dict[str, str]]:
    """What the API needs before the first job: 40 logged tool-calling records, the instant
    fake platform, a named ``llm_job`` config over ``candidates`` and an admin key.

    Returns the state store and the ``Authorization`` header of that key.
    """
    state = SqliteStateStore.from_url(f"sqlite:///{data_dir / 'state.db'}")
    logs = SqliteLogStore.from_url(f"sqlite:///{data_dir / 'logs.db'}")
    logs.write(chat_logs(40))
    logs.close()
    FakePlatform(data_dir / "fake_platform.db")  # instant lifecycles by default
    config = llm_config(candidates, gpus=gpus).model_dump(mode="json", exclude_defaults=True)
    state.create_config(
        NamedConfig(name=config_name, version=1, job_type=JobType.llm_job, body=config)
    )
    return state, {"Authorization": f"Bearer {create_key(state, role=Role.admin)[0]}"}


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def start_api(cluster: Cluster, port: int) -> subprocess.Popen[bytes]:
    """``flywheel serve --no-worker`` in its own process group, once ``/api/health`` answers.

    Its output goes to ``api.log`` in the cluster's data dir, which the errors name.
    """
    log = (cluster.data_dir / "api.log").open("ab")
    args = [
        sys.executable, "-c", "from flywheel.cli import main; main()", "serve",
        "--host", "127.0.0.1", "--port", str(port), "--no-worker",
    ]  # fmt: skip
    proc = subprocess.Popen(
        args, cwd=REPO, env=cluster.env, stdout=log, stderr=subprocess.STDOUT,
        start_new_session=True,
    )  # fmt: skip
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the API exited: see {cluster.data_dir / 'api.log'}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/api/health", timeout=2).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    stop_api(proc)
    raise RuntimeError(
        f"the API did not answer in {START_TIMEOUT_S:.0f} s: see {cluster.data_dir / 'api.log'}"
    )


def stop_api(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM the API's process group (a graceful uvicorn shutdown) and wait for it."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)


@contextlib.contextmanager
def served_api(cluster: Cluster) -> Iterator[str]:
    """The API for the ``with`` block; yields its base URL."""
    port = free_port()
    proc = start_api(cluster, port)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        stop_api(proc)
