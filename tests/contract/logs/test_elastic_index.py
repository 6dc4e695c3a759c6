"""What only the Elasticsearch adapter promises: its mapping and template, partial refusals,
point-in-time cleanup and blueprint documents."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from elasticsearch import Elasticsearch

from flywheel.domain.logs import ChatLog, LogKind, RetrievalLog
from flywheel.errors import StoreUnavailable, ValidationFailed
from flywheel.stores.logs_elastic import (
    MAPPING,
    MAX_RETRIES,
    TEMPLATE_PRIORITY,
    ElasticLogStore,
    _refused_field,
)


@pytest.fixture
def es_store(es_url: str, es_index: str) -> Iterator[ElasticLogStore]:
    store = ElasticLogStore.from_url(es_url, index=es_index)
    yield store
    store.close()


def test_index_gets_the_explicit_mapping(
    es_store: ElasticLogStore, es_admin: Elasticsearch, es_index: str
) -> None:
    es_store.count("acme", "router")  # the index is prepared on first use

    mapping = es_admin.indices.get_mapping(index=es_index)[es_index]["mappings"]

    assert mapping["dynamic"] == "strict"
    props = mapping["properties"]
    assert props["timestamp"] == {"type": "date", "format": "epoch_millis"}
    for field in ("client_id", "workload_id", "kind"):
        assert props[field]["type"] == "keyword"
    for body in ("request", "response", "retrieved", "feedback"):
        assert props[body]["enabled"] is False  # stored, never indexed field by field


def test_blueprint_documents_without_kind_read_as_chat(
    es_store: ElasticLogStore, es_admin: Elasticsearch, es_index: str
) -> None:
    es_store.count("acme", "router")
    doc = {
        "client_id": "acme",
        "workload_id": "router",
        "timestamp": 1_700_000_000_000,
        "request": {"messages": [{"role": "user", "content": "hi"}]},
        "response": {"choices": [{"message": {"role": "assistant", "content": "hello"}}]},
    }
    es_admin.index(index=es_index, document=doc, refresh=True)

    assert list(es_store.iter_recent("acme", "router", limit=5)) == [ChatLog(**doc)]
    assert es_store.count("acme", "router", kind=LogKind.chat) == 1
    assert es_store.count("acme", "router", kind=LogKind.retrieval) == 0
    [workload] = es_store.list_workloads()
    assert (workload.kind, workload.count, workload.newest_timestamp) == (
        LogKind.chat,
        1,
        doc["timestamp"],
    )


def _chat(i: int, workload_id: str = "router") -> ChatLog:
    return ChatLog(
        client_id="acme",
        workload_id=workload_id,
        timestamp=1_700_000_000_000 + i,
        request={"messages": [{"role": "user", "content": f"q{i}"}]},
        response={"choices": [{"message": {"role": "assistant", "content": f"a{i}"}}]},
    )


def _retrieval(i: int) -> RetrievalLog:
    return RetrievalLog(
        client_id="acme",
        workload_id="kb",
        timestamp=1_700_000_000_000 + i,
        query=f"q{i}",
        retrieved=[{"doc_id": "d1", "text": "t"}],
    )


def test_index_template_carries_the_mapping(
    es_store: ElasticLogStore, es_admin: Elasticsearch, es_index: str
) -> None:
    es_store.count("acme", "router")

    [entry] = es_admin.indices.get_index_template(name=f"flywheel-logs-{es_index}")[
        "index_templates"
    ]
    template = entry["index_template"]

    assert template["index_patterns"] == [es_index]
    assert template["priority"] == TEMPLATE_PRIORITY
    assert template["template"]["mappings"] == MAPPING


def test_an_index_deleted_under_the_store_comes_back_strict(
    es_store: ElasticLogStore, es_admin: Elasticsearch, es_index: str
) -> None:
    es_store.write([_chat(0)])
    es_admin.indices.delete(index=es_index)

    # The store believes the index is ready; the bulk write re-creates it from the template.
    assert es_store.write([_chat(1)]) == 1

    mapping = es_admin.indices.get_mapping(index=es_index)[es_index]["mappings"]
    assert mapping["dynamic"] == "strict"
    assert mapping["properties"] == MAPPING["properties"]
    assert es_store.count("acme", "router") == 1


def test_refused_records_are_located_and_the_others_written(
    es_url: str, es_admin: Elasticsearch, es_index: str
) -> None:
    _chat_only_index(es_admin, es_index)
    store = ElasticLogStore.from_url(es_url, index=es_index)
    try:
        with pytest.raises(ValidationFailed, match="refused 2 of 4") as caught:
            store.write([_chat(0), _retrieval(1), _chat(2), _retrieval(3)])
        assert store.count("acme", "router") == 2
    finally:
        store.close()
    assert [e["loc"] for e in caught.value.errors] == [
        ["records", 1, "query"],
        ["records", 3, "query"],
    ]
    assert all("strict_dynamic_mapping_exception" in e["msg"] for e in caught.value.errors)


def _chat_only_index(es_admin: Elasticsearch, index: str) -> None:
    """An index made by an older, chat-only version: strict, without the retrieval fields."""
    chat_only = {
        "dynamic": "strict",
        "properties": {
            name: spec
            for name, spec in MAPPING["properties"].items()
            if name in {"client_id", "workload_id", "kind", "timestamp", "request", "response"}
        },
    }
    es_admin.indices.create(index=index, mappings=chat_only)


_REJECTED = {
    "status": 429,
    "error": {"type": "es_rejected_execution_exception", "reason": "rejected execution"},
}


def _throttling_client(es_url: str, throttles: dict[int, int]) -> Elasticsearch:
    """A real client whose bulk answers 429 for the records with the given timestamps.

    ``throttles`` maps a record's timestamp to how many more bulk requests reject it; the
    other items of each request go to the real server, and the 429 items are spliced into
    its response where they were in the request, as Elasticsearch answers a busy shard.
    """

    class _Throttling(Elasticsearch):
        def bulk(self, **kwargs: Any) -> Any:  # type: ignore[override]
            operations: list[bytes] = kwargs.pop("operations")
            pairs = [(operations[i], operations[i + 1]) for i in range(0, len(operations), 2)]
            rejected = [i for i, (_, body) in enumerate(pairs) if self._rejects(body)]
            kept = [line for i, pair in enumerate(pairs) if i not in rejected for line in pair]
            response = super().bulk(operations=kept, **kwargs)
            for i in rejected:
                response.body["items"].insert(i, {"index": dict(_REJECTED)})
                response.body["errors"] = True
            return response

        @staticmethod
        def _rejects(body: bytes) -> bool:
            for timestamp, left in throttles.items():
                if left and f'"timestamp":{timestamp}'.encode() in body:
                    throttles[timestamp] = left - 1
                    return True
            return False

    # streaming_bulk works on client.options(), a new instance of the same class: the
    # state lives in the closure, not on the instance.
    return _Throttling(es_url, request_timeout=30)


def _timestamp(i: int) -> int:
    return _chat(i).timestamp


def test_throttled_records_are_resent_and_refusals_keep_their_input_positions(
    es_url: str, es_admin: Elasticsearch, es_index: str
) -> None:
    _chat_only_index(es_admin, es_index)
    sleeps: list[float] = []
    client = _throttling_client(es_url, {_timestamp(1): 1})
    store = ElasticLogStore(client, index=es_index, url=es_url, sleep=sleeps.append)
    try:
        with pytest.raises(ValidationFailed, match="refused 1 of 5") as caught:
            store.write([_chat(0), _chat(1), _chat(2), _retrieval(3), _chat(4)])
        written = {log.timestamp for log in store.iter_recent("acme", "router", limit=10)}
    finally:
        store.close()

    # The 429 item was re-sent after the rest of its chunk; the refusal is still located at
    # the retrieval record's input position, not at the order the results came back in.
    assert [e["loc"] for e in caught.value.errors] == [["records", 3, "query"]]
    assert "strict_dynamic_mapping_exception" in caught.value.errors[0]["msg"]
    assert written == {_timestamp(i) for i in (0, 1, 2, 4)}
    assert sleeps == [1.0]


def test_records_throttled_through_every_retry_are_transient(es_url: str, es_index: str) -> None:
    sleeps: list[float] = []
    client = _throttling_client(es_url, {_timestamp(1): MAX_RETRIES + 1})
    store = ElasticLogStore(client, index=es_index, url=es_url, sleep=sleeps.append)
    try:
        with pytest.raises(StoreUnavailable, match=r"refused 1 of 3 log records \(2 written\)"):
            store.write([_chat(0), _chat(1), _chat(2)])
        assert store.count("acme", "router") == 2
    finally:
        store.close()
    assert sleeps == [1.0, 2.0, 4.0]


def test_records_still_throttled_are_listed_with_the_refusals_in_input_order(
    es_url: str, es_admin: Elasticsearch, es_index: str
) -> None:
    _chat_only_index(es_admin, es_index)
    client = _throttling_client(es_url, {_timestamp(0): MAX_RETRIES + 1})
    store = ElasticLogStore(client, index=es_index, url=es_url, sleep=lambda _: None)
    try:
        with pytest.raises(ValidationFailed, match="refused 2 of 3") as caught:
            store.write([_chat(0), _retrieval(1), _chat(2)])
        assert store.count("acme", "router") == 1
    finally:
        store.close()
    assert [e["loc"] for e in caught.value.errors] == [["records", 0], ["records", 1, "query"]]
    assert "es_rejected_execution_exception" in caught.value.errors[0]["msg"]


@pytest.mark.parametrize(
    ("statuses", "raised"),
    [
        ((429, 503), StoreUnavailable),
        ((429, 400), ValidationFailed),
        ((400,), ValidationFailed),
    ],
)
def test_bulk_failures_are_transient_only_when_every_item_is(
    es_store: ElasticLogStore, statuses: tuple[int, ...], raised: type[Exception]
) -> None:
    failed = [(position * 2, status, f"error {status}") for position, status in enumerate(statuses)]

    with pytest.raises(raised, match=f"refused {len(statuses)} of 5") as caught:
        es_store._raise_bulk_failures(failed, written=5 - len(statuses))

    if isinstance(caught.value, ValidationFailed):
        assert [e["loc"] for e in caught.value.errors] == [
            ["records", position * 2] for position in range(len(statuses))
        ]
        assert [e["msg"] for e in caught.value.errors] == [f"error {s}" for s in statuses]


@pytest.mark.parametrize(
    ("reason", "loc_tail"),
    [
        (
            "[1:26] mapping set to strict, dynamic introduction of [query] within [_doc] is not "
            "allowed",
            ["query"],
        ),
        ("dynamic introduction of [x] within [feedback] is not allowed", ["feedback.x"]),
        ("failed to parse field [timestamp] of type [date] in document", ["timestamp"]),
        ("version conflict", []),
    ],
)
def test_the_refused_field_is_read_from_the_reason(reason: str, loc_tail: list[str]) -> None:
    assert _refused_field(reason) == loc_tail


class _PitRecordingClient(Elasticsearch):
    """A real client that remembers the point-in-time ids it opened."""

    opened: list[str]

    def open_point_in_time(self, *args: Any, **kwargs: Any) -> Any:
        response = super().open_point_in_time(*args, **kwargs)
        self.opened.append(response["id"])
        return response


def test_point_in_time_is_closed_when_a_read_is_abandoned(
    es_url: str, es_admin: Elasticsearch, es_index: str
) -> None:
    client = _PitRecordingClient(es_url, request_timeout=30)
    client.opened = []
    store = ElasticLogStore(client, index=es_index, url=es_url)
    try:
        store.write([_chat(i) for i in range(5)])
        reader = store.iter_recent("acme", "router", limit=5, batch_size=2)
        assert next(reader) == _chat(4)
        reader.close()  # abandoned after one record: the finally block must close the PIT
    finally:
        store.close()

    [pit_id] = client.opened
    # Closing it again frees nothing: the store already did (an open one answers num_freed 1).
    closed = es_admin.options(ignore_status=404).close_point_in_time(id=pit_id)
    assert closed["num_freed"] == 0
