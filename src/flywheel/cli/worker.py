"""``flywheel worker``: run a Celery worker for the job workflow on the configured broker.

With ``REDIS_URL`` the worker joins the Redis broker; without it, it uses the embedded
filesystem broker under ``FLYWHEEL_DATA_DIR`` (see :mod:`flywheel.workflow.celery_app`).
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any

import typer

from flywheel.settings import get_settings

app = typer.Typer(help="Run a workflow worker.")


class QueueChoice(StrEnum):
    """Which workflow queues a worker consumes."""

    all = "all"
    steps = "steps"
    long = "long"


def worker_argv(
    *, queues: list[str], concurrency: int, beat: bool, loglevel: str, hostname: str | None
) -> list[str]:
    """The Celery worker command line for these choices."""
    argv = ["worker", "-Q", ",".join(queues), "-c", str(concurrency), "--loglevel", loglevel]
    if beat:
        argv.append("-B")
    if hostname:
        argv += ["-n", hostname]
    return argv


def apply_recycling(
    conf: Any, *, max_tasks_per_child: int | None, max_memory_per_child_mb: int | None
) -> None:
    """Override the app's pool-recycling limits with the options given (None: keep them).

    Set on the app's config rather than passed as flags: Celery's flags take 0 as a value,
    which billiard refuses ("maxtasksperchild must be a positive int or None"), while here
    0 means "never", as in ``FLYWHEEL_WORKFLOW_MAX_TASKS_PER_CHILD``.
    """
    if max_tasks_per_child is not None:
        conf.worker_max_tasks_per_child = max_tasks_per_child or None
    if max_memory_per_child_mb is not None:
        conf.worker_max_memory_per_child = max_memory_per_child_mb * 1024 or None  # KiB


@app.callback(invoke_without_command=True)
def worker(
    queue: Annotated[
        QueueChoice,
        typer.Option(help="steps: short steps; long: dataset builds and finalize; all: both."),
    ] = QueueChoice.all,
    concurrency: Annotated[int, typer.Option(min=1, help="Parallel steps (processes).")] = 4,
    beat: Annotated[
        bool,
        typer.Option(help="Also run the periodic recovery sweep (safe to run on several workers)."),
    ] = True,
    hostname: Annotated[str | None, typer.Option(help="Worker name (default: Celery's).")] = None,
    max_tasks_per_child: Annotated[
        int | None,
        typer.Option(
            min=0,
            help="Replace a pool process after this many steps (0: never; default: "
            "FLYWHEEL_WORKFLOW_MAX_TASKS_PER_CHILD, 1000).",
        ),
    ] = None,
    max_memory_per_child_mb: Annotated[
        int | None,
        typer.Option(
            min=0,
            help="Replace a pool process whose RSS exceeds this after a step (0: never; "
            "default: FLYWHEEL_WORKFLOW_MAX_MEMORY_PER_CHILD_MB, 1024).",
        ),
    ] = None,
) -> None:
    """Start a worker on the configured broker and consume the workflow queues."""
    from flywheel.logging import configure_logging
    from flywheel.workflow.celery_app import app as celery_app
    from flywheel.workflow.options import WorkflowOptions

    settings = get_settings()
    configure_logging(fmt=settings.log_format, level=settings.log_level)
    options = WorkflowOptions()
    queues = {
        QueueChoice.all: [options.steps_queue, options.long_queue],
        QueueChoice.steps: [options.steps_queue],
        QueueChoice.long: [options.long_queue],
    }[queue]
    apply_recycling(
        celery_app.conf,
        max_tasks_per_child=max_tasks_per_child,
        max_memory_per_child_mb=max_memory_per_child_mb,
    )
    celery_app.worker_main(
        argv=worker_argv(
            queues=queues,
            concurrency=concurrency,
            beat=beat,
            loglevel=settings.log_level,
            hostname=hostname,
        )
    )
