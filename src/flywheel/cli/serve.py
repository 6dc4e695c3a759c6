"""``flywheel serve``: run the API with uvicorn."""

from __future__ import annotations

import contextlib
import ipaddress
import signal
from typing import Annotated

import typer

from flywheel.errors import ConfigError
from flywheel.settings import get_settings

app = typer.Typer(help="Run the REST API.")


def is_loopback(host: str) -> bool:
    """True for localhost and loopback addresses."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _exit_on_sigterm(signum: int, frame: object) -> None:
    raise SystemExit(0)


@app.callback(invoke_without_command=True)
def serve(
    host: Annotated[str, typer.Option(help="Address to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535)] = 8000,
    worker: Annotated[
        bool | None,
        typer.Option(
            "--worker/--no-worker",
            help="Also run a workflow worker in this command (default: only without REDIS_URL, "
            "where it shares the embedded broker).",
            show_default=False,
        ),
    ] = None,
    worker_concurrency: Annotated[
        int, typer.Option(min=1, help="Parallel steps of the embedded worker.")
    ] = 2,
) -> None:
    """Serve the API (loopback by default; other hosts need auth enabled).

    Jobs go to the workflow through the Celery launcher. Without ``REDIS_URL`` a
    ``flywheel worker`` child runs beside the API (stopped with it), so this one command
    runs whole jobs; with Redis, run ``flywheel worker`` separately (or pass ``--worker``).
    """
    settings = get_settings()
    if not settings.auth_enabled and not is_loopback(host):
        raise ConfigError(
            f"refusing to bind {host} with FLYWHEEL_AUTH_ENABLED=false: anyone on the network "
            "could run and delete jobs; enable auth or bind 127.0.0.1"
        )
    import uvicorn

    from flywheel.api.app import create_app
    from flywheel.cli.embedded_worker import EmbeddedWorker
    from flywheel.logging import configure_logging
    from flywheel.stores.registry import open_state_store
    from flywheel.workflow.launcher import create_launcher

    configure_logging(fmt=settings.log_format, level=settings.log_level)
    run_worker = settings.redis_url is None if worker is None else worker
    # uvicorn shuts down gracefully on SIGTERM, then re-raises it: with the default handler
    # the process would die there, before the embedded worker is stopped. Exit instead.
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    state = open_state_store(settings.state_store_url)
    try:
        api = create_app(settings, state_store=state, workflow=create_launcher(settings, state))
        with contextlib.ExitStack() as stack:
            if run_worker:
                stack.enter_context(EmbeddedWorker(concurrency=worker_concurrency))
            uvicorn.run(api, host=host, port=port, log_config=None)
    finally:
        state.close()
