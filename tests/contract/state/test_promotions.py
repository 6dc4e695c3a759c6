"""State store contract: promotions, their compare-and-set, and kept webhook outcomes."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest
from pymongo import MongoClient

from flywheel.domain.jobs import Promotion, WebhookOutcome
from flywheel.errors import Conflict, NotFound
from flywheel.stores.base import StateStore
from flywheel.stores.registry import open_state_store
from tests.contract.state.factories import at, promotion


def promote_chain(store: StateStore, *promotions: Promotion) -> list[Promotion]:
    """Put each promotion in force in turn, each expecting the one before."""
    stored: list[Promotion] = []
    for p in promotions:
        stored.append(store.add_promotion(p, expected_current=stored[-1].id if stored else None))
    return stored


def test_promotions_are_listed_newest_first_per_workload(state_store: StateStore) -> None:
    old, new = promote_chain(
        state_store,
        promotion(promoted_at=at(0), scores={"acc": 0.9}),
        promotion(promoted_at=at(9), variant="customized"),
    )
    state_store.add_promotion(promotion(workload_id="other"), expected_current=None)

    assert state_store.list_promotions("acme", "router") == [new, old]
    assert state_store.list_promotions("acme", "unknown") == []


def test_promoting_over_a_stale_view_is_refused_and_names_the_promotion_in_force(
    state_store: StateStore,
) -> None:
    (first,) = promote_chain(state_store, promotion(promoted_at=at(0), model="m-first"))

    with pytest.raises(Conflict) as nothing_seen:
        state_store.add_promotion(promotion(), expected_current=None)
    with pytest.raises(Conflict) as unknown_seen:
        state_store.add_promotion(promotion(), expected_current="promo-gone")

    for refused in (nothing_seen, unknown_seen):
        message = str(refused.value)
        assert f"promotion {first.id} is in force now (m-first, base" in message
        assert f"retry with expected_current={first.id!r}" in message
    assert state_store.list_promotions("acme", "router") == [first]


def test_a_promotion_sorts_first_even_when_its_clock_lags(state_store: StateStore) -> None:
    first, second = promote_chain(
        state_store, promotion(promoted_at=at(60)), promotion(promoted_at=at(0))
    )

    assert second.promoted_at > first.promoted_at
    assert [p.id for p in state_store.list_promotions("acme", "router")] == [second.id, first.id]


def test_rollback_puts_the_previous_promotion_back_in_force(state_store: StateStore) -> None:
    first, second = promote_chain(
        state_store, promotion(promoted_at=at(0)), promotion(promoted_at=at(5))
    )

    rolled, now = state_store.roll_back_promotion("acme", "router", expected_current=second.id)

    assert rolled == second.model_copy(update={"rolled_back": True})
    assert now == first
    assert state_store.list_promotions("acme", "router") == [rolled, first]
    rolled_first, none = state_store.roll_back_promotion(
        "acme", "router", expected_current=first.id
    )
    assert rolled_first.rolled_back
    assert none is None


def test_rollback_of_a_promotion_no_longer_in_force_is_refused(state_store: StateStore) -> None:
    first, second = promote_chain(
        state_store, promotion(promoted_at=at(0)), promotion(promoted_at=at(5))
    )

    with pytest.raises(Conflict, match=f"promotion {second.id} is in force now"):
        state_store.roll_back_promotion("acme", "router", expected_current=first.id)
    with pytest.raises(Conflict, match="no model is promoted now"):
        state_store.roll_back_promotion("acme", "other", expected_current=first.id)

    assert not any(p.rolled_back for p in state_store.list_promotions("acme", "router"))


def test_after_a_rollback_a_new_promotion_must_expect_the_one_back_in_force(
    state_store: StateStore,
) -> None:
    first, second = promote_chain(
        state_store, promotion(promoted_at=at(0)), promotion(promoted_at=at(5))
    )
    state_store.roll_back_promotion("acme", "router", expected_current=second.id)

    with pytest.raises(Conflict, match=f"promotion {first.id} is in force now"):
        state_store.add_promotion(promotion(promoted_at=at(9)), expected_current=second.id)
    third = state_store.add_promotion(promotion(promoted_at=at(9)), expected_current=first.id)

    live = [p for p in state_store.list_promotions("acme", "router") if not p.rolled_back]
    assert live == [third, first]


def test_duplicate_promotion_id_raises_conflict(state_store: StateStore) -> None:
    (stored,) = promote_chain(state_store, promotion())

    with pytest.raises(Conflict):
        state_store.add_promotion(promotion(id=stored.id), expected_current=stored.id)
    assert state_store.list_promotions("acme", "router") == [stored]


def test_webhook_outcomes_are_kept_on_the_promotion(state_store: StateStore) -> None:
    (stored,) = promote_chain(state_store, promotion())
    failed = WebhookOutcome(
        url="https://hooks.example/p",
        delivered=False,
        attempts=4,
        status_code=503,
        error="promotion webhook failed after 4 attempt(s): HTTP 503",
        at=at(1),
    )
    delivered = WebhookOutcome(
        url="https://hooks.example/p", delivered=True, attempts=1, status_code=200, at=at(2)
    )

    after_promotion = state_store.record_promotion_webhook(stored.id, failed, event="promotion")
    state_store.roll_back_promotion("acme", "router", expected_current=stored.id)
    after_rollback = state_store.record_promotion_webhook(stored.id, delivered, event="rollback")

    assert after_promotion == stored.model_copy(update={"webhook": failed})
    assert after_rollback == stored.model_copy(
        update={"webhook": failed, "rollback_webhook": delivered, "rolled_back": True}
    )
    assert state_store.list_promotions("acme", "router") == [after_rollback]
    with pytest.raises(NotFound):
        state_store.record_promotion_webhook("nope", failed, event="promotion")


def test_concurrent_promotions_over_the_same_view_have_exactly_one_winner(
    open_store: Callable[[], StateStore],
) -> None:
    """Separate store instances (as separate API replicas would have) race on one view."""
    (base,) = promote_chain(open_store(), promotion(promoted_at=at(0)))
    contenders = 6
    stores = [open_store() for _ in range(contenders)]
    start = threading.Barrier(contenders)
    won: list[Promotion] = []
    lost: list[str] = []

    def contend(n: int) -> None:
        start.wait()
        try:
            won.append(
                stores[n].add_promotion(
                    promotion(promoted_at=at(10 + n), model=f"m{n}"), expected_current=base.id
                )
            )
        except Conflict as exc:
            lost.append(str(exc))

    threads = [threading.Thread(target=contend, args=(n,)) for n in range(contenders)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert len(won) == 1, (won, lost)
    assert len(lost) == contenders - 1
    assert all(f"retry with expected_current={won[0].id!r}" in m for m in lost), lost
    listed = stores[0].list_promotions("acme", "router")
    assert [p.id for p in listed] == [won[0].id, base.id]


def test_concurrent_rollbacks_of_the_same_promotion_have_exactly_one_winner(
    open_store: Callable[[], StateStore],
) -> None:
    first, second = promote_chain(
        open_store(), promotion(promoted_at=at(0)), promotion(promoted_at=at(5))
    )
    contenders = 4
    stores = [open_store() for _ in range(contenders)]
    start = threading.Barrier(contenders)
    outcomes: list[str] = []

    def contend(n: int) -> None:
        start.wait()
        try:
            stores[n].roll_back_promotion("acme", "router", expected_current=second.id)
            outcomes.append("won")
        except Conflict:
            outcomes.append("lost")

    threads = [threading.Thread(target=contend, args=(n,)) for n in range(contenders)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert sorted(outcomes) == ["lost"] * (contenders - 1) + ["won"]
    live = [p for p in stores[0].list_promotions("acme", "router") if not p.rolled_back]
    assert live == [first]


def test_mongodb_completes_a_change_that_a_crash_left_half_applied(mongo_db_url: str) -> None:
    """A process won the compare-and-set for a promotion, then died before inserting it.

    The claim (``promotion_heads``) already says it is in force, so the next reader or
    writer must finish it rather than let the history and the head disagree.
    """
    store = open_state_store(mongo_db_url)
    client: MongoClient[dict[str, Any]] = MongoClient(mongo_db_url)
    try:
        (first,) = promote_chain(store, promotion(promoted_at=at(0)))
        lost = promotion(promoted_at=at(5), model="claimed-then-crashed")
        claimed = {**lost.model_dump(exclude={"id"}), "_id": lost.id}
        heads = client.get_default_database()["promotion_heads"]
        heads.update_one(
            {"_id": "acme/router"},
            {"$set": {"current": lost.id, "pending": {"op": "add", "doc": claimed}}},
        )

        assert [p.id for p in store.list_promotions("acme", "router")] == [lost.id, first.id]
        with pytest.raises(Conflict, match=f"promotion {lost.id} is in force now"):
            store.add_promotion(promotion(promoted_at=at(9)), expected_current=first.id)
        rolled, now = store.roll_back_promotion("acme", "router", expected_current=lost.id)
        assert (rolled.id, now) == (lost.id, first)
    finally:
        client.close()
        store.close()
