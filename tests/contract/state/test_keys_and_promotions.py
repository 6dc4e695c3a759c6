"""State store contract: API keys and promotions."""

from __future__ import annotations

import pytest

from flywheel.domain.jobs import KeyId, Role
from flywheel.errors import Conflict, NotFound
from flywheel.stores.base import StateStore
from tests.contract.state.factories import at, key, promotion


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


def test_promotions_are_listed_newest_first_per_workload(state_store: StateStore) -> None:
    old = state_store.add_promotion(promotion(promoted_at=at(0), scores={"acc": 0.9}))
    new = state_store.add_promotion(promotion(promoted_at=at(9), variant="customized"))
    state_store.add_promotion(promotion(workload_id="other"))

    assert state_store.list_promotions("acme", "router") == [new, old]
    assert state_store.list_promotions("acme", "unknown") == []


def test_rolled_back_promotions_stay_listed_and_flagged(state_store: StateStore) -> None:
    stored = state_store.add_promotion(promotion())

    state_store.mark_promotion_rolled_back(stored.id)

    assert state_store.list_promotions("acme", "router") == [
        stored.model_copy(update={"rolled_back": True})
    ]
    with pytest.raises(NotFound):
        state_store.mark_promotion_rolled_back("nope")


def test_duplicate_promotion_id_raises_conflict(state_store: StateStore) -> None:
    stored = state_store.add_promotion(promotion())

    with pytest.raises(Conflict):
        state_store.add_promotion(promotion(id=stored.id))
