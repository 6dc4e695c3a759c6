"""Every line a worker step or an API request logs is JSON and carries its context.

Lines are read from the process's real stderr (file descriptor 2) after
:func:`flywheel.logging.configure_logging`, structlog's and the standard library's alike
(uvicorn's access log, Celery's task lines).
"""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import structlog
import uvicorn
from celery.signals import task_postrun, task_prerun

from flywheel.api.app import create_app
from flywheel.domain.jobs import JobStatus
from flywheel.logging import configure_logging
from flywheel.services.workflow_port import DeferredLauncher
from flywheel.settings import Settings
from flywheel.stores.base import LogStore, StateStore
from flywheel.workflow.celery_app import ADVANCE_TASK
from flywheel.workflow.celery_app import app as celery_app
from flywheel.workflow.steps import StepRunner
from tests.workflow.fake_platform import FakePlatform
from tests.workflow.support import create_job, drive, llm_config


@pytest.fixture
def json_logging() -> Iterator[None]:
    """Restores the logging setup that a test changes with :func:`_configure`."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    structlog.reset_defaults()
    structlog.contextvars.clear_contextvars()
    root.handlers, root.level = handlers, level


def _configure() -> None:
    # JSON logging as `flywheel serve` / `flywheel worker` set it up. Called inside the
    # test, where capfd's stderr is in place (a fixture would capture pytest's own).
    configure_logging(fmt="json", level="INFO")


def _lines(capfd: pytest.CaptureFixture[str]) -> list[dict[str, Any]]:
    out, err = capfd.readouterr()
    lines = [ln for ln in (out + err).splitlines() if ln.strip()]
    assert lines, "nothing was logged"
    parsed = []
    for line in lines:
        try:
            parsed.append(json.loads(line))
        except ValueError:
            pytest.fail(f"a log line is not JSON: {line!r}")
    return parsed


def test_every_line_of_a_worker_task_is_json_with_the_job_id(
    json_logging: None,
    runner: StepRunner,
    state: StateStore,
    platform: FakePlatform,
    capfd: pytest.CaptureFixture[str],
) -> None:
    import flywheel.workflow.tasks  # noqa: F401  (registers the tasks on the app)

    platform.set_script(accuracy={"good": 1.0})
    job = create_job(state, llm_config(["good"], customize=False))
    task = celery_app.tasks[ADVANCE_TASK]
    task_id = uuid.uuid4().hex
    _configure()
    capfd.readouterr()

    # What the worker does around a task: Celery's signals, our steps, Celery's own line.
    task_prerun.send(sender=task, task_id=task_id, task=task, args=(job.id,))
    done = drive(runner, job.id)
    logging.getLogger("celery.app.trace").info("Task %s[%s] succeeded", ADVANCE_TASK, task_id)
    task_postrun.send(sender=task, task_id=task_id, task=task, args=(job.id,))

    assert done.status is JobStatus.completed
    lines = _lines(capfd)
    assert {line["event"] for line in lines} >= {"datasets_built"}
    for line in lines:
        assert line["job_id"] == job.id, line
        assert line["task_id"] == task_id, line
        assert line["task"] == ADVANCE_TASK, line
        assert "level" in line, line
        assert "timestamp" in line, line
    step_lines = [line for line in lines if "action" in line]
    assert step_lines, "no line came from inside a workflow step"
    for line in step_lines:
        assert line["stage"], line
    built = next(line for line in step_lines if line["event"] == "datasets_built")
    assert built["stage"] == "datasets", built
    celery_line = lines[-1]
    assert celery_line["logger"] == "celery.app.trace"
    assert celery_line["event"] == f"Task {ADVANCE_TASK}[{task_id}] succeeded"

    # After the task: nothing of it sticks to the next line.
    structlog.get_logger("test").info("between_tasks")
    assert "job_id" not in _lines(capfd)[0]


def _free_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    return sock


class _Server(uvicorn.Server):
    def install_signal_handlers(self) -> None:  # a background thread must not own signals
        return None


def test_every_line_of_an_api_request_is_json_with_its_request_id(
    json_logging: None,
    tmp_path: Path,
    state: StateStore,
    logs: LogStore,
    capfd: pytest.CaptureFixture[str],
) -> None:
    _configure()
    settings = Settings(_env_file=None, data_dir=tmp_path, auth_enabled=True, config_path=None)
    app = create_app(settings, state_store=state, log_store=logs, workflow=DeferredLauncher())
    sock = _free_socket()
    # As `flywheel serve` runs it: log_config=None, so uvicorn's loggers reach ours.
    server = _Server(uvicorn.Config(app, log_config=None, lifespan="on", loop="asyncio"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while not server.started:
            assert thread.is_alive(), "uvicorn did not start"
            assert time.monotonic() < deadline, "uvicorn did not start in time"
            time.sleep(0.01)
        capfd.readouterr()
        base = f"http://127.0.0.1:{sock.getsockname()[1]}"
        ids = {"ok": "req-health-1", "refused": "req-refused-2"}
        with httpx.Client(base_url=base, timeout=10) as client:
            health = client.get("/api/health", headers={"X-Request-ID": ids["ok"]})
            refused = client.get(
                "/api/jobs",
                headers={"X-Request-ID": ids["refused"], "Authorization": "Bearer fw_wrong"},
            )
        assert health.headers["x-request-id"] == ids["ok"]
        assert refused.status_code == 401
        time.sleep(0.2)  # let the access log line of the last response be written
        lines = _lines(capfd)
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()

    # The test's own HTTP client logs through httpx in this process too: not the server's.
    lines = [line for line in lines if line.get("logger") != "httpx"]
    for line in lines:
        assert line.get("request_id") in ids.values(), line
    access = [line for line in lines if line.get("logger") == "uvicorn.access"]
    assert {line["request_id"] for line in access} == set(ids.values())
    failed = [line for line in lines if line["event"] == "request_failed"]
    assert [line["request_id"] for line in failed] == [ids["refused"]]
    assert failed[0]["status"] == 401
