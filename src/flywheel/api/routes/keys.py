"""``/api/keys``: API key management (admin). The first key comes from ``flywheel keys create``.

A scoped admin (a key with ``client_ids``) manages keys only *inside* its scope: it may
create keys scoped to a subset of its own tenants, and lists and revokes only such keys.
Without this, a tenant's admin could mint an unscoped key and read every tenant's data.
Keys outside the caller's scope answer 404 (as jobs do), so tenants cannot probe each other.
Unscoped admins manage every key.
"""

from __future__ import annotations

from fastapi import APIRouter
from starlette.concurrency import run_in_threadpool

from flywheel.api.deps import PrincipalDep, ServicesDep, require
from flywheel.api.errors import error_responses
from flywheel.api.schemas import KeyCreated, KeyIn, KeyList, KeyOut
from flywheel.domain.jobs import ApiKey, KeyId, Role
from flywheel.errors import NotFound
from flywheel.services.auth import Forbidden, Principal, create_key
from flywheel.stores.base import StateStore

router = APIRouter(
    prefix="/api/keys",
    tags=["keys"],
    dependencies=[require(Role.admin)],
    responses=error_responses(401, 403, 503),
)


def _covers(principal: Principal, client_ids: list[str] | None) -> bool:
    """True when a key scoped to ``client_ids`` (None: all tenants) lies in the caller's scope."""
    if principal.client_ids is None:
        return True
    return client_ids is not None and set(client_ids) <= principal.client_ids


def _check_new_scope(principal: Principal, client_ids: list[str] | None) -> None:
    """Refuse a key wider than its creator: a scoped admin must not escape its tenants."""
    if _covers(principal, client_ids):
        return
    own = sorted(principal.client_ids or ())
    if client_ids is None:
        raise Forbidden(
            f"this key is scoped to client_ids {own}, so it cannot create an unscoped key; "
            "set client_ids to a subset of them, or ask an unscoped admin"
        )
    outside = sorted(set(client_ids) - set(own))
    raise Forbidden(
        f"client_ids {outside} are outside this key's scope {own}; a key may only create "
        "keys scoped to a subset of its own client_ids"
    )


def _revoke_in_scope(store: StateStore, principal: Principal, key_id: KeyId) -> None:
    """Revoke ``key_id`` if it lies in ``principal``'s scope; NotFound (never 403) otherwise."""
    if principal.client_ids is not None:
        key = next((k for k in store.list_keys() if k.id == key_id), None)
        if key is None or not _covers(principal, key.client_ids):
            raise NotFound(f"key {key_id} not found")
    store.revoke_key(key_id)


def _visible(store: StateStore, principal: Principal) -> list[ApiKey]:
    """The keys ``principal`` manages, newest first."""
    return [k for k in store.list_keys() if _covers(principal, k.client_ids)]


@router.post("", status_code=201, summary="Create a key", responses=error_responses(413))
async def create_api_key(body: KeyIn, services: ServicesDep, principal: PrincipalDep) -> KeyCreated:
    """Create a key; the plaintext is returned only in this response.

    A scoped caller may only create keys scoped to a subset of its own ``client_ids``
    (403 otherwise, naming the tenants outside its scope).
    """
    _check_new_scope(principal, body.client_ids)
    plaintext, key = await run_in_threadpool(
        create_key, services.state, role=body.role, name=body.name, client_ids=body.client_ids
    )
    return KeyCreated(**KeyOut.from_domain(key).model_dump(), key=plaintext)


@router.get("", summary="List keys")
def list_api_keys(services: ServicesDep, principal: PrincipalDep) -> KeyList:
    """List the keys the caller manages (never their hashes), newest first."""
    return KeyList(items=[KeyOut.from_domain(k) for k in _visible(services.state, principal)])


@router.delete("/{key_id}", status_code=204, summary="Revoke a key", responses=error_responses(404))
def revoke_api_key(key_id: str, services: ServicesDep, principal: PrincipalDep) -> None:
    """Revoke a key; requests with it are refused from now on. Keys outside scope are 404."""
    _revoke_in_scope(services.state, principal, KeyId(key_id))
