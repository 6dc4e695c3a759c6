"""``flywheel worker``: run a Celery worker for the job workflow on the configured broker.

With ``REDIS_URL`` the worker joins the Redis broker; without it, it uses the embedded
filesystem broker under ``FLYWHEEL_DATA_DIR`` (see :mod:`flywheel.workflow.celery_app`).
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

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
    celery_app.worker_main(
        argv=worker_argv(
            queues=queues,
            concurrency=concurrency,
            beat=beat,
            loglevel=settings.log_level,
            hostname=hostname,
        )
    )
