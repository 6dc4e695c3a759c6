"""``/api/logs``: ingest production log records (JSON array or NDJSON)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Request
from starlette.concurrency import run_in_threadpool

from flywheel.api.deps import PrincipalDep, ServicesDep, require
from flywheel.api.errors import error_responses
from flywheel.api.schemas import IngestOut
from flywheel.domain.jobs import Role
from flywheel.services.ingestion import PayloadTooLarge
from flywheel.services.log_intake import ingest_for

router = APIRouter(
    prefix="/api/logs",
    tags=["logs"],
    dependencies=[require(Role.operator)],
    responses=error_responses(401, 403, 503),
)

_BODY_DOC: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {"type": "array", "items": {"type": "object"}},
                "example": [
                    {
                        "client_id": "aiva",
                        "workload_id": "tool-router",
                        "timestamp": 1735689600000,
                        "request": {
                            "model": "big",
                            "messages": [{"role": "user", "content": "hi"}],
                        },
                        "response": {
                            "choices": [{"message": {"role": "assistant", "content": "hello"}}]
                        },
                    }
                ],
            },
            "application/x-ndjson": {"schema": {"type": "string"}},
        },
    }
}


async def read_limited_body(request: Request, services: ServicesDep) -> bytes:
    """The request body, refused with 413 as soon as it passes the size limit."""
    limit = services.settings.max_request_bytes
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(int(declared), limit)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(size, limit)
        chunks.append(chunk)
    return b"".join(chunks)


@router.post(
    "",
    summary="Ingest logs",
    openapi_extra=_BODY_DOC,
    responses=error_responses(413, 422),
)
async def ingest_logs(
    body: Annotated[bytes, Depends(read_limited_body)],
    services: ServicesDep,
    principal: PrincipalDep,
    content_type: Annotated[str | None, Header()] = None,
) -> IngestOut:
    """Validate and store each record; report the accepted count and per-record reasons."""
    report = await run_in_threadpool(
        ingest_for,
        body,
        content_type,
        store=services.logs,
        scope=principal.client_ids,
        max_bytes=services.settings.max_request_bytes,
    )
    return IngestOut.model_validate(report.to_dict())
