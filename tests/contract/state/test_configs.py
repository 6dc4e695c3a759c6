"""State store contract: versioned named configs with soft delete."""

from __future__ import annotations

import pytest

from flywheel.errors import Conflict, NotFound
from flywheel.stores.base import StateStore
from tests.contract.state.factories import config


def test_create_stores_version_one(state_store: StateStore) -> None:
    created = state_store.create_config(config("fast", {"lr": 1}, description="d"))

    assert (created.version, created.deleted, created.body) == (1, False, {"lr": 1})
    assert state_store.get_config("fast") == created
    assert state_store.get_config("fast", version=1) == created


def test_duplicate_live_name_raises_conflict(state_store: StateStore) -> None:
    state_store.create_config(config("fast"))

    with pytest.raises(Conflict):
        state_store.create_config(config("fast", {"other": True}))


def test_versions_advance_only_from_the_expected_one(state_store: StateStore) -> None:
    state_store.create_config(config("fast", {"v": 1}))

    second = state_store.add_config_version(config("fast", {"v": 2}), expect_version=1)

    assert second.version == 2
    with pytest.raises(Conflict):
        state_store.add_config_version(config("fast", {"v": "stale"}), expect_version=1)
    assert state_store.get_config("fast") == second
    assert state_store.get_config("fast", version=1).body == {"v": 1}


def test_unknown_names_and_versions_raise_not_found(state_store: StateStore) -> None:
    state_store.create_config(config("fast"))

    for call in (
        lambda: state_store.get_config("missing"),
        lambda: state_store.get_config("fast", version=9),
        lambda: state_store.list_config_versions("missing"),
        lambda: state_store.add_config_version(config("missing"), expect_version=1),
        lambda: state_store.delete_config("missing"),
    ):
        with pytest.raises(NotFound):
            call()


def test_list_configs_shows_the_latest_live_version_by_name(state_store: StateStore) -> None:
    state_store.create_config(config("zeta"))
    state_store.create_config(config("alpha", {"v": 1}))
    state_store.add_config_version(config("alpha", {"v": 2}), expect_version=1)
    state_store.create_config(config("gone"))
    state_store.delete_config("gone")

    listed = state_store.list_configs()

    assert [(c.name, c.version) for c in listed] == [("alpha", 2), ("zeta", 1)]
    assert listed[0].body == {"v": 2}


def test_list_config_versions_is_oldest_first(state_store: StateStore) -> None:
    state_store.create_config(config("fast", {"v": 1}))
    state_store.add_config_version(config("fast", {"v": 2}), expect_version=1)
    state_store.add_config_version(config("fast", {"v": 3}), expect_version=2)

    versions = state_store.list_config_versions("fast")

    assert [(c.version, c.body) for c in versions] == [(1, {"v": 1}), (2, {"v": 2}), (3, {"v": 3})]


def test_deleted_config_is_gone_but_pinned_versions_stay_readable(state_store: StateStore) -> None:
    state_store.create_config(config("fast", {"v": 1}))
    state_store.add_config_version(config("fast", {"v": 2}), expect_version=1)

    state_store.delete_config("fast")

    with pytest.raises(NotFound):
        state_store.get_config("fast")
    with pytest.raises(NotFound):
        state_store.add_config_version(config("fast"), expect_version=2)
    with pytest.raises(NotFound):
        state_store.delete_config("fast")
    pinned = state_store.get_config("fast", version=1)
    assert (pinned.body, pinned.deleted) == ({"v": 1}, True)
    assert [c.deleted for c in state_store.list_config_versions("fast")] == [True, True]


def test_recreated_name_continues_the_version_numbers(state_store: StateStore) -> None:
    state_store.create_config(config("fast", {"v": 1}))
    state_store.add_config_version(config("fast", {"v": 2}), expect_version=1)
    state_store.delete_config("fast")

    reborn = state_store.create_config(config("fast", {"v": "new"}))

    assert (reborn.version, reborn.deleted) == (3, False)
    assert state_store.get_config("fast") == reborn
    assert state_store.get_config("fast", version=1).body == {"v": 1}
    assert [(c.version, c.deleted) for c in state_store.list_config_versions("fast")] == [
        (1, True),
        (2, True),
        (3, False),
    ]
    assert state_store.add_config_version(config("fast"), expect_version=3).version == 4
