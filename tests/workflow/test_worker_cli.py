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


def test_recycling_limits_are_passed_to_celery_only_when_given(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from flywheel.workflow import celery_app

    seen: dict[str, Any] = {}
    monkeypatch.setattr(celery_app.app, "worker_main", lambda argv: seen.update(argv=argv))
    result = CliRunner().invoke(
        app, ["--max-tasks-per-child", "200", "--max-memory-per-child-mb", "512"]
    )
    assert result.exit_code == 0, result.output
    argv = seen["argv"]
    assert argv[argv.index("--max-tasks-per-child") + 1] == "200"
    assert argv[argv.index("--max-memory-per-child") + 1] == str(512 * 1024)
    result = CliRunner().invoke(app, [])
    assert result.exit_code == 0, result.output
    assert "--max-tasks-per-child" not in seen["argv"]  # the app config's value applies
    refused = CliRunner().invoke(app, ["--max-tasks-per-child", "-1"])
    assert refused.exit_code == 2
