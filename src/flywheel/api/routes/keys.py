"""``/api/keys``: API key management (admin). The first key comes from ``flywheel keys create``."""

from __future__ import annotations

from fastapi import APIRouter
from starlette.concurrency import run_in_threadpool

from flywheel.api.deps import ServicesDep, require
from flywheel.api.errors import error_responses
from flywheel.api.schemas import KeyCreated, KeyIn, KeyList, KeyOut
from flywheel.domain.jobs import KeyId, Role
from flywheel.services.auth import create_key

router = APIRouter(
    prefix="/api/keys",
    tags=["keys"],
    dependencies=[require(Role.admin)],
    responses=error_responses(401, 403, 503),
)


@router.post("", status_code=201, summary="Create a key")
async def create_api_key(body: KeyIn, services: ServicesDep) -> KeyCreated:
    """Create a key; the plaintext is returned only in this response."""
    plaintext, key = await run_in_threadpool(
        create_key, services.state, role=body.role, name=body.name, client_ids=body.client_ids
    )
    return KeyCreated(**KeyOut.from_domain(key).model_dump(), key=plaintext)


@router.get("", summary="List keys")
def list_api_keys(services: ServicesDep) -> KeyList:
    """List keys (never their hashes), newest first."""
    return KeyList(items=[KeyOut.from_domain(k) for k in services.state.list_keys()])


@router.delete("/{key_id}", status_code=204, summary="Revoke a key", responses=error_responses(404))
def revoke_api_key(key_id: str, services: ServicesDep) -> None:
    """Revoke a key; requests with it are refused from now on."""
    services.state.revoke_key(KeyId(key_id))
