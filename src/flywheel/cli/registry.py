"""The list of ``flywheel`` sub-commands, so adding one is a one-line change here."""

from __future__ import annotations

import importlib

import typer

#: (command name, module that defines a Typer ``app``)
SUB_APPS: list[tuple[str, str]] = [
    ("logs", "flywheel.cli.logs"),
    ("datasets", "flywheel.cli.datasets"),
    ("jobs", "flywheel.cli.jobs"),
    ("configs", "flywheel.cli.configs"),
    ("keys", "flywheel.cli.keys"),
    ("serve", "flywheel.cli.serve"),
    ("openapi", "flywheel.cli.openapi"),
    ("worker", "flywheel.cli.worker"),
    ("demo", "flywheel.cli.demo"),
]


def sub_apps() -> list[tuple[str, typer.Typer]]:
    """Import each sub-app module and return its Typer app."""
    loaded: list[tuple[str, typer.Typer]] = []
    for name, module in SUB_APPS:
        sub_app = importlib.import_module(module).app
        if not isinstance(sub_app, typer.Typer):
            raise TypeError(f"{module}.app is not a typer.Typer")
        loaded.append((name, sub_app))
    return loaded
