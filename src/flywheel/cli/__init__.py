"""The ``flywheel`` command: thin sub-commands over the services and the API.

Each sub-app lives in its own module; this one only composes them and handles
:class:`~flywheel.errors.FlywheelError` once, so every command prints a clear message and
exits non-zero instead of a traceback.
"""

from __future__ import annotations

import sys

import orjson
import typer
from rich.console import Console

from flywheel import __version__
from flywheel.config.resolve import load_base_config
from flywheel.errors import FlywheelError
from flywheel.settings import get_settings

app = typer.Typer(
    name="flywheel",
    help="Turn production LLM traffic into datasets and find cheaper models that do the same work.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
config_app = typer.Typer(help="Inspect the job configuration.", no_args_is_help=True)
app.add_typer(config_app, name="config")

_err = Console(stderr=True)


@app.command()
def version() -> None:
    """Print the Flywheel version."""
    typer.echo(__version__)


@config_app.command("show")
def config_show() -> None:
    """Print the effective base job configuration (shipped defaults ← FLYWHEEL_CONFIG)."""
    base = load_base_config(get_settings().config_path)
    typer.echo(orjson.dumps(base, option=orjson.OPT_INDENT_2).decode())


def _register_subcommands() -> None:
    """Attach the sub-apps. Imported here so ``flywheel --help`` stays cheap to load."""
    from flywheel.cli import registry

    for name, sub_app in registry.sub_apps():
        app.add_typer(sub_app, name=name)


def main() -> None:
    """Entry point: run the CLI, turning our errors into a message and exit code 1."""
    _register_subcommands()
    try:
        app()
    except FlywheelError as exc:
        _err.print(f"[bold red]error:[/] {exc}")
        sys.exit(1)
