"""The admin web console: static files (HTML, ES modules, CSS) served by the API.

The page holds no data and needs no build step: ``/`` serves ``index.html`` and
``/console/...`` the assets, both without auth. Everything shown comes from the
authenticated API, with the key the user logs in with kept in ``sessionStorage``.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles
from starlette.requests import Request

STATIC_DIR = Path(__file__).parent / "static"

#: The page may only load its own assets and talk to its own origin.
_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
)


def mount_console(app: FastAPI) -> None:
    """Serve the console at ``/`` and its assets under ``/console``."""

    async def console_index(request: Request) -> FileResponse:
        return FileResponse(
            STATIC_DIR / "index.html",
            headers={
                "Cache-Control": "no-cache",
                "Content-Security-Policy": _CSP,
                "X-Content-Type-Options": "nosniff",
            },
        )

    # A plain route, not an API operation: it is not part of the REST API's schema.
    app.add_route("/", console_index, methods=["GET"], include_in_schema=False)
    app.mount("/console", StaticFiles(directory=STATIC_DIR), name="console")
