"""State store contract: API keys (promotions: ``test_promotions.py``)."""

from __future__ import annotations

import pytest

from flywheel.domain.jobs import KeyId, Role
from flywheel.errors import Conflict, NotFound
from flywheel.stores.base import StateStore
from tests.contract.state.factories import at, key


def test_key_is_found_by_hash_until_revoked(state_store: StateStore) -> None:
    stored = state_store.create_key(key(role=Role.admin, client_ids=["acme"], created_at=at(0)))

    assert state_store.find_key(stored.key_hash) == stored
    assert state_store.find_key("unknown-hash") is None

    state_store.revoke_key(stored.id)

    assert state_store.find_key(stored.key_hash) is None
    assert state_store.list_keys() == [stored.model_copy(update={"revoked": True})]


def test_keys_are_listed_newest_first(state_store: StateStore) -> None:
    old = state_store.create_key(key(created_at=at(0)))
    new = state_store.create_key(key(created_at=at(5)))

    assert [k.id for k in state_store.list_keys()] == [new.id, old.id]


def test_duplicate_key_id_or_hash_raises_conflict(state_store: StateStore) -> None:
    stored = state_store.create_key(key())

    with pytest.raises(Conflict):
        state_store.create_key(key(id=stored.id))
    with pytest.raises(Conflict):
        state_store.create_key(key(key_hash=stored.key_hash))


def test_revoking_an_unknown_key_raises_not_found(state_store: StateStore) -> None:
    with pytest.raises(NotFound):
        state_store.revoke_key(KeyId("nope"))
