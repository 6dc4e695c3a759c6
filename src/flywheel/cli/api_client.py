"""The CLI's client for the REST API: base URL and key from settings, errors as messages.

Commands get an :class:`ApiClient` from the Typer context (``ctx.obj``), built on first use
from settings; tests put one there with an in-process transport instead.
"""

from __future__ import annotations

from typing import Any

import httpx
import orjson
import typer

from flywheel.errors import FlywheelError
from flywheel.settings import get_settings


class ApiError(FlywheelError):
    """The API refused a request, or could not be reached; the message says which and why."""


class ApiClient:
    """A thin JSON client over ``httpx.Client``."""

    def __init__(self, http: httpx.Client) -> None:
        """Wrap ``http`` (base URL and auth header already set)."""
        self._http = http

    @classmethod
    def from_settings(cls) -> ApiClient:
        """A client for ``FLYWHEEL_API_URL`` sending ``FLYWHEEL_API_KEY``."""
        settings = get_settings()
        headers = {}
        if settings.api_key is not None:
            headers["Authorization"] = f"Bearer {settings.api_key.get_secret_value()}"
        return cls(httpx.Client(base_url=settings.api_url, headers=headers, timeout=30.0))

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        """Send a request; return the decoded JSON body (None when empty).

        Raises:
            ApiError: the API is unreachable or answered with an error status.
        """
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            raise ApiError(
                f"cannot reach the API at {self._http.base_url} ({type(exc).__name__}); "
                "start it with `flywheel serve` or set FLYWHEEL_API_URL"
            ) from exc
        if response.status_code >= 400:
            raise ApiError(_describe(response))
        return orjson.loads(response.content) if response.content else None


def _describe(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return f"HTTP {response.status_code}: {response.text[:300]}"
    detail = body.get("detail") if isinstance(body, dict) else body
    if isinstance(detail, list):  # FastAPI's request-validation errors
        detail = "; ".join(
            f"{'.'.join(str(p) for p in e.get('loc', []))}: {e.get('msg')}" for e in detail
        )
    hint = ""
    if response.status_code == 401:
        hint = " (set FLYWHEEL_API_KEY; create one with `flywheel keys create`)"
    return f"HTTP {response.status_code}: {detail}{hint}"


def client_of(ctx: typer.Context) -> ApiClient:
    """The context's client, created from settings on first use."""
    if not isinstance(ctx.obj, ApiClient):
        ctx.obj = ApiClient.from_settings()
    return ctx.obj


def print_json(value: Any) -> None:
    """Print ``value`` as indented JSON (the ``--json`` output for scripts)."""
    typer.echo(orjson.dumps(value, option=orjson.OPT_INDENT_2).decode())
