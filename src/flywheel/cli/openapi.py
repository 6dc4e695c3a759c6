"""``flywheel openapi``: write (or check) the committed OpenAPI document, docs/openapi.json."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import orjson
import typer

from flywheel.settings import Settings

app = typer.Typer(help="Write the API's OpenAPI document.")

DEFAULT_PATH = Path("docs/openapi.json")


def openapi_document() -> dict[str, Any]:
    """The API's OpenAPI document; independent of the environment (no stores are opened)."""
    from flywheel.api.app import create_app

    document: dict[str, Any] = create_app(Settings(_env_file=None)).openapi()
    return document


def render(document: dict[str, Any]) -> bytes:
    """Stable bytes (sorted keys, two-space indent, final newline) so diffs stay readable."""
    return orjson.dumps(document, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS) + b"\n"


@app.callback(invoke_without_command=True)
def openapi(
    out: Annotated[Path, typer.Option(help="Where to write the document.")] = DEFAULT_PATH,
    check: Annotated[
        bool, typer.Option("--check", help="Exit 1 if the file is not current; write nothing.")
    ] = False,
) -> None:
    """Write the OpenAPI document of the REST API (or check that the committed one is current)."""
    wanted = render(openapi_document())
    if check:
        current = out.read_bytes() if out.exists() else b""
        if current != wanted:
            typer.echo(f"{out} is stale; run `flywheel openapi` and commit it", err=True)
            raise typer.Exit(1)
        typer.echo(f"{out} is current")
        return
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(wanted)
    typer.echo(f"wrote {out}")
