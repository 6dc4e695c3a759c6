"""Pieces every fake NMP app shares: fault middleware, errors, list envelopes, generic CRUD."""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse

from tests.fake_nmp.state import FakeNMP, new_id, now

NO_RETRY = {"x-should-retry": "false"}


def error(status: int, detail: Any, *, retry: bool | None = None) -> JSONResponse:
    """An NMP error body ``{"detail": ...}``; ``retry=False`` tells the SDK not to retry."""
    headers = {} if retry is None else {"x-should-retry": "true" if retry else "false"}
    return JSONResponse({"detail": detail}, status_code=status, headers=headers)


def not_found(kind: str, key: str) -> JSONResponse:
    return error(404, f"{kind} '{key}' not found")


def conflict(kind: str, key: str) -> JSONResponse:
    return error(409, f"{kind} '{key}' already exists", retry=False)


def missing_fields(body: dict[str, Any], *names: str) -> JSONResponse | None:
    """A 422 in FastAPI's validation shape when any required body field is absent."""
    absent = [n for n in names if body.get(n) in (None, "")]
    if not absent:
        return None
    detail = [{"loc": ["body", n], "msg": "Field required", "type": "missing"} for n in absent]
    return JSONResponse({"detail": detail}, status_code=422, headers=NO_RETRY)


async def json_body(request: Request) -> dict[str, Any]:
    raw = await request.body()
    if not raw:
        return {}
    try:
        value = json.loads(raw)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _field(item: Any, path: list[str]) -> Any:
    for part in path:
        item = item.get(part) if isinstance(item, dict) else None
    return item


def page(request: Request, items: list[dict[str, Any]]) -> dict[str, Any]:
    """The NMP list envelope (§2.4): 1-based pages, empty ``data`` past the last page."""
    query = request.query_params
    # ``filter[a]=v`` and nested ``filter[custom_fields][key]=v`` (the SDK's bracket form).
    filters = {k[7:-1]: v for k, v in query.items() if k.startswith("filter[") and k.endswith("]")}
    selected = [
        item
        for item in items
        if all(str(_field(item, key.split("]["))) == value for key, value in filters.items())
    ]
    sort = query.get("sort", "-created_at")
    key = sort.lstrip("-")
    selected.sort(key=lambda item: str(item.get(key) or ""), reverse=sort.startswith("-"))
    number = max(1, int(query.get("page", "1")))
    size = max(1, int(query.get("page_size", "10")))
    chunk = selected[(number - 1) * size : number * size]
    return {
        "object": "list",
        "data": chunk,
        "pagination": {
            "page": number,
            "page_size": size,
            "current_page_size": len(chunk),
            "total_pages": max(1, math.ceil(len(selected) / size)),
            "total_results": len(selected),
        },
        "sort": sort,
        "filter": filters,
    }


def install_faults(app: FastAPI, state: FakeNMP, host: str) -> None:
    """Record every request and answer injected faults before the route runs."""

    @app.middleware("http")
    async def faults(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        method, path = request.method, request.url.path
        with state.lock:
            state.requests.append((host, method, path))
            if auth := request.headers.get("authorization"):
                state.authorizations.add(auth)
        fault = state.take_fault(host, method, path)
        if fault is not None:
            if fault.delay_s:
                await asyncio.sleep(fault.delay_s)
            if fault.perform:
                await call_next(request)  # the work happens; its answer is lost
            if fault.status:
                return JSONResponse(fault.body, status_code=fault.status, headers=fault.headers)
        return await call_next(request)


def install_crud(
    app: FastAPI,
    state: FakeNMP,
    *,
    prefix: str,
    table: dict[str, dict[str, Any]],
    kind: str,
    id_prefix: str,
    required: tuple[str, ...] = (),
    defaults: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
) -> None:
    """Namespaced CRUD on ``{prefix}`` and ``{prefix}/{namespace}/{name}``."""

    @app.post(prefix)
    async def create(request: Request) -> Response:
        body = await json_body(request)
        if (invalid := missing_fields(body, *required)) is not None:
            return invalid
        namespace = body.get("namespace") or "default"
        name = body.get("name") or new_id(id_prefix)
        key = f"{namespace}/{name}"
        with state.lock:
            if key in table:
                return conflict(kind, key)
            record = {
                **body,
                "id": new_id(id_prefix),
                "name": name,
                "namespace": namespace,
                "created_at": now(),
                "updated_at": now(),
                "schema_version": "1.0",
                "custom_fields": body.get("custom_fields") or {},
            }
            if defaults is not None:
                record.update(defaults(record))
            table[key] = record
            state.bodies.append(("POST", prefix, body))
            state.record("created", kind, key, "POST", request.url.path)
        return JSONResponse(record)

    @app.get(prefix)
    def list_items(request: Request) -> dict[str, Any]:
        with state.lock:
            return page(request, list(table.values()))

    @app.get(prefix + "/{namespace}/{name}")
    def retrieve(namespace: str, name: str) -> Response:
        key = f"{namespace}/{name}"
        with state.lock:
            if key not in table:
                return not_found(kind, key)
            return JSONResponse(table[key])

    @app.patch(prefix + "/{namespace}/{name}")
    async def update(namespace: str, name: str, request: Request) -> Response:
        key = f"{namespace}/{name}"
        body = await json_body(request)
        with state.lock:
            if key not in table:
                return not_found(kind, key)
            table[key].update(body)
            table[key]["updated_at"] = now()
            state.record("updated", kind, key, "PATCH", request.url.path)
            return JSONResponse(table[key])

    @app.delete(prefix + "/{namespace}/{name}")
    def delete(namespace: str, name: str, request: Request) -> Response:
        key = f"{namespace}/{name}"
        with state.lock:
            record = table.pop(key, None)
            if record is None:
                return not_found(kind, key)
            state.record("deleted", kind, key, "DELETE", request.url.path)
        return JSONResponse({"id": record["id"], "deleted_at": now(), "message": "deleted"})
