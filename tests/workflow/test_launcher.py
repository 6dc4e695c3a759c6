"""The launcher's contract with the API, without workers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from flywheel.domain.jobs import JobStatus
from flywheel.errors import PlatformUnavailable
from flywheel.settings import Settings
from flywheel.stores.base import StateStore
from flywheel.workflow.celery_app import ADVANCE_TASK, DELETE_ARTIFACTS_TASK
from flywheel.workflow.launcher import CeleryLauncher, create_launcher
from flywheel.workflow.options import WorkflowOptions
from tests.workflow.support import create_job, llm_config


class _App:
    """Records what would be sent."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, list[Any], str]] = []
        self.conf = type("Conf", (), {"broker_url": "redis://u:secret@host:6379/0"})()

    def send_task(self, name: str, *, args: list[Any], queue: str) -> None:
        self.sent.append((name, args, queue))


def test_enqueue_and_cancel_send_the_advance_step(state: StateStore) -> None:
    app = _App()
    launcher = CeleryLauncher(app, state=state, options=WorkflowOptions(queue_prefix="x."))
    job = create_job(state, llm_config(["a"]))
    launcher.enqueue(job.id)
    state.update_job(job.id, {"status": JobStatus.running})
    launcher.cancel(job.id)
    assert state.get_job(job.id).status is JobStatus.cancelling
    assert app.sent == [
        (ADVANCE_TASK, [job.id], "x.flywheel.steps"),
        (ADVANCE_TASK, [job.id], "x.flywheel.steps"),
    ]


def test_delete_artifacts_sends_the_recorded_handles(state: StateStore) -> None:
    app = _App()
    launcher = CeleryLauncher(app, state=state, options=WorkflowOptions())
    job = create_job(state, llm_config(["a"]))
    state.update_job(job.id, {"state": {"datasets": {"handle": {"id": "ds"}}, "candidates": {}}})
    launcher.delete_artifacts(job.id)
    name, args, _ = app.sent[0]
    assert name == DELETE_ARTIFACTS_TASK
    assert args == [
        job.id,
        [{"kind": "datasets", "candidate": "", "item": None, "handle": {"id": "ds"}}],
    ]


def test_unreachable_broker_is_a_clear_platform_unavailable(
    state: StateStore, tmp_path: Path
) -> None:
    settings = Settings(data_dir=tmp_path, redis_url="redis://user:pw@127.0.0.1:1/0")
    launcher = create_launcher(settings, state)
    job = create_job(state, llm_config(["a"]))
    with pytest.raises(PlatformUnavailable) as err:
        launcher.enqueue(job.id)
    assert "127.0.0.1:1" in str(err.value)
    assert "pw" not in str(err.value)
