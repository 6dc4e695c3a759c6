"""``flywheel keys``: create API keys directly in the state store (this bootstraps auth)."""

from __future__ import annotations

from typing import Annotated

import typer

from flywheel.cli.api_client import print_json
from flywheel.domain.jobs import Role
from flywheel.services.auth import create_key
from flywheel.settings import get_settings
from flywheel.stores.registry import open_state_store

app = typer.Typer(help="Manage API keys.", no_args_is_help=True)


@app.callback()
def keys() -> None:
    """Manage API keys (a group, so more commands can join ``create``)."""


@app.command("create")
def create(
    role: Annotated[Role, typer.Option(help="admin, operator or viewer")],
    client_id: Annotated[
        list[str] | None, typer.Option("--client-id", help="Limit the key to this client (repeat).")
    ] = None,
    name: Annotated[str, typer.Option(help="A label to recognise the key by.")] = "",
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")] = False,
) -> None:
    """Create a key and print it once; only its hash is stored."""
    store = open_state_store(get_settings().state_store_url)
    try:
        plaintext, key = create_key(store, role=role, name=name, client_ids=client_id or None)
    finally:
        store.close()
    if as_json:
        print_json({"id": key.id, "role": key.role, "client_ids": key.client_ids, "key": plaintext})
        return
    scope = ", ".join(key.client_ids) if key.client_ids else "all clients"
    typer.echo(f"created {key.role.value} key {key.id} for {scope}")
    typer.echo(f"key (shown once; store it now): {plaintext}")
    typer.echo(f"use it with: export FLYWHEEL_API_KEY={plaintext}")
