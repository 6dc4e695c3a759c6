"""``flywheel serve`` without REDIS_URL: the API, a worker beside it, jobs that really run.

The server runs as operators run it (a ``flywheel serve`` process); the model platform is the
workflow tests' fake (``FLYWHEEL_PLATFORM``), so this checks the wiring, not the models.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import yaml

from tests.e2e.conftest import worker_env
from tests.workflow.fake_platform import ENV_DB
from tests.workflow.support import CLIENT, WORKLOAD, chat_logs

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _children(pid: int) -> list[int]:
    """Pids whose parent is ``pid`` (Linux /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            found.append(int(entry.name))
    return found


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def test_serve_runs_jobs_with_its_embedded_worker_and_stops_it(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    config_path = tmp_path / "config.yaml"
    config_path.write_text(
        yaml.safe_dump(
            {
                "candidates": [{"name": "a", "gpus": 0}],
                "data_split_config": {"eval_size": 8, "min_total_records": 20},
                "evaluation_config": {"bootstrap_samples": 100},
            }
        )
    )
    port = _free_port()
    env = worker_env(
        data_dir,
        config_path,
        FLYWHEEL_AUTH_ENABLED="false",
        FLYWHEEL_PLATFORM="tests.workflow.fake_platform:from_env",
        **{ENV_DB: str(tmp_path / "fake_platform.db")},
    )
    log_path = tmp_path / "serve.log"
    with log_path.open("wb") as out:
        server = subprocess.Popen(
            [sys.executable, "-c", "from flywheel.cli import main; main()", "serve",
             "--port", str(port)],
            env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
            deadline = time.monotonic() + 60
            while True:
                try:
                    health = client.get("/api/health")
                    break
                except httpx.TransportError:
                    assert server.poll() is None, log_path.read_text()
                    assert time.monotonic() < deadline, log_path.read_text()
                    time.sleep(0.2)
            checks = {c["name"]: c for c in health.json()["checks"]}
            assert checks["broker"]["status"] == "embedded"
            assert checks["platform"]["detail"] == "local"

            workers = _children(server.pid)
            assert len(workers) == 1, "serve starts one embedded worker"
            logs = [r.model_dump(mode="json") for r in chat_logs(40)]
            assert client.post("/api/logs", json=logs).status_code == 200
            created = client.post("/api/jobs", json={"client_id": CLIENT, "workload_id": WORKLOAD})
            assert created.status_code == 202, created.text
            job_id = created.json()["id"]
            deadline = time.monotonic() + 90
            while (job := client.get(f"/api/jobs/{job_id}").json())["status"] not in (
                "completed",
                "failed",
            ):
                assert time.monotonic() < deadline, (job, log_path.read_text()[-3000:])
                time.sleep(0.3)
            assert job["status"] == "completed", job["error"]
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(timeout=40)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            raise
    assert server.returncode == 0, log_path.read_text()[-3000:]
    deadline = time.monotonic() + 10
    while any(_alive(pid) for pid in workers) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(_alive(pid) for pid in workers), "the embedded worker outlived serve"
