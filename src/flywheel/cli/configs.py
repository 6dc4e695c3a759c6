"""``flywheel configs``: manage named job configurations through the API."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
import yaml
from rich.console import Console
from rich.table import Table

from flywheel.cli.api_client import client_of, print_json
from flywheel.errors import ConfigError

app = typer.Typer(help="Manage named job configurations.", no_args_is_help=True)
_out = Console()

JsonFlag = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]
FileOption = Annotated[
    Path, typer.Option("--file", "-f", help="YAML or JSON file holding the config body.")
]


def _read_body(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text("utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"{path}: cannot read a YAML/JSON mapping ({exc})") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of job settings")
    return data


def _show(config: dict[str, Any]) -> None:
    _out.print(
        f"[bold]{config['name']}[/] v{config['version']} ({config['job_type']}) "
        f"{config.get('description') or ''}"
    )
    _out.print(yaml.safe_dump(config["body"], sort_keys=False) or "{}")


@app.command("list")
def list_configs(ctx: typer.Context, as_json: JsonFlag = False) -> None:
    """List named configs (latest versions)."""
    items = client_of(ctx).request("GET", "/api/configs")["items"]
    if as_json:
        print_json(items)
        return
    table = Table("name", "version", "job_type", "description", "created_at")
    for c in items:
        table.add_row(
            c["name"], str(c["version"]), c["job_type"], c["description"], c["created_at"]
        )
    _out.print(table)


@app.command("show")
def show_config(
    ctx: typer.Context,
    name: str,
    version: Annotated[int | None, typer.Option(help="A given version; default latest.")] = None,
    as_json: JsonFlag = False,
) -> None:
    """Show a named config."""
    params = {} if version is None else {"version": version}
    config = client_of(ctx).request("GET", f"/api/configs/{name}", params=params)
    if as_json:
        print_json(config)
    else:
        _show(config)


@app.command("create")
def create_config(
    ctx: typer.Context,
    name: str,
    file: FileOption,
    job_type: Annotated[str, typer.Option(help="llm_job or embedding_job")] = "llm_job",
    description: str = "",
    as_json: JsonFlag = False,
) -> None:
    """Create a named config from a file (validated by the API)."""
    payload = {
        "name": name,
        "job_type": job_type,
        "description": description,
        "body": _read_body(file),
    }
    config = client_of(ctx).request("POST", "/api/configs", json=payload)
    if as_json:
        print_json(config)
    else:
        _out.print(f"created {name} v{config['version']}")


@app.command("update")
def update_config(
    ctx: typer.Context,
    name: str,
    file: FileOption,
    expected_version: Annotated[
        int | None, typer.Option(help="The version you edited; default: the latest now.")
    ] = None,
    description: str | None = None,
    as_json: JsonFlag = False,
) -> None:
    """Add a new version of a config from a file."""
    client = client_of(ctx)
    if expected_version is None:
        expected_version = client.request("GET", f"/api/configs/{name}")["version"]
    payload: dict[str, Any] = {"expected_version": expected_version, "body": _read_body(file)}
    if description is not None:
        payload["description"] = description
    config = client.request("PUT", f"/api/configs/{name}", json=payload)
    if as_json:
        print_json(config)
    else:
        _out.print(f"updated {name} to v{config['version']}")


@app.command("versions")
def list_versions(ctx: typer.Context, name: str, as_json: JsonFlag = False) -> None:
    """List every version of a named config, oldest first (to diff or pin one)."""
    items = client_of(ctx).request("GET", f"/api/configs/{name}/versions")["items"]
    if as_json:
        print_json(items)
        return
    table = Table("version", "job_type", "description", "created_by", "created_at", title=name)
    for c in items:
        table.add_row(
            str(c["version"]),
            c["job_type"],
            c["description"],
            c.get("created_by") or "",
            c["created_at"],
        )
    _out.print(table)


@app.command("delete")
def delete_config(ctx: typer.Context, name: str, as_json: JsonFlag = False) -> None:
    """Delete a config (refused while an active job uses it)."""
    client_of(ctx).request("DELETE", f"/api/configs/{name}")
    if as_json:
        print_json({"name": name, "deleted": True})
    else:
        _out.print(f"deleted {name}")
