"""``flywheel worker`` starts a Celery worker on the workflow queues."""

from __future__ import annotations

from typing import Any

import pytest
from typer.testing import CliRunner

from flywheel.cli import registry
from flywheel.cli.worker import app, worker_argv


def test_worker_is_a_registered_subcommand() -> None:
    assert ("worker", "flywheel.cli.worker") in registry.SUB_APPS


def test_worker_argv() -> None:
    argv = worker_argv(queues=["a", "b"], concurrency=3, beat=True, loglevel="INFO", hostname="x")
    assert argv == ["worker", "-Q", "a,b", "-c", "3", "--loglevel", "INFO", "-B", "-n", "x"]


def test_worker_command_starts_celery_on_both_queues(monkeypatch: pytest.MonkeyPatch) -> None:
    from flywheel.workflow import celery_app

    seen: dict[str, Any] = {}
    monkeypatch.setattr(celery_app.app, "worker_main", lambda argv: seen.update(argv=argv))
    monkeypatch.setenv("FLYWHEEL_WORKFLOW_QUEUE_PREFIX", "t.")
    result = CliRunner().invoke(app, ["--concurrency", "2", "--no-beat"])
    assert result.exit_code == 0, result.output
    assert seen["argv"][:5] == ["worker", "-Q", "t.flywheel.steps,t.flywheel.long", "-c", "2"]
    assert "-B" not in seen["argv"]


def test_recycling_limits_override_the_app_config_only_when_given(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from flywheel.workflow import celery_app

    conf = celery_app.app.conf
    monkeypatch.setattr(celery_app.app, "worker_main", lambda argv: None)
    for key in ("worker_max_tasks_per_child", "worker_max_memory_per_child"):
        monkeypatch.setitem(conf, key, conf[key])  # restored after the test
    default_tasks = conf.worker_max_tasks_per_child
    result = CliRunner().invoke(app, [])
    assert result.exit_code == 0, result.output
    assert conf.worker_max_tasks_per_child == default_tasks  # FLYWHEEL_WORKFLOW_* applies
    result = CliRunner().invoke(
        app, ["--max-tasks-per-child", "200", "--max-memory-per-child-mb", "512"]
    )
    assert result.exit_code == 0, result.output
    assert conf.worker_max_tasks_per_child == 200
    assert conf.worker_max_memory_per_child == 512 * 1024  # Celery counts KiB
    # 0 is "never": None for Celery (billiard refuses a 0 limit outright).
    result = CliRunner().invoke(
        app, ["--max-tasks-per-child", "0", "--max-memory-per-child-mb", "0"]
    )
    assert result.exit_code == 0, result.output
    assert conf.worker_max_tasks_per_child is None
    assert conf.worker_max_memory_per_child is None
    refused = CliRunner().invoke(app, ["--max-tasks-per-child", "-1"])
    assert refused.exit_code == 2
