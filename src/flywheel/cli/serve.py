"""``flywheel serve``: run the API with uvicorn."""

from __future__ import annotations

import ipaddress
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


@app.callback(invoke_without_command=True)
def serve(
    host: Annotated[str, typer.Option(help="Address to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535)] = 8000,
) -> None:
    """Serve the API (loopback by default; other hosts need auth enabled)."""
    settings = get_settings()
    if not settings.auth_enabled and not is_loopback(host):
        raise ConfigError(
            f"refusing to bind {host} with FLYWHEEL_AUTH_ENABLED=false: anyone on the network "
            "could run and delete jobs; enable auth or bind 127.0.0.1"
        )
    import uvicorn

    from flywheel.api.app import create_app
    from flywheel.logging import configure_logging

    configure_logging(fmt=settings.log_format, level=settings.log_level)
    uvicorn.run(create_app(settings), host=host, port=port, log_config=None)
